"""The open tasks of a job (coordinator.open_slots): what a lease walk visits."""

from __future__ import annotations

from coordinator.model import Task
from coordinator.open_slots import OpenSlots, is_open
from tests.coordinator.sched_support import PARAMS, lease, new_scheduler, submit


def _task(i: int, *, wanted: int = 1, state: str = "pending", audit: str | None = None) -> Task:
    return Task(task_id=f"t{i}", job_id="j", index=i, params={}, payload=b"", sig=b"", quorum=2, state=state,
                audit=audit, wanted=wanted)


def test_a_task_is_open_while_it_wants_a_lease_or_a_backup_or_its_audit_is_open() -> None:
    assert is_open(_task(0)) and not is_open(_task(0, wanted=0))
    backup = _task(0, wanted=0)
    backup.backups = 1
    assert is_open(backup)
    assert is_open(_task(0, wanted=0, state="validated", audit="due"))
    assert is_open(_task(0, wanted=0, state="validated", audit="disputed"))
    assert not is_open(_task(0, wanted=0, state="validated", audit="passed"))
    assert not is_open(_task(0, state="cancelled"))


def test_the_walk_starts_at_the_drawn_position_goes_around_and_drops_closed_tasks_afterwards() -> None:
    slots = OpenSlots()
    tasks = [_task(i) for i in range(5)]
    for t in tasks:
        slots.add(t)
    slots.add(tasks[0])  # adding twice is a no-op
    assert len(slots) == 5
    tasks[1].wanted = 0
    asked: list[int] = []
    seen = [t.index for t in slots.walk(lambda n: asked.append(n) or 3)]
    assert asked == [5] and seen == [3, 4, 0, 2]  # from position 3, around, the closed task 1 not yielded
    assert len(slots) == 4  # and dropped once the walk was over
    assert [t.index for t in slots.walk(lambda n: 0)] == [0, 4, 2, 3]  # the last one took task 1's place


def test_a_task_added_during_a_walk_is_not_visited_by_it_and_a_reopened_task_is_kept() -> None:
    slots = OpenSlots()
    a, b, c = _task(0), _task(1), _task(2)
    slots.add(a)
    slots.add(b)
    seen = []
    for t in slots.walk(lambda n: 0):
        seen.append(t.index)
        slots.add(c)
        b.wanted = 0 if t is a else b.wanted
    assert seen == [0]  # b closed before the walk reached it; c came during the walk
    b.wanted = 1  # it was dropped: the scheduler adds it again when it reopens
    slots.add(b)
    assert sorted(t.index for t in slots.walk(lambda n: 0)) == [0, 1, 2]


def test_a_lease_walk_visits_only_the_open_tasks_of_a_job() -> None:
    asked: list[int] = []
    s = new_scheduler(pick=lambda n: asked.append(n) or 0)
    submit(s, tasks=100, replicas=1, quorum=1, params={**PARAMS, "height": 100})
    assert len(lease(s, "A", now=0, max_tasks=90)) == 90
    assert asked == []  # nothing started yet: A's walk only made (and took) 90 new tasks, no draw needed
    assert len(lease(s, "B", now=1, max_tasks=100)) == 10
    assert asked == [90]  # B's walk visited the 90 started ones, dropping them (fully leased), then made 10...
    assert lease(s, "C", now=2, max_tasks=100) == []
    assert asked == [90, 10]  # ...C's walk visits only the 10 B took (and drops them)...
    assert lease(s, "D", now=3, max_tasks=100) == []
    assert asked == [90, 10]  # ...and D's has no task to visit: no draw is even made
