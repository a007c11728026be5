"""Independent references for the example kernels, in numpy and closed forms (tests/examples/ holds the kernels to
them). Nothing here imports numba or depin: each function is written again from the kernel's docstring, vectorised
over the whole job, so a test compares two implementations, not one implementation with itself.

Two kinds of reference for each kernel:
* a numpy re-implementation doing the same IEEE 754 operations in the same order (equal bit for bit where the kernel
  claims COMPARE = "exact"), and
* a closed form of the mathematics (the SIR invariants, Black-Scholes, the heat equation's discrete eigenmodes) or
  a rounding-error bound (the MLP), which catches a kernel that faithfully computes the wrong thing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

Params = Mapping[str, Any]


def grid(lo: float, hi: float, count: int) -> np.ndarray:
    """`count` evenly spaced values lo + (hi - lo) * k / max(count - 1, 1), as the sweeps define them."""
    return lo + (hi - lo) * np.arange(count, dtype=np.float64) / max(count - 1, 1)


# ---- sir_sweep ------------------------------------------------------------------------------------------------

def sir_rates(p: Params) -> tuple[np.ndarray, np.ndarray]:
    """The sweep's beta (a column) and gamma (a row): their grid broadcasts to (betas, gammas)."""
    beta = grid(p["beta_min"], p["beta_max"], p["betas"])[:, None]
    gamma = grid(p["gamma_min"], p["gamma_max"], p["gammas"])[None, :]
    return beta, gamma


