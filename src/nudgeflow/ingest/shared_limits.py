"""The per-workspace ingest rate limit, across every serving process on one database.

Each process keeps its own token bucket per workspace (ingest/ratelimit.py), so that a
request is admitted or refused without a round trip. Every `SYNC_MS` it exchanges with the
database (store/ingest_spending.py): it adds what it admitted since the last exchange to
its running totals, reads the other processes' totals for the workspaces it is serving,
and takes what they admitted since it last looked out of its own buckets. Together the
processes then admit about the workspace's rate, not the rate times the processes.

How close: between two exchanges each process can admit at most what its own bucket
holds, so the total overshoots by at most (processes - 1) × (burst + rate × SYNC_MS).
The first time a process sees another one's total, it is all taken out if that process's
row was made since the previous exchange, or within an interval of now at the first (so a
new process's first burst counts); an older one (a workspace this process only now began
to serve) cannot say how much of it is recent, and is not.

An exchange that fails (the database away) keeps what was admitted for the next one:
nothing counted is lost, and ingest is never refused for want of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections import Counter
from collections.abc import Callable, Mapping

from sqlalchemy import Connection, Engine

from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.ingest.ratelimit import RateLimiter
from nudgeflow.store import ingest_spending

log = logging.getLogger("nudgeflow.ingest")

SYNC_MS = 500  # between exchanges with the database
TIDY_EVERY = 1200  # exchanges between deletions of stopped processes' rows (10 minutes)
WATCH_S = 60.0  # a workspace this process took no request of for this long is not read


def process_id(clock: Clock) -> str:
    """This app's id among the serving processes: host, pid, start time and a random part
    (containers all run as pid 1; a restarted process is a new one, so that its new total
    does not read as a drop in the old; two apps in one process are two)."""
    host = socket.gethostname()[:60]
    return f"{host}:{os.getpid()}:{to_ms(clock.now())}:{secrets.token_hex(4)}"


class SharedRateLimiter(RateLimiter):
    """A RateLimiter that also counts what it admits, and is debited what the others admit."""

    def __init__(self, clock: Clock, rate_per_second: float, burst: int, process: str) -> None:
        super().__init__(clock, rate_per_second, burst)
        self.process = process
        self._admitted: Counter[str] = Counter()  # since the last exchange
        self._seen: dict[tuple[str, str], int] = {}  # (workspace, process) -> its total last read
        self._last_ms: int | None = None  # when the previous exchange read
        self._watched: dict[str, float] = {}  # workspace -> when (monotonic) a request last came
        self.exchanges = 0
        self.failed_exchanges = 0

    def take(self, key: str, cost: int) -> float:
        wait = super().take(key, cost)
        if self.enabled:
            self._watched[key] = self._clock.monotonic()
            if wait == 0.0:
                self._admitted[key] += cost
        return wait

    def pending(self) -> tuple[dict[str, int], list[str]]:
        """What to hand to an exchange: the admitted counts (taken: give them back with
        `restore` if the exchange fails) and the workspaces served lately."""
        admitted, self._admitted = dict(self._admitted), Counter()
        horizon = self._clock.monotonic() - WATCH_S
        for key in [k for k, at in self._watched.items() if at < horizon]:
            del self._watched[key]
        return admitted, sorted(self._watched)

    def restore(self, admitted: Mapping[str, int]) -> None:
        self._admitted.update(admitted)

    def absorb(self, totals: Mapping[tuple[str, str], tuple[int, int]], now_ms: int) -> None:
        """Take out of the buckets what each other process admitted since last read."""
        # Rows made since the previous look (or, at the first, within an interval of now),
        # less an interval for a commit that came just after that read: all of theirs is new.
        # Older ones: cannot tell (module docstring).
        recent = (now_ms if self._last_ms is None else self._last_ms) - SYNC_MS
        for key, (total, created_at_ms) in totals.items():
            before = self._seen.get(key)
            self._seen[key] = total
            if before is None:
                before = 0 if created_at_ms >= recent else total
            if total > before:
                self.debit(key[0], total - before)
        self._last_ms = now_ms

    def exchange(self, conn: Connection) -> None:
        """One exchange, in the caller's transaction (tests; `sync` does it off the event loop)."""
        admitted, watched = self.pending()
        now_ms = to_ms(self._clock.now())
        try:
            totals = ingest_spending.exchange(conn, self.process, admitted, watched, now_ms)
        except Exception:
            self.restore(admitted)
            raise
        self.absorb(totals, now_ms)
        self.exchanges += 1

    async def sync(self, engine: Engine) -> None:
        """One exchange in a worker thread (the database call), the buckets changed on the
        event loop's thread (where requests take from them). Failures are logged and counted."""
        admitted, watched = self.pending()
        if not admitted and not watched:
            return
        now_ms = to_ms(self._clock.now())
        process = self.process

        tidy = self.exchanges % TIDY_EVERY == 0

        def call() -> dict[tuple[str, str], tuple[int, int]]:
            with engine.begin() as conn:
                if tidy:
                    ingest_spending.forget_stale(conn, now_ms)
                return ingest_spending.exchange(conn, process, admitted, watched, now_ms)

        try:
            totals = await asyncio.to_thread(call)
        except Exception as exc:  # the database away: counted next time; ingest goes on
            self.restore(admitted)
            self.failed_exchanges += 1
            log.warning("rate limit exchange failed; retried", extra={"error": type(exc).__name__})
            return
        self.absorb(totals, now_ms)
        self.exchanges += 1


async def keep_in_step(
    limiter: SharedRateLimiter, engine: Engine, stopping: Callable[[], bool], interval_ms: int = SYNC_MS
) -> None:
    """The serving process's loop: an exchange every `interval_ms` until `stopping()`, then a
    last one, so that what this process admitted is counted by the others."""
    while not stopping():
        await asyncio.sleep(interval_ms / 1000)
        await limiter.sync(engine)
    await limiter.sync(engine)
