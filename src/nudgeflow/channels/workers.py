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
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from nudgeflow.channels.base import TransientError

log = logging.getLogger("nudgeflow.workers")

T = TypeVar("T")


def _warm() -> None:
    # Import the content stack once at start, not on a message's clock.
    import nudgeflow.channels.email.build
    import nudgeflow.content.email_jobs
    import nudgeflow.content.email_render
    import nudgeflow.content.templates  # noqa: F401


class WorkerPool:
    """`await pool.run(fn, arg)`: fn(arg) in a worker process (fn and arg picklable)."""

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError("a worker pool needs at least one process")
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"), initializer=_warm
            )
        return self._executor

    async def run(self, fn: Callable[[Any], T], arg: Any) -> T:
        executor = self._pool()
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, arg)
        except BrokenProcessPool:
            log.error("a worker process died; the pool is replaced")
            if self._executor is executor:
                self._executor = None
                executor.shutdown(wait=False, cancel_futures=True)
            raise TransientError("the build worker process died") from None

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
