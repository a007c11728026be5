"""coordinator.speed.SpeedBook: too fast means faster than other workers on the same work, never than a bound."""

from __future__ import annotations

from coordinator import speed
from coordinator.speed import SpeedBook

K = "mandelbrot@1"


def _book(floor_ms: int = 0) -> SpeedBook:
    return SpeedBook(fast_factor=8.0, samples=3, floor_ms=floor_ms)


def test_nothing_is_too_fast_before_other_workers_measured_the_same_work() -> None:
    book = _book()
    assert not book.too_fast(K, 100, "w", 1)
    book.record(K, 100, "a", 800)
    book.record(K, 100, "a", 900)
    assert not book.too_fast(K, 100, "w", 1)  # two samples: fewer than `samples`
    book.record(K, 100, "b", 1000)
    assert book.too_fast(K, 100, "w", 99)  # 99 x 8 < 800, the fastest of the others
    assert not book.too_fast(K, 100, "w", 100)


def test_a_workers_own_times_are_not_its_reference() -> None:
    book = _book()
    for _ in range(5):
        book.record(K, 100, "w", 800)
    assert book.reference(K, 100, "w") is None
    assert not book.too_fast(K, 100, "w", 1)
    assert book.reference(K, 100, "x") == 800


def test_only_the_same_work_is_compared() -> None:
    book = _book()
    for w in "abc":
        book.record(K, 100, w, 800)
    assert book.too_fast(K, 100, "w", 10)
    assert not book.too_fast(K, 101, "w", 10)  # other work: no reference at all
    assert not book.too_fast("other@1", 100, "w", 10)


def test_a_decoy_whose_bound_is_huge_but_whose_work_is_tiny_flags_nobody() -> None:
    # Every worker finishes the decoy's tasks at once: measured against each other, nobody is fast.
    book = _book()
    for w in "abcd":
        book.record(K, 10**12, w, 2)
    assert not any(book.too_fast(K, 10**12, w, 1) for w in "abcde")


def test_the_fastest_time_per_worker_is_kept_and_typical_is_the_fastest_of_all() -> None:
    book = _book()
    book.record(K, 5, "a", 300)
    book.record(K, 5, "a", 200)
    book.record(K, 5, "a", 400)
    for _ in range(3):
        book.record(K, 5, "b", 250)
    assert book.typical(K, 5) == 200 and book.typical(K, 6) is None
    assert book.reference(K, 5, "b") == 200 and book.reference(K, 5, "a") == 250


def test_groups_and_workers_per_group_are_bounded() -> None:
    book = _book()
    for i in range(speed.MAX_GROUPS + 10):
        book.record(K, i, "a", 10)
    assert book.typical(K, 0) is None and book.typical(K, speed.MAX_GROUPS + 9) == 10
    for i in range(speed.MAX_WORKERS_PER_GROUP + 5):
        book.record(K, -1, f"w{i}", 100 + i)
    assert book.typical(K, -1) == 100  # the slowest were forgotten, the fastest kept


def test_times_below_the_floor_are_round_trips_not_computation() -> None:
    book = _book(floor_ms=1_000)
    for w in "abc":
        book.record(K, 100, w, 999)
    assert not book.too_fast(K, 100, "w", 1)  # the others took under a second: nothing to judge by
    book.record(K, 200, "a", 8_000)
    for w in "bc":
        book.record(K, 200, w, 9_000)
    assert book.too_fast(K, 200, "w", 999) and not book.too_fast(K, 200, "w", 1_000)
