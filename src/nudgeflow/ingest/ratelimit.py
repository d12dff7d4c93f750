"""Per-workspace token buckets, counted in events, on the injected clock.

One process's buckets; ingest/shared_limits.py keeps several processes' in step."""

from __future__ import annotations

from dataclasses import dataclass

from nudgeflow.core.clock import Clock


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, clock: Clock, rate_per_second: float, burst: int) -> None:
        self._clock = clock
        self._rate = rate_per_second
        self._burst = float(max(burst, 1))
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def take(self, key: str, cost: int) -> float:
        """Spend `cost` tokens; returns 0 if allowed, else the seconds to wait before retrying."""
        if not self.enabled:
            return 0.0
        now = self._clock.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
        bucket.at = now
        # A request larger than the burst passes on a full bucket and leaves it in debt, paid
        # back over time: the average rate still holds, and a client that honours Retry-After
        # is never refused forever.
        need = min(float(cost), self._burst)
        if bucket.tokens >= need:
            bucket.tokens -= cost
            return 0.0
        return max((need - bucket.tokens) / self._rate, 0.001)

    def debit(self, key: str, tokens: int) -> None:
        """Take out `tokens` admitted elsewhere (another process on the same database). The
        debt is floored at one burst, so that a wait it causes stays bounded (2 × burst / rate)."""
        if not self.enabled or tokens <= 0:
            return
        now = self._clock.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        bucket.tokens = max(-self._burst, min(self._burst, bucket.tokens + (now - bucket.at) * self._rate) - tokens)
        bucket.at = now
