"""depin.ledger: building the hash chain, the Book and its Merkle frontier, verifying an export, and finding the
first bad entry of a tampered one (a broken chain or a broken money rule)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest

from depin import accounts, ledger, merkle
from depin.errors import LedgerError
from tests.data.make_ledger_vectors import ALICE, BOB, CAROL, DAVE, J1, J2
from tests.spec_examples import SPEC

DATA = Path(__file__).resolve().parents[1] / "data"
CHAIN_TEXT = (DATA / "ledger_chain.jsonl").read_text()
EXPECTED: dict[str, Any] = json.loads((DATA / "ledger_chain.expected.json").read_text())
N = EXPECTED["entries"]
ZERO = "0" * 64
MALLORY = "mallory" + "7" * 25
E1, E2 = accounts.escrow_account(J1), accounts.escrow_account(J2)


def _chain() -> list[dict[str, Any]]:
    return list(ledger.iter_jsonl(CHAIN_TEXT.splitlines()))


def _rehash_from(entries: list[dict[str, Any]], start: int) -> None:
    """Re-link entries[start:] as a forger would: fix prev_hash and hash after an edit."""
    for i in range(start, len(entries)):
        entries[i]["prev_hash"] = ZERO if i == 0 else entries[i - 1]["hash"]
        entries[i]["hash"] = ledger.entry_hash(entries[i])


def _leaves(entries: list[dict[str, Any]]) -> list[bytes]:
    return [ledger.leaf_of(e["hash"]) for e in entries]


def test_the_chain_is_the_market_the_vectors_promise() -> None:
    # The tamper tests below lean on this shape: rewards from one escrow, two refunds, grants at 0 and 2.
    kinds = [e["kind"] for e in _chain()]
    assert N == len(kinds) == 22
    assert (kinds[0], kinds[1], kinds[2], kinds[3], kinds[9], kinds[12]) == (
        "grant", "escrow", "grant", "reward", "refund", "refund")
    assert set(kinds[13:]) == {"bond", "unbond", "slash", "escrow", "reward", "refund"}  # bonds, after the market


# ---- an independent encoder for the fixed shape of an entry ---------------------------------------------------


def _mp_str(s: str) -> bytes:
    b = s.encode("utf-8")
    assert len(b) < 256
    return (bytes([0xA0 | len(b)]) if len(b) < 32 else bytes([0xD9, len(b)])) + b


def _mp_uint(n: int) -> bytes:
    assert n >= 0
    if n < 128:
        return bytes([n])
    if n < 2**8:
        return b"\xcc" + struct.pack(">B", n)
    if n < 2**16:
        return b"\xcd" + struct.pack(">H", n)
    if n < 2**32:
        return b"\xce" + struct.pack(">I", n)
    return b"\xcf" + struct.pack(">Q", n)


def _mp_value(v: Any) -> bytes:
    if v is None:
        return b"\xc0"
    if isinstance(v, int):
        return _mp_uint(v)
    return _mp_str(v)


def _hand_body(entry: dict[str, Any]) -> bytes:
    """A byte-by-byte msgpack of the nine hashed fields, keys sorted as bytes."""
    keys = sorted((k for k in entry if k != "hash"), key=lambda k: k.encode("utf-8"))
    assert len(keys) == 9
    return bytes([0x80 | len(keys)]) + b"".join(_mp_str(k) + _mp_value(entry[k]) for k in keys)


def _hand_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of the domain tag and the hand-made body."""
    return hashlib.sha256(b"depin/1/ledger-entry\x00" + _hand_body(entry)).hexdigest()


def _msgpack_hash(entry: dict[str, Any]) -> str:
    """The same hash through msgpack's own Packer, keys inserted in byte order."""
    ordered = {k: entry[k] for k in sorted((k for k in entry if k != "hash"), key=lambda k: k.encode("utf-8"))}
    body = msgpack.Packer(use_bin_type=True, use_single_float=False).pack(ordered)
    return hashlib.sha256(b"depin/1/ledger-entry\x00" + body).hexdigest()


# ---- the known-answer chain (tests/data/ledger_chain.*; the full vector checks are in test_ledger_vectors.py) ---


