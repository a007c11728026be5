"""coordinator.quorum.decide: validated, failed, or how many more results a task needs."""

from __future__ import annotations

import numpy as np
import pytest

from coordinator.quorum import Candidate, Decision, decide
from depin.kernels import exact_compare

_ANY = np.zeros(0, dtype=np.uint8)


def _c(key: str, digest: str, output: np.ndarray | None = _ANY) -> Candidate:
    return Candidate(key, digest.encode(), output)


def _exact(results: list[Candidate], quorum: int = 2, max_results: int = 5) -> Decision:
    return decide(results, quorum=quorum, max_results=max_results, exact=True, compare=exact_compare)


def test_no_results_asks_for_a_full_quorum() -> None:
    assert _exact([], quorum=3) == Decision(state="pending", more=3)


def test_one_result_asks_for_the_rest() -> None:
    assert _exact([_c("a", "X")], quorum=3) == Decision(state="pending", more=2)


def test_agreement_validates() -> None:
    d = _exact([_c("a", "X"), _c("b", "X")])
    assert d == Decision(state="validated", canonical="a", valid=("a", "b"), invalid=())


def test_quorum_of_one() -> None:
    assert _exact([_c("a", "X")], quorum=1, max_results=1) == Decision(state="validated", canonical="a", valid=("a",))


def test_disagreement_asks_for_exactly_one_more() -> None:
    assert _exact([_c("a", "X"), _c("b", "Y")]) == Decision(state="pending", more=1)


def test_disagreement_resolved_by_the_next_result() -> None:
    d = _exact([_c("a", "X"), _c("b", "Y"), _c("c", "Y")])
    assert d == Decision(state="validated", canonical="b", valid=("b", "c"), invalid=("a",))


def test_valid_and_invalid_keep_arrival_order() -> None:
    results = [_c("a", "X"), _c("b", "Y"), _c("c", "X"), _c("d", "Z"), _c("e", "X")]
    d = _exact(results, quorum=3, max_results=5)
    assert d == Decision(state="validated", canonical="a", valid=("a", "c", "e"), invalid=("b", "d"))


def test_first_group_to_reach_quorum_wins_even_if_other_groups_are_larger_later() -> None:
    # Decisions happen as results arrive; once two agree the later ones are judged against them.
    d = _exact([_c("a", "X"), _c("b", "X"), _c("c", "Y")], quorum=2)
    assert d.state == "validated" and d.canonical == "a" and d.invalid == ("c",)


def test_all_disagreeing_at_the_limit_fails() -> None:
    d = _exact([_c("a", "X"), _c("b", "Y"), _c("c", "Z")], quorum=2, max_results=3)
    assert d == Decision(state="failed", reason="no 2 agreeing results among 3 (limit 3)")


def test_fails_as_soon_as_quorum_is_out_of_reach() -> None:
    # quorum 3, limit 4: after X, Y, Z the best group has 1 and needs 2 more, but only 1 more is allowed.
    d = _exact([_c("a", "X"), _c("b", "Y"), _c("c", "Z")], quorum=3, max_results=4)
    assert d == Decision(state="failed", reason="no 3 agreeing results among 3 (limit 4)")


def test_still_pending_while_quorum_is_reachable() -> None:
    assert _exact([_c("a", "X"), _c("b", "Y")], quorum=3, max_results=4) == Decision(state="pending", more=2)
    assert _exact([_c("a", "X"), _c("b", "Y"), _c("c", "X")], quorum=3, max_results=4) == Decision("pending", more=1)


def test_limit_equal_to_quorum_fails_on_first_disagreement() -> None:
    d = _exact([_c("a", "X"), _c("b", "Y")], quorum=2, max_results=2)
    assert d == Decision(state="failed", reason="no 2 agreeing results among 2 (limit 2)")


def test_malformed_results_agree_with_nothing_but_count_against_the_limit() -> None:
    mal = [_c("m1", "X", None), _c("m2", "X", None)]
    assert _exact(mal, quorum=2, max_results=5) == Decision(state="pending", more=2)
    assert _exact(mal, quorum=2, max_results=3) == Decision(
        state="failed", reason="no 2 agreeing results among 2 (limit 3)"
    )
    d = _exact([_c("m1", "X", None), _c("a", "X"), _c("b", "X")], quorum=2, max_results=3)
    assert d == Decision(state="validated", canonical="a", valid=("a", "b"), invalid=("m1",))


