"""coordinator.trust.TrustBook: earning trust, spot checks, speed anomalies, bans and outliers (pure, no scheduler)."""

from __future__ import annotations

import pytest

from coordinator.trust import TrustBook, TrustPolicy

K = "mandelbrot@1"
OTHER = "julia@1"


def _valid(book: TrustBook, worker: str, n: int = 1, *, kernel: str = K, cross_checked: bool = True,
           speed: float | None = None) -> None:
    for _ in range(n):
        book.judged_valid(worker, kernel, cross_checked=cross_checked, speed=speed)


def _invalid(book: TrustBook, worker: str, n: int = 1, *, kernel: str = K) -> list[str | None]:
    return [book.judged_invalid(worker, kernel)[1] for _ in range(n)]


# ---- earning trust ---------------------------------------------------------------------------------------------


def test_trust_after_n_consecutive_cross_checked_valid() -> None:
    book = TrustBook(TrustPolicy(trust_after=3))
    for n in range(1, 3):
        _valid(book, "w")
        assert not book.trusted("w", K), n
    _valid(book, "w")
    assert book.trusted("w", K)
    r = book.records[("w", K)]
    assert (r.consecutive_valid, r.valid, r.invalid) == (3, 3, 0)


def test_trust_is_per_kernel_and_per_worker() -> None:
    book = TrustBook(TrustPolicy(trust_after=2))
    _valid(book, "w", 2)
    assert book.trusted("w", K)
    assert not book.trusted("w", OTHER)
    assert not book.trusted("v", K)
    assert ("v", K) not in book.records  # asking creates nothing


def test_valid_results_that_were_not_cross_checked_build_no_trust() -> None:
    book = TrustBook(TrustPolicy(trust_after=3))
    _valid(book, "w", 10, cross_checked=False)
    r = book.records[("w", K)]
    assert (r.consecutive_valid, r.valid) == (0, 10)
    assert not book.trusted("w", K)
    # ...and they do not break a streak either.
    _valid(book, "w", 2)
    _valid(book, "w", cross_checked=False)
    _valid(book, "w")
    assert book.records[("w", K)].consecutive_valid == 3 and book.trusted("w", K)


def test_an_invalid_result_resets_the_streak() -> None:
    book = TrustBook(TrustPolicy(trust_after=3, ban_min_invalid=100))
    _valid(book, "w", 5)
    assert book.trusted("w", K)
    _invalid(book, "w")
    r = book.records[("w", K)]
    assert (r.consecutive_valid, r.valid, r.invalid) == (0, 5, 1)
    assert not book.trusted("w", K)
    _valid(book, "w", 2)
    assert not book.trusted("w", K)
    _valid(book, "w")
    assert book.trusted("w", K)


def test_an_invalid_result_on_another_kernel_keeps_this_kernels_streak() -> None:
    book = TrustBook(TrustPolicy(trust_after=3, ban_min_invalid=100))
    _valid(book, "w", 3)
    _invalid(book, "w", kernel=OTHER)
    assert book.trusted("w", K) and book.records[("w", K)].consecutive_valid == 3


# ---- spot checks -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("streak", "probability"), [(0, 1.0), (1, 1.0), (2, 0.5), (4, 0.25), (10, 0.1),
                                                     (20, 0.05), (21, 0.05), (1000, 0.05)])
def test_spot_check_probability_is_max_of_floor_and_one_over_streak(streak: int, probability: float) -> None:
    book = TrustBook(TrustPolicy(spot_floor=0.05))
    _valid(book, "w", streak)
    assert book.spot_check_probability("w", K) == pytest.approx(probability)


def test_spot_check_probability_of_a_stranger_is_one() -> None:
    assert TrustBook().spot_check_probability("nobody", K) == 1.0


def test_spot_check_floor_comes_from_the_policy() -> None:
    book = TrustBook(TrustPolicy(spot_floor=0.3))
    _valid(book, "w", 10)
    assert book.spot_check_probability("w", K) == pytest.approx(0.3)


# ---- speed -----------------------------------------------------------------------------------------------------


