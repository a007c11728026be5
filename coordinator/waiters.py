"""Waiting lease requests (long polls), woken just as many as there is new work for.

Waking every waiting request on every change costs a lease walk per waiting worker per change: with thousands of
idle workers every results request would re-run thousands of walks. Instead the scheduler counts the slots a change
made takeable (Scheduler.take_wakes) and this wakes that many requests, oldest first, plus the requests of workers a
slot was drawn for. A woken request that finds nothing it may take (the slot is not for it: it already holds the
task, or shares an address with a holder, or is not trusted) passes the wake on to the next oldest, at most once
around all the requests that were waiting, so a slot that some waiting worker can take is never left waiting for
the long polls to time out.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict


class Waiters:
    """The waiting lease requests, in arrival order."""

    def __init__(self) -> None:
        self._queue: OrderedDict[int, tuple[str, asyncio.Future[int]]] = OrderedDict()
        self._by_worker: dict[str, set[int]] = {}
        self._keys = itertools.count()

    def __len__(self) -> int:
        return len(self._queue)

    async def wait(self, worker_id: str, timeout: float) -> int:
        """Wait until woken or `timeout` seconds passed. Returns how many more requests the wake may still be passed
        on to if this one finds nothing (0 after a timeout, or when woken for this worker alone)."""
        key = next(self._keys)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue[key] = (worker_id, future)
        self._by_worker.setdefault(worker_id, set()).add(key)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return 0
        finally:
            self._forget(key, worker_id)

    def _forget(self, key: int, worker_id: str) -> None:
        self._queue.pop(key, None)
        keys = self._by_worker.get(worker_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_worker[worker_id]

    def wake(self, n: int, hops: int | None = None) -> int:
        """Wake the `n` oldest waiting requests; each may pass the wake on `hops` times (default: as many as are
        waiting now). Returns how many were woken."""
        if n <= 0 or not self._queue:
            return 0
        hops = len(self._queue) if hops is None else hops
        woken = 0
        while woken < n and self._queue:
            key, (worker_id, future) = self._queue.popitem(last=False)
            self._forget(key, worker_id)
            if not future.done():
                future.set_result(hops)
                woken += 1
        return woken

    def wake_worker(self, worker_id: str) -> None:
        """Wake every waiting request of this worker (a slot was drawn for it)."""
        for key in list(self._by_worker.get(worker_id, ())):
            _, future = self._queue[key]
            self._forget(key, worker_id)
            if not future.done():
                future.set_result(0)

    def wake_all(self) -> None:
        """Wake everyone (shutdown)."""
        self.wake(len(self._queue), 0)
