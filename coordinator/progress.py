"""Each job's progress as running counts, so that reading it costs the same at 10 or 10^6 tasks. Pure.

GET /v1/jobs/{id} answers how many of the job's tasks are in each state, its audits by state, its leases by state,
and why its pending tasks wait. Recounting those over every task on every call grew with the job. `Progress` keeps
them instead: every task and lease remembers the part of its job's counts it was last counted in (its `tally`, in
memory only), and `task` / `lease` move it from that part to its current one, O(1). The scheduler calls them for
every row it records in a change set and for the in-memory placement fields that name a waiting reason (the
reservation of a drawn slot, the need for a trusted worker), so every move is counted where it happens;
`Scheduler.restore` counts the loaded rows once. A finished job waits for nothing: `close` empties its reasons.

Each job also has a `version`, which changes whenever anything its view shows may have changed (its counts, its row,
a ledger entry of it); `take_changed` says which jobs changed since the last call, so the shell wakes the long polls
of exactly those jobs once the change is durable (coordinator.server). Versions come from one counter started at the
coordinator's start time in microseconds, so a version from before a restart does not name a state after it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from coordinator import states
from coordinator.model import Job, Lease, Task

# A task's part of its job's counts: (state, audit, why it waits).
Part = tuple[str, "str | None", tuple[str, ...]]

AUDIT_OPEN = "validated; its audit is under way (the job ends when it is settled)"
FELL_BACK = "no trusted worker came in time: a larger quorum of untrusted workers stands in"
WAITS_TRUSTED = "waiting for a trusted worker"
DISAGREED = "results disagreed: one more agreeing result is needed"
DRAWN = "replica slot drawn for a worker"


def reasons(task: Task, job: Job) -> tuple[str, ...]:
    """Why a task of an unfinished job waits (none if it does not)."""
    if task.state == "validated":
        return (AUDIT_OPEN,) if task.audit in states.OPEN_AUDIT else ()
    if task.state != "pending":
        return ()
    out: list[str] = []
    if task.fell_back:
        out.append(FELL_BACK)
    elif task.waiting_since is not None or task.needs_trusted:
        out.append(WAITS_TRUSTED)
    if task.quorum > job.quorum and not task.fell_back:
        out.append(DISAGREED)
    if task.reserved is not None:
        out.append(DRAWN)
    return tuple(out)


@dataclass
class Tally:
    """One job's counts: tasks made so far by state, audits by state, leases by state, pending tasks by reason."""

    version: int
    tasks: Counter[str] = field(default_factory=Counter)
    audits: Counter[str] = field(default_factory=Counter)
    leases: Counter[str] = field(default_factory=Counter)
    waiting: Counter[str] = field(default_factory=Counter)
    closed: bool = False  # the job ended: nothing waits any more


def _positive(counts: Counter[str]) -> dict[str, int]:
    return {k: n for k, n in sorted(counts.items()) if n > 0}


class Progress:
    """The running counts of every job in memory."""

    def __init__(self, start: int = 0) -> None:
        self._jobs: dict[str, Tally] = {}
        self._clock = start
        self._changed: set[str] = set()

    def _tally(self, job_id: str) -> Tally:
        tally = self._jobs.get(job_id)
        if tally is None:
            self._clock += 1
            tally = self._jobs[job_id] = Tally(self._clock)
        return tally

    def add(self, job_id: str) -> None:
        """Start counting a job that runs (nothing counted yet)."""
        self._tally(job_id)

    def touch(self, job_id: str) -> None:
        """Something the job's view shows changed (its row, its escrow): give it a new version. (A job not counted
        here gets a new version when it is loaded.)"""
        tally = self._jobs.get(job_id)
        if tally is not None:
            self._clock += 1
            tally.version = self._clock
            self._changed.add(job_id)

    def task(self, task: Task, job: Job) -> None:
        """Count `task` where it is now (moving it from where it was counted before, if anywhere)."""
        tally = self._tally(job.job_id)
        # Once the job ended its reasons are gone (close): its tasks move between states and audits only.
        part: Part = (task.state, task.audit, () if tally.closed else reasons(task, job))
        old = task.tally
        if old == part:
            return
        if old is not None:
            tally.tasks[old[0]] -= 1
            if old[1] is not None:
                tally.audits[old[1]] -= 1
            if not tally.closed:
                for reason in old[2]:
                    tally.waiting[reason] -= 1
        tally.tasks[part[0]] += 1
        if part[1] is not None:
            tally.audits[part[1]] += 1
        for reason in part[2]:
            tally.waiting[reason] += 1
        task.tally = part
        self.touch(job.job_id)

    def lease(self, lease: Lease) -> None:
        """Count `lease` in its current state."""
        if lease.tally == lease.state:
            return
        tally = self._tally(lease.job_id)
        if lease.tally is not None:
            tally.leases[lease.tally] -= 1
        tally.leases[lease.state] += 1
        lease.tally = lease.state
        self.touch(lease.job_id)

    def close(self, job_id: str) -> None:
        """The job ended: it waits for nothing now, and its tasks leave memory with their counts kept."""
        tally = self._tally(job_id)
        tally.closed = True
        tally.waiting.clear()
        self.touch(job_id)

    def known(self, job_id: str) -> bool:
        """Whether the job's counts are here (a job that ended before this process started is counted on demand)."""
        return job_id in self._jobs

    def load(self, job_id: str, *, tasks: dict[str, int], audits: dict[str, int], leases: dict[str, int]) -> None:
        """The counts of a job that ended before this process started, recounted once from the database."""
        self._clock += 1
        self._jobs[job_id] = Tally(self._clock, Counter(tasks), Counter(audits), Counter(leases), closed=True)

    def view(self, job_id: str) -> dict[str, Any]:
        """{"version", "task_states" (made tasks only), "audits", "lease_states", "waiting"} of a known job."""
        tally = self._jobs[job_id]
        return {"version": tally.version, "task_states": _positive(tally.tasks), "audits": _positive(tally.audits),
                "lease_states": _positive(tally.leases), "waiting": _positive(tally.waiting)}

    def waiting(self, job_id: str) -> dict[str, int]:
        """Why the job's pending tasks wait, as {reason: tasks}."""
        tally = self._jobs.get(job_id)
        return {} if tally is None else _positive(tally.waiting)

    def take_changed(self) -> set[str]:
        """The jobs whose version changed since the last call."""
        changed, self._changed = self._changed, set()
        return changed
