"""depin.ledger: building the hash chain, verifying it, and finding the first bad entry of a tampered one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest

from depin import ledger
from depin.errors import LedgerError
from tests.spec_examples import SPEC

DATA = Path(__file__).resolve().parents[1] / "data"
CHAIN_TEXT = (DATA / "ledger_chain.jsonl").read_text()
EXPECTED: dict[str, Any] = json.loads((DATA / "ledger_chain.expected.json").read_text())
ZERO = "0" * 64


def _chain() -> list[dict[str, Any]]:
    return list(ledger.iter_jsonl(CHAIN_TEXT.splitlines()))


def _rehash_from(entries: list[dict[str, Any]], start: int) -> None:
    """Re-link entries[start:] as a forger would: fix prev_hash and hash after an edit."""
    for i in range(start, len(entries)):
        entries[i]["prev_hash"] = ZERO if i == 0 else entries[i - 1]["hash"]
        entries[i]["hash"] = ledger.entry_hash(entries[i])


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


# ---- the known-answer chain -----------------------------------------------------------------------------------


def test_known_chain_verifies_to_the_expected_summary() -> None:
    summary = ledger.verify(_chain())
    assert summary.entries == EXPECTED["entries"] == 5
    assert summary.head_hash == EXPECTED["head_hash"]
    assert summary.balances == EXPECTED["balances"]
    assert summary.balances[ledger.MINT] == -sum(v for k, v in summary.balances.items() if k != ledger.MINT)
    assert summary.balances[ledger.MINT] < 0


def test_known_chain_hashes_match_the_expected_file() -> None:
    entries = _chain()
    assert [e["hash"] for e in entries] == EXPECTED["hashes"]
    assert [ledger.entry_hash(e) for e in entries] == EXPECTED["hashes"]
    assert entries[0]["prev_hash"] == ZERO == ledger.GENESIS_PREV
    assert [e["prev_hash"] for e in entries[1:]] == EXPECTED["hashes"][:-1]


def test_known_chain_hashes_by_an_independent_encoder() -> None:
    for entry, expected in zip(_chain(), EXPECTED["hashes"], strict=True):
        assert _hand_hash(entry) == expected
        assert _msgpack_hash(entry) == expected


def test_hand_encoder_matches_a_spelled_out_entry() -> None:
    # One entry written out by hand, byte by byte, to check the independent encoder itself.
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
    assert summary == ledger.Summary(entries=0, head_hash=ZERO, balances={})


def test_ledger_md_worked_example() -> None:
    ex = SPEC["ledger"]
    entries = [json.loads(line) for line in ex["jsonl"]]
    for entry, body_hex, hash_hex in zip(entries, ex["body_hex"], ex["hashes"], strict=True):
        assert _hand_body(entry).hex() == body_hex
        assert ledger.entry_hash(entry) == hash_hex == entry["hash"]
    summary = ledger.verify(ledger.iter_jsonl(ex["jsonl"]))
    assert summary == ledger.Summary(entries=2, head_hash=ex["hashes"][1], balances=ex["balances"])


# ---- building -----------------------------------------------------------------------------------------------


def test_make_entry_links_each_entry_to_the_previous() -> None:
    e0 = ledger.make_entry(None, time=5, kind="reward", from_=ledger.MINT, to="w1", amount=3, job_id="j", task_id="t")
    e1 = ledger.make_entry(e0, time=6, kind="reward", from_=ledger.MINT, to="w2", amount=4)
    assert (e0.seq, e0.prev_hash) == (0, ZERO)
    assert (e1.seq, e1.prev_hash) == (1, e0.hash)
    assert (e1.job_id, e1.task_id) == (None, None)
    assert e0.hash == ledger.entry_hash(e0.to_dict())
    summary = ledger.verify([e0, e1])
    assert summary == ledger.Summary(entries=2, head_hash=e1.hash, balances={"mint": -7, "w1": 3, "w2": 4})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount": 0}, "amount must be a positive integer"),
        ({"amount": -5}, "amount must be a positive integer"),
        ({"amount": 2**63}, "amount must be a positive integer"),
        ({"kind": "transfer"}, "kind must be one of"),
        ({"to": ""}, "to must be a non-empty string"),
        ({"from_": ""}, "from must be a non-empty string"),
        ({"time": -1}, r"time must be an integer in \[0, 2\^6[34]\)"),
        ({"job_id": 7}, "job_id must be a string or null"),
    ],
)
def test_make_entry_refuses_bad_fields(changes: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"time": 1, "kind": "reward", "from_": "mint", "to": "w", "amount": 1}
    args.update(changes)
    with pytest.raises(LedgerError, match=message) as info:
        ledger.make_entry(None, **args)
    assert info.value.seq == 0


def test_hash_covers_every_field_but_hash() -> None:
    base = _chain()[2]
    changed = {
        "seq": 3, "time": base["time"] + 1, "kind": "rewards", "from": "mint2", "to": "wrk-alicf", "amount": 11,
        "job_id": None, "task_id": "job-1-2", "prev_hash": "f" * 64,
    }
    seen = {ledger.entry_hash(base)}
    for field, value in changed.items():
        h = ledger.entry_hash({**base, field: value})
        assert h not in seen, field
        seen.add(h)
    assert ledger.entry_hash({**base, "hash": "f" * 64}) == ledger.entry_hash(base)


# ---- tamper detection -------------------------------------------------------------------------------------------


def _verify_fails_at(entries: list[Any], seq: int, message: str) -> None:
    with pytest.raises(LedgerError, match=message) as info:
        ledger.verify(entries)
    assert info.value.seq == seq


@pytest.mark.parametrize("seq", range(5))
@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", 1_000_000), ("to", "wrk-mallory"), ("time", 1), ("job_id", None), ("task_id", "job-9-9"),
     ("from", "wrk-carol")],
)
def test_changed_field_is_caught_at_its_seq(seq: int, field: str, value: Any) -> None:
    entries = _chain()
    if entries[seq][field] == value:
        value = "job-other"
    entries[seq][field] = value
    _verify_fails_at(entries, seq, f"entry {seq}: hash does not match its contents")


@pytest.mark.parametrize("seq", range(5))
def test_changed_field_with_recomputed_hash_is_caught_at_the_next_seq_or_by_head(seq: int) -> None:
    entries = _chain()
    entries[seq]["amount"] += 1
    entries[seq]["hash"] = ledger.entry_hash(entries[seq])
    if seq < 4:
        _verify_fails_at(entries, seq + 1, f"entry {seq + 1}: prev_hash does not match the hash of entry {seq}")
    else:
        # The last entry can be re-hashed consistently; only the published head hash catches it.
        assert ledger.verify(entries).head_hash != EXPECTED["head_hash"]


@pytest.mark.parametrize("seq", range(5))
def test_changed_hash_is_caught_at_its_seq(seq: int) -> None:
    entries = _chain()
    entries[seq]["hash"] = ("0" if entries[seq]["hash"][0] != "0" else "1") + entries[seq]["hash"][1:]
    _verify_fails_at(entries, seq, f"entry {seq}: hash does not match its contents")


@pytest.mark.parametrize("seq", range(1, 5))
def test_changed_prev_hash_is_caught_at_its_seq(seq: int) -> None:
    entries = _chain()
    entries[seq]["prev_hash"] = entries[seq - 1]["prev_hash"]
    _verify_fails_at(entries, seq, f"entry {seq}: prev_hash does not match the hash of entry {seq - 1}")


@pytest.mark.parametrize("seq", range(4))
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


@pytest.mark.parametrize("pos", range(5))
def test_inserted_copy_is_caught_at_its_position(pos: int) -> None:
    entries = _chain()
    entries.insert(pos, dict(entries[pos]))
    _verify_fails_at(entries, pos + 1, f"entry {pos + 1}: found seq {pos} where {pos + 1} was expected")


@pytest.mark.parametrize("pos", range(5))
def test_inserted_well_formed_entry_is_caught_where_the_old_chain_resumes(pos: int) -> None:
    entries = _chain()
    prev = ledger.Entry.from_dict(entries[pos - 1]) if pos > 0 else None
    forged = ledger.make_entry(prev, time=1, kind="reward", from_="mint", to="wrk-mallory", amount=999)
    entries.insert(pos, forged.to_dict())
    _verify_fails_at(entries, pos + 1, f"entry {pos + 1}: found seq {pos} where {pos + 1} was expected")


def test_inserted_entry_with_everything_rehashed_moves_the_head() -> None:
    entries = _chain()
    forged = ledger.make_entry(ledger.Entry.from_dict(entries[1]), time=1, kind="reward", from_="mint",
                               to="wrk-mallory", amount=999)
    entries.insert(2, forged.to_dict())
    for i, e in enumerate(entries):
        e["seq"] = i
    _rehash_from(entries, 3)
    assert ledger.verify(entries).head_hash != EXPECTED["head_hash"]


@pytest.mark.parametrize("seq", range(4))
def test_swapped_pair_is_caught_at_the_first_of_them(seq: int) -> None:
    entries = _chain()
    entries[seq], entries[seq + 1] = entries[seq + 1], entries[seq]
    _verify_fails_at(entries, seq, f"entry {seq}: found seq {seq + 1} where {seq} was expected")


@pytest.mark.parametrize("seq", range(5))
@pytest.mark.parametrize("wrong", [7, 100])
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
    entries[4]["time"] = 2**63 - 1
    entries[4]["hash"] = ledger.entry_hash(entries[4])
    assert ledger.verify(entries).entries == 5


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
