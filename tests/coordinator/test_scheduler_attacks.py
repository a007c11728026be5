"""The red-team issue "Trust that cannot be bought", property by property, at the scheduler level and under the REAL
default rules (TrustPolicy(), PlacementPolicy(), AuditPolicy()): placement draws, probation and capacity, errors of
free identities, independent partners, speed like with like, mobs, the trusted-worker stall, bonds and audits.

Draws are steered by `Dice` (pick and rand answer from a queue). Who is *present* (asked for work within
presence_ms) is steered by the clock: a worker that has not asked lately cannot be drawn."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coordinator import fresh, placement
from coordinator.auditing import AuditPolicy
from coordinator.model import Result, Task
from coordinator.placement import PlacementPolicy
from coordinator.scheduler import Job, Scheduler
from coordinator.store import Store
from coordinator.trust import TrustPolicy
from depin import accounts, codec
from depin import kernels as kernel_registry
from depin.crypto import SigningKey
from depin.errors import Conflict
from depin.protocol import AckItem, LeaseGrant
from tests.coordinator.sched_support import (
    COORDINATOR,
    KERNELS,
    PARAMS,
    PRICE,
    SUBMITTER,
    TIMEOUT,
    Ids,
    bad,
    good,
    item,
    new_scheduler,
    rewards,
    submit,
    task_of,
    whole_image,
)

K = "mandelbrot@1"
PLACE, TRUST, AUDIT = PlacementPolicy(), TrustPolicy(), AuditPolicy()
AWAY = 2 * PLACE.presence_ms  # long enough for every worker to stop being present
ELAPSED = 500  # what an honest result takes, in ms
MALFORMED: dict[str, Any] = {"not": "an array"}


class Dice:
    """pick(n) and rand() answering from queues (then `pick_default` / `rand_default`), remembering each n asked."""

    def __init__(self, *, rand_default: float = 0.5) -> None:
        self.picks: list[int] = []
        self.rands: list[float] = []
        self.asked: list[int] = []
        self.rand_default = rand_default

    def pick(self, n: int) -> int:
        self.asked.append(n)
        return self.picks.pop(0) % n if self.picks else 0

    def rand(self) -> float:
        return self.rands.pop(0) if self.rands else self.rand_default


def real(dice: Dice | None = None) -> tuple[Scheduler, Dice]:
    """A scheduler with the real default rules, its draws steered by `dice`."""
    dice = dice or Dice()
    s = new_scheduler(policy=TrustPolicy(), placement=PlacementPolicy(), audits=AuditPolicy(), pick=dice.pick,
                      rand=dice.rand)
    return s, dice


_KEYS: dict[str, SigningKey] = {}


def key(name: str) -> SigningKey:
    if name not in _KEYS:
        _KEYS[name] = SigningKey(hashlib.sha256(f"attack worker {name}".encode()).digest())
    return _KEYS[name]


def wid(name: str) -> str:
    return key(name).id


def ask(s: Scheduler, name: str, now: int, *, max_tasks: int = 8, min_price: int = 0,
        kernels: Iterable[str] = KERNELS) -> list[LeaseGrant]:
    """What the shell does for a lease request: note the worker, then lease."""
    s.touch_worker(now=now, worker_id=wid(name), public_key=key(name).public, min_price=min_price)
    return s.lease(now=now, worker_id=wid(name), max_tasks=max_tasks, kernels_ok=kernels, min_price=min_price)


def send(s: Scheduler, name: str, grant: LeaseGrant, output: Any, now: int) -> AckItem:
    """What the shell does for a one-result request."""
    s.touch_worker(now=now, worker_id=wid(name), public_key=key(name).public)
    (ack,) = s.report(now=now, worker_id=wid(name), reports=[item(grant, output)])
    return ack


def task(s: Scheduler, grant: LeaseGrant) -> Task:
    return s.tasks[task_of(grant)["task_id"]]


def agree(s: Scheduler, pairs: Iterable[tuple[str, str]], now: int) -> int:
    """One one-task job per pair, computed honestly by exactly that pair (nobody else is present, so the second slot
    can only be drawn for the second worker), and any audit a worker is offered on the way. Returns the clock."""
    for first, second in pairs:
        now += AWAY
        submit(s, now=now, tasks=1, replicas=2)
        for name in (first, second):
            for g in ask(s, name, now):
                assert send(s, name, g, good(g), now + ELAPSED).status == "accepted"
        now += ELAPSED
    return now


def settle_audits(s: Scheduler, now: int) -> int:
    """Let every open audit be skipped, so the warm-up jobs end (an audit drawn while only the pair that computed the
    task is present is skipped at once; any other is skipped once give_up_ms passed with nobody around)."""
    now += AUDIT.give_up_ms + AWAY
    s.expire(now)
    assert all(j.state == "done" for j in s.jobs.values())
    return now


def make_trusted(s: Scheduler, names: str, now: int = 0) -> int:
    """Make each named worker (four or more) trusted for K from distinct partners: one-task jobs for every pair of
    them, round after round, until all are. Returns the clock, with nobody present."""
    for _ in range(2 * TRUST.partner_cap):
        if all(s.trust.trusted(wid(n), K) for n in names):
            break
        now = agree(s, itertools.combinations(names, 2), now)
    now = settle_audits(s, now)
    for n in names:
        assert s.trust.trusted(wid(n), K), n
    return now


def make_seasoned(s: Scheduler, names: str, now: int = 0) -> int:
    """Take each named worker (two or more: a task needs two distinct workers) past probation (not trusted). Returns
    the clock, with nobody present."""
    assert len(set(names)) >= 2, names
    ring = [(a, names[(i + 1) % len(names)]) for i, a in enumerate(names)]
    now = agree(s, ring * TRUST.probation_valid, now)
    now = settle_audits(s, now)
    for n in names:
        assert not s.on_probation(wid(n)) and not s.trust.trusted(wid(n), K), n
    return now


# ---- 1. placement: drawn replica slots, random offsets ---------------------------------------------------------------


def test_placement_a_replica_slot_is_reserved_for_the_drawn_worker_and_nobody_else() -> None:
    s, dice = real()
    for n in "ABC":  # present: all three asked for work
        assert ask(s, n, 0) == []
    submit(s, now=1, tasks=1, replicas=2)
    (ga,) = ask(s, "A", 2)  # the first slot is anyone's
    t = task(s, ga)
    dice.picks = [0, 1]  # the offset in the job, then the draw: candidates are B and C (A holds the task)
    assert ask(s, "B", 3) == []
    assert dice.asked[-1] == 2 and t.reserved == wid("C")
    assert ask(s, "B", 4) == []  # still C's
    (gc,) = ask(s, "C", 5)
    assert task(s, gc) is t and t.reserved is None


def test_placement_the_draw_is_made_again_without_a_worker_that_did_not_come_then_the_slot_opens() -> None:
    s, dice = real()
    for n in "ABCDE":
        ask(s, n, 0)
    submit(s, now=0, tasks=1, replicas=3)
    ask(s, "A", 0)
    now = 1
    drawn = []
    for _ in range(PLACE.max_draws):
        dice.picks = [0, 1]  # the offset, then the second candidate: never B, the one asking
        assert ask(s, "B", now) == []
        t = next(iter(s.tasks.values()))
        drawn.append(t.reserved)
        now += PLACE.reserve_ms  # the drawn worker did not come in time
    assert drawn == [wid("C"), wid("D"), wid("E")]  # each draw without the ones passed over
    assert [n for n in dice.asked if n > 1] == [4, 3, 2]
    assert ask(s, "B", now) != []  # max_draws draws came to nothing: the slot is open


def test_placement_leasing_starts_at_a_random_offset_among_the_started_tasks_before_making_new_ones() -> None:
    s, dice = real()
    job = submit(s, now=0, tasks=4, replicas=2, params={**PARAMS, "height": 8})
    assert len(ask(s, "A", 0, max_tasks=4)) == 2  # its capacity: two tasks made (index order in these tests)
    dice.picks = [1]
    (g,) = ask(s, "B", 0, max_tasks=1)
    # The two started tasks come first, from position 1: B takes task 1's second slot, and nothing new is made.
    assert dice.asked[0] == 2 and task(s, g).index == 1 and job.materialized == 2
    # C: task 0's second slot is drawn for B (the dice say the first candidate), so C's walk goes on to make the
    # next tasks.
    assert [task(s, g).index for g in ask(s, "C", 0, max_tasks=2)] == [2, 3]


def test_placement_a_jobs_tasks_are_made_in_its_own_secret_order() -> None:
    key = b"a secret key....."
    s = new_scheduler(policy=TrustPolicy(), placement=PlacementPolicy(), audits=AuditPolicy(), order_key=lambda: key)
    job = submit(s, now=0, tasks=50, replicas=1, quorum=1, params={**PARAMS, "height": 50})
    made = [task(s, g).index for g in ask(s, "A", 0, max_tasks=2)]
    assert made == [fresh.nth(key, 50, 0), fresh.nth(key, 50, 1)] and made != [0, 1]
    assert job.order_key == key


# ---- 2. probation and capacity ---------------------------------------------------------------------------------------


def test_probation_a_new_identity_gets_at_most_start_capacity_leases() -> None:
    s, _ = real()
    submit(s, now=0, tasks=6, replicas=2)
    assert len(ask(s, "A", 0, max_tasks=50)) == PLACE.start_capacity
    assert ask(s, "A", 1, max_tasks=50) == []  # still holding them


def test_capacity_doubles_per_validated_result_and_halves_on_an_expiry_or_an_invalid_result() -> None:
    s, _ = real()
    submit(s, now=0, tasks=2, replicas=2, max_results=3)  # room for no audit: the job ends
    for n in "AB":
        for g in ask(s, n, 0):
            send(s, n, g, good(g), ELAPSED)
    a = s.workers[wid("A")]
    assert a.capacity == PLACE.start_capacity * 4  # two validated results
    submit(s, now=AWAY, tasks=2, replicas=2)
    g1, g2 = ask(s, "A", AWAY, max_tasks=2)
    send(s, "A", g1, MALFORMED, AWAY + 1)
    assert a.capacity == PLACE.start_capacity * 2
    s.expire(g2.expires_ms)
    assert a.capacity == PLACE.start_capacity


def test_probation_a_probationary_lease_stops_holding_its_slot_after_the_grace() -> None:
    s, _ = real()
    submit(s, now=0, tasks=1, replicas=2)
    (ga,) = ask(s, "A", 0)
    assert len(ask(s, "B", 0)) == 1
    grace = placement.grace_ms(PLACE, TIMEOUT, None)
    assert grace < TIMEOUT
    assert ask(s, "C", grace - 1) == []  # both slots held
    s.expire(grace)
    (gc,) = ask(s, "C", grace)  # A and B are on probation: their leases no longer hold the slots
    assert task(s, gc) is task(s, ga) and s.leases[ga.lease_id].state == "active"


def _backup_time(s: Scheduler, grant: LeaseGrant) -> int:
    """The task's backup time under the real rules (placement.backup_ms), with what the scheduler measured."""
    t = task(s, grant)
    return placement.backup_ms(PLACE, TIMEOUT, s.speed.typical(K, kernel_registry.get("mandelbrot", 1).work(t.params)))


