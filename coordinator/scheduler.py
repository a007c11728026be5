"""The coordinator's brain: jobs, tasks, leases, results, quorum, trust, audits and rewards, with no I/O at all.

The aiohttp shell calls one method per request with the current time; the method checks, decides and mutates
the in-memory state, and records every row it touched. The shell then writes `take_changes()` to the database
in one transaction before it answers, so nothing is acknowledged that is not durable. On restart the shell
loads the rows back and calls `Scheduler.restore`. Randomness comes in injected: `rand` (spot checks, audits) and
`pick` (placement offsets and draws), both secret by default.

`Scheduler` owns all the state, the jobs (submit, cancel, finish and refund), grants, bonds and workers. Its
decisions are split by concept into three mixins over that one state, each with a header saying how it works:
coordinator.leasing (who gets which slot of a task, and what happens when a lease ends), coordinator.judging
(results, quorum verdicts, trust, bans and every credit moved) and coordinator.auditor (audits of validated tasks
and convictions). The mixins are not used alone: their methods take `self: Scheduler`.
"""

from __future__ import annotations

import bisect
import heapq
import ipaddress
import random
import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from coordinator import fresh, states
from coordinator import published as publishing
from coordinator.auditing import AuditPolicy
from coordinator.auditor import Auditor
from coordinator.judging import Judging
from coordinator.leasing import Leasing
from coordinator.model import Changes, Job, Lease, Published, Result, Task, Worker
from coordinator.open_slots import OpenSlots
from coordinator.placement import PlacementPolicy
from coordinator.progress import Progress
from coordinator.roster import Bag, Roster
from coordinator.speed import SpeedBook
from coordinator.trust import Trust, TrustBook, TrustPolicy
from depin import accounts, codec, kernels, ledger, protocol
from depin.crypto import SigningKey
from depin.errors import Conflict, Forbidden, NotFound, PaymentRequired, UserError

__all__ = ["LAST_SEEN_PERSIST_MS", "Changes", "Job", "Lease", "Result", "Scheduler", "Task", "Worker"]

LAST_SEEN_PERSIST_MS = 10_000
_SECRET = random.SystemRandom()  # spot checks and audits: draws no worker can predict from what it sees
DEFAULT_QUORUM = 2
DEFAULT_MAX_ERRORS = 3

Archive = Callable[[str], "tuple[str, str, bytes, str] | None"]


def public_address(address: str | None) -> str | None:
    """`address` if it is a globally routable IP (the only kind that says two workers share a machine)."""
    if address is None:
        return None
    try:
        return address if ipaddress.ip_address(address).is_global else None
    except ValueError:
        return None


