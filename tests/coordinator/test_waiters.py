"""Waiting lease requests woken just as many as there is work for (coordinator.waiters)."""

from __future__ import annotations

import asyncio

from coordinator.waiters import Waiters


async def _waiting(w: Waiters, names: str, timeout: float = 5.0) -> list[asyncio.Task[int]]:
    tasks = [asyncio.create_task(w.wait(n, timeout)) for n in names]
    await asyncio.sleep(0)  # let each register, in order
    assert len(w) == len(names)
    return tasks


async def test_wake_n_wakes_the_n_oldest_and_tells_them_how_far_to_pass_it_on() -> None:
    w = Waiters()
    a, b, c = await _waiting(w, "abc")
    assert w.wake(2) == 2
    assert await a == 3 and await b == 3  # three were waiting: the wake may travel around all of them
    assert not c.done() and len(w) == 1
    assert w.wake(5, hops=1) == 1 and await c == 1
    assert w.wake(1) == 0 and len(w) == 0


async def test_wake_worker_wakes_only_that_workers_requests() -> None:
    w = Waiters()
    a, b, a2 = await _waiting(w, "aba")
    w.wake_worker("a")
    assert await a == 0 and await a2 == 0  # woken for themselves: nothing to pass on
    assert not b.done()
    w.wake_all()
    assert await b == 0 and len(w) == 0


async def test_a_timeout_returns_zero_and_leaves_no_trace() -> None:
    w = Waiters()
    (a,) = await _waiting(w, "a", timeout=0.01)
    assert await a == 0 and len(w) == 0
    assert w.wake(1) == 0
