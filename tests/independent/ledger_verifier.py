"""An independent verifier of the depin ledger, written from docs/LEDGER.md (and PROTOCOL.md sections 3-5 where
LEDGER.md points to them), without looking at the reference implementation.

Standard library only, plus PyNaCl for Ed25519 signature verification.

    verify_export(data: bytes) -> Verdict              sections 4.1, 4.2, 4.3, 5, 6
    verify_entries(entries: list[object]) -> Verdict   the same checks, for objects already parsed (check 1 skipped)
    merkle_root / inclusion_path / consistency_proof   section 6, 7 (the coordinator's side, to compare)
    verify_inclusion / verify_consistency              section 7 (the client's side)
    checkpoint_problem                                 section 8.3
    check_inclusion_answer / check_consistency_answer  7.1's client rules, for the answers of PROTOCOL.md 7.19/7.20

Command line:  python -m tests.independent.ledger_verifier EXPORT.jsonl [--checkpoint CP.json --key HEX] [--json]
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import sys
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------------------------------------------
# Constants (sections 1, 2, 3, 8)
# ---------------------------------------------------------------------------------------------------------------

FIELD_ORDER = ("seq", "time", "kind", "from", "to", "amount", "job_id", "task_id", "prev_hash", "hash")
KINDS = ("grant", "escrow", "reward", "refund", "bond", "unbond", "slash")
U63 = 1 << 63  # every integer is below this
MAX_CREDITS = U63 - 1
ZERO_HASH = "0" * 64
ENTRY_DOMAIN = b"depin/1/ledger-entry\x00"
CHECKPOINT_DOMAIN = b"depin/1/checkpoint\x00"
EMPTY_ROOT = hashlib.sha256(b"").digest()
BASE32_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")
LOWER_HEX = frozenset("0123456789abcdef")
CHECKPOINT_KEYS = frozenset(("coordinator", "size", "root", "time", "sig"))
MAX_PROOF_HASHES = 128  # section 7: the reference client accepts at most 128 hashes

REASON_FIELDS = "entry must have exactly the fields " + ", ".join(FIELD_ORDER)


# ---------------------------------------------------------------------------------------------------------------
# Canonical msgpack (PROTOCOL.md section 3.2; LEDGER.md 3.1). A small general encoder: nil, bool, int, str, bytes,
# float64, list, dict with str keys (the ledger needs only non-negative integers, strings and nil).
# ---------------------------------------------------------------------------------------------------------------


class EncodeError(ValueError):
    pass


def _uint(v: int) -> bytes:
    if v <= 0x7F:
        return bytes((v,))
    if v <= 0xFF:
        return b"\xcc" + v.to_bytes(1, "big")
    if v <= 0xFFFF:
        return b"\xcd" + v.to_bytes(2, "big")
    if v <= 0xFFFFFFFF:
        return b"\xce" + v.to_bytes(4, "big")
    if v <= 0xFFFFFFFFFFFFFFFF:
        return b"\xcf" + v.to_bytes(8, "big")
    raise EncodeError("integer too large for msgpack")


def _negint(v: int) -> bytes:
    if v >= -32:
        return (v & 0xFF).to_bytes(1, "big")
    for head, n in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
        if v >= -(1 << (8 * n - 1)):
            return bytes((head,)) + v.to_bytes(n, "big", signed=True)
    raise EncodeError("integer too small for msgpack")


def _str(s: str) -> bytes:
    try:
        raw = s.encode("utf-8")  # a lone surrogate has no UTF-8 encoding: UnicodeEncodeError
    except UnicodeEncodeError as exc:
        raise EncodeError("string has no UTF-8 encoding") from exc
    n = len(raw)
    if n <= 31:
        head = bytes((0xA0 | n,))
    elif n <= 0xFF:
        head = b"\xd9" + n.to_bytes(1, "big")
    elif n <= 0xFFFF:
        head = b"\xda" + n.to_bytes(2, "big")
    elif n <= 0xFFFFFFFF:
        head = b"\xdb" + n.to_bytes(4, "big")
    else:
        raise EncodeError("string too long")
    return head + raw


def _len_head(n: int, fix: int, fixmax: int, h16: int, h32: int) -> bytes:
    if n <= fixmax:
        return bytes((fix | n,))
    if n <= 0xFFFF:
        return bytes((h16,)) + n.to_bytes(2, "big")
    return bytes((h32,)) + n.to_bytes(4, "big")


def canonical_msgpack(value: Any) -> bytes:
    if value is None:
        return b"\xc0"
    if value is True:
        return b"\xc3"
    if value is False:
        return b"\xc2"
    if type(value) is int:
        return _uint(value) if value >= 0 else _negint(value)
    if type(value) is str:
        return _str(value)
    if type(value) is float:  # always float64, bits as given
        return b"\xcb" + struct.pack(">d", value)
    if type(value) is bytes:
        n = len(value)
        if n <= 0xFF:
            return b"\xc4" + n.to_bytes(1, "big") + value
        if n <= 0xFFFF:
            return b"\xc5" + n.to_bytes(2, "big") + value
        return b"\xc6" + n.to_bytes(4, "big") + value
    if type(value) in (list, tuple):
        return _len_head(len(value), 0x90, 15, 0xDC, 0xDD) + b"".join(canonical_msgpack(v) for v in value)
    if type(value) is dict:
        pairs = []
        for k, v in value.items():
            if type(k) is not str:
                raise EncodeError("map keys must be strings")
            encoded_key = _str(k)  # raises for a key with no UTF-8 encoding
            pairs.append((k.encode("utf-8"), encoded_key, v))
        pairs.sort(key=lambda p: p[0])  # by the keys' UTF-8 bytes, unsigned, a prefix first
        return _len_head(len(value), 0x80, 15, 0xDE, 0xDF) + b"".join(ek + canonical_msgpack(v) for _, ek, v in pairs)
    raise EncodeError(f"cannot encode {type(value).__name__}")


# ---------------------------------------------------------------------------------------------------------------
# Identities (PROTOCOL.md section 4) and account forms (LEDGER.md section 2)
# ---------------------------------------------------------------------------------------------------------------


def party_id(public_key: bytes) -> str:
    return base64.b32encode(hashlib.sha256(public_key).digest()[:20]).decode("ascii").lower()


def is_party(account: Any) -> bool:
    return type(account) is str and len(account) == 32 and all(c in BASE32_ALPHABET for c in account)


def is_bond(account: Any) -> bool:
    return type(account) is str and account.startswith("bond:") and is_party(account[5:])


def is_hex(value: Any, length: int) -> bool:
    return type(value) is str and len(value) == length and all(c in LOWER_HEX for c in value)


# ---------------------------------------------------------------------------------------------------------------
# Section 3: the entry hash
# ---------------------------------------------------------------------------------------------------------------


def entry_body(entry: dict[str, Any]) -> bytes:
    """The canonical msgpack of the nine fields other than `hash`."""
    return canonical_msgpack({k: entry[k] for k in FIELD_ORDER if k != "hash"})


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(ENTRY_DOMAIN + entry_body(entry)).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Section 4.1: reading a JSON Lines export
# ---------------------------------------------------------------------------------------------------------------

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)?")


def export_lines(data: bytes) -> list[str]:
    """The non-blank lines of an export, in order: one per entry.

    Bytes that are not UTF-8 become lone surrogates (U+DC80..U+DCFF, Python's surrogateescape), which no field
    accepts. Lines end at \\n, \\r\\n or \\r. A line that is empty or holds only characters str.isspace() accepts is
    blank and skipped. A line keeps its terminator, normalised to one \\n (as a text-mode file read gives it): the
    JSON parser's messages of check 1 count it (e.g. a string cut by the end of the line is an "Invalid control
    character" there, not an "Unterminated string"), which is what the reference reports."""
    text = data.decode("utf-8", "surrogateescape")
    lines = []
    for m in _LINE.finditer(text):
        line = m.group(0)
        if not line:
            continue  # the empty match at the very end
        if line.endswith(("\r\n", "\r", "\n")):
            line = line.rstrip("\r\n") + "\n"
        if not line.isspace():
            lines.append(line)
    return lines


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for k, v in pairs:
        if k in seen:
            raise ValueError("duplicate key")
        seen[k] = v
    return seen


def _parse_int(digits: str) -> int:
    # JSON integers are read exactly. Python refuses to convert more than 4300 digits; any integer that long is far
    # outside every field's range, so a stand-in of the same sign and out of range keeps check 2's verdict.
    if len(digits) > 4000:
        return -(U63 << 1) if digits.startswith("-") else U63 << 1
    return int(digits)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


DECODER_STRICT = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys, parse_int=_parse_int,
                                  parse_constant=_refuse_constant)
