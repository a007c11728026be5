"""Monte Carlo price of a European call under geometric Brownian motion: sums of the discounted payoff and its square.

Path k draws u1 = 1 - unit(seed, 2k) in (0, 1] and u2 = unit(seed, 2k + 1) in [0, 1), unit(seed, c) being the top
53 bits of output c of SplitMix64 (seeded with `seed`) times 2^-53, then the normal z = sqrt(-2 ln u1) cos(2 pi u2)
(Box-Muller), the price at expiry S_T = spot exp((rate - sigma^2 / 2) maturity + sigma sqrt(maturity) z) and the
discounted payoff p = exp(-rate maturity) max(S_T - strike, 0). A task over paths [start, end) outputs
[sum of p, sum of p^2], added in path order; the job's result is their sum over tasks, so the price is
result[0] / paths and its standard error sqrt((result[1] / paths - price^2) / paths).

exp, ln and cos are written below with +, -, *, / and sqrt only (range reduction, then a Taylor or atanh series;
accurate to a few units in the last place), instead of the platform's libm, whose last bit differs between
machines: so every operation is correctly rounded IEEE 754 in a fixed order, every worker gets the same bits, and
results are compared exactly.
"""
import math

import numpy as np

NAME = "option-mc"
PARAMS = {
    "spot": (float, 0.01, 1_000_000.0, "price of the underlying today", 100.0),
    "strike": (float, 0.0, 1_000_000.0, "strike price of the call", 100.0),
    "rate": (float, -0.1, 0.2, "risk-free interest rate per year, continuously compounded", 0.03),
    "sigma": (float, 0.0, 1.0, "volatility per square root of a year", 0.2),
    "maturity": (float, 0.0, 10.0, "years to expiry", 1.0),
    "paths": (int, 1, 1_000_000_000_000, "simulated paths (the index space: a task is a range of them)"),
    "seed": (int, 0, 9_223_372_036_854_775_807, "seed of the SplitMix64 random numbers", 0),
}
INDEX = "paths"
OUTPUT = ("float64", (2,))
MERGE = "sum"
COMPARE = "exact"
SAMPLE = {"paths": 1000}


def mix(seed, counter):
    z = np.uint64(seed) + (np.uint64(counter) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def unit(seed, counter):
    return np.float64(mix(seed, counter) >> np.uint64(11)) * 1.1102230246251565e-16


def exp(x):
    """e^x for |x| < 700: x = k ln 2 + r with |r| <= ln 2 / 2 (ln 2 in two parts, fdlibm's, so k ln2_hi is exact),
    e^r by its Taylor series to r^14 / 14! in Horner form, then times 2^k one exact doubling at a time."""
    k = math.floor(x * 1.4426950408889634 + 0.5)
    r = (x - k * 0.6931471803691238) - k * 1.9082149292705877e-10
    p = 1.0
    for j in range(14, 0, -1):
        p = 1.0 + p * r / j
    for j in range(k):
        p = p * 2.0
    for j in range(-k):
        p = p * 0.5
    return p


def log(u):
    """ln u for u in (0, 1]: u = m / 2^e with m in [sqrt(1/2), sqrt(2)) by exact doublings, then
    ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172, by its series to s^23 / 23."""
    m = u
    e = 0
    while m < 0.7071067811865476:
        m = m * 2.0
        e = e + 1
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = 0.0
    for j in range(11, -1, -1):
        p = 1.0 / (2 * j + 1) + s2 * p
    return (2.0 * s * p - e * 1.9082149292705877e-10) - e * 0.6931471803691238


def cos_small(x):
    """cos x for |x| <= pi / 4, by its Taylor series to x^20 / 20!."""
    x2 = x * x
    p = 1.0
    for j in range(10, 0, -1):
        p = 1.0 - x2 / ((2 * j - 1) * (2 * j)) * p
    return p


def sin_small(x):
    """sin x for |x| <= pi / 4, by its Taylor series to x^21 / 21!."""
    x2 = x * x
    p = 1.0
    for j in range(10, 0, -1):
        p = 1.0 - x2 / ((2 * j) * (2 * j + 1)) * p
    return x * p


def cos_turns(t):
    """cos(2 pi t) for t in [0, 1), reduced to an angle of at most pi / 4 by symmetries whose subtractions are
    exact (Sterbenz: y / 2 <= t <= 2 y makes t - y exact)."""
    if t > 0.5:
        t = 1.0 - t
    sign = 1.0
    if t > 0.25:
        t = 0.5 - t
        sign = -1.0
    if t > 0.125:
        return sign * sin_small(6.283185307179586 * (0.25 - t))
    return sign * cos_small(6.283185307179586 * t)


def compute(start, end, spot, strike, rate, sigma, maturity, paths, seed, out):
    drift = (rate - 0.5 * sigma * sigma) * maturity
    vol = sigma * math.sqrt(maturity)
    discount = exp(-rate * maturity)
    s = 0.0
    s2 = 0.0
    for k in range(start, end):
        c = np.uint64(k) * np.uint64(2)
        u1 = 1.0 - unit(seed, c)
        u2 = unit(seed, c + np.uint64(1))
        z = math.sqrt(-2.0 * log(u1)) * cos_turns(u2)
        price = spot * exp(drift + vol * z)
        payoff = discount * (price - strike) if price > strike else 0.0
        s += payoff
        s2 += payoff * payoff
    out[0] = s
    out[1] = s2
