"""An RFC 6962 / RFC 9162 (section 2.1) Merkle tree over SHA-256, as pure functions and small classes.

Leaves and inner nodes hash under different prefixes (0x00, 0x01), so no leaf can pass for a node. The tree over
n leaves is the RFC's MTH, split at the largest power of two below n, so every range the recursion visits is tiled
by *perfect* subtrees aligned to their own size. A store keeps those as `node(level, index)`, and any range root,
inclusion path or consistency proof is then O(log n) node reads. `Frontier` keeps only the right edge (one perfect
root per set bit of the size): appending merges equal-sized roots like a binary counter and returns the nodes it
completed, for the caller to store. The `naive_*` functions are the RFC's recursive definitions over the whole leaf
list: the oracle for tests and the baseline for benchmarks. Verification follows RFC 9162 2.1.3.2 and 2.1.4.2 step
by step and raises `VerificationError`; asking for a proof the tree cannot give raises `NotFound`. No I/O here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from depin.errors import NotFound, VerificationError

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
HASH_SIZE = 32


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash of one log entry."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an inner node."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hashes(what: str, values: Sequence[bytes]) -> None:
    for i, value in enumerate(values):
        if len(value) != HASH_SIZE:
            name = what if len(values) == 1 else f"{what} {i}"
            raise VerificationError(f"{name} is {len(value)} bytes, not {HASH_SIZE}")


class NodeSource(Protocol):
    """Stored hashes of perfect subtrees: node(level, index) covers leaves [index << level, (index + 1) << level)."""

    def node(self, level: int, index: int) -> bytes:
        """The hash of one perfect subtree; level 0 is the leaf hashes themselves."""
        ...


def _range_positions(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees that tile [start, end), largest first; start must be aligned to the largest."""
    out: list[tuple[int, int]] = []
    size = end - start
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            if start & ((1 << level) - 1):
                raise NotFound(f"no stored subtree for the range [{start}, {end})")
            out.append((level, start >> level))
            start += 1 << level
    return out


def frontier_positions(size: int) -> list[tuple[int, int]]:
    """(level, index) of the frontier nodes of a tree of `size` leaves, largest first."""
    if size < 0:
        raise NotFound(f"no tree of size {size}")
    return _range_positions(0, size)


def _fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from its perfect subtrees, largest first: each smaller one hangs to the right."""
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for h in reversed(hashes[:-1]):
        root = node_hash(h, root)
    return root


class Frontier:
    """The right edge of a growing tree (a "compact range"): one perfect subtree root per set bit of size."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise VerificationError(f"a tree cannot have {size} leaves")
        if len(hashes) != size.bit_count():
            raise VerificationError(f"a frontier of size {size} needs {size.bit_count()} hashes, got {len(hashes)}")
        _check_hashes("frontier hash", hashes)
        self.size = size
        self._hashes = list(hashes)

    @classmethod
    def from_source(cls, source: NodeSource, size: int) -> Frontier:
        """The frontier of the first `size` leaves of a store, read in O(log size) nodes."""
        return cls(size, [source.node(level, index) for level, index in frontier_positions(size)])

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The frontier hashes, largest subtree first."""
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return every perfect node it completes as (level, index, hash), leaf first."""
        _check_hashes("the leaf hash", [leaf])
        index = self.size
        done = [(0, index, leaf)]
        h, level, hashes = leaf, 0, self._hashes
        while index & 1:  # the bit at `level` of size is set: a sibling of equal size waits to merge
            h = node_hash(hashes.pop(), h)
            level += 1
            index >>= 1
            done.append((level, index, h))
        hashes.append(h)
        self.size += 1
        return done

    def root(self) -> bytes:
        """MTH of all leaves so far (EMPTY_ROOT for none)."""
        return _fold(self._hashes)