def test_known_chain_verifies_to_the_expected_summary() -> None:
    summary = ledger.verify(_chain())
    assert summary.entries == EXPECTED["entries"]
    assert summary.head_hash == EXPECTED["head_hash"] == EXPECTED["hashes"][-1]
    assert summary.root_hash == EXPECTED["root_hash"] == EXPECTED["roots"][-1]
    assert summary.balances == EXPECTED["balances"]
    assert summary.minted == EXPECTED["minted"] == 1500
    assert summary.balances[ledger.MINT] == -sum(v for k, v in summary.balances.items() if k != ledger.MINT)


def test_known_chain_hashes_match_the_expected_file() -> None:
    entries = _chain()
    assert [e["hash"] for e in entries] == EXPECTED["hashes"]
    assert [ledger.entry_hash(e) for e in entries] == EXPECTED["hashes"]
    assert entries[0]["prev_hash"] == ZERO == ledger.GENESIS_PREV
    assert [e["prev_hash"] for e in entries[1:]] == EXPECTED["hashes"][:-1]


def test_known_chain_hashes_by_an_independent_encoder() -> None:
    for entry, expected, body in zip(_chain(), EXPECTED["hashes"], EXPECTED["body_hex"], strict=True):
        assert _hand_body(entry).hex() == body
        assert _hand_hash(entry) == expected
        assert _msgpack_hash(entry) == expected


def test_hand_encoder_matches_a_spelled_out_entry() -> None:
    # One entry written out by hand, byte by byte, to check the independent encoder itself (hashing ignores the
    # money rules: this entry would be refused by verify, which is not the point here).
    e = {"seq": 1, "time": 300, "kind": "reward", "from": "mint", "to": "w", "amount": 70000,
         "job_id": None, "task_id": "t", "prev_hash": "ab" * 32, "hash": ""}
    body = (
        b"\x89"
        + b"\xa6amount" + b"\xce\x00\x01\x11\x70"
        + b"\xa4from" + b"\xa4mint"
        + b"\xa6job_id" + b"\xc0"
        + b"\xa4kind" + b"\xa6reward"
        + b"\xa9prev_hash" + b"\xd9\x40" + b"ab" * 32
        + b"\xa3seq" + b"\x01"
        + b"\xa7task_id" + b"\xa1t"
        + b"\xa4time" + b"\xcd\x01\x2c"
        + b"\xa2to" + b"\xa1w"
    )
    expected = hashlib.sha256(b"depin/1/ledger-entry\x00" + body).hexdigest()
    assert _hand_hash(e) == expected
    assert ledger.entry_hash(e) == expected


def test_make_entry_rebuilds_the_known_chain() -> None:
    prev = None
    for want in _chain():
        prev = ledger.make_entry(
            prev, time=want["time"], kind=want["kind"], from_=want["from"], to=want["to"], amount=want["amount"],
            job_id=want["job_id"], task_id=want["task_id"],
        )
        assert prev.to_dict() == want


def test_entry_round_trips_through_its_dict() -> None:
    for d in _chain():
        e = ledger.Entry.from_dict(d)
        assert e.from_ == d["from"]
        assert e.to_dict() == d
        assert list(e.to_dict()) == list(ledger.FIELDS)


def test_verify_accepts_entry_objects_and_maps_alike() -> None:
    maps = _chain()
    assert ledger.verify(ledger.Entry.from_dict(d) for d in maps) == ledger.verify(maps)


def test_empty_chain() -> None:
    summary = ledger.verify([])
    assert summary == ledger.Summary(entries=0, head_hash=ZERO, root_hash=hashlib.sha256(b"").hexdigest(),
                                     balances={})
    assert summary.minted == 0


def test_ledger_md_worked_example() -> None:
    ex = SPEC["ledger"]
    entries = [json.loads(line) for line in ex["jsonl"]]
    for entry, body_hex, hash_hex in zip(entries, ex["body_hex"], ex["hashes"], strict=True):
        assert _hand_body(entry).hex() == body_hex
        assert ledger.entry_hash(entry) == hash_hex == entry["hash"]
    summary = ledger.verify(ledger.iter_jsonl(ex["jsonl"]))
    assert (summary.entries, summary.head_hash, summary.balances) == (len(entries), ex["hashes"][-1], ex["balances"])
    assert summary.root_hash == merkle.naive_root(_leaves(entries)).hex()


# ---- building -----------------------------------------------------------------------------------------------


