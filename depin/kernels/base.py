"""What a kernel is: a name, a version, a parameter schema and six pure functions.

Adding a kernel is adding one module that builds a `Kernel` and registering it in `depin.kernels`.
The coordinator uses validate/split/check_output/compare/merge; the worker uses run, or `chunks` where a kernel
has them. `run` (and `Chunks.advance`) are the only functions that may be numba-compiled, and compilation happens
in `warmup`, never on the per-task path.

`Chunks` is how a long task survives a pause or a restart: the task is a sequence of units (pixels, samples)
computed in order into a state array, so the worker can stop after any unit, keep the state, and carry on later
with exactly the bits an uninterrupted `run` gives. The position kept is a unit count, not a chunk number, so a
worker whose chunk sizes changed between the stop and the resume still resumes correctly.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from depin import codec
from depin.errors import PeerProtocolError, StateError, UserError

Params = dict[str, Any]


class Pieces(Sequence[Params]):
    """A job's per-task parameters, made one at a time: `piece(i)` for i in 0..n-1 (an index space)."""

    def __init__(self, n: int, piece: Callable[[int], Params]) -> None:
        self._n, self._piece = n, piece

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> Params: ...

    @overload
    def __getitem__(self, i: slice) -> list[Params]: ...

    def __getitem__(self, i: int | slice) -> Params | list[Params]:
        if isinstance(i, slice):
            return [self._piece(j) for j in range(*i.indices(self._n))]
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return self._piece(i % self._n)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Sequence) and len(other) == self._n
                and all(a == b for a, b in zip(self, other, strict=True)))

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Param:
    """One parameter of a kernel: its type, inclusive bounds and meaning."""

    name: str
    type: type  # int or float
    minimum: float
    maximum: float
    doc: str
    default: Any = None

    def parse(self, raw: Any) -> Any:
        """`raw` (a CLI string or a decoded wire value) as a checked int or float."""
        value: Any
        if isinstance(raw, str):
            try:
                value = int(raw, 10) if self.type is int else float(raw)
            except ValueError:
                kind = "an integer" if self.type is int else "a number"
                raise UserError(f"parameter {self.name}: {raw!r} is not {kind}") from None
        elif isinstance(raw, bool):
            raise UserError(f"parameter {self.name}: must be {self.type.__name__}, got a boolean")
        elif self.type is int and isinstance(raw, int):
            value = raw
        elif self.type is float and isinstance(raw, (int, float)):
            value = float(raw)
        else:
            raise UserError(f"parameter {self.name}: must be {self.type.__name__}, got {type(raw).__name__}")
        if self.type is float and not math.isfinite(value):
            raise UserError(f"parameter {self.name}: must be finite")
        if not self.minimum <= value <= self.maximum:
            raise UserError(f"parameter {self.name}: {value} is outside [{self.minimum}, {self.maximum}]")
        return value


def parse_params(schema: Sequence[Param], raw: Mapping[str, Any], *, strict: bool = False) -> Params:
    """Check `raw` against `schema`: no unknown names, every required one present, each in range.

    `strict` is for task parameters a coordinator already normalised: every name present, ints as ints and
    floats as floats (no strings, no defaults filled in).
    """
    known = {p.name: p for p in schema}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise UserError(f"unknown parameter {unknown[0]!r}; expected one of: {', '.join(known)}")
    out: Params = {}
    for p in schema:
        if strict and (p.name not in raw or type(raw[p.name]) is not p.type):
            raise UserError(f"task parameter {p.name}: must be present as {p.type.__name__}")
        if p.name in raw:
            out[p.name] = p.parse(raw[p.name])
        elif p.default is not None:
            out[p.name] = p.default
        else:
            raise UserError(f"missing parameter {p.name} ({p.doc})")
    return out


def describe_params(schema: Sequence[Param]) -> list[dict[str, Any]]:
    """Parameters as plain data: name, type, min, max, default, doc (depin kernels, depin kernel check)."""
    return [{"name": p.name, "type": p.type.__name__, "min": p.minimum, "max": p.maximum, "default": p.default,
             "doc": p.doc} for p in schema]


def wire_digest(wire: bytes) -> bytes:
    """SHA-256 of an output array's canonical wire encoding (PROTOCOL.md, "Result digest")."""
    return hashlib.sha256(wire).digest()


def output_digest(arr: np.ndarray) -> bytes:
    """The result digest of an output array."""
    return wire_digest(codec.encode(codec.array_to_wire(arr)))


