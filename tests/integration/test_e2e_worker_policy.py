"""The run policy with real processes: a worker reads a recorded machine (DEPIN_WORKER_PROBE_ROOT, a fake /proc and
/sys in the test's tmp dir) and pauses on battery or when hot, leasing nothing while a funded job waits, says why in
`depin worker status`, resumes when plugged in or cooled down, and after a kill -9 while paused, comes back paused.

The fake machine's /proc/stat and /proc/self/stat never change, so its load probe has nothing to say (None) and only
the power supply and the thermal zone decide. Files are replaced atomically, as the kernel's are read whole.
Every wait is for a condition (a status, a lease, a job state), bounded only to turn a hang into a failure."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.support import Cluster, Coordinator, Worker, check_rewards, submit, wait_until
from worker import status

JOB: dict[str, Any] = {"width": 48, "height": 16, "max_iter": 2000}
TASKS = 2
SAMPLES = 8  # policy samples a paused worker must go through with a job waiting, to show it leases nothing


class Machine:
    """A recorded machine tree: proc/stat, proc/self/stat, sys/class/power_supply, sys/class/thermal."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._put("proc/stat", "cpu  1000 0 500 8000 100 0 0 0 0 0\ncpu0 500 0 250 4000 50 0 0 0 0 0\n"
                               "cpu1 500 0 250 4000 50 0 0 0 0 0\nctxt 1\nbtime 1700000000\n")
        # The worker reads ROOT/proc/self/stat as its own: static, its own ticks never move.
        self._put("proc/self/stat", "4242 (depin worker) S 1 4242 4242 0 -1 4194560 100 0 0 0 50 20 0 0 20 0 9 0 "
                                    + " ".join(["0"] * 32) + "\n")
        self._put("sys/class/power_supply/BAT0/type", "Battery\n")
        self._put("sys/class/power_supply/AC/type", "Mains\n")
        self._put("sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
        self.plugged_in()
        self.temperature(45.0)

    def _put(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def on_battery(self, percent: int = 80) -> None:
        self._put("sys/class/power_supply/AC/online", "0\n")
        self._put("sys/class/power_supply/BAT0/status", "Discharging\n")
        self._put("sys/class/power_supply/BAT0/capacity", f"{percent}\n")

    def plugged_in(self, percent: int = 80) -> None:
        self._put("sys/class/power_supply/AC/online", "1\n")
        self._put("sys/class/power_supply/BAT0/status", "Charging\n")
        self._put("sys/class/power_supply/BAT0/capacity", f"{percent}\n")

    def temperature(self, celsius: float) -> None:
        self._put("sys/class/thermal/thermal_zone0/temp", f"{int(celsius * 1000)}\n")


def start_worker(cluster: Cluster, coordinator: Coordinator, machine: Machine, name: str = "worker",
                 data_dir: Path | None = None, **env: str) -> Worker:
    """`depin worker` reading `machine`, with the policy on (the suite's workers are otherwise always on)."""
    from depin.crypto import load_or_create_key

    data_dir = data_dir or cluster.root / name
    worker_id = load_or_create_key(data_dir / "worker.key").id
    environment = cluster.env(**{"DEPIN_WORKER_ALWAYS": "0", "DEPIN_WORKER_PROBE_ROOT": str(machine.root),
                                 "DEPIN_WORKER_SAMPLE_SECONDS": "0.2", "DEPIN_WORKER_IDLE_SECONDS": "1", **env})
    # --idle-seconds repeats DEPIN_WORKER_IDLE_SECONDS: `depin worker` lets a flag that is not given override the
    # variable with None (see tests/depin/test_config.py, the xfail tests), and these tests are about the policy.
    args = [sys.executable, "-m", "depin.cli.main", "worker", "--coordinator", coordinator.url,
            "--data-dir", str(data_dir), "--idle-seconds", "1", "--audit-interval", "5"]
    return Worker(cluster.spawn(name, args, env=environment), data_dir, worker_id)


def state_of(w: Worker) -> dict[str, Any] | None:
    """The worker's status.json, if it is there and was written by this process."""
    if not w.proc.alive():
        raise AssertionError(f"{w.proc.name} exited with {w.proc.popen.returncode}:\n{w.proc.tail()}")
    snap = status.read(w.data_dir / "status.json")
    return snap if snap is not None and snap.get("pid") == w.proc.pid else None


def wait_state(w: Worker, state: str, reason: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        snap = state_of(w)
        return snap if snap is not None and (snap["state"], snap["reason"]) == (state, reason) else None

    return wait_until(reached, f"{w.proc.name} to be {state}: {reason}")


def status_line(cluster: Cluster, w: Worker) -> str:
    """The state line of `depin worker status --data-dir`."""
    got = cluster.cli("worker", "status", "--data-dir", str(w.data_dir))
    assert got.returncode == 0, got.stderr
    (line,) = [x for x in got.stdout.splitlines() if x.startswith("state ")]
    return line.split(None, 1)[1]


def leases_of(coordinator: Coordinator, w: Worker) -> list[dict[str, Any]]:
    return [x for x in coordinator.leases() if x["worker_id"] == w.worker_id]


def stays_idle(coordinator: Coordinator, w: Worker, job_id: str, *, reading: str, value: Any) -> None:
    """While `SAMPLES` fresh policy samples (showing `reading` == `value`) go by, the worker computes nothing of the
    waiting job, and holds none of it: a worker allowed to work would have leased and computed at once. A lease
    request already in flight when the pause began may still be granted: the worker gives those back unstarted."""
    seen: set[int] = set()
    start = max((state_of(w) or {}).get("readings", {}).get("now_ms", 0), 0)

    def enough() -> bool:
        snap = state_of(w)
        assert not [x for x in leases_of(coordinator, w) if x["state"] not in ("active", "released")], (
            f"{w.proc.name} returned a result while paused")
        job = coordinator.api.job(job_id)
        assert job["tasks_validated"] == 0 and job["state"] in ("queued", "running"), job
        if snap is not None and snap["state"] == "paused" and snap["readings"].get(reading) == value:
            if snap["readings"]["now_ms"] > start:
                seen.add(snap["readings"]["now_ms"])
        return len(seen) >= SAMPLES

    wait_until(enough, f"{SAMPLES} policy samples of {w.proc.name} with the job waiting")
    wait_until(lambda: all(x["state"] == "released" for x in leases_of(coordinator, w)),
               f"{w.proc.name} to give back any lease granted as it paused")
    assert w.journal_empty()
    snap = state_of(w)
    assert snap is not None and snap["computed"] == 0 and snap["task"] is None


@pytest.mark.timeout(280)
def test_on_battery_the_worker_waits_and_plugged_in_it_works(cluster: Cluster, submitter: Any,
                                                             tmp_path: Path) -> None:
    machine = Machine(tmp_path / "machine")
    machine.on_battery(percent=60)
    coordinator = cluster.coordinator()
    w = start_worker(cluster, coordinator, machine)
    snap = wait_state(w, "paused", "on battery")
    assert snap["readings"]["on_battery"] is True and snap["readings"]["battery_percent"] == 60.0
    assert snap["readings"]["temperature_c"] == 45.0 and snap["readings"]["user_idle"] is None

    job_id = submit(coordinator, submitter, JOB, tasks=TASKS, replicas=1)
    stays_idle(coordinator, w, job_id, reading="on_battery", value=True)
    assert status_line(cluster, w).startswith("paused: on battery (since ")
    got = cluster.cli("worker", "status", "--data-dir", str(w.data_dir), "--json")
    assert got.returncode == 0, got.stderr
    import json

    as_json = json.loads(got.stdout)
    assert (as_json["alive"], as_json["state"], as_json["reason"], as_json["pid"]) == (
        True, "paused", "on battery", w.proc.pid)

    machine.plugged_in(percent=61)
    job = coordinator.api.wait_job(job_id)
    assert job["state"] == "done", job
    check_rewards(coordinator.api, job)
    assert {x["worker_id"] for x in coordinator.leases()} == {w.worker_id}
    wait_until(w.journal_empty, "the worker's journal to empty")
    snap = wait_state(w, "running", "idle: computing")
    assert snap["readings"]["on_battery"] is False
    assert status_line(cluster, w).startswith("running: idle: computing (since ")
    wait_until(lambda: (state_of(w) or {}).get("accepted") == TASKS, "the worker to count its accepted results")


@pytest.mark.timeout(280)
def test_heat_pauses_cooling_resumes_and_a_kill_while_paused_comes_back_paused(cluster: Cluster, submitter: Any,
                                                                               tmp_path: Path) -> None:
    machine = Machine(tmp_path / "machine")
    coordinator = cluster.coordinator()
    w = start_worker(cluster, coordinator, machine)
    wait_state(w, "running", "idle: computing")  # cool and plugged in: it would work

    machine.temperature(85.2)
    wait_state(w, "paused", "CPU at 85 °C, limit 80 °C")
    job_id = submit(coordinator, submitter, JOB, tasks=TASKS, replicas=1)
    stays_idle(coordinator, w, job_id, reading="temperature_c", value=85.2)

    machine.temperature(78.0)  # below the limit, within the margin: it goes on cooling
    wait_state(w, "paused", "CPU at 78 °C, limit 80 °C")
    stays_idle(coordinator, w, job_id, reading="temperature_c", value=78.0)
    assert status_line(cluster, w).startswith("paused: CPU at 78 °C, limit 80 °C (since ")

    # kill -9 while paused: the status file is left saying paused, and the status command sees nobody is.
    machine.temperature(86.0)
    wait_state(w, "paused", "CPU at 86 °C, limit 80 °C")
    w.proc.kill()
    assert w.proc.popen.returncode == -signal.SIGKILL
    assert status_line(cluster, w).startswith("not running: CPU at 86 °C, limit 80 °C (since ")

    again = start_worker(cluster, coordinator, machine, data_dir=w.data_dir)
    assert again.worker_id == w.worker_id
    wait_state(again, "paused", "CPU at 86 °C, limit 80 °C")
    assert status_line(cluster, again).startswith("paused: CPU at 86 °C, limit 80 °C (since ")
    stays_idle(coordinator, again, job_id, reading="temperature_c", value=86.0)

    machine.temperature(52.0)
    job = coordinator.api.wait_job(job_id)
    assert job["state"] == "done", job
    check_rewards(coordinator.api, job)
    assert {x["worker_id"] for x in coordinator.leases()} == {w.worker_id}
    wait_until(again.journal_empty, "the restarted worker's journal to empty")
    wait_state(again, "running", "idle: computing")

    again.proc.signal(signal.SIGTERM)  # a clean stop is recorded as such
    assert again.proc.wait() == 0
    assert status_line(cluster, again).startswith("stopped: stopped (since ")


@pytest.mark.timeout(200)
def test_the_suites_always_on_environment_reaches_the_worker(cluster: Cluster, tmp_path: Path) -> None:
    machine = Machine(tmp_path / "machine")
    machine.on_battery()
    coordinator = cluster.coordinator()
    w = start_worker(cluster, coordinator, machine, DEPIN_WORKER_ALWAYS="1")

    def published() -> dict[str, Any] | None:
        snap = state_of(w)
        return snap if snap is not None and snap["state"] != "starting" else None

    snap = wait_until(published, "the worker's first decision")
    assert (snap["state"], snap["reason"]) == ("running", "always on (--always)")
