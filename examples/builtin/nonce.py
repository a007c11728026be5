"""The smallest nonce whose SplitMix64 output has `difficulty` leading zero bits: the built-in nonce@1 as a kernel file.

Nonce m is a solution iff mix(seed, m) >> (64 - difficulty) == 0, where mix is output m of SplitMix64 seeded with
`seed` (all arithmetic modulo 2^64, so every operand is a uint64: numba's int64 would make >> an arithmetic shift).
Task [start, end) searches the nonces first + start .. first + end - 1 and outputs uint64 [1, the smallest solution]
or [0, 0]. The built-in calls `first` "start", a name a kernel file keeps for the task's range.
"""
import numpy as np

NAME = "nonce"
PARAMS = {
    "seed": (int, 0, 9_223_372_036_854_775_807, "the puzzle: seed of SplitMix64"),
    "difficulty": (int, 1, 40, "leading zero bits a solution's SplitMix64 output must have"),
    "first": (int, 0, 4_611_686_018_427_387_904, "first nonce to try", 0),
    "count": (int, 1, 1_099_511_627_776, "number of nonces to try, from first"),
}
INDEX = "count"
OUTPUT = ("uint64", (2,))
MERGE = "stack"
COMPARE = "verify"
SAMPLE = {"seed": 7, "difficulty": 4, "count": 64}


def mix(seed, counter):
    z = np.uint64(seed) + (np.uint64(counter) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def solves(seed, difficulty, m):
    return mix(seed, m) >> np.uint64(64 - difficulty) == np.uint64(0)


def search(seed, difficulty, lo, hi, out):
    for m in range(lo, hi):
        if solves(seed, difficulty, m):
            out[0] = 1
            out[1] = m
            return


def compute(start, end, seed, difficulty, first, count, out):
    search(seed, difficulty, first + start, first + end, out)


def verify(start, end, seed, difficulty, first, count, out):
    # A claimed solution costs one mix to check (that it is the smallest is not checked: the built-in's verify
    # does the same). A claimed "none" is true only if there is none: that takes the whole search again.
    # Compared as uint64 on both sides: numba compares an int64 with a uint64 as float64, which rounds above 2^53.
    if out[0] == np.uint64(1):
        m = out[1]
        return np.uint64(first + start) <= m and m < np.uint64(first + end) and solves(seed, difficulty, m)
    if out[0] != np.uint64(0) or out[1] != np.uint64(0):
        return False
    found = np.zeros(2, dtype=np.uint64)
    search(seed, difficulty, first + start, first + end, found)
    return found[0] == 0
