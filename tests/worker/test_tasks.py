"""worker.tasks: a leased task is checked before a cycle is spent, then run and packaged as a result item."""

from __future__ import annotations

import dataclasses
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from depin import codec, kernels
from depin.crypto import SigningKey, VerifyKey
from depin.errors import KernelFailed, PeerProtocolError, VerificationError
from depin.kernels import mandelbrot, montecarlo, nonce
from depin.protocol import LeaseGrant, ResultItem
from tests.coordinator.sched_support import PRICE, lease, new_scheduler, submit
from tests.spec_examples import SPEC
from worker import tasks
from worker.journal import Journal

COORD = SigningKey(bytes([3]) * 32)
IMPOSTOR = SigningKey(bytes([4]) * 32)
KNOWN: dict[str, Any] = json.loads((Path(__file__).resolve().parents[1] / "data" / "mandelbrot_24x16.json").read_text())
PARAMS = {"width": 8, "height": 6, "x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2, "max_iter": 50,
          "row_start": 2, "row_end": 5}


def _task(**changes: Any) -> dict[str, Any]:
    task = {"task_id": "J-0", "job_id": "J", "kernel": "mandelbrot", "kernel_version": 1, "params": dict(PARAMS),
            "coordinator": COORD.id, "price": 7}
    task.update(changes)
    return task


def _grant(task: Any, signer: SigningKey = COORD, kind: str = "task", body: bytes | None = None) -> LeaseGrant:
    body = codec.encode(task) if body is None else body
    return LeaseGrant(lease_id="L1", expires_ms=10, task=body, sig=signer.sign(kind, body))


def test_check_accepts_a_task_from_the_pinned_coordinator() -> None:
    checked = tasks.check(_grant(_task()), COORD.verify_key)
    assert checked.lease_id == "L1"
    assert (checked.task.task_id, checked.task.job_id, checked.task.coordinator) == ("J-0", "J", COORD.id)
    assert checked.task.price == 7
    assert checked.kernel is mandelbrot.KERNEL
    assert checked.params == PARAMS


def test_check_accepts_what_the_scheduler_signs() -> None:
    s = new_scheduler()
    submit(s, tasks=2)
    grants = lease(s, "A", now=0)
    assert len(grants) == 2
    for grant in grants:
        checked = tasks.check(grant, s.key.verify_key, min_price=PRICE)
        assert checked.params == s.tasks[checked.task.task_id].params
        assert checked.task.price == PRICE == s.jobs[checked.task.job_id].price


def test_check_accepts_the_protocol_md_example_grant() -> None:
    ex = SPEC["task"]
    (grant_map,) = codec.decode_canonical(bytes.fromhex(ex["lease_answer_hex"]))["leases"]
    grant = LeaseGrant.from_payload(grant_map, 0)
    checked = tasks.check(grant, VerifyKey(bytes.fromhex(ex["coordinator_public_key_hex"])))
    assert (checked.lease_id, checked.task.task_id) == (ex["lease_id"], f"{ex['job_id']}-0")
    assert checked.task.price == 1
    result = tasks.run(checked)
    assert result is not None and codec.array_from_wire(result.output).tolist() == SPEC["result"]["output"]
    with pytest.raises(VerificationError, match="bad task signature"):
        tasks.check(grant, COORD.verify_key)  # pinned to another coordinator


def test_check_does_not_fill_parameter_defaults() -> None:
    # A coordinator sends every parameter, normalised; a task missing one is not runnable.
    params = {k: v for k, v in PARAMS.items() if k not in ("x_min", "max_iter")}
    with pytest.raises(PeerProtocolError, match="task J-0 is not runnable: task parameter x_min: must be present"):
        tasks.check(_grant(_task(params=params)), COORD.verify_key)


def test_check_refuses_a_bad_signature() -> None:
    grant = _grant(_task())
    sig = bytearray(grant.sig)
    sig[5] ^= 1
    with pytest.raises(VerificationError, match="bad task signature"):
        tasks.check(LeaseGrant(grant.lease_id, grant.expires_ms, grant.task, bytes(sig)), COORD.verify_key)


def test_check_refuses_a_tampered_task() -> None:
    grant = _grant(_task())
    forged = codec.encode(_task(params={**PARAMS, "max_iter": 1_000_000}))
    with pytest.raises(VerificationError, match="bad task signature"):
        tasks.check(LeaseGrant(grant.lease_id, grant.expires_ms, forged, grant.sig), COORD.verify_key)


