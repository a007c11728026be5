"""The coordinator's brain: jobs, tasks, leases, results, quorum, trust, audits and rewards, with no I/O at all.

The aiohttp shell calls one method per request with the current time; the method checks, decides and mutates
the in-memory state, and records every row it touched. The shell then writes `take_changes()` to the database
in one transaction before it answers, so nothing is acknowledged that is not durable. On restart the shell
loads the rows back and calls `Scheduler.restore`. Randomness comes in injected: `rand` (spot checks, audits) and
`pick` (placement offsets and draws), both secret by default.

How a task moves: it is created `pending` and wants `replicas` results from distinct workers (one, for a kernel
that can verify a result on its own). Who gets which slot is the coordinator's draw (coordinator.placement): a
lease walk starts at a random task, each worker holds at most its capacity, and every slot after the first is
reserved for a drawn worker. A lease that times out is `expired` and the task is offered again (a late result on
it still counts); a probationary worker's lease holds its slot only for a grace. A trusted worker with a bond that
covers the task may take it *single* (quorum 1) unless a spot check says otherwise. When results arrive,
quorum.decide judges them: an agreeing quorum (with a trusted member, while one could be asked, for a bounded
time) validates the task and pays each agreeing worker one reward entry; a disagreement asks for one more result
(and escalates when fresh identities are involved); too many errors of established workers or too many results
fail the task and its job. Every verdict feeds the TrustBook (independent partners only; out-voted by a mob is a
dispute, not a fault). A validated task may be drawn for an audit (coordinator.auditing), which keeps its job open
until it is settled, and an audit that proves a result wrong corrects the task, slashes and bans. When every task
is validated and no audit is open the kernel merges the canonical outputs.
"""

from __future__ import annotations

import bisect
import heapq
import ipaddress
import random
import secrets
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from coordinator import auditing, placement, states
from coordinator.auditing import AuditPolicy
from coordinator.model import Changes, Job, Lease, Result, Task, Worker
from coordinator.placement import PlacementPolicy
from coordinator.quorum import Candidate, Decision, decide
from coordinator.speed import SpeedBook
from coordinator.trust import Trust, TrustBook, TrustPolicy
from depin import accounts, codec, kernels, ledger, protocol
from depin.crypto import SigningKey
from depin.errors import Conflict, Forbidden, NotFound, PaymentRequired, PeerProtocolError, UserError
from depin.kernels import Kernel, wire_digest
from depin.protocol import AckItem, LeaseGrant, ResultItem

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


