"""The montecarlo@1 kernel: parameters, split and merge, agreement with references, and the tolerance's two sides."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from depin import kernels
from depin.errors import PeerProtocolError, StateError, UserError
from depin.kernels import montecarlo, splitmix
from depin.kernels.base import Tolerance

DATA = Path(__file__).resolve().parents[2] / "data"
KNOWN: dict[str, Any] = json.loads((DATA / "montecarlo_known.json").read_text())
TOL = montecarlo.TOLERANCE
FUNCS = (0, 1, 2)


def _task(job: dict[str, Any], start: int = 0, end: int | None = None) -> dict[str, Any]:
    p = montecarlo.validate(job)
    return montecarlo.validate_task(dict(p, sample_start=start, sample_end=p["samples"] if end is None else end))


def _python_terms(func: int, seed: int, start: int, end: int) -> list[float]:
    """f at each sample, from PROTOCOL.md's definition and the plain-Python SplitMix64."""
    terms = []
    for i in range(start, end):
        x, y = splitmix.unit(seed, 2 * i), splitmix.unit(seed, 2 * i + 1)
        if func == 0:
            terms.append(1.0 if x * x + y * y <= 1.0 else 0.0)
        elif func == 1:
            terms.append(math.exp(-(x * x + y * y)))
        else:
            terms.append(math.sin(math.pi * x) * math.sin(math.pi * y))
    return terms


def _sums(terms: list[float]) -> np.ndarray:
    s = s2 = 0.0
    for f in terms:
        s += f
        s2 += f * f
    return np.array([s, s2])


def _numpy_worker(func: int, seed: int, start: int, end: int) -> np.ndarray:
    """Another honest worker: NumPy's own (SIMD) exp and sin, and pairwise summation instead of index order."""
    c = np.arange(2 * start, 2 * end, dtype=np.uint64)
    z = np.uint64(seed) + (c + np.uint64(1)) * np.uint64(splitmix.GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(splitmix.MUL1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(splitmix.MUL2)
    u = (z ^ (z >> np.uint64(31))) >> np.uint64(11)
    xy = u.astype(np.float64) * splitmix.UNIT
    x, y = xy[0::2], xy[1::2]
    if func == 0:
        f = (x * x + y * y <= 1.0).astype(np.float64)
    elif func == 1:
        f = np.exp(-(x * x + y * y))
    else:
        f = np.sin(np.pi * x) * np.sin(np.pi * y)
    return np.array([np.sum(f), np.sum(f * f)])


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), np.abs(b))))


# ---- registry and parameters -----------------------------------------------------------------------------------


def test_registry() -> None:
    k = kernels.get("montecarlo", 1)
    assert k is montecarlo.KERNEL
    assert (k.key, k.exact, k.verify) == ("montecarlo@1", False, None)
    assert k.compare is TOL and TOL == Tolerance(abs_tol=0.0, rel_tol=1e-8)
    assert "montecarlo@1" in [x.key for x in kernels.all_kernels()]


