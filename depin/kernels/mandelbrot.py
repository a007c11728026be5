"""The mandelbrot kernel: escape-time counts over a rectangle, bit-identical everywhere.

Exact definition (also in docs/PROTOCOL.md, "Kernel mandelbrot@1"): pixel (row r, column c) has
x = x_min + (c + 0.5) * (x_max - x_min) / width and y = y_max - (r + 0.5) * (y_max - y_min) / height in float64,
and its value is the number of iterations of z <- z^2 + (x + iy), at most max_iter, while |z|^2 <= 4.
No fastmath and no FMA contraction, so every CPU computes the same bits. A task is a band of rows
[row_start, row_end) of the full image, computed with the full image's coordinates, so the merged bands
equal the whole-image computation exactly. For the same reason a band can be computed in chunks of pixels, row by
row from its top left, in any number of pieces (`Chunks`): a long band can be paused and resumed.
"""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np

from depin.errors import StateError, UserError
from depin.kernels._ranges import nth_range
from depin.kernels.base import Chunks, Kernel, Param, Params, Pieces, parse_params

MAX_TASK_PIXELS = 1 << 20  # 4 MiB of uint32 per result keeps every results request small
MAX_WORK = 10**11  # pixel-iterations per job (an upper bound: every pixel at max_iter)
CHUNK_WORK = 1 << 24  # pixel-iterations per chunk: at most ~0.1 s of one x86 core, well under a second on a Pi

SCHEMA = (
    Param("width", int, 1, 4096, "image width in pixels"),
    Param("height", int, 1, 4096, "image height in pixels"),
    Param("x_min", float, -1e6, 1e6, "left edge of the rectangle", -2.0),
    Param("x_max", float, -1e6, 1e6, "right edge", 1.0),
    Param("y_min", float, -1e6, 1e6, "bottom edge", -1.2),
    Param("y_max", float, -1e6, 1e6, "top edge", 1.2),
    Param("max_iter", int, 1, 1_000_000, "iteration limit per pixel", 256),
)
TASK_SCHEMA = SCHEMA + (
    Param("row_start", int, 0, 4095, "first row of the band"),
    Param("row_end", int, 1, 4096, "one past the last row of the band"),
)


def validate(raw: dict[str, Any]) -> Params:
    """Checked job parameters, or a UserError naming the first problem."""
    p = parse_params(SCHEMA, raw)
    if not p["x_min"] < p["x_max"]:
        raise UserError("parameter x_min must be less than x_max")
    if not p["y_min"] < p["y_max"]:
        raise UserError("parameter y_min must be less than y_max")
    if work(p) > MAX_WORK:
        raise UserError(f"width*height*max_iter = {work(p)} exceeds the per-job limit of {MAX_WORK}")
    return p


def validate_task(raw: dict[str, Any]) -> Params:
    """Checked task parameters (a band of a valid job)."""
    p = parse_params(TASK_SCHEMA, raw, strict=True)
    validate({k: p[k] for k in (s.name for s in SCHEMA)})
    if not 0 <= p["row_start"] < p["row_end"] <= p["height"]:
        raise UserError("task rows must satisfy 0 <= row_start < row_end <= height")
    return p


