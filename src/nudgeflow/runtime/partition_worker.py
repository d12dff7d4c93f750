"""A partitioned engine worker: `serve --role engine` (docs/partitions.md, docs/roles.md).

Any number of these run on one PostgreSQL database. Each holds leases on some of the P
partitions (runtime/leases.py keeps them, on a thread of its own) and, in a loop, decides
the events and fires the timers of the partitions it holds in fenced transactions
(runtime/partition_processor.py): the events of all its partitions with work in shared
transactions (one per batch, every partition fenced and its position saved in it: events
spread thin over 64 partitions, the default count, would otherwise make batches of a few
events each), the timers one partition at a time. When a worker dies its leases expire after the TTL and the
others take its partitions, starting from the positions it committed.

Each round of the loop first asks the database which of its partitions have work: events
past their position (the head of the partition's offsets is ahead) or a timer due. Only
those are visited, so an idle worker costs one query per poll.

The owner of partition 0 is the *coordinator*: it also runs the work that is not one
partition's — backfills of journeys just published, segments just applied, and looks at the
experiments. A backfill or apply batch writes people of any partition, so its transaction
first locks every partition's lease row (store/partition_work.lock_all_partitions): the
partitions' owners wait for that one batch, and no state is ever written by two
transactions at once.

Batches have the embedded runtime's safety net (runtime/stages.py), one partition at a
time: when a shared batch fails, that round decides each partition on its own, where a
failing batch is retried smaller and an item that fails alone three times is set aside. A
lost lease is not a failure: the transaction rolls back, and the partition is left to its
new owner.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.runtime.backfill import BACKFILL_BATCH, ReadAhead, backfill_batch, skip_profile
from nudgeflow.runtime.experiments import ExperimentLooks, look_at_experiments
from nudgeflow.runtime.leases import DEFAULT_HEARTBEAT_MS, DEFAULT_TTL_MS, LeaseKeeper, new_worker_id
from nudgeflow.runtime.partition_processor import (
    drop_partition_timer,
    fire_partition_timers,
    process_partition_events,
    process_partitions_events,
    skip_partition_event,
)
from nudgeflow.runtime.processor import EngineCache, RuntimeStats
from nudgeflow.runtime.segments import APPLY_BATCH, apply_batch
from nudgeflow.runtime.segments import ReadAhead as SegmentReadAhead
from nudgeflow.runtime.segments import skip_profile as skip_segment_profile
from nudgeflow.runtime.stages import OUTAGE, DirectRunner, Stage
from nudgeflow.store import partition_log, partition_work
from nudgeflow.store.partition_leases import LeaseLost, fence

log = logging.getLogger("nudgeflow.runtime")

COORDINATOR = 0  # the partition whose owner runs the work that is not one partition's


@dataclass
class WorkerStats:
    """What the worker's leases did: for /metrics."""

    lease_moves: int = 0  # partitions taken or lost by this worker
    fenced: int = 0  # batches rolled back because the lease had moved
    waits: int = 0  # batches cut short to wait for another partition to drain a merge


