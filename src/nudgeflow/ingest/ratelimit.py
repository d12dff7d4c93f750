"""Token buckets per key (a workspace for ingest; a person or a client address for the
public links, web/link_limits.py), on the injected clock.

One process's buckets; ingest/shared_limits.py keeps several processes' in step."""

from __future__ import annotations

from dataclasses import dataclass

from nudgeflow.core.clock import Clock


@dataclass
class _Bucket:
    tokens: float
    at: float


SWEEP_FROM = 1024


class RateLimiter:
    def __init__(self, clock: Clock, rate_per_second: float, burst: int) -> None:
        self._clock = clock
        self._rate = rate_per_second
        self._burst = float(max(burst, 1))
        self._buckets: dict[str, _Bucket] = {}
        self._sweep_at = SWEEP_FROM  # the number of buckets at which full ones are next dropped

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
            if len(self._buckets) >= self._sweep_at:
                self._sweep(now)
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

    def _sweep(self, now: float) -> None:
        """Drop the buckets that have filled up again: a full bucket is what a new key gets,
        so nothing changes but the memory. With a key per person or client address (not per
        workspace) the buckets would otherwise grow with every one ever seen. Amortized: the
        next sweep waits until the buckets have doubled."""
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.at) * self._rate >= self._burst]
        for key in full:
            del self._buckets[key]
        self._sweep_at = max(SWEEP_FROM, 2 * len(self._buckets))

    def __len__(self) -> int:
        return len(self._buckets)

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
