"""Shared helpers for the scheduler and store tests: fixed keys, a deterministic id generator, tiny jobs, money."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from coordinator.auditing import AuditPolicy
from coordinator.model import Changes
from coordinator.placement import PlacementPolicy
from coordinator.scheduler import Job, Scheduler
from coordinator.store import Store
from coordinator.trust import TrustPolicy
from depin import accounts, codec, ledger
from depin.crypto import SigningKey
from depin.kernels import mandelbrot
from depin.protocol import AckItem, LeaseGrant, ResultItem

COORDINATOR = SigningKey(bytes([7]) * 32)
SUBMITTER = SigningKey(bytes([9]) * 32).id
WORKER_KEYS = {name: SigningKey(bytes([20 + i]) * 32) for i, name in enumerate("ABCDEF")}
KERNELS = ("mandelbrot@1",)
TIMEOUT = 10_000
PRICE = 7
FUNDS = 10**9  # what new_scheduler grants SUBMITTER first, unless told otherwise: enough for any test job
# 8x6 pixels: every numba run in these tests is microseconds.
PARAMS: dict[str, Any] = {"width": 8, "height": 6, "x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2,
                          "max_iter": 50}


def wid(name: str) -> str:
    """The worker id of test worker `name` ("A".."F")."""
    return WORKER_KEYS[name].id


class Ids:
    """A deterministic id generator: id0001, id0002, ..."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"id{self.n:04d}"


# The rules from before placement and audits, for the tests of everything else: no lease capacity, no drawn replica
# slots, no probation, any agreement builds trust, no audits, no bond needed to go single.
# tests/coordinator/test_scheduler_attacks.py runs the real defaults.
OPEN_PLACEMENT = PlacementPolicy(start_capacity=1024, max_draws=0)
NO_AUDITS = AuditPolicy(single=0.0, replicated=0.0, on_probation=0.0, bond_required=False)


def open_policy(**constants: Any) -> TrustPolicy:
    """A TrustPolicy with these constants, and without probation, the partner cap or the speed floor."""
    return TrustPolicy(**{"probation_valid": 0, "partner_cap": 10**6, "speed_floor_ms": 0, **constants})


def new_scheduler(ids: Ids | None = None, *, policy: TrustPolicy | None = None,
                  rand: Callable[[], float] | None = None, funds: int = FUNDS, pick: Callable[[int], int] | None = None,
                  placement: PlacementPolicy | None = None, audits: AuditPolicy | None = None,
                  order_key: Callable[[], bytes] = lambda: b"") -> Scheduler:
    """A scheduler with the test key whose first ledger entry grants SUBMITTER `funds` credits (none if 0); `rand`
    defaults to 0.0, so a spot check always replicates, and `pick` to 0, so leasing walks a job from its first
    task (`order_key` b"": its tasks are made in index order) and a draw takes the first candidate; `policy`,
    `placement` and `audits` default to the open rules above. The grant stays in the change set, for a store to
    save."""
    s = Scheduler(key=COORDINATOR, lease_timeout_ms=TIMEOUT, new_id=ids or Ids(), policy=policy or open_policy(),
                  rand=rand or (lambda: 0.0), pick=pick or (lambda n: 0), placement_policy=placement or OPEN_PLACEMENT,
                  audit_policy=audits or NO_AUDITS, order_key=order_key)
    if funds:
        s.grant(now=0, account=SUBMITTER, amount=funds)
    return s


def balance(s: Scheduler, account: str) -> int:
    """An account's balance in the scheduler's book; a test worker's name ("A".."F") stands for its id."""
    return s.book.accounts.balance(wid(account) if account in WORKER_KEYS else account)


def escrow(s: Scheduler, job: Job) -> int:
    """Credits the job's escrow still holds."""
    return s.book.accounts.balance(accounts.escrow_account(job.job_id))


def rewards(changes: Changes | list[ledger.Entry]) -> list[tuple[str, str, int]]:
    """(task_id, worker, amount) of every reward entry, in ledger order."""
    entries = changes.entries if isinstance(changes, Changes) else changes
    return [(e.task_id or "", e.to, e.amount) for e in entries if e.kind == "reward"]


def refunds(changes: Changes | list[ledger.Entry]) -> list[tuple[str, str, int]]:
    """(job_id, funder, amount) of every refund entry, in ledger order."""
    entries = changes.entries if isinstance(changes, Changes) else changes
    return [(e.job_id or "", e.to, e.amount) for e in entries if e.kind == "refund"]


