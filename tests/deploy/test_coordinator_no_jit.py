"""The coordinator never loads numba, so deploy/systemd/depin-coordinator.service may set MemoryDenyWriteExecute=yes
(a JIT needs memory it can write and then execute; under that setting the coordinator would die at its first).

A fresh interpreter imports what `depin coordinator` imports and runs every kernel hook the coordinator calls
(validate, split, output_spec and check_output, compare, verify, merge, render_png, work), then lists the modules
loaded."""

from __future__ import annotations

import json
import subprocess
import sys

from depin import kernels

# Small jobs of every kernel; a new kernel must be added here (the first test says so).
JOBS = {
    "mandelbrot": {"width": 8, "height": 4},
    "montecarlo": {"func": 0, "samples": 1000},
    "nonce": {"seed": 7, "difficulty": 4, "count": 1000},
}

_SCRIPT = """
import json, sys
import numpy as np
import depin.cli.main, coordinator.server, coordinator.scheduler
from depin import kernels

for name, raw in json.loads(sys.argv[1]).items():
    k = kernels.get(name)
    p = k.validate(dict(raw))
    tasks = k.split(p, 2)
    outputs = []
    for t in tasks:
        dtype, shape = k.output_spec(t)
        out = np.zeros(shape, dtype=dtype)
        k.check_output(t, out)
        k.compare(out, out)
        k.work(t)
        if k.verify is not None:
            k.verify(t, out)
        outputs.append(out)
    merged = k.merge(p, outputs)
    if k.render_png is not None:
        k.render_png(p, merged)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("numba", "llvmlite"))))
"""


def test_every_kernel_has_a_job_here() -> None:
    assert {k.name for k in kernels.all_kernels()} == set(JOBS)


def test_the_coordinator_side_of_every_kernel_loads_no_jit() -> None:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(JOBS)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_the_jit_module_does_load_it() -> None:
    # The control: the check above would see numba if it were loaded (the workers' JIT module imports it).
    script = "import sys; import depin.kernels._splitmix_jit; print('numba' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "True"