def test_backup_an_idle_worker_past_probation_backs_up_an_abandoned_probationary_lease_after_the_backup_time(
) -> None:
    s, _ = real()
    now = make_seasoned(s, "WX")
    job = submit(s, now=now, tasks=1, replicas=2)
    (gp,) = ask(s, "sybil", now)  # a fresh identity takes the first slot and will never answer
    (gw,) = ask(s, "W", now)  # the second slot: drawn among workers past probation
    backup = _backup_time(s, gp)
    assert 0 < backup < placement.grace_ms(PLACE, TIMEOUT, backup)
    assert ask(s, "X", now + backup - 1) == []  # the probationary lease still holds its slot
    assert s.expire(now + backup) == 1  # the backup wake-up: waiting lease requests are woken
    (gx,) = ask(s, "X", now + backup)  # X has nothing else to do: it backs the abandoned lease up
    assert task(s, gx) is task(s, gp) and s.leases[gp.lease_id].state == "active"
    for n, g in (("W", gw), ("X", gx)):
        assert send(s, n, g, good(g), now + backup + ELAPSED).status == "accepted"
    assert job.state == "done" and job.tasks_validated == 1
    assert send(s, "sybil", gp, good(gp), now + backup + 2 * ELAPSED).status == "rejected"  # too late: not paid


