"""Independent reference implementations of the depin mandelbrot kernel.

Used by tests to check the numba kernel bit-for-bit and by benchmarks as a
C baseline. Deliberately imports nothing from the depin package.

Float arguments cross the Python/C boundary as the 16 hex digits of their
IEEE-754 bit pattern, most significant first (``struct.pack('>d', v).hex()``,
i.e. the uint64 bits printed with ``%016x``; 1.0 -> ``3ff0000000000000``),
so no value is altered by a decimal round trip. The binary writes
little-endian uint32 values, row-major.
"""

from __future__ import annotations

import pathlib
import shutil
import struct
import subprocess
import tempfile

import numpy as np

SOURCE = pathlib.Path(__file__).with_name("mandelbrot_ref.c")
# Must match the comment at the top of mandelbrot_ref.c. -ffp-contract=off
# forbids FMA fusion, which would change rounding versus the spec.
CFLAGS = ["-O2", "-std=c99", "-ffp-contract=off", "-fno-fast-math"]


def _hex_bits(v: float) -> str:
    return struct.pack(">d", float(v)).hex()


def _row_range(height: int, row_start: int, row_end: int | None) -> tuple[int, int]:
    if row_end is None:
        row_end = height
    if not 0 <= row_start <= row_end <= height:
        raise ValueError(f"need 0 <= row_start <= row_end <= height, got "
                         f"{row_start}, {row_end}, {height}")
    return row_start, row_end


def build(tmpdir: pathlib.Path) -> pathlib.Path:
    """Compile mandelbrot_ref.c into tmpdir; return the binary's path."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc not found on PATH")
    binary = pathlib.Path(tmpdir) / "mandelbrot_ref"
    proc = subprocess.run([gcc, *CFLAGS, "-o", str(binary), str(SOURCE)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"gcc failed (exit {proc.returncode}):\n{proc.stderr}")
    return binary


def run(binary, width, height, x_min, x_max, y_min, y_max, max_iter,
        row_start=0, row_end=None) -> np.ndarray:
    """Run the C reference; return uint32 array of shape (rows, width)."""
    row_start, row_end = _row_range(height, row_start, row_end)
    with tempfile.TemporaryDirectory() as d:
        out = pathlib.Path(d) / "out.bin"
        args = [str(binary), str(int(width)), str(int(height)),
                _hex_bits(x_min), _hex_bits(x_max), _hex_bits(y_min), _hex_bits(y_max),
                str(int(max_iter)), str(int(row_start)), str(int(row_end)), str(out)]
        proc = subprocess.run(args, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"mandelbrot_ref failed (exit {proc.returncode}):\n"
                               f"{proc.stderr}")
        data = np.fromfile(out, dtype="<u4")
    rows = row_end - row_start
    if data.size != rows * width:
        raise RuntimeError(f"expected {rows * width} values, got {data.size}")
    return data.astype(np.uint32).reshape(rows, width)


def python_reference(width, height, x_min, x_max, y_min, y_max, max_iter,
                     row_start=0, row_end=None) -> np.ndarray:
    """Plain-Python transcription of the spec (slow; tiny images only).

    Python floats are IEEE-754 binary64 with no contraction, so this is
    bit-exact by construction; numpy is only used to hold the result.
    """
    row_start, row_end = _row_range(height, row_start, row_end)
    x_min, x_max, y_min, y_max = map(float, (x_min, x_max, y_min, y_max))
    out = np.zeros((row_end - row_start, width), dtype=np.uint32)
    for r in range(row_start, row_end):
        y = y_max - ((r + 0.5) * (y_max - y_min)) / height
        for c in range(width):
            x = x_min + ((c + 0.5) * (x_max - x_min)) / width
            zr = zi = 0.0
            n = 0
            while n < max_iter and zr * zr + zi * zi <= 4.0:
                zr, zi = zr * zr - zi * zi + x, 2.0 * zr * zi + y
                n += 1
            out[r - row_start, c] = n
    return out
