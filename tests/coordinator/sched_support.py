"""Shared helpers for the scheduler and store tests: fixed keys, a deterministic id generator, tiny jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from coordinator.scheduler import Job, Scheduler
from coordinator.trust import TrustPolicy
from depin import codec
from depin.crypto import SigningKey
from depin.kernels import mandelbrot
from depin.protocol import AckItem, LeaseGrant, ResultItem

COORDINATOR = SigningKey(bytes([7]) * 32)
SUBMITTER = SigningKey(bytes([9]) * 32).id
WORKER_KEYS = {name: SigningKey(bytes([20 + i]) * 32) for i, name in enumerate("ABCDEF")}
KERNELS = ("mandelbrot@1",)
TIMEOUT = 10_000
PRICE = 7
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


def new_scheduler(ids: Ids | None = None, *, policy: TrustPolicy | None = None,
                  rand: Callable[[], float] | None = None) -> Scheduler:
    """A scheduler with the test key; `rand` defaults to 0.0, so a spot check always replicates."""
    return Scheduler(key=COORDINATOR, lease_timeout_ms=TIMEOUT, new_id=ids or Ids(), policy=policy,
                     rand=rand or (lambda: 0.0))


def submit(s: Scheduler, *, now: int = 0, tasks: int = 1, replicas: int = 2, max_results: int | None = None,
           price: int = PRICE, params: dict[str, Any] | None = None, submitter: str = SUBMITTER,
           quorum: int | None = None, max_errors: int | None = None, kernel: str = "mandelbrot") -> Job:
    return s.submit(now=now, submitter=submitter, kernel_name=kernel, params=dict(params or PARAMS),
                    n_tasks=tasks, replicas=replicas, max_results=max_results, price=price, quorum=quorum,
                    max_errors=max_errors)


def lease(s: Scheduler, name: str, *, now: int, max_tasks: int = 8) -> list[LeaseGrant]:
    """What the shell does for a lease request: note the worker, then lease."""
    s.touch_worker(now=now, worker_id=wid(name), public_key=WORKER_KEYS[name].public)
    return s.lease(now=now, worker_id=wid(name), max_tasks=max_tasks, kernels_ok=KERNELS)


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
