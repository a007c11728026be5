"""Published kernels run in a sandbox child process (docs/KERNELS.md 4): the worker's side.

A `Sandbox` holds one child (worker.sandbox_child) for one kernel id and keeps it for many tasks. `start` launches it:
the child compiles the kernel with the loader, applies its layers (worker.sandbox_layers) and reports ready. `run`
sends it one task and waits for the answer within the task's wall-clock budget, in a poll loop that also writes the
task (the pipe is never allowed to block the worker) and drains the child's stderr into a bounded log.

Whatever goes wrong is a KernelFailed with its reason: the kernel raised an error, its allocation failed, the child
died (a signal, seccomp, the CPU limit) or overran the budget (SIGKILL to its process group), or it answered anything
but the output asked for (a frame over the cap, bad msgpack, another dtype or shape). The child is then killed and
the next `run` starts a fresh one. A child is also replaced, with no failure, when it wrote anything between tasks,
died while idle, or when the CPU time left under its RLIMIT_CPU might not cover the next task's budget. A refusal
(the loader's check or numba refused the kernel) is remembered: the kernel is never compiled again by this Sandbox.

Calls are serialised by a lock, so one Sandbox may be shared by threads; `close` does not wait for it: it kills the
child at once, and a task it interrupts raises SandboxClosed (the task was not run, give it back).
"""

from __future__ import annotations

import asyncio
import functools
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import worker
from depin import codec
from depin.errors import KernelFailed, PeerProtocolError, SandboxClosed
from worker import sandbox_layers, sandbox_wire
from worker.sandbox_layers import Limits

DEFAULT_LOADER = "depin.userkernel.compiled:compile_kernel"
COMPILE_BUDGET_S = 600.0  # a large kernel compiling on a Raspberry Pi
LOG_BYTES = 64 * 1024  # the tail of the children's stderr kept
_READ = 1 << 20
# The child computes on one thread: numpy's BLAS and numba's pools must not start theirs (Landlock and RLIMIT_NPROC
# bind threads one by one; seccomp refuses clone once the layers are on).
_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}

Expected = tuple[str, tuple[int, ...]]  # the output asked for: dtype name and shape


class _Overran(Exception):
    pass


class _Died(Exception):
    pass


class _Log:
    """The last LOG_BYTES bytes written to the children's stderr."""

    def __init__(self) -> None:
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self.tail += data
        del self.tail[:-LOG_BYTES]