def exact_compare(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equality: the validator of integer kernels."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@dataclass(frozen=True)
class Tolerance:
    """Float agreement: |a - b| <= abs_tol + rel_tol * max(|a|, |b|) elementwise; NaN and inf never agree."""

    abs_tol: float
    rel_tol: float

    def __call__(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether two outputs agree within this tolerance."""
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        x, y = a.astype(np.float64), b.astype(np.float64)
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            return False
        bound = self.abs_tol + self.rel_tol * np.maximum(np.abs(x), np.abs(y))
        return bool((np.abs(x - y) <= bound).all())


@dataclass(frozen=True)
class Chunks:
    """A kernel's resumable `run`: `units(p)` units computed in order into a state, the last state being the output.

    For every split 0 = u0 < u1 < ... < un = units(p), advancing start(p) over [u0, u1), then [u1, u2), ... gives
    the same bits as run(p) (tests hold every chunked kernel to this).
    """

    # Per-task parameters -> how many units the task has (>= 1).
    units: Callable[[Params], int]
    # Per-task parameters -> units per chunk, so that one chunk of the worst case takes well under a second on a
    # Raspberry Pi (from the kernel's work per unit).
    size: Callable[[Params], int]
    # Per-task parameters -> the state before the first unit: an array of the output's dtype and shape.
    start: Callable[[Params], np.ndarray]
    # Per-task parameters, a, b, the state after units [0, a) -> the state after [0, b). May write into and return
    # `state`, so the caller passes an array it owns and may write.
    advance: Callable[[Params, int, int, np.ndarray], np.ndarray]

    def bounds(self, p: Params, done: int = 0) -> list[tuple[int, int]]:
        """The chunks [a, b) left once `done` units are computed, in order."""
        total, size = self.units(p), self.size(p)
        if not 0 <= done <= total or size < 1:
            raise StateError(f"cannot resume at unit {done} of {total} in chunks of {size}")
        return [(a, min(a + size, total)) for a in range(done, total, size)]


@dataclass(frozen=True)
class Kernel:
    """A registered kernel. All callables are pure; `run` is deterministic for a given task."""

    name: str
    version: int
    doc: str
    schema: tuple[Param, ...]
    # Whole-job parameters -> checked parameters (raises UserError), including cross-field rules.
    validate: Callable[[Params], Params]
    # Per-task parameters as a worker receives them -> checked parameters (raises UserError).
    validate_task: Callable[[Params], Params]
    # Checked job parameters, number of tasks -> per-task parameters (raises UserError if it cannot split), as a
    # lazy sequence: task i's parameters are made when asked for, so a job of a million tasks costs nothing here.
    split: Callable[[Params, int], Pieces]
    # Per-task parameters -> output array.
    run: Callable[[Params], np.ndarray]
    # Per-task parameters -> (dtype name, shape) every honest output must have.
    output_spec: Callable[[Params], tuple[str, tuple[int, ...]]]
    # Checked job parameters, outputs in task order -> the job's result.
    merge: Callable[[Params, list[np.ndarray]], np.ndarray]
    # Upper bound of the work in a task, in the kernel's own units (e.g. pixel-iterations).
    work: Callable[[Params], int]
    # Compile whatever `run` needs (numba), so the first task pays no JIT time.
    warmup: Callable[[], None]
    # True: results agree iff their digests are equal. False: `compare` decides (e.g. a Tolerance).
    exact: bool = True
    compare: Callable[[np.ndarray, np.ndarray], bool] = exact_compare
    # Optional cheap check of one result on its own: True = certainly right (no replica needed), False =
    # certainly wrong, None = cannot tell cheaply (fall back to quorum). Must cost far less than `run`.
    verify: Callable[[Params, np.ndarray], bool | None] | None = None
    # Optional: the job's result as PNG bytes.
    render_png: Callable[[Params, np.ndarray], bytes] | None = None
    # Optional: `run` in resumable chunks, for tasks long enough to be paused or to outlive a restart.
    chunks: Chunks | None = None
    # Homogeneous redundancy: a task's results are compared only among workers of one platform class (the first
    # holder's), for kernels whose bits may differ across CPUs and math libraries (docs/KERNELS.md 5).
    homogeneous: bool = False

    @property
    def key(self) -> str:
        """`name@version`, as shown to users."""
        return f"{self.name}@{self.version}"

    def describe(self) -> dict[str, Any]:
        """Its name, version, doc and parameters as plain data (depin kernels, GET /v1/kernels)."""
        return {"name": self.name, "version": self.version, "doc": self.doc, "params": describe_params(self.schema)}

    def check_output(self, task_params: Params, arr: np.ndarray) -> None:
        """Raise PeerProtocolError unless `arr` has the dtype and shape this task must produce."""
        dtype, shape = self.output_spec(task_params)
        if arr.dtype.name != dtype or tuple(arr.shape) != shape:
            raise PeerProtocolError(
                f"output must be {dtype}{list(shape)}, got {arr.dtype.name}{list(arr.shape)}"
            )
