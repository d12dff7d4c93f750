"""Group commit: one writer thread turns many concurrent requests into few transactions.

Each ingest request hands its validated events to the writer and waits. The writer takes
everything queued since its last commit, writes it in one transaction and then answers
every waiting request. While one commit (and its fsync) is in flight, the next batch
gathers, so the cost of durability is shared by all the requests that arrived meanwhile.

All writes of the embedded runtime go through this one thread, which also spares SQLite
the lock upgrades that concurrent writers would fight over. Other write jobs (erasure,
admin changes) are queued as functions and run in their own transaction, in order.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from sqlalchemy import Connection, Engine

from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.model.events import EventRecord
from nudgeflow.store.ingest_writer import WriteResult, write_events

log = logging.getLogger(__name__)

T = TypeVar("T")


class WriterStopped(RuntimeError):
    """The writer is not running, so nothing can be committed."""


@dataclass
class _EventsItem:
    workspace_id: str
    records: list[EventRecord]
    future: "Future[WriteResult]"


@dataclass
class _JobItem:
    fn: Callable[[Connection], Any]
    future: "Future[Any]"


_STOP = object()


class GroupCommitter:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        max_events: int = 5000,
        on_commit: Callable[[WriteResult, int], None] | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._max_events = max_events
        self._on_commit = on_commit  # (the commit's totals, requests in the commit)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._held: Any = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="nudgeflow-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish everything queued, then stop."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- submitting -------------------------------------------------------------------

    def submit_events(self, workspace_id: str, records: list[EventRecord]) -> "Future[WriteResult]":
        if not self.running:
            raise WriterStopped("the writer is not running")
        future: Future[WriteResult] = Future()
        self._queue.put(_EventsItem(workspace_id, records, future))
        return future

    def submit_job(self, fn: Callable[[Connection], T]) -> "Future[T]":
        if not self.running:
            raise WriterStopped("the writer is not running")
        future: Future[T] = Future()
        self._queue.put(_JobItem(fn, future))
        return future

    async def write_events(self, workspace_id: str, records: list[EventRecord]) -> WriteResult:
        return await asyncio.wrap_future(self.submit_events(workspace_id, records))

    async def run_job(self, fn: Callable[[Connection], T]) -> T:
        return await asyncio.wrap_future(self.submit_job(fn))

    # -- the writer thread ------------------------------------------------------------

    def _next(self) -> Any:
        if self._held is not None:
            item, self._held = self._held, None
            return item
        return self._queue.get()

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is _STOP:
                return
            if isinstance(item, _JobItem):
                self._run_job(item)
                continue
            batch = [item]
            size = len(item.records)
            # Take what has queued up meanwhile; a job or the stop waits for the next turn.
            while size < self._max_events:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(more, _EventsItem):
                    self._held = more
                    break
                batch.append(more)
                size += len(more.records)
            self._commit(batch, size)

    def _run_job(self, item: _JobItem) -> None:
        if not item.future.set_running_or_notify_cancel():
            return
        try:
            with self._engine.begin() as conn:
                result = item.fn(conn)
        except BaseException as exc:  # the caller gets the error; the writer goes on
            item.future.set_exception(exc)
        else:
            item.future.set_result(result)

    def _write(self, conn: Connection, batch: list[_EventsItem]) -> WriteResult:
        now_ms = to_ms(self._clock.now())
        by_workspace: dict[str, list[EventRecord]] = {}
        for item in batch:
            by_workspace.setdefault(item.workspace_id, []).extend(item.records)
        total = WriteResult()
        for workspace_id, records in by_workspace.items():
            part = write_events(conn, workspace_id, records, now_ms)
            total.accepted += part.accepted
            total.duplicates += part.duplicates
            total.profiles_created += part.profiles_created
            total.merges += part.merges
        return total

    def _commit(self, batch: list[_EventsItem], size: int) -> None:
        try:
            with self._engine.begin() as conn:
                total = self._write(conn, batch)
        except Exception:
            if len(batch) == 1:
                log.exception("commit failed", extra={"events": size})
                batch[0].future.set_exception(WriterFailed("the database did not accept the write"))
                return
            # One request's bad luck must not fail its neighbours: retry each on its own.
            for item in batch:
                self._commit([item], len(item.records))
            return
        # Every request in the commit is told the commit's totals: what matters to each is
        # that its events are durable, and the totals feed the metrics once.
        for item in batch:
            item.future.set_result(total)
        if self._on_commit is not None:
            try:
                self._on_commit(total, len(batch))
            except Exception:  # metrics must never stop the writer
                log.exception("on_commit callback failed")


class WriterFailed(RuntimeError):
    """The database refused a commit; the request may be retried."""
