"""How many tasks to ask for, how many of a grant to keep, and whether to lease ahead: the adaptive batch.

The reference worker (PROTOCOL.md 10.2) sizes its lease requests to about `target_s` (100 ms) of work. It times
every task it computes (wall time in the computing thread: the kernel, and the packaging of its result) and keeps,
per kernel, an exponentially weighted mean of seconds per unit of the task's declared work (`Kernel.work`: pixel
iterations, samples, nonces), so a job of tasks a thousand times bigger is not asked for in the numbers its
predecessor's tiny tasks were. A request asks for `target_s` over the estimate of the last task computed, within
[1, `cap`]; a kernel never timed is asked for one task at a time. An explicit `--batch N` (`fixed`) asks for N,
always, and keeps what it is granted, as the worker always did.

What the estimate says about a grant decides two more things, both about leases not expiring in hand:
* `keep`: an adaptive worker keeps the first tasks of a grant that fit in `hold_s` of estimated work (at least one,
  and up to the first task of a kernel never timed) and gives the rest back at once;
* `ahead`: the worker leases its next batch while it computes this one only when this one's work is known and
  estimated at most `hold_s`, so the batch leased ahead waits at most that long before it starts.

Pure: the daemon feeds it measured times and asks; no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from depin.protocol import MAX_BATCH

TARGET_S = 0.1  # work per lease request: enough to share the round trip, little enough to share the tasks
HOLD_S = 1.0  # the most estimated work a worker keeps in hand beyond the task it computes (capped by lease_timeout/4)
WEIGHT = 0.3  # of the newest measurement in the running estimate


@dataclass(frozen=True)
class Task:
    """What the estimate needs of a task: its kernel (`name@version`) and its declared work."""

    kernel: str
    work: int


@dataclass
class Pace:
    """Measured speed per kernel, and the batch sizes that follow from it."""

    fixed: int | None = None  # --batch N: always ask for N and keep all of it
    target_s: float = TARGET_S
    hold_s: float = HOLD_S
    cap: int = MAX_BATCH
    weight: float = WEIGHT
    _rate: dict[str, float] = field(default_factory=dict)  # kernel -> seconds per unit of declared work
    _last: Task | None = None  # the task whose size the next request is sized on

    def __post_init__(self) -> None:
        if self.fixed is not None and not 1 <= self.fixed <= self.cap:
            raise ValueError(f"a fixed batch must be 1..{self.cap}")
        if not (self.target_s > 0 and self.hold_s > 0 and 0 < self.weight <= 1):
            raise ValueError("target_s and hold_s must be positive, weight in (0, 1]")

    def note(self, task: Task, seconds: float) -> None:
        """Fold the measured time of one computed task (or of several of one kernel: their summed work) in."""
        rate = max(0.0, seconds) / max(1, task.work)
        old = self._rate.get(task.kernel)
        self._rate[task.kernel] = rate if old is None else old + self.weight * (rate - old)
        self._last = task

    def estimate(self, task: Task) -> float | None:
        """Estimated seconds to compute `task`; None for a kernel never timed."""
        rate = self._rate.get(task.kernel)
        return None if rate is None else rate * max(1, task.work)

    def ask(self) -> int:
        """`max_tasks` of the next lease request."""
        if self.fixed is not None:
            return self.fixed
        one = None if self._last is None else self.estimate(self._last)
        if one is None:
            return 1
        if one <= 0:
            return self.cap
        return max(1, min(self.cap, int(self.target_s / one)))

    def keep(self, tasks: Sequence[Task], hold_s: float | None = None) -> int:
        """How many of a grant's tasks, in order, to compute; the rest are given back at once."""
        if self.fixed is not None or not tasks:
            return len(tasks)
        bound = self._hold(hold_s)
        total = 0.0
        for n, task in enumerate(tasks):
            one = self.estimate(task)
            if one is None:
                return n + 1  # a kernel never timed: this one measures it
            total += one
            if total > bound:
                return max(1, n)
        return len(tasks)

    def ahead(self, tasks: Sequence[Task], hold_s: float | None = None) -> bool:
        """Whether to lease the next batch while computing `tasks`: their work is known and short."""
        total = 0.0
        for task in tasks:
            one = self.estimate(task)
            if one is None:
                return False
            total += one
        return total <= self._hold(hold_s)

    def _hold(self, hold_s: float | None) -> float:
        return self.hold_s if hold_s is None else min(self.hold_s, hold_s)
