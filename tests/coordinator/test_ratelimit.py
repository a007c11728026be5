"""coordinator.ratelimit.RateLimiter: token buckets per key, with the clock passed in."""

from __future__ import annotations

import pytest

from coordinator.ratelimit import RateLimiter
from depin.errors import TooManyRequests


def test_a_burst_then_refusal() -> None:
    limiter = RateLimiter(rate=2, burst=4, what="address")
    for _ in range(4):
        limiter.check("k", 0)
    with pytest.raises(TooManyRequests, match=r"^too many requests from this address; slow down \(limit 2/s\)$"):
        limiter.check("k", 0)
    with pytest.raises(TooManyRequests):  # a refused request does not take a token, nor give one back
        limiter.check("k", 0)


def test_the_message_names_what_is_limited_and_the_rate() -> None:
    limiter = RateLimiter(rate=0.5, burst=1)
    limiter.check("k", 0)
    with pytest.raises(TooManyRequests, match=r"from this key; slow down \(limit 0\.5/s\)"):
        limiter.check("k", 0)


def test_tokens_refill_over_time() -> None:
    limiter = RateLimiter(rate=2, burst=2)
    limiter.check("k", 0)
    limiter.check("k", 0)
    with pytest.raises(TooManyRequests):
        limiter.check("k", 499)  # 0.998 tokens
    limiter.check("k", 500)  # one token back after half a second at 2/s
    with pytest.raises(TooManyRequests):
        limiter.check("k", 500)
    limiter.check("k", 1000)


def test_refill_stops_at_the_burst() -> None:
    limiter = RateLimiter(rate=10, burst=3)
    limiter.check("k", 0)
    for _ in range(3):
        limiter.check("k", 3_600_000)  # an hour idle: full, but no fuller than `burst`
    with pytest.raises(TooManyRequests):
        limiter.check("k", 3_600_000)


def test_refused_requests_still_refill_from_their_time() -> None:
    limiter = RateLimiter(rate=1, burst=1)
    limiter.check("k", 0)
    for t in (100, 200, 900):
        with pytest.raises(TooManyRequests):
            limiter.check("k", t)
    # A second after the last token was taken, however often it was refused (1 ms more: the partial refills
    # 0.1 + 0.1 + 0.7 + 0.1 add up to just under 1.0 in floating point).
    limiter.check("k", 1001)


def test_rate_zero_is_unlimited() -> None:
    limiter = RateLimiter(rate=0, burst=0)
    for _ in range(10_000):
        limiter.check("k", 0)


def test_keys_are_independent() -> None:
    limiter = RateLimiter(rate=1, burst=2)
    limiter.check("a", 0)
    limiter.check("a", 0)
    with pytest.raises(TooManyRequests):
        limiter.check("a", 0)
    limiter.check("b", 0)
    limiter.check("b", 0)
    with pytest.raises(TooManyRequests):
        limiter.check("b", 0)


def test_idle_buckets_are_forgotten() -> None:
    # Buckets are swept every 4096 granted checks; one idle long enough to be full again is dropped.
    limiter = RateLimiter(rate=1000, burst=2)  # full again 2 ms after the last request
    limiter.check("idle", 0)
    for i in range(4094):
        limiter.check(f"busy{i}", 10)
    assert "idle" in limiter._buckets
    limiter.check("last", 10)  # the 4096th granted check sweeps
    assert "idle" not in limiter._buckets
    assert len(limiter._buckets) == 4095
    limiter.check("idle", 10)  # a forgotten key starts again with a full bucket
    limiter.check("idle", 10)


def test_recently_used_buckets_are_kept_by_the_sweep() -> None:
    limiter = RateLimiter(rate=1, burst=2)  # full again 2 s after the last request
    limiter.check("recent", 0)
    limiter.check("recent", 0)
    for i in range(4094):
        limiter.check(f"busy{i}", 1000)
    assert "recent" in limiter._buckets  # the 4096th check swept, but 1 s idle is not yet full again
    limiter.check("recent", 1000)  # one token refilled, not a fresh bucket of two
    with pytest.raises(TooManyRequests):
        limiter.check("recent", 1000)
