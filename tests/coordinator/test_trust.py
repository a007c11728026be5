"""coordinator.trust.TrustBook: earning trust from independent partners, spot checks, price-weighted single issue,
disputes, collusion scores, bans and outliers (pure, no scheduler)."""

from __future__ import annotations

import itertools

import pytest

from coordinator.trust import TrustBook, TrustPolicy

K = "mandelbrot@1"
OTHER = "julia@1"


_partners = itertools.count()


def _valid(book: TrustBook, worker: str, n: int = 1, *, kernel: str = K, cross_checked: bool = True,
           price: int = 1) -> None:
    """`n` valid results, each agreeing with a partner never seen before (so each counts), or with nobody."""
    for _ in range(n):
        partners = [f"p{next(_partners)}"] if cross_checked else []
        book.judged_valid(worker, kernel, partners=partners, price=price)


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


# ---- independence ----------------------------------------------------------------------------------------------


def test_one_partner_lifts_a_streak_at_most_partner_cap_times() -> None:
    book = TrustBook(TrustPolicy(trust_after=4, partner_cap=2))
    for _ in range(5):
        book.judged_valid("c", K, partners=["p"])
    r = book.records[("c", K)]
    assert (r.valid, r.consecutive_valid, r.partners) == (5, 2, {"p": 2})  # valid and paid, but no more trust
    assert not book.trusted("c", K)
    book.judged_valid("c", K, partners=["q"])
    book.judged_valid("c", K, partners=["q", "p"])  # one fresh partner in the group is enough
    assert book.records[("c", K)].consecutive_valid == 4 and book.trusted("c", K)


def test_a_pair_of_sybils_cannot_make_each_other_trusted() -> None:
    book = TrustBook(TrustPolicy(trust_after=10, partner_cap=3))
    for _ in range(100):
        book.judged_valid("c", K, partners=["p"])
        book.judged_valid("p", K, partners=["c"])
    assert not book.trusted("c", K) and not book.trusted("p", K)
    assert book.collusion_score("c") == book.collusion_score("p") == 1.0


def test_a_verified_result_counts_without_a_partner() -> None:
    book = TrustBook(TrustPolicy(trust_after=2))
    book.judged_valid("w", K, verified=True)
    book.judged_valid("w", K, verified=True)
    assert book.trusted("w", K) and book.records[("w", K)].partners == {}


def test_collusion_score_is_the_top_partners_share_of_the_streak() -> None:
    book = TrustBook(TrustPolicy(partner_cap=10))
    assert book.collusion_score("w") == 0.0
    for p in ("a", "a", "b", "c"):
        book.judged_valid("w", K, partners=[p])
    assert book.collusion_score("w") == pytest.approx(0.5)
    book.judged_invalid("w", K)  # a new streak starts from nothing
    assert book.collusion_score("w") == 0.0


# ---- price-weighted single issue -------------------------------------------------------------------------------


def test_trust_earned_on_cheap_tasks_does_not_cover_dear_ones() -> None:
    book = TrustBook(TrustPolicy(trust_after=3))
    _valid(book, "w", 3, price=2)
    assert book.trusted("w", K)
    assert book.single_ok("w", K, 2) and book.single_ok("w", K, 1)
    assert not book.single_ok("w", K, 3)  # above the streak's average price
    _valid(book, "w", 1, price=10)  # (2 + 2 + 2 + 10) / 4 = 4
    assert book.single_ok("w", K, 4) and not book.single_ok("w", K, 5)
    assert not book.single_ok("stranger", K, 1)


# ---- disputes --------------------------------------------------------------------------------------------------


def test_a_disputed_result_costs_nothing() -> None:
    book = TrustBook(TrustPolicy(trust_after=3, ban_min_invalid=3))
    _valid(book, "w", 3)
    for _ in range(10):
        book.judged_disputed("w", K)
    r = book.records[("w", K)]
    assert (r.consecutive_valid, r.invalid, r.disputed) == (3, 0, 10)
    assert book.trusted("w", K) and book.banned("w") is None


# ---- too fast --------------------------------------------------------------------------------------------------


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


def test_the_workers_that_earned_trust_are_kept_by_kernel_as_streaks_move() -> None:
    book = TrustBook(TrustPolicy(trust_after=2))
    assert book.earned_for(K) == set()
    _valid(book, "a", 2)
    _valid(book, "b", 2, kernel=OTHER)
    _valid(book, "c", 1)
    assert book.earned_for(K) == {"a"} and book.earned_for(OTHER) == {"b"}
    _invalid(book, "a")
    _valid(book, "c", 1)
    assert book.earned_for(K) == {"c"}
    book.refresh_outliers()  # rebuilt from the records: the same
    assert book.earned_for(K) == {"c"} and {w for w, k in book.earned() if k == K} == {"c"}