def test_backup_the_backup_time_is_the_fastest_measured_time_for_the_same_work_or_min_grace_unmeasured() -> None:
    s, _ = real()
    submit(s, now=0, tasks=1, replicas=2)
    (fresh,) = ask(s, "A", 0)
    assert _backup_time(s, fresh) == PLACE.min_grace_ms  # nothing measured yet
    now = make_seasoned(s, "WX", 1)  # measures ELAPSED (or less) for this work on the way
    submit(s, now=now, tasks=1, replicas=2)
    (gp,) = ask(s, "sybil", now)
    measured = s.speed.typical(K, kernel_registry.get("mandelbrot", 1).work(task(s, gp).params))
    assert measured is not None and _backup_time(s, gp) == measured <= ELAPSED


def test_backup_never_goes_to_a_worker_on_probation() -> None:
    s, _ = real()
    now = make_seasoned(s, "WX")
    submit(s, now=now, tasks=1, replicas=2)
    (gp,) = ask(s, "sybil", now)
    (gw,) = ask(s, "W", now)
    later = now + _backup_time(s, gp)
    s.expire(later)
    assert ask(s, "newcomer", later) == []  # the slot is a backup: only for a worker past probation
    assert len(ask(s, "X", later)) == 1


def test_backup_only_once_the_walk_found_nothing_else_for_the_worker() -> None:
    s, _ = real()
    now = make_seasoned(s, "WX")
    submit(s, now=now, tasks=2, replicas=1, quorum=1)  # the walk starts at task 0 (the dice say 0)
    (gp,) = ask(s, "sybil", now, max_tasks=1)
    assert task(s, gp).index == 0
    later = now + _backup_time(s, gp)
    s.expire(later)
    (first,) = ask(s, "W", later, max_tasks=1)
    assert task(s, first).index == 1  # the free task first, though the walk met the sybil's task before it
    (second,) = ask(s, "W", later, max_tasks=1)
    assert task(s, second) is task(s, gp)  # then the backup


def _freed(s: Scheduler) -> int:
    return sum(n for _, _, n in s.take_wakes()[0])


def test_wakes_count_the_slots_a_change_made_per_job_and_name_the_drawn_worker() -> None:
    s, _ = real()
    now = make_seasoned(s, "WX")
    s.take_wakes()
    job = submit(s, now=now, tasks=3, replicas=2)
    assert s.take_wakes() == ([(K, job.price, 6)], set())  # three tasks, two slots each, of this kernel and price
    (gp,) = ask(s, "sybil", now, max_tasks=1)
    assert s.take_wakes() == ([], set())  # a first slot taken: no new work
    assert ask(s, "newcomer", now, max_tasks=1) != []  # a free first slot of another task
    s.take_wakes()
    grants = ask(s, "W", now, max_tasks=1)  # W is drawn for a second slot, or takes one
    freed, drawn = s.take_wakes()
    assert freed == [] and drawn <= {wid("X")} and (grants or drawn)
    backup = _backup_time(s, gp)
    s.expire(now + backup)
    assert _freed(s) >= 1  # the sybil's lease can be backed up: new work for workers past probation
    s.expire(now + placement.grace_ms(PLACE, TIMEOUT, backup or None))
    # The backup became a plain slot (the grace ended): new work for workers on probation too.
    assert _freed(s) >= 1


# ---- 3. free identities cannot kill a job ----------------------------------------------------------------------------


def test_free_identities_malformed_results_never_fail_a_job() -> None:
    s, _ = real()
    job = submit(s, now=0, tasks=1, replicas=2, max_errors=0, max_results=3)
    now = 0
    for i in range(job.max_results + 2):  # more errors than max_errors and results than max_results
        now += 10
        (g,) = ask(s, f"sybil{i}", now)
        assert send(s, f"sybil{i}", g, MALFORMED, now).status == "rejected"
        assert job.state == "running"
    for n in "AB":
        for g in ask(s, n, now):
            send(s, n, g, good(g), now + ELAPSED)
    assert job.state == "done"


def test_a_banned_identitys_error_results_stop_counting() -> None:
    s, _ = real()
    now = make_seasoned(s, "WXY")
    job = submit(s, now=now, tasks=4, replicas=2, max_errors=1)
    g0, *rest = ask(s, "W", now, max_tasks=4)
    send(s, "W", g0, MALFORMED, now)  # counts: W is past probation (1 error, max_errors 1)
    for g in rest[:2]:
        send(s, "W", g, MALFORMED, now)
    assert s.banned(wid("W"))
    now += AWAY
    t = task(s, g0)
    (gx,) = [g for g in ask(s, "X", now, max_tasks=8) if task(s, g) is t]
    send(s, "X", gx, MALFORMED, now)  # the second error on the task: would fail it if W's still counted
    assert job.state == "running" and t.state == "pending"


# ---- 4. independence -------------------------------------------------------------------------------------------------


def test_independence_a_pair_agreeing_only_with_each_other_never_becomes_trusted() -> None:
    s, _ = real()
    now = agree(s, [("P", "Q")] * (3 * TRUST.trust_after), 0)
    for n in "PQ":
        record = s.trust.records[(wid(n), K)]
        assert record.valid >= 3 * TRUST.trust_after and record.consecutive_valid == TRUST.partner_cap
        assert not s.trust.trusted(wid(n), K) and s.trust.collusion_score(wid(n)) == 1.0
    # A distinct partner completes the streak.
    agree(s, [("P", "R")] * (TRUST.trust_after - TRUST.partner_cap), now)
    assert s.trust.trusted(wid("P"), K)


# ---- 5. speed like with like -----------------------------------------------------------------------------------------

DECOY = {**PARAMS, "x_min": 2.0, "x_max": 3.0, "y_min": 2.0, "y_max": 3.0, "max_iter": 1_000_000}


def _speed_round(s: Scheduler, names: str, now: int, elapsed: dict[str, int], params: dict[str, Any]) -> int:
    now += AWAY
    submit(s, now=now, tasks=1, replicas=2, params=params)
    for n in names:
        for g in ask(s, n, now):
            send(s, n, g, good(g), now + elapsed[n])
    return now + max(elapsed.values())


def test_speed_a_decoy_job_with_a_huge_declared_bound_and_instant_results_flags_nobody() -> None:
    s, _ = real()
    now = 0
    for names in ["AB", "BC", "CA", "AB", "BC", "CA"]:
        now = _speed_round(s, names, now, {n: 1 for n in "ABC"}, DECOY)
    assert all(s.workers[wid(n)].too_fast == 0 for n in "ABC")
    assert not any(r.too_fast for r in s.results.values())


