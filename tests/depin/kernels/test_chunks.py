"""Kernel chunks (depin.kernels.base.Chunks): any split of a task into chunks gives the bits of `run`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from depin import kernels
from depin.errors import StateError
from depin.kernels import Chunks, Params, mandelbrot, montecarlo


def _chunked(chunks: Chunks, p: Params, cuts: list[int]) -> np.ndarray:
    """The state after advancing start(p) over [0, c1), [c1, c2), ..., [ck, units)."""
    edges = [0, *sorted(set(cuts)), chunks.units(p)]
    state = chunks.start(p)
    for a, b in zip(edges, edges[1:], strict=False):
        state = chunks.advance(p, a, b, state)
    return state


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@st.composite
def _mandelbrot_task(draw: st.DrawFn) -> Params:
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 24))
    x_min = draw(st.floats(-2.5, 0.9))
    y_min = draw(st.floats(-1.5, 1.4))
    job = mandelbrot.validate({
        "width": width, "height": height, "x_min": x_min, "x_max": x_min + draw(st.floats(1e-6, 3.0)),
        "y_min": y_min, "y_max": y_min + draw(st.floats(1e-6, 3.0)), "max_iter": draw(st.integers(1, 400))})
    row_start = draw(st.integers(0, height - 1))
    return mandelbrot.validate_task(dict(job, row_start=row_start, row_end=draw(st.integers(row_start + 1, height))))


@st.composite
def _montecarlo_task(draw: st.DrawFn) -> Params:
    samples = draw(st.integers(1, 10**10))
    start = draw(st.integers(0, samples - 1))
    end = draw(st.integers(start + 1, min(samples, start + 3000)))
    return montecarlo.validate_task({"func": draw(st.integers(0, 2)), "samples": samples,
                                     "seed": draw(st.integers(0, 2**63 - 1)), "sample_start": start,
                                     "sample_end": end})


TASKS = {"mandelbrot": _mandelbrot_task(), "montecarlo": _montecarlo_task()}


def test_the_chunked_kernels() -> None:
    # Each kernel with chunks has a strategy above; a kernel that gains chunks must be added there.
    assert sorted(k.name for k in kernels.all_kernels() if k.chunks is not None) == sorted(TASKS)
    assert kernels.get("nonce").chunks is None


@pytest.mark.parametrize("name", sorted(TASKS))
@given(data=st.data())
def test_any_split_gives_the_bits_of_run(name: str, data: st.DataObject) -> None:
    kernel = kernels.get(name)
    assert kernel.chunks is not None
    p = data.draw(TASKS[name], label="task")
    units = kernel.chunks.units(p)
    cuts = data.draw(st.lists(st.integers(1, units - 1), max_size=12) if units > 1 else st.just([]), label="cuts")
    whole = kernel.run(p)
    assert _same(_chunked(kernel.chunks, p, cuts), whole)
    assert _same(_chunked(kernel.chunks, p, list(range(1, units))), whole)  # one unit at a time
    kernel.check_output(p, whole)


@pytest.mark.parametrize("name", sorted(TASKS))
@given(data=st.data())
def test_the_kernel_own_chunks_give_the_bits_of_run(name: str, data: st.DataObject) -> None:
    kernel = kernels.get(name)
    assert kernel.chunks is not None
    p = data.draw(TASKS[name], label="task")
    cuts = [a for a, _ in kernel.chunks.bounds(p)][1:]
    assert _same(_chunked(kernel.chunks, p, cuts), kernel.run(p))


@pytest.mark.parametrize("name", sorted(TASKS))
@given(data=st.data())
def test_start_has_the_output_dtype_and_shape(name: str, data: st.DataObject) -> None:
    kernel = kernels.get(name)
    assert kernel.chunks is not None
    p = data.draw(TASKS[name], label="task")
    start = kernel.chunks.start(p)
    assert (start.dtype.name, start.shape) == kernel.output_spec(p)
    assert not start.any()


def test_a_chunk_never_touches_pixels_outside_its_range() -> None:
    t = mandelbrot.validate_task({"width": 7, "height": 5, "x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2,
                                  "max_iter": 50, "row_start": 1, "row_end": 4})
    whole = mandelbrot.run(t)
    state = mandelbrot.advance(t, 5, 16, mandelbrot.start(t))
    flat = state.reshape(-1)
    assert (flat[:5] == 0).all() and (flat[16:] == 0).all()
    assert np.array_equal(flat[5:16], whole.reshape(-1)[5:16])


# ---- chunk sizes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_iter", [1, 2, 255, 256, 4096, 1 << 24, 1_000_000])
def test_a_mandelbrot_chunk_is_at_most_the_chunk_work_or_one_pixel(max_iter: int) -> None:
    t = {"width": 4096, "height": 4096, "row_start": 0, "row_end": 256, "max_iter": max_iter}
    size = mandelbrot.chunk_size(t)
    assert size >= 1 and (size * max_iter <= mandelbrot.CHUNK_WORK or size == 1)
    assert size * max_iter > mandelbrot.CHUNK_WORK - max_iter  # and not needlessly small


def test_a_montecarlo_chunk_is_the_chunk_samples() -> None:
    t = {"sample_start": 0, "sample_end": montecarlo.MAX_TASK_SAMPLES}
    assert montecarlo.chunk_size(t) == montecarlo.CHUNK_SAMPLES
    assert len(montecarlo.KERNEL.chunks.bounds(t)) == 8  # type: ignore[union-attr]


# ---- Chunks.bounds ---------------------------------------------------------------------------------------------


def _fixed(units: int, size: int) -> Chunks:
    return Chunks(units=lambda p: units, size=lambda p: size, start=lambda p: np.zeros(1),
                  advance=lambda p, a, b, s: s)


@pytest.mark.parametrize(
    ("units", "size", "done", "expected"),
    [
        (10, 4, 0, [(0, 4), (4, 8), (8, 10)]),
        (10, 4, 4, [(4, 8), (8, 10)]),
        (10, 4, 5, [(5, 9), (9, 10)]),  # a position saved under other chunk sizes
        (10, 4, 10, []),
        (8, 4, 0, [(0, 4), (4, 8)]),
        (1, 1, 0, [(0, 1)]),
        (3, 100, 0, [(0, 3)]),
    ],
)
def test_bounds(units: int, size: int, done: int, expected: list[tuple[int, int]]) -> None:
    assert _fixed(units, size).bounds({}, done) == expected


@pytest.mark.parametrize(("units", "size", "done"), [(10, 4, -1), (10, 4, 11), (10, 0, 0)])
def test_bounds_refuses_a_position_outside_the_task(units: int, size: int, done: int) -> None:
    with pytest.raises(StateError, match=f"cannot resume at unit {done} of {units} in chunks of {size}"):
        _fixed(units, size).bounds({}, done)


def test_a_large_task_has_many_small_chunks() -> None:
    # The largest band of a job at the work limit (1000 x 1000 at 100,000 iterations, split in 16 tasks).
    job = mandelbrot.validate({"width": 1000, "height": 1000, "max_iter": 100_000})
    task: dict[str, Any] = mandelbrot.split(job, 16)[0]
    bounds = mandelbrot.KERNEL.chunks.bounds(task)  # type: ignore[union-attr]
    assert len(bounds) == -(-mandelbrot.units(task) // (mandelbrot.CHUNK_WORK // 100_000))
    assert all((b - a) * 100_000 <= mandelbrot.CHUNK_WORK for a, b in bounds)
