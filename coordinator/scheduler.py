"""The coordinator's brain: jobs, tasks, leases, results, quorum and rewards, with no I/O at all.

The aiohttp shell calls one method per request with the current time; the method checks, decides and mutates
the in-memory state, and records every row it touched. The shell then writes `take_changes()` to the database
in one transaction before it answers, so nothing is acknowledged that is not durable. On restart the shell
loads the rows back and calls `Scheduler.restore`.

How a task moves: it is created `pending` and wants `replicas` results from distinct workers. Each lease names
one worker; a lease that times out is `expired` and the task is offered again (a late result on it still
counts). When results arrive, quorum.decide judges them: an agreeing quorum validates the task and pays each
agreeing worker one reward entry; a disagreement asks for one more result; too many results without agreement
fail the task and its job. When every task is validated the kernel merges the canonical outputs.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coordinator import states
from coordinator.quorum import Candidate, decide
from depin import codec, kernels, ledger, protocol
from depin.crypto import SigningKey
from depin.errors import Conflict, Forbidden, NotFound, PeerProtocolError, UserError
from depin.kernels import Kernel, wire_digest
from depin.protocol import AckItem, LeaseGrant, ResultItem


@dataclass
class Job:
    job_id: str
    kernel: str
    kernel_version: int
    params: dict[str, Any]
    n_tasks: int
    replicas: int
    max_results: int
    price: int
    submitter: str
    state: str
    created_ms: int
    finished_ms: int | None = None
    error: str | None = None
    tasks_validated: int = 0


@dataclass
class Task:
    task_id: str
    job_id: str
    index: int
    params: dict[str, Any]
    payload: bytes  # the signed task message, canonical msgpack
    sig: bytes
    state: str = "pending"
    canonical: bytes | None = None  # the validated output, as wire msgpack
    # Not persisted as columns; rebuilt from the lease and result rows.
    leases: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)
    workers: set[str] = field(default_factory=set)
    wanted: int = 0


@dataclass
class Lease:
    lease_id: str
    task_id: str
    job_id: str
    worker_id: str
    issued_ms: int
    expires_ms: int
    state: str = "active"


@dataclass
class Result:
    lease_id: str
    task_id: str
    job_id: str
    worker_id: str
    digest: bytes
    output: bytes | None  # wire msgpack of the array while it may still matter; None if malformed or dropped
    verdict: str
    received_ms: int
    error: str | None = None


@dataclass
class Worker:
    worker_id: str
    public_key: bytes
    first_seen_ms: int
    last_seen_ms: int
    validated: int = 0
    rejected: int = 0
    balance: int = 0


@dataclass
class Changes:
    """Every row touched since the last take_changes(), for the shell to persist in one transaction."""

    jobs: dict[str, Job] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)
    entries: list[ledger.Entry] = field(default_factory=list)
    merged: dict[str, bytes] = field(default_factory=dict)  # job id -> merged output (wire msgpack), once done

    def __bool__(self) -> bool:
        return any((self.jobs, self.tasks, self.leases, self.results, self.workers, self.entries, self.merged))


LAST_SEEN_PERSIST_MS = 10_000


class Scheduler:
    """All coordinator state and every decision about it."""

    def __init__(
        self,
        *,
        key: SigningKey,
        lease_timeout_ms: int,
        new_id: Callable[[], str],
        archive: Callable[[str], tuple[str, str, bytes, str] | None] = lambda lease_id: None,
    ) -> None:
        self.key = key
        # Looks up (worker_id, task_id, digest, verdict) of a result whose job has left memory, so a resend after the
        # job ended still gets its original verdict.
        self._archive = archive
        self.lease_timeout_ms = lease_timeout_ms
        self._new_id = new_id
        self.jobs: dict[str, Job] = {}
        self.tasks: dict[str, Task] = {}  # only tasks of unfinished jobs, in job then index order
        self._job_tasks: dict[str, list[Task]] = {}  # unfinished job id -> its tasks in index order
        self.leases: dict[str, Lease] = {}  # only leases of unfinished jobs
        self.results: dict[str, Result] = {}  # only results of unfinished jobs
        self.workers: dict[str, Worker] = {}
        self.head: ledger.Entry | None = None
        self._expiry: list[tuple[int, str]] = []
        self._seen_persisted: dict[str, int] = {}  # worker id -> last_seen_ms last handed to the store
        self._changes = Changes()

    # ---- restore ---------------------------------------------------------------------------------------

    @classmethod
    def restore(
        cls,
        *,
        key: SigningKey,
        lease_timeout_ms: int,
        new_id: Callable[[], str],
        archive: Callable[[str], tuple[str, str, bytes, str] | None] = lambda lease_id: None,
        jobs: Iterable[Job],
        tasks: Iterable[Task],
        leases: Iterable[Lease],
        results: Iterable[Result],
        workers: Iterable[Worker],
        head: ledger.Entry | None,
    ) -> Scheduler:
        """A scheduler over rows loaded from the database (tasks/leases/results of unfinished jobs only)."""
        s = cls(key=key, lease_timeout_ms=lease_timeout_ms, new_id=new_id, archive=archive)
        s.jobs = {j.job_id: j for j in jobs}
        s.tasks = {t.task_id: t for t in sorted(tasks, key=lambda t: (s.jobs[t.job_id].created_ms, t.job_id, t.index))}
        for t in s.tasks.values():
            s._job_tasks.setdefault(t.job_id, []).append(t)
        for lease in leases:
            s.leases[lease.lease_id] = lease
            task = s.tasks[lease.task_id]
            task.leases.append(lease.lease_id)
            if lease.state != "released":
                task.workers.add(lease.worker_id)
            if lease.state == "active":
                heapq.heappush(s._expiry, (lease.expires_ms, lease.lease_id))
        for r in sorted(results, key=lambda r: r.received_ms):
            s.results[r.lease_id] = r
            s.tasks[r.task_id].results.append(r.lease_id)
        s.workers = {w.worker_id: w for w in workers}
        s.head = head
        for task in s.tasks.values():
            if task.state == "pending":
                s._refresh_wanted(task)
        return s

    # ---- jobs ------------------------------------------------------------------------------------------

    def submit(
        self,
        *,
        now: int,
        submitter: str,
        kernel_name: str,
        params: dict[str, Any],
        n_tasks: int,
        replicas: int,
        max_results: int | None,
        price: int,
    ) -> Job:
        """Create a job and its signed tasks; UserError for anything the submitter got wrong."""
        kernel = kernels.get(kernel_name)
        checked = kernel.validate(params)
        if not 1 <= replicas <= protocol.MAX_REPLICAS:
            raise UserError(f"replicas must be between 1 and {protocol.MAX_REPLICAS}")
        limit = min(replicas + 3, protocol.MAX_RESULTS) if max_results is None else max_results
        if not replicas <= limit <= protocol.MAX_RESULTS:
            raise UserError(f"max_results must be between replicas ({replicas}) and {protocol.MAX_RESULTS}")
        if not 1 <= price <= protocol.MAX_PRICE:
            raise UserError(f"price must be a whole number of credits from 1 to {protocol.MAX_PRICE}")
        pieces = kernel.split(checked, n_tasks)
        job = Job(
            job_id=self._new_id(), kernel=kernel.name, kernel_version=kernel.version, params=checked,
            n_tasks=len(pieces), replicas=replicas, max_results=limit, price=price, submitter=submitter,
            state="queued", created_ms=now,
        )
        self.jobs[job.job_id] = job
        self._changes.jobs[job.job_id] = job
        self._job_tasks[job.job_id] = []
        for index, task_params in enumerate(pieces):
            task_id = f"{job.job_id}-{index}"
            payload = codec.encode({
                "task_id": task_id, "job_id": job.job_id, "kernel": kernel.name,
                "kernel_version": kernel.version, "params": task_params, "coordinator": self.key.id,
            })
            task = Task(
                task_id=task_id, job_id=job.job_id, index=index, params=task_params,
                payload=payload, sig=self.key.sign("task", payload), wanted=replicas,
            )
            self.tasks[task_id] = task
            self._job_tasks[job.job_id].append(task)
            self._changes.tasks[task_id] = task
        return job

    def cancel(self, *, now: int, job_id: str, requester: str) -> Job:
        """Cancel an unfinished job; only its submitter may."""
        job = self._job(job_id)
        if requester != job.submitter:
            raise Forbidden("only the job's submitter can cancel it")
        if job.state in states.FINISHED_JOB:
            raise Conflict(f"job {job_id} is already {job.state}")
        self._finish_job(job, "cancelled", now, None)
        return job

    def _job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    def _finish_job(self, job: Job, state: str, now: int, error: str | None) -> None:
        job.state = states.move(states.JOB, job.state, state)
        job.finished_ms, job.error = now, error
        self._changes.jobs[job.job_id] = job
        for task in self._job_tasks.pop(job.job_id, []):
            if task.state == "pending":
                task.state = states.move(states.TASK, task.state, "cancelled")
                self._changes.tasks[task.task_id] = task
            for lease_id in task.leases:
                lease = self.leases.pop(lease_id)
                if lease.state in ("active", "expired"):
                    lease.state = states.move(states.LEASE, lease.state, "cancelled")
                    self._changes.leases[lease_id] = lease
            for lease_id in task.results:
                result = self.results.pop(lease_id)
                if result.verdict == "pending":
                    result.verdict = states.move(states.RESULT, result.verdict, "void")
                    result.output = None
                    self._changes.results[lease_id] = result
            del self.tasks[task.task_id]

    # ---- leasing ---------------------------------------------------------------------------------------

    def touch_worker(self, *, now: int, worker_id: str, public_key: bytes) -> Worker:
        """Register a worker on first contact and note that it was seen."""
        worker = self.workers.get(worker_id)
        if worker is None:
            worker = Worker(worker_id=worker_id, public_key=public_key, first_seen_ms=now, last_seen_ms=now)
            self.workers[worker_id] = worker
        worker.last_seen_ms = max(worker.last_seen_ms, now)
        # last_seen is for display: persisting it at most this often keeps a write off most lease requests.
        if now - self._seen_persisted.get(worker_id, -LAST_SEEN_PERSIST_MS) >= LAST_SEEN_PERSIST_MS:
            self._seen_persisted[worker_id] = now
            self._changes.workers[worker_id] = worker
        return worker

    def lease(self, *, now: int, worker_id: str, max_tasks: int, kernels_ok: Iterable[str]) -> list[LeaseGrant]:
        """Up to `max_tasks` leases for this worker, never two of one task, oldest job first."""
        self.expire(now)
        accepted = set(kernels_ok)
        grants: list[LeaseGrant] = []
        for task in self.tasks.values():
            if len(grants) >= max_tasks:
                break
            if task.wanted <= 0 or worker_id in task.workers or task.state != "pending":
                continue
            job = self.jobs[task.job_id]
            if f"{job.kernel}@{job.kernel_version}" not in accepted:
                continue
            lease = Lease(
                lease_id=self._new_id(), task_id=task.task_id, job_id=task.job_id, worker_id=worker_id,
                issued_ms=now, expires_ms=now + self.lease_timeout_ms,
            )
            self.leases[lease.lease_id] = lease
            self._changes.leases[lease.lease_id] = lease
            heapq.heappush(self._expiry, (lease.expires_ms, lease.lease_id))
            task.leases.append(lease.lease_id)
            task.workers.add(worker_id)
            task.wanted -= 1
            if job.state == "queued":
                job.state = states.move(states.JOB, job.state, "running")
                self._changes.jobs[job.job_id] = job
            grants.append(LeaseGrant(lease.lease_id, lease.expires_ms, task.payload, task.sig))
        return grants

    def release(self, *, now: int, worker_id: str, lease_ids: Iterable[str]) -> int:
        """The worker gives back leases it will not compute; their tasks are offered again at once."""
        count = 0
        for lease_id in lease_ids:
            lease = self.leases.get(lease_id)
            if lease is None or lease.worker_id != worker_id or lease.state != "active":
                continue
            lease.state = states.move(states.LEASE, lease.state, "released")
            self._changes.leases[lease_id] = lease
            task = self.tasks[lease.task_id]
            task.workers.discard(worker_id)
            self._refresh_wanted(task)
            count += 1
        return count

    def expire(self, now: int) -> int:
        """Expire every active lease whose time is up; return how many."""
        count = 0
        while self._expiry and self._expiry[0][0] <= now:
            _, lease_id = heapq.heappop(self._expiry)
            lease = self.leases.get(lease_id)
            if lease is None or lease.state != "active":
                continue
            lease.state = states.move(states.LEASE, lease.state, "expired")
            self._changes.leases[lease_id] = lease
            self._refresh_wanted(self.tasks[lease.task_id])
            count += 1
        return count

    def next_expiry_ms(self) -> int | None:
        """When the earliest active lease expires, if any."""
        while self._expiry:
            when, lease_id = self._expiry[0]
            lease = self.leases.get(lease_id)
            if lease is not None and lease.state == "active":
                return when
            heapq.heappop(self._expiry)
        return None

    def _refresh_wanted(self, task: Task) -> None:
        # How many more leases to hand out: what quorum still lacks, minus leases still running.
        job = self.jobs[task.job_id]
        decision = self._decide(task, job)
        active = sum(1 for lid in task.leases if self.leases[lid].state == "active")
        room = job.max_results - len(task.results) - active
        task.wanted = max(0, min(decision.more - active, room))

    # ---- results ---------------------------------------------------------------------------------------

    def report(self, *, now: int, worker_id: str, reports: Iterable[ResultItem]) -> list[AckItem]:
        """Take a worker's results; each gets an Ack. Accepted results are judged as soon as quorum allows."""
        acks = []
        for rep in reports:
            try:
                acks.append(self._report_one(now, worker_id, rep))
            except PeerProtocolError as exc:
                acks.append(AckItem(rep.lease_id, "rejected", str(exc)))
        return acks

    def _report_one(self, now: int, worker_id: str, rep: ResultItem) -> AckItem:
        wire = codec.encode(rep.output) if isinstance(rep.output, dict) else b""
        lease = self.leases.get(rep.lease_id)
        if lease is None:
            earlier = self._archive(rep.lease_id)
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
        if lease.state == "cancelled" or task.state != "pending":
            return AckItem(rep.lease_id, "rejected", f"task already {task.state}")
        error = _check_output(kernel, task.params, rep.output)
        lease.state = states.move(states.LEASE, lease.state, "returned")
        self._changes.leases[lease.lease_id] = lease
        result = Result(
            lease_id=lease.lease_id, task_id=task.task_id, job_id=job.job_id, worker_id=worker_id,
            digest=wire_digest(wire), output=None if error else wire, verdict="pending", received_ms=now, error=error,
        )
        self.results[result.lease_id] = result
        self._changes.results[result.lease_id] = result
        task.results.append(result.lease_id)
        if error:
            self._judge(result, "invalid")
        self._settle(task, job, kernel, now)
        if error:
            return AckItem(rep.lease_id, "rejected", f"malformed output: {error}")
        return AckItem(rep.lease_id, "accepted", "")

    def _decide(self, task: Task, job: Job) -> Any:
        kernel = kernels.get(job.kernel, job.kernel_version)
        candidates = [self._candidate(self.results[lid], kernel.exact) for lid in task.results]
        return decide(candidates, quorum=job.replicas, max_results=job.max_results, exact=kernel.exact,
                      compare=kernel.compare)

    @staticmethod
    def _candidate(result: Result, exact: bool) -> Candidate:
        if result.error is not None or result.output is None:
            return Candidate(result.lease_id, result.digest, None)
        # Exact kernels compare digests only; skip decoding the array.
        array = _EMPTY if exact else codec.array_from_wire(codec.decode(result.output))
        return Candidate(result.lease_id, result.digest, array)

    def _settle(self, task: Task, job: Job, kernel: Kernel, now: int) -> None:
        decision = self._decide(task, job)
        if decision.state == "pending":
            self._refresh_wanted(task)
            return
        if decision.state == "failed":
            task.state = states.move(states.TASK, task.state, "failed")
            self._changes.tasks[task.task_id] = task
            self._finish_job(job, "failed", now, f"task {task.index}: {decision.reason}")
            return
        task.state = states.move(states.TASK, task.state, "validated")
        task.canonical = self.results[decision.canonical].output
        task.wanted = 0
        self._changes.tasks[task.task_id] = task
        for lease_id in decision.valid:
            result = self.results[lease_id]
            self._judge(result, "valid")
            self._pay(result, job, now)
        for lease_id in decision.invalid:
            if self.results[lease_id].verdict == "pending":
                self._judge(self.results[lease_id], "invalid")
        for lease_id in task.leases:
            lease = self.leases[lease_id]
            if lease.state in ("active", "expired"):
                lease.state = states.move(states.LEASE, lease.state, "cancelled")
                self._changes.leases[lease_id] = lease
        job.tasks_validated += 1
        self._changes.jobs[job.job_id] = job
        if job.tasks_validated == job.n_tasks:
            outputs = [
                codec.array_from_wire(codec.decode(t.canonical))
                for t in self._job_tasks[job.job_id] if t.canonical is not None
            ]
            merged = kernel.merge(job.params, outputs)
            self._changes.merged[job.job_id] = codec.encode(codec.array_to_wire(merged))
            self._finish_job(job, "done", now, None)

    def _judge(self, result: Result, verdict: str) -> None:
        result.verdict = states.move(states.RESULT, result.verdict, verdict)
        result.output = None  # the canonical output lives on the task; judged copies are not kept
        self._changes.results[result.lease_id] = result
        worker = self.workers[result.worker_id]
        if verdict == "valid":
            worker.validated += 1
        else:
            worker.rejected += 1
        self._changes.workers[worker.worker_id] = worker

    def _pay(self, result: Result, job: Job, now: int) -> None:
        entry = ledger.make_entry(
            self.head, time=now, kind="reward", from_=ledger.MINT, to=result.worker_id, amount=job.price,
            job_id=job.job_id, task_id=result.task_id,
        )
        self.head = entry
        self._changes.entries.append(entry)
        self.workers[result.worker_id].balance += entry.amount

    # ---- persistence hand-off ----------------------------------------------------------------------------

    def take_changes(self) -> Changes:
        """Everything touched since the last call; the caller must persist it before answering anyone."""
        changes, self._changes = self._changes, Changes()
        return changes


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


def _check_output(kernel: Kernel, task_params: dict[str, Any], output: Any) -> str | None:
    """None if `output` is a well-formed array of the shape this task must produce, else why not."""
    try:
        array = codec.array_from_wire(output)
        kernel.check_output(task_params, array)
    except PeerProtocolError as exc:
        return str(exc)
    return None
