"""A kernel file compiled by numba (docs/KERNELS.md 4, layers 1 and 2): for a worker's sandbox and `depin kernel check`.

How it works: the file is checked again (a worker never trusts anyone else's check), then only its `def` statements
are executed, in a fresh namespace holding `np`, `math` and the allowlisted builtins; each function is replaced in
that namespace by its numba dispatcher (nopython, bounds-checked, no fastmath), so calls between the file's
functions resolve to compiled code. `compute` (and `verify`) are compiled at once for the exact argument types
`run` passes, and compiling anything else is then disabled.

Caching: numba's on-disk cache (`cache=True`) keys on the source file of a function, and refuses a function made by
`exec` from a string ("no locator available"). So with a `cache_dir` the canonical source is written to
`cache_dir/<id>/kernel.py` and the functions are compiled with that file as their file name, in a module
`depin_kernel_<id>` put in `sys.modules` (numba imports a cached function's module by name when it loads it). numba
then caches them beside it (`__pycache__`, or under $NUMBA_CACHE_DIR), keyed by the file's stamp (numba 0.68: a
hash of its content), the function's bytecode and the argument types. The file is content-addressed by id and
written again whenever it does not hold the id's bytes, so code cached for other source is never loaded.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import math
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numba
import numpy as np
from numba.core import types
from numba.core.errors import NumbaError

from depin.errors import KernelRefused, UserError
from depin.kernels.base import Params
from depin.userkernel import _literals, spec
from depin.userkernel.check import check
from depin.userkernel.source import canonical


@dataclass(frozen=True)
class Compiled:
    """A checked kernel file, compiled for the exact types its tasks pass."""

    kernel_id: str
    spec: spec.Spec
    compute_fn: Any  # the numba dispatcher of compute
    verify_fn: Any  # of verify, or None
    compile_seconds: float  # compiling (or loading from the cache) compute and verify
    cached: bool  # compute came from numba's on-disk cache

    def _args(self, task_params: Mapping[str, Any], inputs: Mapping[str, np.ndarray] | None
              ) -> tuple[Params, list[Any]]:
        given = dict(inputs or {})
        unknown = sorted(set(given) - {i.name for i in self.spec.inputs})
        if unknown:
            raise UserError(f"unknown input {unknown[0]!r}")
        t = spec.validate_task(self.spec, task_params, given if self.spec.inputs else None)
        n = spec.index_size(self.spec, t, given if self.spec.inputs else None)
        args: list[Any] = [t["start"], t["end"], *(t[p.name] for p in self.spec.params)]
        for i in self.spec.inputs:
            args.append(_read_only(_input(i, given, n, t["start"], t["end"])))
        return t, args

    def run(self, task_params: Mapping[str, Any], inputs: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """The task's output: `out` zeroed, filled by compute(start, end, *params, *inputs, out)."""
        t, args = self._args(task_params, inputs)
        dtype, shape = spec.output_spec(self.spec, t)
        out = np.zeros(shape, dtype=dtype)
        self.compute_fn(*args, out)
        return out

    def verify(self, task_params: Mapping[str, Any], inputs: Mapping[str, np.ndarray] | None,
               out: np.ndarray) -> bool:
        """Whether `out` is the task's right output, as the file's verify says (False if it has the wrong form)."""
        if self.verify_fn is None:
            raise UserError(f"kernel {self.spec.name} has no verify (its COMPARE is not \"verify\")")
        t, args = self._args(task_params, inputs)
        dtype, shape = spec.output_spec(self.spec, t)
        if out.dtype.name != dtype or out.shape != shape:
            return False
        return bool(self.verify_fn(*args, _read_only(out)))


def _input(i: spec.Input, given: Mapping[str, np.ndarray], n: int, start: int, end: int) -> np.ndarray:
    if i.name not in given:
        raise UserError(f"missing input {i.name!r}")
    arr = given[i.name]
    if not isinstance(arr, np.ndarray) or arr.dtype.name != i.dtype or arr.ndim != i.ndim:
        raise UserError(f"input {i.name!r} must be a {i.dtype} array of {i.ndim} axes")
    if i.part == "all":
        return arr
    if len(arr) != n:
        raise UserError(f"input {i.name!r} is read by rows: it must have {n} rows, not {len(arr)}")
    return arr[start:end]


