"""`depin kernel check FILE`: a kernel file checked, compiled and run on a small sample here, as a worker would."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from depin.cli import output
from depin.errors import UserError
from depin.kernels.base import Tolerance, describe_params
from depin.userkernel import source, spec

MEASURE_SECONDS = 0.02  # a run this long makes the fixed cost of a call negligible in the estimate


def _compare(s: spec.Spec) -> Any:
    c = s.compare
    return ["tolerance", c.abs_tol, c.rel_tol] if isinstance(c, Tolerance) else c


def _sample(compiled: Any, s: spec.Spec) -> dict[str, Any] | None:
    # The sample task run once: its output, and verify's answer on it.
    if s.inputs:
        return None
    t = spec.sample_task(s)
    try:
        out: np.ndarray = compiled.run(t)
        verified = compiled.verify(t, None, out) if s.has_verify else None
    except UserError:
        raise
    except Exception as exc:  # the kernel's own failure (IndexError from a bounds check, ...): the author's to fix
        raise UserError(f"the sample task {t} failed: {type(exc).__name__}: {exc}") from None
    return {"params": t, "dtype": out.dtype.name, "shape": list(out.shape), "verify": verified,
            "output": out.ravel()[:8].tolist(), **_cost(compiled, s, t)}


def _cost(compiled: Any, s: spec.Spec, t: dict[str, Any]) -> dict[str, Any]:
    # Seconds per unit of WORK: the sample's range doubled (within the index space and the output limit) until one
    # run takes MEASURE_SECONDS, so that the fixed cost of a call does not count, then the best of three runs.
    def timed(task: dict[str, Any]) -> float:
        began = time.perf_counter()
        compiled.run(task)
        return time.perf_counter() - began

    n = spec.index_size(s, t)
    while timed(t) < MEASURE_SECONDS and t["end"] < n:
        try:
            t = spec.validate_task(s, dict(t, end=min(n, 2 * t["end"])))
        except UserError:  # the output limit: measure what fits
            break
    best = min(timed(t) for _ in range(3))
    units = spec.work(s, t)
    return {"measured_on": [t["start"], t["end"]], "seconds": best, "work": units,
            "seconds_per_work": best / units if units else None}


def check(args: argparse.Namespace) -> int:
    """Check, compile and sample-run a kernel file; print what it declares, its id, compile time and cost."""
    path = Path(args.file)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    text = source.canonical(raw).decode("utf-8")
    from depin.userkernel.compiled import compile_kernel  # numba: only when a file is to be compiled

    compiled = compile_kernel(text)
    s = compiled.spec
    try:
        spec.publishable(s)
        why_not = None
    except UserError as exc:
        why_not = str(exc)
    sample = _sample(compiled, s)
    info = {"kernel_id": compiled.kernel_id, "name": s.name, "doc": s.doc, "params": describe_params(s.params),
            "index": s.index, "output": {"dtype": s.output[0], "shape": list(s.output[1])}, "merge": s.merge,
            "compare": _compare(s), "work": list(s.work), "platform": s.platform,
            "inputs": [{"name": i.name, "dtype": i.dtype, "ndim": i.ndim, "part": i.part} for i in s.inputs],
            "compile_seconds": compiled.compile_seconds, "sample": sample, "publishable": why_not is None,
            "why_not_publishable": why_not}
    output.emit(args.json, info, _text(info))
    return 0


def _text(k: dict[str, Any]) -> str:
    shape = ", ".join(map(str, k["output"]["shape"]))
    lines = [output.kernels_text([{**k, "name": k["kernel_id"], "version": 0}]),
             f"name      {k['name']} (a label; the kernel is its id, {k['kernel_id'][:12]} for short)",
             f"index     range({k['index']})",
             f"output    {k['output']['dtype']} ({shape}), merged by {k['merge']}",
             f"compare   {' '.join(map(str, k['compare'])) if isinstance(k['compare'], list) else k['compare']}"
             + (", among workers of one platform class" if k["platform"] == "same" else ""),
             f"work      {' x '.join(map(str, k['work']))}",
             *(f"input     {i['name']}: {i['dtype']}, {i['ndim']} axes, part {i['part']}" for i in k["inputs"]),
             f"compile   {k['compile_seconds']:.2f} s"]
    sample = k["sample"]
    if sample is None:
        lines.append("sample    not run: the kernel reads input arrays")
    else:
        t = sample["params"]
        lines.append(f"sample    [{t['start']}, {t['end']}) with "
                     + ", ".join(f"{p['name']}={t[p['name']]}" for p in k["params"])
                     + f": {sample['dtype']}{sample['shape']} {sample['output']}"
                     + ("" if sample["verify"] is None else f", verify says {sample['verify']}"))
        per = sample["seconds_per_work"]
        lo, hi = sample["measured_on"]
        lines.append(f"cost      {per:.3g} s per unit of WORK on this machine ({sample['work']} units of [{lo}, {hi})"
                     f" in {sample['seconds'] * 1e3:.3g} ms)" if per is not None else "cost      - (WORK is 0)")
    lines.append("publish   yes" if k["publishable"] else f"publish   not yet: {k['why_not_publishable']}")
    return "\n".join(lines)
