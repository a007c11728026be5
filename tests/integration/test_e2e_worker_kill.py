"""A worker SIGKILLed in the middle of a job: its leases time out, the others finish the job, nobody is paid twice."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.support import SLOW_JOB, Cluster, check_rewards, submit, wait_until

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
    frozen, *others = [cluster.worker(coordinator, f"worker-{i}") for i in range(3)]
    api = coordinator.api
    job_id = submit(coordinator, submitter, SLOW_JOB, tasks=TASKS, replicas=REPLICAS)
    wait_until(lambda: coordinator.active_leases(frozen.worker_id), "the worker to hold a lease")
    frozen.proc.signal(signal.SIGSTOP)
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