def _read_only(arr: np.ndarray) -> np.ndarray:
    # A C-contiguous view nobody can write through (numba refuses, at compile time, code that writes into it).
    view = np.ascontiguousarray(arr).view()
    view.setflags(write=False)
    return view


def _signature(s: spec.Spec, out_readonly: bool) -> tuple[types.Type, ...]:
    scalars = [types.int64 if p.type is int else types.float64 for p in s.params]
    arrays = [types.Array(getattr(types, i.dtype), i.ndim, "C", readonly=True) for i in s.inputs]
    dtype, shape = s.output
    out = types.Array(getattr(types, dtype), len(shape), "C", readonly=out_readonly)
    return (types.int64, types.int64, *scalars, *arrays, out)


def _file(canon: bytes, kernel_id: str, cache_dir: Path | None) -> str:
    # The file name the functions are compiled under: a real file numba can cache beside, or a label.
    if cache_dir is None:
        return f"<kernel {kernel_id[:12]}>"
    path = cache_dir / kernel_id / "kernel.py"
    if not path.exists() or path.read_bytes() != canon:  # left alone when right: older numba stamps by mtime
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(canon)
        os.replace(tmp, path)
    return str(path)


def _numba_message(exc: Exception) -> str:
    # numba's messages span many lines (candidates, source excerpts, "During: ..."): keep the line it points at and
    # the two lines that say what is wrong.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    where = next((m.group(1) for line in lines if (m := re.match(r'File ".*", line (\d+)', line))), None)
    what = [line for line in lines if not line.startswith(("Failed in", "During:", "File ", "<source"))][:2]
    return (f"line {where}: " if where else "") + " ".join(what)[:400]


def compile_kernel(source: str, *, cache_dir: Path | None = None) -> Compiled:
    """Check and compile a kernel file (its source as text); a KernelRefused if it fails the check or numba refuses
    it. With `cache_dir`, compiled code is cached on disk by kernel id (see the module's header)."""
    canon = canonical(source.encode("utf-8", "surrogatepass"))  # a lone surrogate: refused as not UTF-8
    kernel_id = hashlib.sha256(canon).hexdigest()
    s = check(canon.decode("utf-8"))
    tree = ast.parse(canon.decode("utf-8"))
    defs = ast.Module(body=[n for n in tree.body if isinstance(n, ast.FunctionDef)], type_ignores=[])
    # A module of its own (numba rebuilds a cached function's globals by importing its module by name).
    module = ModuleType(f"depin_kernel_{kernel_id}")
    namespace = module.__dict__
    namespace.update(np=np, math=math, __builtins__={name: getattr(builtins, name) for name in _literals.BUILTINS})
    code = compile(defs, _file(canon, kernel_id, cache_dir), "exec", dont_inherit=True)
    exec(code, namespace)  # only the def statements: nothing of the file runs here
    sys.modules[module.__name__] = module
    for fn in defs.body:
        assert isinstance(fn, ast.FunctionDef)
        namespace[fn.name] = numba.njit(namespace[fn.name], cache=cache_dir is not None, boundscheck=True,
                                        fastmath=False, error_model="numpy", nogil=True)
    began = time.perf_counter()
    compute = _compile(namespace["compute"], _signature(s, False), types.none, "compute")
    verify = _compile(namespace["verify"], _signature(s, True), types.boolean, "verify") if s.has_verify else None
    seconds = time.perf_counter() - began
    cached = cache_dir is not None and sum(compute.stats.cache_hits.values()) > 0
    return Compiled(kernel_id, s, compute, verify, seconds, cached)


def _compile(dispatcher: Any, signature: tuple[types.Type, ...], returns: types.Type, name: str) -> Any:
    try:
        dispatcher.compile(signature)
    except NumbaError as exc:
        raise KernelRefused(f"{name} does not compile: {_numba_message(exc)}") from None
    got = dispatcher.overloads[signature].signature.return_type
    if got != returns:
        want = "nothing" if returns == types.none else "a bool"
        raise KernelRefused(f"{name} must return {want}, not {got}")
    dispatcher.disable_compile()  # a call with other types is an error, never a new compilation
    return dispatcher
