"""Scheduler and trust together: adaptive replication, trusted quorums, bans, owner/address avoidance, speed checks,
kernels that verify their own results, job policy and restore. Explicit clock, deterministic ids and dice, no I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coordinator.model import Changes
from coordinator.scheduler import Scheduler
from coordinator.store import Store
from coordinator.trust import TrustPolicy
from depin import codec, kernels
from depin.errors import Forbidden, UserError
from depin.kernels import Kernel, Param, Params, parse_params
from depin.protocol import AckItem, LeaseGrant
from tests.coordinator.sched_support import (
    COORDINATOR,
    PARAMS,
    PRICE,
    TIMEOUT,
    WORKER_KEYS,
    Ids,
    bad,
    balance,
    good,
    item,
    lease,
    new_scheduler,
    open_policy,
    report,
    submit,
    task_of,
    wid,
)

K = "mandelbrot@1"
ELAPSED = 100  # ms between lease and report in the ordinary flow: 2400 pixel-iterations / 100 ms = 24 per ms
ONLINE = 1_000


class Dice:
    """A deterministic `rand`: always `value`, counting the rolls."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = value
        self.rolls = 0

    def __call__(self) -> float:
        self.rolls += 1
        return self.value


def _policy(**changes: Any) -> TrustPolicy:
    return open_policy(**{"trust_after": 3, "online_ms": ONLINE, **changes})


def _accepted(ack: AckItem) -> None:
    assert (ack.status, ack.reason) == ("accepted", ""), ack


def _rewards(changes: Changes) -> list[tuple[str, str]]:
    """(task_id, worker) of every reward, each of exactly the job's price (a job's refund is not a reward)."""
    assert all(e.amount == PRICE for e in changes.entries if e.kind == "reward")
    return [(e.task_id or "", e.to) for e in changes.entries if e.kind == "reward"]


def _touch(s: Scheduler, name: str, now: int, *, address: str | None = None, owner: str | None = None) -> None:
    s.touch_worker(now=now, worker_id=wid(name), public_key=WORKER_KEYS[name].public, address=address, owner=owner)


def _earn_trust(s: Scheduler, names: tuple[str, str] = ("A", "B"), *, now: int = 0) -> int:
    """Make both workers trusted: trust_after one-task jobs, each cross-checked by the pair. Returns the clock."""
    for _ in range(s.trust.policy.trust_after):
        submit(s, now=now, tasks=1, replicas=2)
        grants = [lease(s, n, now=now) for n in names]
        for n, (g,) in zip(names, grants, strict=True):
            _accepted(report(s, n, g, good(g), now=now + ELAPSED))
        now += 2 * ELAPSED
    for n in names:
        assert s.trust.trusted(wid(n), K)
    return now


def _only_task(s: Scheduler) -> str:
    (task_id,) = [t for t, task in s.tasks.items() if task.state == "pending"]
    return task_id


# ---- (1) earning trust, and single tasks -------------------------------------------------------------------------


def test_trust_is_earned_by_cross_checked_validations_only() -> None:
    s = new_scheduler(policy=_policy())
    now = 0
    for n in range(1, 4):
        assert not s.trust.trusted(wid("A"), K)
        submit(s, now=now, tasks=1, replicas=2)
        (ga,), (gb,) = lease(s, "A", now=now), lease(s, "B", now=now)
        report(s, "A", ga, good(ga), now=now + ELAPSED)
        report(s, "B", gb, good(gb), now=now + ELAPSED)
        assert s.trust.records[(wid("A"), K)].consecutive_valid == n
        now += 1000
    assert s.trust.trusted(wid("A"), K) and s.trust.trusted(wid("B"), K)
    # A replicas-1 job validates alone: it pays, but builds no trust.
    submit(s, now=now, tasks=1, replicas=1)
    (gc,) = lease(s, "C", now=now)
    report(s, "C", gc, good(gc), now=now + ELAPSED)
    c = s.trust.records[(wid("C"), K)]
    assert (c.valid, c.consecutive_valid) == (1, 0) and balance(s, "C") == PRICE


@pytest.mark.parametrize("roll", [1 / 3, 0.5, 0.999])
def test_a_trusted_worker_takes_a_fresh_task_single_when_the_spot_check_says_so(roll: float) -> None:
    dice = Dice()
    s = new_scheduler(policy=_policy(), rand=dice)
    now = _earn_trust(s)
    assert dice.rolls == 0  # nobody was trusted while earning
    assert s.trust.spot_check_probability(wid("A"), K) == pytest.approx(1 / 3)
    dice.value = roll
    job = submit(s, now=now, tasks=1, replicas=2)
    s.take_changes()
    (ga,) = lease(s, "A", now=now)
    assert dice.rolls == 1
    task = s.tasks[task_of(ga)["task_id"]]
    assert (task.quorum, task.single, task.wanted) == (1, ga.lease_id, 0)
    assert s.take_changes().tasks == {task.task_id: task}  # persisted as single
    assert lease(s, "B", now=now) == [] and lease(s, "C", now=now) == []  # no second lease for anyone
    _accepted(report(s, "A", ga, good(ga), now=now + ELAPSED))
    assert task.state == "validated" and job.state == "done"
    changes = s.take_changes()
    assert _rewards(changes) == [(task.task_id, wid("A"))]
    assert changes.results[ga.lease_id].verdict == "valid"
    a = s.trust.records[(wid("A"), K)]
    assert (a.valid, a.consecutive_valid) == (4, 3)  # a single result is valid but not cross-checked


