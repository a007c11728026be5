"""The scheduler as a market: grants, escrow at submission, rewards out of the escrow, the refund when a job ends,
who may act on a job, and price-ordered leasing with a worker's minimum price. Exact accounting, then a random
walk (hypothesis state machine) with a store save and restore in between. Explicit clock, deterministic ids."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from coordinator.scheduler import Scheduler
from coordinator.store import Store
from depin import accounts, ledger, protocol
from depin.errors import Conflict, Forbidden, LedgerError, NotFound, PaymentRequired, UserError
from depin.protocol import LeaseGrant
from tests.coordinator.sched_support import (
    COORDINATOR,
    FUNDS,
    KERNELS,
    NO_AUDITS,
    OPEN_PLACEMENT,
    OTHER,
    PRICE,
    SUBMITTER,
    TIMEOUT,
    WORKER_KEYS,
    Ids,
    bad,
    balance,
    escrow,
    good,
    lease,
    new_scheduler,
    open_policy,
    refunds,
    report,
    rewards,
    submit,
    task_of,
    wid,
)

ELAPSED = 100


def _all(s: Scheduler) -> list[ledger.Entry]:
    """Every entry so far (the caller never took the scheduler's changes before)."""
    return s.take_changes().entries


def _job_entries(entries: list[ledger.Entry], job_id: str) -> list[tuple[str, str, str, int, str | None]]:
    return [(e.kind, e.from_, e.to, e.amount, e.task_id) for e in entries if e.job_id == job_id]


def _job_only(entries: list[ledger.Entry], job_id: str) -> list[ledger.Entry]:
    return [e for e in entries if e.job_id == job_id]


def _check_money(entries: list[ledger.Entry]) -> ledger.Summary:
    """The chain and every money rule hold, and the parties and escrows hold exactly what was minted."""
    summary = ledger.verify(entries)
    assert sum(v for k, v in summary.balances.items() if k != ledger.MINT) == summary.minted
    return summary


# ---- what a job costs ------------------------------------------------------------------------------------------------


def test_quorum_two_pays_two_prices_per_validated_task_and_refunds_the_rest() -> None:
    s = new_scheduler()
    job = submit(s, now=0, tasks=3, replicas=2, max_results=5, price=PRICE)
    assert (job.quorum, job.max_cost) == (2, 3 * 5 * PRICE)
    pot = accounts.escrow_account(job.job_id)
    ga, gb = lease(s, "A", now=1), lease(s, "B", now=1)
    for g in ga:
        report(s, "A", g, good(g), now=1 + ELAPSED)
    assert (job.state, escrow(s, job)) == ("running", job.max_cost)  # nothing validated yet: nothing paid
    for g in gb:
        report(s, "B", g, good(g), now=2 + ELAPSED)
    assert job.state == "done"
    entries = _all(s)
    tasks = [f"{job.job_id}-{i}" for i in range(3)]
    assert _job_entries(entries, job.job_id) == [
        ("escrow", SUBMITTER, pot, job.max_cost, None),
        *[("reward", pot, worker, PRICE, t) for t in tasks for worker in (wid("A"), wid("B"))],
        ("refund", pot, SUBMITTER, job.max_cost - 6 * PRICE, None),
    ]
    summary = _check_money(entries)
    assert summary.balances == {ledger.MINT: -FUNDS, SUBMITTER: FUNDS - 6 * PRICE, pot: 0,
                                wid("A"): 3 * PRICE, wid("B"): 3 * PRICE}


def test_a_disagreement_pays_only_the_agreeing_results() -> None:
    s = new_scheduler()
    job = submit(s, tasks=1, replicas=2, max_results=4)
    (ga,), (gb,) = lease(s, "A", now=0), lease(s, "B", now=0)
    report(s, "A", ga, good(ga), now=10)
    report(s, "B", gb, bad(gb, 1), now=10)
    (gc,) = lease(s, "C", now=20)
    report(s, "C", gc, bad(gc, 2), now=30)  # three different answers: one more replica
    (gd,) = lease(s, "D", now=40)
    report(s, "D", gd, good(gd), now=50)
    assert job.state == "done"
    entries = _all(s)
    assert rewards(entries) == [(f"{job.job_id}-0", wid("A"), PRICE), (f"{job.job_id}-0", wid("D"), PRICE)]
    assert refunds(entries) == [(job.job_id, SUBMITTER, 4 * PRICE - 2 * PRICE)]
    assert {n: balance(s, n) for n in "ABCD"} == {"A": PRICE, "B": 0, "C": 0, "D": PRICE}
    _check_money(entries)


def test_a_quorum_that_waited_for_a_trusted_worker_pays_every_agreeing_result() -> None:
    # C and D agree while trusted A is online: the task waits for A; A agrees too, and all three are paid.
    policy = open_policy(trust_after=2, online_ms=1_000)
    s = new_scheduler(policy=policy, rand=lambda: 0.0)
    now = 0
    for _ in range(2):  # A and B earn trust, cross-checking each other
        submit(s, now=now, tasks=1, replicas=2)
        (ga,), (gb,) = lease(s, "A", now=now), lease(s, "B", now=now)
        report(s, "A", ga, good(ga), now=now + ELAPSED)
        report(s, "B", gb, good(gb), now=now + ELAPSED)
        now += 2 * ELAPSED
    assert s.trust.trusted(wid("A"), "mandelbrot@1")
    now += 10_000  # A and B go offline
    job = submit(s, now=now, tasks=1, replicas=2, max_results=5)
    (gc,), (gd,) = lease(s, "C", now=now), lease(s, "D", now=now)
    s.touch_worker(now=now + 10, worker_id=wid("A"), public_key=WORKER_KEYS["A"].public)  # A is back
    report(s, "C", gc, good(gc), now=now + ELAPSED)
    report(s, "D", gd, good(gd), now=now + ELAPSED)
    assert job.state == "running" and escrow(s, job) == job.max_cost
    (ga,) = lease(s, "A", now=now + ELAPSED)
    report(s, "A", ga, good(ga), now=now + 2 * ELAPSED)
    assert job.state == "done"
    entries = _all(s)
    assert sorted(to for _, to, _ in rewards(_job_only(entries, job.job_id))) == sorted(
        [wid("A"), wid("C"), wid("D")])
    assert refunds(entries)[-1] == (job.job_id, SUBMITTER, 5 * PRICE - 3 * PRICE)
    _check_money(entries)


def test_a_single_issued_task_pays_one_result() -> None:
    s = new_scheduler(policy=open_policy(trust_after=2, online_ms=1_000), rand=lambda: 0.999)
    now = 0
    for _ in range(2):
        submit(s, now=now, tasks=1, replicas=2)
        (ga,), (gb,) = lease(s, "A", now=now), lease(s, "B", now=now)
        report(s, "A", ga, good(ga), now=now + ELAPSED)
        report(s, "B", gb, good(gb), now=now + ELAPSED)
        now += 2 * ELAPSED
    job = submit(s, now=now, tasks=1, replicas=2, max_results=5)
    (ga,) = lease(s, "A", now=now)
    assert s.tasks[task_of(ga)["task_id"]].single == ga.lease_id
    report(s, "A", ga, good(ga), now=now + ELAPSED)
    assert job.state == "done"
    entries = _job_only(_all(s), job.job_id)
    assert rewards(entries) == [(f"{job.job_id}-0", wid("A"), PRICE)]
    assert refunds(entries) == [(job.job_id, SUBMITTER, job.max_cost - PRICE)]


def test_a_job_paid_in_full_gets_no_refund() -> None:
    s = new_scheduler()
    job = submit(s, tasks=2, replicas=2, max_results=2)  # every result it may use agrees: the escrow is spent
    for name in "AB":
        for g in lease(s, name, now=0):
            report(s, name, g, good(g), now=1)
    assert job.state == "done" and escrow(s, job) == 0
    entries = _all(s)
    assert [e.kind for e in entries] == ["grant", "escrow"] + ["reward"] * 4
    assert balance(s, SUBMITTER) == FUNDS - job.max_cost
    _check_money(entries)


def test_cancel_refunds_everything_not_yet_paid() -> None:
    s = new_scheduler()
    job = submit(s, tasks=3, replicas=2, max_results=3)
    ga, gb = lease(s, "A", now=0), lease(s, "B", now=0)
    report(s, "A", ga[0], good(ga[0]), now=1)
    report(s, "B", gb[0], good(gb[0]), now=1)  # task 0 validated: 2 x price paid
    report(s, "A", ga[1], good(ga[1]), now=2)  # task 1 waits for B: pending, unpaid
    s.cancel(now=3, job_id=job.job_id, requester=SUBMITTER)
    entries = _all(s)
    assert refunds(entries) == [(job.job_id, SUBMITTER, job.max_cost - 2 * PRICE)]
    assert entries[-1].time == 3 and escrow(s, job) == 0
    assert balance(s, SUBMITTER) == FUNDS - 2 * PRICE
    # The cancelled job's results are never paid afterwards.
    assert report(s, "B", gb[1], good(gb[1]), now=4).reason == "unknown lease, or its job has ended"
    assert not s.take_changes().entries
    _check_money(entries)


def test_cancelling_a_queued_job_refunds_its_whole_escrow() -> None:
    s = new_scheduler(funds=0)
    s.grant(now=0, account=SUBMITTER, amount=70)
    job = submit(s, tasks=2, replicas=2, max_results=5)  # 2 x 5 x 7 = 70: every credit it had
    assert balance(s, SUBMITTER) == 0
    s.cancel(now=1, job_id=job.job_id, requester=SUBMITTER)
    assert (balance(s, SUBMITTER), escrow(s, job)) == (70, 0)
    again = submit(s, now=2, tasks=2, replicas=2, max_results=5)  # the refund pays for the next job
    assert escrow(s, again) == 70
    assert [e.kind for e in _all(s)] == ["grant", "escrow", "refund", "escrow"]


def test_a_failed_job_refunds_what_it_did_not_pay() -> None:
    s = new_scheduler()
    job = submit(s, tasks=2, replicas=2, max_errors=0, max_results=4)
    (ga0, ga1), (gb0, _) = lease(s, "A", now=0), lease(s, "B", now=0)
    report(s, "A", ga0, good(ga0), now=1)
    report(s, "B", gb0, good(gb0), now=1)
    report(s, "A", ga1, {"dtype": "uint32", "shape": [1], "data": bytes(4)}, now=2)  # malformed: task 1 fails
    assert job.state == "failed"
    entries = _all(s)
    assert rewards(entries) == [(f"{job.job_id}-0", wid("A"), PRICE), (f"{job.job_id}-0", wid("B"), PRICE)]
    assert refunds(entries) == [(job.job_id, SUBMITTER, job.max_cost - 2 * PRICE)]
    assert escrow(s, job) == 0
    _check_money(entries)


# ---- paying for a job ------------------------------------------------------------------------------------------------


def test_insufficient_funds_is_payment_required_and_changes_nothing() -> None:
    s = new_scheduler(funds=0)
    s.grant(now=0, account=SUBMITTER, amount=6 * 5 * PRICE - 1)
    s.take_changes()
    with pytest.raises(PaymentRequired) as caught:
        submit(s, tasks=6, replicas=2, max_results=5)
    assert str(caught.value) == (
        f"insufficient funds: the job may cost up to {6 * 5 * PRICE} credits (6 tasks x 5 results x {PRICE} credits),"
        f" and account {SUBMITTER} holds {6 * 5 * PRICE - 1}; lower --price or --max-results, or ask the"
        " coordinator's operator for a grant")
    assert caught.value.http_status == 402
    assert s.jobs == {} and s.tasks == {} and not s.take_changes()
    assert s.book.size == 1 and lease(s, "A", now=1) == []
    with pytest.raises(PaymentRequired):
        submit(s, tasks=1, replicas=1, submitter=OTHER)  # an account never granted anything holds 0
    s.grant(now=2, account=SUBMITTER, amount=1)
    job = submit(s, tasks=6, replicas=2, max_results=5)  # exactly enough
    assert (balance(s, SUBMITTER), escrow(s, job)) == (0, job.max_cost)


def test_the_escrow_is_the_submitters_not_anyone_elses() -> None:
    s = new_scheduler()
    s.grant(now=0, account=OTHER, amount=100)
    job = submit(s, tasks=1, replicas=1, max_results=2, price=50, submitter=OTHER)
    assert (balance(s, OTHER), balance(s, SUBMITTER)) == (0, FUNDS)
    s.cancel(now=1, job_id=job.job_id, requester=OTHER)
    assert refunds(_all(s)) == [(job.job_id, OTHER, 100)]


@pytest.mark.parametrize("account", [ledger.MINT, "escrow:id0001", "A" * 32, "a" * 31, "a" * 33, "1" * 32, "",
                                     "a" * 31 + "\n"])
def test_a_grant_goes_only_to_a_party_id(account: str) -> None:
    s = new_scheduler(funds=0)
    with pytest.raises(UserError, match="is not an account id"):
        s.grant(now=0, account=account, amount=1)
    assert s.book.size == 0 and not s.take_changes()


@pytest.mark.parametrize("amount", [0, -1, protocol.MAX_GRANT + 1, 2**63])
def test_a_grant_amount_is_bounded(amount: int) -> None:
    s = new_scheduler(funds=0)
    with pytest.raises(UserError, match=f"a grant must be a whole number of credits from 1 to {2**53 - 1}"):
        s.grant(now=0, account=SUBMITTER, amount=amount)
    assert s.book.size == 0 and not s.take_changes()


def test_grants_stop_at_the_cap_on_credits_minted() -> None:
    s = new_scheduler(funds=0)
    full, rest = divmod(accounts.MAX_MINTED, protocol.MAX_GRANT)
    for _ in range(full):
        s.grant(now=0, account=SUBMITTER, amount=protocol.MAX_GRANT)
    entry = s.grant(now=1, account=OTHER, amount=rest)  # exactly up to the cap
    assert (entry.kind, entry.from_, entry.to, entry.amount, entry.job_id, entry.task_id) == (
        "grant", ledger.MINT, OTHER, rest, None, None)
    assert s.book.accounts.minted == accounts.MAX_MINTED
    with pytest.raises(Conflict, match=f"grants cannot exceed {accounts.MAX_MINTED} credits in all"):
        s.grant(now=2, account=OTHER, amount=1)
    summary = _check_money(_all(s))
    assert summary.minted == accounts.MAX_MINTED and summary.entries == full + 1


# ---- who may act on a job --------------------------------------------------------------------------------------------


def test_only_the_submitter_owns_a_job() -> None:
    s = new_scheduler()
    job = submit(s)
    assert s.owner_of(job.job_id, SUBMITTER, "cancel") is job
    for stranger in (OTHER, wid("A"), COORDINATOR.id):
        with pytest.raises(Forbidden, match="^only the job's submitter can fetch its result$"):
            s.owner_of(job.job_id, stranger, "fetch its result")
        with pytest.raises(Forbidden, match="^only the job's submitter can cancel it$"):
            s.cancel(now=1, job_id=job.job_id, requester=stranger)
    with pytest.raises(NotFound, match="^no job nope$"):
        s.owner_of("nope", SUBMITTER, "cancel")
    assert job.state == "queued" and escrow(s, job) == job.max_cost
    s.cancel(now=2, job_id=job.job_id, requester=SUBMITTER)
    assert job.state == "cancelled"
    assert s.owner_of(job.job_id, SUBMITTER, "fetch its result") is job  # a finished job still has its owner


# ---- price-ordered leasing -------------------------------------------------------------------------------------------


def _leased_jobs(grants: list[LeaseGrant]) -> list[str]:
    return [task_of(g)["job_id"] for g in grants]


def test_the_best_paying_job_is_leased_first_then_the_oldest() -> None:
    s = new_scheduler()
    cheap_old = submit(s, now=0, tasks=1, replicas=1, price=5)
    dear = submit(s, now=1, tasks=1, replicas=1, price=9)
    cheap_new = submit(s, now=2, tasks=1, replicas=1, price=5)
    dearest = submit(s, now=3, tasks=1, replicas=1, price=10)
    order = [_leased_jobs(lease(s, n, now=4, max_tasks=1)) for n in "ABCD"]
    assert order == [[dearest.job_id], [dear.job_id], [cheap_old.job_id], [cheap_new.job_id]]
    (g,) = lease(s, "E", now=TIMEOUT + 4, max_tasks=1)  # all four expire and are offered again, in the same order
    assert task_of(g)["job_id"] == dearest.job_id


def test_each_task_carries_the_price_its_job_pays() -> None:
    s = new_scheduler()
    jobs = {submit(s, now=i, tasks=2, replicas=1, price=p).job_id: p for i, p in enumerate((3, 11, 7))}
    grants = lease(s, "A", now=5)
    assert [(task_of(g)["job_id"], task_of(g)["price"]) for g in grants] == [
        (j, jobs[j]) for j in sorted(jobs, key=lambda j: -jobs[j]) for _ in range(2)]


def test_a_minimum_price_excludes_cheaper_jobs() -> None:
    s = new_scheduler()
    low = submit(s, now=0, tasks=2, replicas=1, price=5)
    at = submit(s, now=1, tasks=1, replicas=1, price=6)
    high = submit(s, now=2, tasks=1, replicas=1, price=8)
    grants = lease(s, "A", now=3, min_price=6)
    assert _leased_jobs(grants) == [high.job_id, at.job_id]  # a job paying exactly the minimum is fine
    assert s.workers[wid("A")].min_price == 6
    assert lease(s, "B", now=3, min_price=6) == []  # what is left pays too little for B
    assert low.state == "queued"
    assert _leased_jobs(lease(s, "B", now=3, min_price=5)) == [low.job_id, low.job_id]


def test_a_fully_leased_dear_job_does_not_stop_the_walk() -> None:
    # The walk stops at the first job paying less than the minimum (the rest pay even less), never at a job that
    # merely has nothing left to lease.
    s = new_scheduler()
    dear = submit(s, now=0, tasks=1, replicas=1, price=9)
    fair = submit(s, now=1, tasks=1, replicas=1, price=7)
    assert _leased_jobs(lease(s, "A", now=2, max_tasks=1)) == [dear.job_id]
    assert _leased_jobs(lease(s, "B", now=2, min_price=7)) == [fair.job_id]


@settings(max_examples=max(20, settings().max_examples // 2))
@given(jobs=st.lists(st.tuples(st.integers(1, 6), st.integers(0, 3), st.integers(1, 3)), min_size=1, max_size=6),
       min_price=st.integers(0, 7), max_tasks=st.integers(1, 8))
def test_leasing_follows_price_then_age_and_the_minimum(jobs: list[tuple[int, int, int]], min_price: int,
                                                        max_tasks: int) -> None:
    """An oracle: every pending task of every job paying at least the minimum, dearest job first, then oldest
    (then lowest id), tasks in index order; the first max_tasks of them."""
    s = new_scheduler()
    made = [submit(s, now=created, tasks=n, replicas=1, price=price) for price, created, n in jobs]
    expected = [f"{j.job_id}-{i}" for j in sorted(made, key=lambda j: (-j.price, j.created_ms, j.job_id))
                if j.price >= min_price for i in range(j.n_tasks)][:max_tasks]
    grants = lease(s, "A", now=10, max_tasks=max_tasks, min_price=min_price)
    assert [task_of(g)["task_id"] for g in grants] == expected


def test_price_order_survives_a_restore(tmp_path: Path) -> None:
    ids = Ids()
    s = new_scheduler(ids)
    store = Store(tmp_path / "c.sqlite3")
    made = [submit(s, now=i, tasks=1, replicas=1, price=p) for i, p in enumerate((4, 9, 4, 6))]
    store.save(s.take_changes())
    s2 = Scheduler.restore(key=COORDINATOR, lease_timeout_ms=TIMEOUT, new_id=ids, **store.load())
    grants = s2.lease(now=5, worker_id=wid("A"), max_tasks=8, kernels_ok=KERNELS, min_price=5)
    assert _leased_jobs(grants) == [made[1].job_id, made[3].job_id]
    store.close()


# ---- a random walk ---------------------------------------------------------------------------------------------------

SUBMITTERS = [SUBMITTER, OTHER]
NAMES = "ABCD"


class Market(RuleBasedStateMachine):
    """Grants, submissions, leases, honest and wrong reports, expiries, cancels and restarts, every change set saved
    as the service does. After every step the stored ledger verifies and adds up: credits held = credits minted,
    every finished job's escrow is empty, each escrow paid out exactly its rewards and refund, no (task, worker) is
    paid twice, and each worker holds exactly price x its valid results."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="depin-market-"))
        self.store = Store(self.dir / "coordinator.sqlite3")
        self.ids = Ids()
        self.policy = open_policy(trust_after=2, online_ms=10 * TIMEOUT)
        self.dice = random.Random(0)
        self.s = Scheduler(key=COORDINATOR, lease_timeout_ms=TIMEOUT, new_id=self.ids,
                           archive=self.store.result_verdict, policy=self.policy, rand=self.dice.random)
        self.now = 0
        self.granted = dict.fromkeys(SUBMITTERS, 0)
        self.held: dict[str, list[LeaseGrant]] = {n: [] for n in NAMES}
        self.restarts = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _tick(self, ms: int = ELAPSED) -> int:
        self.now += ms
        return self.now

    def _save(self) -> None:
        self.store.save(self.s.take_changes())

    @initialize(first=st.integers(200, 600), second=st.integers(0, 200), tasks=st.integers(1, 3),
                replicas=st.integers(1, 3), price=st.integers(1, 12))
    def first_job(self, first: int, second: int, tasks: int, replicas: int, price: int) -> None:
        for who, amount in zip(SUBMITTERS, (first, second), strict=True):
            if amount:
                self.grant(who, amount)
        self.submit(SUBMITTER, tasks, replicas, 0, price)

    @rule(who=st.sampled_from(SUBMITTERS), amount=st.integers(1, 400))
    def grant(self, who: str, amount: int) -> None:
        self.s.grant(now=self._tick(), account=who, amount=amount)
        self.granted[who] += amount
        self._save()

    @rule(who=st.sampled_from(SUBMITTERS), tasks=st.integers(1, 3), replicas=st.integers(1, 3),
          extra=st.integers(0, 2), price=st.integers(1, 12))
    def submit(self, who: str, tasks: int, replicas: int, extra: int, price: int) -> None:
        cost = price * tasks * (replicas + extra)
        have = self.s.book.accounts.balance(who)
        jobs = len(self.s.jobs)
        if cost > have:
            with pytest.raises(PaymentRequired):
                submit(self.s, now=self._tick(), tasks=tasks, replicas=replicas, max_results=replicas + extra,
                       price=price, submitter=who)
            assert len(self.s.jobs) == jobs and not self.s.take_changes()
            return
        job = submit(self.s, now=self._tick(), tasks=tasks, replicas=replicas, max_results=replicas + extra,
                     price=price, submitter=who)
        assert job.max_cost == cost and self.s.book.accounts.balance(who) == have - cost
        self._save()

    @rule(name=st.sampled_from(NAMES), n=st.integers(1, 3), min_price=st.sampled_from([0, 0, 4, 8]))
    def lease(self, name: str, n: int, min_price: int) -> None:
        if self.s.banned(wid(name)):
            with pytest.raises(Forbidden):
                lease(self.s, name, now=self._tick(), max_tasks=n, min_price=min_price)
            return
        grants = lease(self.s, name, now=self._tick(), max_tasks=n, min_price=min_price)
        assert len(grants) <= n
        for g in grants:
            task = task_of(g)
            assert task["price"] == self.s.jobs[task["job_id"]].price >= min_price
        self.held[name] += grants
        self._save()

    @rule(name=st.sampled_from(NAMES), n=st.integers(1, 3), honest=st.sampled_from([True, True, True, False]))
    def work(self, name: str, n: int, honest: bool) -> None:
        """Lease and report at once, as a worker does: so that walks get as far as rewards and refunds."""
        self.lease(name, n, 0)
        self.report(name, n, honest)

    @precondition(lambda self: any(self.held.values()))
    @rule(name=st.sampled_from(NAMES), k=st.integers(1, 3), honest=st.booleans())
    def report(self, name: str, k: int, honest: bool) -> None:
        grants, self.held[name] = self.held[name][:k], self.held[name][k:]
        now = self._tick()
        for g in grants:
            if self.s.banned(wid(name)):
                with pytest.raises(Forbidden):
                    report(self.s, name, g, good(g), now=now)
                continue
            report(self.s, name, g, good(g) if honest else bad(g), now=now)
        self._save()

    @rule()
    def expire(self) -> None:
        self.s.expire(self._tick(TIMEOUT))
        self._save()

    @precondition(lambda self: bool(self.s.jobs))
    @rule(data=st.data(), by_owner=st.booleans())
    def cancel(self, data: st.DataObject, by_owner: bool) -> None:
        job = self.s.jobs[data.draw(st.sampled_from(sorted(self.s.jobs)), label="job")]
        who = job.submitter if by_owner else next(x for x in SUBMITTERS if x != job.submitter)
        if not by_owner:
            with pytest.raises(Forbidden):
                self.s.cancel(now=self._tick(), job_id=job.job_id, requester=who)
        elif job.state in ("done", "failed", "cancelled"):
            with pytest.raises(Conflict):
                self.s.cancel(now=self._tick(), job_id=job.job_id, requester=who)
        else:
            self.s.cancel(now=self._tick(), job_id=job.job_id, requester=who)
            assert self.s.book.accounts.balance(accounts.escrow_account(job.job_id)) == 0
        self._save()

    @rule()
    def restart(self) -> None:
        self._save()
        before = (self.s.book.head, self.s.book.root(), {k: v for k, v in self.s.book.accounts.balances.items() if v})
        self.store.close()
        self.store = Store(self.dir / "coordinator.sqlite3")
        self.s = Scheduler.restore(key=COORDINATOR, lease_timeout_ms=TIMEOUT, new_id=self.ids,
                                   archive=self.store.result_verdict, policy=self.policy, rand=self.dice.random,
                                   pick=lambda n: 0, placement_policy=OPEN_PLACEMENT, audit_policy=NO_AUDITS,
                                   now=self.now, **self.store.load())
        assert (self.s.book.head, self.s.book.root(), self.s.book.accounts.balances) == before
        self.restarts += 1

    @invariant()
    def the_ledger_adds_up(self) -> None:
        assert not self.s.take_changes().entries, "a step left ledger entries unsaved"
        entries = list(self.store.ledger.entries())
        summary = _check_money(entries)
        book = self.s.book
        assert summary.entries == book.size and summary.root_hash == book.root().hex()
        assert summary.minted == sum(self.granted.values())
        balances = summary.balances
        paid = Counter((e.task_id, e.to) for e in entries if e.kind == "reward")
        assert set(paid.values()) <= {1}, f"a (task, worker) was paid twice: {paid}"
        refunded: dict[str, int] = {}
        for job in self.s.jobs.values():
            mine = self.store.ledger.of_job(job.job_id)
            assert (mine[0].kind, mine[0].from_, mine[0].amount) == ("escrow", job.submitter, job.max_cost)
            rewarded = [e for e in mine if e.kind == "reward"]
            assert all(e.amount == job.price for e in rewarded)
            back = [e.amount for e in mine if e.kind == "refund"]
            held = balances.get(accounts.escrow_account(job.job_id), 0)
            if job.state in ("done", "failed", "cancelled"):
                assert held == 0, f"finished job {job.job_id} still holds {held}"
                assert back == ([job.max_cost - job.price * len(rewarded)] if job.max_cost > job.price * len(rewarded)
                                else [])
            else:
                assert back == [] and held == job.max_cost - job.price * len(rewarded)
            refunded[job.submitter] = refunded.get(job.submitter, 0) + sum(back)
        for who in SUBMITTERS:
            spent = sum(j.max_cost for j in self.s.jobs.values() if j.submitter == who)
            assert balances.get(who, 0) == self.granted[who] - spent + refunded.get(who, 0)
        valid = dict(self.store.db.execute(
            "SELECT r.worker_id, SUM(j.price) FROM results r JOIN jobs j ON j.job_id = r.job_id"
            " WHERE r.verdict = 'valid' GROUP BY r.worker_id").fetchall())
        for name in NAMES:
            assert balances.get(wid(name), 0) == valid.get(wid(name), 0), name


TestMarket = Market.TestCase
TestMarket.settings = settings(settings(), max_examples=max(10, settings().max_examples // 4), stateful_step_count=40)


class _Draw:
    """Stands in for hypothesis' data object in a scripted call: every draw is `value`."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def draw(self, strategy: Any, label: str | None = None) -> Any:
        return self.value


def test_the_walk_reaches_the_interesting_states() -> None:
    """The state machine above is only worth its time if its steps can pay, refund and restart: one scripted walk."""
    m = Market()
    try:
        m.grant(SUBMITTER, 400)
        m.submit(SUBMITTER, tasks=2, replicas=2, extra=0, price=5)
        m.lease("A", 3, 0)
        m.lease("B", 3, 0)
        m.report("A", 3, True)
        m.restart()
        m.report("B", 1, True)
        m.the_ledger_adds_up()
        m.cancel(_Draw(sorted(m.s.jobs)[0]), True)
        m.the_ledger_adds_up()
        kinds = [e.kind for e in m.store.ledger.entries()]
        assert kinds == ["grant", "escrow", "reward", "reward", "refund"] and m.restarts == 1
    finally:
        m.teardown()


def test_a_restored_book_refuses_what_the_live_one_refuses(tmp_path: Path) -> None:
    """After a restart, the money rules still know which escrows are closed and which rewards were paid."""
    ids = Ids()
    s = new_scheduler(ids)
    store = Store(tmp_path / "c.sqlite3")
    open_job = submit(s, now=0, tasks=2, replicas=2)
    closed = submit(s, now=1, tasks=1, replicas=1)
    ga = lease(s, "A", now=2)
    gb = lease(s, "B", now=2, max_tasks=1)
    for name, grants in (("A", ga), ("B", gb)):
        for g in grants:
            report(s, name, g, good(g), now=3)
    assert closed.state == "done" and open_job.state == "running"
    store.save(s.take_changes())
    s2 = Scheduler.restore(key=COORDINATOR, lease_timeout_ms=TIMEOUT, new_id=ids, **store.load())
    pot = accounts.escrow_account(open_job.job_id)
    with pytest.raises(LedgerError, match=f"task {open_job.job_id}-0 already rewarded {wid('A')}"):
        s2.book.append(time=4, kind="reward", from_=pot, to=wid("A"), amount=PRICE, job_id=open_job.job_id,
                       task_id=f"{open_job.job_id}-0")
    with pytest.raises(LedgerError, match=f"the escrow of job {closed.job_id} was already refunded"):
        s2.book.append(time=4, kind="reward", from_=accounts.escrow_account(closed.job_id), to=wid("C"),
                       amount=PRICE, job_id=closed.job_id, task_id=f"{closed.job_id}-0")
    assert s2.book.size == s.book.size  # refused appends leave the book as it was
    store.close()


def test_a_job_dearer_than_all_credits_there_can_be_is_refused_cleanly() -> None:
    # Its maximum cost (over 2^63) fits no ledger entry; the rich submitter still gets a 402, not a crash.
    s = new_scheduler(funds=0)
    full, rest = divmod(accounts.MAX_MINTED, protocol.MAX_GRANT)
    for _ in range(full):
        s.grant(now=0, account=SUBMITTER, amount=protocol.MAX_GRANT)
    s.grant(now=0, account=SUBMITTER, amount=rest)
    s.take_changes()
    n = 200_000
    with pytest.raises(PaymentRequired, match=f"may cost up to {n * 64 * protocol.MAX_PRICE} credits"):
        s.submit(now=1, submitter=SUBMITTER, kernel_name="nonce", params={"seed": 1, "difficulty": 1, "count": n},
                 n_tasks=n, replicas=2, max_results=64, price=protocol.MAX_PRICE)
    assert s.jobs == {} and not s.take_changes()
    assert n * 64 * protocol.MAX_PRICE > accounts.MAX_MINTED
