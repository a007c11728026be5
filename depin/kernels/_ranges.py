"""Splitting a range of `total` items into contiguous tasks: the split rule of montecarlo@1 and nonce@1."""

from __future__ import annotations

from depin.errors import UserError
from depin.protocol import MAX_TASKS  # a submit's `tasks` is at most this on the wire (PROTOCOL.md 7.5)


def split_range(total: int, n_tasks: int, max_task: int, what: str, noun: str) -> list[tuple[int, int]]:
    """Task i of n gets [i*total//n, (i+1)*total//n), each at most `max_task` items, or a UserError saying why not.

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
    return [(i * total // n_tasks, (i + 1) * total // n_tasks) for i in range(n_tasks)]