@pytest.mark.parametrize("roll", [0.0, 1 / 3 - 1e-9])
def test_a_spot_check_replicates_a_trusted_workers_task(roll: float) -> None:
    dice = Dice()
    s = new_scheduler(policy=_policy(), rand=dice)
    now = _earn_trust(s)
    dice.value = roll
    submit(s, now=now, tasks=1, replicas=2)
    (ga,) = lease(s, "A", now=now)
    task = s.tasks[task_of(ga)["task_id"]]
    assert (task.quorum, task.single, task.wanted) == (2, None, 1)
    (gc,) = lease(s, "C", now=now)  # an untrusted worker may fill a slot next to a trusted one
    assert dice.rolls == 1  # only a trusted worker's fresh task rolls the dice
    s.take_changes()
    _accepted(report(s, "A", ga, good(ga), now=now + ELAPSED))
    _accepted(report(s, "C", gc, good(gc), now=now + ELAPSED))
    assert task.state == "validated"
    assert _rewards(s.take_changes()) == [(task.task_id, wid("A")), (task.task_id, wid("C"))]
    assert s.trust.records[(wid("A"), K)].consecutive_valid == 4


def test_a_task_already_leased_never_goes_single() -> None:
    dice = Dice(0.999)
    s = new_scheduler(policy=_policy(), rand=dice)
    now = _earn_trust(s)
    submit(s, now=now, tasks=1, replicas=2)
    lease(s, "C", now=now)
    (gb,) = lease(s, "B", now=now)
    task = s.tasks[task_of(gb)["task_id"]]
    assert (task.quorum, task.single, dice.rolls) == (2, None, 0)


# ---- (2) a single lease that ends without a result ---------------------------------------------------------------


def _single(s: Scheduler, now: int) -> LeaseGrant:
    submit(s, now=now, tasks=1, replicas=2)
    (ga,) = lease(s, "A", now=now)
    assert s.tasks[task_of(ga)["task_id"]].single == ga.lease_id
    return ga


def test_an_expired_single_lease_restores_the_quorum_and_reoffers_the_task() -> None:
    s = new_scheduler(policy=_policy(), rand=Dice(0.999))
    now = _earn_trust(s)
    ga = _single(s, now)
    task = s.tasks[task_of(ga)["task_id"]]
    s.take_changes()
    assert s.expire(now + TIMEOUT) == 1
    assert (task.quorum, task.single, task.wanted) == (2, None, 2)
    assert s.take_changes().tasks == {task.task_id: task}
    later = now + TIMEOUT
    (gb,) = lease(s, "B", now=later)  # trusted, and nobody else holds the task now: B may take it single too
    assert (task.quorum, task.single) == (1, gb.lease_id)
    assert lease(s, "C", now=later) == []
    report(s, "B", gb, good(gb), now=later + ELAPSED)
    assert task.state == "validated"
    assert _rewards(s.take_changes()) == [(task.task_id, wid("B"))]


def test_a_released_single_lease_restores_the_quorum_and_reoffers_the_task() -> None:
    s = new_scheduler(policy=_policy(), rand=Dice(0.999))
    now = _earn_trust(s)
    ga = _single(s, now)
    task = s.tasks[task_of(ga)["task_id"]]
    s.take_changes()
    assert s.release(now=now + 5, worker_id=wid("A"), lease_ids=[ga.lease_id]) == 1
    assert (task.quorum, task.single, task.wanted) == (2, None, 2)
    assert s.take_changes().tasks == {task.task_id: task}
    (gc,) = lease(s, "C", now=now + 6)
    (ga2,) = lease(s, "A", now=now + 6)  # A gave it back, so it may take a replica again, but not single
    assert (task.quorum, task.single, task.wanted) == (2, None, 0)
    report(s, "C", gc, good(gc), now=now + 100)
    report(s, "A", ga2, good(ga2), now=now + 100)
    assert task.state == "validated"


# ---- (3) the last quorum slot is kept for a trusted worker -------------------------------------------------------


def test_the_last_slot_of_an_untrusted_task_waits_for_an_online_trusted_worker() -> None:
    s = new_scheduler(policy=_policy(), rand=Dice(0.999))
    now = _earn_trust(s) + 10 * ONLINE  # A and B are now offline
    _touch(s, "A", now)  # A comes back
    submit(s, now=now, tasks=1, replicas=2)
    (gc,) = lease(s, "C", now=now)
    task = s.tasks[task_of(gc)["task_id"]]
    assert lease(s, "D", now=now) == [] and lease(s, "E", now=now) == []
    assert task.wanted == 1
    (ga,) = lease(s, "A", now=now)
    assert task.single is None and task.quorum == 2
    report(s, "C", gc, good(gc), now=now + ELAPSED)
    report(s, "A", ga, good(ga), now=now + ELAPSED)
    assert task.state == "validated"


def test_only_the_last_slot_is_kept_for_a_trusted_worker() -> None:
    s = new_scheduler(policy=_policy(), rand=Dice(0.999))
    now = _earn_trust(s) + 10 * ONLINE
    _touch(s, "A", now)
    submit(s, now=now, tasks=1, replicas=3, quorum=3)
    (gc,) = lease(s, "C", now=now)
    (gd,) = lease(s, "D", now=now)  # slot 2 of 3: not the last
    assert lease(s, "E", now=now) == []
    (ga,) = lease(s, "A", now=now)
    assert {task_of(g)["task_id"] for g in (gc, gd, ga)} == {_only_task(s)}