def split(p: Params, n_tasks: int) -> Pieces:
    """`n_tasks` horizontal bands, as even as integer division makes them."""
    height, width = p["height"], p["width"]
    if not 1 <= n_tasks <= height:
        raise UserError(f"--tasks must be between 1 and {height} (the image height)")
    biggest = -(-height // n_tasks) * width  # the bands have floor or ceil(height / n) rows
    if biggest > MAX_TASK_PIXELS:
        # The largest band has ceil(height / n) rows, so n must be at least ceil(height / rows_that_fit).
        need = -(-height // (MAX_TASK_PIXELS // width))
        raise UserError(f"a task of {biggest} pixels exceeds {MAX_TASK_PIXELS}; use --tasks {need} or more")

    def piece(i: int) -> Params:
        start, end = nth_range(height, n_tasks, i)
        return dict(p, row_start=start, row_end=end)
    return Pieces(n_tasks, piece)


def output_spec(t: Params) -> tuple[str, tuple[int, ...]]:
    """A band's output: uint32, (rows, width)."""
    return "uint32", (t["row_end"] - t["row_start"], t["width"])


def work(p: Params) -> int:
    """Pixel-iterations if every pixel ran to max_iter."""
    rows = p.get("row_end", p["height"]) - p.get("row_start", 0)
    return int(rows * p["width"] * p["max_iter"])


def merge(p: Params, outputs: list[np.ndarray]) -> np.ndarray:
    """Stack the bands top to bottom."""
    image = np.concatenate(outputs, axis=0)
    if image.shape != (p["height"], p["width"]):
        raise StateError(f"merged bands have shape {image.shape}, expected {(p['height'], p['width'])}")
    return image


@functools.cache
def _compiled() -> Any:
    # numba is imported here, not at module load: the coordinator and the CLI never pay for it.
    import numba

    @numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
    def pixels(width, height, x_min, x_max, y_min, y_max, max_iter, row_start, first, last, out):  # type: ignore[no-untyped-def]
        # Pixels [first, last) of the band, counted row by row from its top left, into out[rows, width]: a row
        # at a time, so y is computed once per row, as in the whole-band loop this replaced.
        i = first
        while i < last:
            band_row = i // width
            c_first = i - band_row * width
            c_last = min(width, c_first + last - i)
            y = y_max - (row_start + band_row + 0.5) * (y_max - y_min) / height
            for c in range(c_first, c_last):
                x = x_min + (c + 0.5) * (x_max - x_min) / width
                zr = 0.0
                zi = 0.0
                n = 0
                while n < max_iter and zr * zr + zi * zi <= 4.0:
                    t = zr * zr - zi * zi + x
                    zi = 2.0 * zr * zi + y
                    zr = t
                    n += 1
                out[band_row, c] = n
            i += c_last - c_first
        return out

    return pixels


def units(t: Params) -> int:
    """A band's pixels: the units of its chunks, counted row by row from the top left."""
    return int((t["row_end"] - t["row_start"]) * t["width"])


def chunk_size(t: Params) -> int:
    """Pixels per chunk: at most CHUNK_WORK pixel-iterations, and at least one pixel."""
    return max(1, CHUNK_WORK // int(t["max_iter"]))


def start(t: Params) -> np.ndarray:
    """Before any pixel: a band of zeros."""
    return np.zeros((t["row_end"] - t["row_start"], t["width"]), dtype=np.uint32)


def advance(t: Params, first: int, last: int, state: np.ndarray) -> np.ndarray:
    """Compute pixels [first, last) of the band into `state`."""
    out: np.ndarray = _compiled()(
        int(t["width"]), int(t["height"]),
        float(t["x_min"]), float(t["x_max"]), float(t["y_min"]), float(t["y_max"]),
        int(t["max_iter"]), int(t["row_start"]), int(first), int(last), state,
    )
    return out


def run(t: Params) -> np.ndarray:
    """Compute one band: every pixel in one chunk."""
    return advance(t, 0, units(t), start(t))


def warmup() -> None:
    """Compile (or load from numba's cache) with the exact argument types `run` passes."""
    run({"width": 2, "height": 2, "x_min": -2.0, "x_max": 1.0, "y_min": -1.0, "y_max": 1.0,
         "max_iter": 4, "row_start": 0, "row_end": 2})


# Colour stops for render_png: deep blue through white to orange; points inside the set are black.
_STOPS = np.array([0.0, 0.16, 0.42, 0.6425, 0.8575, 1.0])
_COLOURS = np.array(
    [[0, 7, 100], [32, 107, 203], [237, 255, 255], [255, 170, 0], [0, 2, 0], [0, 7, 100]], dtype=np.float64
)


def render_png(p: Params, image: np.ndarray) -> bytes:
    """A PNG of the escape counts, coloured by sqrt(n / max_iter)."""
    from PIL import Image

    max_iter = p["max_iter"]
    t = np.sqrt(image.astype(np.float64) / max_iter)
    rgb = np.empty(image.shape + (3,), dtype=np.uint8)
    for ch in range(3):
        rgb[..., ch] = np.interp(t, _STOPS, _COLOURS[:, ch]).astype(np.uint8)
    rgb[image >= max_iter] = 0
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


KERNEL = Kernel(
    name="mandelbrot",
    version=1,
    doc="escape-time counts of the Mandelbrot set over a rectangle (uint32, exact)",
    schema=SCHEMA,
    validate=validate,
    validate_task=validate_task,
    split=split,
    run=run,
    output_spec=output_spec,
    merge=merge,
    work=work,
    warmup=warmup,
    exact=True,
    render_png=render_png,
    chunks=Chunks(units=units, size=chunk_size, start=start, advance=advance),
)
