"""Mandelbrot escape-time counts over a rectangle, bit for bit the built-in mandelbrot@1 as a kernel file.

Pixel (row r, column c) has x = x_min + (c + 0.5) * (x_max - x_min) / width and
y = y_max - (r + 0.5) * (y_max - y_min) / height in float64; its value is the number of iterations of
z <- z^2 + (x + iy), at most max_iter, while |z|^2 <= 4. Only +, -, * and / in a fixed order: exact everywhere.
A task is the rows [start, end) of the image. (The built-in also checks x_min < x_max, computes a band in
resumable chunks and renders a PNG, which a kernel file does not.)
"""

NAME = "mandelbrot"
PARAMS = {
    "width": (int, 1, 4096, "image width in pixels"),
    "height": (int, 1, 4096, "image height in pixels"),
    "x_min": (float, -1e6, 1e6, "left edge of the rectangle", -2.0),
    "x_max": (float, -1e6, 1e6, "right edge", 1.0),
    "y_min": (float, -1e6, 1e6, "bottom edge", -1.2),
    "y_max": (float, -1e6, 1e6, "top edge", 1.2),
    "max_iter": (int, 1, 1_000_000, "iteration limit per pixel", 256),
}
INDEX = "height"
OUTPUT = ("uint32", ("rows", "width"))
MERGE = "concatenate"
COMPARE = "exact"
WORK = ("rows", "width", "max_iter")
SAMPLE = {"width": 8, "height": 8, "max_iter": 64}


def escape(x, y, max_iter):
    zr = 0.0
    zi = 0.0
    n = 0
    while n < max_iter and zr * zr + zi * zi <= 4.0:
        t = zr * zr - zi * zi + x
        zi = 2.0 * zr * zi + y
        zr = t
        n += 1
    return n


def compute(start, end, width, height, x_min, x_max, y_min, y_max, max_iter, out):
    for r in range(start, end):
        y = y_max - (r + 0.5) * (y_max - y_min) / height
        for c in range(width):
            x = x_min + (c + 0.5) * (x_max - x_min) / width
            out[r - start, c] = escape(x, y, max_iter)
