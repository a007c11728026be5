"""The tasks of one unfinished job that may have a slot to lease: what a lease walk visits, instead of every task.

A task is *open* while it is `pending` with `wanted` or `backups` above 0, or `validated` with an open audit. The
scheduler adds a task whenever it may have become open (at submission, when `wanted` is recomputed, when an audit
opens); a walk drops the tasks it finds closed (lazily: closing a task needs no bookkeeping). Adding and dropping
are O(1) (a list with the position of each task; a dropped task's place is taken by the last one), so a walk over
a job of a million tasks of which a hundred are open visits a hundred. The walk starts at a position drawn by the
caller: which tasks a worker gets stays the coordinator's draw (PROTOCOL.md 12.1). After the tasks under way it
makes new ones (coordinator.fresh), one at a time while they are taken, so started tasks are finished first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from coordinator import states
from coordinator.model import Task


def is_open(task: Task) -> bool:
    """Whether the task may have a slot to lease (a replica, a backup or an audit)."""
    if task.state == "pending":
        return task.wanted > 0 or task.backups > 0
    return task.state == "validated" and task.audit in states.OPEN_AUDIT


class OpenSlots:
    """The open tasks of one job, in no particular order."""

    def __init__(self) -> None:
        self._tasks: list[Task] = []
        self._at: dict[str, int] = {}  # task id -> its position in _tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, task: Task) -> None:
        """Note a task that may be open (a no-op if it is already here)."""
        if task.task_id not in self._at:
            self._at[task.task_id] = len(self._tasks)
            self._tasks.append(task)

    def discard(self, task: Task) -> None:
        i = self._at.pop(task.task_id, None)
        if i is None:
            return
        last = self._tasks.pop()
        if i < len(self._tasks):
            self._tasks[i] = last
            self._at[last.task_id] = i

    def walk(self, pick: Callable[[int], int], untouched: int = 0,
             fresh: Callable[[], Task] | None = None) -> Iterator[Task]:
        """Every open task once, from a position `pick(n)` on and around (n: the tasks listed); closed ones met on
        the way are dropped (after the walk, so that the walk's own positions hold). Tasks added during the walk are
        not visited. Then, up to `untouched` times, `fresh()` (which makes the job's next task and adds it here),
        but only while the task made before was taken (leased): a walk finishes started tasks before it begins new
        ones, and never makes a task nobody takes."""
        listed = len(self._tasks)
        closed: list[Task] = []
        try:
            if listed:  # tasks under way first, so that a started task is finished before new ones begin
                start = pick(listed)
                for k in range(listed):
                    task = self._tasks[(start + k) % listed]
                    if is_open(task):
                        yield task
                    else:
                        closed.append(task)
            made: Task | None = None
            for _ in range(untouched if fresh is not None else 0):
                if made is not None and not made.leases:
                    break  # the last task made was not taken: make no more
                assert fresh is not None
                made = fresh()
                yield made
        finally:
            for task in closed:
                if not is_open(task):
                    self.discard(task)
