"""A kernel file's spec (docs/KERNELS.md 1) and the `Kernel` the coordinator and the CLI use, read from the spec alone.

Nothing here executes the file: splitting, output shapes, work, merging and comparison all follow from its literals.
A task's parameters are the job's plus `start` and `end`, its range of the index space [0, n).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from depin.errors import StateError, UserError
from depin.kernels._ranges import check_split, nth_range
from depin.kernels.base import Kernel, Param, Params, Pieces, Tolerance, exact_compare, parse_params

DTYPES = ("uint8", "int32", "uint32", "int64", "uint64", "float32", "float64")
MERGES = ("concatenate", "stack", "sum", "min", "max")
MAX_TASK_OUTPUT = 4 << 20  # bytes of one task's output
MAX_JOB_WORK = 10**13  # a job's WORK, summed over its tasks
INT64_MAX = 2**63 - 1

Dim = int | str  # an entry of OUTPUT's shape or of WORK: an int, an int parameter's name, or "rows"


@dataclass(frozen=True)
class Input:
    """An input array of INPUTS: its dtype, number of axes, and which part of it a task reads ("all" or "rows")."""

    name: str
    dtype: str
    ndim: int
    part: str


@dataclass(frozen=True)
class Spec:
    """What a checked kernel file declares: everything but its code."""

    name: str
    doc: str  # the first line of the module docstring
    params: tuple[Param, ...]
    index: str  # an int parameter's name or an input's name: the index space is range(n)
    output: tuple[str, tuple[Dim, ...]]  # (dtype, shape)
    merge: str
    compare: str | Tolerance  # "exact", "verify", or a Tolerance
    work: tuple[Dim, ...] = ("rows",)
    inputs: tuple[Input, ...] = ()
    platform: str = "any"
    has_verify: bool = False
    sample: Mapping[str, Any] | None = field(default=None, compare=False)  # SAMPLE, for `depin kernel check`


_START = Param("start", int, 0, INT64_MAX - 1, "first index of the task")
_END = Param("end", int, 1, INT64_MAX, "one past the last index of the task")


def _dims(entries: tuple[Dim, ...], p: Params, rows: int) -> tuple[int, ...]:
    return tuple(rows if d == "rows" else int(p[d]) if isinstance(d, str) else d for d in entries)


def index_size(spec: Spec, p: Params, inputs: Mapping[str, np.ndarray] | None = None) -> int:
    """n, the size of the job's index space: an int parameter's value, or the length of an input (given here)."""
    if spec.index not in {i.name for i in spec.inputs}:
        return int(p[spec.index])
    if inputs is None:
        raise UserError(f"kernel {spec.name}: an index space over an input (INDEX = {spec.index!r}) is not served"
                        " yet: jobs cannot carry inputs (docs/KERNELS.md 6)")
    return len(inputs[spec.index])


def _rows(spec: Spec, t: Params) -> int:
    # A task's rows; job parameters (no start or end) stand for the whole index space.
    return int(t["end"]) - int(t["start"]) if "start" in t else index_size(spec, t)


def output_spec(spec: Spec, t: Params) -> tuple[str, tuple[int, ...]]:
    """A task's output: OUTPUT's dtype, and its shape for this task."""
    dtype, shape = spec.output
    return dtype, _dims(shape, t, _rows(spec, t))


def work(spec: Spec, t: Params) -> int:
    """A task's WORK: the product of its entries (for job parameters, with rows = n)."""
    return _work_of(spec, t, _rows(spec, t))


def validate(spec: Spec, raw: Mapping[str, Any]) -> Params:
    """Checked job parameters, or a UserError naming the first problem."""
    p = parse_params(spec.params, raw)
    index_size(spec, p)
    return p


def validate_task(spec: Spec, raw: Mapping[str, Any], inputs: Mapping[str, np.ndarray] | None = None) -> Params:
    """Checked task parameters: a range [start, end) of a valid job's index space, its output within the limit."""
    t = parse_params(spec.params + (_START, _END), raw, strict=True)
    n = index_size(spec, t, inputs)
    if not 0 <= t["start"] < t["end"] <= n:
        raise UserError(f"task range must satisfy 0 <= start < end <= {spec.index} ({n})")
    size = _output_bytes(spec, t, _rows(spec, t))
    if size > MAX_TASK_OUTPUT:
        raise UserError(f"a task's output of {size} bytes exceeds {MAX_TASK_OUTPUT}")
    return t


def _output_bytes(spec: Spec, p: Params, rows: int) -> int:
    dtype, shape = spec.output
    return np.dtype(dtype).itemsize * math.prod(_dims(shape, p, rows))