def test_check_refuses_a_task_signed_by_another_coordinator() -> None:
    with pytest.raises(VerificationError, match="bad task signature"):
        tasks.check(_grant(_task(coordinator=IMPOSTOR.id), signer=IMPOSTOR), COORD.verify_key)


def test_check_refuses_a_task_that_names_another_coordinator() -> None:
    with pytest.raises(VerificationError, match="task names a different coordinator"):
        tasks.check(_grant(_task(coordinator=IMPOSTOR.id)), COORD.verify_key)


@pytest.mark.parametrize("min_price", [0, 1, 6, 7])
def test_check_accepts_a_task_paying_at_least_the_minimum(min_price: int) -> None:
    assert tasks.check(_grant(_task()), COORD.verify_key, min_price=min_price).task.price == 7


@pytest.mark.parametrize("min_price", [8, 2**40 - 1])
def test_check_refuses_a_task_paying_less_than_the_minimum(min_price: int) -> None:
    # The coordinator should never lease it (it filters by min_price too); if it does, not a cycle is spent.
    with pytest.raises(PeerProtocolError, match=f"task J-0 pays 7 credits, below our minimum of {min_price}"):
        tasks.check(_grant(_task()), COORD.verify_key, min_price=min_price)


def test_check_order_signature_then_coordinator_then_price_then_kernel() -> None:
    cheap_unrunnable = _task(price=1, kernel="julia")
    with pytest.raises(VerificationError, match="bad task signature"):
        tasks.check(_grant(cheap_unrunnable, signer=IMPOSTOR), COORD.verify_key, min_price=5)
    with pytest.raises(VerificationError, match="task names a different coordinator"):
        tasks.check(_grant({**cheap_unrunnable, "coordinator": IMPOSTOR.id}), COORD.verify_key, min_price=5)
    with pytest.raises(PeerProtocolError, match="pays 1 credits, below our minimum of 5"):
        tasks.check(_grant(cheap_unrunnable), COORD.verify_key, min_price=5)
    with pytest.raises(PeerProtocolError, match="not runnable: unknown kernel 'julia'"):
        tasks.check(_grant(cheap_unrunnable), COORD.verify_key, min_price=1)


@pytest.mark.parametrize(
    ("price", "message"),
    [(None, "missing field task.price"), (0, "field task.price: 0 outside"), ("7", "field task.price: wrong type str")],
)
def test_check_refuses_a_task_without_a_valid_price(price: Any, message: str) -> None:
    task = _task() if price is None else _task(price=price)
    if price is None:
        del task["price"]
    with pytest.raises(PeerProtocolError, match=message):
        tasks.check(_grant(task), COORD.verify_key)


