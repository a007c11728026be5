"""Benchmark: the mandelbrot kernel against numpy, C and pure Python, all measured in this one run.

    .venv/bin/python benchmarks/bench_kernel.py [--repeats N]

For each case the depin kernel (`KERNEL.validate` -> `KERNEL.split` -> `KERNEL.run` per task, after
`KERNEL.warmup`) is timed against:

* numpy: a vectorised implementation of the same spec, written below (checked equal before timing);
* C: tests/reference/mandelbrot_ref.c's own `escape_count`, built with the reference's flags (cref.CFLAGS) into
  benchmarks/mandelbrot_timed.c, which times only its compute loop in-process (no process start, no I/O);
* pure Python: tests/reference/cref.python_reference on a scaled-down image of the same view (the rate is
  extrapolated from the small image, and labelled so).

Speed is pixel-iterations per second, where pixel-iterations is the sum of the output (the iterations actually
performed). Every timed figure is the median of `--repeats` runs. All implementations are single-threaded.
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# numba reads its cache location when first imported: a fresh cache makes `warmup` a measured cold compile and
# keeps the benchmark from writing into the source tree.
_NUMBA_CACHE = tempfile.TemporaryDirectory(prefix="depin-bench-numba-")
os.environ["NUMBA_CACHE_DIR"] = _NUMBA_CACHE.name

from _common import machine, machine_busy_seconds, revision  # noqa: E402

from depin.kernels.mandelbrot import KERNEL  # noqa: E402
from tests.reference import cref  # noqa: E402

DRIVER_SOURCE = pathlib.Path(__file__).with_name("mandelbrot_timed.c")


@dataclass(frozen=True)
class Case:
    """One image to compute, and how much smaller the pure-Python run is in each direction."""

    name: str
    params: dict[str, Any]
    tasks: int  # how many bands KERNEL.split makes; the kernel runs each in turn
    py_shrink: int


SEAHORSE = (-0.743643887037151, 0.131825904205330, 2e-6)  # centre x, centre y, half-width


def _square(cx: float, cy: float, hw: float) -> dict[str, float]:
    return {"x_min": cx - hw, "x_max": cx + hw, "y_min": cy - hw, "y_max": cy + hw}


CASES = (
    Case("full set 800x600, max_iter 256", {"width": 800, "height": 600, "max_iter": 256}, 1, 10),
    Case("deep zoom 512x512, max_iter 2000", {"width": 512, "height": 512, "max_iter": 2000, **_square(*SEAHORSE)},
         1, 16),
    Case("pipeline job 256x4096, max_iter 32, as 1024 bands",
         {"width": 256, "height": 4096, "max_iter": 32}, 1024, 16),
)


# ---- the implementations ------------------------------------------------------------------------------------


def numpy_mandelbrot(width: int, height: int, x_min: float, x_max: float, y_min: float, y_max: float,
                     max_iter: int, compact_every: int = 8) -> np.ndarray:
    """The kernel spec, vectorised: iterate every live pixel at once, drop the escaped ones every few steps.

    The arithmetic is the spec's, operation for operation (numpy never contracts to FMA), so the result is
    bit-identical. Escaped pixels stay in the arrays for up to `compact_every` steps; `alive` stops their count,
    and whatever their z then overflows to (inf/nan) is never read.
    """
    cols = np.arange(width, dtype=np.float64)
    rows = np.arange(height, dtype=np.float64)
    xs = x_min + ((cols + 0.5) * (x_max - x_min)) / width
    ys = y_max - ((rows + 0.5) * (y_max - y_min)) / height
    x = np.tile(xs, height)
    y = np.repeat(ys, width)
    index = np.arange(width * height)
    out = np.zeros(width * height, dtype=np.uint32)
    n = np.zeros(width * height, dtype=np.uint32)
    zr = np.zeros(width * height)
    zi = np.zeros(width * height)
    zr2 = np.empty_like(zr)
    zi2 = np.empty_like(zr)
    mag = np.empty_like(zr)
    alive = np.ones(width * height, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(max_iter):
            np.multiply(zr, zr, out=zr2)
            np.multiply(zi, zi, out=zi2)
            np.add(zr2, zi2, out=mag)
            alive &= mag <= 4.0
            n += alive
            # zi <- 2*zr*zi + y and zr <- zr^2 - zi^2 + x, in the spec's order of operations.
            np.multiply(zr, 2.0, out=zr)
            np.multiply(zr, zi, out=zi)
            np.add(zi, y, out=zi)
            np.subtract(zr2, zi2, out=zr)
            np.add(zr, x, out=zr)
            if (step + 1) % compact_every == 0:
                dead = ~alive
                out[index[dead]] = n[dead]
                keep = alive
                index, n, zr, zi, x, y = index[keep], n[keep], zr[keep], zi[keep], x[keep], y[keep]
                zr2, zi2, mag = zr2[: len(zr)], zi2[: len(zr)], mag[: len(zr)]
                alive = np.ones(len(zr), dtype=bool)
                if not len(zr):
                    break
    out[index] = n
    return out.reshape(height, width)


def numba_run(params: dict[str, Any], n_tasks: int) -> Callable[[], np.ndarray]:
    """The depin kernel as a worker would call it: validate, split, run every band, merge."""
    p = KERNEL.validate(params)
    tasks = KERNEL.split(p, n_tasks)

    def run() -> np.ndarray:
        return KERNEL.merge(p, [KERNEL.run(t) for t in tasks])

    return run


def _hex(v: float) -> str:
    return cref._hex_bits(v)


def build_driver(tmp: pathlib.Path) -> pathlib.Path:
    """Compile mandelbrot_timed.c with the C reference's own flags."""
    binary = tmp / "mandelbrot_timed"
    subprocess.run(["gcc", *cref.CFLAGS, "-o", str(binary), str(DRIVER_SOURCE)], check=True)
    return binary