class Scheduler:
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
    ) -> None:
        self.key = key
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
        self._job_tasks: dict[str, list[Task]] = {}  # unfinished job id -> its tasks in index order
        self.leases: dict[str, Lease] = {}  # only leases of unfinished jobs
        self.results: dict[str, Result] = {}  # only results of unfinished jobs
        self.workers: dict[str, Worker] = {}
        self.book = ledger.Book()
        self._order: list[tuple[int, int, str]] = []  # unfinished jobs as (-price, created_ms, job id): lease order
        self._expiry: list[tuple[int, str]] = []
        self._seen_persisted: dict[str, int] = {}  # worker id -> last_seen_ms last handed to the store
        self._trust_version = 0  # bumped on every verdict, so cached trust views know they are stale
        self._online_cache: tuple[tuple[int, int], dict[str, list[str]]] | None = None
        self._changes = Changes()
        self.drawn = False  # a replica slot was drawn for a worker since the shell last asked (take_drawn)

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
        now: int = 0,
    ) -> Scheduler:
        """A scheduler over rows loaded from the database (tasks/leases/results of unfinished jobs only)."""
        s = cls(key=key, lease_timeout_ms=lease_timeout_ms, new_id=new_id, archive=archive, policy=policy,
                rand=rand, pick=pick, placement_policy=placement_policy, audit_policy=audit_policy)
        s.jobs = {j.job_id: j for j in jobs}
        s.workers = {w.worker_id: w for w in workers}
        for w in s.workers.values():
            standing = s.trust.standing_of(w.worker_id)
            standing.banned, standing.too_fast = w.banned, w.too_fast
        for record in trust:
            s.trust.records[(record.worker_id, record.kernel)] = record
        s.trust.refresh_outliers()
        s.tasks = {t.task_id: t for t in sorted(tasks, key=lambda t: (s.jobs[t.job_id].created_ms, t.job_id, t.index))}
        for t in s.tasks.values():
            s._job_tasks.setdefault(t.job_id, []).append(t)
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
            if task.audit in states.OPEN_AUDIT:  # its audit starts again: the wait for an auditor counts from now
                s.jobs[task.job_id].audits_open += 1
                task.audit_since = now
                heapq.heappush(s._wakeups, (now + s.audits.give_up_ms, task.task_id))
        s._order = sorted((-s.jobs[j].price, s.jobs[j].created_ms, j) for j in s._job_tasks)
        for task in s.tasks.values():
            if task.state == "pending":
                s._refresh_wanted(task, now)
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
        """Create a job and its signed tasks; UserError for anything the submitter got wrong."""
        kernel = kernels.get(kernel_name)
        checked = kernel.validate(params)
        q, r, errors, limit = _policy(replicas, quorum, max_errors, max_results)
        if not 1 <= price <= protocol.MAX_PRICE:
            raise UserError(f"price must be a whole number of credits from 1 to {protocol.MAX_PRICE}")
        pieces = kernel.split(checked, n_tasks)
        job = Job(
            job_id=self._new_id(), kernel=kernel.name, kernel_version=kernel.version, params=checked,
            n_tasks=len(pieces), replicas=r, quorum=q, max_errors=errors, max_results=limit, price=price,
            submitter=submitter, state="queued", created_ms=now,
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
        self._job_tasks[job.job_id] = []
        bisect.insort(self._order, (-job.price, job.created_ms, job.job_id))
        self._append(now, "escrow", submitter, accounts.escrow_account(job.job_id), job.max_cost, job.job_id)
        for index, task_params in enumerate(pieces):
            task_id = f"{job.job_id}-{index}"
            payload = codec.encode({
                "task_id": task_id, "job_id": job.job_id, "kernel": kernel.name,
                "kernel_version": kernel.version, "params": task_params, "coordinator": self.key.id,
                "price": price,
            })
            task = Task(
                task_id=task_id, job_id=job.job_id, index=index, params=task_params,
                payload=payload, sig=self.key.sign("task", payload), quorum=q,
                wanted=1 if kernel.verify is not None else r,
            )
            self.tasks[task_id] = task
            self._job_tasks[job.job_id].append(task)
            self._changes.tasks[task_id] = task
        return job

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
        self._trust_version += 1
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
        self._trust_version += 1
        return entry

    def _under_audit(self, worker_id: str) -> bool:
        return any(t.audit in states.OPEN_AUDIT and any(self.results[lid].worker_id == worker_id for lid in t.results)
                   for t in self.tasks.values())

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
        job.state = states.move(states.JOB, job.state, state)
        job.finished_ms, job.error, job.audits_open = now, error, 0
        self._changes.jobs[job.job_id] = job
        for task in self._job_tasks.pop(job.job_id, []):
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
        changed = False
        if public_address(address) not in (None, worker.address):
            worker.address, changed = public_address(address), True
        if owner is not None and owner != worker.owner:
            worker.owner, changed = owner, True
        if min_price is not None and min_price != worker.min_price:
            worker.min_price, changed = min_price, True
        # last_seen is for display: persisting it at most this often keeps a write off most lease requests.
        if changed or now - self._seen_persisted.get(worker_id, -LAST_SEEN_PERSIST_MS) >= LAST_SEEN_PERSIST_MS:
            self._seen_persisted[worker_id] = now
            self._changes.workers[worker_id] = worker
        return worker

    def job_tasks(self, job_id: str) -> list[Task]:
        """An unfinished job's tasks in index order (none for a finished job)."""
        return self._job_tasks.get(job_id, [])

    def banned(self, worker_id: str) -> str | None:
        """Why this worker is banned, or None."""
        return self.trust.banned(worker_id)

    def _trusted_online(self, now: int) -> dict[str, list[str]]:
        # kernel key -> workers trusted for it and seen recently; computed once per (clock tick, trust change).
        if self._online_cache is not None and self._online_cache[0] == (now, self._trust_version):
            return self._online_cache[1]
        online: dict[str, list[str]] = {}
        horizon = now - self.trust.policy.online_ms
        for worker_id, kernel in self.trust.earned():
            w = self.workers.get(worker_id)
            if w is not None and w.last_seen_ms >= horizon and self.trust.trusted(worker_id, kernel):
                online.setdefault(kernel, []).append(worker_id)
        self._online_cache = ((now, self._trust_version), online)
        return online

    def _could_serve(self, worker_id: str, job: Job, now: int) -> bool:
        # Whether this worker would be given a task of the job if it asked now: present (seen within presence_ms
        # and has asked for work), not banned, runs the job's kernel, asks no more than the job pays, has room.
        w = self.workers.get(worker_id)
        return (w is not None and w.last_lease_ms is not None
                and now - w.last_seen_ms <= self.placement.presence_ms and not self.trust.banned(worker_id)
                and f"{job.kernel}@{job.kernel_version}" in w.kernels and w.min_price <= job.price
                and w.active < w.capacity)

    def _trusted_could_help(self, task: Task, job: Job, now: int) -> bool:
        # Some present trusted worker could still be given this task (not a holder, nor sharing an address, and it
        # runs the kernel at this price) - unless the task already waited for one too long (placement: fell back).
        if task.fell_back:
            return False
        helpers = self._trusted_online(now).get(f"{job.kernel}@{job.kernel_version}", [])
        return any(self._eligible(task, w, trusted=True) and self._could_serve(w, job, now) for w in helpers)

    def on_probation(self, worker_id: str) -> bool:
        """Whether the worker has fewer than `probation_valid` validated results (placement: probation)."""
        w = self.workers.get(worker_id)
        return w is None or w.validated < self.trust.policy.probation_valid

    def _eligible(self, task: Task, worker_id: str, *, trusted: bool) -> bool:
        # Whether this worker may hold a replica of the task: never twice, never beside a worker seen from the
        # same public address, and, unless it is trusted, never beside a worker declaring the same owner. An
        # owner is an unchecked claim: honouring it for trusted workers would let colluders shut them out of a
        # task (and so lift the trusted-member rule) by declaring their owner.
        if worker_id in task.workers:
            return False
        w = self.workers.get(worker_id)
        if w is None:
            return True
        if w.address is not None and w.address in task.addresses:
            return False
        return trusted or w.owner is None or w.owner not in task.owners

    # ---- leasing ---------------------------------------------------------------------------------------

    def lease(self, *, now: int, worker_id: str, max_tasks: int, kernels_ok: Iterable[str],
              min_price: int = 0) -> list[LeaseGrant]:
        """Up to `max_tasks` leases for this worker, within its capacity: the best-paying job first (then the
        oldest), only jobs paying at least `min_price`, within a job from a random task on, never two replicas of one
        task to one worker (or owner, or public address), a replica slot only to the worker drawn for it, the last
        quorum slot kept for a trusted worker while one could take it."""
        if self.trust.banned(worker_id):
            raise Forbidden(f"worker banned: {self.trust.banned(worker_id)}")
        self.expire(now)
        accepted = frozenset(kernels_ok)
        worker = self.workers.get(worker_id)
        if worker is not None:
            worker.kernels, worker.last_lease_ms = accepted, now
            room = min(max_tasks, worker.capacity - worker.active)
        else:
            room = min(max_tasks, self.placement.start_capacity)
        grants: list[LeaseGrant] = []
        for neg_price, _, job_id in list(self._order):
            if len(grants) >= room or -neg_price < min_price:
                break  # jobs are in price order: the rest pay less
            job = self.jobs[job_id]
            kernel_key = f"{job.kernel}@{job.kernel_version}"
            if kernel_key not in accepted:
                continue
            is_trusted = self.trust.trusted(worker_id, kernel_key)
            tasks = self._job_tasks.get(job_id, [])
            start = self._pick(len(tasks)) if tasks else 0
            for task in tasks[start:] + tasks[:start]:
                if len(grants) >= room:
                    break
                if task.state == "validated" and task.audit in states.OPEN_AUDIT:
                    if self._may_audit(task, job, worker_id, is_trusted, now):
                        grants.append(self._grant(task, job, kernel_key, worker_id, False, now))
                    continue
                if task.state != "pending":
                    continue
                if task.needs_trusted and not self._trusted_could_help(task, job, now):
                    # The trusted worker this task waited for is gone: decide again without it.
                    self._settle(task, job, kernels.get(job.kernel, job.kernel_version), now)
                    if task.state != "pending":
                        continue
                if task.wanted <= 0 or not self._eligible(task, worker_id, trusted=is_trusted):
                    continue
                if not is_trusted and task.quorum > 1 and self._trusted_could_help(task, job, now):
                    members = self._members(task)
                    last_slot = len(members) + 1 >= task.quorum
                    if task.needs_trusted or (last_slot and not any(self._counts_as_trusted(task, m)
                                                                    for m in members)):
                        continue
                if not self._placed_here(task, job, worker_id, now):
                    continue
                grants.append(self._grant(task, job, kernel_key, worker_id, is_trusted, now))
        return grants

    def _placed_here(self, task: Task, job: Job, worker_id: str, now: int) -> bool:
        # Whether this worker may fill the task's next slot (placement: drawn replica slots). A task nobody holds is
        # anyone's; a later slot goes to the worker drawn for it, drawn now if no draw stands.
        if not self._members(task) or task.reserved == worker_id:
            return True
        if task.reserved is not None:
            if task.reserved_until > now:
                return False
            task.passed.add(task.reserved)  # it did not come in time: draw again without it
            task.reserved = None
        if len(task.passed) >= self.placement.max_draws:
            return True  # nobody drawn came: the slot is open to any eligible worker
        drawn = placement.draw(self._candidates(task, job, now), self._pick)
        if drawn is None or drawn == worker_id:
            return True
        task.reserved, task.reserved_until = drawn, now + self.placement.reserve_ms
        heapq.heappush(self._wakeups, (task.reserved_until, task.task_id))
        self.drawn = True
        return False

    def _candidates(self, task: Task, job: Job, now: int) -> list[str]:
        # Who a replica slot may be drawn for: present eligible workers, trusted ones if the task needs trust,
        # else those past probation if there are any.
        kernel_key = f"{job.kernel}@{job.kernel_version}"
        pool = [w for w in self.workers
                if w not in task.passed and self._could_serve(w, job, now)
                and self._eligible(task, w, trusted=self.trust.trusted(w, kernel_key))]
        if task.state == "validated":  # an audit: never a worker on probation, nor untrusted before the fallback
            pool = [w for w in pool if not self.on_probation(w)]
            if now - task.audit_since < self.audits.fallback_ms:
                pool = [w for w in pool if self.trust.trusted(w, kernel_key)]
        if task.needs_trusted:
            trusted = [w for w in pool if self.trust.trusted(w, kernel_key)]
            if trusted:
                return trusted
        seasoned = [w for w in pool if not self.on_probation(w)]
        return seasoned or pool

    def _grant(self, task: Task, job: Job, kernel_key: str, worker_id: str, is_trusted: bool, now: int) -> LeaseGrant:
        lease = Lease(
            lease_id=self._new_id(), task_id=task.task_id, job_id=task.job_id, worker_id=worker_id,
            issued_ms=now, expires_ms=now + self.lease_timeout_ms,
        )
        self.leases[lease.lease_id] = lease
        self._changes.leases[lease.lease_id] = lease
        heapq.heappush(self._expiry, (lease.expires_ms, lease.lease_id))
        alone = not self._members(task)
        task.leases.append(lease.lease_id)
        task.reserved, task.passed = None, set()
        self._mark_holder(task, worker_id)
        worker = self.workers.get(worker_id)
        if worker is not None:
            worker.active += 1
        if task.state == "validated":  # an audit lease
            return LeaseGrant(lease.lease_id, lease.expires_ms, task.payload, task.sig)
        task.wanted -= 1
        kernel = kernels.get(job.kernel, job.kernel_version)
        if self.on_probation(worker_id):  # its slot is held only for the grace period (placement)
            grace = placement.grace_ms(self.placement, self.lease_timeout_ms,
                                       self.speed.typical(kernel_key, kernel.work(task.params)))
            heapq.heappush(self._wakeups, (now + grace, task.task_id))
        if (alone and is_trusted and task.quorum > 1 and kernel.verify is None
                and self.trust.single_ok(worker_id, kernel_key, job.price)
                and auditing.bond_covers(self.audits, bonded=self.book.accounts.bonded(worker_id),
                                         exposure=0 if worker is None else worker.exposure, price=job.price)
                and self._rand() >= self.trust.spot_check_probability(worker_id, kernel_key)):
            # Adaptive replication: a trusted worker takes this task alone; the spot check said no replica.
            task.quorum, task.single, task.wanted = 1, lease.lease_id, 0
            self._changes.tasks[task.task_id] = task
        if job.state == "queued":
            job.state = states.move(states.JOB, job.state, "running")
            self._changes.jobs[job.job_id] = job
        return LeaseGrant(lease.lease_id, lease.expires_ms, task.payload, task.sig)

    def _move_lease(self, lease: Lease, state: str) -> None:
        if lease.state == "active":
            worker = self.workers.get(lease.worker_id)
            if worker is not None:
                worker.active -= 1
        lease.state = states.move(states.LEASE, lease.state, state)
        self._changes.leases[lease.lease_id] = lease

    def _mark_holder(self, task: Task, worker_id: str) -> None:
        task.workers.add(worker_id)
        w = self.workers.get(worker_id)
        if w is not None and w.owner is not None:
            task.owners.add(w.owner)
        if w is not None and w.address is not None:
            task.addresses.add(w.address)

    def _members(self, task: Task) -> list[str]:
        # Workers whose result may still count: active leases and non-error results.
        out = [self.leases[lid].worker_id for lid in task.leases if self.leases[lid].state == "active"]
        out += [self.results[lid].worker_id for lid in task.results
                if self.results[lid].error is None and self.results[lid].verified is not False]
        return out

    def _counts_as_trusted(self, task: Task, worker_id: str) -> bool:
        job = self.jobs[task.job_id]
        return self.trust.trusted(worker_id, f"{job.kernel}@{job.kernel_version}")

    def release(self, *, now: int, worker_id: str, lease_ids: Iterable[str]) -> int:
        """The worker gives back leases it will not compute; their tasks are offered again at once."""
        count = 0
        for lease_id in lease_ids:
            lease = self.leases.get(lease_id)
            if lease is None or lease.worker_id != worker_id or lease.state != "active":
                continue
            self._move_lease(lease, "released")
            task = self.tasks[lease.task_id]
            self._recompute_holders(task)
            self._lease_ended_empty(task, lease)
            self._reconsider(task, now)
            count += 1
        return count

    def _recompute_holders(self, task: Task) -> None:
        # Holders are everyone with a lease on the task that was not given back.
        task.workers.clear()
        task.owners.clear()
        task.addresses.clear()
        for lid in task.leases:
            if self.leases[lid].state != "released":
                self._mark_holder(task, self.leases[lid].worker_id)

    def _reconsider(self, task: Task, now: int) -> None:
        # After a lease ends or a result is set aside the task may be decidable (or need new leases).
        if task.state == "pending":
            job = self.jobs[task.job_id]
            self._settle(task, job, kernels.get(job.kernel, job.kernel_version), now)

    def expire(self, now: int) -> int:
        """Expire every active lease whose time is up, and reconsider every task whose grace, reservation or wait
        for a trusted worker ended; return how many of either (each may have made work for waiting workers)."""
        count = 0
        while self._expiry and self._expiry[0][0] <= now:
            _, lease_id = heapq.heappop(self._expiry)
            lease = self.leases.get(lease_id)
            if lease is None or lease.state != "active":
                continue
            self._move_lease(lease, "expired")
            worker = self.workers.get(lease.worker_id)
            if worker is not None:
                worker.expired += 1
                worker.capacity = placement.shrunk(worker.capacity)
                self._changes.workers[worker.worker_id] = worker
            task = self.tasks[lease.task_id]
            self._lease_ended_empty(task, lease)
            self._reconsider(task, now)
            count += 1
        while self._wakeups and self._wakeups[0][0] <= now:
            _, task_id = heapq.heappop(self._wakeups)
            woken = self.tasks.get(task_id)
            if woken is not None and woken.state == "pending":
                self._reconsider(woken, now)
                count += 1
            elif woken is not None and woken.audit in states.OPEN_AUDIT:
                count += 1  # a trusted-only audit may now go to any seasoned worker, or it waited too long
                idle = not any(self.leases[lid].state == "active" for lid in woken.leases)
                if idle and not self._seasoned(woken, self.jobs[woken.job_id], now):
                    self._close_audit(woken, self.jobs[woken.job_id], "skipped", now)  # nobody left who could
                elif now - woken.audit_since >= self.audits.give_up_ms:
                    running = [self.leases[lid].expires_ms for lid in woken.leases
                               if self.leases[lid].state == "active"]
                    if running:  # an auditor holds it: decide when its lease is over
                        heapq.heappush(self._wakeups, (max(running), task_id))
                    else:
                        self._close_audit(woken, self.jobs[woken.job_id], "skipped", now)  # no auditor came
        return count

    def _lease_ended_empty(self, task: Task, lease: Lease) -> None:
        # A single lease that ends without a result leaves the task replicated again.
        if task.single == lease.lease_id:
            task.quorum, task.single = self.jobs[task.job_id].quorum, None
            self._changes.tasks[task.task_id] = task

    def next_expiry_ms(self) -> int | None:
        """When the earliest active lease expires, if any."""
        while self._expiry:
            when, lease_id = self._expiry[0]
            lease = self.leases.get(lease_id)
            if lease is not None and lease.state == "active":
                return when
            heapq.heappop(self._expiry)
        return None

    def _refresh_wanted(self, task: Task, now: int) -> None:
        # How many more leases to hand out: what quorum still lacks, minus leases still holding a slot. A
        # probationary worker's lease holds its slot only for the grace period (placement).
        job = self.jobs[task.job_id]
        decision = self._decide(task, job, now)
        kernel = kernels.get(job.kernel, job.kernel_version)
        grace: int | None = None
        active = 0
        for lid in task.leases:
            lease = self.leases[lid]
            if lease.state != "active":
                continue
            if self.on_probation(lease.worker_id):
                if grace is None:
                    grace = placement.grace_ms(self.placement, self.lease_timeout_ms, self.speed.typical(
                        f"{job.kernel}@{job.kernel_version}", kernel.work(task.params)))
                if now >= lease.issued_ms + grace:
                    continue
            active += 1
        room = job.max_results - sum(1 for lid in task.results if self._counts(self.results[lid])) - active
        usable = any(self.results[lid].error is None and self.results[lid].verified is not False
                     for lid in task.results)
        if usable:
            want = decision.more
        else:  # nothing to agree with yet (no results, or only errors): ask as for a fresh task
            want = 1 if task.single or kernel.verify is not None else job.replicas
        task.wanted = max(0, min(want - active, room))
        task.needs_trusted = decision.needs_trusted
        self._wait_for_trusted(task, job, now, usable and self._need_trusted(task, job, now))

    def _wait_for_trusted(self, task: Task, job: Job, now: int, waiting: bool) -> None:
        # A task that has results but waits for a trusted member waits at most trusted_wait_ms; then it falls back
        # to a quorum one larger, of any independent workers (placement), and says so in its job's view.
        if not waiting:
            task.waiting_since = None
            return
        if task.waiting_since is None:
            task.waiting_since = now
            heapq.heappush(self._wakeups, (now + self.trust.policy.trusted_wait_ms, task.task_id))
        elif now - task.waiting_since >= self.trust.policy.trusted_wait_ms and not task.fell_back:
            task.fell_back, task.waiting_since = True, None
            task.quorum = min(task.quorum + 1, job.max_results)
            self._changes.tasks[task.task_id] = task
            self._settle(task, job, kernels.get(job.kernel, job.kernel_version), now)

    # ---- results ---------------------------------------------------------------------------------------

    def report(self, *, now: int, worker_id: str, reports: Iterable[ResultItem]) -> list[AckItem]:
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
        if lease.state in ("active", "expired") and task.state == "validated" and task.audit in states.OPEN_AUDIT:
            return self._take_audit(now, lease, task, job, kernel, wire, rep.output)
        if lease.state == "cancelled" or task.state != "pending":
            return AckItem(rep.lease_id, "rejected", f"task already {task.state}")
        result = self._take_result(now, lease, task, job, kernel, wire, rep.output)
        self._settle(task, job, kernel, now)
        if result.error:
            return AckItem(rep.lease_id, "rejected", f"malformed output: {result.error}")
        if result.verified is False:
            return AckItem(rep.lease_id, "rejected", "the kernel's check refutes this result")
        return AckItem(rep.lease_id, "accepted", "")

    def _take_result(self, now: int, lease: Lease, task: Task, job: Job, kernel: Kernel, wire: bytes,
                     output: Any) -> Result:
        """Record one result with everything known about it at arrival: shape, kernel check, speed, trust."""
        kernel_key = f"{job.kernel}@{job.kernel_version}"
        array, error = _check_output(kernel, task.params, output)
        self._move_lease(lease, "returned")
        result = Result(
            lease_id=lease.lease_id, task_id=task.task_id, job_id=job.job_id, worker_id=lease.worker_id,
            digest=wire_digest(wire), output=None if error else wire, verdict="pending", received_ms=now,
            error=error,
        )
        if array is not None and kernel.verify is not None:
            result.verified = kernel.verify(task.params, array)
        if array is not None and self.speed.too_fast(kernel_key, kernel.work(task.params), lease.worker_id,
                                                     now - lease.issued_ms):
            result.too_fast = True
            self._changes.trust[(lease.worker_id, kernel_key)] = self.trust.note_fast(lease.worker_id, kernel_key)
            self._trust_version += 1
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
            self._judge(result, "invalid", job, now)
        return result

    def _decide(self, task: Task, job: Job, now: int) -> Decision:
        kernel = kernels.get(job.kernel, job.kernel_version)
        candidates = [self._candidate(self.results[lid], kernel.exact) for lid in task.results]
        return decide(candidates, quorum=task.quorum, max_results=job.max_results, max_errors=job.max_errors,
                      exact=kernel.exact, compare=kernel.compare, need_trusted=self._need_trusted(task, job, now))

    def _need_trusted(self, task: Task, job: Job, now: int) -> bool:
        # Once a trusted worker has answered, or while one could still be asked, untrusted agreement is not enough.
        if task.quorum <= 1 or task.fell_back:
            return False
        return (any(self.results[lid].trusted and self.results[lid].error is None
                    and self.results[lid].verified is not False for lid in task.results)
                or self._trusted_could_help(task, job, now))

    def _counts(self, result: Result) -> bool:
        # Error results of an identity on probation, or banned, never count toward failing a task.
        error = result.error is not None or result.verified is False
        return not error or not (self.on_probation(result.worker_id) or self.trust.banned(result.worker_id))

    def _candidate(self, result: Result, exact: bool) -> Candidate:
        counts = self._counts(result)
        if result.error is not None or (result.output is None and result.verdict != "valid"):
            return Candidate(result.lease_id, result.digest, None, result.verified, result.trusted, counts=counts)
        # Exact kernels compare digests only; skip decoding the array.
        array = _EMPTY if exact or result.output is None else codec.array_from_wire(codec.decode(result.output))
        return Candidate(result.lease_id, result.digest, array, result.verified, result.trusted)

    def _settle(self, task: Task, job: Job, kernel: Kernel, now: int) -> None:
        decision = self._decide(task, job, now)
        if decision.state == "pending":
            if (decision.groups >= 2 and task.quorum == job.quorum and not decision.trusted_group
                    and any(self.on_probation(self.results[lid].worker_id) for lid in task.results)
                    and not self._need_trusted(task, job, now) and self._seasoned(task, job, now)):
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
            self._finish_job(job, "failed", now, f"task {task.index}: {decision.reason}")
            return
        task.state = states.move(states.TASK, task.state, "validated")
        assert decision.canonical is not None
        task.canonical = self.results[decision.canonical].output
        task.wanted = 0
        task.reserved, task.waiting_since = None, None
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

    def _maybe_done(self, job: Job, kernel: Kernel, now: int) -> None:
        # A job is done when every task is validated and no audit keeps it open; then its outputs are merged.
        if job.tasks_validated == job.n_tasks and job.audits_open == 0 and job.state not in states.FINISHED_JOB:
            outputs = [
                codec.array_from_wire(codec.decode(t.canonical))
                for t in self._job_tasks[job.job_id] if t.canonical is not None
            ]
            merged = kernel.merge(job.params, outputs)
            self._changes.merged[job.job_id] = codec.encode(codec.array_to_wire(merged))
            self._finish_job(job, "done", now, None)

    # ---- audits (coordinator.auditing) ----------------------------------------------------------------------

    def _draw_audit(self, task: Task, job: Job, winners: list[Result], now: int) -> None:
        # Whether to re-compute this just-validated task later. Never for a job that asked for no cross-check
        # (quorum 1), for a result the kernel's check confirmed, or where the escrow has no room for two auditors.
        if job.quorum == 1 or any(r.verified is True for r in winners) or len(winners) + 2 > job.max_results:
            return
        single = task.quorum == 1
        probation = any(self.on_probation(r.worker_id) for r in winners)
        if auditing.drawn(auditing.audit_probability(self.audits, single=single, probation=probation), self._rand):
            self._open_audit(task, job, now)
            if not self._seasoned(task, job, now):  # nobody present could ever take it: say so, do not wait
                self._close_audit(task, job, "skipped", now)

    def _seasoned(self, task: Task, job: Job, now: int) -> list[str]:
        # Present workers past probation that could take a slot of the task (a replica, or its audit), if drawn.
        kernel_key = f"{job.kernel}@{job.kernel_version}"
        return [w for w in self.workers if not self.on_probation(w) and self._could_serve(w, job, now)
                and self._eligible(task, w, trusted=self.trust.trusted(w, kernel_key))]

    def _open_audit(self, task: Task, job: Job, now: int) -> None:
        task.audit = states.move(states.AUDIT, task.audit, "due")
        task.audit_since = now
        job.audits_open += 1
        self._changes.tasks[task.task_id] = task
        heapq.heappush(self._wakeups, (now + self.audits.fallback_ms, task.task_id))
        heapq.heappush(self._wakeups, (now + self.audits.give_up_ms, task.task_id))

    def _may_audit(self, task: Task, job: Job, worker_id: str, is_trusted: bool, now: int) -> bool:
        # An audit slot: one audit lease at a time, never to a holder of the task or a worker on probation, drawn
        # (placement) among trusted workers where any is present.
        if any(self.leases[lid].state == "active" for lid in task.leases):
            return False
        if self.on_probation(worker_id) or not self._eligible(task, worker_id, trusted=is_trusted):
            return False
        if not is_trusted and now - task.audit_since < self.audits.fallback_ms:
            return False  # trusted auditors only, for a while (coordinator.auditing)
        task.needs_trusted = True  # the draw prefers trusted workers (placement._candidates)
        return self._placed_here(task, job, worker_id, now)

    def _take_audit(self, now: int, lease: Lease, task: Task, job: Job, kernel: Kernel, wire: bytes,
                    output: Any) -> AckItem:
        """An audit result: it confirms the task's output, disputes it, or settles a dispute."""
        array, error = _check_output(kernel, task.params, output)
        self._move_lease(lease, "returned")
        result = Result(
            lease_id=lease.lease_id, task_id=task.task_id, job_id=job.job_id, worker_id=lease.worker_id,
            digest=wire_digest(wire), output=None if error else wire, verdict="pending", received_ms=now,
            error=error,
        )
        self.results[result.lease_id] = result
        self._changes.results[result.lease_id] = result
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

    def _audit_passed(self, task: Task, job: Job, winners: list[Result], auditor: Result, now: int) -> None:
        self._judge(auditor, "valid", job, now, partners=[r.worker_id for r in winners])
        self._pay_auditor(task, auditor, job, now)
        for r in winners:  # a clean audit: what these workers had outstanding unchecked is cleared
            worker = self.workers[r.worker_id]
            worker.exposure, worker.audits_passed = 0, worker.audits_passed + 1
            self._changes.workers[worker.worker_id] = worker
        self._close_audit(task, job, "passed", now)

    def _audit_overturned(self, task: Task, job: Job, winners: list[Result], auditors: list[Result],
                          now: int) -> None:
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

    def _pay_auditor(self, task: Task, auditor: Result, job: Job, now: int) -> None:
        # The escrow holds max_results rewards per task: an auditor beyond them (a third, after a dispute) is unpaid.
        if sum(1 for lid in task.results if self.results[lid].verdict in ("valid", "overturned")) <= job.max_results:
            self._pay(auditor, job, now)

    def _convict(self, worker: Worker, task: Task, job: Job, now: int) -> None:
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

    def _close_audit(self, task: Task, job: Job, state: str, now: int) -> None:
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

    def _judge(self, result: Result, verdict: str, job: Job, now: int, *, partners: Iterable[str] = (),
               binding: bool = True) -> None:
        """Record a verdict and what it does to the worker: trust, capacity, speed reference, ban. An invalid
        verdict that is not `binding` (out-voted by identities that prove nothing) is a dispute, held against
        nobody."""
        result.verdict = states.move(states.RESULT, result.verdict, verdict)
        result.output = None  # the canonical output lives on the task; judged copies are not kept
        self._changes.results[result.lease_id] = result
        self._trust_version += 1
        worker = self.workers[result.worker_id]
        kernel_key = f"{job.kernel}@{job.kernel_version}"
        if verdict == "valid":
            worker.validated += 1
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

    def _ban(self, worker: Worker, reason: str, now: int) -> None:
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

    def _pay(self, result: Result, job: Job, now: int) -> None:
        self._append(now, "reward", accounts.escrow_account(job.job_id), result.worker_id, job.price, job.job_id,
                     result.task_id)

    def _append(self, now: int, kind: str, from_: str, to: str, amount: int, job_id: str | None = None,
                task_id: str | None = None) -> ledger.Entry:
        # Every credit moves through here: the Book checks the money rules before anything is recorded.
        entry, nodes = self.book.append(time=now, kind=kind, from_=from_, to=to, amount=amount, job_id=job_id,
                                        task_id=task_id)
        self._changes.entries.append(entry)
        self._changes.nodes.extend(nodes)
        return entry

    # ---- persistence hand-off ----------------------------------------------------------------------------

    def take_drawn(self) -> bool:
        """Whether a replica slot was reserved for some worker since the last call (its long-poll must wake)."""
        drawn, self.drawn = self.drawn, False
        return drawn

    def take_changes(self) -> Changes:
        """Everything touched since the last call; the caller must persist it before answering anyone."""
        changes, self._changes = self._changes, Changes()
        return changes


_EMPTY = np.zeros(0, dtype=np.uint8)


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