def sir_sweep(p: Params) -> np.ndarray:
    """The whole sweep by RK4, every grid point at once: (betas, gammas, 4) of [peak I, its day, final I, final R]."""
    beta, gamma = sir_rates(p)
    shape = (p["betas"], p["gammas"])
    h = 1.0 / p["steps_per_day"]
    s = np.full(shape, 1.0 - p["infected0"])
    i = np.full(shape, float(p["infected0"]))
    r = np.zeros(shape)
    peak, peak_step = i.copy(), np.zeros(shape)

    def rates(s: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        infections, recoveries = beta * s * i, gamma * i
        return -infections, infections - recoveries, recoveries

    for step in range(1, p["days"] * p["steps_per_day"] + 1):
        k1 = rates(s, i)
        k2 = rates(s + h / 2.0 * k1[0], i + h / 2.0 * k1[1])
        k3 = rates(s + h / 2.0 * k2[0], i + h / 2.0 * k2[1])
        k4 = rates(s + h * k3[0], i + h * k3[1])
        s, i, r = (x + h / 6.0 * (a + 2.0 * b + 2.0 * c + d) for x, a, b, c, d in
                   zip((s, i, r), k1, k2, k3, k4, strict=True))
        higher = i > peak
        peak, peak_step = np.where(higher, i, peak), np.where(higher, step, peak_step)
    return np.stack([peak, peak_step / p["steps_per_day"], i, r], axis=-1)


def sir_peak(p: Params) -> np.ndarray:
    """The exact largest I of the SIR model (betas, gammas). I + S - (gamma / beta) ln S is constant along a
    solution, and I peaks where S = gamma / beta, so the peak is i0 + s0 - rho - rho ln(s0 / rho), rho = gamma / beta;
    if s0 <= rho, I only falls and the peak is i0 on day 0."""
    beta, gamma = sir_rates(p)
    i0 = float(p["infected0"])
    s0 = 1.0 - i0
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = gamma / beta
        grows = s0 > rho
        safe = np.where(grows, rho, 1.0)
        return np.where(grows, i0 + s0 - safe - safe * np.log(s0 / safe), i0)


def sir_final_size_defect(p: Params, result: np.ndarray) -> np.ndarray:
    """How far the final state misses the invariant S = s0 exp(-R beta / gamma) (dS/dR = -beta S / gamma, R(0) = 0),
    with S = 1 - I - R (RK4 keeps the linear invariant S + I + R = 1 up to rounding): 0 for the exact solution."""
    beta, gamma = sir_rates(p)
    i_end, r_end = result[..., 2], result[..., 3]
    defect: np.ndarray = np.abs((1.0 - i_end - r_end) - (1.0 - p["infected0"]) * np.exp(-r_end * beta / gamma))
    return defect


def sir_peak_sampling_bound(p: Params) -> np.ndarray:
    """How far below the true peak the largest I at the steps may be: near its peak I(t) = I* - beta gamma I*^2
    (t - t*)^2 / 2 + O((t - t*)^3) (I'' = -beta^2 S I^2 where S = gamma / beta), and a step lands within h / 2 of t*."""
    beta, gamma = sir_rates(p)
    h = 1.0 / p["steps_per_day"]
    bound: np.ndarray = beta * gamma * sir_peak(p) ** 2 * h * h / 8.0
    return bound


# ---- option_mc ------------------------------------------------------------------------------------------------

_GOLDEN, _MUL1, _MUL2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def splitmix_unit(seed: int, counters: np.ndarray) -> np.ndarray:
    """SplitMix64 output number `counters` (uint64, wrapping) seeded with `seed`, its top 53 bits times 2^-53."""
    z = np.uint64(seed) + (counters + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MUL1
    z = (z ^ (z >> np.uint64(27))) * _MUL2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def exp(x: np.ndarray) -> np.ndarray:
    """The kernel's e^x: x = k ln 2 + r (ln 2 in fdlibm's two parts), a Taylor series of e^r to r^14 / 14!, 2^k."""
    k = np.floor(x * 1.4426950408889634 + 0.5)
    r = (x - k * 0.6931471803691238) - k * 1.9082149292705877e-10
    p = np.ones_like(r)
    for j in range(14, 0, -1):
        p = 1.0 + p * r / j
    return np.ldexp(p, k.astype(np.int64))  # exact, as the kernel's doublings are away from overflow and underflow


def log(u: np.ndarray) -> np.ndarray:
    """The kernel's ln u for u in (0, 1]: u = m 2^-e with m in [sqrt(1/2), sqrt(2)), then ln m = 2 atanh(s)."""
    m, e = np.frexp(u)  # u = m 2^e, m in [1/2, 1): exact
    low = m < 0.7071067811865476
    m, e = np.where(low, m * 2.0, m), -np.where(low, e - 1, e).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = np.zeros_like(s)
    for j in range(11, -1, -1):
        p = 1.0 / (2 * j + 1) + s2 * p
    ln: np.ndarray = (2.0 * s * p - e * 1.9082149292705877e-10) - e * 0.6931471803691238
    return ln


def cos_turns(t: np.ndarray) -> np.ndarray:
    """The kernel's cos(2 pi t) for t in [0, 1): reduced to [0, 1/8] turns by exact symmetries, then a series."""
    t = np.where(t > 0.5, 1.0 - t, t)
    sign = np.where(t > 0.25, -1.0, 1.0)
    t = np.where(t > 0.25, 0.5 - t, t)
    use_sin = t > 0.125
    x = 6.283185307179586 * np.where(use_sin, 0.25 - t, t)
    x2 = x * x
    c, s = np.ones_like(x), np.ones_like(x)
    for j in range(10, 0, -1):
        c = 1.0 - x2 / ((2 * j - 1) * (2 * j)) * c
        s = 1.0 - x2 / ((2 * j) * (2 * j + 1)) * s
    return sign * np.where(use_sin, x * s, c)


def option_payoffs(p: Params, start: int, end: int) -> np.ndarray:
    """The discounted payoffs of paths [start, end), as the kernel defines them."""
    counters = np.arange(start, end, dtype=np.uint64) * np.uint64(2)
    u1 = 1.0 - splitmix_unit(p["seed"], counters)
    u2 = splitmix_unit(p["seed"], counters + np.uint64(1))
    z = np.sqrt(-2.0 * log(u1)) * cos_turns(u2)
    drift = (p["rate"] - 0.5 * p["sigma"] * p["sigma"]) * p["maturity"]
    vol = p["sigma"] * math.sqrt(p["maturity"])
    discount = exp(np.array([-p["rate"] * p["maturity"]]))[0]
    price = p["spot"] * exp(drift + vol * z)
    return np.where(price > p["strike"], discount * (price - p["strike"]), 0.0)


def option_sums(p: Params, ranges: list[tuple[int, int]]) -> np.ndarray:
    """[sum of p, sum of p^2] of each range in path order (np.cumsum adds one term at a time), then added up over
    the ranges in order: the job's result when its tasks are these ranges."""
    total = np.zeros(2)
    for start, end in ranges:
        payoff = option_payoffs(p, start, end)
        total += [np.cumsum(payoff)[-1], np.cumsum(payoff * payoff)[-1]]
    return total


def black_scholes_call(p: Params) -> float:
    """The exact price of the European call: S N(d1) - K e^(-r T) N(d2)."""
    spot, strike, rate, sigma, t = p["spot"], p["strike"], p["rate"], p["sigma"], p["maturity"]

    def normal_cdf(x: float) -> float:
        return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))

    d1 = (math.log(spot / strike) + (rate + sigma * sigma / 2.0) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)
    return float(spot * normal_cdf(d1) - strike * math.exp(-rate * t) * normal_cdf(d2))