def c_run(binary: pathlib.Path, p: dict[str, Any], tmp: pathlib.Path) -> tuple[float, np.ndarray]:
    """Compute-loop seconds of one run of the C driver, and its image."""
    out = tmp / "c_out.bin"
    args = [str(binary), str(p["width"]), str(p["height"]), _hex(p["x_min"]), _hex(p["x_max"]),
            _hex(p["y_min"]), _hex(p["y_max"]), str(p["max_iter"]), "1", str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    image = np.fromfile(out, dtype=np.uint32).reshape(p["height"], p["width"])
    return int(proc.stdout.split()[0]) / 1e9, image


def wall(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    """Wall seconds of one call, and its result."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


@dataclass(frozen=True)
class Row:
    """One case, measured."""

    case: str
    iterations: int
    kernel_s: float
    numpy_s: float
    c_s: float
    python_rate: float
    python_size: str


def measure(case: Case, binary: pathlib.Path, tmp: pathlib.Path, repeats: int) -> Row:
    """Check every implementation against the kernel, then time them round-robin, `repeats` times each.

    Round-robin (kernel, numpy, C, kernel, numpy, C, ...) means a burst of load on the machine hits all three
    alike instead of one of them, which keeps the ratios honest on a shared machine.
    """
    p = KERNEL.validate(case.params)
    names = ("width", "height", "x_min", "x_max", "y_min", "y_max", "max_iter")
    run_kernel = numba_run(case.params, case.tasks)
    image = run_kernel()
    numpy_args = tuple(p[k] for k in names)
    assert np.array_equal(numpy_mandelbrot(*numpy_args), image), "numpy differs from the kernel"
    _, c_image = c_run(binary, p, tmp)
    assert np.array_equal(c_image, image), "C reference differs from the kernel"

    times: dict[str, list[float]] = {"kernel": [], "numpy": [], "c": []}
    for _ in range(repeats):
        times["kernel"].append(wall(run_kernel)[0])
        times["numpy"].append(wall(functools.partial(numpy_mandelbrot, *numpy_args))[0])
        times["c"].append(c_run(binary, p, tmp)[0])

    small = dict(p, width=max(1, p["width"] // case.py_shrink), height=max(1, p["height"] // case.py_shrink))
    py_s, py_image = wall(functools.partial(cref.python_reference, *(small[k] for k in names)))
    assert np.array_equal(py_image, KERNEL.run(dict(small, row_start=0, row_end=small["height"]))), \
        "pure Python differs from the kernel"
    return Row(case.name, int(image.sum(dtype=np.uint64)), statistics.median(times["kernel"]),
               statistics.median(times["numpy"]), statistics.median(times["c"]),
               int(py_image.sum(dtype=np.uint64)) / py_s, f"{small['width']}x{small['height']}")


def call_overhead() -> float:
    """Seconds per KERNEL.run call on a 1-pixel task (argument conversion, numba dispatch, allocation)."""
    one = KERNEL.split(KERNEL.validate({"width": 1, "height": 1, "max_iter": 1}), 1)[0]
    calls, per_call = 20_000, []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            KERNEL.run(one)
        per_call.append((time.perf_counter() - started) / calls)
    return statistics.median(per_call)


# ---- the run --------------------------------------------------------------------------------------------------


def _rate(iterations: int, seconds: float) -> float:
    return iterations / seconds


def _fmt_rate(r: float) -> str:
    return f"{r / 1e6:,.1f} M/s"




def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per implementation (median; default 5)")
    args = ap.parse_args()
    if shutil.which("gcc") is None:
        print("gcc not found: the C baseline needs it", file=sys.stderr)
        return 1
    print(f"machine: {machine(with_gcc=True)}; {revision()}")
    wall0, busy0, own0 = time.perf_counter(), machine_busy_seconds(), _own_cpu_seconds()
    started = time.perf_counter()
    KERNEL.warmup()
    print(f"KERNEL.warmup (cold numba compile, empty cache): {time.perf_counter() - started:.2f} s")

    with tempfile.TemporaryDirectory(prefix="depin-bench-") as d:
        tmp = pathlib.Path(d)
        binary = build_driver(tmp)
        rows = [measure(case, binary, tmp, args.repeats) for case in CASES]
    per_call = call_overhead()
    others = (machine_busy_seconds() - busy0 - (_own_cpu_seconds() - own0)) / (time.perf_counter() - wall0)

    print()
    print("| case | pixel-iterations | depin kernel (numba) | numpy | C -O2 (compute loop) "
          "| pure Python (scaled-down image) | kernel / numpy | kernel / C |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        kernel, numpy_rate, c = r.iterations / r.kernel_s, r.iterations / r.numpy_s, r.iterations / r.c_s
        print(f"| {r.case} | {r.iterations:,} | {_fmt_rate(kernel)} ({r.kernel_s * 1e3:.1f} ms) "
              f"| {_fmt_rate(numpy_rate)} ({r.numpy_s * 1e3:.0f} ms) | {_fmt_rate(c)} ({r.c_s * 1e3:.1f} ms) "
              f"| {_fmt_rate(r.python_rate)} ({r.python_size}) | {kernel / numpy_rate:.2f}x | {kernel / c:.2f}x |")
    print()
    print("Rates are pixel-iterations per second: the sum of the output over the median wall time. A ratio above 1 "
          "means the depin kernel is faster. Everything is single-threaded.")
    print(f"Kernel, numpy and C each ran {args.repeats} times, round-robin; medians shown. Kernel: KERNEL.run over "
          "every band of KERNEL.split, then merge. C: the compute loop as timed inside benchmarks/mandelbrot_timed.c "
          f"(the reference's own escape_count, gcc {' '.join(cref.CFLAGS)}); no process start or file I/O. "
          "Pure Python: one run of cref.python_reference on a scaled-down image of the same view (its size in the "
          "column); that rate is extrapolated, not measured on the full image.")
    print(f"Other processes on the machine used {others:.2f} cores on average during this run "
          f"({time.perf_counter() - wall0:.0f} s); well above 0 means the figures are disturbed.")
    print(f"Pipeline job (last row): {rows[-1].kernel_s * 1e6 / CASES[-1].tasks:.1f} us of kernel time per 256x4 "
          f"band on average. Fixed cost of one KERNEL.run call (1x1 pixel, max_iter 1): {per_call * 1e6:.2f} us "
          f"(median of 5 means of 20,000 calls).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

