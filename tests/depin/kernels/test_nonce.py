"""The nonce@1 kernel: parameters, split and merge, agreement with a plain-Python search, and verify()."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from depin import codec, kernels
from depin.errors import PeerProtocolError, StateError, UserError
from depin.kernels import nonce, output_digest, splitmix

DATA = Path(__file__).resolve().parents[2] / "data"
KNOWN: dict[str, Any] = json.loads((DATA / "nonce_known.json").read_text())
U64 = 2**64 - 1


def _task(job: dict[str, Any], lo: int | None = None, hi: int | None = None) -> dict[str, Any]:
    p = nonce.validate(job)
    lo = p["start"] if lo is None else lo
    hi = p["start"] + p["count"] if hi is None else hi
    return nonce.validate_task(dict(p, nonce_start=lo, nonce_end=hi))


def _python_search(seed: int, difficulty: int, lo: int, hi: int) -> list[int]:
    """PROTOCOL.md's definition, with the plain-Python SplitMix64 and no shortcut."""
    for n in range(lo, hi):
        if splitmix.mix(seed, n) >> (64 - difficulty) == 0:
            return [1, n]
    return [0, 0]


def _out(found: int, n: int) -> np.ndarray:
    return np.array([found, n], dtype=np.uint64)


# ---- registry and parameters -----------------------------------------------------------------------------------


def test_registry() -> None:
    k = kernels.get("nonce", 1)
    assert k is nonce.KERNEL
    assert (k.key, k.exact, k.verify) == ("nonce@1", True, nonce.verify)
    assert [x.key for x in kernels.all_kernels()] == ["mandelbrot@1", "montecarlo@1", "nonce@1"]