def price_and_error(result: np.ndarray, paths: int) -> tuple[float, float]:
    """The Monte Carlo price and its standard error from the merged [sum of p, sum of p^2]."""
    mean = float(result[0]) / paths
    return mean, math.sqrt(max(float(result[1]) / paths - mean * mean, 0.0) / paths)


# ---- mlp_infer ------------------------------------------------------------------------------------------------

def mlp_in_order(x: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """The kernel's logits: each dot product summed in float64 in index order (np.cumsum adds one term at a time),
    the bias added last."""
    def layer(v: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        terms = v.astype(np.float64)[:, :, None] * w.astype(np.float64)[None, :, :]
        return np.cumsum(terms, axis=1)[:, -1, :] + b.astype(np.float64)

    return layer(np.maximum(layer(x, w1, b1), 0.0), w2, b2)


def mlp_matmul(x: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """The logits by numpy's float64 matmul (BLAS: its own order of additions, perhaps with FMA)."""
    f = [a.astype(np.float64) for a in (x, w1, b1, w2, b2)]
    return np.maximum(f[0] @ f[1] + f[2], 0.0) @ f[3] + f[4]


def mlp_error_bound(x: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """A bound on |computed - exact| of each logit for ANY order of float64 additions (Higham, Accuracy and
    Stability, 3.1): a sum of n terms errs by at most gamma_n = n u / (1 - n u) (u = 2^-53) times the sum of their
    magnitudes, so the bound holds whatever BLAS does. Layer 1 has `features` exact products (float32 x float32
    fits float64) and the bias: error e1 <= gamma_(F+1) (|x| |w1| + |b1|), through ReLU (1-Lipschitz) unchanged.
    Layer 2 has rounded products, one more u: e2 <= |w2|^T e1 + gamma_(H+2) (|h| |w2| + |b2|).
    Two implementations differ by at most twice this."""
    f = [np.abs(a.astype(np.float64)) for a in (x, w1, b1, w2, b2)]
    u = 2.0**-53

    def gamma(n: int) -> float:
        return n * u / (1 - n * u)

    pre = f[0] @ f[1] + f[2]  # >= |exact pre-activation| >= |exact h|
    e1 = gamma(w1.shape[0] + 1) * pre
    # |computed h| <= pre + e1; the 1 + 1e-9 covers the rounding of computing the bound itself (n u << 1e-9).
    return (e1 @ f[3] + gamma(w2.shape[0] + 2) * ((pre + e1) @ f[3] + f[4])) * (1 + 1e-9)


# ---- heat2d ---------------------------------------------------------------------------------------------------

def heat_steps(u0: np.ndarray, alpha: float, steps: int) -> np.ndarray:
    """`steps` steps of the kernel's stencil on the whole grid at once, 0 beyond its edges."""
    u = u0.astype(np.float64)
    for _ in range(steps):
        p = np.pad(u, 1)
        u = u + alpha * (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * u)
    return u


def heat_mode(rows: int, cols: int, p: int, q: int) -> np.ndarray:
    """sin(p pi (i + 1) / (rows + 1)) sin(q pi (j + 1) / (cols + 1)): an eigenvector of the stencil with 0 beyond
    the edges, for whole numbers p, q >= 1."""
    i = np.arange(1, rows + 1)[:, None]
    j = np.arange(1, cols + 1)[None, :]
    return np.sin(p * np.pi * i / (rows + 1)) * np.sin(q * np.pi * j / (cols + 1))


def heat_mode_factor(rows: int, cols: int, p: int, q: int, alpha: float) -> float:
    """What one step multiplies heat_mode(rows, cols, p, q) by: the 5-point Laplacian's eigenvalue for that mode is
    -4 sin^2(p pi / (2 (rows + 1))) - 4 sin^2(q pi / (2 (cols + 1))), so a step's factor is 1 + alpha times it."""
    return 1.0 - 4.0 * alpha * (math.sin(p * math.pi / (2 * (rows + 1))) ** 2
                                + math.sin(q * math.pi / (2 * (cols + 1))) ** 2)