def test_make_entry_links_each_entry_to_the_previous() -> None:
    e0 = ledger.make_entry(None, time=5, kind="grant", from_=ledger.MINT, to=ALICE, amount=3)
    e1 = ledger.make_entry(e0, time=6, kind="escrow", from_=ALICE, to=E1, amount=2, job_id=J1)
    assert (e0.seq, e0.prev_hash) == (0, ZERO)
    assert (e1.seq, e1.prev_hash) == (1, e0.hash)
    assert (e0.job_id, e0.task_id, e1.task_id) == (None, None, None)
    assert e0.hash == ledger.entry_hash(e0.to_dict())
    summary = ledger.verify([e0, e1])
    assert summary == ledger.Summary(entries=2, head_hash=e1.hash,
                                     root_hash=merkle.naive_root([ledger.leaf_of(e0.hash),
                                                                  ledger.leaf_of(e1.hash)]).hex(),
                                     balances={"mint": -3, ALICE: 1, E1: 2})


def test_make_entry_checks_the_shape_but_not_the_money_rules() -> None:
    # A reward from the mint is well formed (make_entry builds it) but breaks a rule (verify refuses it).
    e = ledger.make_entry(None, time=1, kind="reward", from_=ledger.MINT, to=CAROL, amount=5, job_id=J1,
                          task_id=f"{J1}-0")
    with pytest.raises(LedgerError, match=f"entry 0: a reward for job {J1} must come from {E1}") as info:
        ledger.verify([e])
    assert info.value.seq == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount": 0}, "amount must be a positive integer"),
        ({"amount": -5}, "amount must be a positive integer"),
        ({"amount": 2**63}, "amount must be a positive integer"),
        ({"kind": "transfer"}, "kind must be one of grant, escrow, reward, refund"),
        ({"kind": "mint"}, "kind must be one of"),
        ({"to": ""}, "to must be a non-empty string"),
        ({"from_": ""}, "from must be a non-empty string"),
        ({"time": -1}, r"time must be an integer in \[0, 2\^63\)"),
        ({"job_id": 7}, "job_id must be a string or null"),
    ],
)
def test_make_entry_refuses_bad_fields(changes: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"time": 1, "kind": "grant", "from_": "mint", "to": ALICE, "amount": 1}
    args.update(changes)
    with pytest.raises(LedgerError, match=message) as info:
        ledger.make_entry(None, **args)
    assert info.value.seq == 0


def test_the_kinds_are_the_market_then_the_bonds_in_order() -> None:
    assert ledger.KINDS == ("grant", "escrow", "reward", "refund", "bond", "unbond", "slash")


def test_the_shape_check_names_every_kind() -> None:
    fields = ledger.make_entry(None, time=0, kind="grant", from_=ledger.MINT, to=ALICE, amount=1).to_dict()
    with pytest.raises(LedgerError, match=r"^entry 0: kind must be one of grant, escrow, reward, refund, bond, "
                                          r"unbond, slash$"):
        ledger.Entry.from_dict({**fields, "kind": "transfer"})


def test_hash_covers_every_field_but_hash() -> None:
    base = _chain()[3]
    changed = {
        "seq": 4, "time": base["time"] + 1, "kind": "refund", "from": E2, "to": DAVE, "amount": 8,
        "job_id": J2, "task_id": None, "prev_hash": "f" * 64,
    }
    seen = {ledger.entry_hash(base)}
    for field, value in changed.items():
        assert base[field] != value, field
        h = ledger.entry_hash({**base, field: value})
        assert h not in seen, field
        seen.add(h)
    assert ledger.entry_hash({**base, "hash": "f" * 64}) == ledger.entry_hash(base)


# ---- the Book: running state, Merkle frontier ------------------------------------------------------------------


def _append_all(book: ledger.Book, entries: list[dict[str, Any]]) -> list[list[tuple[int, int, bytes]]]:
    done = []
    for e in entries:
        entry, nodes = book.append(time=e["time"], kind=e["kind"], from_=e["from"], to=e["to"], amount=e["amount"],
                                   job_id=e["job_id"], task_id=e["task_id"])
        assert entry.to_dict() == e
        done.append(nodes)
    return done


def test_book_root_equals_the_naive_root_at_every_size() -> None:
    entries = _chain()
    book = ledger.Book()
    assert (book.size, book.root()) == (0, merkle.EMPTY_ROOT)
    for n, e in enumerate(entries, start=1):
        _append_all(book, [e])
        assert book.size == n
        assert book.root() == merkle.naive_root(_leaves(entries[:n]))
        assert book.root().hex() == EXPECTED["roots"][n] == ledger.verify(entries[:n]).root_hash