def test_too_fast_without_any_history_is_never_flagged() -> None:
    book = TrustBook(TrustPolicy(speed_samples=3, fast_factor=8.0))
    assert not book.too_fast("w", K, 1e12)
    _valid(book, "v", 2, speed=10.0)  # two samples: still below speed_samples
    assert not book.too_fast("w", K, 1e12)


def test_too_fast_against_the_population_while_own_history_is_short() -> None:
    book = TrustBook(TrustPolicy(speed_samples=3, fast_factor=8.0))
    _valid(book, "v", 2, speed=5.0)
    _valid(book, "u", 1, speed=10.0)  # three samples in all; the fastest is 10
    assert not book.too_fast("w", K, 80.0)
    assert book.too_fast("w", K, 80.5)
    _valid(book, "w", 2, speed=1.0)  # w's own two samples are not enough to judge it by
    assert book.too_fast("w", K, 80.5)
    assert not book.too_fast("w", K, 79.0)


def test_too_fast_against_own_history_once_it_has_enough_samples() -> None:
    book = TrustBook(TrustPolicy(speed_samples=3, fast_factor=8.0))
    _valid(book, "v", 5, speed=10.0)
    _valid(book, "w", 3, speed=100.0)  # a genuinely fast machine
    assert not book.too_fast("w", K, 800.0)  # the population would flag this, its own history does not
    assert book.too_fast("w", K, 801.0)
    assert book.too_fast("x", K, 801.0)  # a newcomer is measured against the fastest seen: w
    assert not book.too_fast("x", K, 799.0)


def test_too_fast_only_counts_samples_of_the_same_kernel() -> None:
    book = TrustBook(TrustPolicy(speed_samples=3, fast_factor=8.0))
    _valid(book, "v", 5, kernel=OTHER, speed=1.0)
    assert not book.too_fast("w", K, 1e9)
    assert book.too_fast("w", OTHER, 9.0)


def test_valid_results_without_a_speed_add_no_sample() -> None:
    book = TrustBook(TrustPolicy(speed_samples=3))
    _valid(book, "v", 2, speed=10.0)
    _valid(book, "v", 5, speed=None)  # too-fast results are judged without a speed
    r = book.records[("v", K)]
    assert (r.samples, r.max_speed, r.valid) == (2, 10.0, 7)
    assert not book.too_fast("w", K, 1e9)


def test_a_too_fast_result_is_counted_and_suspends_that_kernels_trust() -> None:
    book = TrustBook(TrustPolicy(trust_after=3))
    _valid(book, "w", 5)
    _valid(book, "w", 5, kernel=OTHER)
    record = book.note_fast("w", K)
    assert record is book.records[("w", K)]
    assert (record.consecutive_valid, record.valid, record.invalid) == (0, 5, 0)  # earned again, not held against
    assert not book.trusted("w", K) and book.trusted("w", OTHER)
    book.note_fast("w", K)
    assert book.standing["w"].too_fast == 2 and book.banned("w") is None


# ---- bans ------------------------------------------------------------------------------------------------------


def test_ban_after_ban_min_invalid_results() -> None:
    book = TrustBook(TrustPolicy(ban_min_invalid=3, ban_ratio=0.2))
    assert _invalid(book, "w", 2) == [None, None]
    assert book.banned("w") is None
    assert _invalid(book, "w") == ["3 invalid results out of 3"]
    assert book.banned("w") == "3 invalid results out of 3"
    # The ban is reported once; later invalid results do not ban again or change the reason.
    assert _invalid(book, "w") == [None]
    assert book.banned("w") == "3 invalid results out of 3"


def test_an_honest_worker_with_many_valid_and_a_few_invalid_is_not_banned() -> None:
    book = TrustBook(TrustPolicy(ban_min_invalid=3, ban_ratio=0.2))
    _valid(book, "w", 100)
    assert _invalid(book, "w", 5) == [None] * 5
    assert book.banned("w") is None