def test_validate_defaults_and_cli_strings() -> None:
    assert montecarlo.validate({"func": 1, "samples": 10}) == {"func": 1, "samples": 10, "seed": 0}
    p = montecarlo.validate({"func": "2", "samples": "10000000000", "seed": str(2**63 - 1)})
    assert p == {"func": 2, "samples": 10**10, "seed": 2**63 - 1}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"samples": 10}, r"missing parameter func \(integrand: 0 = indicator"),
        ({"func": 0}, r"missing parameter samples \(number of random points"),
        ({"func": 3, "samples": 10}, r"parameter func: 3 is outside \[0, 2\]"),
        ({"func": -1, "samples": 10}, r"parameter func: -1 is outside \[0, 2\]"),
        ({"func": 0, "samples": 0}, r"parameter samples: 0 is outside \[1, 10000000000\]"),
        ({"func": 0, "samples": 10**10 + 1}, r"parameter samples: 10000000001 is outside \[1, 10000000000\]"),
        ({"func": 0, "samples": 10, "seed": -1}, r"parameter seed: -1 is outside \[0, 9223372036854775807\]"),
        ({"func": 0, "samples": 10, "seed": 2**63}, r"parameter seed: 9223372036854775808 is outside"),
        ({"func": 0.0, "samples": 10}, "parameter func: must be int, got float"),
        ({"func": 0, "samples": "1e6"}, "parameter samples: '1e6' is not an integer"),
        ({"func": 0, "samples": 10, "n": 1}, "unknown parameter 'n'; expected one of: func, samples, seed"),
    ],
)
def test_validate_refuses(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        montecarlo.validate(raw)


def test_validate_task() -> None:
    t = {"func": 1, "samples": 100, "seed": 5, "sample_start": 10, "sample_end": 100}
    assert montecarlo.validate_task(dict(t)) == t
    for start, end in [(5, 5), (6, 5), (0, 101)]:
        with pytest.raises(UserError, match="task samples must satisfy 0 <= sample_start < sample_end <= samples"):
            montecarlo.validate_task({**t, "sample_start": start, "sample_end": end})
    with pytest.raises(UserError, match=r"parameter func: 3 is outside"):
        montecarlo.validate_task({**t, "func": 3})


@pytest.mark.parametrize("change", [{"seed": None}, {"sample_end": None}, {"func": "1"}, {"samples": 100.0},
                                    {"seed": True}])
def test_validate_task_is_strict(change: dict[str, Any]) -> None:
    t: dict[str, Any] = {"func": 1, "samples": 100, "seed": 5, "sample_start": 10, "sample_end": 100}
    (name, value), = change.items()
    if value is None:
        del t[name]
    else:
        t[name] = value
    with pytest.raises(UserError, match=f"task parameter {name}: must be present as int"):
        montecarlo.validate_task(t)


# ---- split, work, output, merge ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("samples", "n"), [(1, 1), (10, 3), (10, 10), (1000, 7), (10**10, 597), (2**24 + 1, 2)])
def test_split_covers_every_sample_once(samples: int, n: int) -> None:
    p = montecarlo.validate({"func": 0, "samples": samples, "seed": 3})
    tasks = montecarlo.split(p, n)
    assert len(tasks) == n
    assert tasks[0]["sample_start"] == 0 and tasks[-1]["sample_end"] == samples
    assert all(a["sample_end"] == b["sample_start"] for a, b in zip(tasks, tasks[1:], strict=False))
    sizes = [montecarlo.work(t) for t in tasks]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1 and max(sizes) <= montecarlo.MAX_TASK_SAMPLES
    assert [t["sample_start"] for t in tasks] == [i * samples // n for i in range(n)]
    for t in tasks[:3] + tasks[-3:]:
        assert montecarlo.validate_task(t) == t


def test_split_refuses() -> None:
    p = montecarlo.validate({"func": 0, "samples": 5})
    for n in (0, 6, -1):
        with pytest.raises(UserError, match=r"--tasks must be between 1 and 5 \(the number of samples\)"):
            montecarlo.split(p, n)
    big = montecarlo.validate({"func": 0, "samples": 10**10})
    with pytest.raises(UserError, match=r"--tasks must be between 1 and 1000000 \(the most tasks a job may have\)"):
        montecarlo.split(big, 10**9)  # refused before a billion dicts are built
    with pytest.raises(UserError, match="a task of 16806723 samples exceeds 16777216; use --tasks 597 or more"):
        montecarlo.split(big, 595)


@pytest.mark.parametrize("samples", [2**24 + 1, 10**10, 3 * 2**24, 3 * 2**24 + 1, 123_456_789])
def test_split_suggestion_is_exactly_enough(samples: int) -> None:
    p = montecarlo.validate({"func": 0, "samples": samples})
    with pytest.raises(UserError, match=r"use --tasks (\d+) or more") as info:
        montecarlo.split(p, 1)
    found = re.search(r"use --tasks (\d+) or more", str(info.value))
    assert found is not None
    k = int(found.group(1))
    montecarlo.split(p, k)  # enough
    with pytest.raises(UserError, match="or more"):
        montecarlo.split(p, k - 1)  # and the least that is


def test_output_spec_work_and_check_output() -> None:
    t = _task({"func": 2, "samples": 100}, 10, 40)
    assert montecarlo.output_spec(t) == ("float64", (2,))
    assert montecarlo.work(t) == 30
    assert montecarlo.work(montecarlo.validate({"func": 2, "samples": 100})) == 100
    montecarlo.KERNEL.check_output(t, np.zeros(2))
    with pytest.raises(PeerProtocolError, match=r"output must be float64\[2\], got float32\[2\]"):
        montecarlo.KERNEL.check_output(t, np.zeros(2, dtype=np.float32))
    with pytest.raises(PeerProtocolError, match=r"output must be float64\[2\], got float64\[3\]"):
        montecarlo.KERNEL.check_output(t, np.zeros(3))


def test_merge_formula() -> None:
    p = montecarlo.validate({"func": 0, "samples": 8})
    out = montecarlo.merge(p, [np.array([3.0, 3.0]), np.array([1.0, 1.0])])
    assert out.dtype == np.float64 and out.tolist() == [0.5, math.sqrt((0.5 - 0.25) / 8), 8.0]


def test_merge_clamps_a_negative_variance() -> None:
    # Every f equal to 0.1: sumsq/S - mean^2 rounds to -1.7e-18 here, and the square root must not be NaN.
    p = montecarlo.validate({"func": 1, "samples": 3})
    total, total_sq = 0.1 + 0.1 + 0.1, 0.1 * 0.1 + 0.1 * 0.1 + 0.1 * 0.1
    assert total_sq / 3 - (total / 3) ** 2 < 0
    assert montecarlo.merge(p, [np.array([total, total_sq])]).tolist() == [total / 3, 0.0, 3.0]


def test_merge_refuses_a_malformed_output() -> None:
    p = montecarlo.validate({"func": 0, "samples": 8})
    with pytest.raises(StateError, match=r"must be float64\[2\], got float64\[3\]"):
        montecarlo.merge(p, [np.zeros(3)])


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("n", [1, 3, 7])
def test_split_and_merge_equal_the_whole_range(func: int, n: int) -> None:
    p = montecarlo.validate({"func": func, "samples": 5000, "seed": 99})
    whole = montecarlo.run(_task(p))
    parts = [montecarlo.run(t) for t in montecarlo.split(p, n)]
    assert TOL(np.sum(parts, axis=0), whole)
    merged = montecarlo.merge(p, parts)
    expected = montecarlo.merge(p, [whole])
    if func == 0:
        assert merged.tobytes() == expected.tobytes()  # integer sums: exact in any grouping
    else:
        assert np.allclose(merged, expected, rtol=1e-12, atol=0)


# ---- run vs the references ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize(("seed", "start", "end"), [(0, 0, 300), (2**63 - 1, 10**10 - 300, 10**10), (12345, 77, 78)])
def test_run_matches_the_python_reference(func: int, seed: int, start: int, end: int) -> None:
    out = montecarlo.run(_task({"func": func, "samples": 10**10, "seed": seed}, start, end))
    assert out.dtype == np.float64 and out.shape == (2,)
    ref = _sums(_python_terms(func, seed, start, end))
    if func == 0:
        assert out.tolist() == ref.tolist()
    else:
        assert np.allclose(out, ref, rtol=1e-12, atol=0)


def test_the_points_are_the_splitmix_units() -> None:
    # func 0 on one sample is 1 exactly when that point is inside the circle: pins x = u(2i), y = u(2i + 1).
    seed = 8
    for i in range(200):
        x, y = splitmix.unit(seed, 2 * i), splitmix.unit(seed, 2 * i + 1)
        inside = montecarlo.run(_task({"func": 0, "samples": 200, "seed": seed}, i, i + 1))[0] == 1.0
        assert inside == (x * x + y * y <= 1.0), i


@pytest.mark.parametrize("func", FUNCS)
def test_run_is_close_to_the_true_mean(func: int) -> None:
    true_mean = [math.pi / 4, math.erf(1.0) ** 2 * math.pi / 4, 4 / math.pi**2][func]
    p = montecarlo.validate({"func": func, "samples": 200_000, "seed": 2024})
    est, se, n = montecarlo.merge(p, [montecarlo.run(t) for t in montecarlo.split(p, 2)])
    assert n == 200_000 and 0 < se < 0.002
    assert abs(est - true_mean) < 5 * se


# ---- the tolerance: honest variants agree, wrong answers do not --------------------------------------------------


@pytest.mark.parametrize("func", FUNCS)
def test_tolerance_accepts_honest_variants(func: int) -> None:
    seed, start, end = 31337, 1000, 4000
    out = montecarlo.run(_task({"func": func, "samples": 10**6, "seed": seed}, start, end))
    terms = _python_terms(func, seed, start, end)
    rng = np.random.default_rng(func)
    ulps = rng.integers(-4, 5, size=len(terms))
    nudged = [float(np.nextafter(f, np.inf if k > 0 else -np.inf)) if f and k else f
              for f, k in zip(terms, ulps, strict=True)]
    for _ in range(3):  # up to 4 ulps per term, either way, as another libm might give
        nudged = [float(np.nextafter(f, np.inf if k > 0 else -np.inf)) if f and abs(k) > 1 else f
                  for f, k in zip(nudged, ulps, strict=True)]
    variants = {
        "reverse order": _sums(terms[::-1]),
        "correctly rounded": np.array([math.fsum(terms), math.fsum(f * f for f in terms)]),
        "terms a few ulps off": _sums(nudged),
        "numpy libm, pairwise sums": _numpy_worker(func, seed, start, end),
        "result a few ulps off": np.nextafter(np.nextafter(out, np.inf), np.inf),
    }
    for name, v in variants.items():
        assert TOL(out, v) and TOL(v, out), name
        assert _rel(out, v) < TOL.rel_tol / 1000, name  # honest differences are far inside the tolerance


def test_tolerance_accepts_honest_variants_at_the_largest_task() -> None:
    # 2^20 samples by NumPy (SIMD libm, pairwise sums) against the kernel; 2^24 would need ~1 GB of arrays.
    n = 1 << 20
    for func in FUNCS:
        out = montecarlo.run(_task({"func": func, "samples": n, "seed": 77}))
        assert TOL(out, _numpy_worker(func, 77, 0, n)), func


@pytest.mark.parametrize("func", FUNCS)
def test_tolerance_rejects_wrong_answers(func: int) -> None:
    job = {"func": func, "samples": 10**6, "seed": 31337}
    honest = montecarlo.run(_task(job, 1000, 4000))
    rng = np.random.default_rng(func)
    wrong = {
        "another seed": montecarlo.run(_task({**job, "seed": 31338}, 1000, 4000)),
        "another range": montecarlo.run(_task(job, 2000, 5000)),
        "another func": montecarlo.run(_task({**job, "func": (func + 1) % 3}, 1000, 4000)),
        "lazy zero": np.zeros(2),
        "sum right, squares zero": np.array([honest[0], 0.0]),
        "random": rng.uniform(0, 3000, size=2),
        "the mean instead of the sum": honest / 3000,
        "nan": np.array([honest[0], np.nan]),
        "inf": np.array([np.inf, honest[1]]),
        "float32 of it": honest.astype(np.float32),
    }
    for name, v in wrong.items():
        assert not TOL(honest, v) and not TOL(v, honest), name


def test_func_0_wrong_answers_with_equal_counts_are_indistinguishable() -> None:
    # Not a flaw of the tolerance: shifting the range by one sample swaps one point for another, and here both are
    # inside the circle, so the wrong output is bit-identical to the right one. Exact comparison could not tell
    # either; the chance of such a tie is about 1 / (2.5 * sqrt(0.34 n)) for two unrelated ranges of n samples.
    job = {"func": 0, "samples": 10**6, "seed": 31337}
    honest = montecarlo.run(_task(job, 1000, 4000))
    shifted = montecarlo.run(_task(job, 1001, 4001))
    assert honest.tobytes() == shifted.tobytes() and TOL(honest, shifted)


def test_wrong_seed_misses_by_a_huge_margin_at_the_largest_task() -> None:
    # The margin shrinks as tasks grow. At the largest task (2^24 samples) another seed is still ~10^4 tolerances
    # away for func 1, whose relative spread (sd/mean 0.39) is the smallest of the three; func 0 is exact (below).
    job = {"func": 1, "samples": montecarlo.MAX_TASK_SAMPLES}
    a = montecarlo.run(_task({**job, "seed": 1}))
    b = montecarlo.run(_task({**job, "seed": 2}))
    assert not TOL(a, b)
    assert _rel(a, b) > 1000 * TOL.rel_tol


def test_func_0_comparison_is_exact_up_to_the_largest_task() -> None:
    # The sums are integers below 2^24, and 2^24 * rel_tol < 1: counts that differ by one never agree.
    n = float(montecarlo.MAX_TASK_SAMPLES)
    assert not TOL(np.array([n, n]), np.array([n - 1, n - 1]))
    assert TOL(np.array([n, n]), np.array([n, n]))


# ---- known answers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", KNOWN["tasks"], ids=[c["name"] for c in KNOWN["tasks"]])
def test_known_tasks(case: dict[str, Any]) -> None:
    t = montecarlo.validate_task(case["task"])
    out = montecarlo.run(t)
    expected = np.array([float.fromhex(h) for h in case["output_hex"]])
    assert expected.tolist() == case["output"]
    if t["func"] == 0:
        assert out.tobytes() == expected.tobytes()
    assert TOL(out, expected)
    assert np.allclose(out, _sums(_python_terms(t["func"], t["seed"], t["sample_start"], t["sample_end"])),
                       rtol=1e-12, atol=0)


@pytest.mark.parametrize("job", KNOWN["jobs"], ids=[f"func{j['params']['func']}" for j in KNOWN["jobs"]])
def test_known_jobs(job: dict[str, Any]) -> None:
    # The PROTOCOL.md examples: 10^6 samples in 4 tasks, their outputs and the merged result.
    p = montecarlo.validate(job["params"])
    tasks = montecarlo.split(p, job["tasks"])
    assert [[t["sample_start"], t["sample_end"]] for t in tasks] == job["ranges"]
    outs = [montecarlo.run(t) for t in tasks]
    for out, hexes in zip(outs, job["outputs_hex"], strict=True):
        assert TOL(out, np.array([float.fromhex(h) for h in hexes]))
    merged = montecarlo.merge(p, outs)
    expected = np.array([float.fromhex(h) for h in job["merged_hex"]])
    if p["func"] == 0:
        assert merged.tobytes() == expected.tobytes()
    assert np.allclose(merged, expected, rtol=1e-8, atol=0)


def test_known_first_sample() -> None:
    # PROTOCOL.md 14.7: seed 1, sample 0, step by step.
    ex = KNOWN["first_sample_seed1"]
    assert [f"{splitmix.mix(1, c):016x}" for c in (0, 1)] == ex["mix_hex"]
    x, y = splitmix.unit(1, 0), splitmix.unit(1, 1)
    assert (x.hex(), y.hex()) == (ex["x_hex"], ex["y_hex"])
    assert x * x + y * y == ex["r2"]
    for func in FUNCS:
        out = montecarlo.run(_task({"func": func, "samples": 1, "seed": 1}))
        assert out[0] == pytest.approx(ex["f"][func], rel=1e-15, abs=0)
        if func == 2:
            assert TOL(out, np.array(ex["task_func2_output"]))