DECODER_PYTHON = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys)


def parse_line(line: str, *, strict_json: bool = True) -> tuple[Any, str | None]:
    """Check 1: (the object, None) or (None, reason). With strict_json False the decoder is Python's default
    (accepting NaN/Infinity and refusing integers of more than 4300 digits), as the reference's appears to be."""
    decoder = DECODER_STRICT if strict_json else DECODER_PYTHON
    try:
        if line.startswith("\ufeff"):  # section 4.1: a byte-order mark is not skipped; this is the parser's message
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", line, 0)
        value = decoder.decode(line)
    except RecursionError:
        return None, "not a valid JSON object (nested too deeply)"
    except ValueError as exc:  # json.JSONDecodeError is a ValueError; so is our duplicate-key refusal
        return None, f"not a valid JSON object ({exc})"
    if type(value) is not dict:
        return None, "not a JSON object"
    return value, None


# ---------------------------------------------------------------------------------------------------------------
# Section 4.2, check 2: shape
# ---------------------------------------------------------------------------------------------------------------


def _text(value: Any, *, empty_ok: bool) -> bool:
    if type(value) is not str or (not value and not empty_ok):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _nat(value: Any) -> bool:
    return type(value) is int and 0 <= value < U63


def shape_problem(entry: Any) -> str | None:
    if type(entry) is not dict or len(entry) != len(FIELD_ORDER) or set(entry) != set(FIELD_ORDER):
        return REASON_FIELDS
    if not _nat(entry["seq"]):
        return "seq must be an integer in [0, 2^63)"
    if not _nat(entry["time"]):
        return "time must be an integer in [0, 2^63)"
    if type(entry["kind"]) is not str or entry["kind"] not in KINDS:
        return "kind must be one of " + ", ".join(KINDS)
    if not _text(entry["from"], empty_ok=False):
        return "from must be a non-empty string"
    if not _text(entry["to"], empty_ok=False):
        return "to must be a non-empty string"
    if not (type(entry["amount"]) is int and 1 <= entry["amount"] <= MAX_CREDITS):
        return "amount must be a positive integer"
    if entry["job_id"] is not None and not _text(entry["job_id"], empty_ok=True):
        return "job_id must be a string or null"
    if entry["task_id"] is not None and not _text(entry["task_id"], empty_ok=True):
        return "task_id must be a string or null"
    if not is_hex(entry["prev_hash"], 64):
        return "prev_hash must be 64 lowercase hex digits"
    if not is_hex(entry["hash"], 64):
        return "hash must be 64 lowercase hex digits"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Section 5: money rules and balances
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Escrow:
    funder: str
    closed: bool = False
    paid: set[tuple[str, str]] = field(default_factory=set)


