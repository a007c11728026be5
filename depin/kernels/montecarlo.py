"""The montecarlo kernel: Monte Carlo integration over the unit square, checked by tolerance, not by digest.

Exact definition (also in docs/PROTOCOL.md, "Kernel montecarlo@1"): sample i is the point (x, y) =
(splitmix.unit(seed, 2i), splitmix.unit(seed, 2i + 1)), and a task over samples [sample_start, sample_end) outputs
[sum of f, sum of f^2] over them, added in index order. The random numbers are bit-identical everywhere; the sums
are not, because exp and sin come from each platform's libm and a worker may add in another order. So results are
compared with TOLERANCE, whose bound is derived below and in the spec. A task can be computed in chunks of samples
(`Chunks`) whose state is the running pair of sums: resuming adds the same terms in the same order, so a chunked run
gives the same bits as an uninterrupted one on the same machine.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from depin.errors import StateError, UserError
from depin.kernels._ranges import check_split, nth_range
from depin.kernels.base import Chunks, Kernel, Param, Params, Pieces, Tolerance, parse_params

MAX_WORK = 10**10  # samples per job: the range of `samples` is the job's work limit
MAX_TASK_SAMPLES = 1 << 24  # ~0.15 to 0.7 s of one core per task; TOLERANCE below is derived from this bound
CHUNK_SAMPLES = 1 << 21  # samples per chunk: at most ~0.1 s of one x86 core, well under a second on a Pi

# Why this tolerance (PROTOCOL.md, "Comparison"): both outputs are sums of n <= 2^24 terms in [0, 1]. Adding n
# non-negative terms in any order errs by at most (n - 1) * 2^-53 * sum (Higham, recursive or any tree order), so
# two honest workers differ by at most 2 * 2^24 * 2^-53 = 2^-28 = 3.7e-9 of the sum from summation, plus twice the
# libm error of each term: even at 16 ulps per exp or sin call that is ~2^-45 relative, since every term is >= 0.
# rel_tol = 1e-8 is 2.7 times that worst case. A wrong answer is rejected by a wide margin: another seed moves a
# sum by about sqrt(2n) standard deviations of one term, at least 1.3e-4 of the sum at n = 2^24 (13,000 times the
# tolerance, more for smaller tasks); for func 0 the sums are integers below 2^24, and 1e-8 * 2^24 < 1, so the
# comparison is exact. No absolute slack is needed: a term is either exactly 0 everywhere (func 0 outside the
# circle, func 2 at x or y = 0.0) or at least sin(pi * 2^-53)^2 = 1.2e-31 (far from underflow), so abs_tol = 0 and
# a zero claimed against a positive honest sum never agrees.
TOLERANCE = Tolerance(abs_tol=0.0, rel_tol=1e-8)

SCHEMA = (
    Param("func", int, 0, 2,
          "integrand: 0 = indicator of x^2 + y^2 <= 1, 1 = exp(-(x^2 + y^2)), 2 = sin(pi x) * sin(pi y)"),
    Param("samples", int, 1, MAX_WORK, "number of random points (x, y) in [0, 1)^2"),
    Param("seed", int, 0, 2**63 - 1, "seed of the SplitMix64 random numbers", 0),
)
TASK_SCHEMA = SCHEMA + (
    Param("sample_start", int, 0, MAX_WORK - 1, "first sample of the task"),
    Param("sample_end", int, 1, MAX_WORK, "one past the last sample of the task"),
)


def validate(raw: dict[str, Any]) -> Params:
    """Checked job parameters, or a UserError naming the first problem."""
    return parse_params(SCHEMA, raw)


def validate_task(raw: dict[str, Any]) -> Params:
    """Checked task parameters (a sample range of a valid job)."""
    p = parse_params(TASK_SCHEMA, raw, strict=True)
    validate({k: p[k] for k in (s.name for s in SCHEMA)})
    if not 0 <= p["sample_start"] < p["sample_end"] <= p["samples"]:
        raise UserError("task samples must satisfy 0 <= sample_start < sample_end <= samples")
    return p


def split(p: Params, n_tasks: int) -> Pieces:
    """`n_tasks` contiguous sample ranges, as even as integer division makes them."""
    check_split(p["samples"], n_tasks, MAX_TASK_SAMPLES, "the number of samples", "samples")

    def piece(i: int) -> Params:
        start, end = nth_range(p["samples"], n_tasks, i)
        return dict(p, sample_start=start, sample_end=end)
    return Pieces(n_tasks, piece)


def output_spec(t: Params) -> tuple[str, tuple[int, ...]]:
    """A task's output: float64 [sum of f, sum of f^2]."""
    return "float64", (2,)