def test_non_exact_uses_compare() -> None:
    def close(a: np.ndarray, b: np.ndarray) -> bool:
        return bool(np.allclose(a, b, atol=0.01))

    x = np.array([1.0, 2.0])
    near = np.array([1.001, 2.0])
    far = np.array([1.5, 2.0])
    results = [Candidate("a", b"d1", x), Candidate("b", b"d2", far), Candidate("c", b"d3", near)]
    d = decide(results, quorum=2, max_results=5, exact=False, compare=close)
    assert d == Decision(state="validated", canonical="a", valid=("a", "c"), invalid=("b",))
    d = decide(results[:2], quorum=2, max_results=5, exact=False, compare=close)
    assert d == Decision(state="pending", more=1)


def test_non_exact_equal_digests_agree_without_compare() -> None:
    def never(a: np.ndarray, b: np.ndarray) -> bool:
        return False

    d = decide([_c("a", "X"), _c("b", "X")], quorum=2, max_results=2, exact=False, compare=never)
    assert d.state == "validated"


def test_exact_ignores_compare() -> None:
    def always(a: np.ndarray, b: np.ndarray) -> bool:
        return True

    d = decide([_c("a", "X"), _c("b", "Y")], quorum=2, max_results=5, exact=True, compare=always)
    assert d == Decision(state="pending", more=1)


def test_non_exact_never_compares_a_malformed_result() -> None:
    calls: list[tuple[object, object]] = []

    def spy(a: np.ndarray, b: np.ndarray) -> bool:
        calls.append((a, b))
        return False

    decide([_c("m", "X", None), _c("a", "Y"), _c("b", "Z")], quorum=2, max_results=5, exact=False, compare=spy)
    assert len(calls) == 1 and all(isinstance(x, np.ndarray) for x in calls[0])


@pytest.mark.parametrize("quorum", [1, 2, 3, 5])
def test_unanimous_results_validate_at_exactly_quorum(quorum: int) -> None:
    results = [_c(f"r{i}", "X") for i in range(quorum)]
    if quorum > 1:
        assert _exact(results[:-1], quorum=quorum, max_results=quorum + 3) == Decision("pending", more=1)
    d = _exact(results, quorum=quorum, max_results=quorum + 3)
    assert d.state == "validated" and d.valid == tuple(r.key for r in results)


# ---- kernel checks, error limits, trusted quorum ------------------------------------------------------------------


def _v(key: str, digest: str, verified: bool | None, output: np.ndarray | None = _ANY) -> Candidate:
    return Candidate(key, digest.encode(), output, verified=verified)


def _t(key: str, digest: str, trusted: bool) -> Candidate:
    return Candidate(key, digest.encode(), _ANY, trusted=trusted)


def test_a_verified_result_validates_alone() -> None:
    d = _exact([_v("a", "X", True)], quorum=2)
    assert d == Decision(state="validated", canonical="a", valid=("a",), invalid=())


def test_a_verified_result_wins_over_an_agreeing_group_and_others_are_invalid() -> None:
    results = [_c("a", "X"), _c("b", "X"), _v("c", "Y", True), _v("d", "Z", None), _c("m", "X", None)]
    d = _exact(results, quorum=3, max_results=8)
    assert d == Decision(state="validated", canonical="c", valid=("c",), invalid=("a", "b", "d", "m"))


def test_every_verified_result_is_valid_and_the_first_is_canonical() -> None:
    d = _exact([_c("a", "X"), _v("b", "Y", True), _v("c", "Y2", True)], quorum=2)
    assert d == Decision(state="validated", canonical="b", valid=("b", "c"), invalid=("a",))


def test_a_verified_result_validates_even_when_trust_is_needed() -> None:
    d = decide([_v("a", "X", True)], quorum=2, max_results=5, exact=True, compare=exact_compare, need_trusted=True)
    assert d.state == "validated" and d.valid == ("a",)


def test_a_result_that_cannot_be_verified_falls_back_to_agreement() -> None:
    assert _exact([_v("a", "X", None)]) == Decision(state="pending", more=1)
    d = _exact([_v("a", "X", None), _v("b", "X", None)])
    assert d == Decision(state="validated", canonical="a", valid=("a", "b"))


def test_a_refuted_result_is_an_error_that_agrees_with_nothing() -> None:
    assert _v("r", "X", False).error and _c("m", "X", None).error and not _v("n", "X", None).error
    # The refuted result has the same digest as the others, but it is not counted in their group.
    d = _exact([_v("r", "X", False), _c("a", "X")], quorum=2)
    assert d == Decision(state="pending", more=1)
    d = _exact([_v("r", "X", False), _c("a", "X"), _c("b", "X")], quorum=2)
    assert d == Decision(state="validated", canonical="a", valid=("a", "b"), invalid=("r",))