class Book:
    """The balances and per-job escrow state of section 5.1, entry by entry."""

    def __init__(self) -> None:
        self.balances: dict[str, int] = {}
        self.jobs: dict[str, _Escrow] = {}
        self.slashed: set[tuple[str, str]] = set()  # (task_id, bonded party)

    def balance(self, account: str) -> int:
        return self.balances.get(account, 0)

    def _overdraft(self, account: str, amount: int) -> str | None:
        have = self.balance(account)
        if have < amount:
            return f"{account} has {have} credits, cannot pay {amount}"
        return None

    def problem(self, e: dict[str, Any]) -> str | None:
        kind, frm, to, amount, job, task = e["kind"], e["from"], e["to"], e["amount"], e["job_id"], e["task_id"]
        if kind == "grant":
            if frm != "mint":
                return "a grant must come from mint"
            if not is_party(to):
                return "a grant must go to a party id"
            if job is not None or task is not None:
                return "a grant has no job_id or task_id"
            if -self.balance("mint") + amount > MAX_CREDITS:
                return f"grants would exceed {MAX_CREDITS} credits in all"
            return None
        if kind in ("bond", "unbond", "slash"):
            return self._bond_problem(e)
        article = "an" if kind == "escrow" else "a"
        if job is None or job == "":
            return f"{article} {kind} needs a job_id"
        account = "escrow:" + job
        state = self.jobs.get(job)
        if kind == "escrow":
            if not is_party(frm):
                return "an escrow must come from a party id"
            if to != account:
                return f"an escrow for job {job} must go to {account}"
            if task is not None:
                return "an escrow has no task_id"
            if state is not None:
                return f"job {job} is already funded"
            return self._overdraft(frm, amount)
        # reward, refund
        if frm != account:
            return f"a {kind} for job {job} must come from {account}"
        if state is None:
            return f"job {job} was never funded"
        if state.closed:
            return f"the escrow of job {job} was already refunded"
        if kind == "reward":
            if not is_party(to):
                return "a reward must go to a party id"
            if task is None or task == "":
                return "a reward needs a task_id"
            if (task, to) in state.paid:
                return f"task {task} already rewarded {to}"
            return self._overdraft(account, amount)
        # refund
        if to != state.funder:
            return f"a refund for job {job} must go to its funder {state.funder}"
        if task is not None:
            return "a refund has no task_id"
        if amount != self.balance(account):
            return f"a refund must return the whole escrow ({self.balance(account)} credits)"
        return None

    def _bond_problem(self, e: dict[str, Any]) -> str | None:
        kind, frm, to, amount, job, task = e["kind"], e["from"], e["to"], e["amount"], e["job_id"], e["task_id"]
        if kind == "bond":  # B1-B4
            if not is_party(frm):
                return "a bond must come from a party id"
            if to != "bond:" + frm:
                return f"a bond from {frm} must go to bond:{frm}"
            if job is not None or task is not None:
                return "a bond has no job_id or task_id"
            return self._overdraft(frm, amount)
        if kind == "unbond":  # U1-U4
            if not is_bond(frm):
                return "an unbond must come from a bond account"
            if to != frm[5:]:
                return f"an unbond from {frm} must go to {frm[5:]}"
            if job is not None or task is not None:
                return "an unbond has no job_id or task_id"
            return self._overdraft(frm, amount)
        # slash, S1-S8
        if job is None or job == "":
            return "a slash needs a job_id"
        if not is_bond(frm):
            return "a slash must come from a bond account"
        if task is None or task == "":
            return "a slash needs a task_id"
        state = self.jobs.get(job)
        if state is None:
            return f"job {job} was never funded"
        if to != state.funder:
            return f"a slash for job {job} must go to its funder {state.funder}"
        party = frm[5:]
        if party == state.funder:
            return f"a slash cannot pay {party} from its own bond"
        if (task, party) in self.slashed:
            return f"task {task} already slashed {party}"
        return self._overdraft(frm, amount)

    def apply(self, e: dict[str, Any]) -> None:
        kind = e["kind"]
        if kind == "slash":
            self.slashed.add((e["task_id"], e["from"][5:]))
        if kind == "escrow":
            self.jobs[e["job_id"]] = _Escrow(funder=e["from"])
        elif kind == "reward":
            self.jobs[e["job_id"]].paid.add((e["task_id"], e["to"]))
        elif kind == "refund":
            self.jobs[e["job_id"]].closed = True
        self.balances[e["from"]] = self.balance(e["from"]) - e["amount"]
        self.balances[e["to"]] = self.balance(e["to"]) + e["amount"]