class PartitionWorker:
    def __init__(
        self,
        engine_db: Engine,
        clock: Clock,
        engines: EngineCache,
        stats: RuntimeStats,
        *,
        partitions: int | None = None,
        batch_events: int = 1000,
        batch_timers: int = 1000,
        batch_ms: float = 15.0,
        poll_ms: float = 50.0,
        experiment_look_ms: float = 60_000,
        ttl_ms: int = DEFAULT_TTL_MS,
        heartbeat_ms: int = DEFAULT_HEARTBEAT_MS,
        worker_id: str | None = None,
    ) -> None:
        self.engine_db = engine_db
        self.clock = clock
        self.engines = engines
        self.stats = stats
        self.worker_stats = WorkerStats()
        if partitions is None:
            # The deployment's count, chosen before the log's first event (docs/partitions.md).
            with engine_db.connect() as conn:
                partitions = partition_log.partition_count(conn)
        self.partitions = partitions
        self.keeper = LeaseKeeper(
            engine_db, worker_id or new_worker_id(), partitions, clock, ttl_ms=ttl_ms, heartbeat_ms=heartbeat_ms
        )
        self.runner = DirectRunner(engine_db)
        self._batch = (batch_events, batch_timers, batch_ms)
        self._poll_s = poll_ms / 1000
        self._events: dict[int, Stage] = {}
        self._timers: dict[int, Stage] = {}
        self._looks = ExperimentLooks(experiment_look_ms)
        self._ahead = ReadAhead()
        self._segment_ahead = SegmentReadAhead()
        self._coordination: tuple[Stage, Stage] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def worker_id(self) -> str:
        return self.keeper.worker_id

    # -- one round, for the loop and for tests on a virtual clock ---------------------------

    def tick_leases(self) -> dict[int, int]:
        """Heartbeat, claim and renew (what the keeper's thread does every heartbeat)."""
        tick = self.keeper.tick()
        self.worker_stats.lease_moves += len(tick.taken) + len(tick.lost)
        return tick.owned

    def run_once(self) -> bool:
        """One round over the partitions held now that have work; True when work may remain."""
        owned = self.keeper.owned_now()
        if not owned:
            return False
        now_ms = to_ms(self.clock.now())
        with self.engine_db.connect() as conn:
            busy = partition_work.partitions_with_work(conn, sorted(owned), now_ms)
            conn.rollback()
        more = False
        one_by_one = False
        if busy:
            try:
                more = self._events_together({p: owned[p] for p in busy})
            except LeaseLost as exc:
                self.worker_stats.fenced += 1
                log.warning("partition lease moved; its batch rolled back", extra={"partition": exc.partition})
                one_by_one = True
            except OUTAGE:
                raise
            except Exception:  # the safety net is per partition: find the item there
                log.exception("event processing over several partitions failed; one partition at a time")
                one_by_one = True
        for partition in busy:
            epoch = owned[partition]
            if self._stop.is_set():
                return True
            try:
                if one_by_one:
                    more = self._events_of(partition, epoch).drain(self.runner, max_batches=10)[1] or more
                more = self._timers_of(partition, epoch).drain(self.runner, max_batches=10)[1] or more
            except LeaseLost as exc:
                self.worker_stats.fenced += 1
                log.warning("partition lease moved; its batch rolled back", extra={"partition": exc.partition})
        epoch0 = owned.get(COORDINATOR)
        if epoch0 is not None and not self._stop.is_set():
            try:
                more = self._coordinate(epoch0) or more
            except LeaseLost:
                self.worker_stats.fenced += 1
        return more

    def run_until_idle(self, max_rounds: int = 100) -> None:
        """Rounds until one finds nothing to do (tests; a VirtualClock does not move here)."""
        for _ in range(max_rounds):
            if not self.run_once():
                return
        raise RuntimeError(f"the partition worker was still busy after {max_rounds} rounds")

    def _events_together(self, epochs: dict[int, int], max_batches: int = 10) -> bool:
        """The partitions' events in shared transactions (partition_processor.
        process_partitions_events): up to `max_batches`, while one partition still fills its
        share. True when more may be waiting."""
        for _ in range(max_batches):
            if self._stop.is_set():
                return True
            done = self.runner.call(
                lambda conn: process_partitions_events(
                    conn, self.engines, self.clock, epochs, self._batch[0], self.stats
                )
            )
            if not done.full:
                return False
        return True

    def _events_of(self, partition: int, epoch: int) -> Stage:
        stage = self._events.get(partition)
        if stage is None or stage.epoch != epoch:
            batch, _, budget = self._batch
            stage = self._events[partition] = Stage(
                f"event processing (partition {partition})",
                lambda conn, n: process_partition_events(
                    conn, self.engines, self.clock, partition, epoch, n, self.stats
                ),
                lambda conn: self._note_skip(
                    skip_partition_event(conn, partition, epoch, to_ms(self.clock.now())), timer=False
                ),
                batch,
                budget,
                reraise=(LeaseLost,),
            )
            stage.epoch = epoch
        return stage

    def _timers_of(self, partition: int, epoch: int) -> Stage:
        stage = self._timers.get(partition)
        if stage is None or stage.epoch != epoch:
            _, batch, budget = self._batch
            stage = self._timers[partition] = Stage(
                f"timer firing (partition {partition})",
                lambda conn, n: fire_partition_timers(conn, self.engines, self.clock, partition, epoch, n, self.stats),
                lambda conn: self._note_skip(
                    drop_partition_timer(conn, partition, epoch, to_ms(self.clock.now())), timer=True
                ),
                batch,
                budget,
                reraise=(LeaseLost,),
            )
            stage.epoch = epoch
        return stage

    def _note_skip(self, what: str | None, *, timer: bool) -> str | None:
        if what is not None:
            if timer:
                self.stats.timer_errors += 1
            else:
                self.stats.event_errors += 1
            self.stats.note_skip(what)
        return what

    def _coordinate(self, epoch: int) -> bool:
        """Backfills, segment applies and experiment looks: the coordinator's, one batch each."""
        backfill, apply = self._coordinator_stages(epoch)
        more = backfill.drain(self.runner, max_batches=1)[1]
        more = apply.drain(self.runner, max_batches=1)[1] or more
        now_ms = to_ms(self.clock.now())
        if self._looks.due(now_ms):
            self._looks.done(now_ms)

            def look(conn: Connection) -> object:
                fence(conn, COORDINATOR, epoch)
                return look_at_experiments(conn, now_ms)

            try:
                self.runner.call(look)
            except (LeaseLost, *OUTAGE):
                raise
            except Exception:  # a bug in judging one experiment must not stop the engine
                log.exception("experiment look failed")
        return more

    def _coordinator_stages(self, epoch: int) -> tuple[Stage, Stage]:
        if self._coordination is not None and self._coordination[0].epoch == epoch:
            return self._coordination

        def everywhere(work: Callable[[Connection, int], int]) -> Callable[[Connection, int], int]:
            def run(conn: Connection, n: int) -> int:
                fence(conn, COORDINATOR, epoch)
                partition_work.lock_all_partitions(conn)
                return work(conn, n)

            return run

        _, _, budget = self._batch
        backfill = Stage(
            "backfill",
            everywhere(lambda conn, n: backfill_batch(conn, self.engines, self.clock, n, self.stats, self._ahead)),
            lambda conn: skip_profile(conn, self.clock),
            BACKFILL_BATCH,
            budget,
            reraise=(LeaseLost,),
        )
        apply = Stage(
            "segment apply",
            everywhere(lambda conn, n: apply_batch(conn, self.engines, self.clock, n, self.stats, self._segment_ahead)),
            lambda conn: skip_segment_profile(conn, self.clock),
            APPLY_BATCH,
            budget,
            reraise=(LeaseLost,),
        )
        backfill.epoch = apply.epoch = epoch
        self._coordination = (backfill, apply)
        return self._coordination

    # -- the threads --------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self.keeper.run, args=(self._stop,), name="nudgeflow-leases", daemon=True),
            threading.Thread(target=self._loop, name="nudgeflow-engine-worker", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info("partitioned engine worker started", extra={"worker": self.worker_id})

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the current batch, then give the leases back (the keeper's thread drains
        them as it ends), so the other workers take the partitions at once."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        log.info("partitioned engine worker stopped", extra={"worker": self.worker_id})

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _loop(self) -> None:
        outage = 0
        while not self._stop.is_set():
            try:
                more = self.run_once()
                outage = 0
            except OUTAGE as exc:
                outage += 1
                log.warning("engine worker waits for the database", extra={"error": type(exc).__name__})
                self._stop.wait(min(5.0, 0.1 * 2**outage))
                continue
            except Exception:  # a bug in the loop itself: log, breathe, go on
                log.exception("engine worker loop error")
                self._stop.wait(1.0)
                continue
            if not more:
                self._stop.wait(self._poll_s)
