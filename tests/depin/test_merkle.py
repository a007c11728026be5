"""depin.merkle: RFC 6962 known answers, stored-node proofs against the naive RFC recursion, and tampering."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from depin import merkle
from depin.errors import NotFound, UserError, VerificationError
from depin.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    consistency_proof,
    frontier_positions,
    inclusion_proof,
    leaf_hash,
    naive_consistency_proof,
    naive_inclusion_proof,
    naive_root,
    node_hash,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)

DATA = Path(__file__).resolve().parents[1] / "data"
VECTORS: dict[str, Any] = json.loads((DATA / "merkle_rfc6962_vectors.json").read_text())
INPUTS = [bytes.fromhex(h) for h in VECTORS["leaf_inputs_hex"]]
RFC_LEAVES = [leaf_hash(d) for d in INPUTS]
RFC_TREE = MemoryTree(RFC_LEAVES)
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
MAX_SIZE = 300


def _hx(hashes: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hashes]


def _leaves(n: int, salt: bytes = b"") -> list[bytes]:
    """n distinct leaf hashes; distinct leaves make every subtree hash distinct, so no tamper verifies by luck."""
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


def _flip(h: bytes, bit: int = 3) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


class _Recorder:
    """A NodeSource over a MemoryTree that refuses nodes outside the first `size` leaves and counts reads."""

    def __init__(self, tree: MemoryTree, size: int) -> None:
        self.tree, self.size, self.reads = tree, size, 0

    def node(self, level: int, index: int) -> bytes:
        assert level >= 0 and index >= 0 and (index + 1) << level <= self.size, (level, index, self.size)
        self.reads += 1
        return self.tree.node(level, index)


def _inclusion_probes(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> list[tuple[str, bytes, int, int, list[bytes], bytes]]:
    """Every way to get an inclusion proof wrong, after transparency-dev/merkle's corruptInclusionProof."""
    probes = [
        ("index - 1", leaf, index - 1, size, proof, root),
        ("index + 1", leaf, index + 1, size, proof, root),
        ("index ^ 2", leaf, index ^ 2, size, proof, root),
        ("size * 2", leaf, index, size * 2, proof, root),
        ("size // 2", leaf, index, size // 2, proof, root),
        ("wrong leaf", _flip(leaf), index, size, proof, root),
        ("empty root", leaf, index, size, proof, EMPTY_ROOT),
        ("random root", leaf, index, size, proof, SOME_HASH),
        ("flipped root", leaf, index, size, proof, _flip(root)),
        ("trailing root", leaf, index, size, [*proof, root], root),
        ("trailing leaf", leaf, index, size, [*proof, leaf], root),
        ("preceding root", leaf, index, size, [root, *proof], root),
        ("short trailing garbage", leaf, index, size, [*proof, b""], root),
    ]
    for i, p in enumerate(proof):
        probes.append((f"flipped proof[{i}]", leaf, index, size, [*proof[:i], _flip(p), *proof[i + 1 :]], root))
    if proof:
        probes.append(("last removed", leaf, index, size, proof[:-1], root))
        probes.append(("first removed", leaf, index, size, proof[1:], root))
        probes.append(("inserted", leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root))
    if len(proof) > 1:
        probes.append(("swapped", leaf, index, size, [proof[1], proof[0], *proof[2:]], root))
    return probes


def _consistency_probes(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """Every way to get a consistency proof wrong, after transparency-dev/merkle's corruptConsistencyProof."""
    probes = [
        ("old - 1", old - 1, new, old_root, new_root, proof),
        ("old + 1", old + 1, new, old_root, new_root, proof),
        ("old ^ 2", old ^ 2, new, old_root, new_root, proof),
        ("new * 2", old, new * 2, old_root, new_root, proof),
        ("new // 2", old, new // 2, old_root, new_root, proof),
        ("wrong old root", old, new, _flip(old_root), new_root, proof),
        ("wrong new root", old, new, old_root, _flip(new_root), proof),
        ("swapped roots", old, new, new_root, old_root, proof),
        ("empty proof", old, new, old_root, new_root, []),
        ("trailing old root", old, new, old_root, new_root, [*proof, old_root]),
        ("trailing new root", old, new, old_root, new_root, [*proof, new_root]),
        ("preceding old root", old, new, old_root, new_root, [old_root, *proof]),
        ("preceding new root", old, new, old_root, new_root, [new_root, *proof]),
        ("preceding proof[0]", old, new, old_root, new_root, [proof[0], *proof]),
        ("last removed", old, new, old_root, new_root, proof[:-1]),
        ("first removed", old, new, old_root, new_root, proof[1:]),
        ("short trailing garbage", old, new, old_root, new_root, [*proof, b""]),
    ]
    for i, p in enumerate(proof):
        probes.append((f"flipped proof[{i}]", old, new, old_root, new_root, [*proof[:i], _flip(p, 4), *proof[i + 1 :]]))
    if len(proof) > 1:
        probes.append(("swapped", old, new, old_root, new_root, [proof[1], proof[0], *proof[2:]]))
    return probes


def _check_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    verify_inclusion(leaf, index, size, proof, root)
    for desc, leaf2, index2, size2, proof2, root2 in _inclusion_probes(leaf, index, size, proof, root):
        with pytest.raises(VerificationError):
            verify_inclusion(leaf2, index2, size2, proof2, root2)
            pytest.fail(f"verified with {desc}")


def _check_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> None:
    verify_consistency(old, new, old_root, new_root, proof)
    for desc, old2, new2, old_root2, new_root2, proof2 in _consistency_probes(old, new, old_root, new_root, proof):
        with pytest.raises(VerificationError):
            verify_consistency(old2, new2, old_root2, new_root2, proof2)
            pytest.fail(f"verified with {desc}")


# ---- hashing --------------------------------------------------------------------------------------------------


def test_leaf_and_node_hashes_use_the_rfc6962_prefixes() -> None:
    assert merkle.LEAF_PREFIX == b"\x00" and merkle.NODE_PREFIX == b"\x01"
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert node_hash(a, b) != node_hash(b, a)
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == bytes.fromhex(VECTORS["roots"][0])


def test_a_leaf_cannot_pass_for_a_node() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(a + b) != node_hash(a, b)


# ---- RFC 6962 known answers -----------------------------------------------------------------------------------


def test_leaf_hashes_match_the_vectors() -> None:
    assert [h.hex() for h in RFC_LEAVES] == VECTORS["node_hashes"][0]


def test_every_stored_node_matches_the_vectors() -> None:
    for level, row in enumerate(VECTORS["node_hashes"]):
        assert [RFC_TREE.node(level, i).hex() for i in range(len(row))] == row
    with pytest.raises(NotFound):
        RFC_TREE.node(4, 0)
    with pytest.raises(NotFound):
        RFC_TREE.node(2, 2)


@pytest.mark.parametrize("size", range(9))
def test_roots_match_the_vectors(size: int) -> None:
    want = VECTORS["roots"][size]
    frontier = Frontier()
    for leaf in RFC_LEAVES[:size]:
        frontier.append(leaf)
    assert RFC_TREE.root(size).hex() == want
    assert MemoryTree(RFC_LEAVES[:size]).root().hex() == want
    assert naive_root(RFC_LEAVES[:size]).hex() == want
    assert frontier.root().hex() == want
    assert subtree_root(RFC_TREE, 0, size).hex() == want


@pytest.mark.parametrize("size", range(9))
def test_frontiers_match_the_vectors(size: int) -> None:
    want = VECTORS["frontiers"][size]
    frontier = Frontier()
    for leaf in RFC_LEAVES[:size]:
        frontier.append(leaf)
    assert [h.hex() for h in frontier.hashes] == want
    assert [h.hex() for h in Frontier.from_source(RFC_TREE, size).hashes] == want
    assert [RFC_TREE.node(level, i).hex() for level, i in frontier_positions(size)] == want


@pytest.mark.parametrize("case", VECTORS["inclusion_proofs"], ids=lambda c: f"{c['index']}-of-{c['size']}")
def test_inclusion_proofs_match_the_vectors(case: dict[str, Any]) -> None:
    index, size, want = case["index"], case["size"], _hx(case["proof"])
    assert inclusion_proof(RFC_TREE, index, size) == want
    assert naive_inclusion_proof(RFC_LEAVES[:size], index) == want
    _check_inclusion(RFC_LEAVES[index], index, size, want, bytes.fromhex(VECTORS["roots"][size]))


@pytest.mark.parametrize("case", VECTORS["consistency_proofs"], ids=lambda c: f"{c['old']}-to-{c['new']}")
def test_consistency_proofs_match_the_vectors(case: dict[str, Any]) -> None:
    old, new, want = case["old"], case["new"], _hx(case["proof"])
    assert consistency_proof(RFC_TREE, old, new) == want
    assert naive_consistency_proof(RFC_LEAVES[:new], old) == want
    old_root, new_root = bytes.fromhex(VECTORS["roots"][old]), bytes.fromhex(VECTORS["roots"][new])
    if want:
        _check_consistency(old, new, old_root, new_root, want)
    else:
        verify_consistency(old, new, old_root, new_root, want)


# ---- verification edge cases (transparency-dev/merkle TestVerifyInclusion*, TestVerifyConsistency) -------------


def test_single_entry_inclusion() -> None:
    h = leaf_hash(b"data")
    verify_inclusion(h, 0, 1, [], h)
    for leaf, root in [(h, b""), (b"", h), (b"", b""), (h, SOME_HASH), (SOME_HASH, h)]:
        with pytest.raises(VerificationError):
            verify_inclusion(leaf, 0, 1, [], root)


@pytest.mark.parametrize("index, size", [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 1), (5, 3)])
def test_inclusion_of_an_index_outside_the_tree_is_refused(index: int, size: int) -> None:
    for leaf, root in [(SOME_HASH, b""), (b"", EMPTY_ROOT), (SOME_HASH, EMPTY_ROOT), (SOME_HASH, SOME_HASH)]:
        with pytest.raises(VerificationError, match=f"no entry {index} in a tree of {size}"):
            verify_inclusion(leaf, index, size, [], root)


R1, R2 = b"don't care 1", b"don't care 2"


@pytest.mark.parametrize(
    "old, new, old_root, new_root, proof, ok",
    [
        (0, 0, R1, R2, [], False),  # equal sizes, different roots
        (1, 1, R1, R2, [], False),
        (0, 0, R1, R1, [], True),  # always consistent
        (0, 1, R1, R2, [], True),
        (1, 1, R2, R2, [], True),
        (1, 0, R1, R2, [], False),  # time travel
        (2, 1, R1, R2, [], False),
        (-1, 1, R1, R2, [], False),
        (-2, -1, R1, R2, [], False),
        (1, 2, R1, R2, [], False),  # empty proof
        (0, 0, EMPTY_ROOT, R2, [], False),
        (1, 1, EMPTY_ROOT, R2, [], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),  # roots agree, but a proof where none is due
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    ],
)
def test_consistency_edge_cases(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes], ok: bool
) -> None:
    if ok:
        verify_consistency(old, new, old_root, new_root, proof)
    else:
        with pytest.raises(VerificationError):
            verify_consistency(old, new, old_root, new_root, proof)


def test_wrong_length_hashes_are_a_verification_error_not_a_value_error() -> None:
    leaves = _leaves(5)
    tree = MemoryTree(leaves)
    proof = inclusion_proof(tree, 1, 5)
    with pytest.raises(VerificationError, match="proof hash 2 is 31 bytes, not 32"):
        verify_inclusion(leaves[1], 1, 5, [*proof[:2], proof[2][:31]], tree.root())
    with pytest.raises(VerificationError, match="the leaf hash is 33 bytes"):
        verify_inclusion(leaves[1] + b"x", 1, 5, proof, tree.root())
    cproof = consistency_proof(tree, 3, 5)
    with pytest.raises(VerificationError, match="the old root is 0 bytes"):
        verify_consistency(3, 5, b"", tree.root(), cproof)
    with pytest.raises(VerificationError, match="proof hash is 64 bytes"):
        verify_consistency(4, 5, tree.root(4), tree.root(), [cproof[0] * 2])


def test_proofs_of_the_wrong_length_say_so() -> None:
    tree = MemoryTree(_leaves(11))
    leaf, root = tree.node(0, 6), tree.root()
    proof = inclusion_proof(tree, 6, 11)
    with pytest.raises(VerificationError, match="^inclusion proof is too long$"):
        verify_inclusion(leaf, 6, 11, [*proof, root], root)
    with pytest.raises(VerificationError, match="^inclusion proof is too short$"):
        verify_inclusion(leaf, 6, 11, proof[:-1], root)
    with pytest.raises(VerificationError, match="^inclusion proof for entry 6 does not match the root of size 11$"):
        verify_inclusion(leaf, 6, 11, [proof[0], _flip(proof[1]), *proof[2:]], root)
    cproof = consistency_proof(tree, 6, 11)
    with pytest.raises(VerificationError, match="^consistency proof is too long$"):
        verify_consistency(6, 11, tree.root(6), root, [*cproof, root])
    with pytest.raises(VerificationError, match="^consistency proof is too short$"):
        verify_consistency(6, 11, tree.root(6), root, cproof[:-1])
    with pytest.raises(VerificationError, match="^consistency proof is empty$"):
        verify_consistency(6, 11, tree.root(6), root, [])
    with pytest.raises(VerificationError, match="^consistency proof does not match the root of size 11$"):
        verify_consistency(6, 11, tree.root(6), _flip(root), cproof)
    with pytest.raises(VerificationError, match="^consistency proof does not match the root of size 6$"):
        verify_consistency(6, 11, _flip(tree.root(6)), root, cproof)


# ---- stored-node proofs against the naive RFC recursion -------------------------------------------------------


@given(size=st.integers(1, MAX_SIZE), data=st.data(), salt=st.binary(max_size=8))
def test_inclusion_proofs_equal_the_naive_ones_and_verify(size: int, data: st.DataObject, salt: bytes) -> None:
    leaves = _leaves(size, salt)
    tree = MemoryTree(leaves)
    index = data.draw(st.integers(0, size - 1), label="index")
    root = naive_root(leaves)
    assert tree.root() == root
    source = _Recorder(tree, size)
    proof = inclusion_proof(source, index, size)
    assert source.reads <= 2 * size.bit_length()
    assert proof == naive_inclusion_proof(leaves, index)
    _check_inclusion(leaves[index], index, size, proof, root)


@given(new=st.integers(1, MAX_SIZE), data=st.data(), salt=st.binary(max_size=8))
def test_consistency_proofs_equal_the_naive_ones_and_verify(new: int, data: st.DataObject, salt: bytes) -> None:
    leaves = _leaves(new, salt)
    tree = MemoryTree(leaves)
    old = data.draw(st.integers(1, new), label="old")
    source = _Recorder(tree, new)
    proof = consistency_proof(source, old, new)
    assert source.reads <= 2 * new.bit_length() + 1
    assert proof == naive_consistency_proof(leaves, old)
    if old == new:
        assert proof == []
        verify_consistency(old, new, tree.root(old), tree.root(), proof)
    else:
        _check_consistency(old, new, naive_root(leaves[:old]), naive_root(leaves), proof)


@given(new=st.integers(1, MAX_SIZE), salt=st.binary(max_size=8))
def test_consistency_from_every_older_size_verifies(new: int, salt: bytes) -> None:
    tree = MemoryTree(_leaves(new, salt))
    roots = [tree.root(size) for size in range(new + 1)]
    for old in range(new + 1):
        proof = consistency_proof(tree, old, new)
        verify_consistency(old, new, roots[old], roots[new], proof)
        if 0 < old < new:
            with pytest.raises(VerificationError):
                verify_consistency(old, new, roots[old - 1], roots[new], proof)


def test_consistency_between_all_pairs_up_to_64_equals_the_naive_proofs_and_refuses_every_tamper() -> None:
    leaves = _leaves(64)
    tree = MemoryTree(leaves)
    for new in range(65):
        for old in range(new + 1):
            proof = consistency_proof(_Recorder(tree, new), old, new)
            assert proof == naive_consistency_proof(leaves[:new], old), (old, new)
            if 0 < old < new:
                _check_consistency(old, new, tree.root(old), tree.root(new), proof)
            else:
                verify_consistency(old, new, tree.root(old), tree.root(new), proof)


def test_every_inclusion_proof_up_to_64_equals_the_naive_one_and_refuses_every_tamper() -> None:
    leaves = _leaves(64, b"x")
    tree = MemoryTree(leaves)
    for size in range(1, 65):
        root = naive_root(leaves[:size])
        assert tree.root(size) == root
        for index in range(size):
            proof = inclusion_proof(_Recorder(tree, size), index, size)
            assert proof == naive_inclusion_proof(leaves[:size], index), (index, size)
            _check_inclusion(leaves[index], index, size, proof, root)


def test_subtree_root_of_every_rfc_range_equals_the_naive_root() -> None:
    leaves = _leaves(100)
    tree = MemoryTree(leaves)
    ranges: list[tuple[int, int]] = []

    def split(start: int, end: int) -> None:
        ranges.append((start, end))
        if end - start > 1:
            k = 1 << ((end - start - 1).bit_length() - 1)
            split(start, start + k)
            split(start + k, end)

    for size in range(1, 101):
        split(0, size)
    for start, end in set(ranges):
        assert subtree_root(tree, start, end) == naive_root(leaves[start:end])


def test_subtree_root_refuses_a_range_that_is_not_made_of_stored_nodes() -> None:
    with pytest.raises(NotFound):
        subtree_root(RFC_TREE, 1, 3)
    with pytest.raises(NotFound):
        subtree_root(RFC_TREE, 5, 4)
    assert subtree_root(RFC_TREE, 3, 3) == EMPTY_ROOT


# ---- building proofs the tree cannot give ---------------------------------------------------------------------


def test_proof_building_out_of_range_is_not_found() -> None:
    tree = MemoryTree(_leaves(10))
    with pytest.raises(NotFound, match="^no entry 12 in a tree of 10$"):
        inclusion_proof(tree, 12, 10)
    with pytest.raises(NotFound, match="^no entry 10 in a tree of 10$"):
        inclusion_proof(tree, 10, 10)
    with pytest.raises(NotFound):
        inclusion_proof(tree, -1, 10)
    with pytest.raises(NotFound):
        inclusion_proof(tree, 0, 0)
    with pytest.raises(NotFound, match="^cannot prove consistency from size 12 to size 10$"):
        consistency_proof(tree, 12, 10)
    with pytest.raises(NotFound):
        consistency_proof(tree, -1, 10)
    with pytest.raises(NotFound):
        frontier_positions(-1)
    with pytest.raises(NotFound):
        tree.root(11)
    with pytest.raises(NotFound):
        tree.node(0, 10)
    assert NotFound.http_status == 404 and issubclass(NotFound, UserError)
    assert not issubclass(NotFound, VerificationError)


def test_naive_proof_building_out_of_range_is_not_found() -> None:
    leaves = _leaves(10)
    with pytest.raises(NotFound, match="^no entry 12 in a tree of 10$"):
        naive_inclusion_proof(leaves, 12)
    with pytest.raises(NotFound, match="^cannot prove consistency from size 12 to size 10$"):
        naive_consistency_proof(leaves, 12)
    with pytest.raises(NotFound):
        naive_inclusion_proof([], 0)


def test_trivial_consistency_proofs_are_empty() -> None:
    tree = MemoryTree(_leaves(10))
    assert consistency_proof(tree, 0, 10) == [] == naive_consistency_proof(_leaves(10), 0)
    assert consistency_proof(tree, 10, 10) == [] == naive_consistency_proof(_leaves(10), 10)
    assert consistency_proof(tree, 0, 0) == []


# ---- Frontier -------------------------------------------------------------------------------------------------


def test_frontier_positions() -> None:
    assert frontier_positions(0) == []
    assert frontier_positions(1) == [(0, 0)]
    assert frontier_positions(7) == [(2, 0), (1, 2), (0, 6)]
    assert frontier_positions(8) == [(3, 0)]
    assert frontier_positions(13) == [(3, 0), (2, 2), (0, 12)]
    for size in range(MAX_SIZE):
        covered = 0
        for level, index in frontier_positions(size):
            assert index << level == covered
            covered += 1 << level
        assert covered == size
        assert len(frontier_positions(size)) == bin(size).count("1")


def test_frontier_root_equals_the_naive_root_at_every_size() -> None:
    leaves = _leaves(MAX_SIZE, b"f")
    frontier, tree = Frontier(), MemoryTree()
    assert frontier.root() == EMPTY_ROOT == tree.root()
    for size, leaf in enumerate(leaves, start=1):
        frontier.append(leaf)
        tree.append(leaf)
        assert frontier.size == tree.size == size
        assert frontier.root() == tree.root() == naive_root(leaves[:size]), size


@given(size=st.integers(0, MAX_SIZE))
def test_frontier_append_returns_exactly_the_perfect_nodes(size: int) -> None:
    leaves = _leaves(size, b"p")
    tree = MemoryTree(leaves)
    frontier = Frontier()
    seen: list[tuple[int, int, bytes]] = []
    for n, leaf in enumerate(leaves):
        done = frontier.append(leaf)
        assert done[0] == (0, n, leaf)
        assert [level for level, _, _ in done] == list(range(len(done)))
        assert all((index + 1) << level == n + 1 for level, index, _ in done)  # completed by this leaf, no other
        seen += done
    perfect = [
        (level, index, tree.node(level, index)) for level in range(size.bit_length()) for index in range(size >> level)
    ]
    assert sorted(seen) == sorted(perfect)
    assert len(seen) == len(set(seen))


@given(size=st.integers(0, MAX_SIZE), more=st.integers(0, 70), salt=st.binary(max_size=4))
def test_frontier_from_source_continues_like_one_built_by_appending(size: int, more: int, salt: bytes) -> None:
    leaves = _leaves(size + more, salt)
    built = Frontier()
    for leaf in leaves[:size]:
        built.append(leaf)
    source = _Recorder(MemoryTree(leaves[:size]), size)
    loaded = Frontier.from_source(source, size)
    assert source.reads == bin(size).count("1")
    assert loaded.size == built.size == size
    assert loaded.hashes == built.hashes and loaded.root() == built.root()
    again = Frontier(size, built.hashes)
    for leaf in leaves[size:]:
        assert loaded.append(leaf) == built.append(leaf) == again.append(leaf)
        assert loaded.root() == built.root() == again.root()


def _bad_frontier(make: Callable[[], object], match: str) -> None:
    with pytest.raises(VerificationError, match=match):
        make()


def test_frontier_checks_its_hashes() -> None:
    h = SOME_HASH
    _bad_frontier(lambda: Frontier(3, [h]), "a frontier of size 3 needs 2 hashes, got 1")
    _bad_frontier(lambda: Frontier(0, [h]), "needs 0 hashes")
    _bad_frontier(lambda: Frontier(-1), "cannot have -1 leaves")
    _bad_frontier(lambda: Frontier(3, [h, h[:5]]), "frontier hash 1 is 5 bytes")
    _bad_frontier(lambda: Frontier().append(b"short"), "the leaf hash is 5 bytes")
    assert Frontier(3, [h, h]).root() == node_hash(h, h)


# ---- MemoryTree -----------------------------------------------------------------------------------------------


def test_memory_tree_built_at_once_equals_one_built_by_appending() -> None:
    leaves = _leaves(77)
    grown = MemoryTree()
    for leaf in leaves:
        grown.append(leaf)
    whole = MemoryTree(leaves)
    assert whole.size == grown.size == 77
    for level in range(7):
        for index in range(77 >> level):
            node = whole.node(level, index)
            assert type(node) is bytes and node == grown.node(level, index)
    assert whole.root() == whole.root(77) == grown.root() == naive_root(leaves)


def test_memory_tree_refuses_leaves_that_are_not_hashes() -> None:
    with pytest.raises(VerificationError, match="leaf hash 1 is 3 bytes"):
        MemoryTree([SOME_HASH, b"abc"])
    with pytest.raises(VerificationError):
        MemoryTree().append(b"")


def test_a_large_tree_agrees_with_the_frontier_and_proves_its_entries() -> None:
    size = (1 << 16) + 3
    leaves = _leaves(size)
    tree, frontier = MemoryTree(leaves), Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    root = tree.root()
    assert root == frontier.root() == naive_root(leaves)
    for index in (0, 1, 40_000, size - 4, size - 1):
        verify_inclusion(leaves[index], index, size, inclusion_proof(tree, index, size), root)
    for old in (1, 3, 1 << 15, (1 << 16) - 1, 1 << 16, size - 1):
        verify_consistency(old, size, tree.root(old), root, consistency_proof(tree, old, size))
