"""Monte Carlo sums of an integrand over the unit square: the built-in montecarlo@1's tasks as a kernel file.

Sample i is (x, y) = (unit(seed, 2i), unit(seed, 2i + 1)), unit being the top 53 bits of SplitMix64 output times
2^-53; a task over samples [start, end) outputs [sum of f, sum of f^2] added in index order, and the job's result
is the sum of its tasks' (the built-in goes on to the mean and its standard error). exp and sin come from the
platform's libm, so results are compared within the built-in's tolerance.
"""
import math

import numpy as np

NAME = "montecarlo"
PARAMS = {
    "func": (int, 0, 2, "integrand: 0 = indicator of x^2 + y^2 <= 1, 1 = exp(-(x^2 + y^2)), 2 = sin(pi x) sin(pi y)"),
    "samples": (int, 1, 10_000_000_000, "number of random points (x, y) in [0, 1)^2"),
    "seed": (int, 0, 9_223_372_036_854_775_807, "seed of the SplitMix64 random numbers", 0),
}
INDEX = "samples"
OUTPUT = ("float64", (2,))
MERGE = "sum"
COMPARE = ("tolerance", 0.0, 1e-8)
SAMPLE = {"func": 1, "samples": 1000}


def mix(seed, counter):
    z = np.uint64(seed) + (np.uint64(counter) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def unit(seed, counter):
    return np.float64(mix(seed, counter) >> np.uint64(11)) * 1.1102230246251565e-16


def compute(start, end, func, samples, seed, out):
    s = 0.0
    s2 = 0.0
    for i in range(start, end):
        c = np.uint64(i) * np.uint64(2)
        x = unit(seed, c)
        y = unit(seed, c + np.uint64(1))
        if func == 0:
            f = 1.0 if x * x + y * y <= 1.0 else 0.0
        elif func == 1:
            f = math.exp(-(x * x + y * y))
        else:
            f = math.sin(math.pi * x) * math.sin(math.pi * y)
        s += f
        s2 += f * f
    out[0] = s
    out[1] = s2
