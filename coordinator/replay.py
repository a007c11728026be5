"""Refuse signed requests that are stale, from the future, or seen before.

A request's `ts` must lie within `window_ms` of the coordinator's clock, and its (signer, nonce) pair must not have
been seen within that window. Nonces are kept in memory only, so a request whose ts is older than the moment the
coordinator started is refused too: a restart cannot reopen the window for a captured request. Pairs older than
the window are forgotten, since their ts alone now refuses them, so memory stays bounded by the request rate
times the window.
"""

from __future__ import annotations

from collections import deque

from depin.errors import Replayed


class ReplayGuard:
    """Remembers recent (signer, nonce) pairs."""

    def __init__(self, window_ms: int, not_before_ms: int = 0) -> None:
        self.window_ms = window_ms
        self.not_before_ms = not_before_ms
        self._seen: set[tuple[str, bytes]] = set()
        self._order: deque[tuple[int, str, bytes]] = deque()

    def check(self, *, now: int, signer: str, ts: int, nonce: bytes) -> None:
        """Record the request, or raise Replayed saying why it is refused."""
        if ts < now - self.window_ms:
            raise Replayed(f"request timestamp is {now - ts} ms old (limit {self.window_ms} ms); check the clock")
        if ts < self.not_before_ms:
            raise Replayed("request signed before the coordinator (re)started; sign it again")
        if ts > now + self.window_ms:
            raise Replayed(f"request timestamp is {ts - now} ms in the future (limit {self.window_ms} ms)")
        self._forget(now)
        key = (signer, nonce)
        if key in self._seen:
            raise Replayed("request replayed (nonce already used)")
        self._seen.add(key)
        self._order.append((now, signer, nonce))

    def _forget(self, now: int) -> None:
        # A pair recorded more than 2 windows ago can only match a ts that the window check already refuses.
        horizon = now - 2 * self.window_ms
        while self._order and self._order[0][0] < horizon:
            _, signer, nonce = self._order.popleft()
            self._seen.discard((signer, nonce))
