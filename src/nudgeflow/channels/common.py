"""What every channel may use: the error for a target gone for good, content's errors as a
channel's, a token bucket for send rates, and a per-workspace configuration cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from nudgeflow.channels.base import PermanentError, TransientError
from nudgeflow.content.errors import RenderError
from nudgeflow.core.clock import Clock

T = TypeVar("T")


class TargetGone(PermanentError):
    """The service says this subscription or token will never work again: delete it."""


def permanent_from_render(exc: RenderError) -> PermanentError:
    """Content that cannot be rendered, as the channel's failure: no retry will help, and
    the reason is content's own."""
    return PermanentError(exc.reason)


Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """`rate` per second, bursts of up to `burst`; waiters are served in turn."""

    def __init__(self, rate: float, burst: float | None, clock: Clock, sleep: Sleep) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self.clock = clock
        self.sleep = sleep
        self.tokens = self.burst
        self.stamp = clock.monotonic()
        self._lock: asyncio.Lock | None = None
        self._loop: Any = None

    async def take(self) -> None:
        if self.rate <= 0:
            return
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._lock = loop, asyncio.Lock()
        assert self._lock is not None
        async with self._lock:
            while True:
                now = self.clock.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await self.sleep((1 - self.tokens) / self.rate)


class WorkspaceCache(Generic[T]):
    """A workspace's own configuration (SMTP settings, push credentials), read by `load` in
    a worker thread and kept for `ttl_s`, so a send reads the database at most that often.
    A change made in the CLI or the API takes effect within `ttl_s`, or at once after
    `invalidate`. `load` None: there is no database, and no workspace has its own.

    `what` names the configuration in the failure reasons ("SMTP settings"); a `load` that
    raises one of `invalid` fails the message for good (the stored configuration is wrong),
    any other error is transient (the database is away).

    Many messages of one workspace arrive at once when its entry expires: they share one
    `load`, its result or its error."""

    def __init__(
        self,
        load: Callable[[str], T | None] | None,
        clock: Clock,
        what: str,
        invalid: type[Exception] | tuple[type[Exception], ...] = (),
        ttl_s: float = 30.0,
    ) -> None:
        self.load = load
        self.clock = clock
        self.what = what
        self.invalid = invalid
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, T | None]] = {}
        self._loading: dict[str, asyncio.Future[T | None]] = {}

    def invalidate(self, workspace_id: str | None = None) -> None:
        if workspace_id is None:
            self._cache.clear()
        else:
            self._cache.pop(workspace_id, None)

    async def get(self, workspace_id: str) -> T | None:
        now = self.clock.monotonic()
        hit = self._cache.get(workspace_id)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        pending = self._loading.get(workspace_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
        self._loading[workspace_id] = future
        try:
            own = await self._read(workspace_id)
            self._cache[workspace_id] = (now, own)
            future.set_result(own)
            return own
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            del self._loading[workspace_id]

    async def _read(self, workspace_id: str) -> T | None:
        if self.load is None:
            return None
        try:
            return await asyncio.to_thread(self.load, workspace_id)
        except self.invalid as exc:
            raise PermanentError(f"the workspace's {self.what} are invalid: {exc}") from None
        except Exception as exc:
            raise TransientError(f"cannot read the workspace's {self.what}: {type(exc).__name__}") from None
