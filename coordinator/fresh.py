"""In which order a job's tasks are made: a secret permutation of its indexes, computed, never stored.

A job's tasks are created (given their parameters, signed, stored) only when a lease walk first reaches one, so a
job of a million tasks is one row until workers take it (PROTOCOL.md 12.1, "Fresh tasks"). The k-th task created
is task `nth(key, n, k)`: a keyed Feistel permutation of 0..n-1 (four rounds of BLAKE2b over the half-words, cycle
walking into range), so which tasks come out first is the coordinator's secret, as the random start of a walk is,
and costs nothing to keep: the job stores its key and how many tasks were made. An empty key is the identity (index
order), which the tests use to know which task comes first.
"""

from __future__ import annotations

import hashlib

ROUNDS = 4


def nth(key: bytes, n: int, k: int) -> int:
    """The index of the k-th task made of a job of n tasks (0 <= k < n): a bijection of 0..n-1 for each key."""
    if not 0 <= k < n:
        raise ValueError(f"k = {k} is not in 0..{n - 1}")
    if not key or n <= 2:
        return k
    bits = max(2, (n - 1).bit_length())
    half = (bits + 1) // 2
    mask = (1 << half) - 1
    x = k
    while True:  # cycle walking: the permutation of 0..4^half - 1, applied until it lands below n
        left, right = x >> half, x & mask
        for r in range(ROUNDS):
            digest = hashlib.blake2b(right.to_bytes(8, "little") + bytes([r]), key=key, digest_size=8).digest()
            left, right = right, left ^ (int.from_bytes(digest, "little") & mask)
        x = (left << half) | right
        if x < n:
            return x