# ---------------------------------------------------------------------------------------------------------------
# Section 6: the Merkle tree (RFC 9162 2.1.1)
# ---------------------------------------------------------------------------------------------------------------


def leaf_hash(entry_hash_hex: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(entry_hash_hex)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def merkle_root(leaves: list[bytes]) -> bytes:
    """MTH over leaf hashes, without recursion: fold the perfect subtrees of the binary decomposition of n."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    # level-by-level: pair up; an odd node at the end is carried up unchanged (RFC 9162's split gives exactly this)
    level = list(leaves)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _mth_recursive(leaves: list[bytes]) -> bytes:
    """MTH exactly as section 6 writes it; used by the proof builders below."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(_mth_recursive(leaves[:k]), _mth_recursive(leaves[k:]))


def roots_by_size(leaves: list[bytes]) -> list[bytes]:
    """The root of the first s leaves for every s in 0..n."""
    return [merkle_root(leaves[:s]) for s in range(len(leaves) + 1)]


def inclusion_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[0:n]) of section 7.1."""
    n = len(leaves)
    if not 0 <= m < n:
        raise ValueError("index outside the tree")
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return inclusion_path(m, leaves[:k]) + [_mth_recursive(leaves[k:])]
    return inclusion_path(m - k, leaves[k:]) + [_mth_recursive(leaves[:k])]


def consistency_proof(m: int, leaves: list[bytes]) -> list[bytes]:
    """PROOF(m, D[0:n]) of section 7.2."""
    n = len(leaves)
    if not 0 <= m <= n:
        raise ValueError("old size outside the tree")
    if m == 0 or m == n:
        return []
    return _subproof(m, leaves, True)


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [_mth_recursive(leaves)]
    k = _split(n)
    if m <= k:
        return _subproof(m, leaves[:k], complete) + [_mth_recursive(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [_mth_recursive(leaves[:k])]


# ---------------------------------------------------------------------------------------------------------------
# Section 7: verifying proofs (RFC 9162 2.1.3.2 and 2.1.4.2)
# ---------------------------------------------------------------------------------------------------------------


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    if not (0 <= index < size):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False  # proof too long
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    if old < 0 or old > new:
        return False
    if old == 0:
        return len(proof) == 0
    if old == new:
        return len(proof) == 0 and old_root == new_root
    if not proof:
        return False
    path = [old_root, *proof] if old & (old - 1) == 0 else list(proof)
    fn, sn = old - 1, new - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def proof_from_hex(proof: Any) -> list[bytes] | None:
    """A proof as served (a list of 64-lowercase-hex strings, at most 128), or None if it is not one."""
    if type(proof) is not list or len(proof) > MAX_PROOF_HASHES or not all(is_hex(p, 64) for p in proof):
        return None
    return [bytes.fromhex(p) for p in proof]


# ---------------------------------------------------------------------------------------------------------------
# Section 8: checkpoints
# ---------------------------------------------------------------------------------------------------------------


def checkpoint_signing_input(cp: dict[str, Any]) -> bytes:
    return CHECKPOINT_DOMAIN + canonical_msgpack({k: cp[k] for k in ("coordinator", "root", "size", "time")})


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    except Exception:  # noqa: BLE001 - nacl raises CryptoError subclasses for malformed keys
        return False
    return True


def checkpoint_shape_problem(cp: Any) -> str | None:
    if type(cp) is not dict or set(cp) != CHECKPOINT_KEYS:
        return "a checkpoint must have exactly the fields coordinator, size, root, time, sig"
    if not is_party(cp["coordinator"]):
        return "checkpoint coordinator must be a party id"
    if not _nat(cp["size"]):
        return "checkpoint size must be an integer in [0, 2^63)"
    if not is_hex(cp["root"], 64):
        return "checkpoint root must be 64 lowercase hex digits"
    if not _nat(cp["time"]):
        return "checkpoint time must be an integer in [0, 2^63)"
    if not is_hex(cp["sig"], 128):
        return "checkpoint sig must be 128 lowercase hex digits"
    return None


def checkpoint_problem(cp: Any, public_key: bytes) -> str | None:
    """Section 8.3 steps 1-3, with the reference's reasons of that section."""
    shape = checkpoint_shape_problem(cp)
    if shape:
        return shape
    expected = party_id(public_key)
    if cp["coordinator"] != expected:
        return f"checkpoint names coordinator {cp['coordinator']}, expected {expected}"
    if not ed25519_verify(public_key, checkpoint_signing_input(cp), bytes.fromhex(cp["sig"])):
        return "bad checkpoint signature"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Section 4.2 and 4.3: the whole ledger
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    ok: bool
    first_bad: int | None = None
    reason: str | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)  # the accepted entries, in order
    leaves: list[bytes] = field(default_factory=list)
    balances: dict[str, int] = field(default_factory=dict)  # every account that appeared, zeros included

    @property
    def error(self) -> str | None:
        return None if self.ok else f"entry {self.first_bad}: {self.reason}"

    @property
    def length(self) -> int:
        return len(self.entries)

    @property
    def head(self) -> str:
        return self.entries[-1]["hash"] if self.entries else ZERO_HASH

    @property
    def root(self) -> str:
        return merkle_root(self.leaves).hex()

    @property
    def minted(self) -> int:
        return -self.balances.get("mint", 0)

    @property
    def in_escrow(self) -> int:
        return sum(v for k, v in self.balances.items() if k.startswith("escrow:"))

    @property
    def in_accounts(self) -> int:
        return sum(v for k, v in self.balances.items() if is_party(k))

    @property
    def in_bonds(self) -> int:
        return sum(v for k, v in self.balances.items() if k.startswith("bond:"))

    def root_at(self, size: int) -> str:
        return merkle_root(self.leaves[:size]).hex()

    def summary(self) -> dict[str, Any]:
        if not self.ok:
            return {"ok": False, "first_bad_seq": self.first_bad, "error": self.error}
        return {"ok": True, "entries": self.length, "head_hash": self.head, "root_hash": self.root,
                "minted": self.minted, "in_accounts": self.in_accounts, "in_escrow": self.in_escrow,
                "in_bonds": self.in_bonds}


