"""The shipped ledger test vectors (tests/data/ledger_chain.*): the generator reproduces them, depin re-derives every
value, and so does an independent route (tests/msgpack_ref.py, hashlib, nacl and the RFC 6962 recursion written out
here), so the vectors check an outside verifier and not merely this code against itself."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from depin import checkpoint, crypto, ledger, merkle
from depin.accounts import holdings
from depin.crypto import SigningKey, VerifyKey
from depin.errors import VerificationError
from tests.data import make_ledger_vectors
from tests.msgpack_ref import ref_encode

DATA = Path(__file__).resolve().parents[1] / "data"
CHAIN_TEXT = (DATA / "ledger_chain.jsonl").read_text()
EXPECTED: dict[str, Any] = json.loads((DATA / "ledger_chain.expected.json").read_text())
ENTRIES: list[dict[str, Any]] = [json.loads(line) for line in CHAIN_TEXT.splitlines()]
N = EXPECTED["entries"]


def _hx(hashes: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hashes]


# ---- the RFC 6962 section 2.1 definitions, written out again from the RFC -----------------------------------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _mth(d: Sequence[bytes]) -> bytes:
    """MTH over leaf *hashes*."""
    if not d:
        return _sha(b"")
    if len(d) == 1:
        return d[0]
    k = 1 << ((len(d) - 1).bit_length() - 1)
    return _sha(b"\x01" + _mth(d[:k]) + _mth(d[k:]))


def _path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1 << ((len(d) - 1).bit_length() - 1)
    return _path(m, d[:k]) + [_mth(d[k:])] if m < k else _path(m - k, d[k:]) + [_mth(d[:k])]


def _subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [_mth(d)]
    k = 1 << ((n - 1).bit_length() - 1)
    return _subproof(m, d[:k], b) + [_mth(d[k:])] if m <= k else _subproof(m - k, d[k:], False) + [_mth(d[:k])]


# ---- the files are the generator's output ------------------------------------------------------------------------


def test_committed_files_equal_what_the_generator_writes() -> None:
    chain, answers, broken = make_ledger_vectors.render()
    assert CHAIN_TEXT == chain
    assert (DATA / "ledger_chain.expected.json").read_text() == answers
    assert (DATA / "ledger_chain.tampered.json").read_text() == broken


def test_generator_check_mode_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    assert make_ledger_vectors.main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_the_vectors_cover_a_whole_market() -> None:
    # Two grants; one job done (rewards to several workers, one task paid three times, then a refund); one job
    # cancelled (its whole escrow refunded, no reward); the first 13 entries are that market, as before bonds.
    market = ENTRIES[:13]
    kinds = Counter(e["kind"] for e in market)
    assert kinds == {"grant": 2, "escrow": 2, "reward": 7, "refund": 2}
    assert N & (N - 1) and 13 & 12  # not a power of two: proofs cross unbalanced subtrees
    jobs = {e["job_id"] for e in market if e["kind"] == "escrow"}
    rewarded = {e["job_id"] for e in market if e["kind"] == "reward"}
    refunded = {e["job_id"] for e in market if e["kind"] == "refund"}
    assert len(jobs) == 2 and len(rewarded) == 1 and refunded == jobs
    assert len({e["to"] for e in ENTRIES if e["kind"] == "reward"}) >= 3
    assert max(Counter(e["task_id"] for e in ENTRIES if e["kind"] == "reward").values()) == 3
    assert len(EXPECTED["inclusion_proofs"]) >= 3 and len(EXPECTED["consistency_proofs"]) >= 3


def test_the_export_is_in_the_export_format() -> None:
    for line, e in zip(CHAIN_TEXT.splitlines(), ENTRIES, strict=True):
        assert list(e) == list(ledger.FIELDS)
        assert line == json.dumps(e, separators=(",", ":"))


# ---- depin re-derives every value --------------------------------------------------------------------------------


def test_verify_reproduces_the_summary() -> None:
    summary = ledger.verify(ledger.iter_jsonl(CHAIN_TEXT.splitlines()))
    assert (summary.entries, summary.head_hash, summary.root_hash) == (
        N, EXPECTED["head_hash"], EXPECTED["root_hash"])
    assert summary.balances == EXPECTED["balances"]
    assert summary.minted == EXPECTED["minted"]
    in_accounts, escrow, bonds = holdings(summary.balances)
    assert (in_accounts, escrow, bonds) == (EXPECTED["in_accounts"], EXPECTED["in_escrow"], EXPECTED["in_bonds"])
    held = sum(v for k, v in summary.balances.items() if k != ledger.MINT)
    assert held == summary.minted == in_accounts + escrow + bonds


def test_the_bonds_part_of_the_chain() -> None:
    # Then bonds: a bond, a partial unbond, slashes while a job runs and after its refund, to the job's funder.
    bonds = ENTRIES[13:]
    assert Counter(e["kind"] for e in bonds) == {"bond": 2, "unbond": 1, "slash": 3, "escrow": 1, "reward": 1,
                                                 "refund": 1}
    refunded_at = {e["job_id"]: e["seq"] for e in ENTRIES if e["kind"] == "refund"}
    slashes = [e for e in bonds if e["kind"] == "slash"]
    assert any(e["seq"] > refunded_at[e["job_id"]] for e in slashes)
    assert any(e["seq"] < refunded_at[e["job_id"]] for e in slashes)
    unbond = next(e for e in bonds if e["kind"] == "unbond")
    bonded = next(e for e in bonds if e["kind"] == "bond" and e["to"] == unbond["from"])
    assert unbond["amount"] < bonded["amount"]  # partial
    assert 0 < EXPECTED["in_bonds"] < sum(e["amount"] for e in bonds if e["kind"] == "bond")


TAMPERED: list[dict[str, Any]] = json.loads((DATA / "ledger_chain.tampered.json").read_text())["cases"]


@pytest.mark.parametrize("case", TAMPERED, ids=[c["name"] for c in TAMPERED])
def test_each_tampered_copy_fails_at_its_rule(case: dict[str, Any]) -> None:
    entries = ENTRIES[:case["prefix"]] + case["then"]
    with pytest.raises(VerificationError) as info:
        ledger.verify(entries)
    assert (info.value.seq, str(info.value)) == (case["first_bad_seq"], case["error"])
    assert case["first_bad_seq"] == len(entries) - 1  # the last entry, and only by its money rule:
    ledger.verify(entries[:-1])
    assert ledger.entry_hash(entries[-1]) == entries[-1]["hash"]


def test_the_tampered_copies_break_every_bond_rule() -> None:
    assert {c["rule"] for c in TAMPERED} == {*(f"B{i}" for i in range(1, 5)), *(f"U{i}" for i in range(1, 5)),
                                             *(f"S{i}" for i in range(1, 9))}


def test_hashes_and_leaves() -> None:
    assert [ledger.entry_hash(e) for e in ENTRIES] == [e["hash"] for e in ENTRIES] == EXPECTED["hashes"]
    assert [ledger.leaf_of(h).hex() for h in EXPECTED["hashes"]] == EXPECTED["leaf_hashes"]
    assert [merkle.leaf_hash(bytes.fromhex(h)).hex() for h in EXPECTED["hashes"]] == EXPECTED["leaf_hashes"]


def test_roots_at_every_size() -> None:
    leaves = _hx(EXPECTED["leaf_hashes"])
    tree = merkle.MemoryTree(leaves)
    assert len(EXPECTED["roots"]) == N + 1
    for size, root in enumerate(EXPECTED["roots"]):
        assert merkle.naive_root(leaves[:size]).hex() == root
        assert tree.root(size).hex() == root
        assert ledger.verify(ENTRIES[:size]).root_hash == root
        assert merkle.Frontier.from_source(tree, size).root().hex() == root


@pytest.mark.parametrize("case", EXPECTED["inclusion_proofs"], ids=lambda c: f"{c['index']}-of-{c['size']}")
def test_inclusion_proofs(case: dict[str, Any]) -> None:
    index, size, proof = case["index"], case["size"], _hx(case["proof"])
    leaves = _hx(EXPECTED["leaf_hashes"])
    tree = merkle.MemoryTree(leaves)
    root = bytes.fromhex(EXPECTED["roots"][size])
    assert merkle.inclusion_proof(tree, index, size) == proof
    assert merkle.naive_inclusion_proof(leaves[:size], index) == proof
    merkle.verify_inclusion(leaves[index], index, size, proof, root)
    if proof:
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(leaves[index], index, size, proof[:-1], root)


@pytest.mark.parametrize("case", EXPECTED["consistency_proofs"], ids=lambda c: f"{c['old']}-to-{c['new']}")
def test_consistency_proofs(case: dict[str, Any]) -> None:
    old, new, proof = case["old"], case["new"], _hx(case["proof"])
    leaves = _hx(EXPECTED["leaf_hashes"])
    old_root, new_root = bytes.fromhex(EXPECTED["roots"][old]), bytes.fromhex(EXPECTED["roots"][new])
    assert merkle.consistency_proof(merkle.MemoryTree(leaves), old, new) == proof
    assert merkle.naive_consistency_proof(leaves[:new], old) == proof
    merkle.verify_consistency(old, new, old_root, new_root, proof)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(old, new, new_root, new_root, proof)


@pytest.mark.parametrize("n", range(len(EXPECTED["checkpoints"])))
def test_checkpoints(n: int) -> None:
    case = EXPECTED["checkpoints"][n]
    keys = EXPECTED["checkpoint_key"]
    key = SigningKey(bytes.fromhex(keys["seed_hex"]))
    assert (key.public.hex(), key.id) == (keys["public_key_hex"], keys["id"])
    cp = checkpoint.Checkpoint.from_json(case["json"])
    cp.verify(VerifyKey(bytes.fromhex(keys["public_key_hex"])))
    assert cp.to_json() == case["json"]
    assert cp.signed_bytes().hex() == case["signed_hex"]
    assert crypto.signing_input("checkpoint", cp.signed_bytes()).hex() == case["signing_input_hex"]
    assert cp.root.hex() == EXPECTED["roots"][cp.size]
    assert checkpoint.sign(key, size=cp.size, root=cp.root, time=cp.time) == cp  # Ed25519 is deterministic


def test_the_checkpoints_prove_every_entry_and_each_other() -> None:
    small, large = (checkpoint.Checkpoint.from_json(c["json"]) for c in EXPECTED["checkpoints"])
    proof = next(_hx(c["proof"]) for c in EXPECTED["consistency_proofs"]
                 if (c["old"], c["new"]) == (small.size, large.size))
    checkpoint.check_consistent(small, large, proof)
    tree = merkle.MemoryTree(_hx(EXPECTED["leaf_hashes"]))
    for cp in (small, large):
        for seq in range(cp.size):
            checkpoint.check_included(ENTRIES[seq], cp, merkle.inclusion_proof(tree, seq, cp.size))


# ---- an independent route to the same values ----------------------------------------------------------------------


def test_bodies_and_hashes_by_an_independent_encoder() -> None:
    for e, body_hex, hash_hex in zip(ENTRIES, EXPECTED["body_hex"], EXPECTED["hashes"], strict=True):
        body = ref_encode({k: v for k, v in e.items() if k != "hash"})
        assert body.hex() == body_hex
        assert hashlib.sha256(b"depin/1/ledger-entry\x00" + body).hexdigest() == hash_hex == e["hash"]
    assert [e["prev_hash"] for e in ENTRIES] == ["00" * 32, *EXPECTED["hashes"][:-1]]


def test_tree_by_the_rfc_recursion() -> None:
    leaves = [_sha(b"\x00" + bytes.fromhex(h)) for h in EXPECTED["hashes"]]
    assert [x.hex() for x in leaves] == EXPECTED["leaf_hashes"]
    assert [_mth(leaves[:size]).hex() for size in range(N + 1)] == EXPECTED["roots"]
    for case in EXPECTED["inclusion_proofs"]:
        assert [x.hex() for x in _path(case["index"], leaves[: case["size"]])] == case["proof"]
    for case in EXPECTED["consistency_proofs"]:
        assert [x.hex() for x in _subproof(case["old"], leaves[: case["new"]], True)] == case["proof"]


def test_balances_by_summing_the_entries() -> None:
    balances: Counter[str] = Counter()
    for e in ENTRIES:
        balances[e["from"]] -= e["amount"]
        balances[e["to"]] += e["amount"]
    assert dict(balances) == EXPECTED["balances"]
    assert -balances["mint"] == EXPECTED["minted"] == sum(e["amount"] for e in ENTRIES if e["kind"] == "grant")


def test_checkpoint_signatures_by_nacl() -> None:
    keys = EXPECTED["checkpoint_key"]
    assert bytes.fromhex(keys["seed_hex"]) == bytes(range(1, 33))
    raw = nacl.signing.SigningKey(bytes.fromhex(keys["seed_hex"]))
    assert raw.verify_key.encode().hex() == keys["public_key_hex"]
    for case in EXPECTED["checkpoints"]:
        cp = case["json"]
        payload = ref_encode({"coordinator": cp["coordinator"], "root": cp["root"], "size": cp["size"],
                              "time": cp["time"]})
        assert payload.hex() == case["signed_hex"]
        assert case["signing_input_hex"] == (b"depin/1/checkpoint\x00" + payload).hex()
        assert raw.sign(bytes.fromhex(case["signing_input_hex"])).signature.hex() == cp["sig"]
        raw.verify_key.verify(bytes.fromhex(case["signing_input_hex"]), bytes.fromhex(cp["sig"]))
