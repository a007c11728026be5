"""The Kernel a spec makes (depin.userkernel.spec.to_kernel): validation, lazy splitting with the limits of
docs/KERNELS.md 1, output shapes, work, merging, comparison; and that it never runs the file's code."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from depin.errors import PeerProtocolError, StateError, UserError
from depin.kernels import mandelbrot
from depin.kernels._ranges import nth_range
from depin.kernels.base import Param, Pieces, Tolerance, exact_compare
from depin.userkernel.check import check
from depin.userkernel.spec import (
    MAX_JOB_WORK,
    MAX_TASK_OUTPUT,
    Input,
    Spec,
    merge,
    publishable,
    sample_task,
    to_kernel,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "builtin"
KID = hashlib.sha256(b"a kernel id").hexdigest()


def grid(**change: object) -> Spec:
    """A spec like examples/builtin/mandelbrot.py's, without reading a file."""
    base = Spec(
        name="grid", doc="rows of a grid",
        params=(Param("width", int, 1, 4096, "w"), Param("height", int, 1, 4096, "h"),
                Param("x", float, -1.0, 1.0, "x", 0.5), Param("iters", int, 0, 10**6, "i", 8)),
        index="height", output=("uint32", ("rows", "width")), merge="concatenate", compare="exact",
        work=("rows", "width", "iters"))
    return dataclasses.replace(base, **change)  # type: ignore[arg-type]


def test_the_kernel_is_named_by_its_id_at_version_0_and_says_what_the_spec_says() -> None:
    k = to_kernel(grid(), KID)
    assert (k.name, k.version, k.key, k.doc, k.schema) == (KID, 0, f"{KID}@0", "rows of a grid", grid().params)
    assert k.exact and k.compare is exact_compare and not k.homogeneous and k.verify is None
    tol = to_kernel(grid(compare=Tolerance(0.0, 1e-9), platform="same"), KID)
    assert not tol.exact and tol.compare == Tolerance(0.0, 1e-9) and tol.homogeneous


def test_run_and_warmup_refuse_rather_than_run_user_code() -> None:
    k = to_kernel(grid(), KID)
    with pytest.raises(StateError, match="runs only in a worker's sandbox"):
        k.run({"width": 1, "height": 1, "x": 0.0, "iters": 1, "start": 0, "end": 1})
    with pytest.raises(StateError, match=KID[:12]):
        k.warmup()


def test_validate_fills_defaults_and_checks_bounds() -> None:
    k = to_kernel(grid(), KID)
    assert k.validate({"width": "3", "height": 2}) == {"width": 3, "height": 2, "x": 0.5, "iters": 8}
    with pytest.raises(UserError, match="outside"):
        k.validate({"width": 0, "height": 2})
    with pytest.raises(UserError, match="unknown parameter 'start'"):
        k.validate({"width": 1, "height": 2, "start": 0})


def test_split_is_lazy_and_follows_nth_range() -> None:
    k = to_kernel(grid(), KID)
    p = k.validate({"width": 10, "height": 1000})
    pieces = k.split(p, 7)
    assert isinstance(pieces, Pieces) and len(pieces) == 7
    assert [(t["start"], t["end"]) for t in pieces] == [nth_range(1000, 7, i) for i in range(7)]
    assert pieces[3] == dict(p, start=nth_range(1000, 7, 3)[0], end=nth_range(1000, 7, 3)[1])
    assert k.split(p, 1)[0]["end"] == 1000 and len(k.split(p, 1000)) == 1000


def test_split_refuses_too_many_tasks_and_outputs_over_4_mib() -> None:
    k = to_kernel(grid(), KID)
    with pytest.raises(UserError, match="--tasks must be between 1 and 5"):
        k.split(k.validate({"width": 1, "height": 5}), 6)
    with pytest.raises(UserError, match="--tasks must be between 1"):
        k.split(k.validate({"width": 1, "height": 5}), 0)
    wide = k.validate({"width": 4096, "height": 4096})  # 16 KiB a row: at most 256 rows a task
    with pytest.raises(UserError, match="a task of 512 rows exceeds 256; use --tasks 16 or more"):
        k.split(wide, 8)
    assert len(k.split(wide, 16)) == 16
    fixed = to_kernel(grid(output=("float64", ("width", "width")), merge="sum"), KID)
    with pytest.raises(UserError, match=f"a task's output of {8 * 1024 * 1024} bytes exceeds {MAX_TASK_OUTPUT}"):
        fixed.split(fixed.validate({"width": 1024, "height": 4}), 4)
    assert len(fixed.split(fixed.validate({"width": 724, "height": 4}), 4)) == 4
    huge_row = to_kernel(grid(output=("uint64", ("rows", "width", "width"))), KID)
    with pytest.raises(UserError, match="one row of output is"):
        huge_row.split(huge_row.validate({"width": 1024, "height": 4}), 4)


