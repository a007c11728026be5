"""Results and verdicts: taking a worker's results, judging them by quorum, and what each verdict does.

When results arrive, quorum.decide judges them: an agreeing quorum (with a trusted member, while one could be asked,
for a bounded time) validates the task and pays each agreeing worker one reward entry; a disagreement asks for one
more result (and escalates when fresh identities are involved); too many errors of established workers or too many
results fail the task and its job. Every verdict feeds the TrustBook (independent partners only; out-voted by a mob
is a dispute, not a fault). When every task is validated and no audit is open the kernel merges the canonical
outputs. Every credit, of any kind, moves through `_append`.

A mixin of coordinator.scheduler.Scheduler, which owns the state: every method takes `self: Scheduler`, so mypy
checks what it reads and calls on the other mixins (coordinator.leasing, coordinator.auditor).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from coordinator import placement, states
from coordinator.model import Job, Lease, Result, Task, Worker
from coordinator.quorum import Candidate, Decision, decide
from depin import accounts, codec, kernels, ledger
from depin.errors import Forbidden, PeerProtocolError
from depin.kernels import Kernel, wire_digest
from depin.protocol import AckItem, ResultItem

if TYPE_CHECKING:
    from coordinator.scheduler import Scheduler


KERNEL_FAILED = "kernel failed: "  # how the error of a result that says its kernel failed begins

class Judging:
    """Results, verdicts, trust, bans and payments (a mixin of Scheduler)."""

    # Every method takes `self: Scheduler`: it reads state Scheduler.__init__ sets and calls the other mixins, and
    # the annotation lets mypy check both. mypy accepts a subclass as a self-type only with `type: ignore[misc]`
    # ("erased type of self is not a supertype of its class"); the ignores cover that one check on the def line.

    def report(self: Scheduler, *, now: int, worker_id: str,  # type: ignore[misc]
               reports: Iterable[ResultItem]) -> list[AckItem]:
        """Take a worker's results; each gets an Ack. Accepted results are judged as soon as quorum allows."""
        if self.trust.banned(worker_id):
            raise Forbidden(f"worker banned: {self.trust.banned(worker_id)}")
        acks = []
        for rep in reports:
            if self.trust.banned(worker_id):  # banned by an earlier item of this very batch
                acks.append(AckItem(rep.lease_id, "rejected", f"worker banned: {self.trust.banned(worker_id)}"))
                continue
            try:
                acks.append(self._report_one(now, worker_id, rep))
            except PeerProtocolError as exc:
                acks.append(AckItem(rep.lease_id, "rejected", str(exc)))
        return acks

    def _report_one(self: Scheduler, now: int, worker_id: str, rep: ResultItem) -> AckItem:  # type: ignore[misc]
        wire = codec.encode(rep.output) if isinstance(rep.output, dict) else b""
        lease = self.leases.get(rep.lease_id)
        if lease is None:
            pending = self._changes.results.get(rep.lease_id)  # its job ended since the shell last took changes
            earlier = (self._archive(rep.lease_id) if pending is None
                       else (pending.worker_id, pending.task_id, pending.digest, pending.verdict))
            if earlier is None:
                return AckItem(rep.lease_id, "rejected", "unknown lease, or its job has ended")
            if earlier[1] != rep.task_id:
                return AckItem(rep.lease_id, "rejected", "task_id does not match the lease")
            return _resend_ack(rep.lease_id, worker_id, wire, earlier[0], earlier[2], earlier[3])
        if lease.worker_id != worker_id:
            return AckItem(rep.lease_id, "rejected", "lease belongs to another worker")
        if lease.task_id != rep.task_id:
            return AckItem(rep.lease_id, "rejected", "task_id does not match the lease")
        task = self.tasks[lease.task_id]
        job = self.jobs[lease.job_id]
        kernel = kernels.get(job.kernel, job.kernel_version)
        if lease.state == "returned":
            earlier_result = self.results[lease.lease_id]
            return _resend_ack(rep.lease_id, worker_id, wire, earlier_result.worker_id, earlier_result.digest,
                               earlier_result.verdict)
        if lease.state == "released":
            return AckItem(rep.lease_id, "rejected", "lease was given back")
        if lease.state in ("active", "expired") and task.state == "validated" and task.audit in states.OPEN_AUDIT:
            return self._take_audit(now, lease, task, job, kernel, wire, rep.output)
        if lease.state == "cancelled" or task.state != "pending":
            return AckItem(rep.lease_id, "rejected", f"task already {task.state}")
        result = self._take_result(now, lease, task, job, kernel, wire, rep.output, rep.error)
        self._settle(task, job, kernel, now)
        if rep.error is not None and job.kernel_version == 0:
            return AckItem(rep.lease_id, "rejected", f"kernel failed: {rep.error}")
        if result.error:
            return AckItem(rep.lease_id, "rejected", f"malformed output: {result.error}")
        if result.verified is False:
            return AckItem(rep.lease_id, "rejected", "the kernel's check refutes this result")
        return AckItem(rep.lease_id, "accepted", "")

    def _take_result(self: Scheduler, now: int, lease: Lease, task: Task, job: Job,  # type: ignore[misc]
                     kernel: Kernel, wire: bytes, output: Any, failed: str | None = None) -> Result:
        """Record one result with everything known about it at arrival: shape, kernel check, speed, trust. A
        published kernel's failure (`failed`: the worker's reason) is an error result that is not held against its
        worker: the kernel may be at fault, and a submitter must not be able to get honest workers banned by
        publishing a kernel that crashes. (A built-in kernel does not fail: its error results count as malformed.)"""
        kernel_key = f"{job.kernel}@{job.kernel_version}"
        array, error = (None, f"{KERNEL_FAILED}{failed}") if failed is not None else _check_output(
            kernel, task.params, output)
        result = self._returned(now, lease, wire, error)
        if array is not None and kernel.verify is not None:
            result.verified = kernel.verify(task.params, array)
        if array is not None and self.speed.too_fast(kernel_key, kernel.work(task.params), lease.worker_id,
                                                     now - lease.issued_ms):
            result.too_fast = True
            self._changes.trust[(lease.worker_id, kernel_key)] = self.trust.note_fast(lease.worker_id, kernel_key)
            worker = self.workers[lease.worker_id]
            worker.too_fast += 1
            self._changes.workers[worker.worker_id] = worker
        result.trusted = self.trust.trusted(lease.worker_id, kernel_key) and not result.too_fast
        if task.single == lease.lease_id and (not result.trusted or error or result.verified is False):
            task.quorum, task.single = job.quorum, None  # a doubtful single result needs company after all
            self._changes.tasks[task.task_id] = task
        self.results[result.lease_id] = result
        self._changes.results[result.lease_id] = result
        task.results.append(result.lease_id)
        if error or result.verified is False:
            self._judge(result, "invalid", job, now, binding=failed is None or job.kernel_version != 0)
        return result

    def _returned(self: Scheduler, now: int, lease: Lease, wire: bytes,  # type: ignore[misc]
                  error: str | None) -> Result:
        """The lease's result as it arrived (pending, its output kept unless malformed); the lease is returned."""
        self._move_lease(lease, "returned")
        return Result(
            lease_id=lease.lease_id, task_id=lease.task_id, job_id=lease.job_id, worker_id=lease.worker_id,
            digest=wire_digest(wire), output=None if error else wire, verdict="pending", received_ms=now,
            error=error,
        )

    def _decide(self: Scheduler, task: Task, job: Job, now: int) -> Decision:  # type: ignore[misc]
        kernel = kernels.get(job.kernel, job.kernel_version)
        candidates = [self._candidate(self.results[lid], kernel.exact) for lid in task.results]
        return decide(candidates, quorum=task.quorum, max_results=job.max_results, max_errors=job.max_errors,
                      exact=kernel.exact, compare=kernel.compare, need_trusted=self._need_trusted(task, job, now))

    def _need_trusted(self: Scheduler, task: Task, job: Job, now: int) -> bool:  # type: ignore[misc]
        # Once a trusted worker has answered, or while one could still be asked, untrusted agreement is not enough.
        if task.quorum <= 1 or task.fell_back:
            return False
        return (any(self.results[lid].trusted and self.results[lid].error is None
                    and self.results[lid].verified is not False for lid in task.results)
                or self._trusted_could_help(task, job, now))

    def _counts(self: Scheduler, result: Result) -> bool:  # type: ignore[misc]
        # Error results of an identity on probation, or banned, never count toward failing a task.
        error = result.error is not None or result.verified is False
        return not error or not (self.on_probation(result.worker_id) or self.trust.banned(result.worker_id))

    def _candidate(self: Scheduler, result: Result, exact: bool) -> Candidate:  # type: ignore[misc]
        counts = self._counts(result)
        if result.error is not None or (result.output is None and result.verdict != "valid"):
            return Candidate(result.lease_id, result.digest, None, result.verified, result.trusted, counts=counts)
        # Exact kernels compare digests only; skip decoding the array.
        array = _EMPTY if exact or result.output is None else codec.array_from_wire(codec.decode(result.output))
        return Candidate(result.lease_id, result.digest, array, result.verified, result.trusted,
                         probation=self.on_probation(result.worker_id))

    def _settle(self: Scheduler, task: Task, job: Job, kernel: Kernel, now: int) -> None:  # type: ignore[misc]
        decision = self._decide(task, job, now)
        if decision.state == "pending":
            if (decision.groups >= 2 and task.quorum == job.quorum and not decision.trusted_group
                    and any(self.on_probation(self.results[lid].worker_id) for lid in task.results)
                    and not self._need_trusted(task, job, now) and self._could_audit(task, job, now)):
                # Untrusted results disagree, identities on probation among them, and a worker past probation could
                # break the tie: escalate rather than let the first pair to agree decide. One more agreeing result
                # is needed, and its slot is drawn (placement) from workers past probation.
                task.quorum = min(job.quorum + 1, job.max_results)
                self._changes.tasks[task.task_id] = task
                decision = self._decide(task, job, now)
            if decision.state == "pending":
                self._refresh_wanted(task, now)
                return
        if decision.state == "failed":
            task.state = states.move(states.TASK, task.state, "failed")
            self._changes.tasks[task.task_id] = task
            failures = [error for lid in task.results
                        if (error := self.results[lid].error) is not None and error.startswith(KERNEL_FAILED)]
            why = f" (the last: {failures[-1]})" if failures else ""  # a published kernel that fails says how
            self._finish_job(job, "failed", now, f"task {task.index}: {decision.reason}{why}")
            return
        task.state = states.move(states.TASK, task.state, "validated")
        assert decision.canonical is not None
        task.canonical = self.results[decision.canonical].output
        task.wanted = task.backups = 0
        task.reserved = None
        self._set_waiting(task, job, None)
        self._changes.tasks[task.task_id] = task
        winners = [self.results[lid] for lid in decision.valid]
        # A loser is held to account only by an outcome a mob of fresh identities cannot produce: the kernel's check,
        # a trusted member, or agreeing workers that are all past probation.
        binding = (any(r.verified is True or r.trusted for r in winners)
                   or (len(winners) >= 2 and not any(self.on_probation(r.worker_id) for r in winners)))
        for paid, result in enumerate(winners):
            partners = [r.worker_id for r in winners if r.worker_id != result.worker_id]
            self._judge(result, "valid", job, now, partners=partners)
            if paid < job.max_results:  # the escrow holds max_results rewards per task; late extras go unpaid
                self._pay(result, job, now)
        for lease_id in decision.invalid:
            if self.results[lease_id].verdict == "pending":
                self._judge(self.results[lease_id], "invalid", job, now, binding=binding)
        for lease_id in task.leases:
            lease = self.leases[lease_id]
            if lease.state in ("active", "expired"):
                self._move_lease(lease, "cancelled")
        if task.quorum == 1 and job.quorum > 1 and len(winners) == 1 and winners[0].verified is not True:
            worker = self.workers[winners[0].worker_id]  # a single result: unchecked until a clean audit
            worker.exposure += job.price
        self._draw_audit(task, job, winners, now)
        job.tasks_validated += 1
        self._changes.jobs[job.job_id] = job
        self._maybe_done(job, kernel, now)

    def _maybe_done(self: Scheduler, job: Job, kernel: Kernel, now: int) -> None:  # type: ignore[misc]
        # A job is done when every task is validated and no audit keeps it open; then its outputs are merged.
        if job.tasks_validated == job.n_tasks and job.audits_open == 0 and job.state not in states.FINISHED_JOB:
            outputs = [
                codec.array_from_wire(codec.decode(t.canonical))
                for t in sorted(self._job_tasks[job.job_id], key=lambda t: t.index) if t.canonical is not None
            ]
            merged = kernel.merge(job.params, outputs)
            self._changes.merged[job.job_id] = codec.encode(codec.array_to_wire(merged))
            self._finish_job(job, "done", now, None)

    def _judge(self: Scheduler, result: Result, verdict: str, job: Job, now: int,  # type: ignore[misc]
               *, partners: Iterable[str] = (), binding: bool = True) -> None:
        """Record a verdict and what it does to the worker: trust, capacity, speed reference, ban. An invalid
        verdict that is not `binding` (out-voted by identities that prove nothing) is a dispute, held against
        nobody."""
        result.verdict = states.move(states.RESULT, result.verdict, verdict)
        result.output = None  # the canonical output lives on the task; judged copies are not kept
        self._changes.results[result.lease_id] = result
        worker = self.workers[result.worker_id]
        kernel_key = f"{job.kernel}@{job.kernel_version}"
        if verdict == "valid":
            worker.validated += 1
            if worker.validated == self.trust.policy.probation_valid:
                self._refile(worker)  # past probation now: drawn from the other bags (coordinator.roster)
            worker.capacity = placement.grown(worker.capacity, self.placement)
            if not result.too_fast:
                lease = self.leases[result.lease_id]
                work = kernels.get(job.kernel, job.kernel_version).work(self.tasks[result.task_id].params)
                self.speed.record(kernel_key, work, result.worker_id, result.received_ms - lease.issued_ms)
            record = self.trust.judged_valid(result.worker_id, kernel_key, partners=partners,
                                             verified=result.verified is True, price=job.price)
        elif not binding:
            worker.rejected += 1
            record = self.trust.judged_disputed(result.worker_id, kernel_key)
        else:
            worker.rejected += 1
            worker.capacity = placement.shrunk(worker.capacity)
            record, ban = self.trust.judged_invalid(result.worker_id, kernel_key)
            if ban is not None:
                self._ban(worker, ban, now)
        self._changes.trust[(record.worker_id, record.kernel)] = record
        self._changes.workers[worker.worker_id] = worker

    def _ban(self: Scheduler, worker: Worker, reason: str, now: int) -> None:  # type: ignore[misc]
        """Shut a worker out: its leases go back, its undecided results stop counting, nothing more is paid."""
        worker.banned = reason
        self._changes.workers[worker.worker_id] = worker
        touched: list[Task] = []
        for lease in list(self.leases.values()):
            if lease.worker_id == worker.worker_id and lease.state == "active":
                self._move_lease(lease, "cancelled")
                touched.append(self.tasks[lease.task_id])
        for result in list(self.results.values()):
            if result.worker_id == worker.worker_id and result.verdict == "pending":
                result.verdict = states.move(states.RESULT, result.verdict, "void")
                result.output = None
                self._changes.results[result.lease_id] = result
                task = self.tasks[result.task_id]
                task.results.remove(result.lease_id)  # set aside: it neither agrees nor counts as an error
                touched.append(task)
        for task in touched:
            if task.task_id not in self.tasks:
                continue  # its job ended while an earlier task was reconsidered
            if task.single is not None and self.leases[task.single].worker_id == worker.worker_id:
                self._lease_ended_empty(task, self.leases[task.single])
            self._reconsider(task, now)

    def _pay(self: Scheduler, result: Result, job: Job, now: int) -> None:  # type: ignore[misc]
        self._append(now, "reward", accounts.escrow_account(job.job_id), result.worker_id, job.price, job.job_id,
                     result.task_id)

    def _append(self: Scheduler, now: int, kind: str, from_: str, to: str, amount: int,  # type: ignore[misc]
                job_id: str | None = None, task_id: str | None = None) -> ledger.Entry:
        # Every credit moves through here: the Book checks the money rules before anything is recorded.
        entry, nodes = self.book.append(time=now, kind=kind, from_=from_, to=to, amount=amount, job_id=job_id,
                                        task_id=task_id)
        self._changes.entries.append(entry)
        self._changes.nodes.extend(nodes)
        return entry


_EMPTY = np.zeros(0, dtype=np.uint8)


def _resend_ack(lease_id: str, worker_id: str, wire: bytes, earlier_worker: str, earlier_digest: bytes,
                earlier_verdict: str) -> AckItem:
    """The answer to a result for a lease that already has one: the same verdict again, never a second credit."""
    if earlier_worker != worker_id:
        return AckItem(lease_id, "rejected", "lease belongs to another worker")
    if earlier_digest != wire_digest(wire):
        return AckItem(lease_id, "rejected", "a different result was already received for this lease")
    if earlier_verdict in ("invalid", "void"):
        return AckItem(lease_id, "rejected", f"result already received and judged {earlier_verdict}")
    return AckItem(lease_id, "duplicate", "result already received")


def _check_output(kernel: Kernel, task_params: dict[str, Any], output: Any) -> tuple[np.ndarray | None, str | None]:
    """(array, None) if `output` is a well-formed array of the shape this task must produce, else (None, why not)."""
    try:
        array = codec.array_from_wire(output)
        kernel.check_output(task_params, array)
    except PeerProtocolError as exc:
        return None, str(exc)
    return array, None
