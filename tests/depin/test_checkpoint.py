"""depin.checkpoint: signed tree heads, their JSON form, when one is due, and the two checks a witness makes with
them (a newer checkpoint extends an older one; an entry is in a signed tree)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from depin import checkpoint, codec, ledger, merkle
from depin.checkpoint import Checkpoint, check_consistent, check_included, due, hashes_from_json, sign
from depin.crypto import SigningKey
from depin.errors import LedgerError, VerificationError

DATA = Path(__file__).resolve().parents[1] / "data"
EXPECTED: dict[str, Any] = json.loads((DATA / "ledger_chain.expected.json").read_text())
ENTRIES: list[dict[str, Any]] = [json.loads(line) for line in (DATA / "ledger_chain.jsonl").read_text().splitlines()]
N = len(ENTRIES)
KEY = SigningKey(bytes.fromhex(EXPECTED["checkpoint_key"]["seed_hex"]))
OTHER = SigningKey(bytes(range(100, 132)))
TREE = merkle.MemoryTree([ledger.leaf_of(e["hash"]) for e in ENTRIES])


def _cp(size: int, time: int = 1_800_000_100_000, key: SigningKey = KEY) -> Checkpoint:
    return sign(key, size=size, root=TREE.root(size), time=time)


def _json(**changes: Any) -> dict[str, Any]:
    return {**_cp(N).to_json(), **changes}


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


# ---- signing and the JSON form -------------------------------------------------------------------------------


def test_sign_then_verify_round_trip() -> None:
    cp = _cp(N, time=5)
    assert (cp.coordinator, cp.size, cp.root, cp.time, len(cp.sig)) == (KEY.id, N, TREE.root(), 5, 64)
    cp.verify(KEY.verify_key)
    back = Checkpoint.from_json(json.loads(json.dumps(cp.to_json())))
    assert back == cp
    back.verify(KEY.verify_key)


def test_the_json_form() -> None:
    cp = _cp(3, time=7)
    assert cp.to_json() == {"coordinator": KEY.id, "size": 3, "root": TREE.root(3).hex(), "time": 7,
                            "sig": cp.sig.hex()}
    assert list(cp.to_json()) == list(checkpoint.FIELDS)


def test_the_signed_bytes_are_the_canonical_payload_with_the_root_in_hex() -> None:
    cp = _cp(3, time=7)
    assert cp.signed_bytes() == codec.encode({"coordinator": KEY.id, "root": TREE.root(3).hex(), "size": 3,
                                              "time": 7})
    KEY.verify_key.verify("checkpoint", cp.signed_bytes(), cp.sig)


def test_the_empty_tree_can_be_signed() -> None:
    cp = sign(KEY, size=0, root=merkle.EMPTY_ROOT, time=0)
    Checkpoint.from_json(cp.to_json()).verify(KEY.verify_key)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"size": N - 1}, "bad checkpoint signature"),
        ({"size": N + 1}, "bad checkpoint signature"),
        ({"root": _flip(TREE.root())}, "bad checkpoint signature"),
        ({"root": TREE.root(N - 1)}, "bad checkpoint signature"),
        ({"time": 1_800_000_100_001}, "bad checkpoint signature"),
        ({"sig": _flip(_cp(N).sig)}, "bad checkpoint signature"),
        ({"sig": _cp(N - 1).sig}, "bad checkpoint signature"),
        ({"coordinator": OTHER.id}, f"checkpoint names coordinator {OTHER.id}, expected {KEY.id}"),
    ],
)
def test_an_altered_checkpoint_is_refused(changes: dict[str, Any], message: str) -> None:
    cp = dataclasses.replace(_cp(N), **changes)
    with pytest.raises(VerificationError, match=message):
        cp.verify(KEY.verify_key)
    with pytest.raises(VerificationError, match=message):
        Checkpoint.from_json(cp.to_json()).verify(KEY.verify_key)


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    theirs = _cp(N, key=OTHER)
    theirs.verify(OTHER.verify_key)
    with pytest.raises(VerificationError, match=f"checkpoint names coordinator {OTHER.id}, expected {KEY.id}"):
        theirs.verify(KEY.verify_key)
    # Another key's signature over a checkpoint that names ours.
    forged = dataclasses.replace(_cp(N), sig=OTHER.sign("checkpoint", _cp(N).signed_bytes()))
    with pytest.raises(VerificationError, match="bad checkpoint signature"):
        forged.verify(KEY.verify_key)


def test_a_signature_of_another_kind_over_the_same_bytes_is_refused() -> None:
    cp = _cp(N)
    forged = dataclasses.replace(cp, sig=KEY.sign("task", cp.signed_bytes()))
    with pytest.raises(VerificationError, match="bad checkpoint signature"):
        forged.verify(KEY.verify_key)


FIELDS_MESSAGE = "a checkpoint must have exactly the fields coordinator, size, root, time, sig"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, FIELDS_MESSAGE),
        ([], FIELDS_MESSAGE),
        ("checkpoint", FIELDS_MESSAGE),
        ({k: v for k, v in _json().items() if k != "sig"}, FIELDS_MESSAGE),
        ({k: v for k, v in _json().items() if k != "coordinator"}, FIELDS_MESSAGE),
        ({k: v for k, v in _json().items() if k != "size"}, FIELDS_MESSAGE),
        ({k: v for k, v in _json().items() if k != "root"}, FIELDS_MESSAGE),
        ({k: v for k, v in _json().items() if k != "time"}, FIELDS_MESSAGE),
        (_json(extra=1), FIELDS_MESSAGE),
        (_json(coordinator=""), "checkpoint coordinator must be a party id"),
        (_json(coordinator=5), "checkpoint coordinator must be a party id"),
        (_json(coordinator=None), "checkpoint coordinator must be a party id"),
        (_json(size=True), r"checkpoint size must be an integer in \[0, 2\^63\)"),
        (_json(size=False), r"checkpoint size must be an integer in \[0, 2\^63\)"),
        (_json(size=-1), r"checkpoint size must be an integer in \[0, 2\^63\)"),
        (_json(size=2**63), r"checkpoint size must be an integer in \[0, 2\^63\)"),
        (_json(size=13.0), r"checkpoint size must be an integer in \[0, 2\^63\)"),
        (_json(size="13"), r"checkpoint size must be an integer in \[0, 2\^63\)"),
        (_json(time=True), r"checkpoint time must be an integer in \[0, 2\^63\)"),
        (_json(time=-5), r"checkpoint time must be an integer in \[0, 2\^63\)"),
        (_json(time=None), r"checkpoint time must be an integer in \[0, 2\^63\)"),
        (_json(root=TREE.root().hex().upper()), "checkpoint root must be 64 lowercase hex digits"),
        (_json(root="A" + TREE.root().hex()[1:]), "checkpoint root must be 64 lowercase hex digits"),
        (_json(root=TREE.root().hex()[:-2]), "checkpoint root must be 64 lowercase hex digits"),
        (_json(root=TREE.root().hex() + "00"), "checkpoint root must be 64 lowercase hex digits"),
        (_json(root="zz" * 32), "checkpoint root must be 64 lowercase hex digits"),
        (_json(root="0x" + "00" * 31), "checkpoint root must be 64 lowercase hex digits"),
        (_json(root=None), "checkpoint root must be 64 lowercase hex digits"),
        (_json(root=list(TREE.root())), "checkpoint root must be 64 lowercase hex digits"),
        (_json(sig="00" * 63), "checkpoint sig must be 128 lowercase hex digits"),
        (_json(sig="00" * 65), "checkpoint sig must be 128 lowercase hex digits"),
        (_json(sig="AB" * 64), "checkpoint sig must be 128 lowercase hex digits"),
        (_json(sig=""), "checkpoint sig must be 128 lowercase hex digits"),
    ],
)
def test_from_json_refuses(value: Any, message: str) -> None:
    with pytest.raises(VerificationError, match=message):
        Checkpoint.from_json(value)


@pytest.mark.parametrize(("field", "size"), [("root", 32), ("sig", 64)])
def test_from_json_refuses_hex_with_whitespace(field: str, size: int) -> None:
    spaced = "ab" * (size - 1) + "  "  # 2 * size characters, but 2 fewer hex digits
    with pytest.raises(VerificationError, match=f"checkpoint {field} must be {2 * size} lowercase hex digits"):
        Checkpoint.from_json(_json(**{field: spaced}))


def test_from_json_takes_the_boundaries() -> None:
    cp = Checkpoint.from_json(_json(size=2**63 - 1, time=0))
    assert (cp.size, cp.time) == (2**63 - 1, 0)


# ---- when a checkpoint is due ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "size", "now", "is_due"),
    [
        (None, 0, 0, True),  # the first one, even of an empty ledger
        (None, 5, 0, True),
        ((10, 1000), 10, 1000, False),  # nothing new
        ((10, 1000), 10, 10**9, False),  # nothing new, however long it has been
        ((10, 1000), 11, 1000, False),  # grew, but neither enough nor for long enough
        ((10, 1000), 11, 5999, False),
        ((10, 1000), 11, 6000, True),  # grew, and the interval passed
        ((10, 1000), 109, 1000, False),
        ((10, 1000), 110, 1000, True),  # grew by `every`: at once
        ((10, 1000), 500, 1000, True),
        ((10, 1000), 9, 10**9, False),  # smaller (cannot happen): never due
    ],
)
def test_due(last: tuple[int, int] | None, size: int, now: int, is_due: bool) -> None:
    held = None if last is None else dataclasses.replace(_cp(0), size=last[0], time=last[1])
    assert due(held, size=size, now=now, every=100, interval_ms=5000) is is_due


def test_due_with_every_one_signs_at_each_entry() -> None:
    held = dataclasses.replace(_cp(0), size=4, time=0)
    assert due(held, size=5, now=0, every=1, interval_ms=10**9)
    assert not due(held, size=4, now=0, every=1, interval_ms=0)


# ---- consistency: a newer checkpoint extends an older one ------------------------------------------------------


def _consistency(old: int, new: int) -> list[bytes]:
    return merkle.consistency_proof(TREE, old, new)


@pytest.mark.parametrize(("old", "new"), [(0, N), (1, N), (5, N), (8, N), (N, N), (0, 0), (3, 7), (12, 13)])
def test_check_consistent_accepts_a_growing_log(old: int, new: int) -> None:
    check_consistent(_cp(old), _cp(new), _consistency(old, new))


def test_check_consistent_with_the_shipped_vectors() -> None:
    small, large = (Checkpoint.from_json(c["json"]) for c in EXPECTED["checkpoints"])
    (proof,) = [c["proof"] for c in EXPECTED["consistency_proofs"] if (c["old"], c["new"]) == (small.size, large.size)]
    check_consistent(small, large, hashes_from_json(proof))


def _fork(old: Checkpoint, new: Checkpoint, proof: list[bytes], reason: str) -> None:
    with pytest.raises(VerificationError, match="LEDGER FORK") as info:
        check_consistent(old, new, proof)
    message = str(info.value)
    assert message.startswith(f"LEDGER FORK: the checkpoint of size {new.size} does not extend the checkpoint of"
                              f" size {old.size}")
    assert reason in message
    assert "the coordinator rewrote or forked its ledger" in message


def test_a_rewritten_ledger_of_the_same_size_is_a_fork() -> None:
    rewritten = sign(KEY, size=N, root=_flip(TREE.root()), time=2)
    _fork(_cp(N), rewritten, [], f"two different roots for size {N}")


def test_a_rewritten_prefix_is_a_fork() -> None:
    # The coordinator changed entry 2 and rehashed everything after: its new tree cannot extend the old checkpoint.
    entries = [dict(e) for e in ENTRIES]
    entries[2]["time"] += 1
    for i in range(2, N):
        entries[i]["prev_hash"] = entries[i - 1]["hash"]
        entries[i]["hash"] = ledger.entry_hash(entries[i])
    forked = merkle.MemoryTree([ledger.leaf_of(e["hash"]) for e in entries])
    new = sign(KEY, size=N, root=forked.root(), time=3)
    old = _cp(8)
    # (8 is a power of two: the old root starts the path, so the mismatch shows at the new root either way.)
    _fork(old, new, merkle.consistency_proof(forked, 8, N), f"consistency proof does not match the root of size {N}")
    _fork(old, new, _consistency(8, N), f"consistency proof does not match the root of size {N}")
    old = _cp(5)
    _fork(old, new, merkle.consistency_proof(forked, 5, N), "consistency proof does not match the root of size 5")


def test_a_truncated_ledger_is_a_fork() -> None:
    _fork(_cp(N), _cp(8), [], f"cannot prove consistency from size {N} to size 8")


@pytest.mark.parametrize(("old", "new"), [(1, N), (5, N), (8, N), (3, 7), (12, 13)])
def test_every_tampered_consistency_proof_is_a_fork(old: int, new: int) -> None:
    proof = _consistency(old, new)
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = _flip(bad[i])
        _fork(_cp(old), _cp(new), bad, "consistency proof does not match the root")
    _fork(_cp(old), _cp(new), proof[:-1], "")
    _fork(_cp(old), _cp(new), [*proof, proof[0]], "")
    _fork(_cp(old), _cp(new), [], "consistency proof is empty")
    _fork(dataclasses.replace(_cp(old), root=_flip(TREE.root(old))), _cp(new), proof,
          "consistency proof does not match the root of size")


def test_a_proof_for_equal_sizes_must_be_empty() -> None:
    _fork(_cp(N), _cp(N), [TREE.root()], "must be empty")


def test_a_malformed_proof_hash_is_a_fork_not_a_crash() -> None:
    proof = _consistency(5, N)
    proof[0] = proof[0][:31]
    _fork(_cp(5), _cp(N), proof, "proof hash 0 is 31 bytes, not 32")


# ---- inclusion: an entry is in a signed tree --------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 8, N])
def test_check_included_accepts_every_entry_of_the_tree(size: int) -> None:
    cp = _cp(size)
    for seq in range(size):
        check_included(ENTRIES[seq], cp, merkle.inclusion_proof(TREE, seq, size))


def test_check_included_with_the_shipped_proofs() -> None:
    for case in EXPECTED["inclusion_proofs"]:
        check_included(ENTRIES[case["index"]], _cp(case["size"]), hashes_from_json(case["proof"]))


def test_an_entry_after_the_checkpoint_is_not_covered() -> None:
    with pytest.raises(VerificationError, match="entry 8 is not covered by a checkpoint of size 8"):
        check_included(ENTRIES[8], _cp(8), merkle.inclusion_proof(TREE, 7, 8))


def test_an_altered_entry_is_refused() -> None:
    proof = merkle.inclusion_proof(TREE, 4, N)
    with pytest.raises(VerificationError, match="entry 4: hash does not match its contents"):
        check_included({**ENTRIES[4], "amount": 700}, _cp(N), proof)
    rehashed = {**ENTRIES[4], "amount": 700}
    rehashed["hash"] = ledger.entry_hash(rehashed)
    with pytest.raises(VerificationError, match=f"entry 4 is not in the signed ledger of size {N}: inclusion proof"):
        check_included(rehashed, _cp(N), proof)


def test_an_entry_moved_to_another_seq_is_refused() -> None:
    moved = {**ENTRIES[4], "seq": 5}
    moved["hash"] = ledger.entry_hash(moved)
    with pytest.raises(VerificationError, match=f"entry 5 is not in the signed ledger of size {N}"):
        check_included(moved, _cp(N), merkle.inclusion_proof(TREE, 4, N))
    with pytest.raises(VerificationError, match=f"entry 5 is not in the signed ledger of size {N}"):
        check_included(moved, _cp(N), merkle.inclusion_proof(TREE, 5, N))


def test_every_tampered_inclusion_proof_is_refused() -> None:
    proof = merkle.inclusion_proof(TREE, 6, N)
    cases = [proof[:-1], [*proof, proof[0]], []]
    cases += [[*proof[:i], _flip(proof[i]), *proof[i + 1:]] for i in range(len(proof))]
    for bad in cases:
        with pytest.raises(VerificationError, match=f"entry 6 is not in the signed ledger of size {N}"):
            check_included(ENTRIES[6], _cp(N), bad)
    with pytest.raises(VerificationError, match=f"entry 6 is not in the signed ledger of size {N}"):
        check_included(ENTRIES[6], dataclasses.replace(_cp(N), root=_flip(TREE.root())), proof)


def test_a_malformed_entry_is_a_ledger_error() -> None:
    with pytest.raises(LedgerError, match="entry must have exactly the fields"):
        check_included({k: v for k, v in ENTRIES[0].items() if k != "task_id"}, _cp(N), [])
    with pytest.raises(LedgerError, match="entry 0: amount must be a positive integer"):
        check_included({**ENTRIES[0], "amount": -1}, _cp(N), [])


# ---- proofs as served ---------------------------------------------------------------------------------------------


def test_hashes_from_json() -> None:
    proof = merkle.inclusion_proof(TREE, 6, N)
    assert hashes_from_json([h.hex() for h in proof]) == proof
    assert hashes_from_json([]) == []
    assert hashes_from_json(["00" * 32] * 128) == [bytes(32)] * 128


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["00" * 32] * 129, "a proof must be a list of at most 128 hashes"),
        (None, "a proof must be a list of at most 128 hashes"),
        ("00" * 32, "a proof must be a list of at most 128 hashes"),
        ({"0": "00" * 32}, "a proof must be a list of at most 128 hashes"),
        (("00" * 32,), "a proof must be a list of at most 128 hashes"),
        (["AB" * 32], "proof hash must be 64 lowercase hex digits"),
        (["ab" * 31], "proof hash must be 64 lowercase hex digits"),
        (["ab" * 33], "proof hash must be 64 lowercase hex digits"),
        (["gg" * 32], "proof hash must be 64 lowercase hex digits"),
        ([None], "proof hash must be 64 lowercase hex digits"),
        ([32], "proof hash must be 64 lowercase hex digits"),
        ([["ab" * 32]], "proof hash must be 64 lowercase hex digits"),
    ],
)
def test_hashes_from_json_refuses(value: Any, message: str) -> None:
    with pytest.raises(VerificationError, match=message):
        hashes_from_json(value)


def test_a_size_0_checkpoint_must_carry_the_empty_root() -> None:
    key = SigningKey(bytes([9]) * 32)
    checkpoint.sign(key, size=0, root=merkle.EMPTY_ROOT, time=1).verify(key.verify_key)
    with pytest.raises(VerificationError, match="size 0 must have the empty tree's root"):
        checkpoint.sign(key, size=0, root=merkle.leaf_hash(b"x"), time=1).verify(key.verify_key)
