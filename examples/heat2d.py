"""2-D heat equation: `steps` explicit time steps of the 5-point stencil on a grid given as an input, in row bands.

One step maps u to u + alpha (u_up + u_down + u_left + u_right - 4 u) at every point, the values beyond the grid's
edges held at 0 (a cold frame); alpha = D dt / dx^2 (stable up to 1/4, when the step only averages). The grid is
the input u0 (height, width), read whole by every task; a task outputs rows [start, end) of the grid after `steps`
steps. It needs no other task: a row after s steps depends only on rows at most s away, so the task steps the
band [start - steps, end + steps) (clipped to the grid), whose rows beyond the band's own ends it does not know and
takes as 0: the error that makes creeps in one row a step, and never reaches rows [start, end). The price is the
overlap: a task computes (end - start + 2 steps) rows, which WORK (rows x width x steps) leaves out; keep bands
wide against steps.

Only +, - and * in a fixed order: every worker gets the same bits, so results are compared exactly. The
parameters repeat u0's shape, because the index space and the output's width are known before any input is seen;
a task whose u0 has another shape fails (`require`).
"""
import numpy as np

NAME = "heat-2d"
PARAMS = {
    "height": (int, 1, 1_000_000, "rows of the grid u0 (the index space: a task is a band of rows)"),
    "width": (int, 1, 1_000_000, "columns of the grid u0"),
    "alpha": (float, 0.0, 0.25, "D dt / dx^2 of one step (stable up to 1/4)", 0.2),
    "steps": (int, 1, 100_000, "time steps"),
}
INPUTS = {"u0": ("float64", 2, "all")}
INDEX = "height"
OUTPUT = ("float64", ("rows", "width"))
MERGE = "concatenate"
COMPARE = "exact"
WORK = ("rows", "width", "steps")


def require(ok):
    """Fail the task unless ok: a kernel has no raise, so this indexes past an array (an IndexError)."""
    flag = np.zeros(1, dtype=np.uint8)
    flag[0 if ok else 1] = 1


def stencil(a, b, alpha):
    """b = one step from a, with 0 beyond a's edges."""
    rows = a.shape[0]
    cols = a.shape[1]
    for r in range(rows):
        for c in range(cols):
            up = a[r - 1, c] if r > 0 else 0.0
            down = a[r + 1, c] if r < rows - 1 else 0.0
            left = a[r, c - 1] if c > 0 else 0.0
            right = a[r, c + 1] if c < cols - 1 else 0.0
            b[r, c] = a[r, c] + alpha * (up + down + left + right - 4.0 * a[r, c])


def compute(start, end, height, width, alpha, steps, u0, out):
    require(u0.shape[0] == height and u0.shape[1] == width)
    lo = max(start - steps, 0)
    hi = min(end + steps, height)
    a = np.zeros((hi - lo, width), dtype=np.float64)
    for r in range(hi - lo):
        for c in range(width):
            a[r, c] = u0[lo + r, c]
    b = np.zeros((hi - lo, width), dtype=np.float64)
    for step in range(steps):
        stencil(a, b, alpha)
        a, b = b, a
    for r in range(end - start):
        for c in range(width):
            out[r, c] = a[start - lo + r, c]