def test_a_trusted_member_opens_the_last_slot_to_anyone() -> None:
    s = new_scheduler(policy=_policy(), rand=Dice(0.0))  # spot check: A's fresh task is replicated
    now = _earn_trust(s)
    submit(s, now=now, tasks=1, replicas=2)
    lease(s, "A", now=now)
    assert len(lease(s, "C", now=now)) == 1


def test_without_a_trusted_worker_online_the_last_slot_goes_to_anyone() -> None:
    s = new_scheduler(policy=_policy(), rand=Dice(0.999))
    now = _earn_trust(s)
    now += ONLINE + 1  # A and B were last seen more than online_ms ago
    job = submit(s, now=now, tasks=1, replicas=2)
    (gc,) = lease(s, "C", now=now)
    (gd,) = lease(s, "D", now=now)
    report(s, "C", gc, good(gc), now=now + ELAPSED)
    report(s, "D", gd, good(gd), now=now + ELAPSED)
    assert job.state == "done"


def test_a_trusted_worker_already_holding_the_task_does_not_block_the_last_slot() -> None:
    s = new_scheduler(policy=_policy(), rand=Dice(0.999))
    now = _earn_trust(s) + 10 * ONLINE
    _touch(s, "A", now)
    submit(s, now=now, tasks=1, replicas=2)
    (gc,) = lease(s, "C", now=now)
    (ga,) = lease(s, "A", now=now)
    s.expire(now + TIMEOUT)  # both leases lapse; A (online, trusted) already holds the task and may still report
    _touch(s, "A", now + TIMEOUT)
    (gd,) = lease(s, "D", now=now + TIMEOUT)  # slot 1 of 2 again
    assert lease(s, "E", now=now + TIMEOUT) != []  # the last slot: no trusted worker could still join


# ---- (4) colluders -----------------------------------------------------------------------------------------------


def _colluders_agree_on_a_wrong_answer(s: Scheduler, now: int, *, online: tuple[str, ...]) -> str:
    """C and D lease while no trusted worker is online, then `online` come back and C and D report the same lie."""
    submit(s, now=now, tasks=1, replicas=2)
    (gc,) = lease(s, "C", now=now)
    (gd,) = lease(s, "D", now=now)
    for n in online:
        _touch(s, n, now + 10)
    _accepted(report(s, "C", gc, bad(gc), now=now + 10))
    _accepted(report(s, "D", gd, bad(gd), now=now + 10))
    task_id: str = task_of(gc)["task_id"]
    return task_id


def test_colluders_do_not_validate_while_a_trusted_worker_could_be_asked() -> None:
    s = new_scheduler(policy=_policy(), rand=Dice(0.999))
    now = _earn_trust(s) + 10 * ONLINE
    s.take_changes()
    task = s.tasks[_colluders_agree_on_a_wrong_answer(s, now, online=("A",))]
    assert (task.state, task.wanted, task.needs_trusted) == ("pending", 1, True)
    assert all(s.results[lid].verdict == "pending" for lid in task.results)
    assert lease(s, "E", now=now + 20) == []  # an untrusted worker cannot break the tie
    (ga,) = lease(s, "A", now=now + 20)
    assert task_of(ga)["task_id"] == task.task_id
    assert [e.kind for e in s.take_changes().entries] == ["escrow"]  # the job's funding, and no reward


def test_colluders_lose_to_two_trusted_workers() -> None:
    s = new_scheduler(policy=_policy(), rand=Dice(0.999))
    now = _earn_trust(s) + 10 * ONLINE
    task = s.tasks[_colluders_agree_on_a_wrong_answer(s, now, online=("A", "B"))]
    (ga,) = lease(s, "A", now=now + 20)
    _accepted(report(s, "A", ga, good(ga), now=now + 20 + ELAPSED))
    assert (task.state, task.wanted) == ("pending", 1)
    (gb,) = lease(s, "B", now=now + 200)
    s.take_changes()
    report(s, "B", gb, good(gb), now=now + 200 + ELAPSED)
    assert task.state == "validated"
    changes = s.take_changes()
    verdicts = {r.worker_id: r.verdict for r in changes.results.values()}
    assert verdicts == {wid("C"): "invalid", wid("D"): "invalid", wid("A"): "valid", wid("B"): "valid"}
    assert _rewards(changes) == [(task.task_id, wid("A")), (task.task_id, wid("B"))]
    assert balance(s, "C") == balance(s, "D") == 0


def test_the_trusted_result_plus_one_honest_result_beats_colluders() -> None:
    s = new_scheduler(policy=_policy(), rand=Dice(0.999))
    now = _earn_trust(s) + 10 * ONLINE
    task = s.tasks[_colluders_agree_on_a_wrong_answer(s, now, online=("A",))]
    (ga,) = lease(s, "A", now=now + 20)
    s.take_changes()
    report(s, "A", ga, good(ga), now=now + 20 + ELAPSED)
    assert task.state == "pending", "the colluders validated against the trusted worker's result"
    assert s.take_changes().entries == []
    (ge,) = lease(s, "E", now=now + 200)
    _accepted(report(s, "E", ge, good(ge), now=now + 200 + ELAPSED))
    assert task.state == "validated"
    changes = s.take_changes()
    verdicts = {r.worker_id: r.verdict for r in changes.results.values()}
    assert verdicts == {wid("C"): "invalid", wid("D"): "invalid", wid("A"): "valid", wid("E"): "valid"}
    assert _rewards(changes) == [(task.task_id, wid("A")), (task.task_id, wid("E"))]


