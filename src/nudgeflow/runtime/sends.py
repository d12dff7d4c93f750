"""Remote sends under way: started one per turn of the event loop, at most `limit` at once.

A send (runtime/dispatcher.Dispatcher.send_one) does its channel's whole work: the reads
and the build of the message (template, MIME, DKIM; a push's encryption), then its network
exchange. Much of that runs on the event loop without yielding, so sends started together
build together: started all at once, no answer to the first was read before the last had
been built. Started one per turn of the loop instead (`start` yields after each), every
build is followed by a look at the sockets, and the sends under way move on between
builds: the first message of a claim goes out while the rest of it is still being built.

The dispatcher's loop (runtime/dispatch_pipeline.py) keeps one `Sends` across its claims:
a claim's messages are started as the ones before finish, and finished outcomes are taken
(`take`) to be recorded while others are still being sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger("nudgeflow.dispatch")

T = TypeVar("T")
DRAIN_POLL_S = 0.05  # how often a wait for a free slot looks whether the dispatcher is stopping


class Sends(Generic[T]):
    """Tasks, one per send, keyed by the outbox row; their outcomes collect in `take()`."""

    def __init__(
        self, limit: int, stopping: Callable[[], bool] | None = None, lost: Callable[[int], None] | None = None
    ) -> None:
        self.limit = max(1, limit)
        self.stopping = stopping
        # Told the key of a send that ended with no outcome (it raised: a bug of ours), so
        # that its owner stops waiting for one.
        self.lost = lost
        self._tasks: dict[asyncio.Task[T], int] = {}
        self._done: list[T] = []
        self._ready: asyncio.Event | None = None  # made in the loop that uses it
        self._freed: asyncio.Future[None] | None = None  # a slot came free (`start` waits on it)

    def _event(self) -> asyncio.Event:
        if self._ready is None:
            self._ready = asyncio.Event()
        return self._ready

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def finished(self) -> int:
        """Outcomes waiting to be taken."""
        return len(self._done)

    def _stopping(self) -> bool:
        return self.stopping is not None and self.stopping()

    async def start(self, key: int, send: Callable[[], Awaitable[T]]) -> bool:
        """Start one send once a slot is free; False (nothing started) when the dispatcher
        is stopping. Returns after one turn of the loop, in which the send has begun."""
        while len(self._tasks) >= self.limit:
            if self._stopping():
                return False
            # Woken by the next send to finish (`_finish`), or after DRAIN_POLL_S to look again.
            self._freed = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(DRAIN_POLL_S):
                    await self._freed
            except TimeoutError:
                pass
        if self._stopping():
            return False
        task: asyncio.Task[T] = asyncio.ensure_future(send())
        self._tasks[task] = key
        task.add_done_callback(self._finish)
        # One start per turn of the loop: the next build waits until the sockets were looked at.
        await asyncio.sleep(0)
        return True

    def _finish(self, task: asyncio.Task[T]) -> None:
        key = self._tasks.pop(task, None)
        if self._freed is not None and not self._freed.done():
            self._freed.set_result(None)
        if task.cancelled():
            return  # `drain` hands it back
        exc = task.exception()
        if exc is not None:  # send_one catches what a channel raises: a bug of ours
            log.error("a send failed outside its channel", exc_info=exc)
            if self.lost is not None and key is not None:
                self.lost(key)
            return  # its row stays leased, and is sent again when the lease runs out
        self.put(task.result())

    def put(self, outcome: T) -> None:
        """An outcome to record with the sends' (a send handed back before it started)."""
        self._done.append(outcome)
        self._event().set()

    def take(self) -> list[T]:
        out, self._done = self._done, []
        self._event().clear()
        return out

    async def wait_finished(self, timeout: float | None = None) -> None:
        """Until an outcome is waiting to be taken (or `timeout` passed)."""
        if self._done:
            return
        try:
            await asyncio.wait_for(self._event().wait(), timeout)
        except TimeoutError:
            pass

    def wake(self) -> None:
        """Wake a `wait_finished` (the dispatcher is ending)."""
        self._event().set()

    async def settle(self, grace_s: float) -> list[int]:
        """Wait for the sends under way. Once the dispatcher is stopping they get `grace_s`
        (real time: a drain is bounded by the operator's shutdown deadline), then are
        cancelled; returns the keys of those cancelled (their outcomes are not taken)."""
        while self._tasks and not self._stopping():
            await asyncio.wait(set(self._tasks), timeout=DRAIN_POLL_S)
        if not self._tasks:
            return []
        deadline = time.monotonic() + grace_s
        while self._tasks and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(set(self._tasks), timeout=min(left, DRAIN_POLL_S))
        cancelled = dict(self._tasks)
        for task in cancelled:
            task.cancel()
        await asyncio.gather(*cancelled, return_exceptions=True)
        return [key for task, key in cancelled.items() if task.cancelled()]
