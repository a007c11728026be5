"""Benchmark: kernel files (issue 11) - compile time against numba's on-disk cache, and a kernel file's compiled code
against the built-in it rewrites, all in this one run.

    .venv/bin/python benchmarks/bench_userkernel.py [--repeats N]

Compile: for each file in examples/builtin/, `compile_kernel` (check + exec of the defs + numba) timed in a fresh
Python process, as a worker's sandbox child would be: with no cache dir, with an empty cache dir (compile and
write), and with that cache dir again (load). `import` is the time to import depin.userkernel.compiled (numba)
in the same child, paid once per process whatever the cache. "again" compiles the same file a second time in that
child: numba's compiler is initialised by then, so it is what a kernel costs on its own. Medians of --repeats
children.

Run: one task of each kernel, the file's `Compiled.run` against the built-in's `run` (both compiled before timing;
outputs checked equal), median of --repeats runs each, in this process. This is the code alone: the sandbox's
overhead per task is measured where the sandbox is.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, revision  # noqa: E402

EXAMPLES = ROOT / "examples" / "builtin"
_CHILD = """
import json, sys, time
from pathlib import Path
began = time.perf_counter()
from depin.userkernel.compiled import compile_kernel
imported = time.perf_counter() - began
began = time.perf_counter()
cache = Path(sys.argv[2]) if sys.argv[2] else None
c = compile_kernel(Path(sys.argv[1]).read_text(), cache_dir=cache)
took = time.perf_counter() - began
began = time.perf_counter()
again = compile_kernel(Path(sys.argv[1]).read_text(), cache_dir=cache)  # the same file, numba now initialised
print(json.dumps({"import": imported, "compile": took, "cached": c.cached, "again": time.perf_counter() - began,
                  "again_cached": again.cached}))
"""


def _child(path: pathlib.Path, cache: pathlib.Path | None) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(cache or "")], capture_output=True,
                          text=True, check=True, cwd=ROOT)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def compile_times(repeats: int) -> None:
    print("| kernel file | import numba (s) | no cache (s) | empty cache: compile + write (s) | cache hit (s) |"
          " no cache / hit | again in that process: no cache (s) | again: cache hit (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("mandelbrot", "nonce", "montecarlo"):
        path = EXAMPLES / f"{name}.py"
        imports, plain, cold, warm, plain2, warm2 = [], [], [], [], [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                a = _child(path, None)
                b = _child(path, pathlib.Path(tmp))
                c = _child(path, pathlib.Path(tmp))
            assert not a["cached"] and not b["cached"] and c["cached"] and c["again_cached"], (a, b, c)
            imports += [a["import"], b["import"], c["import"]]
            plain.append(a["compile"])
            cold.append(b["compile"])
            warm.append(c["compile"])
            plain2.append(a["again"])
            warm2.append(c["again"])
        m = [statistics.median(x) for x in (imports, plain, cold, warm, plain2, warm2)]
        print(f"| {name} | {m[0]:.2f} | {m[1]:.3f} | {m[2]:.3f} | {m[3]:.3f} | {m[1] / m[3]:.1f}x | {m[4]:.3f} |"
              f" {m[5]:.4f} |")


def run_times(repeats: int) -> None:
    import numpy as np

    from depin.kernels import mandelbrot, montecarlo, nonce
    from depin.userkernel.compiled import compile_kernel

    cases = [
        ("mandelbrot", "512x512 rows, max_iter 256",
         dict(width=512, height=512, x_min=-2.0, x_max=1.0, y_min=-1.2, y_max=1.2, max_iter=256, start=0, end=512),
         mandelbrot.run, dict(width=512, height=512, x_min=-2.0, x_max=1.0, y_min=-1.2, y_max=1.2, max_iter=256,
                              row_start=0, row_end=512)),
        ("nonce", "2^22 nonces, no solution", dict(seed=1, difficulty=40, first=0, count=1 << 22, start=0,
                                                   end=1 << 22),
         nonce.run, dict(seed=1, difficulty=40, start=0, count=1 << 22, nonce_start=0, nonce_end=1 << 22)),
        ("montecarlo", "2^22 samples, exp", dict(func=1, samples=1 << 22, seed=3, start=0, end=1 << 22),
         montecarlo.run, dict(func=1, samples=1 << 22, seed=3, sample_start=0, sample_end=1 << 22)),
    ]
    print("| kernel | task | built-in run (ms) | kernel file run (ms) | file / built-in |")
    print("|---|---|---|---|---|")
    for name, what, file_task, built_in, built_in_task in cases:
        compiled = compile_kernel((EXAMPLES / f"{name}.py").read_text())
        assert np.array_equal(compiled.run(file_task), built_in(built_in_task))

        def median(fn: Any, task: dict[str, Any]) -> float:
            times = []
            for _ in range(repeats):
                began = time.perf_counter()
                fn(task)
                times.append(time.perf_counter() - began)
            return statistics.median(times)

        theirs, mine = median(built_in, built_in_task), median(compiled.run, file_task)
        print(f"| {name} | {what} | {theirs * 1e3:.1f} | {mine * 1e3:.1f} | {mine / theirs:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{revision()}; {machine()}\n")
    compile_times(args.repeats)
    print()
    run_times(args.repeats)


if __name__ == "__main__":
    main()
