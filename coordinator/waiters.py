"""Waiting lease requests (long polls), woken just as many as there is new work for, and only those who could take it.

Waking every waiting request on every change costs a lease walk per waiting worker per change: with thousands of
idle workers every results request would re-run thousands of walks. Instead the scheduler counts, per job, the slots
a change made takeable (Scheduler.take_wakes), and this wakes that many requests among those that could take a task
of that job (the request lists the job's kernel and asks no more than the job's price), oldest first, plus the
requests of workers a slot was drawn for. A woken request that still finds nothing it may take (the slot is not for
it: it already holds the task, shares an address with a holder, or is not trusted) passes the wake on to the next
oldest such request, at most once around all of them, so a slot that some waiting worker can take is never left
waiting for the long polls to time out. Requests are kept in buckets of equal (kernels, min_price), so finding the
ones that could take a job's task costs the number of distinct buckets, not the number of requests.

`JobWaiters` holds the other kind of long poll, reads of one job waiting for it to change (PROTOCOL.md 7.7): one
event per job that has waiting reads, set by the commit that made a change of that job durable.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass

Bucket = tuple[frozenset[str], int]  # (kernels, min_price) of a lease request
PUBLISHED = "*@0"  # in a bucket's kernels: the request also runs published kernels (every `<id>@0`)


@dataclass(frozen=True)
class Wake:
    """Why a request was woken: for a task of a job of this kernel at this price, and how many more requests the
    wake may be passed on to if this one finds nothing (0: woken for this worker alone, or timed out)."""

    kernel: str = ""
    price: int = 0
    hops: int = 0


class Waiters:
    """The waiting lease requests, in arrival order within buckets."""

    def __init__(self) -> None:
        self._buckets: dict[Bucket, OrderedDict[int, tuple[str, asyncio.Future[Wake]]]] = {}
        self._where: dict[int, Bucket] = {}
        self._by_worker: dict[str, set[int]] = {}
        self._keys = itertools.count()

    def __len__(self) -> int:
        return len(self._where)

    async def wait(self, worker_id: str, kernels: frozenset[str], min_price: int, timeout: float) -> Wake:
        """Wait until woken or `timeout` seconds passed."""
        key = next(self._keys)
        bucket = (kernels, min_price)
        future: asyncio.Future[Wake] = asyncio.get_running_loop().create_future()
        self._buckets.setdefault(bucket, OrderedDict())[key] = (worker_id, future)
        self._where[key] = bucket
        self._by_worker.setdefault(worker_id, set()).add(key)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return Wake()
        finally:
            self._forget(key, worker_id)

    def _forget(self, key: int, worker_id: str) -> None:
        bucket = self._where.pop(key, None)
        if bucket is not None:
            queue = self._buckets[bucket]
            queue.pop(key, None)
            if not queue:
                del self._buckets[bucket]
        keys = self._by_worker.get(worker_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_worker[worker_id]

    def _matching(self, kernel: str, price: int) -> list[OrderedDict[int, tuple[str, asyncio.Future[Wake]]]]:
        published = kernel.endswith("@0")
        return [q for (kernels, min_price), q in self._buckets.items()
                if (kernel in kernels or (published and PUBLISHED in kernels)) and min_price <= price]

    def wake(self, n: int, kernel: str, price: int, hops: int | None = None) -> int:
        """Wake the `n` oldest requests that could take a task of a job of this kernel and price; each may pass the
        wake on `hops` times (default: as many as could take it now). Returns how many were woken."""
        if n <= 0:
            return 0
        queues = self._matching(kernel, price)
        if hops is None:
            hops = sum(len(q) for q in queues)
        heads = [(next(iter(q)), i) for i, q in enumerate(queues) if q]
        heapq.heapify(heads)
        woken = 0
        while woken < n and heads:
            key, i = heapq.heappop(heads)
            worker_id, future = queues[i][key]
            self._forget(key, worker_id)
            if queues[i]:
                heapq.heappush(heads, (next(iter(queues[i])), i))
            if not future.done():
                future.set_result(Wake(kernel, price, hops))
                woken += 1
        return woken

    def wake_worker(self, worker_id: str) -> None:
        """Wake every waiting request of this worker (a slot was drawn for it)."""
        for key in list(self._by_worker.get(worker_id, ())):
            _, future = self._buckets[self._where[key]][key]
            self._forget(key, worker_id)
            if not future.done():
                future.set_result(Wake())

    def wake_all(self) -> None:
        """Wake everyone (shutdown)."""
        for key in list(self._where):
            worker_id, future = self._buckets[self._where[key]][key]
            self._forget(key, worker_id)
            if not future.done():
                future.set_result(Wake())


class JobWaiters:
    """Waiting reads of a job's progress (GET /v1/jobs/{id}?wait_ms=..&since=..), one event per job with waiters: a
    change of a job wakes its waiters and no one else's, so a commit costs O(waiters of the jobs it changed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # at most this many wait at once; past it a read is answered at once (PROTOCOL.md 7)
        self._events: dict[str, asyncio.Event] = {}
        self._counts: dict[str, int] = {}
        self._total = 0

    def __len__(self) -> int:
        return self._total

    def full(self) -> bool:
        """Whether another read may not wait now."""
        return self._total >= self.limit

    async def wait(self, job_id: str, timeout: float) -> None:
        """Wait until the job changes (`changed`) or `timeout` seconds passed."""
        event = self._events.setdefault(job_id, asyncio.Event())
        self._counts[job_id] = self._counts.get(job_id, 0) + 1
        self._total += 1
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._total -= 1
            self._counts[job_id] -= 1
            if not self._counts[job_id]:
                del self._counts[job_id]
                if self._events.get(job_id) is event:
                    del self._events[job_id]

    def changed(self, job_ids: set[str] | frozenset[str]) -> None:
        """These jobs changed: wake whoever waits on them (later waits get a new event)."""
        for job_id in job_ids:
            event = self._events.pop(job_id, None)
            if event is not None:
                event.set()

    def wake_all(self) -> None:
        """Wake everyone (shutdown)."""
        self.changed(set(self._events))
