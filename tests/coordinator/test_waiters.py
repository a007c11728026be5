"""Waiting lease requests woken just as many as there is work for, and only those who could take it
(coordinator.waiters)."""

from __future__ import annotations

import asyncio

from coordinator.waiters import PUBLISHED, JobWaiters, Waiters, Wake

K = "mandelbrot@1"
ANY = frozenset({K})


async def _waiting(w: Waiters, names: str, timeout: float = 5.0, kernels: frozenset[str] = ANY,
                   min_price: int = 0) -> list[asyncio.Task[Wake]]:
    tasks = [asyncio.create_task(w.wait(n, kernels, min_price, timeout)) for n in names]
    await asyncio.sleep(0)  # let each register, in order
    return tasks


async def test_wake_n_wakes_the_n_oldest_and_tells_them_how_far_to_pass_it_on() -> None:
    w = Waiters()
    a, b, c = await _waiting(w, "abc")
    assert w.wake(2, K, 10) == 2
    assert await a == await b == Wake(K, 10, 3)  # three could take it: the wake may travel around all of them
    assert not c.done() and len(w) == 1
    assert w.wake(5, K, 10, hops=1) == 1 and (await c).hops == 1
    assert w.wake(1, K, 10) == 0 and len(w) == 0


async def test_only_requests_that_could_take_the_jobs_task_are_woken_oldest_first_across_buckets() -> None:
    w = Waiters()
    (picky,) = await _waiting(w, "p", min_price=100)  # asks more than the job pays
    (other,) = await _waiting(w, "o", kernels=frozenset({"nonce@1"}))  # does not run the kernel
    (a,) = await _waiting(w, "a", min_price=5)
    (b,) = await _waiting(w, "b")
    assert w.wake(1, K, 10) == 1
    assert (await a).hops == 2 and not b.done()  # a is older than b; the two could take it
    assert w.wake(10, K, 10) == 1 and (await b).hops == 1
    assert not picky.done() and not other.done() and len(w) == 2
    w.wake_all()
    assert await picky == await other == Wake()


async def test_a_published_kernels_work_wakes_the_requests_that_run_published_kernels() -> None:
    w = Waiters()
    (plain,) = await _waiting(w, "p")
    (published,) = await _waiting(w, "q", kernels=ANY | {PUBLISHED})
    assert w.wake(5, "ab" * 32 + "@0", 10) == 1
    assert (await published).kernel == "ab" * 32 + "@0" and not plain.done()
    w.wake_all()


async def test_wake_worker_wakes_only_that_workers_requests() -> None:
    w = Waiters()
    a, b, a2 = await _waiting(w, "aba")
    w.wake_worker("a")
    assert await a == await a2 == Wake()  # woken for themselves: nothing to pass on
    assert not b.done()
    w.wake_all()
    assert await b == Wake() and len(w) == 0


async def test_a_timeout_returns_an_empty_wake_and_leaves_no_trace() -> None:
    w = Waiters()
    (a,) = await _waiting(w, "a", timeout=0.01)
    assert await a == Wake() and len(w) == 0
    assert w.wake(1, K, 10) == 0


# ---- waiting reads of a job ------------------------------------------------------------------------------------------


def test_a_change_of_a_job_wakes_its_waiting_reads_and_no_others() -> None:
    async def go() -> None:
        w = JobWaiters(limit=10)
        a1 = asyncio.ensure_future(w.wait("a", 30))
        a2 = asyncio.ensure_future(w.wait("a", 30))
        b = asyncio.ensure_future(w.wait("b", 30))
        await asyncio.sleep(0)
        assert len(w) == 3
        w.changed({"a", "c"})
        await asyncio.gather(a1, a2)
        assert not b.done() and len(w) == 1
        w.wake_all()
        await b
        assert len(w) == 0 and not w._events and not w._counts

    asyncio.run(go())


def test_job_waiters_are_bounded_and_time_out() -> None:
    async def go() -> None:
        w = JobWaiters(limit=1)
        first = asyncio.ensure_future(w.wait("a", 30))
        await asyncio.sleep(0)
        assert w.full()
        w.changed({"a"})
        await first
        assert not w.full()
        await w.wait("a", 0)  # a zero wait ends at once, woken or not
        assert len(w) == 0

    asyncio.run(go())