def test_validate() -> None:
    assert nonce.validate({"seed": 1, "difficulty": 8, "count": 100}) == {"seed": 1, "difficulty": 8, "start": 0,
                                                                           "count": 100}
    top = {"seed": str(2**63 - 1), "difficulty": "40", "start": str(2**62), "count": str(2**40)}
    assert nonce.validate(top) == {"seed": 2**63 - 1, "difficulty": 40, "start": 2**62, "count": 2**40}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"difficulty": 8, "count": 1}, r"missing parameter seed \(the puzzle"),
        ({"seed": 1, "count": 1}, r"missing parameter difficulty \(leading zero bits"),
        ({"seed": 1, "difficulty": 8}, r"missing parameter count \(number of nonces"),
        ({"seed": 1, "difficulty": 0, "count": 1}, r"parameter difficulty: 0 is outside \[1, 40\]"),
        ({"seed": 1, "difficulty": 41, "count": 1}, r"parameter difficulty: 41 is outside \[1, 40\]"),
        ({"seed": -1, "difficulty": 8, "count": 1}, r"parameter seed: -1 is outside \[0, 9223372036854775807\]"),
        ({"seed": 2**63, "difficulty": 8, "count": 1}, r"parameter seed: 9223372036854775808 is outside"),
        ({"seed": 1, "difficulty": 8, "count": 0}, r"parameter count: 0 is outside \[1, 1099511627776\]"),
        ({"seed": 1, "difficulty": 8, "count": 2**40 + 1}, r"parameter count: 1099511627777 is outside"),
        ({"seed": 1, "difficulty": 8, "count": 1, "start": 2**62 + 1},
         r"parameter start: 4611686018427387905 is outside \[0, 4611686018427387904\]"),
        ({"seed": 1, "difficulty": 8.0, "count": 1}, "parameter difficulty: must be int, got float"),
        ({"seed": 1, "difficulty": 8, "count": 1, "end": 5}, "unknown parameter 'end'; expected one of: seed"),
    ],
)
def test_validate_refuses(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        nonce.validate(raw)


def test_validate_task() -> None:
    t = {"seed": 1, "difficulty": 8, "start": 100, "count": 50, "nonce_start": 100, "nonce_end": 150}
    assert nonce.validate_task(dict(t)) == t
    for lo, hi in [(99, 150), (100, 151), (120, 120), (130, 120)]:
        with pytest.raises(UserError, match=r"task nonces must satisfy start <= nonce_start < nonce_end <= start \+"):
            nonce.validate_task({**t, "nonce_start": lo, "nonce_end": hi})
    top = {"seed": 1, "difficulty": 8, "start": 2**62, "count": 2**40,
           "nonce_start": 2**62 + 2**40 - 1, "nonce_end": 2**62 + 2**40}
    assert nonce.validate_task(dict(top)) == top


@pytest.mark.parametrize("change", [{"start": None}, {"nonce_start": None}, {"seed": "1"}, {"count": 50.0},
                                    {"difficulty": True}])
def test_validate_task_is_strict(change: dict[str, Any]) -> None:
    t: dict[str, Any] = {"seed": 1, "difficulty": 8, "start": 100, "count": 50, "nonce_start": 100, "nonce_end": 150}
    (name, value), = change.items()
    if value is None:
        del t[name]
    else:
        t[name] = value
    with pytest.raises(UserError, match=f"task parameter {name}: must be present as int"):
        nonce.validate_task(t)


# ---- split, work, output, merge ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "count", "n"), [(0, 1, 1), (5, 10, 3), (2**62, 2**40, 1024), (7, 1000, 1000)])
def test_split_covers_the_range_once(start: int, count: int, n: int) -> None:
    p = nonce.validate({"seed": 1, "difficulty": 8, "start": start, "count": count})
    tasks = nonce.split(p, n)
    assert len(tasks) == n
    assert tasks[0]["nonce_start"] == start and tasks[-1]["nonce_end"] == start + count
    assert all(a["nonce_end"] == b["nonce_start"] for a, b in zip(tasks, tasks[1:], strict=False))
    assert [t["nonce_start"] for t in tasks] == [start + i * count // n for i in range(n)]
    assert max(nonce.work(t) for t in tasks) <= nonce.MAX_TASK_NONCES
    for t in tasks[:3] + tasks[-3:]:
        assert nonce.validate_task(t) == t


def test_split_refuses() -> None:
    p = nonce.validate({"seed": 1, "difficulty": 8, "count": 4})
    with pytest.raises(UserError, match=r"--tasks must be between 1 and 4 \(the nonce count\)"):
        nonce.split(p, 5)
    big = nonce.validate({"seed": 1, "difficulty": 8, "count": 2**40})
    with pytest.raises(UserError, match="a task of 1090785346 nonces exceeds 1073741824; use --tasks 1024 or more"):
        nonce.split(big, 1008)


@pytest.mark.parametrize("count", [2**30 + 1, 2**40, 5 * 2**30 - 1, 987_654_321_012])
def test_split_suggestion_is_exactly_enough(count: int) -> None:
    p = nonce.validate({"seed": 1, "difficulty": 8, "count": count})
    with pytest.raises(UserError, match=r"use --tasks (\d+) or more") as info:
        nonce.split(p, 1)
    found = re.search(r"use --tasks (\d+) or more", str(info.value))
    assert found is not None
    k = int(found.group(1))
    nonce.split(p, k)
    with pytest.raises(UserError, match="or more"):
        nonce.split(p, k - 1)


def test_output_spec_work_and_check_output() -> None:
    t = _task({"seed": 1, "difficulty": 8, "start": 10, "count": 100}, 20, 50)
    assert nonce.output_spec(t) == ("uint64", (2,))
    assert nonce.work(t) == 30
    assert nonce.work(nonce.validate({"seed": 1, "difficulty": 8, "start": 10, "count": 100})) == 100
    nonce.KERNEL.check_output(t, _out(0, 0))
    with pytest.raises(PeerProtocolError, match=r"output must be uint64\[2\], got int64\[2\]"):
        nonce.KERNEL.check_output(t, np.zeros(2, dtype=np.int64))


@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_split_and_merge_match_the_whole_range(n: int) -> None:
    p = nonce.validate({"seed": 7, "difficulty": 10, "start": 1000, "count": 20_000})
    tasks = nonce.split(p, n)
    merged = nonce.merge(p, [nonce.run(t) for t in tasks])
    assert merged.dtype == np.uint64 and merged.shape == (n, 2)
    for t, row in zip(tasks, merged.tolist(), strict=True):
        assert row == _python_search(7, 10, t["nonce_start"], t["nonce_end"])
    # The whole range's answer is the first task's answer that found one.
    whole = nonce.run(_task(p)).tolist()
    assert whole == next(row for row in merged.tolist() if row[0] == 1)


def test_merge_refuses_malformed_outputs() -> None:
    p = nonce.validate({"seed": 7, "difficulty": 10, "count": 10})
    with pytest.raises(StateError, match=r"must be uint64\[2\], got uint64\[3\]"):
        nonce.merge(p, [np.zeros(3, dtype=np.uint64)])
    with pytest.raises(StateError, match="at least one task output"):
        nonce.merge(p, [])


# ---- run vs the reference ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "difficulty", "lo", "hi"), [
    (0, 1, 0, 10), (0, 8, 0, 5000), (0, 8, 367, 5000), (42, 12, 10, 20_000), (2**63 - 1, 6, 2**62, 2**62 + 3000),
    (3, 40, 0, 3000), (9, 16, 2**62 + 2**40 - 2000, 2**62 + 2**40), (5, 3, 77, 78), (5, 3, 80, 81),
])
def test_run_matches_the_python_search(seed: int, difficulty: int, lo: int, hi: int) -> None:
    start = min(lo, 2**62)
    t = nonce.validate_task({"seed": seed, "difficulty": difficulty, "start": start, "count": hi - start,
                             "nonce_start": lo, "nonce_end": hi})
    out = nonce.run(t)
    assert out.dtype == np.uint64 and out.shape == (2,)
    assert out.tolist() == _python_search(seed, difficulty, lo, hi)


