"""The example kernels of examples/ (issue 11), each run as a job is: parameters checked, split into tasks, each task
compiled and run as a worker runs it (depin.userkernel.compiled), the outputs merged in task order, all by the
functions the coordinator uses (depin.userkernel.spec). The merged result is compared with examples/reference.py:
a numpy re-implementation bit for bit (every example claims COMPARE = "exact"), and a closed form or an error bound.

Not yet through a running coordinator and workers: workers do not run published kernels yet, and jobs cannot carry
the input arrays mlp_infer and heat2d read (docs/KERNELS.md 6). When they can, the same checks belong in a loopback
test of tests/integration/.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from depin.cli import main as cli
from depin.userkernel import check, spec
from depin.userkernel.compiled import Compiled, compile_kernel
from examples import reference as ref

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NAMES = {"sir_sweep": "sir-sweep", "option_mc": "option-mc", "mlp_infer": "mlp-infer", "heat2d": "heat-2d"}
U = 2.0**-53  # the unit roundoff of float64


@functools.cache
def kernel(name: str) -> Compiled:
    return compile_kernel((EXAMPLES / f"{name}.py").read_text())


def run_job(name: str, params: dict[str, Any], n_tasks: int,
            inputs: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The job's merged result and its tasks' ranges: split, each task run, merged, as coordinator and workers do."""
    k = kernel(name)
    job = spec.validate(k.spec, params)
    pieces = spec.split(k.spec, job, n_tasks)
    tasks = [pieces[i] for i in range(n_tasks)]
    return spec.merge(k.spec, job, [k.run(t, inputs) for t in tasks]), [(t["start"], t["end"]) for t in tasks]


# ---- every example ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_every_example_passes_the_check_and_compiles(name: str) -> None:
    text = (EXAMPLES / f"{name}.py").read_text()
    s = check.check(text)
    assert s.name == NAMES[name] and s.compare == "exact"
    assert kernel(name).spec == s