def test_book_append_returns_exactly_the_nodes_it_completes() -> None:
    entries = _chain()
    tree = merkle.MemoryTree(_leaves(entries))
    seen: set[tuple[int, int]] = set()
    for nodes in _append_all(ledger.Book(), entries):
        assert nodes[0][0] == 0  # the leaf first
        for level, index, h in nodes:
            assert h == tree.node(level, index)
            assert (level, index) not in seen
            seen.add((level, index))
    # Every perfect subtree of 22 leaves: 22 leaves, 11 pairs, 5 fours, 2 eights, 1 sixteen.
    assert sorted(seen) == sorted([(0, i) for i in range(22)] + [(1, i) for i in range(11)]
                                  + [(2, i) for i in range(5)] + [(3, 0), (3, 1), (4, 0)])


def test_book_append_applies_the_money_rules_and_a_refused_entry_changes_nothing() -> None:
    book = ledger.Book()
    _append_all(book, _chain()[:3])
    before = (book.size, book.head, book.root(), dict(book.accounts.balances))
    with pytest.raises(LedgerError, match=f"entry 3: {E1} has 63 credits, cannot pay 64") as info:
        book.append(time=1, kind="reward", from_=E1, to=CAROL, amount=64, job_id=J1, task_id=f"{J1}-0")
    assert info.value.seq == 3
    with pytest.raises(LedgerError, match="entry 3: amount must be a positive integer"):
        book.append(time=1, kind="reward", from_=E1, to=CAROL, amount=0, job_id=J1, task_id=f"{J1}-0")
    assert (book.size, book.head, book.root(), book.accounts.balances) == before
    _append_all(book, _chain()[3:])  # and the honest rest still goes on
    assert book.root().hex() == EXPECTED["root_hash"]


def test_book_apply_takes_only_the_next_entry() -> None:
    entries = [ledger.Entry.from_dict(d) for d in _chain()]
    book = ledger.Book()
    book.apply(entries[0])
    with pytest.raises(LedgerError, match="entry 1: found seq 2 where 1 was expected") as info:
        book.apply(entries[2])
    assert info.value.seq == 1 and book.size == 1
    with pytest.raises(LedgerError, match="entry 1: found seq 0 where 1 was expected"):
        book.apply(entries[0])


@pytest.mark.parametrize(("head_seq", "leaves"), [(None, 1), (0, 0), (4, 4), (4, 6), (12, 8)])
def test_book_refuses_a_frontier_of_the_wrong_size(head_seq: int | None, leaves: int) -> None:
    entries = [ledger.Entry.from_dict(d) for d in _chain()]
    head = None if head_seq is None else entries[head_seq]
    chain_size = 0 if head_seq is None else head_seq + 1
    frontier = merkle.Frontier.from_source(merkle.MemoryTree(_leaves(_chain())), leaves)
    with pytest.raises(LedgerError, match=f"Merkle tree has {leaves} leaves but the chain {chain_size} entries"):
        ledger.Book(head, frontier=frontier)


def test_a_book_resumed_from_its_parts_goes_on_like_one_that_replayed_everything() -> None:
    # What the coordinator does on restart: head, balances and escrows from the database, frontier from stored nodes.
    maps = _chain()
    entries = [ledger.Entry.from_dict(d) for d in maps]
    acc = accounts.Accounts()
    for e in entries[:8]:
        acc.apply(e)
    tree = merkle.MemoryTree(_leaves(maps[:8]))
    book = ledger.Book(entries[7], acc, merkle.Frontier.from_source(tree, 8))
    assert book.size == 8 and book.root().hex() == EXPECTED["roots"][8]
    for e in entries[8:]:
        book.apply(e)
    assert book.root().hex() == EXPECTED["root_hash"]
    assert book.accounts.balances == EXPECTED["balances"]


def test_summary_minted_is_what_the_mint_gave() -> None:
    s = ledger.Summary(entries=1, head_hash=ZERO, root_hash=ZERO, balances={"mint": -42, ALICE: 42})
    assert s.minted == 42
    assert ledger.Summary(entries=0, head_hash=ZERO, root_hash=ZERO, balances={}).minted == 0


# ---- tamper detection -------------------------------------------------------------------------------------------


