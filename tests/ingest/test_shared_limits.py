"""The ingest rate limit shared by several serving processes on one database (two limiters
on a virtual clock stand for two processes; the database is real: SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from nudgeflow.core.clock import VirtualClock
from nudgeflow.ingest.shared_limits import SharedRateLimiter, keep_in_step
from nudgeflow.store import ingest_spending


def _pair(clock: VirtualClock, rate: float = 100, burst: int = 100) -> tuple[SharedRateLimiter, SharedRateLimiter]:
    tag = uuid.uuid4().hex[:8]  # the PostgreSQL database is shared between tests: ids of our own
    return (
        SharedRateLimiter(clock, rate, burst, f"a-{tag}"),
        SharedRateLimiter(clock, rate, burst, f"b-{tag}"),
    )


def _admit(limiter: SharedRateLimiter, ws: str, n: int) -> int:
    return sum(1 for _ in range(n) if limiter.take(ws, 1) == 0)


def _exchange(engine: Any, *limiters: SharedRateLimiter) -> None:
    for limiter in limiters:
        with engine.begin() as conn:
            limiter.exchange(conn)


def test_what_one_process_admits_is_taken_out_of_the_others_bucket(engine: Any, clock: VirtualClock) -> None:
    ws = f"ws_{uuid.uuid4().hex[:10]}"
    a, b = _pair(clock)
    assert _admit(b, ws, 1) == 1  # b serves the workspace: it reads the others' totals for it
    _exchange(engine, a, b)
    assert _admit(a, ws, 100) == 100  # a did not serve it before: b's one is older than a's look
    _exchange(engine, a, b)  # a's row is new since b's previous look: all of a's 100 are b's debt
    assert _admit(b, ws, 100) == 0  # the workspace's burst is spent
    clock.advance(timedelta(seconds=1))  # a second's rate comes back to each bucket
    got = _admit(a, ws, 1000)
    _exchange(engine, a, b)  # and what a took of it is b's debt
    got += _admit(b, ws, 1000)
    assert got <= 100 + 1  # one second's rate between the two, not two


def test_two_processes_together_admit_about_the_rate_not_twice_it(engine: Any, clock: VirtualClock) -> None:
    ws = f"ws_{uuid.uuid4().hex[:10]}"
    a, b = _pair(clock, rate=100, burst=100)
    _admit(a, ws, 1)
    _admit(b, ws, 1)
    _exchange(engine, a, b)
    _exchange(engine, a, b)
    admitted = 0
    for _ in range(100):  # 10 s of offered load far above the rate, exchanges every 100 ms
        clock.advance(timedelta(milliseconds=100))
        admitted += _admit(a, ws, 50) + _admit(b, ws, 50)
        _exchange(engine, a, b)
    # One process alone would admit the burst and 1,000 (10 s at 100/s); two unshared, twice
    # that. Shared, the overshoot is bounded by one interval's rate and a burst (module docstring).
    assert admitted <= 100 + 1000 + 100 + 10, admitted
    assert admitted >= 1000 - 100, admitted  # and the rate is still served


def test_other_workspaces_are_not_debited(engine: Any, clock: VirtualClock) -> None:
    mine, theirs = f"ws_{uuid.uuid4().hex[:10]}", f"ws_{uuid.uuid4().hex[:10]}"
    a, b = _pair(clock)
    _admit(b, mine, 1)
    _admit(a, theirs, 1)
    _exchange(engine, a, b)
    _admit(a, theirs, 99)
    _exchange(engine, a, b)
    assert _admit(b, mine, 99) == 99


def test_a_failed_exchange_loses_no_count(engine: Any, clock: VirtualClock) -> None:
    ws = f"ws_{uuid.uuid4().hex[:10]}"
    a, b = _pair(clock)
    _admit(b, ws, 1)
    _exchange(engine, a, b)
    _admit(a, ws, 40)

    conn = engine.connect()
    conn.close()
    with pytest.raises(Exception):  # noqa: B017 - whatever a closed connection raises
        a.exchange(conn)
    _exchange(engine, a, b)  # the next one carries the 40
    assert _admit(b, ws, 100) == 100 - 1 - 40


def test_the_loop_exchanges_until_stopped_and_once_more(engine: Any, clock: VirtualClock) -> None:
    ws = f"ws_{uuid.uuid4().hex[:10]}"
    a, b = _pair(clock)
    _admit(a, ws, 7)
    rounds = {"n": 0}

    def stopping() -> bool:
        rounds["n"] += 1
        return rounds["n"] > 2

    asyncio.run(keep_in_step(a, engine, stopping, interval_ms=1))
    assert a.exchanges == 3 and a.failed_exchanges == 0
    with engine.begin() as conn:
        totals = ingest_spending.exchange(conn, b.process, {}, [ws], 0)
    assert {key: total for key, (total, _) in totals.items()} == {(ws, a.process): 7}


def test_stopped_processes_rows_are_forgotten(engine: Any) -> None:
    ws = f"ws_{uuid.uuid4().hex[:10]}"
    proc = f"gone-{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        ingest_spending.exchange(conn, proc, {ws: 5}, [], 1_000)
        ingest_spending.forget_stale(conn, 1_000 + ingest_spending.STALE_MS + 1)
        assert ingest_spending.exchange(conn, "someone", {}, [ws], 1_000) == {}