def test_colluders_cannot_shut_a_trusted_worker_out_by_claiming_its_owner() -> None:
    # The owner is an unchecked claim: C declares A's owner so that A may not hold the task beside it, which would
    # leave no trusted worker to ask and let C and D validate each other. For a trusted worker the claim is ignored:
    # the last slot stays reserved for A, and A can take it.
    s = new_scheduler(policy=_policy(), rand=Dice(0.0))
    now = _earn_trust(s) + 10 * ONLINE
    _touch(s, "A", now, owner="a" * 32)
    _touch(s, "C", now, owner="a" * 32)
    submit(s, now=now, tasks=1, replicas=2)
    (gc,) = lease(s, "C", now=now)
    assert lease(s, "D", now=now) == []
    (ga,) = lease(s, "A", now=now)
    assert task_of(ga)["task_id"] == task_of(gc)["task_id"]


def test_a_trusted_workers_malformed_result_does_not_make_the_task_wait_for_trust() -> None:
    # Only A is online among the trusted; its result is malformed (the spot check makes the task replicated). The
    # others agree: with no trusted worker left to ask, they validate.
    s = new_scheduler(policy=_policy(), rand=Dice(0.0))
    now = _earn_trust(s) + 10 * ONLINE
    s.workers[wid("B")].last_seen_ms = 0  # B trusted too, but offline
    submit(s, now=now, tasks=1, replicas=2)
    (ga,) = lease(s, "A", now=now)
    (gc,) = lease(s, "C", now=now)
    report(s, "A", ga, {"dtype": "uint8", "shape": [1], "data": b"\x00"}, now=now + ELAPSED)
    _accepted(report(s, "C", gc, good(gc), now=now + ELAPSED))
    (gd,) = lease(s, "D", now=now + 2 * ELAPSED)
    _accepted(report(s, "D", gd, good(gd), now=now + 3 * ELAPSED))
    assert s.tasks == {} or all(t.state == "validated" for t in s.tasks.values())
    assert balance(s, "C") == balance(s, "D") == PRICE


# ---- (5) bans ----------------------------------------------------------------------------------------------------


def test_a_banned_worker_is_refused_and_its_leases_and_pending_results_are_set_aside() -> None:
    s = new_scheduler()
    y = submit(s, now=0, tasks=3, replicas=2)
    x = submit(s, now=1, tasks=2, replicas=2, max_errors=0)
    gf = {task_of(g)["task_id"]: g for g in lease(s, "F", now=2)}
    assert len(gf) == 5
    ga = lease(s, "A", now=2, max_tasks=3)
    for i in range(3):
        report(s, "F", gf[f"{y.job_id}-{i}"], bad(gf[f"{y.job_id}-{i}"]), now=10)
        report(s, "A", ga[i], good(ga[i]), now=10)
    gb = lease(s, "B", now=10, max_tasks=3)  # the tie-breakers
    assert [task_of(g)["task_id"] for g in gb] == [task_of(g)["task_id"] for g in ga]
    x0, x1 = s.tasks[f"{x.job_id}-0"], s.tasks[f"{x.job_id}-1"]
    pending = gf[x0.task_id]
    _accepted(report(s, "F", pending, good(pending), now=11))  # F's honest result, still waiting for company
    report(s, "B", gb[0], good(gb[0]), now=12)
    report(s, "B", gb[1], good(gb[1]), now=12)
    assert s.banned(wid("F")) is None and s.workers[wid("F")].rejected == 2
    s.take_changes()
    report(s, "B", gb[2], good(gb[2]), now=13)  # F's third invalid result: banned
    assert s.banned(wid("F")) == "3 invalid results out of 3"
    assert s.workers[wid("F")].banned == "3 invalid results out of 3"
    changes = s.take_changes()
    assert changes.workers[wid("F")].banned == "3 invalid results out of 3"
    assert y.state == "done" and balance(s, "A") == balance(s, "B") == 3 * PRICE
    # Its active lease is cancelled and the task offered again in full.
    assert s.leases[gf[x1.task_id].lease_id].state == "cancelled"
    assert changes.leases[gf[x1.task_id].lease_id].state == "cancelled"
    assert x1.wanted == 2
    # Its pending result is void, out of the task: the task wants a full quorum again, and max_errors=0 is unharmed.
    assert s.results[pending.lease_id].verdict == "void" and s.results[pending.lease_id].output is None
    assert changes.results[pending.lease_id].verdict == "void"
    assert x0.results == [] and x0.wanted == 2 and x0.state == "pending"
    with pytest.raises(Forbidden, match="worker banned: 3 invalid results out of 3"):
        lease(s, "F", now=20)
    with pytest.raises(Forbidden, match="worker banned"):
        s.report(now=20, worker_id=wid("F"), reports=[item(pending, good(pending))])
    s.take_changes()
    gc, gd = lease(s, "C", now=20), lease(s, "D", now=20)
    assert [task_of(g)["task_id"] for g in gc] == [x0.task_id, x1.task_id]
    for g in gc:
        report(s, "C", g, good(g), now=30)
    for g in gd:
        report(s, "D", g, good(g), now=30)
    assert x.state == "done" and x.error is None
    assert sorted(_rewards(s.take_changes())) == sorted(
        [(x0.task_id, wid("C")), (x0.task_id, wid("D")), (x1.task_id, wid("C")), (x1.task_id, wid("D"))])
    assert balance(s, "F") == 0