def test_split_holds_the_jobs_work_to_the_limit_summed_exactly_over_its_tasks() -> None:
    square = to_kernel(grid(work=("rows", "rows", "iters")), KID)  # per task rows^2 * iters: not linear in n
    p = square.validate({"width": 1, "height": 1000, "iters": 7})
    for n_tasks in (1, 3, 7, 1000):
        pieces = square.split(p, n_tasks)
        exact = sum(square.work(t) for t in pieces)
        assert exact == sum((b - a) ** 2 * 7 for a, b in (nth_range(1000, n_tasks, i) for i in range(n_tasks)))
    limit = to_kernel(grid(work=("rows", "width", "iters"), params=grid().params[:3] + (
        Param("iters", int, 0, 10**12, "i", 8),)), KID)
    over = limit.validate({"width": 4096, "height": 4096, "iters": MAX_JOB_WORK // (4096 * 4096) + 1})
    with pytest.raises(UserError, match="over the limit of 10000000000000"):
        limit.split(over, 4096)
    at = limit.validate({"width": 4096, "height": 4096, "iters": MAX_JOB_WORK // (4096 * 4096)})
    assert len(limit.split(at, 4096)) == 4096


def test_validate_task_is_strict_and_keeps_the_range_inside_the_index_space() -> None:
    k = to_kernel(grid(), KID)
    t = {"width": 3, "height": 10, "x": 0.5, "iters": 8, "start": 2, "end": 5}
    assert k.validate_task(t) == t
    for bad, says in [({"start": 5}, "start < end"), ({"end": 11}, "end <= height"), ({"x": 1}, "must be present"),
                      ({"start": -1}, "outside"), ({"width": "3"}, "must be present as int")]:
        with pytest.raises(UserError, match=says):
            k.validate_task(dict(t, **bad))
    with pytest.raises(UserError, match="must be present"):
        k.validate_task({k: v for k, v in t.items() if k != "end"})
    with pytest.raises(UserError, match="exceeds"):
        k.validate_task(dict(t, width=4096, height=4096, start=0, end=257))


def test_output_spec_and_work_of_a_task() -> None:
    k = to_kernel(grid(), KID)
    t = {"width": 3, "height": 10, "x": 0.5, "iters": 8, "start": 2, "end": 5}
    assert k.output_spec(t) == ("uint32", (3, 3)) and k.work(t) == 3 * 3 * 8
    assert k.work({"width": 3, "height": 10, "x": 0.5, "iters": 8}) == 10 * 3 * 8  # a job: rows = n
    k.check_output(t, np.zeros((3, 3), dtype=np.uint32))
    with pytest.raises(PeerProtocolError):
        k.check_output(t, np.zeros((3, 3), dtype=np.int32))


def test_merge_concatenates_rows_and_checks_them() -> None:
    s = grid()
    p = {"width": 2, "height": 5, "x": 0.5, "iters": 8}
    parts = [np.full((2, 2), 1, np.uint32), np.full((3, 2), 2, np.uint32)]
    assert merge(s, p, parts).tolist() == [[1, 1], [1, 1], [2, 2], [2, 2], [2, 2]]
    for bad in ([parts[0]], [parts[0], parts[1][:, :1]], [parts[0], parts[1].astype(np.int64)], []):
        with pytest.raises(StateError):
            merge(s, p, bad)


def test_merge_stacks_and_reduces_in_task_order_in_the_outputs_dtype() -> None:
    p = {"width": 2, "height": 3, "x": 0.5, "iters": 8}
    outs = [np.array([250, 1], np.uint8), np.array([10, 2], np.uint8), np.array([0, 3], np.uint8)]
    assert merge(grid(output=("uint8", (2,)), merge="stack"), p, outs).tolist() == [[250, 1], [10, 2], [0, 3]]
    summed = merge(grid(output=("uint8", (2,)), merge="sum"), p, outs)
    assert summed.dtype == np.uint8 and summed.tolist() == [(250 + 10) % 256, 6]  # integers wrap, as numpy's do
    assert merge(grid(output=("uint8", ("width",)), merge="min"), p, outs).tolist() == [0, 1]
    assert merge(grid(output=("uint8", ("width",)), merge="max"), p, outs).tolist() == [250, 3]
    floats = [np.array([1e16]), np.array([1.0]), np.array([-1e16])]
    assert merge(grid(output=("float64", (1,)), merge="sum"), p, floats).tolist() == [(1e16 + 1.0) - 1e16]
    assert outs[0].tolist() == [250, 1]  # the outputs themselves are left alone
    with pytest.raises(StateError):
        merge(grid(output=("uint8", (2,)), merge="sum"), p, [outs[0], np.zeros(3, np.uint8)])


def test_merge_of_the_mandelbrot_file_equals_the_built_ins() -> None:
    s = check((EXAMPLES / "mandelbrot.py").read_text())
    p = {"width": 5, "height": 9, "x_min": -2.0, "x_max": 1.0, "y_min": -1.0, "y_max": 1.0, "max_iter": 9}
    outs = [np.arange(2 * 5 * i, 2 * 5 * (i + 1), dtype=np.uint32).reshape(2, 5) for i in range(4)]
    outs.append(np.ones((1, 5), np.uint32))
    assert np.array_equal(merge(s, p, outs), mandelbrot.merge(p, outs))


def test_inputs_and_verify_are_not_served_to_the_coordinator_yet() -> None:
    with pytest.raises(UserError, match="INPUTS are not served yet"):
        to_kernel(grid(inputs=(Input("w", "float64", 1, "all"),)), KID)
    with pytest.raises(UserError, match="COMPARE = \"verify\" is not served yet"):
        to_kernel(grid(compare="verify", has_verify=True), KID)
    publishable(grid())


def test_the_sample_task_takes_sample_then_defaults_then_minimums() -> None:
    assert sample_task(grid()) == {"width": 1, "height": 1, "x": 0.5, "iters": 8, "start": 0, "end": 1}
    assert sample_task(grid(sample={"height": 100, "x": -1.0})) == {
        "width": 1, "height": 100, "x": -1.0, "iters": 8, "start": 0, "end": 4}

