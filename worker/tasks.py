"""A leased task's life on the worker, as pure functions: check it, run it, package the result.

`check` refuses anything the pinned coordinator did not sign, anything not addressed to a kernel we run, and
parameters the kernel itself rejects, before a single cycle is spent. `run` calls the kernel and builds the
result item that will be journaled and signed.

`run` computes a kernel with `Chunks` chunk by chunk (a kernel without them is one chunk). Before each chunk it
asks `should_stop` (a pause, a shutdown); after each one it calls `after_chunk` with the chunk's compute time (where
a duty cycle rests). It hands the state to a `Progress` (the journal's) after every `save_every_s` seconds of
compute and when it stops early, and a later `run` of the same task, in this process or after a restart, carries on
from the last state saved: the chunks' contract makes the result the same bits as an uninterrupted run.

`run_batch` runs a batch's tasks one after another in one call (one hand-off to the computing thread per batch, not
per task), asking `go_on` before each: a stop between tasks (a pause, SIGTERM) leaves the rest unstarted, to be given
back. It times each task for the adaptive batch (worker.batching).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from depin import codec, kernels
from depin.crypto import VerifyKey
from depin.errors import DepinError, KernelFailed, PeerProtocolError, VerificationError
from depin.kernels import Chunks, Kernel, Params
from depin.protocol import MAX_ERROR, LeaseGrant, ResultItem, TaskMessage

# Compute seconds between two saves of a task's progress: what a kill -9 can cost at most (plus one chunk), traded
# against disk writes (a mandelbrot band's state is up to 4 MiB, and SD cards wear).
SAVE_EVERY_S = 30.0
_MAX_ELAPSED_MS = 2**31 - 1  # the wire's bound for elapsed_ms


@dataclass(frozen=True)
class Checked:
    """A lease whose task verified: ready to run."""

    lease_id: str
    task: TaskMessage
    kernel: Kernel
    params: Params
    grant: LeaseGrant  # as leased and signed: kept with a task's progress, so a restart can check and resume it


@dataclass(frozen=True)
class Partial:
    """How far a task got: units done, the kernel's state after them, and the compute time they took."""

    done: int
    state: np.ndarray
    elapsed_ms: int


class Progress(Protocol):
    """Where a task's partial state is kept between chunks (worker.journal.ProgressStore)."""

    def load(self, checked: Checked) -> Partial | None:
        """The last progress saved for this very task (same signed task bytes), or None."""

    def save(self, checked: Checked, partial: Partial) -> None:
        """Durably keep `partial` as this task's progress, in place of any earlier one."""


def check(grant: LeaseGrant, coordinator: VerifyKey, min_price: int = 0) -> Checked:
    """Verify the task's signature and contents; VerificationError or PeerProtocolError if it is not runnable (or
    pays less than this worker asks)."""
    coordinator.verify("task", grant.task, grant.sig)
    payload = codec.decode_canonical(grant.task)
    if not isinstance(payload, dict):
        raise PeerProtocolError("task payload must be a map")
    task = TaskMessage.from_payload(payload)
    if task.coordinator != coordinator.id:
        raise VerificationError("task names a different coordinator")
    if task.price < min_price:
        raise PeerProtocolError(f"task {task.task_id} pays {task.price} credits, below our minimum of {min_price}")
    try:
        kernel = kernels.get(task.kernel, task.kernel_version)
        params = kernel.validate_task(task.params)
    except DepinError as exc:
        raise PeerProtocolError(f"task {task.task_id} is not runnable: {exc}") from None
    return Checked(grant.lease_id, task, kernel, params, grant)