def subtree_root(source: NodeSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range the RFC recursion produces (start aligned), in O(log n) node reads."""
    if not 0 <= start <= end:
        raise NotFound(f"no range [{start}, {end})")
    return _fold([source.node(level, index) for level, index in _range_positions(start, end)])


def inclusion_proof(source: NodeSource, index: int, size: int) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(index, D[size]), nearest sibling first."""
    if not 0 <= index < size:
        raise NotFound(f"no entry {index} in a tree of {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            path.append(subtree_root(source, mid, end))
            end = mid
        else:
            path.append(subtree_root(source, start, mid))
            start = mid
    path.reverse()
    return path


def consistency_proof(source: NodeSource, old: int, new: int) -> list[bytes]:
    """RFC 9162 2.1.4.1 PROOF(old, D[new]); empty when old is 0 or equal to new."""
    if not 0 <= old <= new:
        raise NotFound(f"cannot prove consistency from size {old} to size {new}")
    proof: list[bytes] = []
    if old in (0, new):
        return proof
    start, end, whole = 0, new, True  # `whole`: the old tree is still a left-aligned prefix (the RFC's b)
    while old != end:
        mid = start + _split(end - start)
        if old <= mid:
            proof.append(subtree_root(source, mid, end))
            end = mid
        else:
            proof.append(subtree_root(source, start, mid))
            start, whole = mid, False
    if not whole:
        proof.append(subtree_root(source, start, end))
    proof.reverse()
    return proof


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that `leaf` is entry `index` of the tree of `size` with `root` (RFC 9162 2.1.3.2); raise if not."""
    if not 0 <= index < size:
        raise VerificationError(f"no entry {index} in a tree of {size}")
    _check_hashes("the leaf hash", [leaf])
    _check_hashes("the root", [root])
    _check_hashes("proof hash", proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError("inclusion proof is too short")
    if r != root:
        raise VerificationError(f"inclusion proof for entry {index} does not match the root of size {size}")


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Check that the tree of size `old` is a prefix of the one of size `new` (RFC 9162 2.1.4.2); raise if not."""
    if not 0 <= old <= new:
        raise VerificationError(f"cannot prove consistency from size {old} to size {new}")
    if old in (0, new):
        if proof:
            raise VerificationError("consistency proof from size 0 or between equal sizes must be empty")
        if old == new and old_root != new_root:
            raise VerificationError(f"two different roots for size {old}")
        return
    if not proof:
        raise VerificationError("consistency proof is empty")
    _check_hashes("the old root", [old_root])
    _check_hashes("the new root", [new_root])
    _check_hashes("proof hash", proof)
    path = [old_root, *proof] if old & (old - 1) == 0 else list(proof)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError("consistency proof is too short")
    if fr != old_root:
        raise VerificationError(f"consistency proof does not match the root of size {old}")
    if sr != new_root:
        raise VerificationError(f"consistency proof does not match the root of size {new}")


class MemoryTree:
    """All perfect nodes of a list of leaf hashes, kept in memory (tests, export verification): a NodeSource."""

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        _check_hashes("leaf hash", leaves)
        self._levels = [bytearray()]  # level L holds node(L, i) at bytes [32 i, 32 i + 32)
        for leaf in leaves:
            self.append(leaf)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash and every parent it completes."""
        _check_hashes("the leaf hash", [leaf])
        levels, level, h = self._levels, 0, leaf
        while True:
            if level == len(levels):
                levels.append(bytearray())
            row = levels[level]
            row += h
            if len(row) // HASH_SIZE % 2:
                return
            h = hashlib.sha256(NODE_PREFIX + row[-2 * HASH_SIZE :]).digest()  # node_hash of the last two
            level += 1

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self._levels[0]) // HASH_SIZE

    def node(self, level: int, index: int) -> bytes:
        """The hash of the perfect subtree at (level, index)."""
        if not (0 <= level < len(self._levels) and 0 <= index < len(self._levels[level]) // HASH_SIZE):
            raise NotFound(f"no node ({level}, {index}) in a tree of {self.size}")
        return bytes(self._levels[level][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first `size` leaves (all of them by default)."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise NotFound(f"no tree of size {size}: only {self.size} leaves")
        return subtree_root(self, 0, size)


def naive_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) by the RFC's recursion, over leaf hashes."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(naive_root(leaves[:k]), naive_root(leaves[k:]))


def naive_inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) by the RFC's recursion, over leaf hashes."""
    n = len(leaves)
    if not 0 <= index < n:
        raise NotFound(f"no entry {index} in a tree of {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return naive_inclusion_proof(leaves[:k], index) + [naive_root(leaves[k:])]
    return naive_inclusion_proof(leaves[k:], index - k) + [naive_root(leaves[:k])]


def _naive_subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [naive_root(leaves)]
    k = _split(n)
    if m <= k:
        return _naive_subproof(m, leaves[:k], whole) + [naive_root(leaves[k:])]
    return _naive_subproof(m - k, leaves[k:], False) + [naive_root(leaves[:k])]


def naive_consistency_proof(leaves: Sequence[bytes], old: int) -> list[bytes]:
    """PROOF(old, D[n]) by the RFC's recursion, over leaf hashes; empty when old is 0 or n."""
    n = len(leaves)
    if not 0 <= old <= n:
        raise NotFound(f"cannot prove consistency from size {old} to size {n}")
    return [] if old in (0, n) else _naive_subproof(old, leaves, True)
