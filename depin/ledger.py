"""The ledger as pure functions and one class: entries, their canonical hash, the chain, the Merkle tree over it.

An entry moves `amount` integer credits from account `from` to account `to`. Entry `seq` n commits to entry
n-1 through `prev_hash`, and its own `hash` is SHA-256 over a domain tag and the canonical msgpack of every
other field (docs/LEDGER.md). Changing, removing, inserting or reordering any entry breaks the chain at the
first entry touched, and `verify` names that seq. Each entry is also a leaf of an RFC 9162 Merkle tree (leaf data:
the 32 bytes of its hash), whose root the coordinator signs in checkpoints, so an entry's inclusion and the
append-only growth of the whole log can be proved in O(log n) hashes. The money rules live in depin.accounts.
A `Book` is the running state after some prefix: head, balances, tree frontier; the coordinator appends through
one, and `verify` replays an export through one. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from depin import codec, merkle
from depin.accounts import MINT, Accounts
from depin.errors import LedgerError

__all__ = ["FIELDS", "GENESIS_PREV", "KINDS", "MINT", "Book", "Entry", "Summary", "entry_hash", "iter_jsonl",
           "leaf_of", "make_entry", "verify"]

HASH_DOMAIN = b"depin/1/ledger-entry\0"
GENESIS_PREV = "00" * 32
KINDS = ("grant", "escrow", "reward", "refund", "bond", "unbond", "slash")  # in the order LEDGER.md lists them
FIELDS = ("seq", "time", "kind", "from", "to", "amount", "job_id", "task_id", "prev_hash", "hash")


@dataclass(frozen=True)
class Entry:
    """One ledger entry, exactly the fields of docs/LEDGER.md."""

    seq: int
    time: int  # unix milliseconds
    kind: str
    from_: str
    to: str
    amount: int
    job_id: str | None
    task_id: str | None
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """The entry as its JSON/msgpack map (key `from`, not `from_`)."""
        return {"seq": self.seq, "time": self.time, "kind": self.kind, "from": self.from_, "to": self.to,
                "amount": self.amount, "job_id": self.job_id, "task_id": self.task_id, "prev_hash": self.prev_hash,
                "hash": self.hash}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Entry:
        """Parse a map with exactly the entry fields; shape errors are LedgerErrors at that seq."""
        seq = d.get("seq") if isinstance(d, Mapping) else None
        if not isinstance(d, Mapping) or set(d) != set(FIELDS):
            where = seq if isinstance(seq, int) else None
            raise LedgerError("entry must have exactly the fields " + ", ".join(FIELDS), where)
        _check_shape(d)
        return cls(
            seq=d["seq"], time=d["time"], kind=d["kind"], from_=d["from"], to=d["to"], amount=d["amount"],
            job_id=d["job_id"], task_id=d["task_id"], prev_hash=d["prev_hash"], hash=d["hash"],
        )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_HEX32 = re.compile(r"[0-9a-f]{64}")


def _is_hex32(v: Any) -> bool:
    return isinstance(v, str) and _HEX32.fullmatch(v) is not None


def _is_text(v: Any, *, empty_ok: bool = False) -> bool:
    # A string that cannot be encoded as UTF-8 (a lone surrogate from a JSON escape) cannot be hashed.
    if not isinstance(v, str) or (v == "" and not empty_ok):
        return False
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_shape(d: Mapping[str, Any]) -> None:
    seq = d["seq"] if _is_int(d["seq"]) else None
    problems = [
        (_is_int(d["seq"]) and 0 <= d["seq"] < 2**63, "seq must be an integer in [0, 2^63)"),
        (_is_int(d["time"]) and 0 <= d["time"] < 2**63, "time must be an integer in [0, 2^63)"),
        (isinstance(d["kind"], str) and d["kind"] in KINDS, f"kind must be one of {', '.join(KINDS)}"),
        (_is_text(d["from"]), "from must be a non-empty string"),
        (_is_text(d["to"]), "to must be a non-empty string"),
        (_is_int(d["amount"]) and 0 < d["amount"] < 2**63, "amount must be a positive integer"),
        (d["job_id"] is None or _is_text(d["job_id"], empty_ok=True), "job_id must be a string or null"),
        (d["task_id"] is None or _is_text(d["task_id"], empty_ok=True), "task_id must be a string or null"),
        (_is_hex32(d["prev_hash"]), "prev_hash must be 64 lowercase hex digits"),
        (_is_hex32(d["hash"]), "hash must be 64 lowercase hex digits"),
    ]
    for ok, message in problems:
        if not ok:
            raise LedgerError(f"entry {seq}: {message}", seq)


def entry_hash(fields: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the domain tag and the canonical msgpack of every field but `hash`."""
    body = {k: fields[k] for k in FIELDS if k != "hash"}
    return hashlib.sha256(HASH_DOMAIN + codec.encode(body)).hexdigest()


def leaf_of(entry_hash_hex: str) -> bytes:
    """The entry's Merkle leaf hash: leaf_hash of the 32 bytes its `hash` spells in hex."""
    return merkle.leaf_hash(bytes.fromhex(entry_hash_hex))


