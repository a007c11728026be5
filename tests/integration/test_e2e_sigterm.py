"""SIGTERM on a worker holding leases: it finishes the task in hand, gives back the ones it has not started, exits 0,
and the given-back tasks go to another worker at once, not after the (deliberately very long) lease timeout."""

from __future__ import annotations

import signal

import pytest

from depin.crypto import SigningKey
from tests.integration.support import SLOW_JOB, Cluster, check_rewards, free_port, submit, wait_until

TASKS = 4
HELD = 2  # a new worker holds at most 2 leases at once (its capacity, PROTOCOL.md 12.1)
LEASE_TIMEOUT_S = 300


@pytest.mark.timeout(180)
def test_sigterm_releases_unstarted_leases(cluster: Cluster) -> None:
    coordinator = cluster.coordinator(lease_timeout=LEASE_TIMEOUT_S)
    leaving = cluster.worker(coordinator, "leaving", batch=TASKS)
    job_id = submit(coordinator, SigningKey.generate(), SLOW_JOB, tasks=TASKS, replicas=1)
    wait_until(lambda: len(coordinator.active_leases(leaving.worker_id)) == HELD, "the worker to lease its capacity")
    # It computes them one at a time, so all but (at most) the one in hand are unstarted now.
    leaving.proc.signal(signal.SIGTERM)
    assert leaving.proc.wait() == 0, leaving.proc.tail()

    mine = [x for x in coordinator.leases() if x["worker_id"] == leaving.worker_id]
    states = sorted(x["state"] for x in mine)
    assert len(mine) == HELD
    assert "active" not in states, f"the stopped worker still holds leases: {states}"
    released = [x for x in mine if x["state"] == "released"]
    assert released, f"nothing was given back: {states}"
    assert set(states) <= {"returned", "released"}, states
    returned = {x["task_id"] for x in mine if x["state"] == "returned"}

    # Another worker picks the given-back tasks up; the job ends long before any lease could have expired.
    staying = cluster.worker(coordinator, "staying", batch=TASKS)
    job = coordinator.api.wait_job(job_id, timeout=LEASE_TIMEOUT_S / 3)
    assert job["state"] == "done", job
    leases = coordinator.leases()
    assert not [x for x in leases if x["state"] == "expired"], "a lease had to time out"
    taken_over = {x["task_id"] for x in leases if x["worker_id"] == staying.worker_id and x["state"] == "returned"}
    assert {x["task_id"] for x in released} <= taken_over

    rewards = check_rewards(coordinator.api, job)
    paid = {(e["task_id"], e["to"]) for e in rewards}
    assert paid == {(t, leaving.worker_id) for t in returned} | {(t, staying.worker_id) for t in taken_over}
    assert "gave back" in leaving.proc.log()


@pytest.mark.timeout(120)
def test_sigterm_on_an_idle_worker_and_on_the_coordinator(cluster: Cluster) -> None:
    coordinator = cluster.coordinator(port=free_port())
    idle = [cluster.worker(coordinator, f"idle-{i}") for i in range(2)]
    wait_until(lambda: {w.worker_id for w in idle} <= set(coordinator.api.workers()), "the workers to long-poll")
    # A worker waiting in a long-poll stops at once and cleanly.
    idle[0].proc.signal(signal.SIGTERM)
    assert idle[0].proc.wait() == 0, idle[0].proc.tail()
    # So does the coordinator with a worker in a long-poll: it answers the poll and exits 0, state on disk.
    coordinator.proc.signal(signal.SIGTERM)
    assert coordinator.proc.wait() == 0, coordinator.proc.tail()
    assert idle[1].proc.alive()
    # The surviving worker finds the coordinator again after its restart and does a job for it.
    coordinator = cluster.restart(coordinator)
    job_id = submit(coordinator, SigningKey.generate(), {"width": 32, "height": 8}, tasks=2, replicas=1)
    job = coordinator.api.wait_job(job_id)
    assert job["state"] == "done", job
    assert {e["to"] for e in check_rewards(coordinator.api, job)} == {idle[1].worker_id}


@pytest.mark.timeout(120)
def test_worker_once_computes_one_task_and_exits(cluster: Cluster) -> None:
    coordinator = cluster.coordinator()
    job_id = submit(coordinator, SigningKey.generate(), {"width": 32, "height": 8}, tasks=3, replicas=1)
    once = cluster.worker(coordinator, "once", extra=("--once",))
    assert once.proc.wait() == 0, once.proc.tail()
    assert coordinator.api.job(job_id)["tasks_validated"] == 1
    assert [(e["to"], e["amount"]) for e in coordinator.api.rewards()] == [(once.worker_id, 10)]
    mine = [x for x in coordinator.leases() if x["worker_id"] == once.worker_id]
    assert sorted(x["state"] for x in mine) == ["returned"], "--once leased more than it computed"