def _check_entry(position: int, e: Any, prev: str, book: Book) -> str | None:
    """Checks 2-6 of one parsed entry; the reason of the first one failed, or None."""
    problem = shape_problem(e)
    if problem:
        return problem
    if e["seq"] != position:
        return f"found seq {e['seq']} where {position} was expected"
    if e["prev_hash"] != prev:
        return f"prev_hash does not match the hash of entry {position - 1}"
    if entry_hash(e) != e["hash"]:
        return "hash does not match its contents"
    return book.problem(e)


def _verify(items: list[tuple[Any, str | None]]) -> Verdict:
    book = Book()
    verdict = Verdict(ok=True)
    prev = ZERO_HASH
    for position, (e, parse_reason) in enumerate(items):
        reason = parse_reason or _check_entry(position, e, prev, book)
        if reason:
            verdict.ok, verdict.first_bad, verdict.reason = False, position, reason
            break
        book.apply(e)
        verdict.entries.append(e)
        verdict.leaves.append(leaf_hash(e["hash"]))
        prev = e["hash"]
    verdict.balances = dict(book.balances)
    return verdict


class _LazyParsed:
    """Parse lines only as far as the verifier reads (it stops at the first failure)."""

    def __init__(self, lines: list[str], strict_json: bool) -> None:
        self.lines, self.strict = lines, strict_json

    def __iter__(self):  # type: ignore[no-untyped-def]
        for line in self.lines:
            yield parse_line(line, strict_json=self.strict)