def test_a_banned_trusted_workers_single_lease_goes_back_replicated() -> None:
    s = new_scheduler(policy=_policy(), rand=Dice(0.999))
    now = _earn_trust(s)
    submit(s, now=now, tasks=4, replicas=2)
    grants = lease(s, "A", now=now)
    tasks = [s.tasks[task_of(g)["task_id"]] for g in grants]
    assert [t.single for t in tasks] == [g.lease_id for g in grants]  # every fresh task went single
    for g in grants[1:]:
        ack = report(s, "A", g, {"dtype": "uint32", "shape": [1], "data": b"\0\0\0\0"}, now=now + ELAPSED)
        assert ack.status == "rejected"
    # 3 invalid out of 6 judged: banned, and its last single lease is cancelled.
    assert s.banned(wid("A")) == "3 invalid results out of 6"
    assert s.leases[grants[0].lease_id].state == "cancelled"
    assert (tasks[0].quorum, tasks[0].single, tasks[0].wanted) == (2, None, 2)
    # Each refuted single task needs a full quorum of others now (A's error result stays an error).
    assert [(t.quorum, t.single, t.wanted) for t in tasks[1:]] == [(2, None, 2)] * 3
    assert len(lease(s, "C", now=now + 200)) == 4


# ---- (6) owners and public addresses -----------------------------------------------------------------------------


def test_two_workers_of_one_owner_never_hold_replicas_of_one_task() -> None:
    s = new_scheduler()
    submit(s, tasks=2, replicas=3)
    for n, owner in (("A", "alice"), ("B", "alice"), ("C", "bob"), ("D", None)):
        _touch(s, n, 0, owner=owner)
    assert s.workers[wid("A")].owner == "alice" and s.workers[wid("D")].owner is None
    assert len(lease(s, "A", now=1)) == 2
    assert lease(s, "B", now=1) == []
    assert len(lease(s, "C", now=1)) == 2
    assert len(lease(s, "D", now=1)) == 2
    assert all(t.wanted == 0 for t in s.tasks.values())


def test_two_workers_at_one_public_address_never_hold_replicas_of_one_task() -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=2)
    _touch(s, "A", 0, address="8.8.8.8")
    _touch(s, "B", 0, address="8.8.8.8")
    _touch(s, "C", 0, address="2001:4860:4860::8888")
    assert s.workers[wid("A")].address == "8.8.8.8"
    assert len(lease(s, "A", now=1)) == 1
    assert lease(s, "B", now=1) == []
    assert len(lease(s, "C", now=1)) == 1


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "192.168.1.20", "172.16.0.1", "::1", "fd00::1",
                                     "100.64.0.1", "not-an-ip", ""])
def test_private_and_loopback_addresses_are_ignored(address: str) -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=2)
    _touch(s, "A", 0, address=address)
    _touch(s, "B", 0, address=address)
    assert s.workers[wid("A")].address is None
    assert len(lease(s, "A", now=1)) == 1
    assert len(lease(s, "B", now=1)) == 1


def test_a_public_address_is_kept_when_the_worker_is_later_seen_from_a_private_one() -> None:
    s = new_scheduler()
    _touch(s, "A", 0, address="8.8.8.8")
    _touch(s, "A", 1, address="10.0.0.1")
    _touch(s, "A", 2)
    assert s.workers[wid("A")].address == "8.8.8.8"
    _touch(s, "A", 3, address="1.1.1.1")
    assert s.workers[wid("A")].address == "1.1.1.1"
    assert s.take_changes().workers[wid("A")].address == "1.1.1.1"


def test_a_released_lease_frees_its_owner_slot() -> None:
    # As the releasing worker itself may take the task again, so may another of its owner (and a restored
    # coordinator, which skips released leases when it rebuilds the holders, agrees).
    s = new_scheduler()
    submit(s, tasks=1, replicas=2)
    _touch(s, "A", 0, owner="alice")
    _touch(s, "B", 0, owner="alice")
    (ga,) = lease(s, "A", now=1)
    s.release(now=2, worker_id=wid("A"), lease_ids=[ga.lease_id])
    assert len(lease(s, "B", now=3)) == 1


# ---- (7) too fast ------------------------------------------------------------------------------------------------


def test_a_too_fast_single_result_is_flagged_untrusted_and_needs_company() -> None:
    s = new_scheduler(policy=_policy(), rand=Dice(0.999))
    now = _earn_trust(s)  # 6 validated samples at 24 units/ms: the population's reference
    assert s.speed.reference(K, 2400, wid("A")) == ELAPSED  # B's times for the same work: A's reference
    ga = _single(s, now)
    task = s.tasks[task_of(ga)["task_id"]]
    s.take_changes()
    _accepted(report(s, "A", ga, good(ga), now=now + 1))  # 1 ms for work B did in 100 ms at best
    result = s.results[ga.lease_id]
    assert (result.too_fast, result.trusted, result.verdict) == (True, False, "pending")
    assert s.workers[wid("A")].too_fast == 1 and s.trust.standing[wid("A")].too_fast == 1
    assert not s.trust.trusted(wid("A"), K)  # the anomaly suspends A's trust: it must be earned again
    assert (task.state, task.quorum, task.single, task.wanted) == ("pending", 2, None, 1)
    changes = s.take_changes()
    assert changes.results[ga.lease_id].too_fast and changes.workers[wid("A")].too_fast == 1
    assert changes.trust[(wid("A"), K)].consecutive_valid == 0  # persisted, so a restart does not restore trust
    assert changes.tasks[task.task_id].quorum == 2 and changes.entries == []
    (gb,) = lease(s, "B", now=now + 10)
    _accepted(report(s, "B", gb, good(gb), now=now + 10 + ELAPSED))
    assert task.state == "validated"
    assert _rewards(s.take_changes()) == [(task.task_id, wid("A")), (task.task_id, wid("B"))]
    assert s.speed.typical(K, 2400) == ELAPSED  # the implausible time is not learnt


