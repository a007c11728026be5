"""coordinator.replay.ReplayGuard: stale, future and repeated requests are refused; old nonces are forgotten."""

from __future__ import annotations

import pytest

from coordinator.replay import ReplayGuard
from depin.errors import Replayed

W = 1_000  # the clock window, ms
NOW = 1_000_000


def test_fresh_requests_pass() -> None:
    g = ReplayGuard(W)
    g.check(now=NOW, signer="a", ts=NOW, nonce=b"n1")
    g.check(now=NOW, signer="a", ts=NOW, nonce=b"n2")
    g.check(now=NOW, signer="b", ts=NOW, nonce=b"n1")  # nonces are per signer


def test_window_edges_are_inclusive() -> None:
    g = ReplayGuard(W)
    g.check(now=NOW, signer="a", ts=NOW - W, nonce=b"old-edge")
    g.check(now=NOW, signer="a", ts=NOW + W, nonce=b"new-edge")


def test_stale_request_is_refused() -> None:
    with pytest.raises(Replayed, match="request timestamp is 1001 ms old \\(limit 1000 ms\\); check the clock"):
        ReplayGuard(W).check(now=NOW, signer="a", ts=NOW - W - 1, nonce=b"n")


def test_future_request_is_refused() -> None:
    with pytest.raises(Replayed, match="request timestamp is 1001 ms in the future \\(limit 1000 ms\\)"):
        ReplayGuard(W).check(now=NOW, signer="a", ts=NOW + W + 1, nonce=b"n")


def test_refused_timestamps_do_not_burn_the_nonce() -> None:
    g = ReplayGuard(W)
    with pytest.raises(Replayed):
        g.check(now=NOW, signer="a", ts=NOW - 5 * W, nonce=b"n")
    g.check(now=NOW, signer="a", ts=NOW, nonce=b"n")


def test_repeated_nonce_is_refused() -> None:
    g = ReplayGuard(W)
    g.check(now=NOW, signer="a", ts=NOW, nonce=b"n")
    with pytest.raises(Replayed, match="request replayed \\(nonce already used\\)"):
        g.check(now=NOW, signer="a", ts=NOW, nonce=b"n")
    with pytest.raises(Replayed, match="nonce already used"):
        g.check(now=NOW + 10, signer="a", ts=NOW + 10, nonce=b"n")  # a new ts does not launder the nonce


def test_nonce_is_remembered_until_the_horizon() -> None:
    g = ReplayGuard(W)
    g.check(now=NOW, signer="a", ts=NOW, nonce=b"n")
    # Forgetting starts only once the pair is more than two windows old.
    with pytest.raises(Replayed, match="nonce already used"):
        g.check(now=NOW + 2 * W, signer="a", ts=NOW + 2 * W, nonce=b"n")


def test_nonce_is_forgotten_after_the_horizon() -> None:
    g = ReplayGuard(W)
    g.check(now=NOW, signer="a", ts=NOW, nonce=b"n")
    g.check(now=NOW + 2 * W + 1, signer="a", ts=NOW + 2 * W + 1, nonce=b"n")  # forgotten: accepted again


def test_a_forgotten_request_is_still_refused_by_its_timestamp() -> None:
    g = ReplayGuard(W)
    g.check(now=NOW, signer="a", ts=NOW + W, nonce=b"n")  # the latest ts the first request could carry
    later = NOW + 2 * W + 1
    with pytest.raises(Replayed, match="ms old"):
        g.check(now=later, signer="a", ts=NOW + W, nonce=b"n")  # the exact same request, replayed


def test_memory_stays_bounded() -> None:
    g = ReplayGuard(W)
    for i in range(10_000):
        now = NOW + i * 10
        g.check(now=now, signer="a", ts=now, nonce=i.to_bytes(8, "big"))
    # Only pairs from the last two windows can be held: 2 * W / 10 ms per request, plus the one just added.
    assert len(g._seen) <= 2 * W // 10 + 1
    assert len(g._seen) == len(g._order)


def test_requests_signed_before_the_start_are_refused() -> None:
    g = ReplayGuard(W, not_before_ms=NOW)
    with pytest.raises(Replayed, match="request signed before the coordinator \\(re\\)started; sign it again"):
        g.check(now=NOW + 10, signer="a", ts=NOW - 1, nonce=b"n")
    g.check(now=NOW + 10, signer="a", ts=NOW, nonce=b"n")  # the start itself is fine


def test_not_before_defaults_to_no_limit() -> None:
    g = ReplayGuard(W)
    assert g.not_before_ms == 0
    g.check(now=W, signer="a", ts=0, nonce=b"n")