def test_check_refuses_a_signature_of_another_kind() -> None:
    with pytest.raises(VerificationError, match="bad task signature"):
        tasks.check(_grant(_task(), kind="results-ack"), COORD.verify_key)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kernel": "julia"}, "task J-0 is not runnable: unknown kernel 'julia'; available: mandelbrot"),
        ({"kernel_version": 2}, "task J-0 is not runnable: kernel mandelbrot version 2 is not supported"),
        ({"params": {**PARAMS, "row_end": 7}}, "task J-0 is not runnable: task rows must satisfy"),
        ({"params": {**PARAMS, "width": 0}}, "task J-0 is not runnable: parameter width: 0 is outside"),
        ({"params": {**PARAMS, "max_iter": 10**7}}, "task J-0 is not runnable: parameter max_iter"),
        ({"params": {k: v for k, v in PARAMS.items() if k != "row_start"}},
         "task J-0 is not runnable: task parameter row_start: must be present as int"),
        ({"params": {**PARAMS, "shell": "rm -rf /"}}, "task J-0 is not runnable: unknown parameter 'shell'"),
        ({"params": {**PARAMS, "x_min": 2.0}}, "task J-0 is not runnable: parameter x_min must be less than x_max"),
    ],
)
def test_check_refuses_what_it_cannot_run(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(PeerProtocolError, match=message):
        tasks.check(_grant(_task(**changes)), COORD.verify_key)


def test_check_refuses_malformed_payloads() -> None:
    with pytest.raises(PeerProtocolError, match="task payload must be a map"):
        tasks.check(_grant([1, 2]), COORD.verify_key)
    with pytest.raises(PeerProtocolError, match="missing field task.job_id"):
        tasks.check(_grant({k: v for k, v in _task().items() if k != "job_id"}), COORD.verify_key)
    unsorted = bytes.fromhex("82a16201a16102")
    with pytest.raises(PeerProtocolError, match="not canonical msgpack"):
        tasks.check(_grant(None, body=unsorted), COORD.verify_key)


def test_run_packages_a_result_item() -> None:
    checked = tasks.check(_grant(_task()), COORD.verify_key)
    result = tasks.run(checked)
    assert isinstance(result, ResultItem)
    assert (result.lease_id, result.task_id) == ("L1", "J-0")
    assert isinstance(result.elapsed_ms, int) and result.elapsed_ms >= 0
    assert result.output == codec.array_to_wire(mandelbrot.run(PARAMS))
    assert result.output["shape"] == [3, 8] and result.output["dtype"] == "uint32"
    # It survives the trip to the coordinator.
    assert ResultItem.from_payload(codec.decode_canonical(codec.encode(result.to_payload())), 0) == result


def test_a_published_kernel_that_fails_gives_a_result_that_says_why() -> None:
    # A published kernel whose run raises KernelFailed (worker.published: an error it raised, a crash, a time-out,
    # or a kernel this worker refused) is answered, not dropped: its job fails instead of coming back here.
    name = "fa" * 32

    def crash(params: dict[str, Any]) -> Any:
        raise KernelFailed("IndexError: index 9 is out of bounds for axis 0 with size 3")

    kernels.register(dataclasses.replace(mandelbrot.KERNEL, name=name, version=0, chunks=None, run=crash))
    checked = tasks.check(_grant(_task(kernel=name, kernel_version=0)), COORD.verify_key)
    result = tasks.run(checked)
    assert result is not None and result.output is None
    assert result.error == "IndexError: index 9 is out of bounds for axis 0 with size 3"
    assert ResultItem.from_payload(codec.decode_canonical(codec.encode(result.to_payload())), 0) == result


def test_run_gives_the_known_answer() -> None:
    params = dict(KNOWN["params"], row_start=0, row_end=KNOWN["params"]["height"])
    result = tasks.run(tasks.check(_grant(_task(params=params)), COORD.verify_key))
    assert result is not None and codec.array_from_wire(result.output).tolist() == KNOWN["rows"]
    assert codec.array_from_wire(result.output).dtype == np.uint32


# ---- chunks: stop, save, resume --------------------------------------------------------------------------------

BAND = {"width": 8, "height": 6, "x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2, "max_iter": 16,
        "row_start": 1, "row_end": 5}  # 32 pixels: 8 chunks of 4 at CHUNK_WORK = 64
SAMPLES = {"func": 2, "samples": 1000, "seed": 11, "sample_start": 100, "sample_end": 130}  # 3 chunks of 10


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mandelbrot, "CHUNK_WORK", 64)
    monkeypatch.setattr(montecarlo, "CHUNK_SAMPLES", 10)


class MemoryProgress:
    """A Progress in memory, recording every save."""

    def __init__(self) -> None:
        self.kept: dict[str, tasks.Partial] = {}
        self.saves: list[int] = []
        self.states: list[np.ndarray] = []

    def load(self, checked: tasks.Checked) -> tasks.Partial | None:
        return self.kept.get(checked.task.task_id)

    def save(self, checked: tasks.Checked, partial: tasks.Partial) -> None:
        self.kept[checked.task.task_id] = partial
        self.saves.append(partial.done)
        self.states.append(partial.state)


class Bench:
    """A fake clock that moves 0.5 s per reading (so each chunk takes 0.5 s), counting chunks as they end."""

    def __init__(self, stop_after: int | None = None, rest_s: float = 0.0) -> None:
        self.now, self.stop_after, self.rest_s = 0.0, stop_after, rest_s
        self.chunks: list[float] = []

    def clock(self) -> float:
        self.now += 0.5
        return self.now

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.chunks) >= self.stop_after

    def after_chunk(self, seconds: float) -> None:
        self.chunks.append(seconds)
        self.now += self.rest_s  # a duty cycle's rest: not compute time


def _checked(params: dict[str, Any], kernel: str = "mandelbrot", lease_id: str = "L1") -> tasks.Checked:
    task = _task(kernel=kernel, params=params)
    body = codec.encode(task)
    grant = LeaseGrant(lease_id=lease_id, expires_ms=10, task=body, sig=COORD.sign("task", body))
    return tasks.check(grant, COORD.verify_key)