def test_a_too_fast_result_does_not_open_the_last_slot_to_an_untrusted_worker() -> None:
    s = new_scheduler(policy=_policy(), rand=Dice(0.999))
    now = _earn_trust(s)
    ga = _single(s, now)
    report(s, "A", ga, good(ga), now=now + 1)
    assert s.results[ga.lease_id].too_fast
    assert lease(s, "C", now=now + 5) == []  # A's result is no trusted member: the slot waits for B
    assert len(lease(s, "B", now=now + 5)) == 1


def test_a_result_at_ordinary_speed_is_not_flagged() -> None:
    s = new_scheduler(policy=_policy(), rand=Dice(0.999))
    now = _earn_trust(s)
    ga = _single(s, now)
    s.take_changes()
    _accepted(report(s, "A", ga, good(ga), now=now + ELAPSED // 4))  # 4x faster than before: plausible
    result = s.take_changes().results[ga.lease_id]
    assert (result.too_fast, result.trusted, result.verdict) == (False, True, "valid")
    assert s.workers[wid("A")].too_fast == 0


def test_without_enough_speed_samples_nothing_is_too_fast() -> None:
    s = new_scheduler(policy=_policy(speed_samples=100))
    submit(s, tasks=1, replicas=2)
    (ga,), (gb,) = lease(s, "A", now=0), lease(s, "B", now=0)
    report(s, "A", ga, good(ga), now=0)
    report(s, "B", gb, good(gb), now=1)
    assert not any(r.too_fast for r in s.results.values()) and s.workers[wid("A")].too_fast == 0


# ---- (8) a kernel that checks its own results --------------------------------------------------------------------

_RIGHT, _WRONG, _UNSURE = 1, 2, 3
_PROBE_SCHEMA = (Param("n", int, 1, 16, "number of tasks"),)


def _probe_verify(t: Params, out: np.ndarray) -> bool | None:
    return {_RIGHT: True, _WRONG: False}.get(int(out[0]))


def _probe_validate(p: Params) -> Params:
    return parse_params(_PROBE_SCHEMA, p)


PROBE = Kernel(
    name="probe", version=1, doc="a test kernel whose output says whether it verifies", schema=_PROBE_SCHEMA,
    validate=_probe_validate, validate_task=lambda t: t,
    split=lambda p, n: [{"i": i} for i in range(n)],
    run=lambda t: np.array([_RIGHT], dtype=np.uint8),
    output_spec=lambda t: ("uint8", (1,)),
    merge=lambda p, outs: np.concatenate(outs),
    work=lambda t: 1000, warmup=lambda: None, verify=_probe_verify,
)


def _out(value: int) -> dict[str, Any]:
    return codec.array_to_wire(np.array([value], dtype=np.uint8))


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Kernel:
    monkeypatch.setitem(kernels._REGISTRY, "probe", PROBE)
    return PROBE


def _probe_lease(s: Scheduler, name: str, now: int) -> list[LeaseGrant]:
    _touch(s, name, now)
    return s.lease(now=now, worker_id=wid(name), max_tasks=8, kernels_ok=("probe@1",))


def test_a_verifying_kernels_tasks_go_out_with_one_lease(probe: Kernel) -> None:
    s = new_scheduler()
    submit(s, kernel="probe", params={"n": 2}, tasks=2, replicas=2)
    assert len(_probe_lease(s, "A", 0)) == 2
    assert [t.wanted for t in s.tasks.values()] == [0, 0]  # each task was made wanting one lease, and got it
    assert _probe_lease(s, "B", 0) == []


def test_a_verified_result_validates_alone_and_pays_once(probe: Kernel) -> None:
    s = new_scheduler()
    job = submit(s, kernel="probe", params={"n": 1}, tasks=1, replicas=2)
    (ga,) = _probe_lease(s, "A", 0)
    s.take_changes()
    _accepted(report(s, "A", ga, _out(_RIGHT), now=ELAPSED))
    assert job.state == "done"
    changes = s.take_changes()
    assert _rewards(changes) == [(f"{job.job_id}-0", wid("A"))]
    assert changes.results[ga.lease_id].verified is True
    r = s.trust.records[(wid("A"), "probe@1")]
    assert (r.valid, r.consecutive_valid) == (1, 1)  # the kernel's check is a cross-check
    assert codec.array_from_wire(codec.decode(changes.merged[job.job_id])).tolist() == [_RIGHT]


def test_a_refuted_result_is_rejected_and_the_task_offered_again(probe: Kernel) -> None:
    s = new_scheduler()
    job = submit(s, kernel="probe", params={"n": 1}, tasks=1, replicas=2)
    (ga,) = _probe_lease(s, "A", 0)
    ack = report(s, "A", ga, _out(_WRONG), now=ELAPSED)
    assert ack == AckItem(ga.lease_id, "rejected", "the kernel's check refutes this result")
    result = s.results[ga.lease_id]
    assert (result.verified, result.verdict) == (False, "invalid")
    assert s.workers[wid("A")].rejected == 1 and s.trust.records[(wid("A"), "probe@1")].invalid == 1
    task = s.tasks[f"{job.job_id}-0"]
    assert task.state == "pending" and task.wanted >= 1
    assert _probe_lease(s, "A", 200) == []
    (gb,) = _probe_lease(s, "B", 200)
    s.take_changes()
    _accepted(report(s, "B", gb, _out(_RIGHT), now=200 + ELAPSED))
    assert job.state == "done"
    assert _rewards(s.take_changes()) == [(task.task_id, wid("B"))]


def test_a_refuted_result_asks_for_one_more_lease_not_a_full_quorum(probe: Kernel) -> None:
    s = new_scheduler()
    job = submit(s, kernel="probe", params={"n": 1}, tasks=1, replicas=2)
    (ga,) = _probe_lease(s, "A", 0)
    report(s, "A", ga, _out(_WRONG), now=ELAPSED)
    assert s.tasks[f"{job.job_id}-0"].wanted == 1


def test_an_unsure_check_falls_back_to_quorum(probe: Kernel) -> None:
    s = new_scheduler()
    job = submit(s, kernel="probe", params={"n": 1}, tasks=1, replicas=2)
    (ga,) = _probe_lease(s, "A", 0)
    _accepted(report(s, "A", ga, _out(_UNSURE), now=ELAPSED))
    task = s.tasks[f"{job.job_id}-0"]
    assert (task.state, task.wanted, s.results[ga.lease_id].verified) == ("pending", 1, None)
    (gb,) = _probe_lease(s, "B", 200)
    s.take_changes()
    _accepted(report(s, "B", gb, _out(_UNSURE), now=200 + ELAPSED))
    assert job.state == "done"
    assert _rewards(s.take_changes()) == [(task.task_id, wid("A")), (task.task_id, wid("B"))]
    assert s.trust.records[(wid("A"), "probe@1")].consecutive_valid == 1  # agreement is a cross-check too


def test_a_verifying_kernels_task_never_goes_single(probe: Kernel) -> None:
    dice = Dice(0.999)
    s = new_scheduler(policy=_policy(), rand=dice)
    for i in range(3):
        submit(s, now=i, kernel="probe", params={"n": 1}, tasks=1, replicas=2)
        (g,) = _probe_lease(s, "A", i)
        report(s, "A", g, _out(_RIGHT), now=i)
    assert s.trust.trusted(wid("A"), "probe@1")
    submit(s, now=9, kernel="probe", params={"n": 1}, tasks=1, replicas=2)
    (g,) = _probe_lease(s, "A", 9)
    task = s.tasks[task_of(g)["task_id"]]
    assert (task.single, task.quorum, dice.rolls) == (None, 2, 0)


# ---- (9) job policy ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, (2, 2, 3, 5)),
        ({"replicas": 1}, (1, 1, 3, 4)),
        ({"replicas": 3}, (2, 3, 3, 6)),
        ({"quorum": 3}, (3, 3, 3, 6)),
        ({"quorum": 1}, (1, 1, 3, 4)),
        ({"quorum": 2, "replicas": 5, "max_errors": 0, "max_results": 5}, (2, 5, 0, 5)),
        ({"replicas": 16}, (2, 16, 3, 19)),
        ({"quorum": 16}, (16, 16, 3, 19)),
        ({"max_errors": 64}, (2, 2, 64, 5)),
    ],
)
def test_job_policy_defaults(given: dict[str, int], expected: tuple[int, int, int, int]) -> None:
    s = new_scheduler()
    job = submit(s, **{"replicas": None, **given})  # type: ignore[arg-type]
    assert (job.quorum, job.replicas, job.max_errors, job.max_results) == expected
    assert all(t.quorum == job.quorum and t.wanted == job.replicas for t in s.tasks.values())


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"quorum": 0}, "quorum must be between 1 and 16"),
        ({"quorum": 17}, "quorum must be between 1 and 16"),
        ({"replicas": 0}, "quorum must be between 1 and 16"),
        ({"quorum": 3, "replicas": 2}, r"replicas must be between quorum \(3\) and 16"),
        ({"quorum": 2, "replicas": 17}, r"replicas must be between quorum \(2\) and 16"),
        ({"max_errors": -1}, "max_errors must be between 0 and 64"),
        ({"max_errors": 65}, "max_errors must be between 0 and 64"),
        ({"quorum": 2, "replicas": 4, "max_results": 3}, r"max_results must be between replicas \(4\) and 64"),
        ({"max_results": 65}, r"max_results must be between replicas \(2\) and 64"),
    ],
)
def test_job_policy_is_checked(given: dict[str, int], message: str) -> None:
    s = new_scheduler()
    s.take_changes()
    with pytest.raises(UserError, match=f"^{message}$"):
        submit(s, **{"replicas": None, **given})  # type: ignore[arg-type]
    assert s.jobs == {} and not s.take_changes()


