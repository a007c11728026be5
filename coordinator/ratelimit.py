"""Token buckets per key: at most `rate` requests a second on average, `burst` at once. Pure, clock passed in.

The coordinator keeps one limiter per network address (checked before any signature work, so a flood costs almost
nothing) and one per signing key. A refused request is answered 429 and changes no state. Buckets idle long enough
to be full again are dropped, so memory is bounded by the number of recently active keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from depin.errors import TooManyRequests


@dataclass
class RateLimiter:
    """`rate` tokens per second up to `burst`; rate 0 means unlimited."""

    rate: float
    burst: float
    what: str = "key"
    _buckets: dict[str, tuple[float, int]] = field(default_factory=dict)  # key -> (tokens, at ms)
    _checks: int = 0

    def check(self, key: str, now_ms: int) -> None:
        """Take one token for `key`, or raise TooManyRequests."""
        if self.rate <= 0:
            return
        tokens, at = self._buckets.get(key, (self.burst, now_ms))
        tokens = min(self.burst, tokens + (now_ms - at) / 1000 * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now_ms)
            raise TooManyRequests(f"too many requests from this {self.what}; slow down (limit {self.rate:g}/s)")
        self._buckets[key] = (tokens - 1, now_ms)
        self._checks += 1
        if self._checks % 4096 == 0:
            self._forget(now_ms)

    def _forget(self, now_ms: int) -> None:
        full_after_ms = self.burst / self.rate * 1000
        for key in [k for k, (_, at) in self._buckets.items() if now_ms - at > full_after_ms]:
            del self._buckets[key]