def _run(checked: tasks.Checked, progress: tasks.Progress | None, bench: Bench,
         save_every_s: float = 0.0) -> ResultItem | None:
    return tasks.run(checked, progress, should_stop=bench.should_stop, after_chunk=bench.after_chunk,
                     save_every_s=save_every_s, clock=bench.clock)


def _bounds(checked: tasks.Checked) -> list[tuple[int, int]]:
    assert checked.kernel.chunks is not None
    return checked.kernel.chunks.bounds(checked.params)


@pytest.mark.parametrize(("kernel", "params", "n"), [("mandelbrot", BAND, 8), ("montecarlo", SAMPLES, 3)])
def test_run_in_chunks_gives_the_output_of_the_kernel(kernel: str, params: dict[str, Any], n: int) -> None:
    checked = _checked(params, kernel)
    assert len(_bounds(checked)) == n
    bench = Bench()
    result = _run(checked, None, bench)
    assert result is not None and bench.chunks == [0.5] * n
    assert result.output == codec.array_to_wire(checked.kernel.run(checked.params))
    assert result.elapsed_ms == 500 * n


@pytest.mark.parametrize(("kernel", "params"), [("mandelbrot", BAND), ("montecarlo", SAMPLES)])
def test_stopping_at_each_chunk_boundary_saves_and_resumes_to_the_same_bits(kernel: str,
                                                                           params: dict[str, Any]) -> None:
    whole = codec.array_to_wire(kernels.get(kernel).run(_checked(params, kernel).params))
    bounds = _bounds(_checked(params, kernel))
    for k in range(len(bounds)):
        checked, progress = _checked(params, kernel), MemoryProgress()
        first = Bench(stop_after=k)
        assert _run(checked, progress, first, save_every_s=1e9) is None  # saved because it stopped, not by time
        assert len(first.chunks) == k
        assert progress.saves == ([bounds[k - 1][1]] if k else [])  # nothing done, nothing saved
        second = Bench()
        result = _run(checked, progress, second)
        assert result is not None and len(second.chunks) == len(bounds) - k
        assert result.output == whole, k
        assert result.elapsed_ms == 500 * len(bounds)  # compute time across the stop, once each chunk


def test_should_stop_is_asked_before_every_chunk_and_not_after_the_last() -> None:
    asked: list[int] = []
    bench = Bench()

    def should_stop() -> bool:
        asked.append(len(bench.chunks))
        return False

    result = tasks.run(_checked(BAND), should_stop=should_stop, after_chunk=bench.after_chunk, clock=bench.clock)
    assert result is not None and asked == list(range(8))


def test_after_chunk_gets_each_chunk_compute_time_and_rests_are_not_counted() -> None:
    bench = Bench(rest_s=7.0)
    result = _run(_checked(BAND), None, bench)
    assert result is not None and bench.chunks == [0.5] * 8  # the last chunk too: a duty cycle rests across tasks
    assert result.elapsed_ms == 4000


def test_progress_is_saved_every_save_every_s_of_compute_but_not_after_the_last_chunk() -> None:
    progress = MemoryProgress()
    assert _run(_checked(BAND), progress, Bench(), save_every_s=1.0) is not None
    assert progress.saves == [8, 16, 24]  # every second chunk (0.5 s each); the 4th pair ends the task
    progress = MemoryProgress()
    assert _run(_checked(BAND), progress, Bench(), save_every_s=0.0) is not None
    assert progress.saves == [4, 8, 12, 16, 20, 24, 28]


def test_a_stop_right_after_a_save_saves_nothing_new() -> None:
    progress = MemoryProgress()
    assert _run(_checked(BAND), progress, Bench(stop_after=2), save_every_s=1.0) is None
    assert progress.saves == [8]


def test_each_saved_state_is_a_copy_of_that_moment() -> None:
    progress = MemoryProgress()
    assert _run(_checked(BAND), progress, Bench()) is not None
    whole = mandelbrot.run(BAND).reshape(-1)
    assert progress.saves == [4, 8, 12, 16, 20, 24, 28]
    for done, state in zip(progress.saves, progress.states, strict=True):
        flat = state.reshape(-1)
        assert np.array_equal(flat[:done], whole[:done]) and not flat[done:].any()  # later chunks wrote elsewhere


