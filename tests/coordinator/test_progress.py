"""coordinator.progress: each job's counts kept as rows move equal a full recount, after any walk of grants,
submissions, leases, honest and wrong reports, expiries, cancels, audits and restarts (the market state machine of
test_scheduler_market, with one more invariant); and a job's version changes whenever its view does."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import settings
from hypothesis.stateful import invariant

from coordinator import progress, states, views
from coordinator.model import Job, Task
from coordinator.progress import Progress
from coordinator.scheduler import Scheduler
from coordinator.store import Store
from tests.coordinator.sched_support import lease, new_scheduler, submit
from tests.coordinator.test_scheduler_market import Market


def recount(s: Scheduler, store: Store, job: Job) -> dict[str, Any]:
    """The counts the old GET /v1/jobs/{id} made on every call: from the database (saved) and every task in memory."""
    waiting: Counter[str] = Counter()
    if job.state not in states.FINISHED_JOB:
        for task in s.job_tasks(job.job_id):
            waiting.update(progress.reasons(task, job))
    return {"task_states": store.state_counts("tasks", job.job_id), "audits": store.audit_counts(job.job_id),
            "lease_states": store.state_counts("leases", job.job_id), "waiting": dict(waiting)}


class CountedMarket(Market):
    """The market walk, checking after every step that each job's running counts equal a recount, and that a job
    whose view changed has a new version."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, tuple[int, dict[str, Any]]] = {}

    @invariant()
    def counts_equal_a_recount(self) -> None:
        self._save()
        counts = self.s.counted()
        for job in self.s.jobs.values():
            if not counts.known(job.job_id):  # ended before a restart: the service counts it once from the database
                continue
            view = counts.view(job.job_id)
            assert {k: view[k] for k in ("task_states", "audits", "lease_states", "waiting")} == \
                recount(self.s, self.store, job), job.job_id
            shown = {**views.job_view(job, self.s.book.accounts.held(job.job_id)), **view}
            del shown["version"]
            before = self.seen.get(job.job_id)
            if before is not None and before[1] != shown:
                assert view["version"] != before[0], f"job {job.job_id} changed but kept version {before[0]}"
            self.seen[job.job_id] = (view["version"], shown)


TestCountedMarket = CountedMarket.TestCase
TestCountedMarket.settings = settings(settings(), max_examples=max(10, settings().max_examples // 4),
                                      stateful_step_count=40)


def _task(**fields: Any) -> Task:
    return Task(**{"task_id": "t", "job_id": "j", "index": 0, "params": {}, "payload": b"", "sig": b"", "quorum": 2,
                   **fields})


def test_reasons_name_why_a_task_waits() -> None:
    job = submit(new_scheduler(), tasks=1, replicas=2)
    assert progress.reasons(_task(), job) == ()
    assert progress.reasons(_task(reserved="w", quorum=3), job) == (progress.DISAGREED, progress.DRAWN)
    assert progress.reasons(_task(needs_trusted=True), job) == (progress.WAITS_TRUSTED,)
    assert progress.reasons(_task(fell_back=True, quorum=3), job) == (progress.FELL_BACK,)
    assert progress.reasons(_task(state="validated", audit="due"), job) == (progress.AUDIT_OPEN,)
    assert progress.reasons(_task(state="validated", audit="passed"), job) == ()


def test_a_move_is_counted_once_and_a_closed_job_waits_for_nothing() -> None:
    job = submit(new_scheduler(), tasks=1, replicas=2)
    p = Progress(start=100)
    p.add(job.job_id)
    task = _task(job_id=job.job_id, reserved="w")
    p.task(task, job)
    p.task(task, job)  # counted where it already is: nothing moves
    first = p.view(job.job_id)
    assert first["task_states"] == {"pending": 1} and first["waiting"] == {progress.DRAWN: 1}
    assert p.take_changed() == {job.job_id} and p.take_changed() == set()
    task.reserved, task.state = None, "validated"
    p.task(task, job)
    assert p.view(job.job_id)["task_states"] == {"validated": 1} and p.view(job.job_id)["waiting"] == {}
    assert p.view(job.job_id)["version"] > first["version"]
    task.state, task.audit = "validated", "due"
    p.task(task, job)
    p.close(job.job_id)
    task.audit = "skipped"
    p.task(task, job)
    assert p.view(job.job_id)["waiting"] == {} and p.view(job.job_id)["audits"] == {"skipped": 1}


def test_the_scheduler_counts_a_drawn_slot_it_keeps_in_memory_only() -> None:
    s = new_scheduler()
    job = submit(s, tasks=1, replicas=2)
    lease(s, "A", now=0)
    s.take_changes()
    task = s.job_tasks(job.job_id)[0]
    task.reserved = "someone"
    s._recount_later(task)  # what leasing does where it draws a slot
    assert s.counted().view(job.job_id)["waiting"] == {progress.DRAWN: 1}