def _verify_fails_at(entries: list[Any], seq: int, message: str) -> None:
    with pytest.raises(LedgerError, match=message) as info:
        ledger.verify(entries)
    assert info.value.seq == seq


@pytest.mark.parametrize("seq", range(N))
@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", 1_000_000), ("to", MALLORY), ("time", 1), ("job_id", None), ("task_id", "job-9-9"),
     ("from", CAROL), ("kind", "grant")],
)
def test_changed_field_is_caught_at_its_seq(seq: int, field: str, value: Any) -> None:
    entries = _chain()
    if entries[seq][field] == value:
        value = "refund" if field == "kind" else "job-other"
    entries[seq][field] = value
    _verify_fails_at(entries, seq, f"entry {seq}: hash does not match its contents")


@pytest.mark.parametrize("seq", range(N))
def test_changed_field_with_recomputed_hash_is_caught_at_the_next_seq_or_by_head_and_root(seq: int) -> None:
    entries = _chain()
    entries[seq]["time"] += 1  # no money rule looks at the time
    entries[seq]["hash"] = ledger.entry_hash(entries[seq])
    if seq < N - 1:
        _verify_fails_at(entries, seq + 1, f"entry {seq + 1}: prev_hash does not match the hash of entry {seq}")
    else:
        # The last entry can be re-hashed consistently; only the published head hash or signed root catches it.
        summary = ledger.verify(entries)
        assert summary.head_hash != EXPECTED["head_hash"]
        assert summary.root_hash != EXPECTED["root_hash"]


@pytest.mark.parametrize("seq", range(N))
def test_changed_hash_is_caught_at_its_seq(seq: int) -> None:
    entries = _chain()
    entries[seq]["hash"] = ("0" if entries[seq]["hash"][0] != "0" else "1") + entries[seq]["hash"][1:]
    _verify_fails_at(entries, seq, f"entry {seq}: hash does not match its contents")


@pytest.mark.parametrize("seq", range(1, N))
def test_changed_prev_hash_is_caught_at_its_seq(seq: int) -> None:
    entries = _chain()
    entries[seq]["prev_hash"] = entries[seq - 1]["prev_hash"]
    _verify_fails_at(entries, seq, f"entry {seq}: prev_hash does not match the hash of entry {seq - 1}")


@pytest.mark.parametrize("seq", range(N - 1))
def test_removed_entry_is_caught_at_its_seq(seq: int) -> None:
    entries = _chain()
    del entries[seq]
    _verify_fails_at(entries, seq, f"entry {seq}: found seq {seq + 1} where {seq} was expected")


def test_removed_entry_with_renumbering_is_caught_at_its_seq() -> None:
    entries = _chain()
    del entries[2]
    for i, e in enumerate(entries):
        e["seq"] = i
    _verify_fails_at(entries, 2, "entry 2: prev_hash does not match the hash of entry 1")


@pytest.mark.parametrize("pos", range(N))
def test_inserted_copy_is_caught_at_its_position(pos: int) -> None:
    entries = _chain()
    entries.insert(pos, dict(entries[pos]))
    _verify_fails_at(entries, pos + 1, f"entry {pos + 1}: found seq {pos} where {pos + 1} was expected")


@pytest.mark.parametrize("pos", range(N))
def test_inserted_well_formed_entry_is_caught_where_the_old_chain_resumes(pos: int) -> None:
    # A grant to Mallory keeps every money rule, so only the chain catches it: at the entry after it.
    entries = _chain()
    prev = ledger.Entry.from_dict(entries[pos - 1]) if pos > 0 else None
    forged = ledger.make_entry(prev, time=1, kind="grant", from_="mint", to=MALLORY, amount=999)
    entries.insert(pos, forged.to_dict())
    _verify_fails_at(entries, pos + 1, f"entry {pos + 1}: found seq {pos} where {pos + 1} was expected")


def test_inserted_entry_with_everything_rehashed_moves_the_head_and_the_root() -> None:
    entries = _chain()
    forged = ledger.make_entry(ledger.Entry.from_dict(entries[1]), time=1, kind="grant", from_="mint",
                               to=MALLORY, amount=999)
    entries.insert(2, forged.to_dict())
    for i, e in enumerate(entries):
        e["seq"] = i
    _rehash_from(entries, 3)
    summary = ledger.verify(entries)  # a consistent rewrite: only a kept head or checkpoint catches it
    assert summary.head_hash != EXPECTED["head_hash"]
    assert merkle.naive_root(_leaves(entries)[:2]).hex() == EXPECTED["roots"][2]  # the common prefix
    assert merkle.naive_root(_leaves(entries)[:3]).hex() != EXPECTED["roots"][3]