def verify_export(data: bytes, *, strict_json: bool = True) -> Verdict:
    """Verify a JSON Lines export (the raw bytes of the file)."""
    return _verify(_LazyParsed(export_lines(data), strict_json))  # type: ignore[arg-type]


def verify_entries(entries: list[Any]) -> Verdict:
    """Verify entries already parsed (e.g. the pages of GET /v1/ledger): checks 2-6."""
    return _verify([(e, None if type(e) is dict else "not a JSON object") for e in entries])


# ---------------------------------------------------------------------------------------------------------------
# The HTTP answers of PROTOCOL.md 7.18-7.20, checked as LEDGER.md 7.1, 7.2 and 8.3 say
# ---------------------------------------------------------------------------------------------------------------


class ProofRefused(Exception):
    pass


def check_inclusion_answer(answer: Any, public_key: bytes, *, seq: int | None = None,
                           size: int | None = None) -> dict[str, Any]:
    """An answer of GET /v1/ledger/proof/inclusion: checkpoint (8.3), entry shape and hash, seq < size,
    verify_inclusion. Returns the entry, a fact signed by the coordinator; raises ProofRefused."""
    if type(answer) is not dict or set(answer) != {"entry", "checkpoint", "proof"}:
        raise ProofRefused("an inclusion answer has exactly entry, checkpoint and proof")
    cp, entry = answer["checkpoint"], answer["entry"]
    problem = checkpoint_problem(cp, public_key)
    if problem:
        raise ProofRefused(problem)
    if size is not None and cp["size"] != size:
        raise ProofRefused(f"asked for checkpoint {size}, got {cp['size']}")
    problem = shape_problem(entry)
    if problem:
        raise ProofRefused(problem)
    if entry_hash(entry) != entry["hash"]:
        raise ProofRefused("hash does not match its contents")
    if seq is not None and entry["seq"] != seq:
        raise ProofRefused(f"asked for entry {seq}, got {entry['seq']}")
    if not entry["seq"] < cp["size"]:
        raise ProofRefused(f"entry {entry['seq']} is not covered by checkpoint {cp['size']}")
    proof = proof_from_hex(answer["proof"])
    if proof is None:
        raise ProofRefused("malformed proof")
    if not verify_inclusion(leaf_hash(entry["hash"]), entry["seq"], cp["size"], proof, bytes.fromhex(cp["root"])):
        raise ProofRefused(f"inclusion proof of entry {entry['seq']} in checkpoint {cp['size']} fails")
    return dict(entry)