class Scheduler(Leasing, Judging, Auditor):
    """All coordinator state and every decision about it."""

    def __init__(
        self,
        *,
        key: SigningKey,
        lease_timeout_ms: int,
        new_id: Callable[[], str],
        archive: Archive = lambda lease_id: None,
        policy: TrustPolicy | None = None,
        rand: Callable[[], float] = _SECRET.random,
        pick: Callable[[int], int] = secrets.randbelow,
        placement_policy: PlacementPolicy | None = None,
        audit_policy: AuditPolicy | None = None,
        order_key: Callable[[], bytes] = lambda: secrets.token_bytes(16),
    ) -> None:
        self.key = key
        self._order_key = order_key  # each job's secret order of making its tasks (coordinator.fresh)
        # Looks up (worker_id, task_id, digest, verdict) of a result whose job has left memory, so a resend after the
        # job ended still gets its original verdict.
        self._archive = archive
        self.lease_timeout_ms = lease_timeout_ms
        self._new_id = new_id
        self._rand = rand  # spot checks
        self._pick = pick  # placement: offsets and draws (the coordinator's secret randomness)
        self.placement = placement_policy or PlacementPolicy()
        self.audits = audit_policy or AuditPolicy()
        self.trust = TrustBook(policy or TrustPolicy())
        self.speed = SpeedBook(self.trust.policy.fast_factor, self.trust.policy.speed_samples,
                               self.trust.policy.speed_floor_ms)
        self._wakeups: list[tuple[int, str]] = []  # (when, task id): a grace, reservation or trusted wait ends
        self.jobs: dict[str, Job] = {}
        self.tasks: dict[str, Task] = {}  # only tasks of unfinished jobs, in job then index order
        self._job_tasks: dict[str, list[Task]] = {}  # unfinished job id -> the tasks made so far, in that order
        self._open: dict[str, OpenSlots] = {}  # unfinished job id -> its tasks that may have a slot to lease
        self._waiting: dict[str, set[str]] = {}  # kernel key -> pending tasks waiting for a trusted worker (ids)
        self.leases: dict[str, Lease] = {}  # only leases of unfinished jobs
        self.results: dict[str, Result] = {}  # only results of unfinished jobs
        self.workers: dict[str, Worker] = {}
        self.book = ledger.Book()
        self._order: list[tuple[int, int, str]] = []  # unfinished jobs as (-price, created_ms, job id): lease order
        self._expiry: list[tuple[int, str]] = []
        self._seen_persisted: dict[str, int] = {}  # worker id -> last_seen_ms last handed to the store
        self.roster = Roster()  # workers that asked for work since the start, for draws (coordinator.roster)
        self._bags_seen: dict[tuple[int, str, int, bool | None], list[Bag]] = {}  # Leasing._present's answers
        self._changes = Changes()
        self.progress = Progress()  # each job's counts, kept as rows move (coordinator.progress)
        self._recount: dict[str, Task] = {}  # tasks whose in-memory placement fields moved since the last count
        # Work made since the shell last asked (take_wakes): slots any worker may take, and workers drawn for one.
        self._freed: Counter[str] = Counter()  # job id -> slots made takeable
        self._drawn_for: set[str] = set()
        self.published: dict[str, Published] = {}  # kernel id -> the published kernel (docs/KERNELS.md)
        self._published_by: Counter[str] = Counter()  # publisher -> kernels it published

    # ---- restore ---------------------------------------------------------------------------------------

    @classmethod
    def restore(
        cls,
        *,
        key: SigningKey,
        lease_timeout_ms: int,
        new_id: Callable[[], str],
        archive: Archive = lambda lease_id: None,
        policy: TrustPolicy | None = None,
        rand: Callable[[], float] = _SECRET.random,
        pick: Callable[[int], int] = secrets.randbelow,
        placement_policy: PlacementPolicy | None = None,
        audit_policy: AuditPolicy | None = None,
        jobs: Iterable[Job],
        tasks: Iterable[Task],
        leases: Iterable[Lease],
        results: Iterable[Result],
        workers: Iterable[Worker],
        trust: Iterable[Trust] = (),
        book: ledger.Book | None = None,
        published: Iterable[Published] = (),
        now: int = 0,
    ) -> Scheduler:
        """A scheduler over rows loaded from the database (tasks/leases/results of unfinished jobs only)."""
        s = cls(key=key, lease_timeout_ms=lease_timeout_ms, new_id=new_id, archive=archive, policy=policy,
                rand=rand, pick=pick, placement_policy=placement_policy, audit_policy=audit_policy)
        for row in published:  # before the jobs that may use them
            s.published[row.kernel_id] = row
            s._published_by[row.publisher] += 1
            publishing.load(row.source)
        s.jobs = {j.job_id: j for j in jobs}
        s.progress = Progress(start=now * 1000)  # versions after a restart never repeat one from before it
        for j in s.jobs.values():
            if j.state not in states.FINISHED_JOB:
                s._job_tasks[j.job_id], s._open[j.job_id] = [], OpenSlots()
                s.progress.add(j.job_id)
        s.workers = {w.worker_id: w for w in workers}
        for w in s.workers.values():
            standing = s.trust.standing_of(w.worker_id)
            standing.banned, standing.too_fast = w.banned, w.too_fast
        for record in trust:
            s.trust.records[(record.worker_id, record.kernel)] = record
        s.trust.refresh_outliers()
        s.tasks = {t.task_id: t for t in sorted(tasks, key=lambda t: (s.jobs[t.job_id].created_ms, t.job_id, t.index))}
        for t in s.tasks.values():
            s._job_tasks[t.job_id].append(t)
        for lease in leases:
            s.leases[lease.lease_id] = lease
            task = s.tasks[lease.task_id]
            task.leases.append(lease.lease_id)
            if lease.state != "released":
                s._mark_holder(task, lease.worker_id)
            if lease.state == "active":
                heapq.heappush(s._expiry, (lease.expires_ms, lease.lease_id))
                if lease.worker_id in s.workers:
                    s.workers[lease.worker_id].active += 1
        for r in sorted(results, key=lambda r: r.received_ms):
            s.results[r.lease_id] = r
            if r.verdict != "void":  # in an unfinished job, void means set aside when its worker was banned
                s.tasks[r.task_id].results.append(r.lease_id)
        if book is not None:
            s.book = book
        for account, credits in s.book.accounts.balances.items():
            if accounts.is_bond(account):
                s.trust.set_bond(account[len(accounts.BOND_PREFIX):], credits)
        for task in s.tasks.values():
            if task.audit in states.OPEN_AUDIT:  # its waits go on from when it opened (schema 5; before: from now)
                s.jobs[task.job_id].audits_open += 1
                s._open[task.job_id].add(task)
                task.audit_since = task.audit_since or now
                heapq.heappush(s._wakeups, (task.audit_since + s.audits.fallback_ms, task.task_id))
                heapq.heappush(s._wakeups, (task.audit_since + s.audits.give_up_ms, task.task_id))
            if task.waiting_since is not None:  # likewise its wait for a trusted worker
                heapq.heappush(s._wakeups, (task.waiting_since + s.trust.policy.trusted_wait_ms, task.task_id))
        s._order = sorted((-s.jobs[j].price, s.jobs[j].created_ms, j) for j in s._job_tasks)
        for task in s.tasks.values():
            if task.state == "pending":
                began = task.waiting_since
                s._refresh_wanted(task, now)
                # Nobody is present right after a restart, so the wait for a trusted worker would end here; keep when
                # it began, so that it goes on from then once a trusted worker asks again (not from the restart), and
                # count it in its kernel's trusted backlog.
                if began is not None and task.waiting_since is None and not task.fell_back:
                    s._set_waiting(task, s.jobs[task.job_id], began)
        for task in s.tasks.values():
            s.progress.task(task, s.jobs[task.job_id])
        for lease in s.leases.values():
            s.progress.lease(lease)
        s._recount.clear()
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
        replicas: int | None,
        max_results: int | None,
        price: int,
        quorum: int | None = None,
        max_errors: int | None = None,
    ) -> Job:
        """Create a job; UserError for anything the submitter got wrong. Its tasks are made (given their parameters
        and signed) as lease walks reach them (coordinator.fresh), so a submit costs the same for any job size."""
        kernel = kernels.get(kernel_name)
        checked = kernel.validate(params)
        q, r, errors, limit = _policy(replicas, quorum, max_errors, max_results)
        if not 1 <= price <= protocol.MAX_PRICE:
            raise UserError(f"price must be a whole number of credits from 1 to {protocol.MAX_PRICE}")
        pieces = kernel.split(checked, n_tasks)
        job = Job(
            job_id=self._new_id(), kernel=kernel.name, kernel_version=kernel.version, params=checked,
            n_tasks=len(pieces), replicas=r, quorum=q, max_errors=errors, max_results=limit, price=price,
            submitter=submitter, state="queued", created_ms=now, order_key=self._order_key(),
        )
        have = self.book.accounts.balance(submitter)
        if job.max_cost > have:
            raise PaymentRequired(
                f"insufficient funds: the job may cost up to {job.max_cost} credits ({job.n_tasks} tasks x"
                f" {job.max_results} results x {price} credits), and account {submitter} holds {have}; lower --price or"
                f" --max-results, or ask the coordinator's operator for a grant"
            )
        self.jobs[job.job_id] = job
        self._changes.jobs[job.job_id] = job
        self.progress.add(job.job_id)
        self._job_tasks[job.job_id] = []
        self._open[job.job_id] = OpenSlots()
        bisect.insort(self._order, (-job.price, job.created_ms, job.job_id))
        self._append(now, "escrow", submitter, accounts.escrow_account(job.job_id), job.max_cost, job.job_id)
        self._freed[job.job_id] += job.n_tasks * (1 if kernel.verify is not None else r)
        return job

    def publish(self, *, now: int, publisher: str, raw: bytes) -> tuple[Published, bool]:
        """Check and keep a kernel file (docs/KERNELS.md), or find it kept already: (the kernel, whether it is new).
        KernelRefused names what is wrong with the file; publishing needs an account with credits (whoever can pay
        for a job), and an account publishes at most MAX_PER_PUBLISHER kernels."""
        admitted = publishing.admit(raw)
        kernel_id = admitted.kernel_id
        known = self.published.get(kernel_id)
        if known is not None:
            return known, False
        if self.book.accounts.balance(publisher) <= 0:
            raise PaymentRequired(f"publishing a kernel needs credits: account {publisher} holds none (ask the"
                                  " coordinator's operator for a grant)")
        if self._published_by[publisher] >= publishing.MAX_PER_PUBLISHER:
            raise UserError(f"account {publisher} has published {publishing.MAX_PER_PUBLISHER} kernels, the most one"
                            " account may")
        row = Published(kernel_id=kernel_id, source=admitted.source, name=admitted.name, publisher=publisher,
                        published_ms=now)
        self.published[kernel_id] = row
        self._published_by[publisher] += 1
        kernels.register(admitted.kernel)
        self._changes.kernels[kernel_id] = row
        return row, True

    def _make_task(self, job: Job) -> Task:
        """Make the job's next task (coordinator.fresh): its parameters, its signed message, its row."""
        kernel = kernels.get(job.kernel, job.kernel_version)
        index = fresh.nth(job.order_key, job.n_tasks, job.materialized)
        job.materialized += 1
        self._changes.jobs[job.job_id] = job
        task_params = kernel.split(job.params, job.n_tasks)[index]
        task_id = f"{job.job_id}-{index}"
        payload = codec.encode({
            "task_id": task_id, "job_id": job.job_id, "kernel": kernel.name, "kernel_version": kernel.version,
            "params": task_params, "coordinator": self.key.id, "price": job.price,
        })
        task = Task(task_id=task_id, job_id=job.job_id, index=index, params=task_params, payload=payload,
                    sig=self.key.sign("task", payload), quorum=job.quorum,
                    wanted=1 if kernel.verify is not None else job.replicas)
        self.tasks[task_id] = task
        self._job_tasks[job.job_id].append(task)
        self._open[job.job_id].add(task)
        self._changes.tasks[task_id] = task
        return task

    def grant(self, *, now: int, account: str, amount: int) -> ledger.Entry:
        """Mint `amount` credits into a party's account (the operator's grant; the shell checks who asks)."""
        if not accounts.is_party(account):
            raise UserError(f"{account!r} is not an account id (32 characters a-z, 2-7; see depin keygen)")
        if not 1 <= amount <= protocol.MAX_GRANT:
            raise UserError(f"a grant must be a whole number of credits from 1 to {protocol.MAX_GRANT}")
        if self.book.accounts.minted + amount > accounts.MAX_MINTED:
            raise Conflict(f"grants cannot exceed {accounts.MAX_MINTED} credits in all")
        return self._append(now, "grant", ledger.MINT, account, amount)

    def bond(self, *, now: int, worker_id: str, amount: int) -> ledger.Entry:
        """Lock `amount` of a worker's credits in its bond (coordinator.auditing)."""
        if not 1 <= amount <= protocol.MAX_GRANT:
            raise UserError(f"a bond must be a whole number of credits from 1 to {protocol.MAX_GRANT}")
        if self.trust.banned(worker_id):
            raise Forbidden(f"worker banned: {self.trust.banned(worker_id)}")
        have = self.book.accounts.balance(worker_id)
        if amount > have:
            raise PaymentRequired(f"insufficient funds: account {worker_id} holds {have} credits, cannot bond {amount}")
        entry = self._append(now, "bond", worker_id, accounts.bond_account(worker_id), amount)
        self.trust.set_bond(worker_id, self.book.accounts.bonded(worker_id))
        return entry

    def unbond(self, *, now: int, worker_id: str, amount: int) -> ledger.Entry:
        """Give back `amount` of a worker's bond: never what covers its exposure, nor while a result of it is
        under audit, nor for a banned worker (whose bond may yet be slashed)."""
        if not 1 <= amount <= protocol.MAX_GRANT:
            raise UserError(f"an unbond must be a whole number of credits from 1 to {protocol.MAX_GRANT}")
        if self.trust.banned(worker_id):
            raise Forbidden(f"worker banned: {self.trust.banned(worker_id)}")
        bonded = self.book.accounts.bonded(worker_id)
        worker = self.workers.get(worker_id)
        exposure = 0 if worker is None else worker.exposure
        if self._under_audit(worker_id):
            raise Conflict("a result of this worker is under audit: its bond stays until the audit is settled")
        if amount > bonded - exposure:
            raise Conflict(f"the bond holds {bonded} credits and {exposure} of them cover single results not yet"
                           f" audited: at most {max(0, bonded - exposure)} can be taken out now")
        entry = self._append(now, "unbond", accounts.bond_account(worker_id), worker_id, amount)
        self.trust.set_bond(worker_id, self.book.accounts.bonded(worker_id))
        return entry

    def owner_of(self, job_id: str, requester: str, action: str) -> Job:
        """The job, if `requester` submitted it; Forbidden otherwise ("only the job's submitter can <action>")."""
        job = self._job(job_id)
        if requester != job.submitter:
            raise Forbidden(f"only the job's submitter can {action}")
        return job

    def cancel(self, *, now: int, job_id: str, requester: str) -> Job:
        """Cancel an unfinished job; only its submitter may."""
        job = self.owner_of(job_id, requester, "cancel it")
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
        self.counted()  # the job's waits are counted up to here, then gone (Progress.close)
        self.progress.close(job.job_id)
        job.state = states.move(states.JOB, job.state, state)
        job.finished_ms, job.error, job.audits_open = now, error, 0
        self._changes.jobs[job.job_id] = job
        self._open.pop(job.job_id, None)
        waiting = self._waiting.get(f"{job.kernel}@{job.kernel_version}", set())
        for task in self._job_tasks.pop(job.job_id, []):
            waiting.discard(task.task_id)
            if task.state == "pending":
                task.state = states.move(states.TASK, task.state, "cancelled")
                self._changes.tasks[task.task_id] = task
            for lease_id in task.leases:
                lease = self.leases.pop(lease_id)
                if lease.state in ("active", "expired"):
                    self._move_lease(lease, "cancelled")
            for lease_id in task.results:
                result = self.results.pop(lease_id)
                if result.verdict == "pending":
                    result.verdict = states.move(states.RESULT, result.verdict, "void")
                    result.output = None
                    self._changes.results[lease_id] = result
            del self.tasks[task.task_id]
        for lease_id in [lid for lid, r in self.results.items() if r.job_id == job.job_id]:
            del self.results[lease_id]  # results set aside from their task (a banned worker's) leave memory too
        self._order.remove((-job.price, job.created_ms, job.job_id))
        left = self.book.accounts.held(job.job_id)
        if left > 0:  # what validated results did not use goes back to whoever paid for the job
            self._append(now, "refund", accounts.escrow_account(job.job_id), job.submitter, left, job.job_id)

    # ---- workers -----------------------------------------------------------------------------------------

    def touch_worker(self, *, now: int, worker_id: str, public_key: bytes, address: str | None = None,
                     owner: str | None = None, min_price: int | None = None) -> Worker:
        """Register a worker on first contact and note that (and from where) it was seen."""
        worker = self.workers.get(worker_id)
        if worker is None:
            worker = Worker(worker_id=worker_id, public_key=public_key, first_seen_ms=now, last_seen_ms=now,
                            capacity=self.placement.start_capacity)
            self.workers[worker_id] = worker
        worker.last_seen_ms = max(worker.last_seen_ms, now)
        if worker.last_lease_ms is not None and worker_id not in self.roster:
            # Present again (PROTOCOL.md 12.1: it asked for work since the start, and was seen just now), though
            # the roster pruned it while it computed: filed again, so the roster stays a superset of the present.
            self.roster.note(worker, seasoned=not self.on_probation(worker_id))
        else:
            self.roster.seen(worker_id, worker.last_seen_ms)
        changed = False
        if public_address(address) not in (None, worker.address):
            worker.address, changed = public_address(address), True
        if owner is not None and owner != worker.owner:
            worker.owner, changed = owner, True
        if min_price is not None and min_price != worker.min_price:
            worker.min_price, changed = min_price, True
            self._refile(worker)
        # last_seen is for display: persisting it at most this often keeps a write off most lease requests.
        if changed or now - self._seen_persisted.get(worker_id, -LAST_SEEN_PERSIST_MS) >= LAST_SEEN_PERSIST_MS:
            self._seen_persisted[worker_id] = now
            self._changes.workers[worker_id] = worker
        return worker

    def _refile(self, worker: Worker) -> None:
        # A worker in the roster whose min_price or probation changed is filed again (coordinator.roster).
        if worker.worker_id in self.roster:
            self.roster.note(worker, seasoned=not self.on_probation(worker.worker_id))

    def job_tasks(self, job_id: str) -> list[Task]:
        """An unfinished job's tasks made so far, in index order (none for a finished job)."""
        return sorted(self._job_tasks.get(job_id, []), key=lambda t: t.index)

    def banned(self, worker_id: str) -> str | None:
        """Why this worker is banned, or None."""
        return self.trust.banned(worker_id)

    # ---- persistence hand-off ----------------------------------------------------------------------------

    def take_wakes(self) -> tuple[list[tuple[str, int, int]], set[str]]:
        """The work made since the last call, for waking just as many waiting lease requests: per unfinished job,
        (its kernel `name@version`, its price, how many slots became takeable by an eligible worker: new tasks, a
        rise in `wanted` or `backups`, an audit slot offered, a reservation run out), and which workers a slot was
        drawn for (their requests must wake)."""
        freed = [(f"{j.kernel}@{j.kernel_version}", j.price, n) for job_id, n in self._freed.items()
                 if n > 0 and (j := self.jobs.get(job_id)) is not None and j.state not in states.FINISHED_JOB]
        drawn = self._drawn_for
        self._freed, self._drawn_for = Counter(), set()
        return freed, drawn

    def take_changes(self) -> Changes:
        """Everything touched since the last call; the caller must persist it before answering anyone."""
        self.counted()
        changes, self._changes = self._changes, Changes()
        for job_id in changes.jobs:
            self.progress.touch(job_id)
        for entry in changes.entries:
            if entry.job_id is not None:
                self.progress.touch(entry.job_id)  # its escrow moved
        return changes

    def counted(self) -> Progress:
        """Every job's counts, with the rows that moved since they were last counted counted: O(rows moved)."""
        for task in self._changes.tasks.values():
            self.progress.task(task, self.jobs[task.job_id])
        for task in self._recount.values():
            self.progress.task(task, self.jobs[task.job_id])
        self._recount.clear()
        for lease in self._changes.leases.values():
            self.progress.lease(lease)
        return self.progress

    def _recount_later(self, task: Task) -> None:
        # A placement field that names a waiting reason moved (a drawn slot, the need for a trusted worker): in
        # memory only, so not in the change set, but in the job's counts all the same.
        self._recount[task.task_id] = task


def _policy(replicas: int | None, quorum: int | None, max_errors: int | None,
            max_results: int | None) -> tuple[int, int, int, int]:
    """(quorum, replicas, max_errors, max_results) with defaults filled in and checked."""
    q = quorum if quorum is not None else min(DEFAULT_QUORUM, replicas if replicas is not None else DEFAULT_QUORUM)
    r = replicas if replicas is not None else q
    if not 1 <= q <= protocol.MAX_REPLICAS:
        raise UserError(f"quorum must be between 1 and {protocol.MAX_REPLICAS}")
    if not q <= r <= protocol.MAX_REPLICAS:
        raise UserError(f"replicas must be between quorum ({q}) and {protocol.MAX_REPLICAS}")
    errors = DEFAULT_MAX_ERRORS if max_errors is None else max_errors
    if not 0 <= errors <= protocol.MAX_RESULTS:
        raise UserError(f"max_errors must be between 0 and {protocol.MAX_RESULTS}")
    limit = min(r + 3, protocol.MAX_RESULTS) if max_results is None else max_results
    if not r <= limit <= protocol.MAX_RESULTS:
        raise UserError(f"max_results must be between replicas ({r}) and {protocol.MAX_RESULTS}")
    return q, r, errors, limit
