"""SplitMix64 evaluated at a counter: the random numbers of montecarlo@1 and the puzzle of nonce@1.

`mix(seed, c)` is output number c (from 0) of Steele, Lea and Flood's SplitMix64 generator started at state `seed`
(the variant in Vigna's splitmix64.c and Java's SplittableRandom): the state after c + 1 steps of
`+ 0x9E3779B97F4A7C15`, put through the "variant 13" finaliser. All arithmetic is modulo 2^64. Because output c
depends only on (seed, c), any range of counters can be computed on its own, in any order, on any CPU.

This module is the plain-Python definition: the coordinator's `verify` and the tests use it, and it never imports
numba. The numba twin that the kernels run is `_splitmix_jit`; tests hold the two equal bit for bit.
"""

from __future__ import annotations

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15  # the step: 2^64 / golden ratio, odd
MUL1 = 0xBF58476D1CE4E5B9
MUL2 = 0x94D049BB133111EB
UNIT = 2.0**-53  # (mix >> 11) * UNIT is exact: 53 bits into a float64 with a 53-bit significand


def mix(seed: int, counter: int) -> int:
    """Output `counter` of SplitMix64 seeded with `seed`, as an int in [0, 2^64)."""
    z = (seed + (counter + 1) * GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * MUL1) & MASK64
    z = ((z ^ (z >> 27)) * MUL2) & MASK64
    return z ^ (z >> 31)


def unit(seed: int, counter: int) -> float:
    """`mix(seed, counter)` as a float in [0, 1): its top 53 bits times 2^-53."""
    return (mix(seed, counter) >> 11) * UNIT