@pytest.mark.parametrize("seq", range(N - 1))
def test_swapped_pair_is_caught_at_the_first_of_them(seq: int) -> None:
    entries = _chain()
    entries[seq], entries[seq + 1] = entries[seq + 1], entries[seq]
    _verify_fails_at(entries, seq, f"entry {seq}: found seq {seq + 1} where {seq} was expected")


@pytest.mark.parametrize("seq", range(N))
@pytest.mark.parametrize("wrong", [N + 1, 100])
def test_wrong_seq_is_caught_at_its_position(seq: int, wrong: int) -> None:
    entries = _chain()
    entries[seq]["seq"] = wrong
    entries[seq]["hash"] = ledger.entry_hash(entries[seq])
    _verify_fails_at(entries, seq, f"entry {seq}: found seq {wrong} where {seq} was expected")


def test_chain_not_starting_at_zero() -> None:
    _verify_fails_at(_chain()[1:], 0, "entry 0: found seq 1 where 0 was expected")


def test_first_entry_must_point_at_genesis() -> None:
    entries = _chain()
    entries[0]["prev_hash"] = "1" * 64
    entries[0]["hash"] = ledger.entry_hash(entries[0])
    _verify_fails_at(entries, 0, "entry 0: prev_hash does not match the hash of entry -1")


def test_entry_objects_are_checked_too() -> None:
    entries = [ledger.Entry.from_dict(d) for d in _chain()]
    entries[3] = dataclasses.replace(entries[3], amount=1)
    _verify_fails_at(entries, 3, "entry 3: hash does not match its contents")


# ---- money rules: a forger who re-links the whole chain after an edit is still caught at the edited entry -------


@pytest.mark.parametrize(
    ("seq", "changes", "message"),
    [
        (0, {"from": CAROL}, "a grant must come from mint"),
        (0, {"amount": 2**63 - 1}, None),  # allowed: the cap is on the total (test_accounts covers it)
        (1, {"amount": 1001}, f"{ALICE} has 1000 credits, cannot pay 1001"),
        (1, {"to": E2}, f"an escrow for job {J1} must go to {E1}"),
        (3, {"amount": 64}, f"{E1} has 63 credits, cannot pay 64"),
        (3, {"from": ledger.MINT}, f"a reward for job {J1} must come from {E1}"),
        (4, {"to": CAROL}, f"task {J1}-0 already rewarded {CAROL}"),
        (4, {"task_id": None}, "a reward needs a task_id"),
        (5, {"job_id": J1, "to": E1}, f"job {J1} is already funded"),
        (9, {"to": ALICE}, f"a refund for job {J2} must go to its funder {BOB}"),
        (9, {"amount": 19}, r"a refund must return the whole escrow \(20 credits\)"),
        (10, {"from": E2, "job_id": J2, "task_id": f"{J2}-0"}, f"the escrow of job {J2} was already refunded"),
        (12, {"amount": 15}, r"a refund must return the whole escrow \(14 credits\)"),
        (12, {"kind": "reward", "task_id": f"{J1}-9"}, None),  # paying the funder as a worker keeps every rule
    ],
)
def test_a_broken_money_rule_is_caught_at_its_seq_even_when_the_chain_is_relinked(
    seq: int, changes: dict[str, Any], message: str | None
) -> None:
    entries = _chain()
    entries[seq].update(changes)
    _rehash_from(entries, seq)
    if message is None:
        ledger.verify(entries[: seq + 1])  # the edit itself keeps the rules
    else:
        _verify_fails_at(entries, seq, f"entry {seq}: {message}")


def test_an_extra_refund_after_the_last_is_caught() -> None:
    entries = [ledger.Entry.from_dict(d) for d in _chain()]
    extra = ledger.make_entry(entries[-1], time=1, kind="refund", from_=E1, to=ALICE, amount=1, job_id=J1)
    _verify_fails_at([*entries, extra], N, f"entry {N}: the escrow of job {J1} was already refunded")


def test_removing_an_escrow_and_relinking_is_caught_at_the_first_reward() -> None:
    entries = _chain()
    del entries[1]
    for i, e in enumerate(entries):
        e["seq"] = i
    _rehash_from(entries, 1)
    _verify_fails_at(entries, 2, f"entry 2: job {J1} was never funded")