def test_a_loaded_state_may_be_read_only() -> None:
    progress = MemoryProgress()
    checked = _checked(BAND)
    assert _run(checked, progress, Bench(stop_after=3)) is None
    partial = progress.kept["J-0"]
    frozen = partial.state.copy()
    frozen.setflags(write=False)  # as the journal returns it
    progress.kept["J-0"] = tasks.Partial(partial.done, frozen, partial.elapsed_ms)
    result = _run(checked, progress, Bench())
    assert result is not None and result.output == codec.array_to_wire(mandelbrot.run(checked.params))
    assert np.array_equal(frozen, partial.state)


@pytest.mark.parametrize(
    "partial",
    [
        tasks.Partial(8, np.zeros((3, 8), dtype=np.uint32), 100),  # another shape
        tasks.Partial(8, np.zeros((4, 8), dtype=np.int32), 100),  # another dtype
        tasks.Partial(33, np.zeros((4, 8), dtype=np.uint32), 100),  # beyond the band
        tasks.Partial(-1, np.zeros((4, 8), dtype=np.uint32), 100),
        tasks.Partial(8, np.zeros((4, 8), dtype=np.uint32), -5),
    ],
)
def test_progress_that_does_not_fit_the_task_is_ignored(partial: tasks.Partial) -> None:
    progress = MemoryProgress()
    checked = _checked(BAND)
    progress.kept["J-0"] = partial
    bench = Bench()
    result = _run(checked, progress, bench)
    assert result is not None and len(bench.chunks) == 8
    assert result.output == codec.array_to_wire(mandelbrot.run(checked.params)) and result.elapsed_ms == 4000


def test_a_kernel_without_chunks_is_one_chunk_and_saves_nothing() -> None:
    params = {"seed": 1, "difficulty": 4, "start": 0, "count": 1000, "nonce_start": 0, "nonce_end": 1000}
    checked = _checked(params, "nonce")
    progress = MemoryProgress()
    assert _run(checked, progress, Bench(stop_after=0)) is None and progress.saves == []
    bench = Bench()
    result = _run(checked, progress, bench)
    assert result is not None and bench.chunks == [0.5] and progress.saves == []
    assert result.output == codec.array_to_wire(nonce.run(checked.params))


def test_threads_sets_numba_in_the_thread_that_computes() -> None:
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here: nothing to observe")
    seen: list[int] = []
    before = numba.get_num_threads()

    def compute() -> None:
        tasks.run(_checked(BAND), after_chunk=lambda s: seen.append(numba.get_num_threads()), threads=1)
        tasks.run(_checked(BAND), after_chunk=lambda s: seen.append(numba.get_num_threads()), threads=10**6)

    thread = threading.Thread(target=compute)
    thread.start()
    thread.join()
    assert seen == [1] * 8 + [numba.config.NUMBA_NUM_THREADS] * 8  # capped at what numba launched
    assert numba.get_num_threads() == before  # numba keeps the count per thread


# ---- with the journal: a crash at each chunk boundary ----------------------------------------------------------


@pytest.mark.parametrize(("kernel", "params"), [("mandelbrot", BAND), ("montecarlo", SAMPLES)])
def test_resume_after_a_crash_at_each_chunk_boundary(tmp_path: Path, kernel: str, params: dict[str, Any]) -> None:
    whole = codec.array_to_wire(kernels.get(kernel).run(_checked(params, kernel).params))
    n = len(_bounds(_checked(params, kernel)))
    for k in range(1, n):
        path = tmp_path / f"journal-{k}.sqlite3"
        before = Journal(path)
        assert _run(_checked(params, kernel), before.progress, Bench(stop_after=k)) is None
        # The crash: the first journal is never closed; a new process opens the file.
        after = Journal(path)
        assert [g.lease_id for g in after.unfinished()] == ["L1"]
        checked = tasks.check(after.unfinished()[0], COORD.verify_key)
        bench = Bench()
        result = _run(checked, after.progress, bench)
        assert result is not None and len(bench.chunks) == n - k
        assert result.output == whole and result.elapsed_ms == 500 * n
        after.add(result, now_ms=1)
        assert after.unfinished() == [] and after.progress.load(checked) is None
        after.close()
        before.close()


