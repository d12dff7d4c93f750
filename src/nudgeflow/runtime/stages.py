"""Batches of engine work with a safety net, and the transactions they run in.

A stage is one kind of batch work (deciding events, firing timers, a backfill, a dispatch
claim). A batch that fails is retried at half the size, down to one item; an item that
fails on its own SET_ASIDE_AFTER times is set aside (skipped, dropped or failed, as the
stage says) and logged, so no event, timer or message can stop a loop. Database outages
(OUTAGE) are raised to the loop, which waits them out: they are never counted against an
item. Batches are sized to a time budget.

Shared by the embedded runtime (runtime/embedded.py) and the partitioned engine workers
(runtime/partition_worker.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from nudgeflow.store.group_commit import GroupCommitter, WriterFailed, WriterStopped

log = logging.getLogger("nudgeflow.runtime")

T = TypeVar("T")

# Errors that say the database (or the writer) is unavailable, not that an item is bad:
# they are waited out and never lead to an item being set aside.
OUTAGE = (OperationalError, InterfaceError, WriterStopped, WriterFailed)
SET_ASIDE_AFTER = 3  # failures of a one-item batch before the item is set aside
MIN_BATCH = 50  # the smallest batch the time budget shrinks to (failures go down to 1)


class Runner(Protocol):
    def call(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in a transaction of its own and return its result."""


class WriterRunner:
    """Transactions as jobs of the group committer's one writer thread."""

    def __init__(self, writer: GroupCommitter) -> None:
        self.writer = writer

    def call(self, fn: Callable[[Connection], T]) -> T:
        future: Future[T] = self.writer.submit_job(fn)
        return future.result()


class DirectRunner:
    """Transactions on connections of our own (tools, and tests without a writer)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def call(self, fn: Callable[[Connection], T]) -> T:
        with self.engine.begin() as conn:
            return fn(conn)


class Stage:
    """One kind of batch work, with the safety net described in the module docstring."""

    RETRY = -1

    def __init__(
        self,
        name: str,
        work: Callable[[Connection, int], int],
        set_aside: Callable[[Connection], str | None],
        batch: int,
        budget_ms: float | None = None,
        before: Callable[[int], None] | None = None,
        reraise: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.name = name
        self.work = work
        # Run on the caller's thread before each batch's transaction, with the batch size
        # (the backfill reads its next batch's past there: runtime/backfill.py, ReadAhead).
        self.before = before
        self.set_aside = set_aside
        self.batch = max(1, batch)
        self.size = self.batch
        # The writer thread is ingest's too: a transaction of ours holds every ingest commit
        # behind it. Batches are sized so that one takes about this long (smaller when the
        # items are costly, back up to `batch` when they are cheap).
        self.budget_s = budget_ms / 1000 if budget_ms else None
        self.failures = 0
        # Errors that say the batch must not be retried here (a lost partition lease): raised
        # to the loop untouched, like an outage, never counted against an item.
        self.reraise = reraise
        self.epoch: int | None = None  # the lease epoch a partition's stage was made for
        self.last: Any = None  # what the last batch left for the caller (dispatch: its round)

    def run(self, runner: Runner) -> int:
        """Items handled by one batch, or RETRY when the batch failed and was dealt with."""
        size = self.size
        took = [0.0]
        if self.before is not None:
            self.before(size)

        def job(conn: Connection) -> int:
            start = time.perf_counter()
            try:
                return self.work(conn, size)
            finally:
                took[0] = time.perf_counter() - start

        try:
            done = runner.call(job)
        except OUTAGE:
            raise
        except self.reraise:
            raise
        except Exception as exc:
            log.error(
                f"{self.name} batch failed",
                extra={"batch": size, "error": type(exc).__name__},
                exc_info=True,
            )
            if size > 1:
                self.size = max(1, size // 2)
                return self.RETRY
            self.failures += 1
            if self.failures < SET_ASIDE_AFTER:
                return self.RETRY
            what = runner.call(self.set_aside)
            self.failures = 0
            log.error(f"{self.name}: set aside an item that cannot be handled", extra={"item": what})
            return self.RETRY
        self.failures = 0
        budget = self.budget_s
        if budget is not None and took[0] > budget and done >= size and size > MIN_BATCH:
            self.size = max(MIN_BATCH, int(size * budget / took[0]))
        elif self.size < self.batch and (budget is None or took[0] < budget / 2):
            self.size = min(self.batch, self.size * 2)
        return done

    def drain(
        self, runner: Runner, max_batches: int | None = None, stop: Callable[[], bool] | None = None
    ) -> tuple[int, bool]:
        """Run batches until one comes back short (or `stop()` says the loop is stopping,
        looked at between batches); returns (items, whether work may remain)."""
        total = batches = 0
        while max_batches is None or batches < max_batches:
            if stop is not None and batches and stop():
                return total, True
            batches += 1
            size = self.size
            done = self.run(runner)
            if done == self.RETRY:
                continue
            total += done
            if done < size:
                return total, False
        return total, True
