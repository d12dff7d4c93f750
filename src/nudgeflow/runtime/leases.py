"""The lease keeper: an engine worker's hold on its partitions, renewed on a clock
(issue 17; docs/partitions.md). The SQL is store/partition_leases.py's.

Each `tick` is one transaction: the worker's heartbeat, then a claim (take free or expired
leases up to the worker's quota, give back a surplus another worker waits for, renew the
rest). Run it every `heartbeat_ms`; a lease lasts `ttl_ms` from its last renewal. So when a
worker dies, its leases expire at most `ttl_ms` after its last tick, and every survivor
ticks within `heartbeat_ms` after that: its partitions have new owners within
ttl + heartbeat (6 s + 2 s by default, against the 10 s target of issue 17).

Time comes from the injected clock: tests drive `tick` by hand on a virtual clock; `run`
is a plain loop for a thread of its own, waiting on an Event between ticks.

Today no engine worker uses this: it is a building block of the distributed runtime, which
a later phase wires into the engine's loop (each decision transaction calling
store/partition_leases.fence with the epoch `owned` gives for its partition).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.errors import EngineRuntimeError
from nudgeflow.model.partitions import check_partitions, ranges
from nudgeflow.store import partition_leases as store

log = logging.getLogger("nudgeflow.runtime.leases")

DEFAULT_TTL_MS = 6000
DEFAULT_HEARTBEAT_MS = 2000


class LeaseSettingsError(EngineRuntimeError, ValueError):
    """A lease TTL or heartbeat interval the keeper cannot keep leases with."""


@dataclass(frozen=True)
class LeaseTick:
    """The worker's leases after a tick ({partition: epoch}) and what changed in it."""

    owned: dict[int, int]
    taken: tuple[int, ...]  # leases this tick took (each with a new epoch)
    given_back: tuple[int, ...]  # surplus given back to a worker short of its quota
    lost: tuple[int, ...]  # held before this tick, now another worker's (or at another epoch)
    live_workers: int
    quota: int

    @property
    def changed(self) -> bool:
        return bool(self.taken or self.given_back or self.lost)


def new_worker_id() -> str:
    """A worker id that names where it runs: host, pid and a random suffix (a restarted
    process with a recycled pid is another worker)."""
    return f"{socket.gethostname()[:50]}:{os.getpid()}:{secrets.token_hex(4)}"


class LeaseKeeper:
    def __init__(
        self,
        engine: Engine,
        worker_id: str,
        partitions: int,
        clock: Clock,
        ttl_ms: int = DEFAULT_TTL_MS,
        heartbeat_ms: int = DEFAULT_HEARTBEAT_MS,
        *,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        check_partitions(partitions)
        if heartbeat_ms <= 0 or ttl_ms <= heartbeat_ms:
            # A lease must outlive the wait for its next renewal, or a healthy worker loses
            # its partitions between two ticks.
            raise LeaseSettingsError(
                f"the lease TTL ({ttl_ms} ms) must be longer than the heartbeat interval ({heartbeat_ms} ms),"
                " and the interval positive"
            )
        self.engine = engine
        self.worker_id = worker_id
        self.partitions = partitions
        self.clock = clock
        self.ttl_ms = ttl_ms
        self.heartbeat_ms = heartbeat_ms
        self.host = host if host is not None else socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self._owned: dict[int, int] = {}
        self._valid_until_ms = 0  # the leases' expiry as of the last tick that committed
        self._registered = False

    def _now_ms(self) -> int:
        return to_ms(self.clock.now())

    def tick(self) -> LeaseTick:
        """Heartbeat, claim and renew in one transaction; the leases after it and what changed.

        A database error propagates: the leases the last good tick renewed stay valid until
        they expire (`owned` turns empty then), as they do for every other worker."""
        now = self._now_ms()
        before = self._owned
        with self.engine.begin() as conn:
            if not store.heartbeat(conn, self.worker_id, now):
                store.register_worker(conn, self.worker_id, host=self.host, pid=self.pid, now_ms=now)
            claim = store.claim(conn, self.worker_id, self.partitions, now, self.ttl_ms)
        self._owned = dict(claim.owned)
        self._valid_until_ms = now + self.ttl_ms
        lost = tuple(
            sorted(p for p, epoch in before.items() if claim.owned.get(p) != epoch and p not in claim.given_back)
        )
        result = LeaseTick(self.owned_now(), claim.taken, claim.given_back, lost, claim.live_workers, claim.quota)
        if result.changed:
            log.info(
                "partition leases changed",
                extra={
                    "worker": self.worker_id,
                    "owned": ranges(result.owned),
                    "taken": ranges(result.taken),
                    "given_back": ranges(result.given_back),
                    "lost": ranges(result.lost),
                },
            )
        return result

    def owned_now(self) -> dict[int, int]:
        """The leases as of the last tick, while they have not expired by this worker's clock
        ({} after): a worker stops deciding a partition it can no longer be sure it holds.
        The guarantee is `fence`, in the deciding transaction; this only saves the work."""
        if self._now_ms() >= self._valid_until_ms:
            return {}
        return dict(self._owned)

    def drain(self) -> tuple[int, ...]:
        """Give back every lease at once and mark the worker stopped (a graceful stop: the
        others take the partitions at their next tick instead of after the TTL)."""
        with self.engine.begin() as conn:
            released = store.stop_worker(conn, self.worker_id, self._now_ms())
        self._owned = {}
        self._valid_until_ms = 0
        if released:
            log.info("partition leases released", extra={"worker": self.worker_id, "released": ranges(released)})
        return released

    def run(self, stop: threading.Event) -> None:
        """Tick every heartbeat until `stop` is set, then drain: the body of a thread of its
        own. A failed tick is logged and tried again at the next heartbeat."""
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except SQLAlchemyError as exc:
                    log.warning(
                        "partition lease tick failed", extra={"worker": self.worker_id, "error": type(exc).__name__}
                    )
                stop.wait(self.heartbeat_ms / 1000)
        finally:
            try:
                self.drain()
            except SQLAlchemyError as exc:
                # The leases expire on their own after the TTL.
                log.warning(
                    "partition leases not released", extra={"worker": self.worker_id, "error": type(exc).__name__}
                )
