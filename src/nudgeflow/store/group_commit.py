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
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.errors import StoreError
from nudgeflow.model.events import EventRecord
from nudgeflow.store import event_log
from nudgeflow.store.checkpoint import WalCheckpointer
from nudgeflow.store.ingest_writer import WriteResult, write_events

log = logging.getLogger(__name__)

T = TypeVar("T")


class WriterStopped(StoreError, RuntimeError):
    """The writer is not running, so nothing can be committed."""


@dataclass
class _EventsItem:
    workspace_id: str
    records: list[EventRecord]
    # A concurrent Future for threads, or an asyncio one owned by `loop` for the API.
    future: Future[WriteResult] | asyncio.Future[WriteResult]
    loop: asyncio.AbstractEventLoop | None = None


@dataclass
class _JobItem:
    fn: Callable[[Connection], Any]
    future: Future[Any]


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
        # Called after each event commit with (the commit's totals, requests in it): the
        # metrics, and the engine, which wakes to process what was just committed.
        self._listeners: list[Callable[[WriteResult, int], None]] = [on_commit] if on_commit is not None else []
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._held: Any = None
        # SQLite only: checkpoints the WAL beside the writer rather than inside its commits.
        self._checkpointer = WalCheckpointer(engine) if WalCheckpointer.applies_to(engine) else None
        # Submitting and stopping agree under this lock, so nothing can be queued behind
        # the stop marker, where no one would ever answer it.
        self._accepting = False
        self._accept_lock = threading.Lock()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="nudgeflow-writer", daemon=True)
        self._thread.start()
        if self._checkpointer is not None:
            self._checkpointer.start()
        self._accepting = True

    def stop(self) -> None:
        """Finish everything queued, then stop."""
        if self._thread is None:
            return
        with self._accept_lock:
            self._accepting = False
            self._queue.put(_STOP)
        self._thread.join()
        self._thread = None
        if self._checkpointer is not None:
            self._checkpointer.stop()

    def add_commit_listener(self, listener: Callable[[WriteResult, int], None]) -> None:
        self._listeners = [*self._listeners, listener]  # a new list: the writer may be iterating

    def remove_commit_listener(self, listener: Callable[[WriteResult, int], None]) -> None:
        self._listeners = [fn for fn in self._listeners if fn is not listener]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- submitting -------------------------------------------------------------------

    def submit_events(self, workspace_id: str, records: list[EventRecord]) -> Future[WriteResult]:
        future: Future[WriteResult] = Future()
        self._put(_EventsItem(workspace_id, records, future))
        return future

    def submit_job(self, fn: Callable[[Connection], T]) -> Future[T]:
        future: Future[T] = Future()
        self._put(_JobItem(fn, future))
        return future

    def _put(self, item: Any) -> None:
        with self._accept_lock:
            if not self._accepting or not self.running:
                raise WriterStopped("the writer is not running")
            self._queue.put(item)

    async def write_events(self, workspace_id: str, records: list[EventRecord]) -> WriteResult:
        # An asyncio future, settled from the writer with one loop wake-up per commit for all
        # the requests in it (wrap_future would cost a Future, a lock and a wake-up each).
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult] = loop.create_future()
        self._put(_EventsItem(workspace_id, records, future, loop))
        return await future

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
            # A thread's request whose future was cancelled was never acknowledged: skip it.
            # The others are marked running, so they can no longer be cancelled and
            # answering them cannot fail (asyncio futures are checked when settled).
            batch = [i for i in batch if i.loop is not None or i.future.set_running_or_notify_cancel()]
            if batch:
                self._commit(batch, sum(len(i.records) for i in batch))

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
        # One take of the partitions' offsets for the whole commit, at its end: two commits
        # then lock the partition heads in the same (ascending) order (store/event_log.py).
        with event_log.appending(conn):
            for workspace_id, records in by_workspace.items():
                part = write_events(conn, workspace_id, records, now_ms)
                total.accepted += part.accepted
                total.duplicates += part.duplicates
                total.duplicate_conflicts += part.duplicate_conflicts
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
                _settle(batch, error=WriterFailed("the database did not accept the write"))
                return
            # One request's bad luck must not fail its neighbours: retry each on its own.
            for item in batch:
                self._commit([item], len(item.records))
            return
        # Every request in the commit is told the commit's totals: what matters to each is
        # that its events are durable, and the totals feed the metrics once.
        # Metrics first, so that a client that has its answer already sees them counted.
        for listener in self._listeners:
            try:
                listener(total, len(batch))
            except Exception:  # a listener must never stop the writer, nor the next listener
                log.exception("on_commit callback failed")
        _settle(batch, result=total)


def _settle(batch: list[_EventsItem], result: WriteResult | None = None, error: BaseException | None = None) -> None:
    """Answer every request of a commit; asyncio waiters with one call per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[WriteResult]]] = {}
    for item in batch:
        if item.loop is None:
            future: Any = item.future
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        else:
            by_loop.setdefault(item.loop, []).append(item.future)  # type: ignore[arg-type]
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_in_loop, futures, result, error)
        except RuntimeError:  # the loop has closed: no one is waiting for these any more
            pass


def _settle_in_loop(
    futures: list[asyncio.Future[WriteResult]], result: WriteResult | None, error: BaseException | None
) -> None:
    for future in futures:
        if future.done():  # the request was cancelled meanwhile
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]


class WriterFailed(StoreError, RuntimeError):
    """The database refused a commit; the request may be retried."""
