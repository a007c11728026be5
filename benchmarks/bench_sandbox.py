"""Benchmark: what the sandbox of published kernels costs (worker/sandbox.py, docs/KERNELS.md 4).

    .venv/bin/python benchmarks/bench_sandbox.py              # about a minute
    .venv/bin/python benchmarks/bench_sandbox.py --tasks 500  # more tiny tasks per measurement

One kernel, "busy" (out[i] = the sum over j < reps of (i * j) % 7), compiled by depin.userkernel.compiled where that
module exists, else by the test stand-in (tests/worker/sandbox_kernels.py, the same numba options). Measured, in one
run:

* per task: the median wall time of `Sandbox.run` (every layer this machine offers) against `Compiled.run` in this
  process, for a tiny task (1 row, 1 repetition) and for a task of about 100 ms;
* start: from `start()` to ready (a new Python, imports, compiling, the layers), with numba's cache cold (a new cache
  dir) and warm (the same dir again), and the compile seconds the child reports (loading the loader's module, which
  imports numba, and compiling); with depin.userkernel, also for the built-in kernels as files (examples/builtin/);
* memory: the child's address space once compiled, and the smallest `Limits.memory_bytes` (MiB, by bisection) with
  which a tiny task, and a task with a 64 MiB input and a 4 MiB output, still run.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from _common import loadavg, machine, revision  # noqa: E402

from depin.errors import KernelFailed  # noqa: E402
from worker.sandbox import DEFAULT_LOADER, Sandbox  # noqa: E402
from worker.sandbox_layers import Limits  # noqa: E402

KERNEL_FILE = '''"""Busy work for the sandbox benchmark: out[i] = the sum over j < reps of (i * j) % 7."""
import numpy as np

NAME = "busy"
PARAMS = {
    "n": (int, 1, 10_000_000, "rows"),
    "reps": (int, 1, 1_000_000_000, "repetitions per row"),
    "x": (float, 0.0, 1.0, "unused: makes the stand-in's signature"),
}
INDEX = "n"
OUTPUT = ("float64", ("rows",))
MERGE = "concatenate"
COMPARE = "exact"


def compute(start, end, n, reps, x, out):
    for i in range(start, end):
        acc = 0.0
        for j in range(reps):
            acc += (i * j) % 7
        out[i - start] = acc
'''

STAND_IN = '''
def compute(start, end, scale, x, out):
    reps = int(scale)
    for i in range(start, end):
        acc = 0.0
        for j in range(reps):
            acc += (i * j) % 7
        out[i - start] = acc
'''


class Kernel:
    """The kernel under either loader: its source, loader, and task parameters and inputs for rows and reps."""

    def __init__(self) -> None:
        self.real = importlib.util.find_spec("depin.userkernel") is not None
        if self.real:
            self.source, self.loader = KERNEL_FILE, DEFAULT_LOADER
        else:
            self.source, self.loader = STAND_IN, "tests.worker.sandbox_kernels:compile_numba"

    def compile(self, cache_dir: pathlib.Path | None) -> Any:
        module, _, name = self.loader.partition(":")
        return getattr(importlib.import_module(module), name)(self.source, cache_dir=cache_dir)

    def task(self, rows: int, reps: int, *, x: np.ndarray | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        inputs = {} if x is None else {"x": x}
        if self.real:
            return {"n": rows, "reps": reps, "x": 0.0, "start": 0, "end": rows}, {}
        return {"start": 0, "end": rows, "scale": float(reps)}, inputs


def median_seconds(call: Callable[[], object], times: int) -> float:
    seconds = []
    for _ in range(times):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


def per_task(kernel: Kernel, cache: pathlib.Path, tasks: int) -> list[str]:
    here = kernel.compile(cache)
    lines = ["| task | in process | in the sandbox | overhead per task | ratio |", "|---|---|---|---|---|"]
    reps = 1
    while median_seconds(lambda r=reps: here.run(*kernel.task(100, r)), 3) < 0.1:  # about 100 ms a task
        reps *= 2
    with Sandbox(kernel.source, "busy", cache, loader=kernel.loader) as sb:
        sb.start()
        for label, rows, r, n in (("tiny (1 row, 1 rep)", 1, 1, tasks), (f"100 rows x {reps} reps", 100, reps, 10)):
            params, inputs = kernel.task(rows, r)
            want = here.run(params, inputs)
            assert np.array_equal(sb.run(params, inputs, 60, expect=("float64", (rows,))), want)
            inside = median_seconds(lambda p=params, i=inputs, k=rows: sb.run(p, i, 60, expect=("float64", (k,))),
                                    n)
            alone = median_seconds(lambda p=params, i=inputs: here.run(p, i), n)
            lines.append(f"| {label} | {alone * 1e6:,.0f} µs | {inside * 1e6:,.0f} µs | "
                         f"{(inside - alone) * 1e6:,.0f} µs | {inside / alone:.2f} |")
        layers = sb.layers()
    return lines + ["", "Layers: " + "; ".join(f"{k}: {v}" for k, v in layers.items())]


def starts(kernel: Kernel, tmp: pathlib.Path) -> list[str]:
    sources = [("busy", kernel.source)]
    if kernel.real:  # the built-in kernels as kernel files, where they exist: bigger compiles
        sources += [(p.stem, p.read_text()) for p in sorted((ROOT / "examples" / "builtin").glob("*.py"))]
    lines = ["| kernel | numba cache | start to ready (median of 3) | compile seconds reported |", "|---|---|---|---|"]
    for name, source in sources:
        for label in ("cold (a new cache dir)", "warm (the same dir again)"):
            walls, compiles = [], []
            for i in range(3):
                cache = tmp / f"start-{name}-{i}"  # cold: a new dir each; warm: the dirs the cold starts filled
                with Sandbox(source, name, cache, loader=kernel.loader) as sb:
                    began = time.perf_counter()
                    compiles.append(sb.start())
                    walls.append(time.perf_counter() - began)
            lines.append(f"| {name} | {label} | {statistics.median(walls):.2f} s | "
                         f"{statistics.median(compiles):.2f} s |")
    return lines


def smallest_memory(kernel: Kernel, cache: pathlib.Path, rows: int, x: np.ndarray | None) -> int:
    """The smallest memory_bytes, in MiB, with which the task runs (bisection over 1..4096 MiB)."""
    params, inputs = kernel.task(rows, 1, x=x)
    low, high = 0, 4096  # fails at low (or low = 0), runs at high

    def runs(mib: int) -> bool:
        with Sandbox(kernel.source, "busy", cache, Limits(memory_bytes=mib << 20), kernel.loader) as sb:
            try:
                sb.run(params, inputs, 60, expect=("float64", (rows,)))
                return True
            except KernelFailed:
                return False

    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if runs(mid) else (mid, high)
    return high


def memory(kernel: Kernel, cache: pathlib.Path) -> list[str]:
    with Sandbox(kernel.source, "busy", cache, loader=kernel.loader) as sb:
        sb.start()
        size = sb.layers()["rlimits"]
    lines = [f"Once compiled (RLIMIT_AS = that + memory_bytes): {size}", "",
             "| task | smallest memory_bytes that runs it |", "|---|---|",
             f"| tiny (1 row) | {smallest_memory(kernel, cache, 1, None)} MiB |"]
    if not kernel.real:  # the stand-in reads an input x; the benchmark's kernel file has none
        x = np.zeros(8 << 20)  # 64 MiB
        lines.append(f"| 64 MiB input, 4 MiB output | {smallest_memory(kernel, cache, 512 * 1024, x)} MiB |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200, help="tiny tasks per median")
    args = parser.parse_args()
    kernel = Kernel()
    print(f"# bench_sandbox: {revision()}; {machine()}; load {loadavg()}")
    print(f"loader: {kernel.loader}\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp)
        for title, lines in (("Per task", per_task(kernel, path / "tasks", args.tasks)),
                             ("Start", starts(kernel, path)),
                             ("Memory", memory(kernel, path / "memory"))):
            print(f"### {title}\n")
            print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