def check_consistency_answer(answer: Any, public_key: bytes, old_size: int, old_root: str, *,
                             new_size: int | None = None) -> dict[str, Any]:
    """An answer of GET /v1/ledger/proof/consistency?from=old_size: the checkpoint (8.3) and the proof (7.2) against
    the root of old_size the client holds. Returns the (new) checkpoint; raises ProofRefused."""
    if type(answer) is not dict or set(answer) != {"from", "checkpoint", "proof"}:
        raise ProofRefused("a consistency answer has exactly from, checkpoint and proof")
    if type(answer["from"]) is not int or answer["from"] != old_size:
        raise ProofRefused(f"asked from {old_size}, answered from {answer['from']!r}")
    cp = answer["checkpoint"]
    problem = checkpoint_problem(cp, public_key)
    if problem:
        raise ProofRefused(problem)
    if new_size is not None and cp["size"] != new_size:
        raise ProofRefused(f"asked for checkpoint {new_size}, got {cp['size']}")
    proof = proof_from_hex(answer["proof"])
    if proof is None:
        raise ProofRefused("malformed proof")
    if not verify_consistency(old_size, cp["size"], bytes.fromhex(old_root), bytes.fromhex(cp["root"]), proof):
        raise ProofRefused(f"checkpoint {cp['size']} does not extend size {old_size}")
    return dict(cp)


def check_checkpoint_against(verdict: Verdict, cp: Any, public_key: bytes) -> str | None:
    """A checkpoint (checked per 8.3) whose first `size` entries of a valid export have the root it signs."""
    problem = checkpoint_problem(cp, public_key)
    if problem:
        return problem
    if not verdict.ok:
        return "the ledger is broken"
    if cp["size"] > verdict.length:
        return f"the checkpoint covers {cp['size']} entries, the export has {verdict.length}"
    if verdict.root_at(cp["size"]) != cp["root"]:
        return f"the first {cp['size']} entries do not have the root the checkpoint signs"
    return None


# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="independent depin ledger verifier")
    ap.add_argument("file")
    ap.add_argument("--checkpoint")
    ap.add_argument("--key", help="coordinator public key, 64 hex digits")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with open(args.file, "rb") as f:
        verdict = verify_export(f.read())
    out = verdict.summary()
    rc = 0 if verdict.ok else 4
    if verdict.ok and args.checkpoint:
        with open(args.checkpoint, "rb") as f:
            cp = json.loads(f.read())
        problem = check_checkpoint_against(verdict, cp, bytes.fromhex(args.key or ""))
        out["checkpoint"] = problem or "ok"
        rc = 4 if problem else 0
    if args.json:
        out["balances"] = dict(sorted(verdict.balances.items()))
        print(json.dumps(out, indent=1))
    elif verdict.ok:
        print(f"ledger ok: {verdict.length} entries, head {verdict.head}, root {verdict.root}")
        bonds = f" + {verdict.in_bonds} in bonds" if verdict.in_bonds else ""
        print(f"credits: {verdict.minted} minted = {verdict.in_accounts} in accounts + {verdict.in_escrow} in escrow"
              f"{bonds}")
        if args.checkpoint:
            print(f"checkpoint: {out['checkpoint']}")
    else:
        print(f"ledger broken at entry {verdict.first_bad}: {verdict.reason}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