def test_extra_replicas_beyond_quorum_are_cancelled_once_quorum_agrees() -> None:
    s = new_scheduler()
    job = submit(s, tasks=1, replicas=3, quorum=2)
    (ga,), (gb,), (gc,) = lease(s, "A", now=0), lease(s, "B", now=0), lease(s, "C", now=0)
    report(s, "A", ga, good(ga), now=10)
    report(s, "B", gb, good(gb), now=10)
    assert job.state == "done" and s.leases == {}
    assert report(s, "C", gc, good(gc), now=20).status == "rejected"
    assert balance(s, "C") == 0


def test_max_errors_fails_the_job() -> None:
    s = new_scheduler()
    job = submit(s, tasks=1, replicas=2, max_errors=1)
    malformed = {"dtype": "uint32", "shape": [1], "data": b"\0\0\0\0"}
    (ga,), (gb,) = lease(s, "A", now=0), lease(s, "B", now=0)
    report(s, "A", ga, malformed, now=1)
    assert job.state == "running"
    report(s, "B", gb, malformed, now=2)
    assert (job.state, job.error) == ("failed", "task 0: 2 error results (limit 1)")


# ---- (10) restore ------------------------------------------------------------------------------------------------


class _Saved:
    """A scheduler whose every change set is saved, as the service does after each request."""

    def __init__(self, store: Store, policy: TrustPolicy, rand: Dice) -> None:
        self.store, self.policy, self.rand = store, policy, rand
        self.s = new_scheduler(policy=policy, rand=rand)

    def save(self) -> None:
        self.store.save(self.s.take_changes())

    def restore(self, now: int) -> Scheduler:
        return Scheduler.restore(**self.store.load(), key=COORDINATOR, lease_timeout_ms=TIMEOUT, new_id=Ids(),
                                 policy=self.policy, rand=self.rand, now=now)


