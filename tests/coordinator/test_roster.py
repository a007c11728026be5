"""coordinator.roster: the index of workers that asked for work, and uniform draws from it at any fleet size."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from coordinator.model import Worker
from coordinator.roster import Bag, Roster
from tests.coordinator.sched_support import PRICE, submit
from tests.coordinator.test_scheduler_attacks import ask, real, task, wid

K = "mandelbrot@1"


def worker(name: str, *, seen: int = 0, min_price: int = 0, kernels: tuple[str, ...] = (K,)) -> Worker:
    return Worker(worker_id=name, public_key=b"", first_seen_ms=0, last_seen_ms=seen, min_price=min_price,
                  kernels=frozenset(kernels), last_lease_ms=seen)


def test_a_bag_adds_discards_and_indexes_in_constant_time() -> None:
    bag = Bag()
    for w in "abcd":
        bag.add(w)
    bag.add("a")
    bag.discard("b")
    bag.discard("zz")
    assert sorted(bag) == ["a", "c", "d"] and len(bag) == 3
    assert sorted(bag[i] for i in range(len(bag))) == ["a", "c", "d"]


def test_workers_are_filed_by_kernel_min_price_and_probation_and_refiled_when_these_change() -> None:
    r = Roster()
    r.note(worker("cheap"), seasoned=True)
    r.note(worker("dear", min_price=PRICE + 1), seasoned=True)
    r.note(worker("new"), seasoned=False)
    r.note(worker("other", kernels=("montecarlo@1",)), seasoned=True)

    def members(price: int, seasoned: bool | None) -> list[str]:
        return sorted(w for bag in r.bags(K, price, seasoned=seasoned) for w in bag)

    assert members(PRICE, True) == ["cheap"] and members(PRICE, False) == ["new"]
    assert members(PRICE, None) == ["cheap", "new"] and members(PRICE + 1, True) == ["cheap", "dear"]
    r.note(worker("new"), seasoned=True)  # past probation now
    r.note(worker("dear", min_price=0), seasoned=True)  # asks less now
    assert members(PRICE, True) == ["cheap", "dear", "new"] and members(PRICE, False) == []


def test_pruning_forgets_only_workers_last_seen_before_the_horizon() -> None:
    r = Roster()
    for i, name in enumerate("abc"):
        r.note(worker(name, seen=i * 10), seasoned=True)
    r.seen("a", 100)  # a asked again: it moves to the back
    r.seen("unfiled", 100)  # a worker that never asked for work is not filed by being seen
    r.prune(15)
    assert "a" in r and "b" not in r and "c" in r and "unfiled" not in r and len(r) == 2
    assert sorted(w for bag in r.bags(K, PRICE, seasoned=None) for w in bag) == ["a", "c"]


def test_a_small_roster_is_scanned_in_the_order_workers_first_asked() -> None:
    r = Roster(scan_max=64)
    for name in "dcba":
        r.note(worker(name), seasoned=True)
    asked: list[int] = []

    def pick(n: int) -> int:
        asked.append(n)
        return 0

    assert r.draw(r.bags(K, PRICE, seasoned=True), lambda w: w != "d", pick) == "c" and asked == [3]


@pytest.mark.parametrize("accepted_share", [0.5, 0.002])
def test_a_large_roster_draws_uniformly_among_the_accepted_by_rejection_or_scan(accepted_share: float) -> None:
    # 1,000 present workers in three bags; the draw must be uniform over those accepted, whether rejection found one
    # (most accepted) or the scan did (few accepted). Counts from a seeded generator: deterministic, not flaky.
    r = Roster(scan_max=64, tries=16)
    names = [f"w{i:04d}" for i in range(1000)]
    for i, name in enumerate(names):
        r.note(worker(name, min_price=i % 3), seasoned=True)
    accepted = set(names[:: round(1 / accepted_share)])
    rng = random.Random(7)
    draws = 200 * len(accepted)
    counts = Counter(r.draw(r.bags(K, PRICE, seasoned=True), accepted.__contains__, rng.randrange)
                     for _ in range(draws))
    assert set(counts) == accepted
    expected = draws / len(accepted)
    assert all(abs(c - expected) < 5 * expected ** 0.5 for c in counts.values()), counts.most_common(3)


def test_a_draw_with_nobody_accepted_is_none() -> None:
    r = Roster(scan_max=4)
    for i in range(10):
        r.note(worker(f"w{i}"), seasoned=True)
    assert r.draw(r.bags(K, PRICE, seasoned=True), lambda w: False, random.Random(1).randrange) is None
    assert r.draw([], lambda w: True, random.Random(1).randrange) is None
    assert not r.find(r.bags(K, PRICE, seasoned=True), lambda w: False)


def _counting(s: Any, name: str) -> Counter[str]:
    calls: Counter[str] = Counter()
    original = getattr(s, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return original(*args, **kwargs)

    setattr(s, name, wrapper)
    return calls


def test_a_lease_looks_at_no_idle_worker_that_asks_more_than_the_job_pays() -> None:
    # 2,000 idle identities asking more than the job pays (the benchmark's idle fleet): a draw for a replica slot
    # must not visit them (it used to scan every registered worker: 57% of the coordinator at 2,000).
    s, _ = real()
    for i in range(2000):
        assert ask(s, f"idle{i}", 0, min_price=PRICE + 1) == []
    submit(s, now=0, tasks=1, replicas=2)
    assert len(ask(s, "A", 1, max_tasks=1)) == 1  # the first slot: no draw
    calls = _counting(s, "_could_serve")
    assert len(ask(s, "B", 2, max_tasks=1)) == 1  # the second: drawn among the two that could take it
    assert calls["_could_serve"] <= 4


def test_a_draw_among_many_present_workers_visits_a_bounded_number_of_them() -> None:
    # 2,000 identities on probation present and idle: the draw for a second slot goes to one of them, uniformly,
    # by rejection: a bounded number of visits, however many are present.
    s, dice = real()
    for i in range(2000):
        assert ask(s, f"fresh{i}", 0, max_tasks=0) == []
    submit(s, now=0, tasks=1, replicas=2)
    (first,) = ask(s, "A", 1, max_tasks=1)
    calls = _counting(s, "_could_serve")
    dice.picks = [1234]
    assert ask(s, "B", 2, max_tasks=1) == []  # the second slot is drawn, and not for B
    assert calls["_could_serve"] <= s.roster.tries + 2
    reserved = task(s, first).reserved
    assert reserved is not None and s.on_probation(reserved) and reserved not in (wid("A"), wid("B"))


def test_a_worker_pruned_while_it_computed_is_filed_again_by_its_results_request() -> None:
    # Presence counts results requests too: a worker that asked for work, then computed longer than presence_ms
    # and was pruned, is present again when it reports, and must be drawable before its next lease request.
    s, _ = real()
    assert ask(s, "A", 0, max_tasks=0) == []
    away = s.placement.presence_ms + 1
    s.roster.prune(away)
    assert wid("A") not in s.roster
    s.touch_worker(now=away, worker_id=wid("A"), public_key=b"")  # its results request
    assert wid("A") in s.roster
