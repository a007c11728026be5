"""worker.daemon.Backoff: exponential, jittered by an injected random source, capped, reset on success."""

from __future__ import annotations

import pytest

from worker.daemon import Backoff


def _delays(b: Backoff, n: int) -> list[float]:
    return [b.next_delay() for _ in range(n)]


def test_grows_exponentially_up_to_the_cap() -> None:
    top = Backoff(base_s=0.25, cap_s=30.0, rand=lambda: 1.0)
    assert _delays(top, 9) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    bottom = Backoff(base_s=0.25, cap_s=30.0, rand=lambda: 0.0)
    assert _delays(bottom, 9) == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]


def test_jitter_spans_the_upper_half() -> None:
    assert Backoff(base_s=1.0, cap_s=100.0, rand=lambda: 0.5).next_delay() == 1.5  # ceiling 2: 1 + 0.5 * 1


def test_counts_failures_and_resets() -> None:
    b = Backoff(base_s=0.25, cap_s=30.0, rand=lambda: 1.0)
    _delays(b, 5)
    assert b.failures == 5
    b.reset()
    assert b.failures == 0
    assert _delays(b, 2) == [0.5, 1.0]


def test_many_failures_stay_at_the_cap() -> None:
    b = Backoff(base_s=0.25, cap_s=7.0, rand=lambda: 1.0)
    b.failures = 10_000
    assert b.next_delay() == 7.0


@pytest.mark.parametrize("r", [0.0, 0.3, 0.999])
def test_delays_stay_within_half_to_full_ceiling(r: float) -> None:
    b = Backoff(base_s=0.1, cap_s=5.0, rand=lambda: r)
    for n in range(1, 30):
        ceiling = min(5.0, 0.1 * 2**n)
        d = b.next_delay()
        assert isinstance(d, float)
        assert ceiling / 2 <= d <= ceiling


def test_defaults() -> None:
    b = Backoff()
    assert (b.base_s, b.cap_s, b.failures) == (0.25, 30.0, 0)
    assert 0.25 <= b.next_delay() <= 0.5