def test_verify_never_lets_a_party_balance_go_below_zero() -> None:
    # Whatever verify accepts keeps every account but the mint at or above zero, at every prefix.
    entries = _chain()
    for n in range(N + 1):
        balances = ledger.verify(entries[:n]).balances
        assert all(v >= 0 for k, v in balances.items() if k != ledger.MINT)
        assert sum(balances.values()) == 0


def test_entry_objects_get_the_same_shape_checks_as_maps() -> None:
    # verify() says it checks "shape, chain, money rules"; an Entry built directly (as coordinator.ledger_store does
    # from database rows) must not skip the first of them.
    e0 = ledger.make_entry(None, time=1, kind="grant", from_=ledger.MINT, to=ALICE, amount=10)
    fields = {"seq": 1, "time": 2, "kind": "grant", "from": ledger.MINT, "to": BOB, "amount": -5, "job_id": None,
              "task_id": None, "prev_hash": e0.hash}
    e1 = ledger.Entry(1, 2, "grant", ledger.MINT, BOB, -5, None, None, e0.hash, ledger.entry_hash(fields))
    _verify_fails_at([e0.to_dict(), e1.to_dict()], 1, "entry 1: amount must be a positive integer")  # maps: refused
    _verify_fails_at([e0, e1], 1, "entry 1: amount must be a positive integer")  # objects: accepted today


# ---- entry shape -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("amount", 0, "entry 2: amount must be a positive integer"),
        ("amount", 1.0, "entry 2: amount must be a positive integer"),
        ("amount", True, "entry 2: amount must be a positive integer"),
        ("amount", "10", "entry 2: amount must be a positive integer"),
        ("amount", 2**63, "entry 2: amount must be a positive integer"),
        ("time", -1, r"entry 2: time must be an integer in \[0, 2\^6[34]\)"),
        ("time", 1.5, r"entry 2: time must be an integer in \[0, 2\^6[34]\)"),
        ("time", 2**64, r"entry 2: time must be an integer in \[0, 2\^6[34]\)"),
        ("kind", "transfer", "entry 2: kind must be one of"),
        ("kind", None, "entry 2: kind must be one of"),
        ("from", "", "entry 2: from must be a non-empty string"),
        ("to", 5, "entry 2: to must be a non-empty string"),
        ("job_id", 1, "entry 2: job_id must be a string or null"),
        ("task_id", ["t"], "entry 2: task_id must be a string or null"),
        ("prev_hash", "AB" * 32, "entry 2: prev_hash must be 64 lowercase hex digits"),
        ("hash", "ab" * 31, "entry 2: hash must be 64 lowercase hex digits"),
        ("hash", None, "entry 2: hash must be 64 lowercase hex digits"),
    ],
)
def test_malformed_entry_is_caught_at_its_seq(field: str, value: Any, message: str) -> None:
    entries = _chain()
    entries[2][field] = value
    _verify_fails_at(entries, 2, message)


def test_largest_time_is_accepted() -> None:
    entries = _chain()
    entries[-1]["time"] = 2**63 - 1
    entries[-1]["hash"] = ledger.entry_hash(entries[-1])
    assert ledger.verify(entries).entries == N


@pytest.mark.parametrize("field", ["time", "seq"])
def test_seq_and_time_must_be_below_2_63(field: str) -> None:
    # LEDGER.md section 1: seq and time are integers in [0, 2^63).
    entry = _chain()[0]
    entry[field] = 2**63
    entry["hash"] = ledger.entry_hash(entry)
    with pytest.raises(LedgerError, match=f"entry 0: {field} must be an integer in \\[0, 2\\^63\\)") as info:
        ledger.verify([entry])
    assert info.value.seq == 0


@pytest.mark.parametrize("value", [-1, 1.0, "2", None, True, 2**64])
def test_malformed_seq_is_caught_at_its_position(value: Any) -> None:
    entries = _chain()
    entries[2]["seq"] = value
    _verify_fails_at(entries, 2, r"entry 2: seq must be an integer in \[0, 2\^6[34]\)")


def test_malformed_entry_with_a_wrong_seq_is_caught_at_its_position() -> None:
    entries = _chain()
    entries[2]["seq"] = 7
    entries[2]["amount"] = 0
    _verify_fails_at(entries, 2, "entry 2: amount must be a positive integer")