def submit(s: Scheduler, *, now: int = 0, tasks: int = 1, replicas: int = 2, max_results: int | None = None,
           price: int = PRICE, params: dict[str, Any] | None = None, submitter: str = SUBMITTER,
           quorum: int | None = None, max_errors: int | None = None, kernel: str = "mandelbrot") -> Job:
    return s.submit(now=now, submitter=submitter, kernel_name=kernel, params=dict(params or PARAMS),
                    n_tasks=tasks, replicas=replicas, max_results=max_results, price=price, quorum=quorum,
                    max_errors=max_errors)


def lease(s: Scheduler, name: str, *, now: int, max_tasks: int = 8, min_price: int = 0) -> list[LeaseGrant]:
    """What the shell does for a lease request: note the worker (and its asking price), then lease."""
    s.touch_worker(now=now, worker_id=wid(name), public_key=WORKER_KEYS[name].public, min_price=min_price)
    return s.lease(now=now, worker_id=wid(name), max_tasks=max_tasks, kernels_ok=KERNELS, min_price=min_price)


def task_of(grant: LeaseGrant) -> dict[str, Any]:
    """The signed task message inside a grant."""
    payload: dict[str, Any] = codec.decode(grant.task)
    return payload


def good(grant: LeaseGrant) -> dict[str, Any]:
    """The honest output for the grant's task, as a wire map."""
    return codec.array_to_wire(mandelbrot.run(task_of(grant)["params"]))


def bad(grant: LeaseGrant, delta: int = 1) -> dict[str, Any]:
    """A well-formed but wrong output: one pixel off by `delta`."""
    arr = mandelbrot.run(task_of(grant)["params"]).copy()
    arr[0, 0] += np.uint32(delta)
    return codec.array_to_wire(arr)


def item(grant: LeaseGrant, output: Any) -> ResultItem:
    return ResultItem(lease_id=grant.lease_id, task_id=task_of(grant)["task_id"], output=output, elapsed_ms=1)


def report(s: Scheduler, name: str, grant: LeaseGrant, output: Any, *, now: int) -> AckItem:
    """What the shell does for a one-result request: note the worker, then report."""
    s.touch_worker(now=now, worker_id=wid(name), public_key=WORKER_KEYS[name].public)
    (ack,) = s.report(now=now, worker_id=wid(name), reports=[item(grant, output)])
    return ack


def whole_image(params: dict[str, Any] | None = None) -> np.ndarray:
    p = mandelbrot.validate(dict(params or PARAMS))
    return mandelbrot.run(dict(p, row_start=0, row_end=p["height"]))


OTHER = SigningKey(bytes([10]) * 32).id  # a second submitter


def stored_market(store: Store, ids: Ids | None = None) -> tuple[Scheduler, dict[str, Job]]:
    """A scheduler whose every change set is saved to `store`, after a little market (thirteen ledger entries: grants
    to SUBMITTER and OTHER, then):

    - "done": SUBMITTER's 2 tasks x quorum 2, validated by A and B (four rewards) and the rest refunded;
    - "paying": SUBMITTER's 2 single-replica tasks at price 3, D's result validated on task 0 (running, one reward);
    - "open": OTHER's job at price 11, A and C disagree on its task (running, nothing paid);
    - "cancelled": SUBMITTER's job cancelled while queued (refunded in full).
    """
    s = new_scheduler(ids)
    s.grant(now=1, account=OTHER, amount=1000)
    jobs: dict[str, Job] = {}
    jobs["done"] = submit(s, now=2, tasks=2, replicas=2, max_results=3)
    store.save(s.take_changes())
    for name in "AB":
        for g in lease(s, name, now=3):
            report(s, name, g, good(g), now=4)
        store.save(s.take_changes())
    jobs["paying"] = submit(s, now=5, tasks=2, replicas=1, price=3)
    gd = lease(s, "D", now=6)
    report(s, "D", gd[0], good(gd[0]), now=7)
    store.save(s.take_changes())
    jobs["open"] = submit(s, now=8, tasks=1, replicas=2, price=11, submitter=OTHER)
    (ga,), (gc,) = lease(s, "A", now=9, max_tasks=1), lease(s, "C", now=9, max_tasks=1)
    assert task_of(ga)["job_id"] == task_of(gc)["job_id"] == jobs["open"].job_id
    report(s, "A", ga, good(ga), now=10)
    report(s, "C", gc, bad(gc), now=10)
    store.save(s.take_changes())
    jobs["cancelled"] = submit(s, now=11, tasks=1, replicas=1)
    s.cancel(now=12, job_id=jobs["cancelled"].job_id, requester=SUBMITTER)
    store.save(s.take_changes())
    assert [j.state for j in jobs.values()] == ["done", "running", "running", "cancelled"] and s.book.size == 13
    return s, jobs
