"""Speed checks that compare like with like: a result's time against other workers' times for the same work.

A result's time is what the coordinator measured, `received_ms - issued_ms` of its lease (queueing included, so
a time only ever overstates the computation). Results are grouped by *the same work*: the kernel version and the
kernel's declared work for the task (for mandelbrot@1, band size x max_iter), which every task of one job, and
every job with the same parameters, shares. For each such group the book keeps each worker's fastest time among
its results that were validated and not flagged. A result is **too fast** if it took less than 1/`fast_factor`
of the fastest time any *other* worker was measured at for the same work, once the others have at least
`samples` such times, and only where those times are long enough to be computation at all (the others' fastest
at least `floor_ms`: a task done in a few milliseconds is timed by round trips and queueing, and faster
than that proves nothing). The submitter's declared bound never enters the comparison: a job that declares a huge
bound but finishes at once makes every worker equally fast, and nobody is flagged. Pure; kept in memory only
(after a restart the reference is measured again, and until then nobody is flagged).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

MAX_GROUPS = 4096  # work groups remembered (least recently used first out)
MAX_WORKERS_PER_GROUP = 16  # the fastest workers kept per group


@dataclass
class _Group:
    fastest: dict[str, int] = field(default_factory=dict)  # worker -> its fastest validated time (ms)
    counts: dict[str, int] = field(default_factory=dict)  # worker -> its validated, unflagged results measured


class SpeedBook:
    """Measured times per (kernel, declared work), and the too-fast rule over them."""

    def __init__(self, fast_factor: float, samples: int, floor_ms: int = 1_000) -> None:
        self.fast_factor = fast_factor
        self.samples = samples
        self.floor_ms = floor_ms  # below this the times are round trips and queueing, not computation
        self._groups: OrderedDict[tuple[str, int], _Group] = OrderedDict()

    def reference(self, kernel: str, work: int, worker_id: str) -> int | None:
        """The fastest time other workers were measured at for this work, if they have enough samples."""
        group = self._groups.get((kernel, work))
        if group is None:
            return None
        others = [ms for w, ms in group.fastest.items() if w != worker_id]
        if not others or sum(n for w, n in group.counts.items() if w != worker_id) < self.samples:
            return None
        return min(others)

    def too_fast(self, kernel: str, work: int, worker_id: str, elapsed_ms: int) -> bool:
        """Whether `elapsed_ms` for this work is implausibly short next to the other workers' times."""
        ref = self.reference(kernel, work, worker_id)
        return ref is not None and ref >= self.floor_ms and max(1, elapsed_ms) * self.fast_factor < ref

    def typical(self, kernel: str, work: int) -> int | None:
        """The fastest time anyone was measured at for this work (None if never measured)."""
        group = self._groups.get((kernel, work))
        return None if group is None or not group.fastest else min(group.fastest.values())

    def record(self, kernel: str, work: int, worker_id: str, elapsed_ms: int) -> None:
        """A validated, unflagged result of `worker_id` took `elapsed_ms` for this work."""
        key = (kernel, work)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
            if len(self._groups) > MAX_GROUPS:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(key)
        elapsed_ms = max(1, elapsed_ms)
        group.counts[worker_id] = group.counts.get(worker_id, 0) + 1
        if elapsed_ms < group.fastest.get(worker_id, elapsed_ms + 1):
            group.fastest[worker_id] = elapsed_ms
        if len(group.fastest) > MAX_WORKERS_PER_GROUP:  # forget the slowest worker of the group
            slowest = max(group.fastest, key=group.fastest.__getitem__)
            del group.fastest[slowest], group.counts[slowest]
