"""Placement and the lease lifecycle: which worker gets which slot of a task, and what happens when a lease ends.

How a task moves: it is created `pending` and wants `replicas` results from distinct workers (one, for a kernel
that can verify a result on its own). Who gets which slot is the coordinator's draw (coordinator.placement): a
lease walk starts at a random task, each worker holds at most its capacity, and every slot after the first is
reserved for a drawn worker. A lease that times out is `expired` and the task is offered again (a late result on
it still counts); a probationary worker's lease holds its slot only for a grace. A trusted worker with a bond that
covers the task may take it *single* (quorum 1) unless a spot check says otherwise.

A mixin of coordinator.scheduler.Scheduler, which owns the state: every method takes `self: Scheduler`, so mypy
checks what it reads and calls on the other mixins (coordinator.judging, coordinator.auditor).
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from coordinator import auditing, placement, states
from coordinator.model import Job, Lease, Task
from coordinator.roster import Bag
from depin import kernels
from depin.errors import Forbidden
from depin.protocol import LeaseGrant

if TYPE_CHECKING:
    from coordinator.scheduler import Scheduler


class Leasing:
    """Placement and the lease lifecycle (a mixin of Scheduler)."""

    # Every method takes `self: Scheduler`: it reads state Scheduler.__init__ sets and calls the other mixins, and
    # the annotation lets mypy check both. mypy accepts a subclass as a self-type only with `type: ignore[misc]`
    # ("erased type of self is not a supertype of its class"); the ignores cover that one check on the def line.

    def _could_serve(self: Scheduler, worker_id: str, job: Job, now: int, *,  # type: ignore[misc]
                     room: bool = True) -> bool:
        # Whether this worker would be given a task of the job if it asked now: present (seen within presence_ms
        # and has asked for work), not banned, runs the job's kernel, asks no more than the job pays, and has room
        # (unless `room` is False: whether it could take one once it is done with what it holds).
        w = self.workers.get(worker_id)
        return (w is not None and w.last_lease_ms is not None
                and now - w.last_seen_ms <= self.placement.presence_ms and not self.trust.banned(worker_id)
                and _runs(w.kernels, w.published, w.platform, job) and w.min_price <= job.price
                and (not room or w.active < w.capacity))

    def _trusted_could_help(self: Scheduler, task: Task, job: Job, now: int) -> bool:  # type: ignore[misc]
        # Some present trusted worker could still be given this task (not a holder, nor sharing an address, and it
        # runs the kernel at this price) - unless the task already waited for one too long (placement: fell back).
        if task.fell_back:
            return False
        kernel_key = f"{job.kernel}@{job.kernel_version}"
        online = now - self.trust.policy.online_ms
        # Among the workers that earned trust for the kernel (trust.earned_for, kept as streaks move): few, and a
        # lease walk asks this for every task it visits that waits for one.
        return any(w in self.workers and self.workers[w].last_seen_ms >= online and self.trust.trusted(w, kernel_key)
                   and self._eligible(task, w, trusted=True) and self._could_serve(w, job, now)
                   for w in self.trust.earned_for(kernel_key))

    def _present(self: Scheduler, kernel_key: str, job: Job, now: int, *,  # type: ignore[misc]
                 seasoned: bool | None) -> list[Bag]:
        # The roster's bags that may hold workers present for the job: past probation (True), on it (False), both.
        # A lease walk asks this for every task it visits: the answer is kept while no bag is made or dropped
        # (roster.version; bags themselves are live, so their members are always current).
        self.roster.prune(now - self.placement.presence_ms)
        key = (self.roster.version, kernel_key, job.price, seasoned)
        found = self._bags_seen.get(key)
        if found is None:
            if len(self._bags_seen) > 64:
                self._bags_seen.clear()
            found = self._bags_seen[key] = self.roster.bags(kernel_key, job.price, seasoned=seasoned)
        return found

    def _trust_needs_probation(self: Scheduler) -> bool:  # type: ignore[misc]
        # Whether no worker can be trusted before it is past probation (so a search for a trusted worker may skip
        # the crowd on probation): a streak is of validated results, and probation ends after probation_valid.
        policy = self.trust.policy
        return min(policy.trust_after, policy.bonded_trust_after) >= policy.probation_valid

    def on_probation(self: Scheduler, worker_id: str) -> bool:  # type: ignore[misc]
        """Whether the worker has fewer than `probation_valid` validated results (placement: probation)."""
        w = self.workers.get(worker_id)
        return w is None or w.validated < self.trust.policy.probation_valid

    def _eligible(self: Scheduler, task: Task, worker_id: str, *, trusted: bool) -> bool:  # type: ignore[misc]
        # Whether this worker may hold a replica of the task: never twice, never beside a worker seen from the
        # same public address, and, unless it is trusted, never beside a worker declaring the same owner. An
        # owner is an unchecked claim: honouring it for trusted workers would let colluders shut them out of a
        # task (and so lift the trusted-member rule) by declaring their owner.
        return self._apart(task, worker_id, task.workers, task.addresses, task.owners, trusted=trusted)

    def _apart(self: Scheduler, task: Task, worker_id: str, others: set[str], addresses: set[str],  # type: ignore[misc]
               owners: set[str], *, trusted: bool) -> bool:
        # Not one of `others`, not seen from one of their public addresses, and, unless trusted, not declaring one
        # of their owners (_eligible, _may_check); of the task's platform class, if it has one (homogeneous
        # redundancy).
        if worker_id in others:
            return False
        w = self.workers.get(worker_id)
        if w is None:
            return task.platform is None
        if task.platform is not None and w.platform != task.platform:
            return False
        if w.address is not None and w.address in addresses:
            return False
        return trusted or w.owner is None or w.owner not in owners

    def _may_check(self: Scheduler, task: Task, worker_id: str, *, trusted: bool) -> bool:  # type: ignore[misc]
        # Whether this worker may audit the task: as _eligible, but against the workers the audit checks, those
        # with a result on the task (judged, malformed or set aside) or an active lease on it. A lease that ended
        # without a result (a backup cancelled when the task was decided, an expired one) computed nothing to be
        # judged by; counting it let a cheater and its Sybil, answering first beside an honest backup, leave no
        # possible auditor (found by test_e2e_trust_attacks).
        involved = {self.results[lid].worker_id for lid in task.results}
        involved.update(self.leases[lid].worker_id for lid in task.leases  # any result at all: malformed, set aside
                        if self.leases[lid].state in ("active", "returned"))
        others = [self.workers[x] for x in involved if x in self.workers]
        return self._apart(task, worker_id, involved, {o.address for o in others if o.address is not None},
                           {o.owner for o in others if o.owner is not None}, trusted=trusted)

    def lease(self: Scheduler, *, now: int, worker_id: str, max_tasks: int,  # type: ignore[misc]
              kernels_ok: Iterable[str], min_price: int = 0, published: bool = False,
              platform: str | None = None) -> list[LeaseGrant]:
        """Up to `max_tasks` leases for this worker, within its capacity: the best-paying job first (then the
        oldest), only jobs paying at least `min_price`, of the kernels it listed (and published ones if
        `published`), within a job from a random task on, never two replicas of one task to one worker (or owner,
        or public address, or of another platform class where the kernel compares like with like), a replica slot
        only to the worker drawn for it, the last quorum slot kept for a trusted worker while one could take it."""
        if self.trust.banned(worker_id):
            raise Forbidden(f"worker banned: {self.trust.banned(worker_id)}")
        self.expire(now)
        accepted = frozenset(kernels_ok)
        worker = self.workers.get(worker_id)
        if worker is not None:
            worker.kernels, worker.last_lease_ms, worker.asked = accepted, now, max_tasks
            worker.published, worker.platform = published, platform
            self.roster.note(worker, seasoned=not self.on_probation(worker_id))
            room = min(max_tasks, worker.capacity - worker.active)
        else:
            room = min(max_tasks, self.placement.start_capacity)
        grants: list[LeaseGrant] = []
        seasoned = not self.on_probation(worker_id)
        backups: list[tuple[Task, Job, str, bool]] = []  # slots it may back up once nothing else is left (placement)
        for neg_price, _, job_id in list(self._order):
            if len(grants) >= room or -neg_price < min_price:
                break  # jobs are in price order: the rest pay less
            job = self.jobs[job_id]
            kernel_key = f"{job.kernel}@{job.kernel_version}"
            if not _runs(accepted, published, platform, job):
                continue
            slots = self._open.get(job_id)
            if slots is None or not (slots or job.materialized < job.n_tasks):
                continue
            is_trusted = self.trust.trusted(worker_id, kernel_key)
            # The room is checked right after each grant, never before the walk goes on: going on may make a task.
            for task in slots.walk(self._pick, job.n_tasks - job.materialized, functools.partial(self._make_task, job)):
                if task.state == "validated" and task.audit in states.OPEN_AUDIT:
                    if self._may_audit(task, job, worker_id, is_trusted, now):
                        grants.append(self._grant(task, job, kernel_key, worker_id, False, now))
                        if len(grants) >= room:
                            break
                    continue
                if task.state != "pending":
                    continue
                if task.needs_trusted and not self._trusted_could_help(task, job, now):
                    # The trusted worker this task waited for is gone: decide again without it.
                    self._settle(task, job, kernels.get(job.kernel, job.kernel_version), now)
                    if task.state != "pending":
                        continue
                if task.wanted <= 0:
                    if seasoned and task.backups > 0:
                        backups.append((task, job, kernel_key, is_trusted))
                    continue
                if self._slot_for(task, job, worker_id, is_trusted, now):
                    grants.append(self._grant(task, job, kernel_key, worker_id, is_trusted, now))
                    if len(grants) >= room:
                        break
        for task, job, kernel_key, is_trusted in backups:
            if len(grants) >= room:
                break
            if task.state == "pending" and task.backups > 0 and self._slot_for(task, job, worker_id, is_trusted, now):
                grants.append(self._grant(task, job, kernel_key, worker_id, is_trusted, now))
        return grants

    def _slot_for(self: Scheduler, task: Task, job: Job, worker_id: str, is_trusted: bool,  # type: ignore[misc]
                  now: int) -> bool:
        # Steps 4 to 6 of the walk (PROTOCOL.md 12.1) for a task that wants a lease (or a backup) from this worker:
        # eligible, not kept for a trusted worker, and its slot placed here.
        if not self._eligible(task, worker_id, trusted=is_trusted):
            return False
        if not is_trusted and task.quorum > 1:
            members = self._members(task)
            last_slot = len(members) + 1 >= task.quorum
            if ((task.needs_trusted or (last_slot and not any(self._counts_as_trusted(task, m) for m in members)))
                    and self._trusted_could_help(task, job, now)):  # the search last: it is the costly test
                return False
        return self._placed_here(task, job, worker_id, now)

    def _placed_here(self: Scheduler, task: Task, job: Job, worker_id: str, now: int) -> bool:  # type: ignore[misc]
        # Whether this worker may fill the task's next slot (placement: drawn replica slots). A task nobody holds is
        # anyone's; a later slot goes to the worker drawn for it, drawn now if no draw stands.
        if not self._members(task) or task.reserved == worker_id:
            return True
        if task.reserved is not None:
            if task.reserved_until > now:
                return False
            task.passed.add(task.reserved)  # it did not come in time: draw again without it
            task.reserved = None
            self._recount_later(task)
        if len(task.passed) >= self.placement.max_draws:
            return True  # nobody drawn came: the slot is open to any eligible worker
        drawn = self._draw(task, job, now)
        if drawn is None or drawn == worker_id:
            return True
        task.reserved, task.reserved_until = drawn, now + self.placement.reserve_ms
        self._recount_later(task)
        heapq.heappush(self._wakeups, (task.reserved_until, task.task_id))
        self._drawn_for.add(drawn)
        return False

    def _draw(self: Scheduler, task: Task, job: Job, now: int) -> str | None:  # type: ignore[misc]
        # Who a replica slot is drawn for, uniformly among present eligible workers: trusted ones if the task needs
        # trust and any is there, else those past probation if any is there, else the rest. An audit slot: never a
        # worker on probation, and only a trusted one before the fallback.
        kernel_key = f"{job.kernel}@{job.kernel_version}"

        may = self._may_check if task.state == "validated" else self._eligible

        def eligible(w: str) -> bool:
            return (w not in task.passed and self._could_serve(w, job, now)
                    and may(task, w, trusted=self.trust.trusted(w, kernel_key)))

        def trusted(w: str) -> bool:
            return self.trust.trusted(w, kernel_key) and eligible(w)

        def seasoned(w: str) -> bool:
            return not self.on_probation(w) and eligible(w)

        def fresh(w: str) -> bool:
            return self.on_probation(w) and eligible(w)

        past = self._present(kernel_key, job, now, seasoned=True)
        tiers: list[tuple[list[Bag], Callable[[str], bool]]] = []
        if task.state == "validated":
            tiers.append((past, lambda w: seasoned(w) and self.trust.trusted(w, kernel_key)))
            if now - task.audit_since >= self.audits.fallback_ms:
                tiers.append((past, seasoned))
        else:
            if task.needs_trusted:
                tiers.append((past if self._trust_needs_probation()
                              else self._present(kernel_key, job, now, seasoned=None), trusted))
            tiers += [(past, seasoned), (self._present(kernel_key, job, now, seasoned=False), fresh)]
        for bags, accept in tiers:
            drawn = self.roster.draw(bags, accept, self._pick)
            if drawn is not None:
                return drawn
        return None

    def _grant(self: Scheduler, task: Task, job: Job, kernel_key: str, worker_id: str,  # type: ignore[misc]
               is_trusted: bool, now: int) -> LeaseGrant:
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
        self._recount_later(task)
        self._mark_holder(task, worker_id)
        worker = self.workers.get(worker_id)
        if worker is not None:
            worker.active += 1
        if task.state == "validated":  # an audit lease
            return LeaseGrant(lease.lease_id, lease.expires_ms, task.payload, task.sig)
        if task.wanted > 0:
            task.wanted -= 1
        else:  # a backup of a probationary lease (placement)
            task.backups = max(0, task.backups - 1)
        kernel = kernels.get(job.kernel, job.kernel_version)
        if kernel.homogeneous and task.platform is None:  # the first holder's platform class is the task's
            task.platform = None if worker is None else worker.platform
            self._changes.tasks[task.task_id] = task
        if self.on_probation(worker_id):  # its slot may be backed up, then is held only for the grace (placement)
            typical = self.speed.typical(kernel_key, kernel.work(task.params))
            heapq.heappush(self._wakeups,
                           (now + placement.backup_ms(self.placement, self.lease_timeout_ms, typical), task.task_id))
            heapq.heappush(self._wakeups,
                           (now + placement.grace_ms(self.placement, self.lease_timeout_ms, typical), task.task_id))
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

    def _move_lease(self: Scheduler, lease: Lease, state: str) -> None:  # type: ignore[misc]
        if lease.state == "active":
            worker = self.workers.get(lease.worker_id)
            if worker is not None:
                worker.active -= 1
        lease.state = states.move(states.LEASE, lease.state, state)
        self._changes.leases[lease.lease_id] = lease

    def _mark_holder(self: Scheduler, task: Task, worker_id: str) -> None:  # type: ignore[misc]
        task.workers.add(worker_id)
        w = self.workers.get(worker_id)
        if w is not None and w.owner is not None:
            task.owners.add(w.owner)
        if w is not None and w.address is not None:
            task.addresses.add(w.address)

    def _members(self: Scheduler, task: Task) -> list[str]:  # type: ignore[misc]
        # Workers whose result may still count: active leases and non-error results.
        out = [self.leases[lid].worker_id for lid in task.leases if self.leases[lid].state == "active"]
        out += [self.results[lid].worker_id for lid in task.results
                if self.results[lid].error is None and self.results[lid].verified is not False]
        return out

    def _counts_as_trusted(self: Scheduler, task: Task, worker_id: str) -> bool:  # type: ignore[misc]
        job = self.jobs[task.job_id]
        return self.trust.trusted(worker_id, f"{job.kernel}@{job.kernel_version}")

    def release(self: Scheduler, *, now: int, worker_id: str, lease_ids: Iterable[str]) -> int:  # type: ignore[misc]
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
            self._freed[task.job_id] += task.audit in states.OPEN_AUDIT  # an audit slot is offered again
            count += 1
        return count

    def _recompute_holders(self: Scheduler, task: Task) -> None:  # type: ignore[misc]
        # Holders are everyone with a lease on the task that was not given back.
        task.workers.clear()
        task.owners.clear()
        task.addresses.clear()
        for lid in task.leases:
            if self.leases[lid].state != "released":
                self._mark_holder(task, self.leases[lid].worker_id)

    def _reconsider(self: Scheduler, task: Task, now: int) -> None:  # type: ignore[misc]
        # After a lease ends or a result is set aside the task may be decidable (or need new leases).
        if task.state == "pending":
            job = self.jobs[task.job_id]
            self._settle(task, job, kernels.get(job.kernel, job.kernel_version), now)

    def expire(self: Scheduler, now: int) -> int:  # type: ignore[misc]
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
            self._freed[task.job_id] += task.audit in states.OPEN_AUDIT  # an audit slot is offered again
            count += 1
        while self._wakeups and self._wakeups[0][0] <= now:
            _, task_id = heapq.heappop(self._wakeups)
            woken = self.tasks.get(task_id)
            if woken is not None and woken.state == "pending":
                # A reservation that ran out leaves its slot to be drawn again, for whoever asks next.
                self._freed[woken.job_id] += woken.reserved is not None and woken.reserved_until <= now
                self._reconsider(woken, now)
                count += 1
            elif woken is not None and woken.audit in states.OPEN_AUDIT:
                self._freed[woken.job_id] += 1
                count += 1  # a trusted-only audit may now go to any seasoned worker, or it waited too long
                idle = not any(self.leases[lid].state == "active" for lid in woken.leases)
                if idle and not self._could_audit(woken, self.jobs[woken.job_id], now):
                    self._close_audit(woken, self.jobs[woken.job_id], "skipped", now)  # nobody left who could
                elif now - woken.audit_since >= self.audits.give_up_ms:
                    running = [self.leases[lid].expires_ms for lid in woken.leases
                               if self.leases[lid].state == "active"]
                    if running:  # an auditor holds it: decide when its lease is over
                        heapq.heappush(self._wakeups, (max(running), task_id))
                    else:
                        self._close_audit(woken, self.jobs[woken.job_id], "skipped", now)  # no auditor came
        return count

    def _lease_ended_empty(self: Scheduler, task: Task, lease: Lease) -> None:  # type: ignore[misc]
        # A single lease that ends without a result leaves the task replicated again.
        if task.single == lease.lease_id:
            task.quorum, task.single = self.jobs[task.job_id].quorum, None
            self._changes.tasks[task.task_id] = task

    def next_expiry_ms(self: Scheduler) -> int | None:  # type: ignore[misc]
        """When the earliest active lease expires, if any."""
        while self._expiry:
            when, lease_id = self._expiry[0]
            lease = self.leases.get(lease_id)
            if lease is not None and lease.state == "active":
                return when
            heapq.heappop(self._expiry)
        return None

    def _refresh_wanted(self: Scheduler, task: Task, now: int) -> None:  # type: ignore[misc]
        # How many more leases to hand out: what quorum still lacks, minus leases still holding a slot. A
        # probationary worker's lease holds its slot only for the grace period, and past its backup time a worker
        # past probation with nothing else to do may take the slot beside it (placement: backups).
        job = self.jobs[task.job_id]
        decision = self._decide(task, job, now)
        kernel = kernels.get(job.kernel, job.kernel_version)
        before = (task.wanted, task.backups)
        times: tuple[int, int] | None = None
        active = tentative = 0
        for lid in task.leases:
            lease = self.leases[lid]
            if lease.state != "active":
                continue
            if self.on_probation(lease.worker_id):
                if times is None:
                    typical = self.speed.typical(f"{job.kernel}@{job.kernel_version}", kernel.work(task.params))
                    times = (placement.backup_ms(self.placement, self.lease_timeout_ms, typical),
                             placement.grace_ms(self.placement, self.lease_timeout_ms, typical))
                if now >= lease.issued_ms + times[1]:
                    continue
                if now >= lease.issued_ms + times[0]:
                    tentative += 1
            active += 1
        n = sum(1 for lid in task.results if self._counts(self.results[lid]))
        usable = any(self.results[lid].error is None and self.results[lid].verified is not False
                     for lid in task.results)
        if usable:
            want = decision.more
        else:  # nothing to agree with yet (no results, or only errors): ask as for a fresh task
            want = 1 if task.single or kernel.verify is not None else job.replicas
        task.wanted = max(0, min(want - active, job.max_results - n - active))
        firm = active - tentative
        task.backups = max(0, min(want - firm, job.max_results - n - firm)) - task.wanted
        if task.wanted > 0 or task.backups > 0:
            self._open[job.job_id].add(task)
        # A rise in either is new work: a backup turning into a plain slot opens it to workers on probation too.
        self._freed[task.job_id] += max(0, task.wanted - before[0]) + max(0, task.backups - before[1])
        if task.needs_trusted != decision.needs_trusted:
            task.needs_trusted = decision.needs_trusted
            self._recount_later(task)
        # It waits for a trusted worker only while none of its results is a trusted one: with a trusted result in
        # hand any agreeing result completes the quorum, and raising the quorum (the fallback) could only make it
        # unreachable (two trusted workers, quorum 3).
        trusted_in = any(self.results[lid].trusted and self.results[lid].error is None
                         and self.results[lid].verified is not False for lid in task.results)
        self._wait_for_trusted(task, job, now, usable and not trusted_in and self._need_trusted(task, job, now))

    def _wait_for_trusted(self: Scheduler, task: Task, job: Job, now: int, waiting: bool) -> None:  # type: ignore[misc]
        # A task that has results but waits for a trusted member waits at most trusted_wait_ms, and not at all when
        # the trusted workers that could come already have their backlog waiting for them (_trusted_backlog); then it
        # falls back to a quorum one larger, of any independent workers (placement), and says so in its job's view.
        if not waiting:
            if task.waiting_since is not None:
                self._set_waiting(task, job, None)
                self._changes.tasks[task.task_id] = task
            return
        if task.waiting_since is None:
            if len(self._waiting.get(f"{job.kernel}@{job.kernel_version}", ())) < self._trusted_backlog(job, now):
                self._set_waiting(task, job, now)
                self._changes.tasks[task.task_id] = task
                heapq.heappush(self._wakeups, (now + self.trust.policy.trusted_wait_ms, task.task_id))
                return
        elif now - task.waiting_since < self.trust.policy.trusted_wait_ms or task.fell_back:
            return
        task.fell_back = True
        self._set_waiting(task, job, None)
        task.quorum = min(task.quorum + 1, job.max_results)
        self._changes.tasks[task.task_id] = task
        self._settle(task, job, kernels.get(job.kernel, job.kernel_version), now)

    def _set_waiting(self: Scheduler, task: Task, job: Job, since: int | None) -> None:  # type: ignore[misc]
        # The one place a task's wait for a trusted worker begins or ends: the kernel's set of waiting tasks follows.
        task.waiting_since = since
        waiting = self._waiting.setdefault(f"{job.kernel}@{job.kernel_version}", set())
        if since is None:
            waiting.discard(task.task_id)
        else:
            waiting.add(task.task_id)

    def _trusted_backlog(self: Scheduler, job: Job, now: int) -> int:  # type: ignore[misc]
        # How many tasks of the kernel may wait for a trusted worker at once: trusted_backlog lease requests' worth
        # (what each asked for last, within its capacity) of every available trusted worker (as in
        # _trusted_could_help, but whether it has room now aside). More would wait only to fall back: the trusted
        # workers could not take them in time, and every lease walk visits them.
        kernel_key = f"{job.kernel}@{job.kernel_version}"
        online = now - self.trust.policy.online_ms
        room = sum(max(1, min(w.asked, w.capacity))
                   for w in (self.workers.get(x) for x in self.trust.earned_for(kernel_key))
                   if w is not None and w.last_seen_ms >= online and self.trust.trusted(w.worker_id, kernel_key)
                   and self._could_serve(w.worker_id, job, now, room=False))
        return room * self.trust.policy.trusted_backlog


def _runs(kernel_keys: frozenset[str], published: bool, platform: str | None, job: Job) -> bool:
    """Whether a worker that listed `kernel_keys` (and runs published kernels if `published`) runs the job's kernel:
    a published kernel is any at version 0, and one with homogeneous redundancy only on a worker that reported its
    platform class."""
    if job.kernel_version != 0:
        return f"{job.kernel}@{job.kernel_version}" in kernel_keys
    return published and (platform is not None or not kernels.get(job.kernel, 0).homogeneous)