def test_solutions_are_the_known_ones() -> None:
    sols = KNOWN["solutions_seed0_d8"]
    assert [n for n in range(sols[-1] + 1) if nonce.is_solution(0, 8, n)] == sols
    assert splitmix.mix(0, 366) == 0x00BB92E27D083DCA  # PROTOCOL.md 15.7
    lo = 0
    for s in sols:  # each search from just after the previous solution finds the next one
        assert nonce.run(_task({"seed": 0, "difficulty": 8, "count": 10_000}, lo, 10_000)).tolist() == [1, s]
        lo = s + 1


def test_difficulty_is_the_count_of_leading_zero_bits() -> None:
    out = nonce.run(_task({"seed": 42, "difficulty": 20, "count": 2**24}, 0, 2**22))
    assert out[0] == 1
    mixed = splitmix.mix(42, int(out[1]))
    assert mixed < 2**44 and mixed.bit_length() <= 44  # 20 leading zeros
    assert not nonce.is_solution(42, 21, int(out[1])) or mixed < 2**43


# ---- verify --------------------------------------------------------------------------------------------------------


JOB = {"seed": 0, "difficulty": 8, "start": 0, "count": 10_000}


def test_verify_accepts_the_honest_answer() -> None:
    t = _task(JOB, 300, 1000)
    out = nonce.run(t)
    assert out.tolist() == [1, 366]
    assert nonce.verify(t, out) is True


def test_verify_cannot_check_no_solution() -> None:
    t = _task({"seed": 3, "difficulty": 40, "count": 1000})
    out = nonce.run(t)
    assert out.tolist() == [0, 0]
    assert nonce.verify(t, out) is None
    assert nonce.verify(_task(JOB, 300, 1000), _out(0, 0)) is None  # even a false "none": the quorum decides


def test_verify_accepts_any_solution_in_range_not_only_the_smallest() -> None:
    # The documented limit of a one-mix check: 410 is a solution but 366 is smaller. The exact comparison still
    # tells them apart, so a task decided by quorum gets the smallest.
    t = _task(JOB, 300, 1000)
    assert nonce.verify(t, _out(1, 410)) is True
    assert output_digest(_out(1, 410)) != output_digest(nonce.run(t))