class _Child:
    """One child process and the frames read from it."""

    def __init__(self, proc: subprocess.Popen[bytes], log: _Log) -> None:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self.proc, self.log = proc, log
        self.fd_in, self.fd_out, self.fd_err = proc.stdin.fileno(), proc.stdout.fileno(), proc.stderr.fileno()
        os.set_blocking(self.fd_in, False)
        self.frames = sandbox_wire.Frames(sandbox_wire.READY_CAP)
        self.spent = 0.0  # wall seconds of its tasks: at least their CPU time, as it has one thread
        self.layers: dict[str, str] = {}

    def exchange(self, data: bytes, cap: int, deadline: float) -> dict[str, Any]:
        """Write `data`, then read the one message it answers, before `deadline` (time.monotonic)."""
        self.frames.cap = cap
        poller = select.poll()
        poller.register(self.fd_out, select.POLLIN)
        poller.register(self.fd_err, select.POLLIN)
        poller.register(self.fd_in, select.POLLOUT)
        view = memoryview(data)
        while (message := self.frames.next()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Overran
            for fd, _ in poller.poll(left * 1000):
                if fd == self.fd_in:
                    try:
                        view = view[os.write(fd, view[:_READ]):]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        raise _Died from None
                    if not view:
                        poller.unregister(fd)
                    continue
                chunk = os.read(fd, _READ)
                if fd == self.fd_err:
                    self.log.add(chunk) if chunk else poller.unregister(fd)
                elif not chunk:
                    raise _Died
                else:
                    self.frames.feed(chunk)
        return message

    def idle_and_quiet(self) -> bool:
        """Whether the child is alive and wrote nothing since its last answer."""
        poller = select.poll()
        poller.register(self.fd_out, select.POLLIN)
        return self.proc.poll() is None and not self.frames.pending() and not poller.poll(0)

    def kill(self) -> int:
        """SIGKILL the child's process group (a grandchild too, should one exist); its exit status."""
        _killpg(self.proc.pid)
        code = self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        return code


def _killpg(pid: int) -> None:
    # The child leads its own process group (start_new_session), which a grandchild would be in too. A group id is
    # not reused while the group has a member; once it has none, only after the pid numbers wrap around.
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def death(returncode: int) -> KernelFailed:
    """What a child's exit status says about how it died (while it compiled or ran a task)."""
    if returncode == -signal.SIGSYS:
        return KernelFailed("made a forbidden system call (killed by seccomp)", "syscall")
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        why = {"SIGXCPU": " (its CPU time limit)", "SIGKILL": " (out of memory, or its CPU time limit)"}
        return KernelFailed(f"crashed: killed by {name}{why.get(name, '')}", "crash")
    return KernelFailed(f"crashed: its process exited with code {returncode}", "crash")


def _failure(error: str, message: str) -> KernelFailed:
    return KernelFailed(f"{error}: {message}" if message else error, "memory" if error == "MemoryError" else "error")


class Sandbox:
    """One kernel's sandbox child on this worker: compiled once, then many tasks (see the module's header)."""

    def __init__(self, source: str, kernel_id: str, cache_dir: Path, limits: Limits | None = None,
                 loader: str = DEFAULT_LOADER, *, compile_budget_s: float = COMPILE_BUDGET_S) -> None:
        self.source, self.kernel_id, self.cache_dir = source, kernel_id, cache_dir
        self.limits = limits if limits is not None else Limits()
        self.loader, self.compile_budget_s = loader, compile_budget_s
        self.compile_s: float | None = None  # of the last child started
        self.children = 0  # started so far
        self._log = _Log()
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._refused: KernelFailed | None = None
        self._closed = False

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The running child's process id, if there is one."""
        child = self._child
        return child.proc.pid if child is not None else None

    def layers(self) -> dict[str, str]:
        """Each layer: "active: ..." as the running (or last) child applied it, else what this machine offers
        ("available: ..."), or "off: <why not>"."""
        child = self._child
        return dict(child.layers) if child is not None and child.layers else sandbox_layers.probe(self.limits)

    def log(self) -> str:
        """The tail of what the children wrote to stderr (the kernel's prints, Python's fatal errors)."""
        return self._log.tail.decode("utf-8", "replace")

    def start(self) -> float:
        """Start a child (if none runs) and wait until it compiled the kernel and applied its limits; the compile
        seconds. KernelFailed if the kernel is refused, or the child dies or overruns `compile_budget_s`."""
        with self._lock:
            return self._start()

    def _start(self) -> float:
        if self._closed:
            raise SandboxClosed(f"the sandbox of kernel {self.kernel_id[:12]} is closed")
        if self._refused is not None:
            raise self._refused
        if self._child is not None:  # ready: a child is kept only once it reported ready
            assert self.compile_s is not None
            return self.compile_s
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-s", "-E", "-m", "worker.sandbox_child"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True, start_new_session=True,
            cwd=Path(worker.__file__).resolve().parent.parent, env={"PATH": os.defpath, **_ENV})
        child = self._child = _Child(proc, self._log)  # where close() finds it, should it come while compiling
        self.children += 1
        hello = {"kind": "hello", "source": self.source, "kernel_id": self.kernel_id,
                 "cache_dir": str(self.cache_dir.resolve()), "loader": self.loader,
                 "path": [p for p in sys.path if p], "limits": self.limits.to_wire()}
        deadline = time.monotonic() + self.compile_budget_s
        try:
            message = child.exchange(sandbox_wire.frame(hello), sandbox_wire.READY_CAP, deadline)
            reason = sandbox_wire.refusal(message)
            if reason is not None:
                self._refused = KernelFailed(f"refused: {reason}", "refused")
                raise self._refused
            self.compile_s, child.layers = sandbox_wire.ready(message)
        except (_Overran, _Died, PeerProtocolError, KernelFailed) as exc:
            self._child = None
            code = child.kill()
            if isinstance(exc, KernelFailed):
                raise
            raise self._why(exc, code, f"compiling overran its budget of {self.compile_budget_s:g} s") from None
        return self.compile_s

    def _why(self, exc: Exception, returncode: int, overran: str) -> KernelFailed | SandboxClosed:
        if self._closed:
            return SandboxClosed(f"the sandbox of kernel {self.kernel_id[:12]} was closed during the call")
        if isinstance(exc, _Overran):
            return KernelFailed(overran, "timeout")
        if isinstance(exc, PeerProtocolError):
            return KernelFailed(f"malformed answer: {exc}", "malformed")
        return death(returncode)

    def run(self, task_params: Mapping[str, Any], inputs: Mapping[str, np.ndarray], budget_s: float, *,
            expect: Expected) -> np.ndarray:
        """The task's output, checked to have `expect`'s dtype and shape; KernelFailed (after which the next run
        uses a fresh child) if the kernel failed, or the child did not answer within `budget_s`."""
        with self._lock:
            self._ready_for(budget_s)
            child = self._child
            assert child is not None
            task = {"kind": "task", "params": dict(task_params),
                    "inputs": {name: codec.array_to_wire(arr) for name, arr in inputs.items()}}
            began = time.monotonic()
            try:
                message = child.exchange(sandbox_wire.frame(task), sandbox_wire.answer_cap(*expect), began + budget_s)
                result = sandbox_wire.answer(message, *expect)
            except (_Overran, _Died, PeerProtocolError) as exc:
                self._child = None
                raise self._why(exc, child.kill(), f"overran its budget of {budget_s:g} s") from None
            child.spent += time.monotonic() - began
            if isinstance(result, tuple):
                self._discard()
                raise _failure(*result)
            return result

    def _ready_for(self, budget_s: float) -> None:
        child = self._child
        renew = child is not None and child.spent > 0 and child.spent + budget_s > self.limits.cpu_seconds
        if child is not None and (renew or not child.idle_and_quiet()):
            self._discard()
        self._start()

    def _discard(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.kill()

    def close(self) -> None:
        """Kill the child, at once (a task it runs raises SandboxClosed); the Sandbox runs nothing after."""
        self._closed = True
        child = self._child
        if child is not None:
            _killpg(child.proc.pid)
        with self._lock:
            self._discard()

    async def start_async(self) -> float:
        """`start` in the event loop's default executor."""
        return await asyncio.get_running_loop().run_in_executor(None, self.start)

    async def run_async(self, task_params: Mapping[str, Any], inputs: Mapping[str, np.ndarray], budget_s: float, *,
                        expect: Expected) -> np.ndarray:
        """`run` in the event loop's default executor (the budget bounds it: cancelling the await does not)."""
        call = functools.partial(self.run, task_params, inputs, budget_s, expect=expect)
        return await asyncio.get_running_loop().run_in_executor(None, call)