def test_a_refuted_result_counts_as_an_error_against_max_errors() -> None:
    results = [_v("r", "X", False), _c("a", "X")]
    assert decide(results, quorum=2, max_results=5, max_errors=0, exact=True, compare=exact_compare) == Decision(
        state="failed", reason="1 error results (limit 0)")
    assert decide(results, quorum=2, max_results=5, max_errors=1, exact=True, compare=exact_compare) == Decision(
        state="pending", more=1)


def test_more_than_max_errors_fails_and_malformed_and_refuted_both_count() -> None:
    results = [_c("m", "X", None), _v("r", "Y", False), _c("a", "X")]

    def run(max_errors: int | None) -> Decision:
        return decide(results, quorum=2, max_results=8, max_errors=max_errors, exact=True, compare=exact_compare)

    assert run(2) == Decision(state="pending", more=1)  # exactly at the limit is still alive
    assert run(1) == Decision(state="failed", reason="2 error results (limit 1)")
    assert run(None) == Decision(state="pending", more=1)  # no limit given: only max_results bounds errors


def test_errors_are_checked_before_agreement() -> None:
    d = decide([_c("m", "X", None), _c("a", "X"), _c("b", "X")], quorum=2, max_results=5, max_errors=0,
               exact=True, compare=exact_compare)
    assert d == Decision(state="failed", reason="1 error results (limit 0)")


def _trusted_quorum(results: list[Candidate], quorum: int = 2, max_results: int = 5) -> Decision:
    return decide(results, quorum=quorum, max_results=max_results, exact=True, compare=exact_compare,
                  need_trusted=True)


def test_an_untrusted_agreeing_group_does_not_validate_when_trust_is_needed() -> None:
    d = _trusted_quorum([_t("a", "X", False), _t("b", "X", False)])
    assert d == Decision(state="pending", more=1, needs_trusted=True)
    # Without need_trusted the same group validates.
    d = decide([_t("a", "X", False), _t("b", "X", False)], quorum=2, max_results=5, exact=True,
               compare=exact_compare)
    assert d.state == "validated"


@pytest.mark.parametrize("trusted_index", [0, 1])
def test_a_group_with_a_trusted_member_validates(trusted_index: int) -> None:
    results = [_t("a", "X", trusted_index == 0), _t("b", "X", trusted_index == 1)]
    d = _trusted_quorum(results)
    assert d == Decision(state="validated", canonical="a", valid=("a", "b"), invalid=())


def test_trust_needed_and_members_missing_asks_for_members_not_for_trust() -> None:
    # With one slot left, that slot must go to a trusted worker (the lease steering's last-slot rule).
    assert _trusted_quorum([_t("a", "X", False)]) == Decision(state="pending", more=1, needs_trusted=True)
    assert _trusted_quorum([_t("a", "X", False)], quorum=3) == Decision(state="pending", more=2)
    assert _trusted_quorum([]) == Decision(state="pending", more=2)


def test_a_trusted_group_wins_over_an_earlier_untrusted_one() -> None:
    results = [_t("a", "X", False), _t("b", "X", False), _t("c", "Y", True), _t("d", "Y", False)]
    d = _trusted_quorum(results)
    assert d == Decision(state="validated", canonical="c", valid=("c", "d"), invalid=("a", "b"))


def test_trust_needed_with_no_room_left_fails() -> None:
    d = _trusted_quorum([_t("a", "X", False), _t("b", "X", False)], max_results=2)
    assert d.state == "failed" and d.valid == ()


def test_a_sybil_on_probation_does_not_decide_between_disagreeing_trusted_workers() -> None:
    # An honest trusted worker H and a trusted cheater C disagree; C's fresh Sybil P agrees with C. P's vote does not
    # count while trusted workers disagree: one more result is asked for, and an honest one settles it.
    h = Candidate("h", b"right", _ANY, trusted=True)
    c = Candidate("c", b"wrong", _ANY, trusted=True)
    p = Candidate("p", b"wrong", _ANY, probation=True)
    pending = _exact([h, c, p])
    assert pending.state == "pending" and pending.more == 1
    settled = _exact([h, c, p, Candidate("h2", b"right", _ANY)])
    assert settled.state == "validated" and settled.canonical == "h" and set(settled.invalid) == {"c", "p"}
    # Without a trusted dissent the probationary result counts as ever (placement and audits guard that case).
    assert _exact([Candidate("u", b"right", _ANY), c, p]).state == "validated"