def test_a_task_leased_again_resumes_under_its_new_lease(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite3")
    assert _run(_checked(BAND, lease_id="L1"), journal.progress, Bench(stop_after=5)) is None
    bench = Bench()
    result = _run(_checked(BAND, lease_id="L2"), journal.progress, bench)
    assert result is not None and len(bench.chunks) == 3
    assert (result.lease_id, result.output) == ("L2", codec.array_to_wire(mandelbrot.run(BAND)))
    journal.close()


def test_resume_after_kill_9(tmp_path: Path) -> None:
    # A real crash: a child process computes a long band, saving after every chunk, and is killed mid-task.
    params = {"width": 64, "height": 48, "x_min": -0.8, "x_max": -0.7, "y_min": 0.05, "y_max": 0.15,
              "max_iter": 100_000, "row_start": 0, "row_end": 48}  # ~1 s; the child's chunks: 167 pixels
    grant = _checked(params).grant
    path = tmp_path / "journal.sqlite3"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), grant.task.hex(), grant.sig.hex(),
                              COORD.verify_key.raw.hex()], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while _done(path) < 200 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert child.poll() is None, "the child finished or failed before it could be killed"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    journal = Journal(path)
    (again,) = journal.unfinished()
    checked = tasks.check(again, COORD.verify_key)
    saved = journal.progress.load(checked)
    assert saved is not None and 200 <= saved.done < 64 * 48
    result = tasks.run(checked, journal.progress)
    assert result is not None
    assert result.output == codec.array_to_wire(mandelbrot.run(params))
    journal.close()


ROOT = Path(__file__).resolve().parents[2]
_CHILD = """
import sys
from pathlib import Path
from depin.crypto import VerifyKey
from depin.protocol import LeaseGrant
from worker import tasks
from worker.journal import Journal
from worker.journal import Journal
path, task, sig, key = sys.argv[1:]
journal = Journal(Path(path))
grant = LeaseGrant("L1", 10, bytes.fromhex(task), bytes.fromhex(sig))
tasks.run(tasks.check(grant, VerifyKey(bytes.fromhex(key))), journal.progress, save_every_s=0.0)
"""


def _done(path: Path) -> int:
    if not path.exists():
        return 0
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT done FROM progress").fetchone()
    except sqlite3.OperationalError:  # the child has not created the table yet
        return 0
    finally:
        db.close()
    return 0 if row is None else int(row[0])


# ---- run_batch: a batch in one call to the computing thread ---------------------------------------------------------


def _batch(n: int) -> list[tasks.Checked]:
    return [_checked({**SAMPLES, "sample_start": 10 * k, "sample_end": 10 * k + 10}, "montecarlo", f"L{k}")
            for k in range(n)]


def test_run_batch_computes_each_task_in_order_as_run_does() -> None:
    batch = _batch(3)
    started: list[str] = []
    out = tasks.run_batch(batch, on_start=lambda c: started.append(c.lease_id), clock=Bench().clock)
    assert (out.interrupted, out.unstarted) == (None, [])
    assert [d.item.output for d in out.done] == [tasks.run(c).output for c in batch]  # type: ignore[union-attr]
    assert [d.checked for d in out.done] == batch
    assert started == ["L0", "L1", "L2"]
    assert all(d.seconds > 0 for d in out.done)  # each timed, packaging included


def test_run_batch_stops_between_tasks_and_leaves_the_rest_unstarted() -> None:
    batch = _batch(4)
    asked: list[int] = []

    def go_on() -> bool:
        asked.append(1)
        return len(asked) <= 2

    out = tasks.run_batch(batch, go_on=go_on)
    assert [d.checked.lease_id for d in out.done] == ["L0", "L1"]
    assert (out.interrupted, out.unstarted) == (None, batch[2:])
    assert len(asked) == 3  # asked before each task, until it said stop


def test_run_batch_stopped_mid_task_saves_it_and_leaves_the_rest() -> None:
    batch = [_checked({**SAMPLES, "sample_start": 20 * k, "sample_end": 20 * k + 20}, "montecarlo", f"L{k}")
             for k in range(3)]  # two chunks each
    progress = MemoryProgress()
    chunks: list[float] = []
    out = tasks.run_batch(batch, progress, should_stop=lambda: len(chunks) == 3, after_chunk=chunks.append)
    assert [d.checked.lease_id for d in out.done] == ["L0"]
    assert (out.interrupted, out.unstarted) == (batch[1], batch[2:])  # stopped after its first chunk
    assert progress.saves == [10]


def test_run_batch_of_nothing() -> None:
    assert tasks.run_batch([]) == tasks.Outcome([], None, [])