def work(p: Params) -> int:
    """Samples in the task (or the job)."""
    return int(p.get("sample_end", p["samples"]) - p.get("sample_start", 0))


def merge(p: Params, outputs: list[np.ndarray]) -> np.ndarray:
    """[estimate, standard error, samples]: the task sums added in task order, then the mean and its error."""
    total = total_sq = 0.0
    for out in outputs:
        if out.dtype != np.float64 or out.shape != (2,):
            raise StateError(f"a montecarlo task output must be float64[2], got {out.dtype.name}{list(out.shape)}")
        total += float(out[0])
        total_sq += float(out[1])
    n = float(p["samples"])
    mean = total / n
    variance = total_sq / n - mean * mean  # can come out a hair below 0 when every f is equal
    return np.array([mean, math.sqrt(max(variance, 0.0) / n), n], dtype=np.float64)


@functools.cache
def _compiled() -> Any:
    # numba is imported here, not at module load: the coordinator and the CLI never pay for it.
    import numba

    from depin.kernels import _splitmix_jit as sm

    mix_source = sm.SOURCE_DIGEST  # in the closure below, so numba's cache key changes with _splitmix_jit.py

    @numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
    def sums(seed, func, start, end, out):  # type: ignore[no-untyped-def]
        # Adds samples [start, end) to the running sums out[0], out[1], in index order: continuing from a sum
        # is the same additions as never having stopped, so chunked sums equal the one-piece sums bit for bit.
        mix_source  # noqa: B018  (a reference that keeps it in the closure)
        s = out[0]
        s2 = out[1]
        for i in range(start, end):
            c = np.uint64(i) * np.uint64(2)
            x = sm.unit(seed, c)
            y = sm.unit(seed, c + np.uint64(1))
            if func == 0:
                f = 1.0 if x * x + y * y <= 1.0 else 0.0
            elif func == 1:
                f = math.exp(-(x * x + y * y))
            else:
                f = math.sin(math.pi * x) * math.sin(math.pi * y)
            s += f
            s2 += f * f
        out[0] = s
        out[1] = s2
        return out

    return sums


def units(t: Params) -> int:
    """A task's samples: the units of its chunks."""
    return int(t["sample_end"] - t["sample_start"])


def chunk_size(t: Params) -> int:
    """Samples per chunk."""
    return CHUNK_SAMPLES


def start(t: Params) -> np.ndarray:
    """Before any sample: both sums 0.0."""
    return np.zeros(2, dtype=np.float64)


def advance(t: Params, first: int, last: int, state: np.ndarray) -> np.ndarray:
    """Add the task's samples [first, last) to the running sums in `state`."""
    out: np.ndarray = _compiled()(np.uint64(t["seed"]), int(t["func"]), int(t["sample_start"]) + int(first),
                                  int(t["sample_start"]) + int(last), state)
    return out


def run(t: Params) -> np.ndarray:
    """Compute one task's [sum of f, sum of f^2]: every sample in one chunk."""
    return advance(t, 0, units(t), start(t))


def warmup() -> None:
    """Compile (or load from numba's cache) with the exact argument types `run` passes."""
    run({"func": 1, "samples": 4, "seed": 0, "sample_start": 0, "sample_end": 4})


KERNEL = Kernel(
    name="montecarlo",
    version=1,
    doc="Monte Carlo integral of a fixed integrand over the unit square (float64, compared by tolerance)",
    schema=SCHEMA,
    validate=validate,
    validate_task=validate_task,
    split=split,
    run=run,
    output_spec=output_spec,
    merge=merge,
    work=work,
    warmup=warmup,
    exact=False,
    compare=TOLERANCE,
    chunks=Chunks(units=units, size=chunk_size, start=start, advance=advance),
)