def test_speed_a_result_8x_faster_than_other_workers_on_the_same_work_is_flagged() -> None:
    s, _ = real()
    now = 0
    for _ in range(2):  # times above the speed floor (1 s): long enough to be computation
        now = _speed_round(s, "AB", now, {"A": 8000, "B": 8000}, PARAMS)
    now = _speed_round(s, "CA", now, {"C": 8000 // 8 - 1, "A": 8000}, PARAMS)
    assert s.workers[wid("C")].too_fast == 1 and s.workers[wid("A")].too_fast == 0


def test_speed_times_under_the_floor_flag_nobody() -> None:
    s, _ = real()
    now = 0
    for _ in range(2):  # 800 ms: round trips and queueing, not computation
        now = _speed_round(s, "AB", now, {"A": 800, "B": 800}, PARAMS)
    _speed_round(s, "CA", now, {"C": 1, "A": 800}, PARAMS)
    assert s.workers[wid("C")].too_fast == 0


def test_speed_a_result_at_one_eighth_is_not_flagged() -> None:
    s, _ = real()
    now = 0
    for _ in range(2):
        now = _speed_round(s, "AB", now, {"A": 8000, "B": 8000}, PARAMS)
    _speed_round(s, "CA", now, {"C": 8000 // 8, "A": 8000}, PARAMS)
    assert s.workers[wid("C")].too_fast == 0


# ---- 6. mobs ---------------------------------------------------------------------------------------------------------


def test_mob_an_honest_newcomer_outvoted_by_identities_on_probation_is_disputed_never_banned() -> None:
    s, _ = real()
    now = 0
    for round_ in range(TRUST.ban_min_invalid + 1):
        now += AWAY
        job = submit(s, now=now, tasks=1, replicas=2, max_results=4)
        (gh,) = ask(s, "honest", now)
        assert send(s, "honest", gh, good(gh), now + ELAPSED).status == "accepted"
        t, honest = task(s, gh), s.results[gh.lease_id]
        mob = [f"mob{round_}.{i}" for i in range(2)]  # a quorum of two, all on probation
        (g,) = ask(s, mob[0], now)
        send(s, mob[0], g, bad(g), now + ELAPSED)
        assert t.quorum == job.quorum  # nobody past probation is present to break a tie: no escalation
        for m in mob[1:]:
            (g,) = ask(s, m, now)
            send(s, m, g, bad(g), now + ELAPSED)
        assert t.state == "validated" and honest.verdict == "invalid"
    record = s.trust.records[(wid("honest"), K)]
    assert (record.disputed, record.invalid) == (TRUST.ban_min_invalid + 1, 0)
    assert s.banned(wid("honest")) is None


def test_mob_a_disagreement_among_identities_on_probation_escalates_to_a_worker_past_probation() -> None:
    s, _ = real()
    now = make_seasoned(s, "RS", 0) + AWAY
    job = submit(s, now=now, tasks=1, replicas=2, max_results=4)
    (gh,) = ask(s, "honest", now)
    t = task(s, gh)
    (g,) = ask(s, "mob", now)  # nobody past probation is present yet, so the second slot is drawn for mob
    assert ask(s, "S", now) == []  # now S, past probation, is present (both slots are held)
    send(s, "honest", gh, good(gh), now + ELAPSED)
    send(s, "mob", g, bad(g), now + ELAPSED)
    assert t.quorum == job.quorum + 1  # a disagreement with identities on probation: one more agreeing result
    assert ask(s, "mob2", now + ELAPSED) == [] and t.reserved == wid("S")  # drawn among workers past probation
    (gs,) = ask(s, "S", now + ELAPSED)
    send(s, "S", gs, good(gs), now + 2 * ELAPSED)
    assert t.state == "pending"  # 2 of 3: one more, again drawn
    record = s.trust.records.get((wid("honest"), K))
    assert record is None or record.invalid == 0


# ---- 7. the trusted min-price stall, and the fallback ----------------------------------------------------------------

# How the trusted worker last asked: (when, relative to the job; its min_price; the kernels it accepts).
STALLS: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "min_price above the job's": (0, PRICE + 1, KERNELS),
    "does not accept the kernel": (0, 0, ()),
    "has not asked within presence_ms": (-PLACE.presence_ms - 1, 0, KERNELS),  # but seen within online_ms
    "could help": (0, 0, KERNELS),
}


@pytest.mark.parametrize("how", STALLS)
def test_stall_a_trusted_worker_that_could_not_take_the_task_does_not_hold_its_last_slot(how: str) -> None:
    s, _ = real()
    now = make_trusted(s, "ABCD") + AWAY
    asked, min_price, kernels = STALLS[how]
    ask(s, "A", now + asked, max_tasks=0, min_price=min_price, kernels=kernels)  # A is trusted
    submit(s, now=now, tasks=1, replicas=2)
    assert len(ask(s, "U1", now)) == 1
    second = ask(s, "U2", now)
    assert len(second) == (0 if how == "could help" else 1)


def test_stall_a_task_with_a_trusted_result_never_waits_for_a_trusted_worker_nor_falls_back() -> None:
    # Two trusted workers and nobody else: a task whose trusted first result waits long for its second must not
    # fall back to a quorum of 3 that two workers can never reach.
    s, _ = real()
    now = make_trusted(s, "ABCD") + AWAY
    job = submit(s, now=now, tasks=1, replicas=2)
    (ga,) = ask(s, "A", now, max_tasks=1)
    t = task(s, ga)
    t.single = None  # (whatever the spot check said) it stays replicated
    t.quorum = job.quorum
    send(s, "A", ga, good(ga), now + ELAPSED)
    ask(s, "B", now + ELAPSED, max_tasks=0)  # present, but takes nothing for a long while
    s.expire(now + ELAPSED + 3 * TRUST.trusted_wait_ms)
    assert t.waiting_since is None and not t.fell_back and t.quorum == job.quorum
    later = now + ELAPSED + 3 * TRUST.trusted_wait_ms
    for g in ask(s, "B", later, max_tasks=1):
        send(s, "B", g, good(g), later + ELAPSED)
    assert job.state in ("done", "running") and t.state == "validated"


def test_stall_a_task_waiting_for_a_trusted_member_falls_back_to_a_quorum_one_larger() -> None:
    s, _ = real()
    now = make_trusted(s, "ABCD") + AWAY
    ask(s, "A", now, max_tasks=0)  # present, and could take it, but does not come
    job = submit(s, now=now, tasks=1, replicas=2)
    (g1,) = ask(s, "U1", now)
    send(s, "U1", g1, good(g1), now + ELAPSED)
    t = task(s, g1)
    assert s.counted().waiting(job.job_id) == {"waiting for a trusted worker": 1} and not t.fell_back
    s.expire(now + ELAPSED + TRUST.trusted_wait_ms)
    assert t.fell_back and t.quorum == job.quorum + 1
    assert s.counted().waiting(job.job_id) == {
        "no trusted worker came in time: a larger quorum of untrusted workers stands in": 1}
    now += AWAY  # A is gone too (while present, it could still be drawn for a slot)
    for n in ("U2", "U3"):  # two more untrusted workers stand in for the trusted one
        (g,) = ask(s, n, now)
        send(s, n, g, good(g), now + ELAPSED)
    # The job is over (its audit was skipped at once: nobody past probation is present), so its results have left
    # memory: read them from the change set.
    results = s.take_changes().results
    assert t.state == "validated" and len(t.results) == 3 and not any(results[lid].trusted for lid in t.results)


WAITS = "waiting for a trusted worker"
FELL = "no trusted worker came in time: a larger quorum of untrusted workers stands in"


def _first_results(s: Scheduler, names: Iterable[str], now: int) -> list[Task]:
    """Each named fresh worker takes what it is given (first slots: the second is kept for the trusted worker) and
    returns honest results; the tasks, in that order."""
    done = []
    for n in names:
        for g in ask(s, n, now):
            assert send(s, n, g, good(g), now + ELAPSED).status == "accepted"
            done.append(task(s, g))
    return done


def test_stall_only_the_trusted_workers_backlog_waits_for_them_the_rest_fall_back_at_once() -> None:
    # One trusted worker asking 2 tasks at a time can take about 2 x trusted_backlog waiting tasks; more would only
    # wait trusted_wait_ms to fall back anyway, and every lease walk meanwhile visits them (issue 10's long job).
    s, _ = real()
    now = make_trusted(s, "ABCD") + AWAY
    ask(s, "A", now, max_tasks=2)  # the only trusted worker present
    backlog = 2 * TRUST.trusted_backlog
    job = submit(s, now=now, tasks=12, replicas=2, params={**PARAMS, "height": 12})
    tasks = _first_results(s, ("U1", "U2", "U3", "U4", "U5", "U6"), now)
    assert len(tasks) == 12
    waiting = [t for t in tasks if t.waiting_since is not None]
    fell = [t for t in tasks if t.fell_back]
    assert len(waiting) == backlog and len(fell) == 12 - backlog
    assert all(t.quorum == job.quorum + 1 for t in fell) and all(t.quorum == job.quorum for t in waiting)
    reasons = s.counted().waiting(job.job_id)
    assert (reasons[WAITS], reasons[FELL]) == (backlog, 12 - backlog)
    # The trusted worker takes waiting tasks (never a fallen-back one: they no longer need it) and validates them.
    now += 2 * ELAPSED
    grants = ask(s, "A", now, max_tasks=2)
    assert {task(s, g).task_id for g in grants} <= {t.task_id for t in waiting} and len(grants) == 2
    for g in grants:
        send(s, "A", g, good(g), now + ELAPSED)
    assert s.counted().waiting(job.job_id)[WAITS] == backlog - 2
    # Room in the backlog again: the next first result waits instead of falling back.
    job2 = submit(s, now=now, tasks=1, replicas=2)
    (t2,) = _first_results(s, ("U7",), now + 2 * ELAPSED)
    assert t2.job_id == job2.job_id and t2.waiting_since is not None and not t2.fell_back


def test_stall_a_finished_jobs_waiting_tasks_leave_the_trusted_workers_backlog() -> None:
    s, _ = real()
    now = make_trusted(s, "ABCD") + AWAY
    ask(s, "A", now, max_tasks=1)  # backlog: trusted_backlog tasks
    job = submit(s, now=now, tasks=TRUST.trusted_backlog, replicas=2)
    tasks = _first_results(s, ("U1", "U2"), now)
    assert len(tasks) == TRUST.trusted_backlog and all(t.waiting_since is not None for t in tasks)
    s.cancel(now=now + ELAPSED, job_id=job.job_id, requester=SUBMITTER)
    submit(s, now=now + ELAPSED, tasks=1, replicas=2)
    (t,) = _first_results(s, ("U3",), now + 2 * ELAPSED)
    assert t.waiting_since is not None and not t.fell_back


def _restarted(s: Scheduler, store: Store, ids: Ids, now: int) -> Scheduler:
    """Save what `s` changed, then restart from the store under the real rules (the shell's restart)."""
    store.save(s.take_changes())
    return Scheduler.restore(key=COORDINATOR, lease_timeout_ms=TIMEOUT, new_id=ids, policy=TrustPolicy(),
                             placement_policy=PlacementPolicy(), audit_policy=AuditPolicy(), pick=lambda n: 0,
                             rand=lambda: 0.5, now=now, **store.load())


def _trusted_and_stored(tmp_path: Path) -> tuple[Scheduler, Store, Ids, int]:
    """A scheduler under the real rules (draws: the first candidate) whose A, B, C and D are trusted, a store to
    restart it from, its id generator and the clock."""
    ids = Ids()
    s = new_scheduler(ids, policy=TrustPolicy(), placement=PlacementPolicy(), audits=AuditPolicy(),
                      pick=lambda n: 0, rand=lambda: 0.5)
    return s, Store(tmp_path / "coordinator.sqlite3"), ids, make_trusted(s, "ABCD") + AWAY


def test_stall_a_restart_neither_restarts_the_trusted_wait_nor_lets_a_task_fall_back_twice(tmp_path: Path) -> None:
    s, store, ids, now = _trusted_and_stored(tmp_path)
    ask(s, "A", now, max_tasks=0)  # present, and could take it, but does not come
    job = submit(s, now=now, tasks=1, replicas=2)
    (g1,) = ask(s, "U1", now)
    send(s, "U1", g1, good(g1), now + ELAPSED)
    began = now + ELAPSED
    assert task(s, g1).waiting_since == began
    half = began + TRUST.trusted_wait_ms // 2
    s = _restarted(s, store, ids, half)
    ask(s, "A", half, max_tasks=0)  # still present after the restart
    s.expire(began + TRUST.trusted_wait_ms)  # the wait ends when it would have without the restart
    t = task(s, g1)
    assert t.fell_back and t.quorum == job.quorum + 1
    later = began + TRUST.trusted_wait_ms + 1
    s = _restarted(s, store, ids, later)
    ask(s, "A", later, max_tasks=0)
    s.expire(later + 3 * TRUST.trusted_wait_ms)
    t = task(s, g1)
    assert t.fell_back and t.quorum == job.quorum + 1 and t.waiting_since is None  # not once more after a restart


def test_stall_a_restart_keeps_the_tasks_waiting_for_a_trusted_worker_in_its_backlog(tmp_path: Path) -> None:
    s, store, ids, now = _trusted_and_stored(tmp_path)
    ask(s, "A", now, max_tasks=1)  # backlog: trusted_backlog tasks
    submit(s, now=now, tasks=TRUST.trusted_backlog + 1, replicas=2)
    waiting = _first_results(s, ("U1",), now)
    assert len(waiting) == TRUST.trusted_backlog and all(t.waiting_since is not None for t in waiting)
    now += 2 * ELAPSED
    s = _restarted(s, store, ids, now)
    ask(s, "A", now, max_tasks=1)
    (last,) = _first_results(s, ("U2",), now)
    assert last.fell_back and last.waiting_since is None  # the backlog was still full after the restart


def test_audit_a_restart_does_not_restart_an_open_audits_wait(tmp_path: Path) -> None:
    ids = Ids()
    dice = Dice(rand_default=0.99)
    s = new_scheduler(ids, policy=TrustPolicy(), placement=PlacementPolicy(), audits=AuditPolicy(),
                      pick=dice.pick, rand=dice.rand)
    store = Store(tmp_path / "coordinator.sqlite3")
    now = make_trusted(s, "ABCD") + AWAY
    job, t, _ = _audited_single(s, dice, now)
    opened = t.audit_since
    assert t.audit == "due" and opened > 0
    s = _restarted(s, store, ids, opened + AUDIT.give_up_ms // 2)
    restored = s.tasks[t.task_id]
    assert restored.audit == "due" and restored.audit_since == opened
    s.expire(opened + AUDIT.give_up_ms)  # nobody audited it: skipped when it would have been without the restart
    assert restored.audit == "skipped" and s.jobs[job.job_id].state == "done"


# ---- 8. bonds and single issue ---------------------------------------------------------------------------------------


def _fresh_single_task(s: Scheduler, name: str, now: int, *, price: int = 1) -> tuple[LeaseGrant, Task]:
    submit(s, now=now, tasks=1, replicas=2, price=price)
    (g,) = ask(s, name, now)
    return g, task(s, g)


def test_bond_a_trusted_worker_without_a_bond_never_goes_single() -> None:
    s, _ = real(Dice(rand_default=0.99))  # every spot check says: no replica
    now = make_trusted(s, "ABCD") + AWAY
    _, t = _fresh_single_task(s, "A", now)
    assert t.single is None and t.quorum == 2


def test_bond_a_bond_below_bond_per_price_x_price_does_not_cover_single_issue() -> None:
    s, _ = real(Dice(rand_default=0.99))
    now = make_trusted(s, "ABCD") + AWAY
    s.grant(now=now, account=wid("A"), amount=1000)
    s.bond(now=now, worker_id=wid("A"), amount=AUDIT.bond_per_price * 2 - 1)
    _, t = _fresh_single_task(s, "A", now, price=2)
    assert t.single is None


def test_bond_exposure_grows_by_the_price_per_single_result_until_the_bond_is_used_up() -> None:
    s, _ = real(Dice(rand_default=0.99))  # spot checks never replicate, audits are never drawn
    now = make_trusted(s, "ABCD") + AWAY
    s.grant(now=now, account=wid("A"), amount=1000)
    bond = AUDIT.bond_per_price * 1
    s.bond(now=now, worker_id=wid("A"), amount=bond)
    a = s.workers[wid("A")]
    for i in range(bond):
        g, t = _fresh_single_task(s, "A", now)
        assert t.single == g.lease_id, i
        send(s, "A", g, good(g), now + ELAPSED)
        assert t.state == "validated" and a.exposure == i + 1
        now += 2 * ELAPSED
    _, t = _fresh_single_task(s, "A", now)  # exposure + price would exceed the bond
    assert t.single is None


def test_bond_and_unbond_move_ledger_credits_and_unbond_stops_at_the_exposure() -> None:
    s, _ = real(Dice(rand_default=0.99))
    now = make_trusted(s, "ABCD") + AWAY
    a = wid("A")
    s.grant(now=now, account=a, amount=1000)
    have = s.book.accounts.balance(a)
    bond = AUDIT.bond_per_price * 3  # the least that covers a task at price 3
    s.bond(now=now, worker_id=a, amount=bond)
    assert (s.book.accounts.balance(a), s.book.accounts.bonded(a)) == (have - bond, bond)
    g, t = _fresh_single_task(s, "A", now, price=3)
    send(s, "A", g, good(g), now + ELAPSED)
    assert s.workers[a].exposure == 3
    with pytest.raises(Conflict):
        s.unbond(now=now, worker_id=a, amount=bond - 2)
    entry = s.unbond(now=now, worker_id=a, amount=bond - 3)
    assert entry.kind == "unbond" and s.book.accounts.bonded(a) == 3


def test_bond_unbond_is_refused_while_a_result_of_the_worker_is_under_audit() -> None:
    s, dice = real(Dice(rand_default=0.99))
    now = make_trusted(s, "ABCD") + AWAY
    a = wid("A")
    s.grant(now=now, account=a, amount=1000)
    s.bond(now=now, worker_id=a, amount=100)
    assert ask(s, "B", now) == []  # B could audit: the audit stays due
    g, t = _fresh_single_task(s, "A", now)
    dice.rands = [0.0]  # the audit draw at validation
    send(s, "A", g, good(g), now + ELAPSED)
    assert t.audit == "due"
    with pytest.raises(Conflict):
        s.unbond(now=now, worker_id=a, amount=1)


# ---- 9. audits -------------------------------------------------------------------------------------------------------


def _bond_a(s: Scheduler, now: int) -> None:
    s.grant(now=now, account=wid("A"), amount=1000)
    s.bond(now=now, worker_id=wid("A"), amount=AUDIT.bond_per_price * PRICE)  # the least that covers a task


def _single(s: Scheduler, dice: Dice, now: int, *, price: int = PRICE, tasks: int = 1, output: str = "good",
            audit: bool = True, present: str = "BCD") -> tuple[Job, Task, Result]:
    """A (trusted, bonded) takes a task of a new job single and reports; the audit draw comes up if `audit`. The
    workers in `present` asked for work just before (with nothing to lease), so they could audit it."""
    for name in present:
        assert ask(s, name, now) == []
    job = submit(s, now=now, tasks=tasks, replicas=2, price=price)
    (g,) = ask(s, "A", now, max_tasks=1)
    t = task(s, g)
    assert t.single == g.lease_id
    dice.rands = [0.0 if audit else 0.99]
    send(s, "A", g, good(g) if output == "good" else bad(g), now + ELAPSED)
    assert t.state == "validated" and t.audit == ("due" if audit else None)
    return job, t, s.results[g.lease_id]


def _audited_single(s: Scheduler, dice: Dice, now: int, present: str = "BCD") -> tuple[Job, Task, Result]:
    _bond_a(s, now)
    return _single(s, dice, now, present=present)


def name_of(worker_id: str | None) -> str:
    return next(n for n in _KEYS if wid(n) == worker_id)


def test_audit_a_drawn_audit_keeps_the_job_running_until_it_passes_pays_the_auditor_and_clears_exposure() -> None:
    s, dice = real(Dice(rand_default=0.99))
    now = make_trusted(s, "ABCD") + AWAY
    job, t, _ = _audited_single(s, dice, now)
    assert job.state == "running" and s.workers[wid("A")].exposure == PRICE
    s.take_changes()
    (g,) = ask(s, "B", now + 1000)
    assert send(s, "B", g, good(g), now + 2000).status == "accepted"
    assert t.audit == "passed" and job.state == "done"
    assert s.workers[wid("A")].exposure == 0
    assert rewards(s.take_changes()) == [(t.task_id, wid("B"), PRICE)]


def test_audit_a_lease_goes_only_to_a_non_holder_past_probation_trusted_first() -> None:
    s, dice = real(Dice(rand_default=0.99))
    now = make_trusted(s, "ABCD")
    now = make_seasoned(s, "XYZ", now) + AWAY
    assert ask(s, "B", now) == []  # B, trusted, is present
    _, t, _ = _audited_single(s, dice, now)
    now += 1000
    assert ask(s, "A", now) == []  # the holder
    assert ask(s, "fresh", now) == []  # on probation
    assert ask(s, "X", now) == []  # past probation, but not trusted: not before the fallback ...
    (g,) = ask(s, "B", now)  # ... while a trusted worker is drawn and gets it
    assert task(s, g) is t


def test_audit_two_auditors_agreeing_against_the_output_overturn_it_slash_and_ban() -> None:
    s, dice = real(Dice(rand_default=0.99))
    now = make_trusted(s, "ABCD") + AWAY
    _bond_a(s, now)
    # An earlier single task of A, with no audit drawn, in a job still running (its second task is pending); a
    # lower price, so the wrong task below is leased first.
    other, earlier, _ = _single(s, dice, now, price=PRICE - 1, tasks=2, audit=False, present="")
    assert other.state == "running"
    now += AWAY
    for n in "CD":  # present, so they could audit, but asking above the earlier job's price (it keeps its task)
        assert ask(s, n, now, min_price=PRICE) == []
    job, t, wrong = _single(s, dice, now, output="bad", present="")
    bonded = s.book.accounts.bonded(wid("A"))
    s.take_changes()
    (g1,) = ask(s, "C", now + 1000, max_tasks=1)
    send(s, "C", g1, good(g1), now + 2000)
    assert t.audit == "disputed" and job.state == "running"
    (g2,) = ask(s, "D", now + 3000, max_tasks=1)
    send(s, "D", g2, good(g2), now + 4000)
    assert t.audit == "corrected" and job.state == "done" and wrong.verdict == "overturned"
    changes = s.take_changes()
    merged = codec.array_from_wire(codec.decode(changes.merged[job.job_id]))
    assert np.array_equal(merged, whole_image())
    slashes = [(e.from_, e.to, e.amount) for e in changes.entries if e.kind == "slash"]
    assert slashes == [(accounts.bond_account(wid("A")), SUBMITTER, bonded)] and bonded > 0
    assert s.book.accounts.bonded(wid("A")) == 0 and s.banned(wid("A"))
    assert earlier.audit == "due"  # A's other validated task, in an unfinished job, is re-checked


def test_audit_a_second_auditor_agreeing_with_the_original_judges_the_first_auditor_invalid() -> None:
    s, dice = real(Dice(rand_default=0.99))
    now = make_trusted(s, "ABCD") + AWAY
    job, t, original = _audited_single(s, dice, now, present="C")  # C, the one present, is drawn first
    (g1,) = ask(s, "C", now + 1000)
    send(s, "C", g1, bad(g1), now + 2000)
    first = s.results[g1.lease_id]
    assert t.audit == "disputed"
    (g2,) = ask(s, "D", now + 3000)
    send(s, "D", g2, good(g2), now + 4000)
    assert t.audit == "passed" and first.verdict == "invalid" and original.verdict == "valid"
    assert s.banned(wid("A")) is None and job.state == "done"


def test_audit_with_no_auditor_present_is_skipped_once_the_trusted_wait_is_over() -> None:
    s, dice = real(Dice(rand_default=0.99))
    now = make_trusted(s, "ABCD") + AWAY
    job, t, _ = _audited_single(s, dice, now)
    drawn_at = now + ELAPSED  # the audit was drawn when the task was validated; B, C and D then went away
    later = drawn_at + PlacementPolicy().presence_ms + 1
    s.expire(drawn_at + AUDIT.fallback_ms - 1)
    assert t.audit == "due" and job.state == "running"
    s.expire(later)  # the fallback wake-up finds nobody present who could take it
    assert t.audit == "skipped" and job.state == "done"


def test_audit_that_nobody_present_could_take_is_skipped_at_once() -> None:
    s, dice = real(Dice(rand_default=0.99))
    now = make_trusted(s, "ABCD") + AWAY
    _bond_a(s, now)
    job = submit(s, now=now, tasks=1, replicas=2)
    (g,) = ask(s, "A", now, max_tasks=1)
    t = task(s, g)
    assert t.single == g.lease_id
    dice.rands = [0.0]  # the audit is drawn ...
    send(s, "A", g, good(g), now + ELAPSED)
    assert t.audit == "skipped" and job.state == "done"  # ... but nobody present could audit: no wait


def test_audit_a_patient_cheater_and_its_sybil_are_audited_by_a_worker_busy_at_the_time_and_convicted() -> None:
    # Found by CI (test_e2e_trust_attacks): trusted C and fresh Sybil P agreed on a wrong band while every honest
    # worker was busy computing; "nobody present could take it" counted busy workers as absent, so the audit a
    # probationary winner always draws was skipped at once and the wrong band stood.
    s, dice = real(Dice(rand_default=0.99))
    now = make_trusted(s, "ABCD") + AWAY
    busy = submit(s, now=now, tasks=2, replicas=1, quorum=1)
    held = {}
    for n in "AB":  # present, and busy: their capacity (shrunk by expired leases, say) is full
        s.workers[wid(n)].capacity = 1
        (held[n],) = ask(s, n, now, max_tasks=1)
    assert {task(s, g).job_id for g in held.values()} == {busy.job_id}
    victim = submit(s, now=now, tasks=1, replicas=2)
    (gp,) = ask(s, "P", now + 10, max_tasks=1)
    (gc,) = ask(s, "C", now + 20, max_tasks=1)
    t = task(s, gp)
    assert task(s, gc) is t
    for n, g in (("P", gp), ("C", gc)):
        assert send(s, n, g, bad(g), now + ELAPSED).status == "accepted"
    assert t.state == "validated" and t.audit == "due" and victim.state == "running"  # not skipped: A, B are here
    later = now + 2 * ELAPSED
    for n in "AB":  # each finishes its own task, then audits the victim's
        send(s, n, held[n], good(held[n]), later)
        (ga,) = ask(s, n, later, max_tasks=1)
        assert task(s, ga) is t
        send(s, n, ga, good(ga), later + ELAPSED)
        later += 2 * ELAPSED
    assert t.audit == "corrected" and victim.state == "done"
    assert s.banned(wid("C")) and s.banned(wid("P"))


def test_audit_workers_whose_backup_leases_were_cancelled_unanswered_may_still_audit() -> None:
    # Found by test_e2e_trust_attacks once workers leased ahead: Sybil P and trusted cheater C sat on a task, the
    # honest workers took backup leases on it, and P and C agreed on a wrong band first. A backup cancelled before
    # it answered still made its worker a holder, and holders may not audit: with every honest worker present a
    # holder, the audit a probationary winner always draws was skipped at once. A lease that ended without a
    # result computed nothing to be judged by: its worker may audit.
    s, dice = real(Dice(rand_default=0.99))
    now = make_trusted(s, "ABCD") + AWAY
    victim = submit(s, now=now, tasks=1, replicas=2)
    (gp,) = ask(s, "P", now, max_tasks=1)
    t = task(s, gp)
    (gc,) = ask(s, "C", now + 1, max_tasks=1)  # the second slot, drawn among the present: C alone
    later = now + _backup_time(s, gp)
    s.expire(later)
    (backup,) = ask(s, "A", later, max_tasks=1)  # the honest worker present backs P's lease up
    assert task(s, backup) is t
    for n, g in (("P", gp), ("C", gc)):
        assert send(s, n, g, bad(g), later + 1).status == "accepted"
    assert t.state == "validated" and t.audit == "due" and victim.state == "running"  # not skipped
    assert s.leases[backup.lease_id].state == "cancelled"  # A computed nothing here
    at = later + 2
    for n in "AB":  # A audits; B, back later, is the second auditor
        (ga,) = ask(s, n, at, max_tasks=1)
        assert task(s, ga) is t
        send(s, n, ga, good(ga), at + ELAPSED)
        at += 2 * ELAPSED
    assert t.audit == "corrected" and victim.state == "done" and s.banned(wid("C")) and s.banned(wid("P"))


def test_audit_an_auditor_whose_result_was_malformed_is_not_drawn_for_that_audit_again() -> None:
    s, dice = real(Dice(rand_default=0.99))
    now = make_trusted(s, "ABCD") + AWAY
    _, t, _ = _audited_single(s, dice, now, present="B")
    (g,) = ask(s, "B", now + 1000)
    assert send(s, "B", g, MALFORMED, now + 2000).status == "rejected"  # (its streak, so its trust, is gone)
    s.workers[wid("C")].capacity = 0  # C is present but busy: a possible auditor, not one to draw now
    assert ask(s, "C", now + 2500, max_tasks=0) == []
    later = now + AUDIT.fallback_ms + 3000  # any worker past probation may audit now
    assert ask(s, "B", later) == []  # but not B: it sent a result on the task
    assert t.audit == "due"
    s.workers[wid("C")].capacity = 8
    (g2,) = ask(s, "C", later + 1)
    assert task(s, g2) is t


# ---- found by these tests, fixed since ----------------------------------------------------------------------------


def test_audit_is_skipped_after_give_up_ms_even_if_an_audit_lease_was_active_at_the_deadline() -> None:
    s, dice = real(Dice(rand_default=0.99))
    now = make_trusted(s, "ABCD") + AWAY
    job, t, _ = _audited_single(s, dice, now)
    deadline = now + ELAPSED + AUDIT.give_up_ms
    (g,) = ask(s, "B", deadline - 1000, max_tasks=1)  # an auditor takes it, then never reports
    s.expire(deadline)
    assert t.audit == "due"  # its lease is still active: not skipped yet
    s.expire(g.expires_ms + AUDIT.give_up_ms)  # the lease expired long ago, and no auditor ever came
    assert t.audit == "skipped" and job.state == "done"


def test_audit_waits_fallback_ms_for_a_trusted_auditor_before_a_merely_seasoned_worker_may_take_it() -> None:
    s, dice = real(Dice(rand_default=0.99))
    now = make_trusted(s, "ABCD")
    now = make_seasoned(s, "XYZ", now) + AWAY
    # X is present (so the audit is not skipped at once); trusted B, C, D exist but are not present
    _, t, _ = _audited_single(s, dice, now, present="X")
    drawn_at = now + ELAPSED
    assert ask(s, "X", drawn_at + 1000) == []
    (g,) = ask(s, "X", drawn_at + AUDIT.fallback_ms)
    assert task(s, g) is t
