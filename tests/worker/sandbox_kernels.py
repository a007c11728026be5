"""Test-only loaders for worker.sandbox, with the interface of depin.userkernel.compiled.compile_kernel.

`compile_numba` stands in for compile_kernel until that lands: the source defines one function
`compute(start, end, scale, x, out)`, compiled by numba as compile_kernel does (nopython, bounds-checked, no fastmath,
for the exact types its tasks pass, then no more compiling), cached on disk by the source's hash. `compile_raw` is the
hostile case: it executes plain Python with no check at all, as a kernel that got past the check and numba would;
its source defines `run(task_params, inputs)`. The sources the tests use are below.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numba
import numpy as np
from numba.core import types

NUMBA = "tests.worker.sandbox_kernels:compile_numba"
RAW = "tests.worker.sandbox_kernels:compile_raw"
_SIGNATURE = (types.int64, types.int64, types.float64, types.Array(types.float64, 1, "C", readonly=True),
              types.Array(types.float64, 1, "C"))


class NumbaKernel:
    """A compiled `compute`: out[i - start] for i in [start, end), float64."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def run(self, task_params: Mapping[str, Any], inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        start, end = int(task_params["start"]), int(task_params["end"])
        x = np.ascontiguousarray(inputs.get("x", np.zeros(0)), dtype=np.float64).view()
        x.setflags(write=False)
        out = np.zeros(end - start)
        self.fn(start, end, float(task_params["scale"]), x, out)
        return out


def compile_numba(source: str, *, cache_dir: Path | None = None) -> NumbaKernel:
    """Compile `source`'s compute (see the module's header)."""
    digest = hashlib.sha256(source.encode()).hexdigest()
    filename = "<kernel>"
    if cache_dir is not None:
        path = cache_dir / digest / "kernel.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != source:
            path.write_text(source)
        filename = str(path)
    module = ModuleType(f"sandbox_test_kernel_{digest}")  # numba imports a cached function's module by name
    sys.modules[module.__name__] = module
    module.__dict__["np"] = np
    exec(compile(source, filename, "exec"), module.__dict__)
    fn = numba.njit(module.compute, cache=cache_dir is not None, boundscheck=True, fastmath=False,
                    error_model="numpy", nogil=True)
    fn.compile(_SIGNATURE)
    fn.disable_compile()
    return NumbaKernel(fn)


class RawKernel:
    """Plain Python, unchecked: `run` of the source's namespace."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace

    def run(self, task_params: Mapping[str, Any], inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        result: np.ndarray = self.namespace["run"](task_params, inputs)
        return result


def compile_raw(source: str, *, cache_dir: Path | None = None) -> RawKernel:
    """Execute `source` (its top level runs now, before the limits; its `run` per task, after them)."""
    namespace: dict[str, Any] = {"np": np, "CACHE_DIR": cache_dir}
    exec(compile(source, "<raw kernel>", "exec"), namespace)
    return RawKernel(namespace)


# out[i - start] = scale * i * i + sum(x): exact in float64 for the sizes the tests use.
SQUARES = """
def compute(start, end, scale, x, out):
    s = 0.0
    for j in range(x.shape[0]):
        s += x[j]
    for i in range(start, end):
        out[i - start] = scale * i * i + s
"""

# Writes one past the end of out: bounds checking raises IndexError instead of writing into memory.
OUT_OF_BOUNDS = """
def compute(start, end, scale, x, out):
    for i in range(start, end + 1):
        out[i - start] = scale
"""

# Allocates `scale` float64s.
ALLOCATE = """
def compute(start, end, scale, x, out):
    big = np.ones(int(scale))
    out[0] = big[int(scale) - 1]
"""

# Never ends.
SPIN = """
def compute(start, end, scale, x, out):
    i = 0
    while scale > 0:
        i += 1
        out[0] = i
"""

# Fails numba's typing (a string cannot be added to a float): refused at compile.
UNTYPABLE = """
def compute(start, end, scale, x, out):
    out[0] = scale + "a"
"""
