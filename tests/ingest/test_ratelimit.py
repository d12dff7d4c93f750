"""The per-workspace token bucket, on a virtual clock."""

from __future__ import annotations

import pytest

from nudgeflow.core.clock import VirtualClock
from nudgeflow.ingest.ratelimit import SWEEP_FROM, RateLimiter


def test_a_zero_rate_disables_the_limit() -> None:
    limiter = RateLimiter(VirtualClock(), 0, 10)
    assert not limiter.enabled
    assert all(limiter.take("ws", 1_000_000) == 0 for _ in range(100))


def test_the_burst_passes_at_once_then_the_wait_is_what_the_missing_tokens_take() -> None:
    limiter = RateLimiter(VirtualClock(), rate_per_second=100, burst=500)
    assert limiter.take("ws", 300) == 0
    assert limiter.take("ws", 200) == 0
    assert limiter.take("ws", 1) == pytest.approx(0.01)
    assert limiter.take("ws", 250) == pytest.approx(2.5)


def test_a_refused_request_spends_nothing() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(clock, rate_per_second=10, burst=10)
    assert limiter.take("ws", 10) == 0
    for _ in range(5):
        assert limiter.take("ws", 5) > 0
    clock.advance(0.5)
    assert limiter.take("ws", 5) == 0  # the refusals above did not dig a hole


def test_time_refills_the_bucket_up_to_the_burst() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(clock, rate_per_second=10, burst=20)
    assert limiter.take("ws", 20) == 0
    clock.advance(1.0)
    assert limiter.take("ws", 10) == 0
    assert limiter.take("ws", 1) > 0
    clock.advance(3600)
    assert limiter.take("ws", 20) == 0  # a long rest buys the burst, not an hour of tokens
    assert limiter.take("ws", 1) == pytest.approx(0.1)


def test_workspaces_have_their_own_buckets() -> None:
    limiter = RateLimiter(VirtualClock(), rate_per_second=1, burst=5)
    assert limiter.take("a", 5) == 0
    assert limiter.take("a", 1) > 0
    assert limiter.take("b", 5) == 0


def test_a_request_larger_than_the_burst_passes_on_a_full_bucket_and_is_paid_back() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(clock, rate_per_second=4, burst=10)
    assert limiter.take("ws", 11) == 0  # a full bucket lets it through, 1 token in debt
    assert limiter.take("ws", 1) == 0.5  # the debt and the next token: 2 tokens at 4/s
    clock.advance(0.5)
    assert limiter.take("ws", 1) == 0


def test_the_wait_is_never_zero_when_refused() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(clock, rate_per_second=1_000_000, burst=1)
    assert limiter.take("ws", 1) == 0
    assert limiter.take("ws", 1) > 0


def test_buckets_of_keys_that_filled_up_again_are_dropped_so_memory_stays_bounded() -> None:
    """Keyed per person (web/link_limits.py), the buckets would grow with everyone ever
    seen; a full bucket is what a new key gets, so dropping it changes nothing."""
    clock = VirtualClock()
    limiter = RateLimiter(clock, rate_per_second=1, burst=5)
    for i in range(SWEEP_FROM):
        assert limiter.take(f"person-{i}", 1) == 0
    assert limiter.take("busy", 5) == 0
    clock.advance(1)  # every bucket but "busy" has its one token back
    for i in range(10 * SWEEP_FROM):
        assert limiter.take(f"later-{i}", 1) == 0
        clock.advance(1)
    assert len(limiter) <= 2 * SWEEP_FROM
    # "busy" was dropped only once full: taking from it again starts from a full bucket, as before.
    assert limiter.take("busy", 5) == 0
    assert limiter.take("busy", 1) > 0
