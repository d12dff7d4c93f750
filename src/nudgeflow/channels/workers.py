"""Worker processes for a channel's CPU work (building emails: render, MIME, DKIM).

The serving process runs ingest, the engine and dispatch under one GIL. Building a 30 KB
MJML email takes about a millisecond of Python (its DKIM signature, by OpenSSL, under one
more), so with build processes (NUDGEFLOW_EMAIL_BUILD_PROCESSES; by default `auto`, one
on a machine with 2 or more cores: settings.email_build_processes_for) the email channel
hands each build to a small pool of processes and keeps only the SMTP conversation.

Processes are spawned, not forked: the server has threads (the writer, the engine, the
dispatcher), and a fork would copy their locks in whatever state they were in. A pool
whose process died (killed, out of memory) fails the builds in flight as transient (the
dispatcher retries them) and is replaced on the next call.

Calls are sent to the workers in batches, per event loop. At most two executor tasks per
worker process are in flight from one loop (so each worker can have one being built and the
next queued in the executor; a task goes to whichever worker is free, not to a given one,
and a second loop, run_until_idle's, has an allowance of its own); calls made meanwhile
wait in the pool and go together, up to MAX_BATCH in a task, when one comes back. An idle pool sends a call
at once, so batching adds no wait; a busy one stops paying per call what an executor task
costs the serving process: about 190 µs of CPU each (the executor's queues and threads, a
wake-up of the loop, measured with 35 KB results), against under 10 µs for a call in a
batch (benchmarks/RESULTS.md, issue 18 item 2).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from nudgeflow.channels.base import TransientError

log = logging.getLogger("nudgeflow.workers")

T = TypeVar("T")

# Calls per executor task at most: large enough that the task's cost is spread thin, small
# enough that the first message of a batch does not wait long for the last to be built
# (16 builds of ~1.5 ms: ~25 ms).
MAX_BATCH = 16


def _warm() -> None:
    # Import the content stack once at start, not on a message's clock.
    import nudgeflow.channels.email.build
    import nudgeflow.content.email_jobs
    import nudgeflow.content.email_render
    import nudgeflow.content.templates  # noqa: F401


def run_batch(fn: Callable[[Any], Any], args: list[Any]) -> list[tuple[bool, Any]]:
    """In a worker: fn(arg) for each arg, each call's result or exception on its own
    ((True, result) or (False, exception)): one failing build does not fail its batch."""
    out: list[tuple[bool, Any]] = []
    for arg in args:
        try:
            out.append((True, fn(arg)))
        except Exception as exc:  # returned to that call's caller, re-raised there
            out.append((False, exc))
    return out


Pending = tuple[Callable[[Any], Any], Any, "asyncio.Future[Any]"]


class _LoopQueue:
    """The calls waiting, and the batches in flight, of one event loop: futures are only
    ever resolved on the loop that made them."""

    __slots__ = ("flush_scheduled", "in_flight", "pending")

    def __init__(self) -> None:
        self.pending: list[Pending] = []
        self.in_flight = 0
        self.flush_scheduled = False


class WorkerPool:
    """`await pool.run(fn, arg)`: fn(arg) in a worker process (fn and arg picklable)."""

    def __init__(self, processes: int, max_batch: int = MAX_BATCH) -> None:
        if processes < 1:
            raise ValueError("a worker pool needs at least one process")
        if max_batch < 1:
            raise ValueError("a batch holds at least one call")
        self.processes = processes
        self.max_batch = max_batch
        self._executor: ProcessPoolExecutor | None = None
        self.batches = 0  # executor tasks submitted, for tests and the benchmark
        # By loop: the dispatcher's, and a test's or run_until_idle's short-lived ones, which
        # may overlap. An entry goes when its loop has nothing waiting and nothing in flight.
        self._queues: dict[asyncio.AbstractEventLoop, _LoopQueue] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    @property
    def busy_loops(self) -> int:
        """Event loops (still open) with calls waiting or batches in flight."""
        # A copy (made without releasing the GIL): another loop's thread may add or drop its
        # entry meanwhile, and iterating the dict itself would then raise.
        return sum(
            1
            for loop, queue in list(self._queues.items())
            if not loop.is_closed() and (queue.pending or queue.in_flight)
        )

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"), initializer=_warm
            )
        return self._executor

    async def run(self, fn: Callable[[Any], T], arg: Any) -> T:
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            for closed in [other for other in list(self._queues) if other.is_closed()]:
                self._queues.pop(closed, None)  # a loop that ended with nothing left to flush
            queue = self._queues[loop] = _LoopQueue()
        future: asyncio.Future[T] = loop.create_future()
        queue.pending.append((fn, arg, future))
        if not queue.flush_scheduled:
            # After the calls already queued on this turn of the loop have joined the batch.
            queue.flush_scheduled = True
            loop.call_soon(self._flush, loop, queue)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop, queue: _LoopQueue) -> None:
        queue.flush_scheduled = False
        queue.pending = [item for item in queue.pending if not item[2].done()]  # callers that gave up
        free = 2 * self.processes - queue.in_flight
        if not queue.pending:
            if not queue.in_flight:
                self._queues.pop(loop, None)
            return
        if free <= 0:
            return  # a batch coming back flushes again
        by_fn: dict[Callable[[Any], Any], list[Pending]] = {}
        for item in queue.pending:
            by_fn.setdefault(item[0], []).append(item)
        queue.pending = []
        for fn, items in by_fn.items():
            # Spread over the free slots, then cap: 20 calls and 2 free slots make 10 + 10.
            size = min(self.max_batch, max(1, -(-len(items) // free)))
            for start in range(0, len(items), size):
                batch = items[start : start + size]
                if free <= 0:
                    queue.pending.extend(batch)  # waits for a batch to come back
                    continue
                free -= 1
                queue.in_flight += 1
                task = loop.create_task(self._submit(fn, batch))
                self._tasks.add(task)
                task.add_done_callback(functools.partial(self._done, loop, queue))

    def _done(self, loop: asyncio.AbstractEventLoop, queue: _LoopQueue, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        queue.in_flight -= 1
        if not queue.flush_scheduled:
            queue.flush_scheduled = True
            loop.call_soon(self._flush, loop, queue)  # the next batch, or the entry let go

    async def _submit(self, fn: Callable[[Any], Any], items: list[Pending]) -> None:
        executor = self._pool()
        self.batches += 1
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                executor, run_batch, fn, [arg for _, arg, _ in items]
            )
        except BrokenProcessPool:
            log.error("a worker process died; the pool is replaced")
            if self._executor is executor:
                self._executor = None
                executor.shutdown(wait=False, cancel_futures=True)
            for _, _, future in items:
                if not future.done():
                    future.set_exception(TransientError("the build worker process died"))
            return
        except BaseException as exc:  # the batch could not be sent (pickling, shutdown): each call fails
            for _, _, future in items:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), (ok, value) in zip(items, results, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
