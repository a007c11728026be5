"""Group commit: the change sets of concurrent requests made durable by one fsync'd transaction, off the event loop.

A request decides on the event loop (the scheduler is synchronous and knows nothing of this), then awaits `durable()`
before it answers. The first such call starts a commit: `take` collects everything decided so far (the scheduler's
change set, as plain rows made while the scheduler stands still) and `write` puts it in one transaction in this
module's one thread, so the loop goes on deciding other requests during the fsync. Those await the next commit, which
starts as soon as this one is done, with everything decided meanwhile: under load each fsync carries the requests
that arrived during the one before. One commit at a time, in order: the ledger reaches the disk in the order it was
appended, and a request is answered only after the commit that holds its changes (so nothing acknowledged is lost to
kill -9, and a request killed before its commit was never answered).

If a write fails, memory is ahead of the disk: every waiting request and every later one fails, and `on_fatal`
stops the server so that a restart reloads the last commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from depin.errors import DepinError

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Commits in order, each carrying every change decided before it started."""

    def __init__(self, take: Callable[[], T], write: Callable[[T], None], done: Callable[[T], None],
                 on_fatal: Callable[[BaseException], None]) -> None:
        self._take = take  # on the loop: what to write (the scheduler's change set, as rows)
        self._write = write  # in the commit thread: one fsync'd transaction (or nothing, for an empty batch)
        self._done = done  # on the loop, once written: what becomes visible now (checkpoints, woken long polls)
        self._on_fatal = on_fatal
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="depin-commit")
        self._waiting: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None
        self.commits = 0  # transactions written (each one fsync), for tests and benchmarks

    def durable(self) -> asyncio.Future[None]:
        """Resolves once everything decided before this call is on disk."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self._failed is not None:
            fut.set_exception(DepinError(f"the database refused a write: {self._failed}"))
            return fut
        self._waiting.append(fut)
        if self._task is None:
            self._task = loop.create_task(self._run())
        return fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        group: list[asyncio.Future[None]] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                batch = self._take()
                if batch:
                    await loop.run_in_executor(self._pool, self._write, batch)
                    self.commits += 1
                self._done(batch)
                for fut in group:
                    if not fut.done():  # a request whose client hung up was cancelled meanwhile
                        fut.set_result(None)
                group = []
        except asyncio.CancelledError:
            for fut in group + self._waiting:
                fut.cancel()
            raise
        except BaseException as exc:
            self._failed = exc
            self._on_fatal(exc)
            failure = DepinError(f"the database refused a write: {exc}")
            for fut in group + self._waiting:
                if not fut.done():
                    fut.set_exception(failure)
            self._waiting = []
        finally:
            self._task = None

    async def close(self) -> None:
        """Let the commit under way finish (its requests are answered), then stop the thread."""
        if self._task is not None:
            await asyncio.wait({self._task})
        self._pool.shutdown(wait=True)