def run(
    checked: Checked,
    progress: Progress | None = None,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    after_chunk: Callable[[float], None] = lambda seconds: None,
    save_every_s: float = SAVE_EVERY_S,
    threads: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ResultItem | None:
    """Compute the task and package its output (the CPU-heavy part; call it off the event loop).

    None if `should_stop()` turned true before the last chunk: the progress is saved first, and running the task
    again resumes it. `threads` sets numba's thread count in the calling thread (numba keeps it per thread).
    The result's elapsed_ms is the compute time of the chunks it is made of, across resumes: not rests, saves,
    waits, nor chunks lost to a crash.
    """
    if threads is not None:
        _use_threads(threads)
    p = checked.params
    chunks = _chunks_of(checked.kernel)
    total, state = chunks.units(p), chunks.start(p)
    partial = progress.load(checked) if progress is not None else None
    done, elapsed_s = 0, 0.0
    if partial is not None and _fits(partial, state, total):
        done, state, elapsed_s = partial.done, np.array(partial.state), partial.elapsed_ms / 1000  # ours to write
    saved, unsaved_s = done, 0.0
    for a, b in chunks.bounds(p, done):
        if should_stop():
            if progress is not None and done > saved:
                progress.save(checked, Partial(done, state.copy(), _ms(elapsed_s)))
            return None
        started = clock()
        try:
            state = chunks.advance(p, a, b, state)
        except KernelFailed as exc:  # a published kernel's failure is its task's result (PROTOCOL.md 7.4)
            return ResultItem(lease_id=checked.lease_id, task_id=checked.task.task_id, output=None,
                              elapsed_ms=_ms(elapsed_s + clock() - started), error=str(exc)[:MAX_ERROR] or "failed")
        seconds = clock() - started
        done, elapsed_s, unsaved_s = b, elapsed_s + seconds, unsaved_s + seconds
        if progress is not None and unsaved_s >= save_every_s and b < total:
            progress.save(checked, Partial(done, state.copy(), _ms(elapsed_s)))
            saved, unsaved_s = done, 0.0
        after_chunk(seconds)
    return ResultItem(lease_id=checked.lease_id, task_id=checked.task.task_id, output=codec.array_to_wire(state),
                      elapsed_ms=_ms(elapsed_s))


@dataclass(frozen=True)
class Done:
    """A computed task: its result, and the wall time it took here (computing and packaging)."""

    checked: Checked
    item: ResultItem
    seconds: float


@dataclass(frozen=True)
class Outcome:
    """What became of a batch: the tasks computed (in order), the one a stop interrupted mid-way (its progress
    saved), and those never started."""

    done: list[Done]
    interrupted: Checked | None
    unstarted: list[Checked]


def run_batch(
    batch: list[Checked],
    progress: Progress | None = None,
    *,
    go_on: Callable[[], bool] = lambda: True,
    should_stop: Callable[[], bool] = lambda: False,
    on_start: Callable[[Checked], None] = lambda checked: None,
    after_chunk: Callable[[float], None] = lambda seconds: None,
    threads: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Outcome:
    """`run` each task of `batch` in order while `go_on()` (asked before each task); `should_stop` is `run`'s (asked
    between chunks)."""
    if threads is not None:
        _use_threads(threads)
    done: list[Done] = []
    for n, checked in enumerate(batch):
        if not go_on():
            return Outcome(done, None, batch[n:])
        on_start(checked)
        started = clock()
        item = run(checked, progress, should_stop=should_stop, after_chunk=after_chunk, clock=clock)
        if item is None:
            return Outcome(done, checked, batch[n + 1:])
        done.append(Done(checked, item, clock() - started))
    return Outcome(done, None, [])


def _chunks_of(kernel: Kernel) -> Chunks:
    # A kernel without chunks is one chunk whose state is its output; nothing is ever saved for it.
    if kernel.chunks is not None:
        return kernel.chunks
    return Chunks(units=lambda p: 1, size=lambda p: 1, start=lambda p: np.empty(0),
                  advance=lambda p, a, b, state: kernel.run(p))


def _fits(partial: Partial, start: np.ndarray, units: int) -> bool:
    # Progress from the journal is trusted to be ours, but not to be of this kernel's current shape.
    return (0 <= partial.done <= units and partial.elapsed_ms >= 0 and partial.state.dtype == start.dtype
            and partial.state.shape == start.shape)


def _ms(seconds: float) -> int:
    return min(int(seconds * 1000), _MAX_ELAPSED_MS)


def _use_threads(n: int) -> None:
    import numba

    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