@pytest.mark.parametrize(("valid", "banned"), [(0, True), (11, True), (12, False), (20, False)])
def test_ban_ratio_is_strictly_more_than_the_share(valid: int, banned: bool) -> None:
    # 3 invalid: banned iff 3 > 0.2 * (valid + 3), i.e. valid < 12 (at 12 the share is exactly 20%).
    book = TrustBook(TrustPolicy(ban_min_invalid=3, ban_ratio=0.2))
    _valid(book, "w", valid)
    _invalid(book, "w", 3)
    assert (book.banned("w") is not None) is banned


def test_ban_counts_results_over_all_kernels() -> None:
    book = TrustBook(TrustPolicy(ban_min_invalid=3, ban_ratio=0.2))
    _invalid(book, "w", 2)
    assert _invalid(book, "w", kernel=OTHER) == ["3 invalid results out of 3"]
    honest = TrustBook(TrustPolicy(ban_min_invalid=3, ban_ratio=0.2))
    _valid(honest, "w", 20, kernel=OTHER)
    assert _invalid(honest, "w", 3) == [None] * 3  # 3 of 23 across kernels


def test_a_banned_worker_is_not_trusted_for_any_kernel() -> None:
    book = TrustBook(TrustPolicy(trust_after=3, ban_min_invalid=3, ban_ratio=0.2))
    _valid(book, "w", 3)
    assert book.trusted("w", K)
    assert _invalid(book, "w", 3, kernel=OTHER)[-1] == "3 invalid results out of 6"
    assert book.records[("w", K)].consecutive_valid == 3  # the record itself is untouched
    assert not book.trusted("w", K)


# ---- outliers --------------------------------------------------------------------------------------------------


def test_outlier_is_far_above_the_median_not_the_mean() -> None:
    # Bans off, so only the disagreement rate matters.
    book = TrustBook(TrustPolicy(ban_min_invalid=1000, outlier_min_judged=5, outlier_floor=0.2, outlier_factor=3.0))
    for w in ("a", "b", "c"):
        _valid(book, w, 9)
        _invalid(book, w, 1)  # 10% each
    _valid(book, "d", 6)
    _invalid(book, "d", 4)  # 40%: above 3 x median (30%), though below 3 x mean (52.5%)
    assert [book.standing_of(w).outlier for w in "abcd"] == [False, False, False, True]


def test_outlier_bar_never_falls_below_the_floor() -> None:
    book = TrustBook(TrustPolicy(ban_min_invalid=1000, outlier_min_judged=5, outlier_floor=0.2))
    for w in ("a", "b", "c"):
        _valid(book, w, 10)  # median 0
    _valid(book, "d", 8)
    _invalid(book, "d", 2)  # exactly the floor: not an outlier
    assert not book.standing_of("d").outlier
    _invalid(book, "d")
    assert book.standing_of("d").outlier


def test_workers_with_few_judged_results_are_not_rated() -> None:
    book = TrustBook(TrustPolicy(ban_min_invalid=1000, outlier_min_judged=5))
    for w in ("a", "b", "c"):
        _valid(book, w, 10)
    _valid(book, "d", 2)
    _invalid(book, "d", 2)  # 50%, but only 4 judged
    assert not book.standing_of("d").outlier
    _valid(book, "d")  # 5 judged, 40%
    assert book.standing_of("d").outlier


def test_an_outlier_loses_trust_and_gets_it_back_when_its_rate_falls() -> None:
    book = TrustBook(TrustPolicy(trust_after=3, ban_min_invalid=3, outlier_min_judged=5, outlier_floor=0.2))
    for w in ("a", "b", "c"):
        _valid(book, w, 10)
    _invalid(book, "d", 2)
    _valid(book, "d", 3)  # streak 3, but 2 of 5 judged are invalid
    assert book.records[("d", K)].consecutive_valid == 3
    assert book.standing_of("d").outlier and book.banned("d") is None
    assert not book.trusted("d", K)
    _valid(book, "d", 5)  # 2 of 10: back at the floor
    assert not book.standing_of("d").outlier
    assert book.trusted("d", K)
