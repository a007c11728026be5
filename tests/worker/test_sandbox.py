"""worker.sandbox with real child processes and numba kernels (tests/worker/sandbox_kernels.py stands in for
depin.userkernel.compiled): outputs equal to the kernel run in this process, one child for many tasks, every kind of
failure a KernelFailed with its reason and the next task in a fresh child, refusals remembered, the CPU budget
renewed, close during a task. Budgets are generous: the tests assert the kind of failure, never a time."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from depin.errors import KernelFailed, SandboxClosed, UserError
from tests.worker import sandbox_kernels as k
from worker import sandbox_layers
from worker.sandbox import Sandbox, death
from worker.sandbox_layers import Limits

BUDGET = 120.0


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kernels")  # shared: numba's cache makes later children compile faster


def squares(start: int, end: int, scale: float = 2.0) -> dict[str, float | int]:
    return {"start": start, "end": end, "scale": scale}


def rows(params: dict[str, float | int]) -> tuple[str, tuple[int, ...]]:
    return "float64", (int(params["end"]) - int(params["start"]),)


def test_outputs_are_the_kernels_and_one_child_serves_many_tasks(cache_dir: Path) -> None:
    here = k.compile_numba(k.SQUARES)
    with Sandbox(k.SQUARES, "squares", cache_dir, loader=k.NUMBA) as sb:
        assert sb.start() >= 0.0
        pid = sb.pid
        for start, end, n in ((0, 1, 0), (5, 17, 3), (0, 100_000, 1000)):
            params, inputs = squares(start, end, 0.5), {"x": np.linspace(0.0, 1.0, n)}
            out = sb.run(params, inputs, BUDGET, expect=rows(params))
            assert out.dtype == np.float64 and np.array_equal(out, here.run(params, inputs))
        assert sb.pid == pid and sb.children == 1


def test_the_layers_this_machine_offers_are_active_in_the_child(cache_dir: Path) -> None:
    with Sandbox(k.SQUARES, "squares", cache_dir, loader=k.NUMBA) as sb:
        offered = sb.layers()  # before a child reported: what this machine offers
        assert set(offered) == set(sandbox_layers.LAYERS)
        sb.start()
        applied = sb.layers()
    for layer, offer in offered.items():
        assert applied[layer].startswith("active" if offer.startswith("available") else "off"), (layer, applied)
    assert applied["rlimits"].startswith("active")  # resource limits exist on every Linux


def test_disabled_layers_are_reported_off() -> None:
    report = sandbox_layers.probe(Limits(layers=("rlimits",)))
    assert report["seccomp"] == report["landlock"] == "off: disabled by the worker"
    with pytest.raises(UserError, match="unknown sandbox layer"):
        Limits(layers=("chroot",))


def test_an_index_out_of_bounds_fails_the_task_and_the_next_task_gets_a_fresh_child(cache_dir: Path) -> None:
    with Sandbox(k.OUT_OF_BOUNDS, "oob", cache_dir, loader=k.NUMBA) as sb:
        sb.start()
        first = sb.pid
        with pytest.raises(KernelFailed, match="IndexError") as failed:
            sb.run(squares(0, 4), {}, BUDGET, expect=rows(squares(0, 4)))
        assert failed.value.reason == "error" and sb.pid is None
        with pytest.raises(KernelFailed, match="IndexError"):
            sb.run(squares(0, 4), {}, BUDGET, expect=rows(squares(0, 4)))
        assert sb.children == 2 and first is not None


def test_an_allocation_past_the_memory_limit_fails_and_one_within_it_runs(cache_dir: Path) -> None:
    limits = Limits(memory_bytes=256 << 20)
    with Sandbox(k.ALLOCATE, "alloc", cache_dir, limits, loader=k.NUMBA) as sb:
        with pytest.raises(KernelFailed, match="MemoryError") as failed:
            sb.run(squares(0, 1, 10e9 / 8), {}, BUDGET, expect=("float64", (1,)))  # 10 GB
        assert failed.value.reason == "memory"
        out = sb.run(squares(0, 1, 16e6 / 8), {}, BUDGET, expect=("float64", (1,)))  # 16 MB
        assert out[0] == 1.0


def test_a_task_over_its_budget_is_killed_and_the_next_one_runs(cache_dir: Path) -> None:
    with Sandbox(k.SPIN, "spin", cache_dir, loader=k.NUMBA) as sb:
        with pytest.raises(KernelFailed, match="overran its budget of 2 s") as failed:
            sb.run(squares(0, 1, 1.0), {}, 2.0, expect=("float64", (1,)))
        assert failed.value.reason == "timeout"
        assert sb.run(squares(0, 1, 0.0), {}, BUDGET, expect=("float64", (1,)))[0] == 0.0  # scale 0: no loop


def test_a_kernel_numba_refuses_is_refused_once_and_for_all(cache_dir: Path) -> None:
    with Sandbox(k.UNTYPABLE, "untypable", cache_dir, loader=k.NUMBA) as sb:
        with pytest.raises(KernelFailed, match="refused: ") as failed:
            sb.start()
        assert failed.value.reason == "refused"
        with pytest.raises(KernelFailed, match="refused: "):
            sb.run(squares(0, 1), {}, BUDGET, expect=("float64", (1,)))
        assert sb.children == 1  # not compiled again


def test_an_output_of_another_shape_than_asked_is_malformed(cache_dir: Path) -> None:
    with Sandbox(k.SQUARES, "squares", cache_dir, loader=k.NUMBA) as sb:
        with pytest.raises(KernelFailed, match="malformed answer: output is float64 \\[3\\]") as failed:
            sb.run(squares(0, 3), {}, BUDGET, expect=("float64", (4,)))
        assert failed.value.reason == "malformed"
        with pytest.raises(KernelFailed, match="not the int64"):
            sb.run(squares(0, 3), {}, BUDGET, expect=("int64", (3,)))


def test_a_child_whose_cpu_time_might_not_cover_the_next_budget_is_replaced_first(cache_dir: Path) -> None:
    with Sandbox(k.SQUARES, "squares", cache_dir, Limits(cpu_seconds=60), loader=k.NUMBA) as sb:
        sb.run(squares(0, 3), {}, 10.0, expect=rows(squares(0, 3)))
        sb.run(squares(0, 3), {}, 10.0, expect=rows(squares(0, 3)))  # 10 s more fits in 60
        assert sb.children == 1
        out = sb.run(squares(0, 3), {}, 60.0, expect=rows(squares(0, 3)))  # a full 60 s would not: a new child
        assert sb.children == 2 and list(out) == [0.0, 2.0, 8.0]


def test_numba_caches_the_compiled_kernel_under_the_cache_dir(tmp_path: Path) -> None:
    for _ in range(2):
        with Sandbox(k.SQUARES, "squares", tmp_path, loader=k.NUMBA) as sb:
            assert sb.run(squares(1, 3), {}, BUDGET, expect=rows(squares(1, 3))).tolist() == [2.0, 8.0]
    assert list(tmp_path.rglob("*.nbi")) and list(tmp_path.rglob("*.nbc"))


def test_run_async_runs_in_the_default_executor(cache_dir: Path) -> None:
    async def go(sb: Sandbox) -> np.ndarray:
        await sb.start_async()
        return await sb.run_async(squares(0, 2), {}, BUDGET, expect=rows(squares(0, 2)))

    with Sandbox(k.SQUARES, "squares", cache_dir, loader=k.NUMBA) as sb:
        assert asyncio.run(go(sb)).tolist() == [0.0, 2.0]


def test_close_during_a_task_raises_sandbox_closed_not_a_kernel_failure(cache_dir: Path) -> None:
    sb = Sandbox(k.SPIN, "spin", cache_dir, loader=k.NUMBA)
    sb.start()
    raised: list[BaseException] = []

    def work() -> None:
        try:
            sb.run(squares(0, 1, 1.0), {}, BUDGET, expect=("float64", (1,)))
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    sb.close()  # the task was running or about to start: either way it was not the kernel's failure
    thread.join()
    assert len(raised) == 1 and isinstance(raised[0], SandboxClosed)
    with pytest.raises(SandboxClosed):
        sb.start()


@pytest.mark.parametrize("code, reason, words", [
    (-31, "syscall", "forbidden system call"), (-11, "crash", "SIGSEGV"), (-24, "crash", "CPU time limit"),
    (-9, "crash", "out of memory"), (3, "crash", "exited with code 3")])
def test_how_a_child_died_is_said(code: int, reason: str, words: str) -> None:
    failed = death(code)
    assert failed.reason == reason and words in str(failed)


SLOW_COMPILE = "import time\ntime.sleep(3600)\n"  # raw Python whose loading never ends


def test_compiling_past_its_budget_is_a_timeout(tmp_path: Path) -> None:
    with Sandbox(SLOW_COMPILE, "slow", tmp_path, loader=k.RAW, compile_budget_s=2.0) as sb:
        with pytest.raises(KernelFailed, match="compiling overran its budget of 2 s") as failed:
            sb.start()
        assert failed.value.reason == "timeout" and sb.pid is None


def test_close_while_compiling_stops_the_child_at_once(tmp_path: Path) -> None:
    sb = Sandbox(SLOW_COMPILE, "slow", tmp_path, loader=k.RAW)  # the default budget: 10 minutes
    raised: list[BaseException] = []

    def work() -> None:
        try:
            sb.start()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    while sb.pid is None and thread.is_alive():  # until the child exists
        thread.join(0.01)
    sb.close()
    thread.join()
    assert len(raised) == 1 and isinstance(raised[0], SandboxClosed)


def test_a_machine_without_libseccomp_or_landlock_runs_tasks_with_those_layers_off(tmp_path: Path) -> None:
    # The raw loader runs this top level in the child before the layers: as if neither library were installed.
    source = """
from worker import sandbox_layers
sandbox_layers._seccomp_module = lambda: None
sandbox_layers._landlock_abi = lambda: (None, 0)
def run(task_params, inputs):
    return np.full(1, 5.0)
"""
    with Sandbox(source, "bare", tmp_path, loader=k.RAW) as sb:
        assert sb.run({}, {}, BUDGET, expect=("float64", (1,))).tolist() == [5.0]
        layers = sb.layers()
    assert layers["seccomp"] == "off: neither libseccomp's Python bindings nor pyseccomp with libseccomp.so.2 is " \
                                "installed"
    assert layers["landlock"] == "off: the landlockpy package is not installed"
    assert layers["rlimits"].startswith("active")


def test_probe_says_why_a_layer_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_layers, "_landlock_abi", lambda: (sandbox_layers, 0))  # a module, but no ABI
    monkeypatch.setattr(sandbox_layers, "_seccomp_in_kernel", lambda: False)
    report = sandbox_layers.probe(Limits())
    assert report["landlock"] == "off: the Linux kernel has no Landlock (or it is disabled at boot)"
    assert report["seccomp"] == "off: the Linux kernel has no seccomp"
