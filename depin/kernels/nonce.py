"""The nonce kernel: find the smallest nonce whose SplitMix64 output starts with `difficulty` zero bits.

Exact definition (also in docs/PROTOCOL.md, "Kernel nonce@1"): nonce n is a solution iff
splitmix.mix(seed, n) >> (64 - difficulty) == 0, and a task over nonces [nonce_start, nonce_end) outputs
uint64 [1, the smallest solution in it], or [0, 0] if it has none.

This is a compute puzzle that is cheap to check, made to exercise the coordinator's `verify` path. It is not a
security mechanism: SplitMix64 is an invertible, non-cryptographic mix, so finding solutions may well be possible
far faster than by search, and nothing here proves that anyone spent any work.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from depin.errors import StateError, UserError
from depin.kernels import splitmix
from depin.kernels._ranges import check_split, nth_range
from depin.kernels.base import Kernel, Param, Params, Pieces, parse_params

MAX_START = 2**62
MAX_WORK = 2**40  # nonces per job: the range of `count` is the job's work limit
MAX_TASK_NONCES = 1 << 30  # about a second of one core (one mix per nonce) per task at worst

SCHEMA = (
    Param("seed", int, 0, 2**63 - 1, "the puzzle: seed of SplitMix64"),
    Param("difficulty", int, 1, 40, "leading zero bits a solution's SplitMix64 output must have"),
    Param("start", int, 0, MAX_START, "first nonce to try", 0),
    Param("count", int, 1, MAX_WORK, "number of nonces to try, from start"),
)
TASK_SCHEMA = SCHEMA + (
    Param("nonce_start", int, 0, MAX_START + MAX_WORK - 1, "first nonce of the task"),
    Param("nonce_end", int, 1, MAX_START + MAX_WORK, "one past the last nonce of the task"),
)


def is_solution(seed: int, difficulty: int, nonce: int) -> bool:
    """Whether `nonce` solves the puzzle (seed, difficulty): one mix evaluation."""
    return splitmix.mix(seed, nonce) >> (64 - difficulty) == 0


def validate(raw: dict[str, Any]) -> Params:
    """Checked job parameters, or a UserError naming the first problem."""
    return parse_params(SCHEMA, raw)


def validate_task(raw: dict[str, Any]) -> Params:
    """Checked task parameters (a nonce range of a valid job)."""
    p = parse_params(TASK_SCHEMA, raw, strict=True)
    validate({k: p[k] for k in (s.name for s in SCHEMA)})
    if not p["start"] <= p["nonce_start"] < p["nonce_end"] <= p["start"] + p["count"]:
        raise UserError("task nonces must satisfy start <= nonce_start < nonce_end <= start + count")
    return p


def split(p: Params, n_tasks: int) -> Pieces:
    """`n_tasks` contiguous nonce ranges of [start, start + count), as even as integer division makes them."""
    check_split(p["count"], n_tasks, MAX_TASK_NONCES, "the nonce count", "nonces")

    def piece(i: int) -> Params:
        a, b = nth_range(p["count"], n_tasks, i)
        return dict(p, nonce_start=p["start"] + a, nonce_end=p["start"] + b)
    return Pieces(n_tasks, piece)


def output_spec(t: Params) -> tuple[str, tuple[int, ...]]:
    """A task's output: uint64 [found, nonce]."""
    return "uint64", (2,)


def work(p: Params) -> int:
    """Nonces in the task (or the job): an upper bound, since the search stops at the first solution."""
    return int(p.get("nonce_end", p["start"] + p["count"]) - p.get("nonce_start", p["start"]))


def verify(t: Params, out: np.ndarray) -> bool | None:
    """True if `out` is [1, n] for a solution n in the task's range; False if it is certainly wrong; None for [0, 0].

    One mix evaluation. True does not prove that n is the *smallest* solution: that would take a search of
    [nonce_start, n). A claimed "no solution" cannot be checked cheaply at all, so it is left to the quorum.
    """
    if out.dtype != np.uint64 or out.shape != (2,):
        return False
    found, n = int(out[0]), int(out[1])
    if found == 0:
        return None if n == 0 else False
    if found != 1 or not t["nonce_start"] <= n < t["nonce_end"]:
        return False
    return is_solution(t["seed"], t["difficulty"], n)


def merge(p: Params, outputs: list[np.ndarray]) -> np.ndarray:
    """uint64 [tasks, 2]: each task's [found, nonce], in task order."""
    for out in outputs:
        if out.dtype != np.uint64 or out.shape != (2,):
            raise StateError(f"a nonce task output must be uint64[2], got {out.dtype.name}{list(out.shape)}")
    if not outputs:
        raise StateError("a nonce job has at least one task output to merge")
    return np.stack(outputs)


@functools.cache
def _compiled() -> Any:
    # numba is imported here, not at module load: the coordinator and the CLI never pay for it.
    import numba

    from depin.kernels import _splitmix_jit as sm

    mix_source = sm.SOURCE_DIGEST  # in the closure below, so numba's cache key changes with _splitmix_jit.py

    @numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
    def search(seed, difficulty, start, end):  # type: ignore[no-untyped-def]
        mix_source  # noqa: B018  (a reference that keeps it in the closure)
        shift = np.uint64(64 - difficulty)  # 24..63: never 64, which LLVM would leave undefined
        out = np.zeros(2, dtype=np.uint64)
        for n in range(start, end):
            if sm.mix(seed, n) >> shift == np.uint64(0):
                out[0] = 1
                out[1] = n
                break
        return out

    return search


def run(t: Params) -> np.ndarray:
    """Search one task's range for its smallest solution."""
    out: np.ndarray = _compiled()(np.uint64(t["seed"]), int(t["difficulty"]), int(t["nonce_start"]),
                                  int(t["nonce_end"]))
    return out


def warmup() -> None:
    """Compile (or load from numba's cache) with the exact argument types `run` passes."""
    run({"seed": 0, "difficulty": 1, "start": 0, "count": 4, "nonce_start": 0, "nonce_end": 4})


KERNEL = Kernel(
    name="nonce",
    version=1,
    doc="smallest nonce whose SplitMix64 output has `difficulty` leading zero bits (uint64, exact, cheap to verify)",
    schema=SCHEMA,
    validate=validate,
    validate_task=validate_task,
    split=split,
    run=run,
    output_spec=output_spec,
    merge=merge,
    work=work,
    warmup=warmup,
    exact=True,
    verify=verify,
)