@pytest.mark.parametrize("name", ("sir_sweep", "option_mc"))
def test_depin_kernel_check_runs_the_sample_of_the_examples_without_inputs(name: str,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["kernel", "check", str(EXAMPLES / f"{name}.py")]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "publish   yes" in out.splitlines()
    assert next(line for line in out.splitlines() if line.startswith("sample    [0, 4) with "))


# ---- sir_sweep -----------------------------------------------------------------------------------------------

SIR = dict(beta_min=0.2, beta_max=0.8, betas=5, gamma_min=0.1, gamma_max=0.3, gammas=4, infected0=0.001, days=300)


@pytest.mark.parametrize("n_tasks", [1, 2, 5])
def test_sir_sweep_equals_numpys_rk4_bit_for_bit(n_tasks: int) -> None:
    params = dict(SIR, steps_per_day=4)
    result, _ = run_job("sir_sweep", params, n_tasks)
    want = ref.sir_sweep(spec.validate(kernel("sir_sweep").spec, params))
    assert result.shape == (5, 4, 4) and result.tobytes() == want.tobytes()


def test_sir_sweep_meets_the_closed_forms_of_its_peak_and_final_size() -> None:
    p = spec.validate(kernel("sir_sweep").spec, dict(SIR, steps_per_day=8))
    result, _ = run_job("sir_sweep", p, 2)
    peak = ref.sir_peak(p)
    grows = peak > p["infected0"]
    assert grows.any() and (~grows).any()  # gamma = 0.3 > beta = 0.2 has no epidemic
    # The step nearest the true peak misses it by the sampling bound; RK4's own error is ~1e-9 at these steps
    # (the final-size defect, and the next test's order), so 1e-7 of slack for it.
    assert (np.abs(result[..., 0] - peak) <= ref.sir_peak_sampling_bound(p) + 1e-7).all()
    assert (result[..., 1][~grows] == 0.0).all() and (result[..., 0][~grows] == p["infected0"]).all()
    assert (result[..., 1][grows] > 0.0).all()
    assert ref.sir_final_size_defect(p, result).max() < 1e-8


def test_sir_sweep_converges_at_rk4s_fourth_order() -> None:
    # Halving the step divides RK4's error by 2^4 = 16 (Euler's by 2, a second-order method's by 4): the defect in
    # the final-size invariant, measured at 2, 4 and 8 steps a day, is far above rounding at these step sizes.
    defects = []
    for steps_per_day in (2, 4, 8):
        p = spec.validate(kernel("sir_sweep").spec, dict(SIR, steps_per_day=steps_per_day))
        defects.append(ref.sir_final_size_defect(p, run_job("sir_sweep", p, 1)[0]).max())
    assert all(12.0 < coarse / fine < 20.0 for coarse, fine in zip(defects, defects[1:], strict=False))


# ---- option_mc -----------------------------------------------------------------------------------------------

OPTION = dict(spot=100.0, strike=105.0, rate=0.03, sigma=0.25, maturity=2.0, seed=12345)


@pytest.mark.parametrize("n_tasks", [1, 3, 8])
def test_option_mc_equals_numpys_same_random_stream_bit_for_bit(n_tasks: int) -> None:
    params = dict(OPTION, paths=30_000)
    result, ranges = run_job("option_mc", params, n_tasks)
    want = ref.option_sums(spec.validate(kernel("option_mc").spec, params), ranges)
    assert result.tobytes() == want.tobytes()


@pytest.mark.parametrize("case", [
    dict(spot=100.0, strike=100.0, rate=0.03, sigma=0.2, maturity=1.0, seed=1),  # at the money
    dict(spot=120.0, strike=100.0, rate=0.05, sigma=0.3, maturity=0.5, seed=2),  # in the money
    dict(spot=80.0, strike=100.0, rate=0.0, sigma=0.4, maturity=3.0, seed=3),  # out of the money, long
    dict(spot=50.0, strike=45.0, rate=-0.01, sigma=0.9, maturity=7.0, seed=4),  # wild, negative rate
])
def test_option_mc_prices_within_four_standard_errors_of_black_scholes(case: dict[str, Any]) -> None:
    paths = 400_000
    result, _ = run_job("option_mc", dict(case, paths=paths), 4)
    price, error = ref.price_and_error(result, paths)
    assert abs(price - ref.black_scholes_call(case)) <= 4.0 * error
    # The test tells a wrong price: 4 standard errors are 0.6% to 1.8% of it here, 9% for the heavy-tailed last case.
    assert error < 0.025 * price


def test_the_numpy_random_stream_is_splitmix64s_known_answers() -> None:
    vectors = json.loads((ROOT / "tests" / "data" / "splitmix64_vectors.json").read_text())
    cases = [(int(seed), c, want) for seed, outs in vectors["sequences"].items() for c, want in enumerate(outs)]
    cases += [(seed, counter, want) for seed, counter, want in vectors["at_counter"]]
    for seed, counter, want in cases:
        got = ref.splitmix_unit(seed, np.array([counter], dtype=np.uint64))[0]
        assert got == (int(want, 16) >> 11) * 2.0**-53


def test_the_exp_log_and_cos_written_with_plus_minus_times_divide_are_accurate() -> None:
    # examples/reference.py holds the option file's functions (the test above holds them equal bit for bit on the
    # stream): here each against numpy's libm over its domain, in units in the last place of the true value.
    rng = np.random.default_rng(5)
    u = np.concatenate([rng.random(200_000), 2.0 ** -np.arange(54.0), 1.0 - U * np.arange(1.0, 200.0)])
    u = u[u > 0]
    x = np.concatenate([rng.uniform(-40.0, 40.0, 200_000), np.arange(-40.0, 40.5, 0.5)])
    t = np.concatenate([rng.random(200_000), np.arange(64) / 64.0])
    assert (np.abs(ref.log(u) - np.log(u)) <= 4 * np.spacing(np.abs(np.log(u)))).all()
    assert (np.abs(ref.exp(x) - np.exp(x)) <= 4 * np.spacing(np.exp(x))).all()
    # numpy's cos(2 pi t) errs itself: 2 pi t is rounded first (up to 2 pi u), then cos (an ulp or so).
    assert (np.abs(ref.cos_turns(t) - np.cos(2.0 * np.pi * t)) <= 10 * U).all()
    assert ref.log(np.array([1.0]))[0] == 0.0 and ref.cos_turns(np.array([0.0]))[0] == 1.0


# ---- mlp_infer -----------------------------------------------------------------------------------------------

def network(batch: int, features: int, hidden: int, classes: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def draw(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    return {"x": draw(batch, features), "w1": draw(features, hidden, scale=features**-0.5),
            "b1": draw(hidden, scale=0.1), "w2": draw(hidden, classes, scale=hidden**-0.5),
            "b2": draw(classes, scale=0.1)}


@pytest.mark.parametrize("n_tasks", [1, 3, 7])
def test_mlp_infer_equals_in_order_sums_bit_for_bit_and_numpys_matmul_within_the_rounding_bound(n_tasks: int) -> None:
    arrays = network(50, 20, 16, 5, seed=n_tasks)
    result, _ = run_job("mlp_infer", dict(batch=50, features=20, hidden=16, classes=5), n_tasks, arrays)
    assert result.dtype == np.float64 and result.shape == (50, 5)
    assert result.tobytes() == ref.mlp_in_order(**arrays).tobytes()
    bound = ref.mlp_error_bound(**arrays)
    assert (np.abs(result - ref.mlp_matmul(**arrays)) <= 2.0 * bound).all()
    # The bound is tight enough to tell a wrong network: accumulating in float32 alone misses it a million-fold.
    assert bound.max() < 1e-12 * np.abs(result).max()


def test_mlp_infer_fails_a_task_whose_arrays_disagree_with_its_sizes() -> None:
    arrays = network(8, 6, 4, 3, seed=0)
    k = kernel("mlp_infer")
    task = dict(batch=8, features=6, hidden=4, classes=3, start=2, end=5)
    assert k.run(task, arrays).shape == (3, 3)
    with pytest.raises(IndexError):
        k.run(dict(task, hidden=5), arrays)
    with pytest.raises(IndexError):
        k.run(task, dict(arrays, b2=np.zeros(4, dtype=np.float32)))


# ---- heat2d --------------------------------------------------------------------------------------------------

HEIGHT, WIDTH = 37, 23
MODES = ((1, 1, 1.0), (3, 2, 0.5), (5, 7, -0.25))  # (p, q, amplitude)


def modes(alpha: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """A sum of the stencil's eigenmodes, and the same after `steps` steps by the closed form."""
    u0 = sum(a * ref.heat_mode(HEIGHT, WIDTH, p, q) for p, q, a in MODES)
    after = sum(a * ref.heat_mode_factor(HEIGHT, WIDTH, p, q, alpha) ** steps * ref.heat_mode(HEIGHT, WIDTH, p, q)
                for p, q, a in MODES)
    return np.asarray(u0), np.asarray(after)


@pytest.mark.parametrize("n_tasks", [1, 2, 5, HEIGHT])
def test_heat2d_bands_equal_numpys_whole_grid_bit_for_bit(n_tasks: int) -> None:
    # 9 steps: a band's halo spans several of the 37 one-row bands, and reaches the grid's edges.
    u0 = np.random.default_rng(n_tasks).random((HEIGHT, WIDTH))
    result, _ = run_job("heat2d", dict(height=HEIGHT, width=WIDTH, alpha=0.24, steps=9), n_tasks, {"u0": u0})
    assert result.tobytes() == ref.heat_steps(u0, 0.24, 9).tobytes()


def test_heat2d_decays_each_eigenmode_by_its_closed_form_factor() -> None:
    alpha, steps = 0.23, 40
    u0, after = modes(alpha, steps)
    result, _ = run_job("heat2d", dict(height=HEIGHT, width=WIDTH, alpha=alpha, steps=steps), 3, {"u0": u0})
    # With alpha <= 1/4 a step is an average (weights 1 - 4 alpha and alpha, all >= 0): it never grows the largest
    # |u| (M, at most the sum of the amplitudes), nor an error already made. A step's own roundings: the sum of the
    # four neighbours (2 + 3 + 4) u M, minus 4 u (8 u M), both times alpha <= 1/4, alpha times it (u 8 M / 4), plus
    # u (u M): under 8 u M. The closed form's sines, its factor (a few u) and factor^steps add under 8 u M a step.
    amplitude = sum(abs(a) for _, _, a in MODES)
    assert np.abs(result - after).max() <= 16 * steps * U * amplitude
    assert np.abs(after - u0).max() > 0.1  # the modes decayed: this is not the test of a no-op


def test_heat2d_fails_a_task_whose_grid_is_another_shape() -> None:
    with pytest.raises(IndexError):
        kernel("heat2d").run(dict(height=HEIGHT, width=WIDTH + 1, alpha=0.2, steps=2, start=0, end=4),
                             {"u0": np.zeros((HEIGHT, WIDTH))})
