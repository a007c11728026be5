"""Splitting a range of `total` items into contiguous tasks: the split rule of montecarlo@1 and nonce@1."""

from __future__ import annotations

from depin.errors import UserError
from depin.protocol import MAX_TASKS  # a submit's `tasks` is at most this on the wire (PROTOCOL.md 7.5)


def check_split(total: int, n_tasks: int, max_task: int, what: str, noun: str) -> None:
    """Whether `total` items split into `n_tasks` ranges (nth_range) of at most `max_task` items; a UserError says why
    not.

    `what` names `total` in the message ("the number of samples"); `noun` names the items ("samples").
    """
    limit, why = (total, what) if total <= MAX_TASKS else (MAX_TASKS, "the most tasks a job may have")
    if not 1 <= n_tasks <= limit:
        raise UserError(f"--tasks must be between 1 and {limit} ({why})")
    # The sizes are floor(total/n) or ceil(total/n), so the largest is ceil(total/n), and it fits iff
    # n >= ceil(total/max_task): that K is the exact advice, checked before any list is built.
    biggest = -(-total // n_tasks)
    if biggest > max_task:
        need = -(-total // max_task)
        raise UserError(f"a task of {biggest} {noun} exceeds {max_task}; use --tasks {need} or more")


def nth_range(total: int, n_tasks: int, i: int) -> tuple[int, int]:
    """Task i's range [i*total//n, (i+1)*total//n), as even as integer division makes them (check_split says
    whether the split is allowed)."""
    return i * total // n_tasks, (i + 1) * total // n_tasks
