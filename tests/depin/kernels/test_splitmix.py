"""SplitMix64 at a counter: the published vectors, the plain-Python twin and the numba implementation, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from depin.kernels import _splitmix_jit, splitmix

DATA = Path(__file__).resolve().parents[2] / "data"
VECTORS: dict[str, Any] = json.loads((DATA / "splitmix64_vectors.json").read_text())
M64 = 2**64 - 1

SEEDS = [0, 1, 42, 2**32 - 1, 2**32, 2**63 - 1, 0x0123456789ABCDEF]
COUNTERS = [0, 1, 2, 999, 2**31, 2**32 - 1, 2**40, 2**53 + 1, 2 * 10**10 - 1, 2**62 + 2**40, 2**63,
            2**64 - 2, 2**64 - 1]


def _jit_mix(seed: int, counter: int) -> int:
    return int(_splitmix_jit.mix(np.uint64(seed), np.uint64(counter)))


def _invert(output: int) -> int:
    """The state z (= seed + (counter + 1) * GOLDEN) whose finalised value is `output`: the mix is a bijection."""

    def unshift(y: int, k: int) -> int:
        z = y
        for _ in range(64 // k):
            z = y ^ (z >> k)
        return z

    z = unshift(output, 31)
    z = unshift((z * pow(splitmix.MUL2, -1, 2**64)) & M64, 27)
    return unshift((z * pow(splitmix.MUL1, -1, 2**64)) & M64, 30)


def _seed_for(output: int) -> int:
    """A seed whose output 0 is `output`."""
    return (_invert(output) - splitmix.GOLDEN) & M64


# ---- known answers ---------------------------------------------------------------------------------------------


def test_seed_0_is_the_published_sequence() -> None:
    # Vigna's splitmix64.c and Java's SplittableRandom: the first output already uses state seed + GOLDEN.
    assert [splitmix.mix(0, c) for c in range(5)] == [
        0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, 0xF88BB8A8724C81EC, 0x1B39896A51A8749B,
    ]


@pytest.mark.parametrize("seed", sorted(VECTORS["sequences"]))
def test_sequences_from_the_c_reference(seed: str) -> None:
    expected = [int(h, 16) for h in VECTORS["sequences"][seed]]
    assert [splitmix.mix(int(seed), c) for c in range(5)] == expected
    assert [_jit_mix(int(seed), c) for c in range(5)] == expected


@pytest.mark.parametrize(("seed", "counter", "out"), VECTORS["at_counter"])
def test_far_counters_from_the_c_reference(seed: int, counter: int, out: str) -> None:
    assert splitmix.mix(seed, counter) == int(out, 16)
    assert _jit_mix(seed, counter) == int(out, 16)


def test_counter_wraps_like_uint64() -> None:
    # counter 2^64 - 1: counter + 1 wraps to 0, so the state is the seed itself.
    assert splitmix.mix(5, 2**64 - 1) == splitmix.mix((5 - splitmix.GOLDEN) & M64, 0)


# ---- the numba twin --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_jit_mix_equals_python_bit_for_bit(seed: int) -> None:
    for c in COUNTERS + list(range(64)):
        assert _jit_mix(seed, c) == splitmix.mix(seed, c), (seed, c)


def test_jit_mix_accepts_signed_arguments() -> None:
    # nonce@1 passes its range index as int64; the conversion to uint64 must come before any shift.
    for seed, c in [(0, 0), (2**63 - 1, 2**62), (42, 2**62 + 2**40 - 1)]:
        assert int(_splitmix_jit.mix(np.uint64(seed), np.int64(c))) == splitmix.mix(seed, c)
        assert int(_splitmix_jit.mix(np.int64(seed), np.int64(c))) == splitmix.mix(seed, c)


def test_naive_numba_arithmetic_would_be_wrong() -> None:
    # Guards the reason for _splitmix_jit's np.uint64 everywhere: with a plain `+ 1` numba turns uint64 into int64,
    # `>>` becomes an arithmetic shift, and the output is silently different. If numba ever changes this rule,
    # this test says so (and the careful version still passes the tests above).
    import numba

    @numba.njit
    def naive(seed, counter):  # type: ignore[no-untyped-def]
        z = seed + (counter + 1) * 0x9E3779B97F4A7C15
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB
        return z ^ (z >> 31)

    got = int(naive(np.uint64(0), np.uint64(0))) & M64
    assert got != splitmix.mix(0, 0)


def test_unit_is_the_top_53_bits() -> None:
    for seed in SEEDS:
        for c in COUNTERS[:8]:
            u = splitmix.unit(seed, c)
            assert 0.0 <= u < 1.0
            assert u == (splitmix.mix(seed, c) >> 11) / 2**53
            assert u * 2**53 == float(splitmix.mix(seed, c) >> 11)  # exact: nothing was rounded
            assert float(_splitmix_jit.unit(np.uint64(seed), np.uint64(c))).hex() == u.hex()


@pytest.mark.parametrize(("output", "expected"), [
    (0, 0.0),
    (2**11 - 1, 0.0),  # the low 11 bits are dropped
    (2**11, 2.0**-53),
    (2**64 - 1, 1.0 - 2.0**-53),  # the largest value is below 1
    (2**63, 0.5),
])
def test_unit_extremes(output: int, expected: float) -> None:
    seed = _seed_for(output)
    assert splitmix.mix(seed, 0) == output
    assert _jit_mix(seed, 0) == output
    assert splitmix.unit(seed, 0) == expected
    assert float(_splitmix_jit.unit(np.uint64(seed), np.uint64(0))) == expected


def test_mix_is_a_bijection_hence_no_security() -> None:
    # The reason nonce@1 is only a puzzle: any output can be traced back to its state in a few operations.
    for seed in SEEDS:
        for c in (0, 7, 2**40):
            assert _invert(splitmix.mix(seed, c)) == (seed + (c + 1) * splitmix.GOLDEN) & M64


def test_kernel_caches_follow_the_mix_source() -> None:
    # numba keys a cached function on its own bytecode and closure only: each kernel that calls mix must hold the
    # digest of the SplitMix64 sources in its closure, or an edited mix would leave it running stale machine code.
    from depin.kernels import montecarlo, nonce

    for kernel in (montecarlo, nonce):
        fn = kernel._compiled().py_func
        cells = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__ or ()), strict=True))
        assert cells.get("mix_source") == _splitmix_jit.SOURCE_DIGEST, kernel.__name__