@pytest.mark.parametrize(("found", "n", "why"), [
    (1, 367, "not a solution"),
    (1, 0, "not a solution, and outside"),
    (1, 1000, "a solution? 1000 is one past the end"),
    (1, 299, "just below the range"),
    (1, 1264, "a real solution, outside the range"),
    (2, 366, "found is not 0 or 1"),
    (U64, 366, "found is not 0 or 1"),
    (0, 366, "none found, but a nonce given"),
    (0, U64, "none found, but a nonce given"),
    (1, U64, "far outside"),
])
def test_verify_refuses(found: int, n: int, why: str) -> None:
    t = _task(JOB, 300, 1000)
    assert nonce.verify(t, _out(found, n)) is False, why


def test_verify_checks_the_range_with_a_real_solution() -> None:
    # 1264 solves the puzzle, so only the range check can refuse it; at the range's last nonce it is accepted.
    assert nonce.is_solution(0, 8, 1264)
    assert nonce.verify(_task(JOB, 300, 1264), _out(1, 1264)) is False
    assert nonce.verify(_task(JOB, 300, 1265), _out(1, 1264)) is True
    assert nonce.verify(_task(JOB, 1264, 1265), _out(1, 1264)) is True


def test_verify_survives_hostile_outputs() -> None:
    t = _task({**JOB, "start": 2**62, "count": 2**40}, 2**62, 2**62 + 2**30)
    rng = np.random.default_rng(0)
    hostile = rng.integers(0, U64, size=(2000, 2), dtype=np.uint64, endpoint=True)
    hostile[:500, 0] = rng.integers(0, 2, size=500, dtype=np.uint64)  # found 0 or 1: the range checks get a turn
    hostile[:100, 1] = 2**62 + rng.integers(0, 2**30, size=100, dtype=np.uint64)  # and some land in the range
    for row in hostile:
        got = nonce.verify(t, row)
        found, n = int(row[0]), int(row[1])
        expected: bool | None = (
            (None if n == 0 else False) if found == 0
            else found == 1 and 2**62 <= n < 2**62 + 2**30 and nonce.is_solution(0, 8, n)
        )
        assert got is expected, (found, n)


@pytest.mark.parametrize("arr", [np.zeros(2, dtype=np.float64), np.zeros(3, dtype=np.uint64),
                                 np.zeros((1, 2), dtype=np.uint64), np.zeros(2, dtype=np.int64),
                                 np.zeros(0, dtype=np.uint64)])
def test_verify_refuses_the_wrong_dtype_or_shape_without_crashing(arr: np.ndarray) -> None:
    assert nonce.verify(_task(JOB), arr) is False


def test_verify_costs_one_mix(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = splitmix.mix

    def counting(seed: int, counter: int) -> int:
        calls.append(counter)
        return real(seed, counter)

    monkeypatch.setattr(splitmix, "mix", counting)
    t = _task({**JOB, "count": 2**40}, 0, 2**30)
    assert nonce.verify(t, _out(1, 2**30 - 1)) is False
    assert nonce.verify(t, _out(1, 366)) is True
    assert calls == [2**30 - 1, 366]


# ---- known answers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", KNOWN["tasks"], ids=[c["name"] for c in KNOWN["tasks"]])
def test_known_tasks(case: dict[str, Any]) -> None:
    t = nonce.validate_task(case["task"])
    out = nonce.run(t)
    assert out.tolist() == case["output"]
    assert nonce.verify(t, out) is (True if case["output"][0] else None)


def test_known_job() -> None:
    # The PROTOCOL.md example: 2^24 nonces of seed 42 at difficulty 20, in 4 tasks.
    job = KNOWN["jobs"][0]
    p = nonce.validate(job["params"])
    tasks = nonce.split(p, job["tasks"])
    assert [[t["nonce_start"], t["nonce_end"]] for t in tasks] == job["ranges"]
    outs = [nonce.run(t) for t in tasks]
    merged = nonce.merge(p, outs)
    assert merged.tolist() == job["merged"]
    assert codec.encode(codec.array_to_wire(outs[0])).hex() == job["task0_wire_hex"]
    assert output_digest(outs[0]).hex() == job["task0_digest_hex"]
    assert [f"{splitmix.mix(42, n):016x}" for _, n in job["merged"]] == job["mix_hex"]