def test_trust_bans_and_single_tasks_survive_a_restore(tmp_path: Path) -> None:
    store = Store(tmp_path / "coordinator.sqlite3")
    saved = _Saved(store, _policy(), Dice(0.999))
    s = saved.s
    now = _earn_trust(s)
    saved.save()
    single = _single(s, now)
    saved.save()
    # F is banned for three malformed results; D's result on one of those tasks is too fast and stays pending.
    submit(s, now=now, tasks=3, replicas=2, params=dict(PARAMS, height=18))  # tasks of the same work as before
    for g in lease(s, "F", now=now + 1):
        report(s, "F", g, {"dtype": "uint32", "shape": [1], "data": b"\0\0\0\0"}, now=now + 2)
        saved.save()
    assert s.banned(wid("F")) == "3 invalid results out of 3"
    (gd,) = lease(s, "D", now=now + 2, max_tasks=1)
    report(s, "D", gd, good(gd), now=now + 3)
    assert s.results[gd.lease_id].too_fast
    saved.save()

    s2 = saved.restore(now + 4)
    assert s2.trust.records == s.trust.records
    assert {w: s2.trust.standing_of(w) for w in s.workers} == {w: s.trust.standing_of(w) for w in s.workers}
    for name in "ABCDEF":
        assert s2.trust.trusted(wid(name), K) == s.trust.trusted(wid(name), K)
    assert {w: (x.validated, x.rejected, x.banned, x.too_fast) for w, x in s2.workers.items()} == {
        w: (x.validated, x.rejected, x.banned, x.too_fast) for w, x in s.workers.items()}
    assert {w: balance(s2, w) for w in s.workers} == {w: balance(s, w) for w in s.workers}
    assert s2.book.head == s.book.head and s2.book.root() == s.book.root()
    assert s2.banned(wid("F")) == "3 invalid results out of 3"
    with pytest.raises(Forbidden, match="worker banned: 3 invalid results out of 3"):
        lease(s2, "F", now=now + 4)
    assert s2.results[gd.lease_id].too_fast and not s2.results[gd.lease_id].trusted
    assert {t: (x.quorum, x.single, x.wanted, x.results) for t, x in s2.tasks.items()} == {
        t: (x.quorum, x.single, x.wanted, x.results) for t, x in s.tasks.items()}
    task_id = task_of(single)["task_id"]
    assert (s2.tasks[task_id].quorum, s2.tasks[task_id].single) == (1, single.lease_id)
    assert task_id not in {task_of(g)["task_id"] for g in lease(s2, "E", now=now + 4)}
    s2.take_changes()
    _accepted(report(s2, "A", single, good(single), now=now + ELAPSED))
    assert s2.jobs[task_of(single)["job_id"]].state == "done"
    assert _rewards(s2.take_changes()) == [(task_id, wid("A"))]
    store.close()


def test_a_banned_workers_void_results_stay_set_aside_after_restore(tmp_path: Path) -> None:
    store = Store(tmp_path / "coordinator.sqlite3")
    saved = _Saved(store, open_policy(), Dice())
    s = saved.s
    x = submit(s, now=0, tasks=1, replicas=2)
    (gx,) = lease(s, "F", now=0, max_tasks=1)
    report(s, "F", gx, good(gx), now=1)  # pending, waiting for a partner
    submit(s, now=2, tasks=3, replicas=2)
    for g in lease(s, "F", now=2):
        report(s, "F", g, {"dtype": "uint32", "shape": [1], "data": b"\0\0\0\0"}, now=3)
    saved.save()
    assert s.results[gx.lease_id].verdict == "void"
    s2 = saved.restore(4)
    task = s2.tasks[f"{x.job_id}-0"]
    assert task.results == [] and task.wanted == 2
    assert s2.results[gx.lease_id].verdict == "void"
    store.close()
