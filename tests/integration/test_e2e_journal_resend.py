"""Results a worker finishes while the coordinator is down wait in its journal and are resent after the restart:
none is lost, none is paid twice."""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.integration.support import SLOW_JOB, Cluster, Worker, check_rewards, free_port, submit, wait_until

TASKS, REPLICAS = 2, 2  # a new worker holds at most 2 leases (its capacity, PROTOCOL.md 12.1)


@pytest.mark.timeout(240)
def test_results_finished_during_an_outage_are_resent_and_paid_once(
        cluster: Cluster, submitter: Any, reference: Callable[[dict[str, Any]], np.ndarray]) -> None:
    expected = reference(SLOW_JOB)
    # Lease timeout well above the outage, so the results sent after the restart still answer live leases.
    coordinator = cluster.coordinator(port=free_port(), lease_timeout=120)
    workers = [cluster.worker(coordinator, f"worker-{i}", batch=TASKS) for i in range(REPLICAS)]
    job_id = submit(coordinator, submitter, SLOW_JOB, tasks=TASKS, replicas=REPLICAS)

    # Each worker leases the whole job (one replica of every task) and starts computing; then the coordinator dies.
    wait_until(lambda: all(len(coordinator.active_leases(w.worker_id)) == TASKS for w in workers),
               "both workers to lease every task")
    coordinator.proc.signal(signal.SIGKILL)
    assert coordinator.proc.wait() == -signal.SIGKILL

    # Both finish their batch with nobody to tell: the results stay in their journals.
    def stuck(w: Worker) -> bool:
        return "cannot reach the coordinator" in w.proc.log() and len(w.journal()) == TASKS

    for w in workers:
        wait_until(functools.partial(stuck, w), f"{w.proc.name} to journal all {TASKS} results it could not send")
    stranded = {(item["task_id"], w.worker_id) for w in workers for item in w.journal()}
    assert len(stranded) == TASKS * REPLICAS

    coordinator = cluster.restart(coordinator)
    job = coordinator.api.wait_job(job_id)
    assert job["state"] == "done", job
    for w in workers:
        wait_until(functools.partial(Worker.journal_empty, w), f"{w.proc.name}'s journal to empty")
        assert w.proc.alive(), w.proc.tail()

    rewards = check_rewards(coordinator.api, job)
    # Every reward is for a result that sat in a journal during the outage: nothing was lost or recomputed.
    assert {(e["task_id"], e["to"]) for e in rewards} == stranded
    assert coordinator.api.get(f"/v1/jobs/{job_id}")["tasks_validated"] == TASKS
    got = cluster.cli("result", "--coordinator", coordinator.url, job_id, "-o", str(cluster.root / "x.npy"))
    assert got.returncode == 0, got.stderr
    assert np.array_equal(np.load(cluster.root / "x.npy"), expected)
    assert cluster.cli("ledger", "verify", "--coordinator", coordinator.url).returncode == 0


@pytest.mark.timeout(240)
def test_journal_survives_a_worker_restart_during_the_outage(cluster: Cluster, submitter: Any) -> None:
    # The worker is itself stopped (SIGTERM) while the coordinator is down: it must exit 0 keeping its results,
    # and a new worker process on the same data dir sends them once both are back.
    coordinator = cluster.coordinator(port=free_port(), lease_timeout=120)
    worker = cluster.worker(coordinator, "worker", batch=2)
    job_id = submit(coordinator, submitter, SLOW_JOB, tasks=2, replicas=1)
    wait_until(lambda: len(coordinator.active_leases(worker.worker_id)) == 2, "the worker to lease both tasks")
    coordinator.proc.signal(signal.SIGKILL)
    assert coordinator.proc.wait() == -signal.SIGKILL
    wait_until(lambda: "cannot reach the coordinator" in worker.proc.log() and len(worker.journal()) == 2,
               "the worker to journal both results")
    worker.proc.signal(signal.SIGTERM)
    assert worker.proc.wait() == 0, worker.proc.tail()
    stranded = {item["task_id"] for item in worker.journal()}
    assert len(stranded) == 2

    coordinator = cluster.restart(coordinator)
    again = cluster.worker(coordinator, "worker", data_dir=worker.data_dir, batch=2)
    assert again.worker_id == worker.worker_id
    job = coordinator.api.wait_job(job_id)
    assert job["state"] == "done", job
    wait_until(lambda: not again.journal(), "the journal to empty")
    assert "2 results waiting in the journal" in again.proc.log()
    rewards = check_rewards(coordinator.api, job)
    assert {(e["task_id"], e["to"]) for e in rewards} == {(t, worker.worker_id) for t in stranded}
