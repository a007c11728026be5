"""SIR epidemic over a grid of (beta, gamma): peak infected fraction, day of the peak, final infected and recovered.

The model, in fractions of a population of 1: S' = -beta S I, I' = beta S I - gamma I, R' = gamma I, from
S = 1 - infected0, I = infected0, R = 0, integrated by classical RK4 with steps_per_day steps a day for `days` days.
beta (infections per infectious person per day) takes `betas` evenly spaced values from beta_min to beta_max, gamma
(recoveries per day, 1 / the infectious period) takes `gammas` values from gamma_min to gamma_max:
beta_b = beta_min + (beta_max - beta_min) * b / max(betas - 1, 1), and the same for gamma. Output row b, column g is
[the largest I over the steps, the day it was first reached (step / steps_per_day; 0 if I never grew), I and R on
the last day] at (beta_b, gamma_g). A task is the rows [start, end) of beta values, all gammas each.

Every operation is +, -, * or / in a fixed order (RK4 on this model needs no exp), each correctly rounded in
IEEE 754, and numba runs without fastmath (no reordering, no FMA contraction): every worker gets the same bits, so
results are compared exactly.
"""

NAME = "sir-sweep"
PARAMS = {
    "beta_min": (float, 0.0, 10.0, "smallest beta: infections per infectious person per day", 0.1),
    "beta_max": (float, 0.0, 10.0, "largest beta", 1.0),
    "betas": (int, 1, 100_000, "values of beta, evenly spaced (the index space: a task is a range of them)"),
    "gamma_min": (float, 0.0, 10.0, "smallest gamma: recoveries per day (1 / infectious period)", 0.05),
    "gamma_max": (float, 0.0, 10.0, "largest gamma", 0.5),
    "gammas": (int, 1, 10_000, "values of gamma, evenly spaced"),
    "infected0": (float, 0.0, 1.0, "infected fraction on day 0 (the rest susceptible)", 0.0001),
    "days": (int, 1, 100_000, "days to integrate", 365),
    "steps_per_day": (int, 1, 1_000, "RK4 steps per day", 10),
}
INDEX = "betas"
OUTPUT = ("float64", ("rows", "gammas", 4))
MERGE = "concatenate"
COMPARE = "exact"
WORK = ("rows", "gammas", "days", "steps_per_day")
SAMPLE = {"betas": 4, "gammas": 3, "days": 30}


def grid(lo, hi, k, count):
    return lo + (hi - lo) * k / max(count - 1, 1)


def rates(s, i, beta, gamma):
    infections = beta * s * i
    recoveries = gamma * i
    return -infections, infections - recoveries, recoveries


def epidemic(beta, gamma, infected0, days, steps_per_day, out, b, g):
    h = 1.0 / steps_per_day
    half = h / 2.0
    sixth = h / 6.0
    s = 1.0 - infected0
    i = infected0
    r = 0.0
    peak = i
    peak_step = 0
    for step in range(1, days * steps_per_day + 1):
        k1s, k1i, k1r = rates(s, i, beta, gamma)
        k2s, k2i, k2r = rates(s + half * k1s, i + half * k1i, beta, gamma)
        k3s, k3i, k3r = rates(s + half * k2s, i + half * k2i, beta, gamma)
        k4s, k4i, k4r = rates(s + h * k3s, i + h * k3i, beta, gamma)
        s = s + sixth * (k1s + 2.0 * k2s + 2.0 * k3s + k4s)
        i = i + sixth * (k1i + 2.0 * k2i + 2.0 * k3i + k4i)
        r = r + sixth * (k1r + 2.0 * k2r + 2.0 * k3r + k4r)
        if i > peak:
            peak = i
            peak_step = step
    out[b, g, 0] = peak
    out[b, g, 1] = peak_step / steps_per_day
    out[b, g, 2] = i
    out[b, g, 3] = r


def compute(start, end, beta_min, beta_max, betas, gamma_min, gamma_max, gammas, infected0, days, steps_per_day,
            out):
    for b in range(start, end):
        beta = grid(beta_min, beta_max, b, betas)
        for g in range(gammas):
            gamma = grid(gamma_min, gamma_max, g, gammas)
            epidemic(beta, gamma, infected0, days, steps_per_day, out, b - start, g)
