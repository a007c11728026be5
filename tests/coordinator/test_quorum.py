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
