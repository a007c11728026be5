"""A sandbox child: compiles one kernel, drops to its limits, then serves that kernel's tasks over its stdin/stdout.

Run as `python -m worker.sandbox_child` by worker.sandbox, never by hand. It reads a `hello` frame (worker.sandbox_wire)
with the kernel's source and the loader to compile it with, compiles it, exercises once the code its tasks will run
(so nothing is imported after the limits), applies the layers of worker.sandbox_layers, and answers `ready` (or
`refused` if the loader refuses the kernel). Then each `task` frame gets one `output` or `error` frame, until stdin
closes. Frames go out on a copy of the original stdout; fd 1 itself is pointed at stderr first, so whatever the
kernel prints ends in the worker's bounded log, never in the frames.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from depin import codec
from depin.errors import DepinError
from worker import sandbox_layers, sandbox_wire

CAP = 1 << 30  # the largest frame the worker sends (a task's inputs: blobs of at most 64 MiB, docs/KERNELS.md 6)


class _Pipe:
    """Blocking frame I/O on two file descriptors."""

    def __init__(self, fd_in: int, fd_out: int) -> None:
        self.fd_in, self.fd_out = fd_in, fd_out
        self.frames = sandbox_wire.Frames(CAP)

    def read(self) -> dict[str, Any] | None:
        while (message := self.frames.next()) is None:
            data = os.read(self.fd_in, 1 << 20)
            if not data:
                return None
            self.frames.feed(data)
        return message

    def write(self, message: dict[str, Any]) -> None:
        view = memoryview(sandbox_wire.frame(message))
        while view:
            view = view[os.write(self.fd_out, view):]


def _load(loader: str) -> Any:
    module, _, name = loader.partition(":")
    return getattr(importlib.import_module(module), name)


def _run(compiled: Any, task: dict[str, Any]) -> dict[str, Any]:
    try:
        inputs = {k: codec.array_from_wire(v) for k, v in task["inputs"].items()}
        out = compiled.run(task["params"], inputs)
        if not isinstance(out, np.ndarray):
            raise TypeError(f"the kernel returned {type(out).__name__}, not an array")
        return {"kind": "output", "array": codec.array_to_wire(out)}
    except Exception as exc:  # the kernel's error is the task's result; the worker decides what it means
        return {"kind": "error", "error": type(exc).__name__, "message": str(exc)[:sandbox_wire.MAX_TEXT]}


def _rehearse() -> None:
    # Everything a task does but the kernel itself, once before the limits: lazy imports and first-use allocations
    # of msgpack, numpy and exception formatting happen now, while files may still be opened.
    inputs = {"x": codec.array_to_wire(np.zeros(2))}
    task = codec.decode(sandbox_wire.frame({"inputs": inputs, "params": {"n": 1}})[sandbox_wire.HEADER.size:])
    _run(None, task)  # an AttributeError where the kernel would run: the error path
    sandbox_wire.frame({"kind": "output", "array": codec.array_to_wire(np.zeros(2))})
    str(MemoryError()), str(IndexError("index is out of bounds"))
    numba = sys.modules.get("numba")
    if numba is not None:  # a dispatcher types its arguments on each call: typeof imports numpy.ma on first use
        for dtype in codec.DTYPES:
            arr = np.zeros((1,), dtype=dtype)
            numba.typeof(arr), numba.typeof(arr[:0].view()), numba.typeof(arr[0])
        numba.typeof(1), numba.typeof(1.0), numba.typeof(True)


def _readable() -> list[str]:
    # Landlock's read-only tree: the Python installation and each imported package's directory. Serving tasks reads
    # no file at all (seccomp refuses every open); this only keeps a lazy import working where seccomp is off. Not
    # the cache dir: the worker may keep it beside its own files, and the compiled kernel is in memory by now.
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    for name in ("numpy", "numba", "llvmlite", "msgpack", "depin", "worker"):
        module = sys.modules.get(name)
        if module is not None and module.__file__:
            dirs.add(os.path.dirname(module.__file__))
    return sorted(dirs)


def serve(pipe: _Pipe) -> int:
    """The child's life: hello, compile, limits, ready, tasks until stdin closes; the exit code."""
    hello = pipe.read()
    if hello is None or hello.get("kind") != "hello":
        return 2
    sys.path[:] = hello["path"]
    cache_dir = Path(hello["cache_dir"])
    began = time.perf_counter()
    try:
        compile_kernel = _load(hello["loader"])
        compiled = compile_kernel(hello["source"], cache_dir=cache_dir)
    except DepinError as exc:
        pipe.write({"kind": "refused", "reason": str(exc)[:sandbox_wire.MAX_TEXT]})
        return 0
    except Exception as exc:  # numba's own failures, a broken loader: the kernel cannot run here either way
        pipe.write({"kind": "refused", "reason": f"{type(exc).__name__}: {exc}"[:sandbox_wire.MAX_TEXT]})
        return 0
    seconds = time.perf_counter() - began
    _rehearse()
    limits = sandbox_layers.Limits.from_wire(hello["limits"])
    layers = sandbox_layers.apply(limits, _readable())
    pipe.write({"kind": "ready", "compile_s": seconds, "layers": layers})
    while (task := pipe.read()) is not None:
        pipe.write(_run(compiled, task))
    return 0


def main() -> int:
    """Entry point of `python -m worker.sandbox_child`."""
    sandbox_layers.die_with_parent()  # had the worker died already, stdin is closed: serve() returns at once
    frames_out = os.dup(1)
    os.dup2(2, 1)  # print() and any stray write to fd 1 go to the log
    sys.stdout = sys.stderr
    return serve(_Pipe(0, frames_out))


if __name__ == "__main__":
    sys.exit(main())
