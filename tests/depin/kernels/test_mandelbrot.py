"""The mandelbrot@1 kernel: parameter checks, splitting, merging, and bit-exact agreement with the references."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from depin import codec, kernels
from depin.errors import PeerProtocolError, StateError, UserError
from depin.kernels import mandelbrot, output_digest
from tests.reference import cref
from tests.spec_examples import SPEC

DATA = Path(__file__).resolve().parents[2] / "data"
KNOWN: dict[str, Any] = json.loads((DATA / "mandelbrot_24x16.json").read_text())

BASE = {"width": 8, "height": 6}
DEFAULTS = {"x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2, "max_iter": 256}

# Small images over different parts of the plane: (name, params). All cheap in plain Python.
REGIONS = [
    ("whole-set", {"width": 24, "height": 16, "x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2,
                   "max_iter": 64}),
    ("seahorse-valley", {"width": 17, "height": 13, "x_min": -0.76, "x_max": -0.73, "y_min": 0.09, "y_max": 0.12,
                         "max_iter": 400}),
    ("deep-zoom", {"width": 12, "height": 9,
                   "x_min": -0.743643887037151 - 2e-11, "x_max": -0.743643887037151 + 2e-11,
                   "y_min": 0.131825904205330 - 1.5e-11, "y_max": 0.131825904205330 + 1.5e-11, "max_iter": 3000}),
    ("subnormal-pixels", {"width": 5, "height": 4, "x_min": -5e-310, "x_max": 5e-310, "y_min": 0.0,
                          "y_max": 4e-310, "max_iter": 50}),
    ("max-iter-1", {"width": 9, "height": 7, "x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2,
                    "max_iter": 1}),
    ("max-iter-2", {"width": 9, "height": 7, "x_min": -3.0, "x_max": 3.0, "y_min": -3.0, "y_max": 3.0,
                    "max_iter": 2}),
    ("far-outside", {"width": 6, "height": 5, "x_min": 100.0, "x_max": 200.0, "y_min": -50.0, "y_max": 50.0,
                     "max_iter": 1000}),
    ("inside-only", {"width": 6, "height": 5, "x_min": -0.2, "x_max": 0.1, "y_min": -0.1, "y_max": 0.1,
                     "max_iter": 500}),
    ("asymmetric", {"width": 11, "height": 3, "x_min": -1.9, "x_max": 0.47, "y_min": -0.03, "y_max": 1.1,
                    "max_iter": 97}),
    # Chaotic at the last bit: moving the division in the y formula by one rounding changes 9 of these pixels.
    ("real-axis-1e-13", {"width": 9, "height": 7, "x_min": -1.7497591451303665, "x_max": -1.7497591451302665,
                         "y_min": -1e-13, "y_max": 1e-13, "max_iter": 3000}),
]
# Bigger images for the fast C reference only. Each has pixels whose count changes if the x (wide) or y
# (seahorse) coordinate formula is rounded differently, so they pin the exact formula of PROTOCOL.md.
C_REGIONS = REGIONS + [
    ("wide-5000", {"width": 200, "height": 150, "x_min": -2.0, "x_max": 0.5, "y_min": -1.25, "y_max": 1.25,
                   "max_iter": 5000}),
    ("seahorse-64x48", {"width": 64, "height": 48, "x_min": -0.8, "x_max": -0.7, "y_min": 0.05, "y_max": 0.15,
                        "max_iter": 2000}),
]


def _task(p: dict[str, Any], start: int = 0, end: int | None = None) -> dict[str, Any]:
    checked = mandelbrot.validate(p)
    return dict(checked, row_start=start, row_end=checked["height"] if end is None else end)


def _python_ref(p: dict[str, Any], start: int = 0, end: int | None = None) -> np.ndarray:
    return cref.python_reference(p["width"], p["height"], p["x_min"], p["x_max"], p["y_min"], p["y_max"],
                                 p["max_iter"], start, end)


# ---- registry ------------------------------------------------------------------------------------------------


def test_registry() -> None:
    k = kernels.get("mandelbrot")
    assert k is mandelbrot.KERNEL
    assert (k.name, k.version, k.key, k.exact) == ("mandelbrot", 1, "mandelbrot@1", True)
    assert kernels.get("mandelbrot", 1) is k
    assert [x.key for x in kernels.all_kernels()] == ["mandelbrot@1", "montecarlo@1", "nonce@1"]


def test_registry_unknown_name_or_version() -> None:
    with pytest.raises(UserError, match="unknown kernel 'mandelbrott'; available: mandelbrot, montecarlo, nonce, or"
                                        " the id of a published kernel \\(depin kernels\\)$"):
        kernels.get("mandelbrott")
    with pytest.raises(UserError, match="kernel mandelbrot version 2 is not supported \\(have 1\\)"):
        kernels.get("mandelbrot", 2)


# ---- validate --------------------------------------------------------------------------------------------------


def test_validate_fills_defaults() -> None:
    assert mandelbrot.validate(BASE) == {**BASE, **DEFAULTS}


def test_validate_parses_cli_strings() -> None:
    p = mandelbrot.validate({"width": "640", "height": "480", "x_min": "-0.5", "max_iter": "1000"})
    assert p == {**DEFAULTS, "width": 640, "height": 480, "x_min": -0.5, "max_iter": 1000}
    assert type(p["x_min"]) is float and type(p["width"]) is int


def test_validate_int_given_for_a_float_becomes_float() -> None:
    p = mandelbrot.validate({**BASE, "x_min": -1, "x_max": 1})
    assert (p["x_min"], p["x_max"]) == (-1.0, 1.0)
    assert type(p["x_min"]) is float


def test_validate_accepts_the_bounds() -> None:
    mandelbrot.validate({"width": 1, "height": 1, "max_iter": 1})
    mandelbrot.validate({"width": 4096, "height": 1, "max_iter": 1_000_000,
                         "x_min": -1e6, "x_max": 1e6, "y_min": -1e6, "y_max": 1e6})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({**BASE, "depth": 3}, "unknown parameter 'depth'; expected one of: width, height, x_min"),
        ({**BASE, "Width": 3}, "unknown parameter 'Width'"),
        ({"height": 6}, r"missing parameter width \(image width in pixels\)"),
        ({"width": 8}, r"missing parameter height \(image height in pixels\)"),
        ({**BASE, "width": "wide"}, "parameter width: 'wide' is not an integer"),
        ({**BASE, "width": "8.0"}, "parameter width: '8.0' is not an integer"),
        ({**BASE, "width": 8.0}, "parameter width: must be int, got float"),
        ({**BASE, "width": True}, "parameter width: must be int, got a boolean"),
        ({**BASE, "width": None}, "parameter width: must be int, got NoneType"),
        ({**BASE, "x_min": "left"}, "parameter x_min: 'left' is not a number"),
        ({**BASE, "x_min": [1.0]}, "parameter x_min: must be float, got list"),
        ({**BASE, "x_min": False}, "parameter x_min: must be float, got a boolean"),
        ({**BASE, "x_min": float("nan")}, "parameter x_min: must be finite"),
        ({**BASE, "y_max": float("inf")}, "parameter y_max: must be finite"),
        ({**BASE, "y_min": "-inf"}, "parameter y_min: must be finite"),
        ({**BASE, "x_max": "nan"}, "parameter x_max: must be finite"),
        ({**BASE, "width": 0}, r"parameter width: 0 is outside \[1, 4096\]"),
        ({**BASE, "width": 4097}, r"parameter width: 4097 is outside \[1, 4096\]"),
        ({**BASE, "height": -1}, r"parameter height: -1 is outside \[1, 4096\]"),
        ({**BASE, "max_iter": 0}, r"parameter max_iter: 0 is outside \[1, 1000000\]"),
        ({**BASE, "max_iter": 1_000_001}, r"parameter max_iter: 1000001 is outside \[1, 1000000\]"),
        ({**BASE, "x_min": -2e6}, r"parameter x_min: -2000000.0 is outside \[-1000000.0, 1000000.0\]"),
        ({**BASE, "y_max": 1e6 + 1}, r"parameter y_max: 1000001.0 is outside"),
        ({**BASE, "x_min": 1.0, "x_max": 1.0}, "parameter x_min must be less than x_max"),
        ({**BASE, "x_min": 2.0, "x_max": 1.0}, "parameter x_min must be less than x_max"),
        ({**BASE, "y_min": 0.5, "y_max": 0.5}, "parameter y_min must be less than y_max"),
        ({**BASE, "y_min": 1.0, "y_max": -1.0}, "parameter y_min must be less than y_max"),
        ({"width": 4096, "height": 4096, "max_iter": 6000},
         "width\\*height\\*max_iter = 100663296000 exceeds the per-job limit of 100000000000"),
        ({"width": 1000, "height": 1000, "max_iter": 100_001},
         "width\\*height\\*max_iter = 100001000000 exceeds the per-job limit of 100000000000"),
    ],
)
def test_validate_refuses(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        mandelbrot.validate(raw)


def test_validate_work_limit_is_inclusive() -> None:
    p = mandelbrot.validate({"width": 1000, "height": 1000, "max_iter": 100_000})
    assert mandelbrot.work(p) == mandelbrot.MAX_WORK


def test_validate_largest_image_is_allowed() -> None:
    p = mandelbrot.validate({"width": 4096, "height": 4096, "max_iter": 100})
    assert (p["width"], p["height"]) == (4096, 4096)


def test_validate_task() -> None:
    vt = mandelbrot.KERNEL.validate_task
    full = {**BASE, **DEFAULTS}
    assert vt({**full, "row_start": 2, "row_end": 6}) == {**full, "row_start": 2, "row_end": 6}
    with pytest.raises(UserError, match="task rows must satisfy 0 <= row_start < row_end <= height"):
        vt({**full, "row_start": 3, "row_end": 3})
    with pytest.raises(UserError, match="task rows must satisfy"):
        vt({**full, "row_start": 0, "row_end": 7})
    with pytest.raises(UserError, match="parameter x_min must be less than x_max"):
        vt({**full, "x_min": 1.0, "row_start": 0, "row_end": 1})


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"row_end": None}, "row_end"),  # missing: a task never gets defaults filled in
        ({"x_min": None}, "x_min"),
        ({"width": "8"}, "width"),  # strings are for the CLI, not for tasks
        ({"x_min": -2}, "x_min"),  # a float parameter must arrive as a float
        ({"max_iter": 256.0}, "max_iter"),
        ({"height": True}, "height"),
    ],
)
def test_validate_task_is_strict(change: dict[str, object], name: str) -> None:
    raw = {**BASE, **DEFAULTS, "row_start": 0, "row_end": 6}
    for key, value in change.items():
        if value is None:
            del raw[key]
        else:
            raw[key] = value
    with pytest.raises(UserError, match=f"task parameter {name}: must be present as"):
        mandelbrot.KERNEL.validate_task(raw)


# ---- split and merge ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "n"), [(6, 1), (6, 2), (6, 4), (6, 6), (7, 3), (100, 7), (4096, 16), (13, 5)])
def test_split_bands_cover_every_row_once(height: int, n: int) -> None:
    p = mandelbrot.validate({"width": 8, "height": height})
    tasks = mandelbrot.split(p, n)
    assert len(tasks) == n
    assert tasks[0]["row_start"] == 0 and tasks[-1]["row_end"] == height
    for a, b in zip(tasks, tasks[1:], strict=False):
        assert a["row_end"] == b["row_start"]
    sizes = [t["row_end"] - t["row_start"] for t in tasks]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    for t in tasks:
        assert {k: t[k] for k in p} == p
        assert mandelbrot.KERNEL.validate_task(t) == t


def test_split_exact_bands() -> None:
    p = mandelbrot.validate({"width": 8, "height": 7})
    assert [(t["row_start"], t["row_end"]) for t in mandelbrot.split(p, 3)] == [(0, 2), (2, 4), (4, 7)]


@pytest.mark.parametrize(("height", "n", "limit"), [(6, 0, 6), (6, 7, 6), (6, -1, 6), (4000, 4001, 4000)])
def test_split_task_count_bounds(height: int, n: int, limit: int) -> None:
    p = mandelbrot.validate({"width": 8, "height": height})
    with pytest.raises(UserError, match=rf"--tasks must be between 1 and {limit} \(the image height\)"):
        mandelbrot.split(p, n)


def test_split_per_task_pixel_limit() -> None:
    p = mandelbrot.validate({"width": 4096, "height": 4096, "max_iter": 10})
    with pytest.raises(UserError, match="a task of 1122304 pixels exceeds 1048576; use --tasks 16 or more"):
        mandelbrot.split(p, 15)
    tasks = mandelbrot.split(p, 16)
    assert max(mandelbrot.work({**t, "max_iter": 1}) for t in tasks) == mandelbrot.MAX_TASK_PIXELS


def test_split_suggestion_is_enough() -> None:
    p = mandelbrot.validate({"width": 3000, "height": 699, "max_iter": 10})
    with pytest.raises(UserError, match=r"use --tasks (\d+) or more") as info:
        mandelbrot.split(p, 1)
    found = re.search(r"use --tasks (\d+) or more", str(info.value))
    assert found is not None
    suggested = int(found.group(1))
    mandelbrot.split(p, suggested)  # the advice must work: currently "use --tasks 2", and 2 still fails


def test_output_spec_and_work() -> None:
    t = _task({"width": 8, "height": 6, "max_iter": 50}, 2, 5)
    assert mandelbrot.output_spec(t) == ("uint32", (3, 8))
    assert mandelbrot.work(t) == 3 * 8 * 50
    assert mandelbrot.work(mandelbrot.validate({"width": 8, "height": 6, "max_iter": 50})) == 6 * 8 * 50


def test_check_output() -> None:
    t = _task({"width": 8, "height": 6}, 2, 5)
    mandelbrot.KERNEL.check_output(t, np.zeros((3, 8), dtype=np.uint32))
    with pytest.raises(PeerProtocolError, match=r"output must be uint32\[3, 8\], got uint32\[8, 3\]"):
        mandelbrot.KERNEL.check_output(t, np.zeros((8, 3), dtype=np.uint32))
    with pytest.raises(PeerProtocolError, match=r"output must be uint32\[3, 8\], got int32\[3, 8\]"):
        mandelbrot.KERNEL.check_output(t, np.zeros((3, 8), dtype=np.int32))
    with pytest.raises(PeerProtocolError, match=r"output must be uint32\[3, 8\], got uint32\[24\]"):
        mandelbrot.KERNEL.check_output(t, np.zeros(24, dtype=np.uint32))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16])
def test_merged_bands_equal_the_whole_image_bit_for_bit(n: int) -> None:
    p = mandelbrot.validate({"width": 21, "height": 16, "x_min": -1.5, "x_max": 0.5, "y_min": -1.0, "y_max": 1.0,
                             "max_iter": 120})
    whole = mandelbrot.run(_task(p))
    bands = [mandelbrot.run(t) for t in mandelbrot.split(p, n)]
    merged = mandelbrot.merge(p, bands)
    assert merged.dtype == np.uint32 and merged.shape == (16, 21)
    assert merged.tobytes() == whole.tobytes()
    assert output_digest(merged) == output_digest(whole)


def test_merge_refuses_bands_that_do_not_make_the_image() -> None:
    p = mandelbrot.validate({"width": 4, "height": 6})
    with pytest.raises(StateError, match=r"merged bands have shape \(5, 4\), expected \(6, 4\)"):
        mandelbrot.merge(p, [np.zeros((3, 4), np.uint32), np.zeros((2, 4), np.uint32)])


# ---- run vs the references ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "params"), REGIONS, ids=[r[0] for r in REGIONS])
def test_run_matches_the_python_reference(name: str, params: dict[str, Any]) -> None:
    out = mandelbrot.run(_task(params))
    assert out.dtype == np.uint32 and out.shape == (params["height"], params["width"])
    assert out.flags.c_contiguous
    ref = _python_ref(params)
    assert np.array_equal(out, ref), name


def test_regions_are_not_trivial() -> None:
    # Guard the table above: the zooms must actually exercise both escaping and non-escaping pixels.
    deep = mandelbrot.run(_task(dict(REGIONS)["deep-zoom"]))
    assert len(np.unique(deep)) >= 3 and deep.max() == 3000 and deep.min() < 3000
    sea = mandelbrot.run(_task(dict(REGIONS)["seahorse-valley"]))
    assert len(np.unique(sea)) >= 20


@pytest.mark.parametrize(("start", "end"), [(0, 1), (3, 9), (15, 16)])
def test_run_band_matches_the_python_reference(start: int, end: int) -> None:
    params = dict(REGIONS)["whole-set"]
    out = mandelbrot.run(_task(params, start, end))
    assert out.shape == (end - start, 24)
    assert np.array_equal(out, _python_ref(params, start, end))


def test_max_iter_edge_cases() -> None:
    ones = mandelbrot.run(_task(dict(REGIONS)["max-iter-1"]))
    assert (ones == 1).all()  # |0|^2 <= 4 always holds, so exactly one step is taken
    far = mandelbrot.run(_task(dict(REGIONS)["far-outside"]))
    assert (far == 1).all()  # z1 = c is already outside the circle
    inside = mandelbrot.run(_task(dict(REGIONS)["inside-only"]))
    assert (inside == 500).all()  # every pixel runs to the limit
    two = mandelbrot.run(_task(dict(REGIONS)["max-iter-2"]))
    assert set(np.unique(two).tolist()) == {1, 2}


def test_run_is_deterministic() -> None:
    t = _task(dict(REGIONS)["seahorse-valley"])
    assert mandelbrot.run(t).tobytes() == mandelbrot.run(dict(t)).tobytes()


@pytest.fixture(scope="module")
def c_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: the independent C reference cannot be built")
    return cref.build(tmp_path_factory.mktemp("cref"))


@pytest.mark.parametrize(("name", "params"), C_REGIONS, ids=[r[0] for r in C_REGIONS])
def test_run_matches_the_c_reference(c_binary: Path, name: str, params: dict[str, Any]) -> None:
    out = mandelbrot.run(_task(params))
    ref = cref.run(c_binary, **params)
    assert np.array_equal(out, ref), name


def test_band_matches_the_c_reference(c_binary: Path) -> None:
    params = {"width": 64, "height": 48, "x_min": -0.8, "x_max": -0.7, "y_min": 0.05, "y_max": 0.15,
              "max_iter": 2000}
    out = mandelbrot.run(_task(params, 10, 30))
    assert np.array_equal(out, cref.run(c_binary, **params, row_start=10, row_end=30))


def test_band_in_chunks_matches_the_c_reference(c_binary: Path) -> None:
    # Chunks that start and end mid-row, as a paused and resumed band is computed.
    params = dict(C_REGIONS)["seahorse-64x48"]
    t = _task(params, 10, 30)
    state = mandelbrot.start(t)
    for a, b in [(0, 1), (1, 63), (63, 64), (64, 200), (200, 1000), (1000, 1280)]:
        state = mandelbrot.advance(t, a, b, state)
    assert np.array_equal(state, cref.run(c_binary, **params, row_start=10, row_end=30))


# ---- known answer ---------------------------------------------------------------------------------------------


def test_known_image() -> None:
    out = mandelbrot.run(_task(KNOWN["params"]))
    assert out.dtype.name == KNOWN["dtype"] and list(out.shape) == KNOWN["shape"]
    assert out.tolist() == KNOWN["rows"]


def test_known_digest() -> None:
    out = mandelbrot.run(_task(KNOWN["params"]))
    assert output_digest(out).hex() == KNOWN["digest_hex"]


def test_known_digest_by_an_independent_encoding() -> None:
    # {"data": bin32?, "dtype": "uint32", "shape": [16, 24]} with keys in byte order, spelled out by hand.
    data = np.array(KNOWN["rows"], dtype="<u4").tobytes()
    assert len(data) == 16 * 24 * 4 < 2**16
    wire = (
        b"\x83"
        + b"\xa4data" + b"\xc5" + struct.pack(">H", len(data)) + data
        + b"\xa5dtype" + b"\xa6uint32"
        + b"\xa5shape" + b"\x92\x10\x18"
    )
    assert hashlib.sha256(wire).hexdigest() == KNOWN["digest_hex"]
    assert codec.encode(codec.array_to_wire(np.array(KNOWN["rows"], dtype=np.uint32))) == wire


def test_protocol_md_result_example() -> None:
    # PROTOCOL.md 8.4/9.3: task 0 of {"width": 8, "height": 4, "max_iter": 32} split in 2.
    p = mandelbrot.validate(SPEC["task"]["params"])
    task0 = mandelbrot.split(p, SPEC["task"]["tasks"])[0]
    out = mandelbrot.run(task0)
    assert out.tolist() == SPEC["result"]["output"]
    assert output_digest(out).hex() == SPEC["result"]["digest_hex"]


def _spec_band() -> dict[str, Any]:
    ex = SPEC["known_band"]
    floats = {k: struct.unpack(">d", bytes.fromhex(v))[0] for k, v in ex["float_bits"].items()}
    return mandelbrot.validate_task({**ex["params"], **floats})


def test_protocol_md_known_image() -> None:
    ex = SPEC["known_image"]
    assert mandelbrot.run(_task(ex["params"])).tolist() == ex["image"]


def test_protocol_md_known_band() -> None:
    out = mandelbrot.run(_spec_band())
    assert out.shape == (43, 97)
    assert int(out.sum(dtype=np.uint64)) == SPEC["known_band"]["sum"]
    assert output_digest(out).hex() == SPEC["known_band"]["digest_hex"]


def test_protocol_md_known_band_in_c(c_binary: Path) -> None:
    # The spec says this band differs in 20 pixels when FMA contraction is allowed; the C build forbids it.
    t = _spec_band()
    ref = cref.run(c_binary, t["width"], t["height"], t["x_min"], t["x_max"], t["y_min"], t["y_max"], t["max_iter"],
                   t["row_start"], t["row_end"])
    assert output_digest(ref).hex() == SPEC["known_band"]["digest_hex"]


def test_digest_sees_every_pixel_and_the_shape() -> None:
    img = np.array(KNOWN["rows"], dtype=np.uint32)
    digest = output_digest(img)
    flipped = img.copy()
    flipped[15, 23] += 1
    assert output_digest(flipped) != digest
    assert output_digest(img.reshape(24, 16)) != digest
    assert output_digest(img.astype(np.int32)) != digest


# ---- PNG ---------------------------------------------------------------------------------------------------------


def test_render_png() -> None:
    p = mandelbrot.validate(KNOWN["params"])
    img = np.array(KNOWN["rows"], dtype=np.uint32)
    png = mandelbrot.KERNEL.render_png(p, img)  # type: ignore[misc]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(png)) as pic:
        pic.load()
        assert pic.format == "PNG" and pic.mode == "RGB" and pic.size == (24, 16)
        pixels = np.asarray(pic)
    assert pixels.shape == (16, 24, 3)
    inside = img >= p["max_iter"]
    assert inside.any() and (pixels[inside] == 0).all()  # the set itself is black
    assert (pixels[~inside].sum(axis=1) > 0).all()  # nothing outside it is
    assert tuple(pixels[0, 0]) != tuple(pixels[7, 5])  # different counts, different colours


def test_render_png_is_deterministic() -> None:
    p = mandelbrot.validate(KNOWN["params"])
    img = np.array(KNOWN["rows"], dtype=np.uint32)
    assert mandelbrot.render_png(p, img) == mandelbrot.render_png(p, img)
