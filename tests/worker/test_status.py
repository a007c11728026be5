"""worker.status: the Board's moves and snapshot, status.json written atomically and read back, and
`depin worker status --data-dir DIR [--json]` on a live worker, a dead one, a stopped one, and no worker at all."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from depin.cli.main import main
from worker import status
from worker.status import STATES, Board, BondState, CurrentTask

# ---- Board -----------------------------------------------------------------------------------------------------------


def test_a_new_board() -> None:
    b = Board(worker_id="w" * 32, coordinator="http://127.0.0.1:8642")
    assert (b.state, b.reason, b.task, b.computed, b.accepted, b.rejected, b.cpu_seconds, b.readings) == (
        "starting", "starting up", None, 0, 0, 0, 0.0, {})
    assert b.since_ms > 1_600_000_000_000  # the wall clock, in ms


def test_move_changes_state_and_reason_and_says_so() -> None:
    b = Board(worker_id="w", coordinator="c", since_ms=1)
    assert b.move("paused", "on battery", now_ms=100) is True
    assert (b.state, b.reason, b.since_ms) == ("paused", "on battery", 100)
    assert b.move("paused", "on battery", now_ms=200) is False  # nothing changed: the age of the state stays
    assert b.since_ms == 100
    assert b.move("paused", "CPU at 85 °C, limit 80 °C", now_ms=300) is True  # a new reason is a change
    assert b.since_ms == 300
    assert b.move("running", "idle: computing") is True  # without now_ms: the wall clock
    assert b.since_ms > 1_600_000_000_000


@pytest.mark.parametrize("state", STATES)
def test_every_state_is_allowed(state: str) -> None:
    assert Board(worker_id="w", coordinator="c").move(state, "why", now_ms=5)


@pytest.mark.parametrize("state", ["Running", "idle", "", "not running"])
def test_an_unknown_state_raises_and_changes_nothing(state: str) -> None:
    b = Board(worker_id="w", coordinator="c", since_ms=7)
    with pytest.raises(ValueError, match="unknown worker state"):
        b.move(state, "why", now_ms=9)
    assert (b.state, b.reason, b.since_ms) == ("starting", "starting up", 7)


def test_snapshot() -> None:
    b = Board(worker_id="w", coordinator="http://c:1", since_ms=5)
    b.move("running", "idle: computing", now_ms=10)
    b.task = CurrentTask(lease_id="L", task_id="J-3", job_id="J", kernel="mandelbrot@1", price=7, started_ms=11)
    b.computed, b.accepted, b.rejected, b.cpu_seconds = 4, 3, 1, 12.5
    b.readings = {"temperature_c": 61.0, "on_battery": False}
    snap = b.snapshot()
    assert snap == {"worker_id": "w", "coordinator": "http://c:1", "state": "running", "reason": "idle: computing",
                    "since_ms": 10, "computed": 4, "accepted": 3, "rejected": 1, "cpu_seconds": 12.5,
                    "readings": {"temperature_c": 61.0, "on_battery": False},
                    "task": {"lease_id": "L", "task_id": "J-3", "job_id": "J", "kernel": "mandelbrot@1", "price": 7,
                             "started_ms": 11, "chunks_done": 0, "chunks_total": 1}, "bond": None}
    assert json.loads(json.dumps(snap)) == snap  # JSON-ready
    b.task = None
    assert b.snapshot()["task"] is None
    snap["readings"]["temperature_c"] = 99.0  # a snapshot is a copy
    assert b.readings["temperature_c"] == 61.0


def test_the_bond_in_the_snapshot_and_its_one_line_summary() -> None:
    b = Board(worker_id="w", coordinator="c", bond=BondState(auto_bond=True, max_bond=1000))
    assert b.snapshot()["bond"] == {
        "auto_bond": True, "max_bond": 1000, "target": None, "bonded": None, "balance": None, "note": "not checked yet",
        "summary": "bond not read yet; auto-bond (no target yet, max 1000): not checked yet"}
    assert b.bond is not None
    b.bond.target, b.bond.bonded, b.bond.balance = 400, 250, 40
    b.bond.note = "waiting for 100 spendable credits to bond"
    assert b.snapshot()["bond"]["summary"] == ("250 credits bonded, 40 spendable; auto-bond (target 400, max 1000): "
                                               "waiting for 100 spendable credits to bond")
    assert BondState(auto_bond=False, max_bond=1000, note="off").summary() == "bond not read yet; auto-bond off"


# ---- status.json ---------------------------------------------------------------------------------------------------


def test_throttle_writes_at_once_then_at_most_every_interval() -> None:
    t = status.Throttle(every_s=0.5)
    assert t.delay(now=100.0) == 0.0  # never written
    t.wrote(100.0)
    assert t.delay(now=100.1) == pytest.approx(0.4)
    assert t.delay(now=100.1, urgent=True) == 0.0  # a change an owner acts on
    assert t.delay(now=100.5) == 0.0
    assert t.delay(now=107.0) == 0.0
    assert status.Throttle().every_s == status.WRITE_EVERY_S == 0.5


def test_a_snapshot_while_the_task_in_hand_goes_away() -> None:
    b = Board(worker_id="w" * 32, coordinator="http://127.0.0.1:8642")
    b.task = CurrentTask("L1", "J-0", "J", "mandelbrot@1", 3, 1)

    class Vanishing(Board):
        # The computing thread clears the task between two reads of it.
        def __getattribute__(self, name: str) -> Any:
            value = super().__getattribute__(name)
            if name == "task":
                object.__setattr__(self, "task", None)
            return value

    v = Vanishing(**{k: getattr(b, k) for k in ("worker_id", "coordinator", "task")})
    assert v.snapshot()["task"]["lease_id"] == "L1"


async def test_status_json_is_written_at_once_when_urgent_else_at_most_once_an_interval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    board = Board(worker_id="w" * 32, coordinator="http://127.0.0.1:8642")
    writes: list[int] = []
    monkeypatch.setattr(status, "write", lambda path, snapshot: writes.append(snapshot["computed"]))
    now = [100.0]
    p = status.Publisher(tmp_path / "status.json", board, status.Throttle(every_s=0.5), clock=lambda: now[0])
    for n in range(100):
        board.computed = n
        p.publish()
    assert writes == [0]  # the first at once; the others wait for the interval, one timer for them all
    p.publish(urgent=True)  # a pause, a resume, an alarm, the end: at once, and the timer is no longer needed
    assert writes == [0, 99]
    now[0] += 0.01
    p.throttle = status.Throttle(every_s=0.001)
    p.throttle.wrote(now[0])
    board.computed = 100
    p.publish()
    board.computed = 101
    p.publish()
    assert writes == [0, 99]
    await asyncio.sleep(0.1)  # the timer, due in 0.001 s, has run (asyncio runs due timers before a later sleep ends)
    assert writes == [0, 99, 101]  # the board as it was when the interval was up


def test_without_an_event_loop_it_writes_at_once(tmp_path: Path) -> None:
    board = Board(worker_id="w" * 32, coordinator="http://127.0.0.1:8642")
    p = status.Publisher(tmp_path / "status.json", board, status.Throttle(every_s=3600))
    p.publish()
    board.computed = 7
    p.publish()
    assert status.read(tmp_path / "status.json")["computed"] == 7  # type: ignore[index]
    assert status.read(tmp_path / "status.json")["pid"] == os.getpid()  # type: ignore[index]


def test_write_then_read(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    assert status.read(path) is None
    status.write(path, {"state": "paused", "reason": "on battery", "n": 1})
    assert status.read(path) == {"state": "paused", "reason": "on battery", "n": 1}
    status.write(path, {"state": "running"})
    assert status.read(path) == {"state": "running"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]  # no temporary file left behind


@pytest.mark.parametrize("content", ["", "{", "[1, 2]", '"paused"', "null", "\xff"])
def test_unreadable_or_foreign_content_reads_as_none(tmp_path: Path, content: str) -> None:
    path = tmp_path / "status.json"
    path.write_text(content, encoding="latin-1")
    assert status.read(path) is None


def test_a_reader_never_sees_half_a_file(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    big = {"readings": {f"k{i}": "x" * 200 for i in range(200)}}  # ~50 kB: many write() calls if not atomic
    status.write(path, {**big, "n": 0})
    seen: list[Any] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            seen.append(status.read(path))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for n in range(1, 300):
            status.write(path, {**big, "n": n})
    finally:
        done.set()
        t.join()
    assert seen, "the reader never ran"
    assert all(s is not None and len(s["readings"]) == 200 for s in seen)


def test_write_into_a_missing_directory_raises_oserror(tmp_path: Path) -> None:
    # The daemon catches OSError and logs it; a missing data dir must not surface as anything else.
    with pytest.raises(OSError):
        status.write(tmp_path / "gone" / "status.json", {"state": "running"})


# ---- depin worker status ---------------------------------------------------------------------------------------------


def snapshot(**changes: Any) -> dict[str, Any]:
    b = Board(worker_id="a" * 32, coordinator="http://127.0.0.1:8642", since_ms=1_700_000_000_000)
    b.move("paused", "on battery", now_ms=1_700_000_000_000)
    b.computed, b.accepted, b.rejected, b.cpu_seconds = 5, 4, 1, 5400.0
    return {**b.snapshot(), "pid": os.getpid(), **changes}


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def run_status(capsys: pytest.CaptureFixture[str], data_dir: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["worker", "status", "--data-dir", str(data_dir), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def lines_of(out: str) -> dict[str, str]:
    return {line.split(None, 1)[0]: line.split(None, 1)[1] for line in out.splitlines()}


def test_a_live_paused_worker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status.write(tmp_path / "status.json", snapshot())
    code, out, err = run_status(capsys, tmp_path)
    assert (code, err) == (0, "")
    got = lines_of(out)
    assert got["worker"] == f"{'a' * 32} -> http://127.0.0.1:8642"
    assert got["state"].startswith("paused: on battery (since ")
    assert got["task"] == "none"
    assert got["results"] == "5 computed, 4 accepted, 1 rejected"
    assert got["cpu"] == "1.50 CPU hours in kernels"
    assert list(got) == ["worker", "state", "task", "results", "cpu"]  # no bond line: an older worker's status.json


def test_the_bond_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bond = BondState(auto_bond=True, max_bond=1000, target=400, bonded=400, balance=35, note="at its target")
    status.write(tmp_path / "status.json", snapshot(bond={**asdict(bond), "summary": bond.summary()}))
    code, out, _ = run_status(capsys, tmp_path)
    assert code == 0
    assert lines_of(out)["bond"] == "400 credits bonded, 35 spendable; auto-bond (target 400, max 1000): at its target"


def test_a_live_worker_with_a_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = {"lease_id": "L", "task_id": "J-3", "job_id": "J", "kernel": "mandelbrot@1", "price": 7,
            "started_ms": 1, "chunks_done": 0, "chunks_total": 1}
    status.write(tmp_path / "status.json", snapshot(state="running", reason="idle: computing", task=task))
    code, out, _ = run_status(capsys, tmp_path)
    assert code == 0
    got = lines_of(out)
    assert got["state"].startswith("running: idle: computing (since ")
    assert got["task"] == "J-3 of job J (mandelbrot@1, 7 credits)"


def test_a_dead_worker_is_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Killed with -9 while paused: status.json still says paused, but nobody is paused any more.
    status.write(tmp_path / "status.json", snapshot(pid=dead_pid()))
    code, out, _ = run_status(capsys, tmp_path)
    assert code == 0
    assert lines_of(out)["state"].startswith("not running: on battery (since ")


def test_a_snapshot_without_a_pid_is_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = snapshot()
    del snap["pid"]
    status.write(tmp_path / "status.json", snap)
    assert lines_of(run_status(capsys, tmp_path)[1])["state"].startswith("not running: ")


@pytest.mark.parametrize(("state", "reason"), [("stopped", "stopped"), ("alarm", "LEDGER FORK: ...")])
def test_a_stopped_or_alarmed_worker_says_so_even_when_its_process_is_gone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], state: str, reason: str) -> None:
    status.write(tmp_path / "status.json", snapshot(state=state, reason=reason, pid=dead_pid()))
    code, out, _ = run_status(capsys, tmp_path)
    assert code == 0
    assert lines_of(out)["state"].startswith(f"{state}: {reason} (since ")


def test_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = snapshot()
    status.write(tmp_path / "status.json", snap)
    code, out, _ = run_status(capsys, tmp_path, "--json")
    assert code == 0
    assert json.loads(out) == {**snap, "alive": True}
    status.write(tmp_path / "status.json", {**snap, "pid": dead_pid()})
    code, out, _ = run_status(capsys, tmp_path, "--json")
    got = json.loads(out)
    assert (got["alive"], got["state"], got["reason"]) == (False, "paused", "on battery")  # the last state, as written


def test_no_status_file_is_exit_2_and_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_status(capsys, tmp_path)
    assert (code, out) == (2, "")
    assert err == (f"depin: error: no worker status in {tmp_path} (has a worker run with this --data-dir?)\n")


def test_a_garbled_status_file_is_like_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "status.json").write_text('{"state": "paus')
    code, _, err = run_status(capsys, tmp_path, "--json")
    assert code == 2 and err.count("\n") == 1 and "no worker status" in err


def test_a_missing_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_status(capsys, tmp_path / "nope")
    assert code == 2 and err.startswith("depin: error: no worker status in ")


def test_status_needs_no_coordinator_and_no_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # A broken worker.toml or environment must not stop the owner from seeing the state.
    (tmp_path / "worker.toml").write_text("[policy\n")
    monkeypatch.setenv("DEPIN_COORDINATOR", "not a url")
    monkeypatch.setenv("DEPIN_WORKER_IDLE_SECONDS", "soon")
    status.write(tmp_path / "status.json", snapshot())
    code, out, _ = run_status(capsys, tmp_path)
    assert code == 0 and "paused: on battery" in out


def test_status_through_the_console_script(tmp_path: Path) -> None:
    status.write(tmp_path / "status.json", snapshot(pid=dead_pid()))
    depin = Path(sys.executable).with_name("depin")
    got = subprocess.run([str(depin), "worker", "status", "--data-dir", str(tmp_path)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert got.returncode == 0, got.stderr
    assert "not running: on battery" in got.stdout
    missing = subprocess.run([str(depin), "worker", "status", "--data-dir", str(tmp_path / "x")],
                             capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode == 2 and missing.stdout == "" and len(missing.stderr.splitlines()) == 1
