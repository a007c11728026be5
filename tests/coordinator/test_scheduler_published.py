"""Published kernels at the scheduler (docs/KERNELS.md, PROTOCOL.md 7.2 and 12.1): who is leased their tasks, the
platform class of a kernel with homogeneous redundancy, and results that say the kernel failed.

The kernels here are built-in ones registered again under a published kernel's name (an id) and version 0: what the
scheduler does with a published kernel does not depend on where its spec came from (depin.userkernel)."""

from __future__ import annotations

import dataclasses
import hashlib

from coordinator.scheduler import Scheduler
from depin import kernels
from depin.kernels import mandelbrot
from depin.protocol import LeaseGrant, ResultItem
from tests.coordinator.sched_support import (
    KERNELS,
    PARAMS,
    SUBMITTER,
    WORKER_KEYS,
    good,
    new_scheduler,
    task_of,
    wid,
)

PLAIN = hashlib.sha256(b"a published kernel").hexdigest()
SAME = hashlib.sha256(b"a published kernel with homogeneous redundancy").hexdigest()
kernels.register(dataclasses.replace(mandelbrot.KERNEL, name=PLAIN, version=0))
kernels.register(dataclasses.replace(mandelbrot.KERNEL, name=SAME, version=0, homogeneous=True))
X86, ARM = "x86_64 numba-0.68.1 llvm-22.1.0 glibc-2.36", "aarch64 numba-0.68.1 llvm-22.1.0 glibc-2.36"


def ask(s: Scheduler, name: str, now: int, *, published: bool = True, platform: str | None = X86,
        max_tasks: int = 8) -> list[LeaseGrant]:
    s.touch_worker(now=now, worker_id=wid(name), public_key=WORKER_KEYS[name].public)
    return s.lease(now=now, worker_id=wid(name), max_tasks=max_tasks, kernels_ok=KERNELS, published=published,
                   platform=platform)


def submit(s: Scheduler, kernel: str, *, tasks: int = 1, replicas: int = 2, max_errors: int | None = None) -> str:
    return s.submit(now=0, submitter=SUBMITTER, kernel_name=kernel, params=dict(PARAMS), n_tasks=tasks,
                    replicas=replicas, max_results=None, price=7, max_errors=max_errors).job_id


def test_only_a_worker_that_said_published_is_leased_a_published_kernels_tasks() -> None:
    s = new_scheduler()
    submit(s, PLAIN)
    assert ask(s, "A", 1, published=False) == []
    (grant,) = ask(s, "B", 2, max_tasks=1)
    assert task_of(grant)["kernel"] == PLAIN and task_of(grant)["kernel_version"] == 0


def test_homogeneous_redundancy_keeps_a_tasks_replicas_on_its_first_holders_platform_class() -> None:
    s = new_scheduler()
    submit(s, SAME)
    assert ask(s, "A", 1, platform=None) == []  # no class reported: never a task of such a kernel
    (first,) = ask(s, "B", 2, max_tasks=1)
    task = s.tasks[task_of(first)["task_id"]]
    assert task.platform == X86 and s.take_changes().tasks[task.task_id].platform == X86  # stored with the task
    assert ask(s, "C", 3, platform=ARM) == []  # another class: not eligible for the second slot
    (second,) = ask(s, "D", 4)
    assert task_of(second)["task_id"] == task.task_id


def test_a_plain_published_kernel_mixes_platform_classes() -> None:
    s = new_scheduler()
    submit(s, PLAIN)
    (first,) = ask(s, "A", 1, max_tasks=1)
    (second,) = ask(s, "B", 2, platform=ARM)
    assert task_of(first)["task_id"] == task_of(second)["task_id"]
    assert s.tasks[task_of(first)["task_id"]].platform is None


def _fail(s: Scheduler, name: str, grant: LeaseGrant, now: int) -> str:
    s.touch_worker(now=now, worker_id=wid(name), public_key=WORKER_KEYS[name].public)
    item = ResultItem(grant.lease_id, task_of(grant)["task_id"], None, 5, error="IndexError: index out of range")
    (ack,) = s.report(now=now, worker_id=wid(name), reports=[item])
    assert ack.status == "rejected"
    return ack.reason


def test_a_published_kernels_failure_is_an_error_result_held_against_nobody() -> None:
    s = new_scheduler()
    submit(s, PLAIN)
    (grant,) = ask(s, "A", 1, max_tasks=1)
    assert _fail(s, "A", grant, 2) == "kernel failed: IndexError: index out of range"
    record = s.trust.record(wid("A"), f"{PLAIN}@0")
    assert (record.invalid, record.disputed) == (0, 1)  # a dispute: not paid, not held against the worker
    assert s.workers[wid("A")].capacity == s.placement.start_capacity


def test_a_published_kernel_that_fails_everywhere_fails_its_job() -> None:
    s = new_scheduler()
    job_id = submit(s, PLAIN, replicas=1, max_errors=1)
    for n, name in enumerate("ABCDEF"):
        grants = ask(s, name, 10 * n + 1, max_tasks=1)
        if not grants:
            break
        _fail(s, name, grants[0], 10 * n + 2)
    assert s.jobs[job_id].state == "failed"
    assert s.jobs[job_id].error == ("task 0: 2 error results (limit 1) (the last: kernel failed: IndexError: index"
                                    " out of range)")


def test_an_error_on_a_built_in_kernel_is_a_malformed_result_held_against_its_worker() -> None:
    s = new_scheduler()
    submit(s, "mandelbrot")
    (grant,) = ask(s, "A", 1, max_tasks=1)
    assert _fail(s, "A", grant, 2) == "malformed output: kernel failed: IndexError: index out of range"
    record = s.trust.record(wid("A"), "mandelbrot@1")
    assert (record.invalid, record.disputed) == (1, 0)


def test_a_published_kernels_honest_results_validate_as_a_built_in_kernels_do() -> None:
    s = new_scheduler()
    job_id = submit(s, PLAIN)
    for name in "AB":
        (grant,) = ask(s, name, 1, max_tasks=1)
        s.report(now=2, worker_id=wid(name), reports=[ResultItem(grant.lease_id, task_of(grant)["task_id"],
                                                                 good(grant), 5)])
    assert s.jobs[job_id].state == "done"