def test_missing_or_extra_field() -> None:
    entries = _chain()
    del entries[1]["task_id"]
    _verify_fails_at(entries, 1, "entry 1: entry must have exactly the fields seq, time, kind, from, to, amount")
    entries = _chain()
    entries[3]["note"] = "x"
    _verify_fails_at(entries, 3, "entry 3: entry must have exactly the fields")


def test_entry_that_is_not_a_map_is_caught_at_its_position() -> None:
    entries: list[Any] = _chain()
    entries[1] = ["not", "a", "map"]
    _verify_fails_at(entries, 1, "entry 1: entry must have exactly the fields")


def test_from_dict_names_the_seq_the_entry_claims() -> None:
    d = _chain()[3]
    d["amount"] = -1
    with pytest.raises(LedgerError, match="entry 3: amount must be a positive integer") as info:
        ledger.Entry.from_dict(d)
    assert info.value.seq == 3


@pytest.mark.parametrize("kind", [["reward"], {"reward": 1}])
def test_unhashable_kind_is_a_ledger_error(kind: Any) -> None:
    entries = _chain()
    entries[2]["kind"] = kind
    _verify_fails_at(entries, 2, "entry 2: kind must be one of")


# ---- JSON Lines --------------------------------------------------------------------------------------------------


def test_iter_jsonl_skips_blank_lines() -> None:
    lines = ["", *CHAIN_TEXT.splitlines(), "   ", ""]
    assert list(ledger.iter_jsonl(lines)) == _chain()


def test_iter_jsonl_bad_json_is_named_by_entry_position() -> None:
    lines = ["", *CHAIN_TEXT.splitlines()]  # a blank line does not shift the position
    lines[3] = lines[3][:-1]
    with pytest.raises(LedgerError, match=r"entry 2: not a valid JSON object \(") as info:
        list(ledger.iter_jsonl(lines))
    assert info.value.seq == 2


def test_iter_jsonl_not_an_object() -> None:
    with pytest.raises(LedgerError, match="entry 1: not a JSON object") as info:
        list(ledger.iter_jsonl(['{"a": 1}', "", "[1, 2]"]))
    assert info.value.seq == 1


def test_iter_jsonl_refuses_duplicate_keys() -> None:
    # {"amount": 10, ..., "amount": 1000000}: a reader that keeps the last key would see another entry than the hash.
    lines = CHAIN_TEXT.splitlines()
    lines[1] = lines[1][:-1] + ',"amount":1000000}'
    with pytest.raises(LedgerError, match=r"entry 1: not a valid JSON object \(duplicate key\)") as info:
        list(ledger.iter_jsonl(lines))
    assert info.value.seq == 1


def test_iter_jsonl_then_verify_reads_the_known_chain() -> None:
    assert ledger.verify(ledger.iter_jsonl(CHAIN_TEXT.splitlines())).head_hash == EXPECTED["head_hash"]


def test_lone_surrogate_string_is_a_ledger_error_at_its_position() -> None:
    # JSON can carry "\ud800", which is not encodable as UTF-8 and so cannot be hashed: a bad entry, not a crash.
    entries = _chain()
    lines = [json.dumps(e) for e in entries]
    lines[3] = lines[3].replace(json.dumps(entries[3]["to"]), '"\\ud800"')
    with pytest.raises(LedgerError, match="entry 3: to must be a non-empty string") as info:
        ledger.verify(ledger.iter_jsonl(lines))
    assert info.value.seq == 3


def test_deeply_nested_line_is_a_ledger_error_at_its_position() -> None:
    lines = [json.dumps(e) for e in _chain()[:2]] + ["[" * 100_000 + "]" * 100_000]
    with pytest.raises(LedgerError, match="entry 2: not a valid JSON object") as info:
        ledger.verify(ledger.iter_jsonl(lines))
    assert info.value.seq == 2


def test_verify_notes_the_root_at_a_checkpoint_size() -> None:
    entries = _chain()
    for size in range(len(entries) + 1):
        summary = ledger.verify(entries, at_size=size)
        assert summary.root_at == merkle.naive_root([ledger.leaf_of(e["hash"]) for e in entries[:size]]).hex()
    assert ledger.verify(entries, at_size=len(entries) + 1).root_at is None  # never reached
    assert ledger.verify(entries).root_at is None
