"""coordinator.commits: requests decided together share one write; writes run one at a time, in order; a failed
write fails every waiting and later request and calls on_fatal. Deterministic: the test holds the write thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from coordinator.commits import GroupCommit
from depin.errors import DepinError


class Disk:
    """Stands in for the store: `take` hands out what was decided, `write` records it (and may be held or fail)."""

    def __init__(self) -> None:
        self.decided: list[int] = []
        self.written: list[list[int]] = []
        self.done: list[list[int]] = []
        self.permits: threading.Semaphore | None = None  # if set, each write waits for a permit
        self.entered = threading.Event()
        self.fail = False
        self.fatal: list[BaseException] = []

    def take(self) -> list[int]:
        batch, self.decided = self.decided, []
        return batch

    def write(self, batch: list[int]) -> None:
        self.entered.set()
        if self.permits is not None:
            assert self.permits.acquire(timeout=10)
        if self.fail:
            raise OSError("disk full")
        self.written.append(batch)

    def commit(self) -> GroupCommit[list[int]]:
        return GroupCommit(self.take, self.write, self.done.append, self.fatal.append)


def test_requests_decided_together_share_one_write() -> None:
    async def go() -> None:
        disk = Disk()
        commits = disk.commit()
        waits = []
        for n in range(3):
            disk.decided.append(n)
            waits.append(commits.durable())
        await asyncio.gather(*waits)
        assert disk.written == [[0, 1, 2]] and commits.commits == 1
        await commits.close()

    asyncio.run(go())


def test_what_is_decided_during_a_write_waits_for_the_next_one_in_order() -> None:
    async def go() -> None:
        disk = Disk()
        commits = disk.commit()
        disk.permits = threading.Semaphore(0)
        disk.decided.append(1)
        first = commits.durable()
        while not disk.entered.is_set():  # the first write is under way in its thread
            await asyncio.sleep(0.001)
        disk.decided += [2, 3]
        second, third = commits.durable(), commits.durable()
        await asyncio.sleep(0)
        assert not first.done() and not second.done()  # nothing is answered before its write is done
        disk.permits.release()
        await first
        assert disk.written == [[1]] and not second.done()  # the next write waits for its permit
        disk.permits.release()
        await asyncio.gather(second, third)
        assert disk.written == [[1], [2, 3]] and disk.done == [[1], [2, 3]]
        await commits.close()

    asyncio.run(go())


def test_an_empty_batch_costs_no_write() -> None:
    async def go() -> None:
        disk = Disk()
        commits = disk.commit()
        await commits.durable()
        assert disk.written == [] and commits.commits == 0 and disk.done == [[]]
        await commits.close()

    asyncio.run(go())


def test_a_failed_write_fails_its_requests_and_every_later_one() -> None:
    async def go() -> None:
        disk = Disk()
        disk.fail = True
        commits = disk.commit()
        disk.decided.append(1)
        with pytest.raises(DepinError, match="disk full"):
            await commits.durable()
        assert len(disk.fatal) == 1 and disk.done == []
        with pytest.raises(DepinError, match="refused a write"):
            await commits.durable()
        await commits.close()

    asyncio.run(go())