def split(spec: Spec, p: Params, n_tasks: int) -> Pieces:
    """`n_tasks` contiguous ranges of [0, n), task i getting [i*n//T, (i+1)*n//T); a UserError if they may not be."""
    n = index_size(spec, p)
    one_row = _output_bytes(spec, p, 1)
    if "rows" in spec.output[1]:
        if one_row > MAX_TASK_OUTPUT:
            raise UserError(f"one row of output is {one_row} bytes, over the {MAX_TASK_OUTPUT} a task may return")
        max_rows = MAX_TASK_OUTPUT // one_row
    elif one_row > MAX_TASK_OUTPUT:
        raise UserError(f"a task's output of {one_row} bytes exceeds {MAX_TASK_OUTPUT}")
    else:
        max_rows = n
    check_split(n, n_tasks, max_rows, f"{spec.index}, the size of the index space", "rows")
    small, big = n // n_tasks, n // n_tasks + 1  # the ranges have these sizes: n % T of them are big
    total = ((n_tasks - n % n_tasks) * _work_of(spec, p, small) + (n % n_tasks) * _work_of(spec, p, big))
    if total > MAX_JOB_WORK:
        raise UserError(f"the job's WORK ({' x '.join(map(str, spec.work))}, summed over its tasks) is {total},"
                        f" over the limit of {MAX_JOB_WORK}")

    def piece(i: int) -> Params:
        start, end = nth_range(n, n_tasks, i)
        return dict(p, start=start, end=end)
    return Pieces(n_tasks, piece)


def _work_of(spec: Spec, p: Params, rows: int) -> int:
    return math.prod(_dims(spec.work, p, rows))


def merge(spec: Spec, p: Params, outputs: list[np.ndarray]) -> np.ndarray:
    """The job's result from its task outputs in task order, by MERGE; a StateError if they cannot make one."""
    if not outputs:
        raise StateError("a job has at least one task output to merge")
    dtype, shape = spec.output
    n = index_size(spec, p)
    fixed = _dims(shape, p, -1)  # -1: the rows of each task differ, and are checked below
    for out in outputs:
        if out.dtype.name != dtype or out.ndim != len(fixed) or any(
                want not in (-1, got) for want, got in zip(fixed, out.shape, strict=True)):
            raise StateError(f"a task output must be {dtype}{list(fixed)}, got {out.dtype.name}{list(out.shape)}")
    if spec.merge == "concatenate":
        merged = np.concatenate(outputs, axis=0)
        if fixed[0] == -1 and merged.shape[0] != n:
            raise StateError(f"the merged outputs have {merged.shape[0]} rows, expected {n}")
        return merged
    if spec.merge == "stack":
        return np.stack(outputs)
    combine = {"sum": np.add, "min": np.minimum, "max": np.maximum}[spec.merge]
    acc = outputs[0].copy()
    for out in outputs[1:]:  # in task order, in OUTPUT's dtype: the same bits on every coordinator
        combine(acc, out, out=acc)
    return acc


def _no_code(spec: Spec, kernel_id: str) -> Any:
    def run(*_: Any) -> Any:
        raise StateError(f"published kernel {spec.name} ({kernel_id[:12]}) runs only in a worker's sandbox"
                         " (depin.userkernel.compiled), never in this process")
    return run


def publishable(spec: Spec) -> None:
    """Raise a UserError if the coordinator cannot serve this spec yet (INPUTS, COMPARE = "verify")."""
    if spec.inputs:
        raise UserError(f"kernel {spec.name}: INPUTS are not served yet: jobs cannot carry input arrays"
                        " (docs/KERNELS.md 6)")
    if spec.compare == "verify":
        raise UserError(f"kernel {spec.name}: COMPARE = \"verify\" is not served yet: the coordinator never runs a"
                        " kernel file's code, and no worker runs verify for it yet (docs/KERNELS.md 5)")


def to_kernel(spec: Spec, kernel_id: str) -> Kernel:
    """The kernel as the coordinator and the CLI use it: named by its id, version 0; `run` and `warmup` refuse."""
    publishable(spec)
    return Kernel(
        name=kernel_id,
        version=0,
        doc=spec.doc,
        schema=spec.params,
        validate=lambda raw: validate(spec, raw),
        validate_task=lambda raw: validate_task(spec, raw),
        split=lambda p, n_tasks: split(spec, p, n_tasks),
        run=_no_code(spec, kernel_id),
        output_spec=lambda t: output_spec(spec, t),
        merge=lambda p, outputs: merge(spec, p, outputs),
        work=lambda t: work(spec, t),
        warmup=_no_code(spec, kernel_id),
        exact=spec.compare == "exact",
        compare=spec.compare if isinstance(spec.compare, Tolerance) else exact_compare,
        homogeneous=spec.platform == "same",
    )


def sample_task(spec: Spec, size: int = 4) -> Params:
    """The task `depin kernel check` runs: each parameter from SAMPLE, else its default, else its minimum; the
    index range [0, min(n, size))."""
    given = dict(spec.sample or {})
    raw = {p.name: given.get(p.name, p.default if p.default is not None else p.type(p.minimum)) for p in spec.params}
    job = validate(spec, raw)
    return dict(job, start=0, end=min(index_size(spec, job), size))