def make_entry(
    prev: Entry | None, *, time: int, kind: str, from_: str, to: str, amount: int,
    job_id: str | None = None, task_id: str | None = None,
) -> Entry:
    """The entry that follows `prev` (or the first entry if `prev` is None); shape-checked, not rule-checked."""
    fields: dict[str, Any] = {
        "seq": 0 if prev is None else prev.seq + 1,
        "time": time, "kind": kind, "from": from_, "to": to, "amount": amount,
        "job_id": job_id, "task_id": task_id,
        "prev_hash": GENESIS_PREV if prev is None else prev.hash,
    }
    fields["hash"] = entry_hash(fields)
    return Entry.from_dict(fields)  # the same shape checks a verifier applies


class Book:
    """The ledger after some prefix: its head, its accounts and its Merkle frontier. Appending checks every rule."""

    def __init__(self, head: Entry | None = None, accounts: Accounts | None = None,
                 frontier: merkle.Frontier | None = None) -> None:
        self.head = head
        self.accounts = accounts if accounts is not None else Accounts()
        self.frontier = frontier if frontier is not None else merkle.Frontier()
        if self.frontier.size != self.size:
            raise LedgerError(f"Merkle tree has {self.frontier.size} leaves but the chain {self.size} entries")

    @property
    def size(self) -> int:
        """Entries so far."""
        return 0 if self.head is None else self.head.seq + 1

    def root(self) -> bytes:
        """The Merkle tree head of every entry so far."""
        return self.frontier.root()

    def append(self, *, time: int, kind: str, from_: str, to: str, amount: int, job_id: str | None = None,
               task_id: str | None = None) -> tuple[Entry, list[tuple[int, int, bytes]]]:
        """Make, check and apply the next entry; also the Merkle nodes it completes, for the store."""
        entry = make_entry(self.head, time=time, kind=kind, from_=from_, to=to, amount=amount, job_id=job_id,
                           task_id=task_id)
        return entry, self._take(entry)  # linked and hashed by make_entry: only the money rules are left to check

    def apply(self, e: Entry) -> list[tuple[int, int, bytes]]:
        """Take the next entry as given (an export being verified): link, hash and rules must all hold."""
        prev_hash = GENESIS_PREV if self.head is None else self.head.hash
        if e.seq != self.size:
            raise LedgerError(f"entry {self.size}: found seq {e.seq} where {self.size} was expected", self.size)
        if e.prev_hash != prev_hash:
            raise LedgerError(f"entry {e.seq}: prev_hash does not match the hash of entry {e.seq - 1}", e.seq)
        if entry_hash(e.to_dict()) != e.hash:
            raise LedgerError(f"entry {e.seq}: hash does not match its contents", e.seq)
        return self._take(e)

    def _take(self, e: Entry) -> list[tuple[int, int, bytes]]:
        self.accounts.apply(e)
        self.head = e
        return self.frontier.append(leaf_of(e.hash))


@dataclass(frozen=True)
class Summary:
    """What a successful verification found."""

    entries: int
    head_hash: str
    root_hash: str  # Merkle tree head, hex
    balances: dict[str, int]
    root_at: str | None = None  # the tree head after the first `at_size` entries, if asked for and reached

    @property
    def minted(self) -> int:
        """Credits ever granted (= the credits held by every account but the mint)."""
        return -self.balances.get(MINT, 0)


def verify(entries: Iterable[Mapping[str, Any] | Entry], *, at_size: int | None = None) -> Summary:
    """Check the whole log from seq 0 (shape, chain, money rules); raise LedgerError naming the first bad position.
    With `at_size`, also note the Merkle root of the first `at_size` entries (to compare with a checkpoint)."""
    book = Book()
    root_at = book.root().hex() if at_size == 0 else None
    for raw in entries:
        try:  # an Entry object gets the same shape checks as a map: it may have been built by hand
            e = Entry.from_dict(raw.to_dict() if isinstance(raw, Entry) else raw)
        except LedgerError as exc:
            raise LedgerError(f"entry {book.size}: {_detail(exc)}", book.size) from None
        book.apply(e)
        if book.size == at_size:
            root_at = book.root().hex()
    return Summary(entries=book.size, head_hash=GENESIS_PREV if book.head is None else book.head.hash,
                   root_hash=book.root().hex(), balances=dict(book.accounts.balances), root_at=root_at)


def _detail(exc: LedgerError) -> str:
    # Shape errors say "entry <its own seq>: ..."; the position is what a verifier reports, so drop the prefix.
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("entry ") and ": " in text else text


def iter_jsonl(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Entries from JSON Lines text (blank lines skipped); a bad line is a LedgerError at its entry position."""
    position = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=no_duplicate_keys)
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise LedgerError(f"entry {position}: not a valid JSON object ({reason})", position) from None
        if not isinstance(obj, dict):
            raise LedgerError(f"entry {position}: not a JSON object", position)
        yield obj
        position += 1


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A json object_pairs_hook that refuses an object repeating a key (ValueError "duplicate key")."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")
    return obj
