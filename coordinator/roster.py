"""Who could be drawn for a slot: an index of the workers that asked for work lately, so that a draw among present
workers (PROTOCOL.md 12.1, "Presence" and "Drawn slots") costs O(1) expected time at any fleet size. Pure.

A scheduler that scanned every registered worker per draw spent 57% of its loop in that scan at 2,000 idle
workers (benchmarks/RESULTS.md, section 9). Here a worker is filed, from its first lease request on, in a *bag*
keyed by what decides most of the draw and changes rarely: a kernel it asked for, its `min_price`, and whether it
is past probation. A draw for a job of kernel K at price P looks only at the bags of K with min_price <= P, of the
tier it wants (past probation or not), and draws uniformly among their members by rejection: a member drawn
uniformly from the bags is taken if the caller's test (present now, room, eligible, trusted...) accepts it, else
another is drawn, up to `tries` times; then the bags are scanned in full and one accepted member is drawn. Each
branch is uniform over the accepted members, so the draw is exactly uniform. Small bags (at most `scan_max`
members together) are always scanned, in the order the workers first asked for work (what tests steer).

The roster is a superset of the present workers: a worker leaves it only when it was last seen before the presence
horizon (pruned oldest first), and the caller's test checks presence exactly. Bags are never trusted blindly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator

from coordinator.model import Worker

Accept = Callable[[str], bool]
BagKey = tuple[str, int, bool]  # (kernel name@version, min_price, past probation)


class Bag:
    """A set with O(1) add, discard and indexing (for uniform draws)."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}

    def add(self, worker_id: str) -> None:
        if worker_id not in self._pos:
            self._pos[worker_id] = len(self._ids)
            self._ids.append(worker_id)

    def discard(self, worker_id: str) -> None:
        i = self._pos.pop(worker_id, None)
        if i is None:
            return
        last = self._ids.pop()
        if last != worker_id:
            self._ids[i] = last
            self._pos[last] = i

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, i: int) -> str:
        return self._ids[i]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)


class Roster:
    """Workers that asked for work, filed by (kernel, min_price, past probation), oldest-seen first for pruning."""

    def __init__(self, *, tries: int = 16, scan_max: int = 64) -> None:
        self.tries = tries  # rejection draws before a full scan
        self.scan_max = scan_max  # bags this small together are scanned at once
        self._seen: OrderedDict[str, int] = OrderedDict()  # worker id -> last seen, least recently seen first
        self._filed: dict[str, tuple[BagKey, ...]] = {}
        self._order: dict[str, int] = {}  # worker id -> when it was first filed (a counter, kept): scan order
        self._next = 0
        self._bags: dict[str, dict[tuple[int, bool], Bag]] = {}  # kernel -> (min_price, past probation) -> bag
        self.version = 0  # moves whenever a bag is made or dropped, so a caller may keep `bags` answers meanwhile

    def __contains__(self, worker_id: str) -> bool:
        return worker_id in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def note(self, w: Worker, *, seasoned: bool) -> None:
        """File (or refile) a worker that asked for work, as it is now, and mark it seen at w.last_seen_ms."""
        keys = tuple((k, w.min_price, seasoned) for k in sorted(w.kernels))
        if self._filed.get(w.worker_id) != keys:
            self._unfile(w.worker_id)
            for kernel, price, past in keys:
                by_key = self._bags.setdefault(kernel, {})
                if (price, past) not in by_key:
                    by_key[(price, past)] = Bag()
                    self.version += 1
                by_key[(price, past)].add(w.worker_id)
            self._filed[w.worker_id] = keys
        if w.worker_id not in self._order:
            self._order[w.worker_id] = self._next
            self._next += 1
        self.seen(w.worker_id, w.last_seen_ms)

    def seen(self, worker_id: str, when_ms: int) -> None:
        """A filed worker was seen (a lease or results request): it stays present for another presence_ms."""
        if worker_id in self._filed:
            self._seen[worker_id] = max(when_ms, self._seen.get(worker_id, when_ms))
            self._seen.move_to_end(worker_id)

    def prune(self, horizon_ms: int) -> None:
        """Forget the workers last seen before `horizon_ms`, oldest first (stopping at the first one seen since)."""
        while self._seen:
            worker_id, when = next(iter(self._seen.items()))
            if when >= horizon_ms:
                break
            self._seen.popitem(last=False)
            self._unfile(worker_id)

    def _unfile(self, worker_id: str) -> None:
        for kernel, price, past in self._filed.pop(worker_id, ()):
            by_key = self._bags[kernel]
            bag = by_key[(price, past)]
            bag.discard(worker_id)
            if not bag:
                del by_key[(price, past)]
                self.version += 1
                if not by_key:
                    del self._bags[kernel]

    def bags(self, kernel: str, price: int, *, seasoned: bool | None) -> list[Bag]:
        """The bags of workers that asked for `kernel` at most `price`: past probation (True), on probation (False)
        or both (None)."""
        return [bag for (min_price, past), bag in self._bags.get(kernel, {}).items()
                if min_price <= price and (seasoned is None or past == seasoned)]

    def draw(self, bags: list[Bag], accept: Accept, pick: Callable[[int], int]) -> str | None:
        """A member of `bags` that `accept` takes, uniformly (pick(n) is an integer in [0, n)); None if none is."""
        total = sum(len(b) for b in bags)
        if total == 0:
            return None
        if total > self.scan_max:
            for _ in range(self.tries):
                i = pick(total)
                for bag in bags:
                    if i < len(bag):
                        if accept(bag[i]):
                            return bag[i]
                        break
                    i -= len(bag)
        pool = self._scan(bags, accept)
        return pool[pick(len(pool))] if pool else None

    def find(self, bags: list[Bag], accept: Accept) -> bool:
        """Whether `accept` takes any member of `bags` (a scan that stops at the first)."""
        return any(accept(w) for bag in bags for w in bag)

    def _scan(self, bags: list[Bag], accept: Accept) -> list[str]:
        members = sorted((w for bag in bags for w in bag), key=self._order.__getitem__)  # however bags are split
        return [w for w in members if accept(w)]
