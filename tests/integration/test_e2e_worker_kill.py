"""A worker SIGKILLed in the middle of a job: its leases time out, the others finish the job, nobody is paid twice."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.support import SLOW_JOB, Cluster, check_rewards, read_db, submit, wait_until

TASKS, REPLICAS = 8, 2


@pytest.mark.timeout(240)
def test_sigkilled_worker_does_not_stop_the_job_or_double_pay(
        cluster: Cluster, submitter: Any, reference: Callable[[dict[str, Any]], np.ndarray], tmp_path: Path) -> None:
    expected = reference(SLOW_JOB)
    coordinator = cluster.coordinator(lease_timeout=2)
    # One task per lease request, so the leases a worker holds are the ones it is working on.
    victim, *others = [cluster.worker(coordinator, f"worker-{i}", batch=1) for i in range(3)]
    api = coordinator.api
    job_id = submit(coordinator, submitter, SLOW_JOB, tasks=TASKS, replicas=REPLICAS)

    def mid_job() -> bool:
        # The victim has delivered something and is now working on another lease.
        states = {x["state"] for x in coordinator.leases() if x["worker_id"] == victim.worker_id}
        assert api.job(job_id)["state"] in ("queued", "running"), "the job ended before the victim could be killed"
        return {"returned", "active"} <= states

    wait_until(mid_job, "the victim to have returned a result and to be computing another")
    victim.proc.signal(signal.SIGKILL)
    assert victim.proc.wait() == -signal.SIGKILL
    held = {x["lease_id"] for x in coordinator.leases() if x["worker_id"] == victim.worker_id}
    job = api.wait_job(job_id)
    assert job["state"] == "done", job
    assert job["tasks_validated"] == TASKS

    npy = tmp_path / "x.npy"
    got = cluster.cli("result", "--coordinator", coordinator.url, job_id, "-o", str(npy))
    assert got.returncode == 0, got.stderr
    assert np.array_equal(np.load(npy), expected)

    rewards = check_rewards(api, job)
    # What the victim could not finish was done by the survivors.
    assert {e["to"] for e in rewards} <= {victim.worker_id} | {w.worker_id for w in others}
    abandoned = [x for x in coordinator.leases() if x["lease_id"] in held and x["state"] != "returned"]
    assert abandoned, "the victim was killed holding no unanswered lease: the test proved nothing"
    for lease in abandoned:
        assert (lease["task_id"], victim.worker_id) not in {(e["task_id"], e["to"]) for e in rewards}
    for w in others:
        assert w.proc.alive(), w.proc.tail()

    verify = cluster.cli("ledger", "verify", "--coordinator", coordinator.url)
    assert verify.returncode == 0, verify.stderr


@pytest.mark.timeout(240)
def test_a_frozen_worker_coming_back_late_is_not_paid_twice(
        cluster: Cluster, submitter: Any, reference: Callable[[dict[str, Any]], np.ndarray], tmp_path: Path) -> None:
    # SIGSTOP instead of SIGKILL: the worker's leases expire and go to others, then it wakes up and reports
    # results for them late. A late result may still count once, but a (task, worker) pair is never paid twice.
    expected = reference(SLOW_JOB)
    coordinator = cluster.coordinator(lease_timeout=2)
    # Batches of 4 (capacity 2 at first): the frozen worker holds two leases, so one of them runs out before the
    # others decide its task (an adaptive worker on these slow tasks would hold one, which they may decide first).
    frozen, *others = [cluster.worker(coordinator, f"worker-{i}", batch=4) for i in range(3)]
    api = coordinator.api
    job_id = submit(coordinator, submitter, SLOW_JOB, tasks=TASKS, replicas=REPLICAS)

    def frozen_holding_a_lease() -> bool:
        # Frozen first, then asked: a worker seen holding a lease could otherwise report it before the signal lands
        # (a worker on slow tasks leases one at a time), and a frozen worker holding nothing has nothing to expire.
        frozen.proc.signal(signal.SIGSTOP)
        if coordinator.active_leases(frozen.worker_id):
            return True
        frozen.proc.signal(signal.SIGCONT)
        return False

    wait_until(frozen_holding_a_lease, "the worker to be frozen holding a lease")
    try:
        wait_until(lambda: any(x["worker_id"] == frozen.worker_id and x["state"] == "expired"
                               for x in coordinator.leases()), "a lease of the frozen worker to expire")
    finally:
        frozen.proc.signal(signal.SIGCONT)
    # Thawed while the job still runs: it finishes its batch and reports on leases that were given to others.
    job = api.wait_job(job_id)
    assert job["state"] == "done", job
    wait_until(lambda: "computed" in frozen.proc.log() and not frozen.journal(),
               "the thawed worker to report what it computed")
    assert frozen.proc.alive(), frozen.proc.tail()

    check_rewards(api, job)
    got = cluster.cli("result", "--coordinator", coordinator.url, job_id, "-o", str(tmp_path / "x.npy"))
    assert got.returncode == 0, got.stderr
    assert np.array_equal(np.load(tmp_path / "x.npy"), expected)
    assert cluster.cli("ledger", "verify", "--coordinator", coordinator.url).returncode == 0


TINY_TASKS = 3000
TINY_JOB: dict[str, Any] = {"func": 0, "samples": TINY_TASKS, "seed": 7}  # montecarlo: one sample a task


@pytest.mark.timeout(240)
def test_sigkilled_while_leasing_ahead_no_result_is_sent_unjournaled_or_forgotten_unacknowledged(
        cluster: Cluster, submitter: Any) -> None:
    # Default workers (--batch auto) on tiny tasks: batches of many tasks, each next batch leased while one computes,
    # results sent while the next batch computes. A kill -9 in the middle of that must keep the journal's rules.
    coordinator = cluster.coordinator(lease_timeout=2)
    victim, other = [cluster.worker(coordinator, f"worker-{i}") for i in range(2)]
    api = coordinator.api
    job_id = submit(coordinator, submitter, TINY_JOB, tasks=TINY_TASKS, replicas=1, kernel="montecarlo")

    def pipelining() -> bool:
        states = [x["state"] for x in coordinator.leases() if x["worker_id"] == victim.worker_id]
        assert api.job(job_id)["state"] in ("queued", "running"), "the job ended before the victim could be killed"
        return states.count("returned") >= 100 and "active" in states

    wait_until(pipelining, "the victim to have reported many results and to hold leases")
    victim.proc.signal(signal.SIGKILL)
    assert victim.proc.wait() == -signal.SIGKILL

    journal = victim.data_dir / "journal.sqlite3"
    taken = {r[0] for r in read_db(coordinator.db, "SELECT lease_id FROM results WHERE worker_id = ?",
                                   (victim.worker_id,))}
    story = dict(read_db(journal, "SELECT lease_id, status FROM sent"))
    pending = {r[0] for r in read_db(journal, "SELECT lease_id FROM pending")}
    acked = {lease for lease, state in story.items() if state != "computed"}
    assert taken and taken <= set(story), "a result reached the coordinator before it was journaled"
    assert acked.isdisjoint(pending) and acked | pending == set(story), "a result was forgotten before its ack"
    assert acked <= taken

    # Back on the same data dir, it resends what it held; the job ends, nobody is paid twice.
    again = cluster.worker(coordinator, "worker-0", data_dir=victim.data_dir)
    job = api.wait_job(job_id)
    assert job["state"] == "done", job
    wait_until(again.journal_empty, "the restarted victim to empty its journal")
    check_rewards(api, job)
    assert other.proc.alive(), other.proc.tail()
    assert cluster.cli("ledger", "verify", "--coordinator", coordinator.url).returncode == 0
