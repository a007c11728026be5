"""Audits of validated tasks: drawing them, taking auditors' results, and convicting a worker proven wrong.

A validated task may be drawn for an audit (coordinator.auditing holds the rules and probabilities), which keeps its
job open until it is settled, and an audit that proves a result wrong corrects the task, slashes and bans. (Not to
be confused with coordinator.audit, the ledger's checkpoints and proofs.)

A mixin of coordinator.scheduler.Scheduler, which owns the state: every method takes `self: Scheduler`, so mypy
checks what it reads and calls on the other mixins (coordinator.leasing, coordinator.judging).
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

import numpy as np

from coordinator import auditing, states
from coordinator.judging import _check_output
from coordinator.model import Job, Lease, Result, Task, Worker
from depin import accounts, codec, kernels
from depin.kernels import Kernel, wire_digest
from depin.protocol import AckItem

if TYPE_CHECKING:
    from coordinator.scheduler import Scheduler


class Auditor:
    """Audits of validated tasks and convictions (a mixin of Scheduler)."""

    # Every method takes `self: Scheduler`: it reads state Scheduler.__init__ sets and calls the other mixins, and
    # the annotation lets mypy check both. mypy accepts a subclass as a self-type only with `type: ignore[misc]`
    # ("erased type of self is not a supertype of its class"); the ignores cover that one check on the def line.

    def _under_audit(self: Scheduler, worker_id: str) -> bool:  # type: ignore[misc]
        return any(t.audit in states.OPEN_AUDIT and any(self.results[lid].worker_id == worker_id for lid in t.results)
                   for t in self.tasks.values())

    def _draw_audit(self: Scheduler, task: Task, job: Job, winners: list[Result],  # type: ignore[misc]
                    now: int) -> None:
        # Whether to re-compute this just-validated task later. Never for a job that asked for no cross-check
        # (quorum 1), for a result the kernel's check confirmed, or where the escrow has no room for two auditors.
        if job.quorum == 1 or any(r.verified is True for r in winners) or len(winners) + 2 > job.max_results:
            return
        single = task.quorum == 1
        probation = any(self.on_probation(r.worker_id) for r in winners)
        if auditing.drawn(auditing.audit_probability(self.audits, single=single, probation=probation), self._rand):
            self._open_audit(task, job, now)
            if not self._could_audit(task, job, now):  # nobody present could ever take it: say so, do not wait
                self._close_audit(task, job, "skipped", now)

    def _could_audit(self: Scheduler, task: Task, job: Job, now: int) -> bool:  # type: ignore[misc]
        # Whether a present worker past probation could take a slot of the task (a replica, or its audit), if drawn,
        # now or once done with what it holds: a busy worker is not an absent one (else an audit drawn while every
        # honest worker is computing would be skipped at once, and a cheater and its Sybil need only wait for that).
        kernel_key = f"{job.kernel}@{job.kernel_version}"
        may = self._may_check if task.state == "validated" else self._eligible
        return self.roster.find(
            self._present(kernel_key, job, now, seasoned=True),
            lambda w: (not self.on_probation(w) and self._could_serve(w, job, now, room=False)
                       and may(task, w, trusted=self.trust.trusted(w, kernel_key))))

    def _open_audit(self: Scheduler, task: Task, job: Job, now: int) -> None:  # type: ignore[misc]
        task.audit = states.move(states.AUDIT, task.audit, "due")
        task.audit_since = now
        job.audits_open += 1
        self._open[job.job_id].add(task)
        self._freed[job.job_id] += 1
        self._changes.tasks[task.task_id] = task
        heapq.heappush(self._wakeups, (now + self.audits.fallback_ms, task.task_id))
        heapq.heappush(self._wakeups, (now + self.audits.give_up_ms, task.task_id))

    def _may_audit(self: Scheduler, task: Task, job: Job, worker_id: str, is_trusted: bool,  # type: ignore[misc]
                   now: int) -> bool:
        # An audit slot: one audit lease at a time, never to a holder of the task or a worker on probation, drawn
        # (placement) among trusted workers where any is present.
        if any(self.leases[lid].state == "active" for lid in task.leases):
            return False
        if self.on_probation(worker_id) or not self._may_check(task, worker_id, trusted=is_trusted):
            return False
        if not is_trusted and now - task.audit_since < self.audits.fallback_ms:
            return False  # trusted auditors only, for a while (coordinator.auditing)
        task.needs_trusted = True  # the draw prefers trusted workers (Leasing._draw)
        return self._placed_here(task, job, worker_id, now)

    def _take_audit(self: Scheduler, now: int, lease: Lease, task: Task, job: Job,  # type: ignore[misc]
                    kernel: Kernel, wire: bytes, output: Any) -> AckItem:
        """An audit result: it confirms the task's output, disputes it, or settles a dispute."""
        array, error = _check_output(kernel, task.params, output)
        result = self._returned(now, lease, wire, error)
        self.results[result.lease_id] = result
        self._changes.results[result.lease_id] = result
        self._freed[task.job_id] += 1  # unless this settles it, the audit slot is offered again
        if error:
            self._judge(result, "invalid", job, now)  # another auditor is drawn
            return AckItem(lease.lease_id, "rejected", f"malformed output: {error}")
        task.results.append(result.lease_id)
        assert array is not None and task.canonical is not None
        canonical = codec.array_from_wire(codec.decode(task.canonical))

        def same(a: np.ndarray, digest: bytes, b: np.ndarray, other: bytes) -> bool:
            return digest == other or (not kernel.exact and kernel.compare(a, b))

        winners = [self.results[lid] for lid in task.results if self.results[lid].verdict == "valid"]
        disputing = [self.results[lid] for lid in task.results
                     if self.results[lid].verdict == "pending" and lid != result.lease_id]
        if same(array, result.digest, canonical, wire_digest(task.canonical)):
            for earlier in disputing:  # an auditor that disagreed with the output that stands was wrong
                self._judge(earlier, "invalid", job, now)
            self._audit_passed(task, job, winners, result, now)
        elif disputing and any(same(array, result.digest, codec.array_from_wire(codec.decode(d.output or b"")),
                                    d.digest) for d in disputing if d.output is not None):
            agreeing = [d for d in disputing if d.output is not None and same(
                array, result.digest, codec.array_from_wire(codec.decode(d.output)), d.digest)]
            self._audit_overturned(task, job, winners, [*agreeing, result], now)
        elif len(disputing) + 1 >= self.audits.max_audits:
            self._close_audit(task, job, "unresolved", now)
        else:
            if task.audit == "due":
                task.audit = states.move(states.AUDIT, task.audit, "disputed")
                self._changes.tasks[task.task_id] = task
        return AckItem(lease.lease_id, "accepted", "")

    def _audit_passed(self: Scheduler, task: Task, job: Job, winners: list[Result],  # type: ignore[misc]
                      auditor: Result, now: int) -> None:
        self._judge(auditor, "valid", job, now, partners=[r.worker_id for r in winners])
        self._pay_auditor(task, auditor, job, now)
        for r in winners:  # a clean audit: what these workers had outstanding unchecked is cleared
            worker = self.workers[r.worker_id]
            worker.exposure, worker.audits_passed = 0, worker.audits_passed + 1
            self._changes.workers[worker.worker_id] = worker
        self._close_audit(task, job, "passed", now)

    def _audit_overturned(self: Scheduler, task: Task, job: Job, winners: list[Result],  # type: ignore[misc]
                          auditors: list[Result], now: int) -> None:
        # Two auditors agree on another output: the task's output was wrong. Theirs replaces it, they are paid, and
        # every worker that agreed on the wrong one is convicted.
        task.canonical = auditors[0].output
        for auditor in auditors:
            self._judge(auditor, "valid", job, now, partners=[a.worker_id for a in auditors if a is not auditor])
            self._pay_auditor(task, auditor, job, now)
        for r in winners:
            r.verdict = states.move(states.RESULT, r.verdict, "overturned")
            self._changes.results[r.lease_id] = r
            self._convict(self.workers[r.worker_id], task, job, now)
        self._close_audit(task, job, "corrected", now)

    def _pay_auditor(self: Scheduler, task: Task, auditor: Result, job: Job, now: int) -> None:  # type: ignore[misc]
        # The escrow holds max_results rewards per task: an auditor beyond them (a third, after a dispute) is unpaid.
        if sum(1 for lid in task.results if self.results[lid].verdict in ("valid", "overturned")) <= job.max_results:
            self._pay(auditor, job, now)

    def _convict(self: Scheduler, worker: Worker, task: Task, job: Job, now: int) -> None:  # type: ignore[misc]
        """A result of this worker was proven wrong: its bond goes to the harmed submitter, it is banned, and every
        other result it had a hand in since its last clean audit (in unfinished jobs) is audited."""
        worker.audits_failed += 1
        self._changes.workers[worker.worker_id] = worker
        bonded = self.book.accounts.bonded(worker.worker_id)
        if bonded > 0 and job.submitter != worker.worker_id:  # (a worker that cheats its own job harmed nobody else)
            self._append(now, "slash", accounts.bond_account(worker.worker_id), job.submitter, bonded, job.job_id,
                         task.task_id)
            self.trust.set_bond(worker.worker_id, 0)
        kernel_key = f"{job.kernel}@{job.kernel_version}"
        record, _ = self.trust.judged_invalid(worker.worker_id, kernel_key)
        self._changes.trust[(record.worker_id, record.kernel)] = record
        if worker.banned is None:
            reason = f"a result proven wrong by audit (task {task.task_id})"
            self.trust.standing_of(worker.worker_id).banned = reason
            self._ban(worker, reason, now)
        for other in list(self.tasks.values()):
            if (other.state == "validated" and other.audit is None and other.task_id != task.task_id
                    and any(self.results[lid].worker_id == worker.worker_id and self.results[lid].verdict == "valid"
                            for lid in other.results)):
                self._open_audit(other, self.jobs[other.job_id], now)

    def _close_audit(self: Scheduler, task: Task, job: Job, state: str, now: int) -> None:  # type: ignore[misc]
        task.audit = states.move(states.AUDIT, task.audit, state)
        task.needs_trusted, task.reserved = False, None
        self._changes.tasks[task.task_id] = task
        for lease_id in task.leases:
            lease = self.leases[lease_id]
            if lease.state in ("active", "expired"):
                self._move_lease(lease, "cancelled")
        job.audits_open -= 1
        self._changes.jobs[job.job_id] = job
        self._maybe_done(job, kernels.get(job.kernel, job.kernel_version), now)
