"""The embedded runtime: event processing, timers and outbox dispatch inside the serving process.

Two background threads, each a loop:
- the engine loop decides new events (`process_events`) and fires due timers
  (`fire_timers`). It is woken at once when the group committer commits events (a commit
  listener), and otherwise looks for due timers every `engine_poll_ms`. Events and timers
  of a person are decided by this one loop, one batch at a time, which is what keeps a
  person's work in order.
- the dispatch loop claims due outbox messages and delivers them (`Dispatcher`), its
  claims, sends and records overlapping (runtime/dispatch_pipeline.py). It is woken when
  the engine queues messages, and polls for retries that fall due.

The engine loop also looks at live experiments now and then (runtime/experiments.py: once
at start, then every `experiment_look_seconds` of the injected clock), to pause variants
that breach a guardrail and route to called winners; its decisions reach the engine at
its next batch.

Every transaction is a job of the one writer thread (`GroupCommitter.submit_job`), on
SQLite and on PostgreSQL alike. On SQLite that is the only way to write without fighting
over the lock. On PostgreSQL it keeps this process's appends to the event log in commit
order; other processes (ingest-only servers, imports) can still commit a smaller seq after
a larger one became visible, which the cursor's gaps handle (runtime/processor.py). It
also keeps the engine's profile-trait updates and ingest's from overwriting each other.
Remote sends (SMTP, push) happen outside any job.

Which loops run is the settings' role (`serve --role`, docs/roles.md): "all" runs both
(the embedded runtime), "engine" the engine loop alone, "dispatch" the dispatch loop
alone (PostgreSQL; any number of such processes share the outbox).

One engine per database: `start` (or `serve`, earlier, through `claim_database`) takes the
engine lock (store/engine_lock.py) and `stop` frees it; a second engine is refused, naming
the first. A dispatch-only runtime takes no engine lock; it holds the dispatcher mark
instead. Holding the lock, an engine that dispatches itself ("all") reclaims at start the
sends its dead predecessor leased, unless dispatch processes are alive (their leases are
theirs); an engine-only one never does.

`stop` drains (SIGTERM, through `serve`'s shutdown): the engine loop ends after its
current batch and frees the lock; the dispatch loop hands back the sends it has not
started, gives those under way `drain_seconds` to finish, hands back the rest
(runtime/dispatcher.py), records what finished, and ends.

A batch that fails is retried at half the size, down to one item; an item that fails on
its own three times is set aside (the event skipped, the timer dropped, the message
failed) and logged, so no event, timer or message can stop a loop. Database outages are
waited out, never counted against an item.

`run_until_idle` drives the same steps synchronously for tests and simulations on a
VirtualClock: process all events, fire all due timers, dispatch all due messages, and
repeat until a round changes nothing; then look at the experiments if a look is due.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine

from nudgeflow.channels.base import ChannelRegistry
from nudgeflow.channels.wiring import ChannelSetup
from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.runtime.backfill import (
    BACKFILL_BATCH,
    BACKFILL_BUDGET_MS,
    ReadAhead,
    backfill_batch,
    skip_profile,
)
from nudgeflow.runtime.dispatch_pipeline import DispatchPipeline
from nudgeflow.runtime.dispatcher import Dispatcher, DispatchRound, RetryPolicy
from nudgeflow.runtime.experiments import ExperimentLooks, Look, look_at_experiments
from nudgeflow.runtime.partition_worker import PartitionWorker
from nudgeflow.runtime.processor import (
    EngineCache,
    RuntimeStats,
    fire_timers,
    lag,
    process_events,
    skip_next_event,
)
from nudgeflow.runtime.segments import APPLY_BATCH, APPLY_BUDGET_MS, apply_batch
from nudgeflow.runtime.segments import ReadAhead as SegmentReadAhead
from nudgeflow.runtime.segments import skip_profile as skip_segment_profile
from nudgeflow.runtime.stages import OUTAGE, DirectRunner, Runner, Stage, WriterRunner
from nudgeflow.runtime.state_cache import StateCache
from nudgeflow.settings import ROLE_ALL, ROLE_DISPATCH, ROLE_ENGINE, Settings
from nudgeflow.store import backlog, engine_lock, outbox, partition_work
from nudgeflow.store.engine_state import drop_timers, next_due_timer
from nudgeflow.store.group_commit import GroupCommitter
from nudgeflow.store.outbox import PENDING

log = logging.getLogger("nudgeflow.runtime")

LOCK_CHECK_S = 1.0  # how often the engine loop makes sure it still holds the engine lock


@dataclass
class IdleReport:
    rounds: int = 0
    events: int = 0
    timers: int = 0
    messages: int = 0
    backfilled: int = 0  # profiles a journey's backfill looked at
    segment_applied: int = 0  # profiles a segment's apply looked at


class EmbeddedRuntime:
    def __init__(
        self,
        engine_db: Engine,
        writer: GroupCommitter | None,
        clock: Clock,
        settings: Settings,
        *,
        channels: ChannelRegistry | None = None,
        engines: EngineCache | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.engine_db = engine_db
        self.writer = writer
        self.clock = clock
        self.settings = settings
        if settings.role not in (ROLE_ALL, ROLE_ENGINE, ROLE_DISPATCH):
            raise ValueError(f"a runtime has no role {settings.role!r}: all, engine or dispatch")
        # Which loops this process runs (docs/roles.md).
        self.runs_engine = settings.role in (ROLE_ALL, ROLE_ENGINE)
        self.runs_dispatch = settings.role in (ROLE_ALL, ROLE_DISPATCH)
        # `--role engine` is a partitioned engine worker (runtime/partition_worker.py): any
        # number share the partitions. `all` keeps the single engine and its cursor.
        self.partitioned = settings.role == ROLE_ENGINE
        self._worker: PartitionWorker | None = None
        self.runner: Runner = WriterRunner(writer) if writer is not None else DirectRunner(engine_db)
        self.stats = RuntimeStats()
        self.engines = engines or EngineCache(states=StateCache(int(settings.engine_state_cache_mb * 2**20)))
        self.channels = channels or ChannelRegistry.development(settings.log_channels)
        # "email" over SMTP when configured (env default or a workspace's own), decided when
        # the runtime first runs: building the app must not open the database, which may
        # not be migrated yet.
        # "push" likewise, once push is in use (a subscription, a device token, FCM or APNs
        # credentials); looked for again now and then, since the first browser may
        # subscribe while the server runs.
        self._channel_setup = ChannelSetup(self.channels, engine_db, settings, clock, pending=channels is None)
        self.dispatcher = Dispatcher(
            self.channels,
            clock,
            policy
            or RetryPolicy(
                max_attempts=settings.dispatch_max_attempts,
                lease_s=settings.dispatch_lease_seconds,
                max_lost_claims=settings.dispatch_max_lost_claims,
            ),
            self.stats,
        )
        self._ahead = ReadAhead()
        self._segment_ahead = SegmentReadAhead()
        self._engine_wake = threading.Event()
        self._dispatch_wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # start/stop
        # One engine per database (store/engine_lock.py): taken by `claim_database` (or
        # `start`), held until `stop`. run_until_idle takes none: it is for tests, the demo
        # and simulations, on databases of their own.
        self._engine_lock: engine_lock.EngineLock | None = None
        self._dispatcher_mark: engine_lock.DispatcherMark | None = None  # a dispatch-only runtime's
        self._lock_checked_at = 0.0
        self.leases_reclaimed = 0
        # Held by each background loop for one iteration, and by run_until_idle throughout:
        # when run_until_idle returns, no background work is half done (only committed
        # work, which it has seen through).
        self._engine_turn = threading.Lock()
        self._dispatch_turn = threading.Lock()
        # The experiment evaluator (runtime/experiments.py): a look at once, then every
        # experiment_look_seconds of the injected clock, in the engine loop's turn.
        self._experiment_looks = ExperimentLooks(settings.experiment_look_seconds * 1000)
        self.last_look: Look | None = None

    # -- the steps, as stages -------------------------------------------------------------

    def _stages(self) -> tuple[Stage, Stage, Stage]:
        s = self.settings
        events = Stage(
            "event processing",
            lambda conn, n: process_events(conn, self.engines, self.clock, n, self.stats),
            self._skip_next_event,
            s.engine_batch_events,
            s.engine_batch_ms,
        )
        timers = Stage(
            "timer firing",
            lambda conn, n: fire_timers(conn, self.engines, self.clock, n, self.stats),
            self._drop_next_timer,
            s.engine_batch_timers,
            s.engine_batch_ms,
        )
        dispatch = Stage("dispatch", lambda conn, n: 0, self._fail_next_message, s.dispatch_batch, s.engine_batch_ms)
        # Backfills of journeys just published: one batch per round of the loop, after the
        # round's events and timers, each a writer job within the same time budget.
        self._backfill = Stage(
            "backfill",
            lambda conn, n: backfill_batch(conn, self.engines, self.clock, n, self.stats, self._ahead),
            lambda conn: skip_profile(conn, self.clock),
            BACKFILL_BATCH,
            max(s.engine_batch_ms, BACKFILL_BUDGET_MS),
            before=self._read_ahead,
        )
        # Segments just applied, computed for the people already stored: likewise.
        self._segment_apply = Stage(
            "segment apply",
            lambda conn, n: apply_batch(conn, self.engines, self.clock, n, self.stats, self._segment_ahead),
            lambda conn: skip_segment_profile(conn, self.clock),
            APPLY_BATCH,
            max(s.engine_batch_ms, APPLY_BUDGET_MS),
            before=self._read_segment_ahead,
        )

        def claim(conn: Connection, limit: int) -> int:
            # The stage's unit is the claiming transaction; remote sends follow it (_dispatch).
            dispatch.last = self.dispatcher.claim_and_sink(conn, limit)
            return dispatch.last.claimed

        dispatch.work = claim
        return events, timers, dispatch

    def _read_ahead(self, size: int) -> None:
        """The backfill's next batch's past, read outside the writer (a shortcut only: on any
        failure the batch reads it in its own transaction)."""
        try:
            with self.engine_db.connect() as conn:
                self._ahead.read(conn, self.clock, size)
        except Exception as exc:
            log.debug("backfill read-ahead failed", extra={"error": type(exc).__name__})

    def _read_segment_ahead(self, size: int) -> None:
        """A segment apply's next batch's past, read outside the writer (a shortcut, as above)."""
        try:
            with self.engine_db.connect() as conn:
                self._segment_ahead.read(conn, self.clock, size)
        except Exception as exc:
            log.debug("segment apply read-ahead failed", extra={"error": type(exc).__name__})

    def _skip_next_event(self, conn: Connection) -> str | None:
        seq = skip_next_event(conn, to_ms(self.clock.now()))
        if seq is None:
            return None
        self.stats.event_errors += 1
        self.stats.note_skip(f"event:{seq}")
        return f"event:{seq}"

    def _drop_next_timer(self, conn: Connection) -> str | None:
        row = next_due_timer(conn, to_ms(self.clock.now()))
        if row is None:
            return None
        drop_timers(conn, [(row[0], row[1])])
        self.stats.timer_errors += 1
        self.stats.note_skip(f"timer:{row[0]}:{row[1]}")
        return f"timer:{row[0]}:{row[1]}"

    def _fail_next_message(self, conn: Connection) -> str | None:
        now_ms = to_ms(self.clock.now())
        row = outbox.next_due(conn, now_ms)
        if row is None:
            return None
        outbox.fail(conn, row[0], "could not be dispatched (see the log)", now_ms)
        self.stats.messages_failed += 1
        return f"message:{row[1]}"

    def _dispatch(
        self, stage: Stage, send: Callable[[Any, int | None], list[Any]], max_batches: int | None
    ) -> tuple[int, bool, int]:
        """Dispatch rounds until one comes back short: (messages, more may remain, events appended)."""
        total = appended = batches = 0
        while max_batches is None or batches < max_batches:
            if batches and self._stopping.is_set():  # draining: claim nothing more
                return total, True, appended
            batches += 1
            size = stage.size
            stage.last = DispatchRound()
            done = stage.run(self.runner)
            if done == stage.RETRY:
                continue
            round_ = stage.last
            appended += round_.events_appended
            if round_.remote:
                outcomes = send(round_.remote, round_.lease_until_ms)
                record = partial(self.dispatcher.record_remote, outcomes=outcomes)
                appended += self.runner.call(record)
            total += done
            if done < size:
                return total, False, appended
        return total, True, appended

    # -- driving it by hand -----------------------------------------------------------------

    def run_until_idle(self, max_rounds: int = 100) -> IdleReport:
        """Process all events, fire all due timers, dispatch all due messages; repeat until a
        round does nothing; then look at the experiments if a look is due. For tests and
        simulation: with a VirtualClock, advance the clock, then call this. Database errors
        propagate (there is no outage to wait out)."""
        self._channel_setup.email()
        self._channel_setup.look_for_push_now()  # every call looks (tests add subscriptions between calls)
        self._channel_setup.push()
        with self._engine_turn, self._dispatch_turn:
            return self._run_until_idle(max_rounds)

    def look_at_experiments(self) -> Look | None:
        """Look at the live experiments when a look is due on the clock (and at the first
        call); the look, or None when none was due. Its decisions reach the engine at its
        next batch."""
        now_ms = to_ms(self.clock.now())
        if not self._experiment_looks.due(now_ms):
            return None
        # Due again after the interval even if this look fails: a failing look must not
        # be retried on every round of the loop.
        self._experiment_looks.done(now_ms)
        self.last_look = self.runner.call(lambda conn: look_at_experiments(conn, now_ms))
        return self.last_look

    def _run_until_idle(self, max_rounds: int) -> IdleReport:
        events, timers, dispatch = self._stages()
        send_remote = _run_coroutine(self.dispatcher.send_remote)

        def send(leased: Any, lease_until_ms: int | None) -> list[Any]:
            return list(send_remote(leased, None, 0.0, lease_until_ms))

        report = IdleReport()
        for _ in range(max_rounds):
            report.rounds += 1
            n_events, _ = events.drain(self.runner)
            n_timers, _ = timers.drain(self.runner)
            n_backfilled, _ = self._backfill.drain(self.runner)
            report.backfilled += n_backfilled
            n_applied, _ = self._segment_apply.drain(self.runner)
            report.segment_applied += n_applied
            n_messages, _, _ = self._dispatch(dispatch, send, None)
            report.events += n_events
            report.timers += n_timers
            report.messages += n_messages
            if n_events == n_timers == n_messages == n_backfilled == n_applied == 0:
                # Idle, as the loop looks after its batches: on the freshest counts; what it
                # decides reaches the engine at its next batch (the next call).
                self.look_at_experiments()
                return report
        raise RuntimeError(f"the runtime was still busy after {max_rounds} rounds")

    # -- the background loops ---------------------------------------------------------------

    def unconfigured_channels(self) -> list[str]:
        """Channel names the log channel serves for want of a real one: their messages are
        recorded as `logged`, never sent (what `serve` says at start and /healthz shows)."""
        out = []
        for name in self.channels.names():
            channel = self.channels.get(name)
            if name != "log" and channel is not None and channel.logs_only:
                out.append(name)
        return out

    def push_targets_changed(self) -> None:
        """A subscription or device token was just stored: look at once whether push is now
        in use, instead of at the next 30-second check."""
        self._push_checked_at = -1e9
        self._dispatch_wake.set()

    def forget_people(self, profile_ids: list[str]) -> None:
        """Erased people: drop the states the engine kept of them in memory
        (runtime/state_cache.py)."""
        self.engines.states.forget(profile_ids)

    def claim_database(self) -> None:
        """Take the engine lock of the database, or raise engine_lock.EngineLocked naming
        the engine that holds it. `serve` calls this before it listens, so that a second
        engine exits at once; `start` calls it otherwise. A dispatch-only runtime takes
        none (any number run at once)."""
        if self.partitioned and self._engine_lock is None:
            self._engine_lock = engine_lock.acquire_shared(self.engine_db, to_ms(self.clock.now()))
        elif self.runs_engine and self._engine_lock is None:
            self._engine_lock = engine_lock.acquire(self.engine_db, to_ms(self.clock.now()))
            self._lock_checked_at = time.monotonic()
            if self.engine_db.url.get_backend_name().startswith("postgres"):
                with self.engine_db.connect() as conn:
                    taken_over = partition_work.partitioned(conn)
                if taken_over:
                    self._engine_lock.release()
                    self._engine_lock = None
                    raise engine_lock.PartitionedDatabase()

    def _reclaim_leases(self) -> None:
        """Remote sends leased by a dead predecessor are due now, not when their lease ends:
        holding the lock and with no dispatch process alive (store/engine_lock.py), this
        engine knows no other dispatcher is alive to record them. Only for "all": an
        engine-only runtime sends nothing, and dispatch processes take expired leases."""
        if not (self.runs_engine and self.runs_dispatch):
            return
        now_ms = to_ms(self.clock.now())
        try:
            reclaimed = self.runner.call(lambda conn: engine_lock.reclaim_leases(conn, PENDING, now_ms))
        except OUTAGE as exc:  # they come back when their leases end
            log.warning("leases of a previous engine not reclaimed", extra={"error": type(exc).__name__})
            return
        if reclaimed < 0:
            log.info("dispatch processes are running: their leases are left to run out, not reclaimed")
            return
        self.leases_reclaimed = reclaimed
        # Each may have been sent before its process died: a possible resend, counted as a
        # lease that ran out is (nudgeflow_messages_redelivered_total, docs/roles.md).
        self.stats.messages_redelivered += reclaimed
        if self.leases_reclaimed:
            log.info("reclaimed the sends a previous engine had leased", extra={"messages": self.leases_reclaimed})

    def _holds_lock(self) -> bool:
        """Whether this engine may go on: its lock still held (checked every LOCK_CHECK_S),
        or taken again after its connection was lost. Another engine having taken it
        meanwhile stops this runtime's loops."""
        lock = self._engine_lock
        if lock is None or time.monotonic() - self._lock_checked_at < LOCK_CHECK_S:
            return True
        if lock.held():
            self._lock_checked_at = time.monotonic()
            return True
        lock.release()
        self._engine_lock = None
        try:
            self.claim_database()
        except engine_lock.EngineLocked as exc:
            log.error(
                "engine lock lost to another engine; this engine stops (ingest goes on)", extra={"reason": str(exc)}
            )
            self._stopping.set()
            self._dispatch_wake.set()
            return False
        except Exception as exc:  # the database is away: wait, and try again
            log.warning("engine waits to take its lock again", extra={"error": type(exc).__name__})
            return False
        log.warning("engine lock taken again after its connection was lost")
        return True

    def start(self) -> None:
        self.claim_database()
        self._reclaim_leases()
        if self.runs_dispatch and not self.runs_engine and self._dispatcher_mark is None:
            if not self.engine_db.url.get_backend_name().startswith("postgres"):
                raise ValueError("a dispatch-only runtime needs PostgreSQL (docs/roles.md)")
            self._dispatcher_mark = engine_lock.mark_dispatcher(self.engine_db)
        self._channel_setup.email()
        self._channel_setup.push()
        with self._lock:
            if self._threads:
                return
            self._stopping.clear()
            if self.writer is not None and self.runs_engine:
                self.writer.add_commit_listener(self._on_commit)
            if self.partitioned:
                self._worker = self._partition_worker()
                self._worker.start()
            elif self.runs_engine:
                self._threads.append(threading.Thread(target=self._engine_loop, name="nudgeflow-engine", daemon=True))
            if self.runs_dispatch:
                self._threads.append(
                    threading.Thread(target=self._dispatch_loop, name="nudgeflow-dispatch", daemon=True)
                )
            for thread in self._threads:
                thread.start()
            log.info("engine started" if self.runs_engine else "dispatcher started", extra={"role": self.settings.role})

    def stop(self, timeout: float | None = None) -> None:
        """Let each loop finish its current batch (a dispatch round drains: its sends under
        way get drain_seconds), then stop; each loop is waited for `timeout` seconds (default:
        the drain plus a minute). Call before the writer stops."""
        if timeout is None:
            timeout = self.settings.drain_seconds + 60.0
        with self._lock:
            worker, self._worker = self._worker, None
            if worker is not None:
                worker.stop(timeout)  # its batch finished, its leases given back
            if not self._threads:
                self.release_database()  # claimed by `serve`, never started (or a partition worker's)
                return
            # Waking the loops' waits; a dispatch round under way sees it too (its sends drain).
            self._stopping.set()
            self._engine_wake.set()
            self._dispatch_wake.set()
            for thread in self._threads:
                thread.join(timeout)
            self._threads = []
            if self.writer is not None and self.runs_engine:
                self.writer.remove_commit_listener(self._on_commit)
            self.release_database()
            log.info("engine stopped" if self.runs_engine else "dispatcher stopped", extra={"role": self.settings.role})

    def release_database(self) -> None:
        """Free the engine lock, or the dispatcher mark (`stop` does; for a claim whose
        runtime never started)."""
        if self._engine_lock is not None:
            self._engine_lock.release()
            self._engine_lock = None
        if self._dispatcher_mark is not None:
            self._dispatcher_mark.release()
            self._dispatcher_mark = None

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads) or (self._worker is not None and self._worker.running)

    def _partition_worker(self) -> PartitionWorker:
        s = self.settings
        return PartitionWorker(
            self.engine_db,
            self.clock,
            self.engines,
            self.stats,
            batch_events=s.engine_batch_events,
            batch_timers=s.engine_batch_timers,
            batch_ms=s.engine_batch_ms,
            experiment_look_ms=s.experiment_look_seconds * 1000,
        )

    def partition_view(self) -> dict[str, Any] | None:
        """For /metrics, in a partitioned engine worker (None elsewhere): each partition's lag
        (read from the database: every worker reports the same figures), and this worker's
        partitions, lease moves and fenced batches."""
        worker = self._worker
        if worker is None:
            return None
        with self.engine_db.connect() as conn:
            lags = {p: max(0, head - pos) for p, head, pos in partition_work.partition_lags(conn)}
        return {
            "lag": lags,
            "owned": len(worker.keeper.owned_now()),
            "lease_moves": worker.worker_stats.lease_moves,
            "fenced": worker.worker_stats.fenced,
        }

    def notify(self) -> None:
        """New events are in the log (the writer calls this after each commit)."""
        self._engine_wake.set()

    def _on_commit(self, result: Any, _requests: int) -> None:
        if getattr(result, "accepted", 1):
            self._engine_wake.set()

    def _pause(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _look_safely(self) -> None:
        try:
            self.look_at_experiments()
        except OUTAGE:
            self._experiment_looks.next_ms = None  # the database is away, not the look at fault: again soon
            raise  # waited out by the loop, as its batches' are
        except Exception:
            # A bug in judging one experiment must not stop the engine: logged, and looked
            # at again after the interval.
            log.exception("experiment look failed")

    def _engine_loop(self) -> None:
        events, timers, _ = self._stages()
        poll = self.settings.engine_poll_ms / 1000
        linger = self.settings.engine_linger_ms / 1000
        outage = 0
        ended = 0.0
        while not self._stopping.is_set():
            if linger and (rest := ended + linger - time.monotonic()) > 0:
                self._pause(rest)  # let the next commits' events join this batch
            self._engine_wake.clear()
            if not self._holds_lock():
                self._pause(1.0)
                continue
            queued_before = self.stats.messages_queued + self.stats.messages_failed_at_decision
            try:
                stop = self._stopping.is_set
                with self._engine_turn:
                    _, more_events = events.drain(self.runner, max_batches=10, stop=stop)
                    _, more_timers = timers.drain(self.runner, max_batches=10, stop=stop)
                    _, more_backfill = self._backfill.drain(self.runner, max_batches=1)
                    _, more_apply = self._segment_apply.drain(self.runner, max_batches=1)
                    more_timers = more_timers or more_backfill or more_apply
                    self._look_safely()
                outage = 0
            except OUTAGE as exc:
                if self._stopping.is_set():
                    break
                outage += 1
                self._lock_checked_at = 0.0  # the lock's connection may have gone with the rest
                log.warning("engine waits for the database", extra={"error": type(exc).__name__})
                self._pause(min(5.0, 0.1 * 2**outage))
                continue
            except Exception:  # a bug in the loop itself: log, breathe, go on
                log.exception("engine loop error")
                self._pause(1.0)
                continue
            # Linger only after a round that caught up: a backlog is drained without pauses.
            ended = 0.0 if (more_events or more_timers) else time.monotonic()
            if self.stats.messages_queued + self.stats.messages_failed_at_decision != queued_before:
                self._dispatch_wake.set()
            if not (more_events or more_timers):
                self._engine_wake.wait(poll)

    def _dispatch_loop(self) -> None:
        """The dispatcher's thread: claims, sends and records overlapping, on an event loop of
        its own (runtime/dispatch_pipeline.py), until `stop`."""
        _, _, dispatch = self._stages()
        cap = [dispatch.batch]
        claim_and_sink = self.dispatcher.claim_and_sink

        def work(conn: Connection, limit: int) -> int:
            dispatch.last = claim_and_sink(conn, min(limit, cap[0]))
            return dispatch.last.claimed

        dispatch.work = work

        def claim(limit: int) -> tuple[DispatchRound, int] | None:
            cap[0] = limit
            size = min(dispatch.size, limit)
            dispatch.last = DispatchRound()
            if dispatch.run(self.runner) == dispatch.RETRY:
                return None
            return dispatch.last, size

        def record(outcomes: list[Any]) -> int:
            return self.runner.call(partial(self.dispatcher.record_remote, outcomes=outcomes))

        def pipeline() -> DispatchPipeline:
            return DispatchPipeline(
                self.dispatcher,
                claim,
                record,
                batch=dispatch.batch,
                stop=self._stopping,
                wake=self._dispatch_wake,
                poll_s=self.settings.engine_poll_ms / 1000,
                grace_s=self.settings.drain_seconds,
                on_events=self._engine_wake.set,  # engagement events, for the engine
                before_claim=self._channel_setup.push,
                turn=self._dispatch_turn,
            )

        loop = asyncio.new_event_loop()
        try:
            while not self._stopping.is_set():
                try:
                    loop.run_until_complete(pipeline().run())
                except Exception:  # a bug in the loop itself (it drained): log, breathe, go on
                    log.exception("dispatch loop error")
                    self._pause(1.0)
        finally:
            # The remote channels' connections (SMTP pools, HTTP sessions) belong to this
            # loop: close them in it, or they leak with it.
            try:
                loop.run_until_complete(self._close_channels())
            except Exception:
                log.exception("closing the channels failed")
            loop.close()

    def close_channels(self) -> None:
        """Close the remote channels' connections: for a runtime driven by run_until_idle
        (tests, the demo), whose sends ran in short-lived event loops. `stop` does this for
        the background loops."""
        _run_coroutine(self._close_channels)()

    async def _close_channels(self) -> None:
        seen: set[int] = set()
        for name in self.channels.names():
            channel = self.channels.get(name)
            close = getattr(channel, "aclose", None)
            if channel is None or close is None or id(channel) in seen:
                continue
            seen.add(id(channel))
            await close()

    # -- metrics ------------------------------------------------------------------------------

    def lag(self) -> int:
        """Events committed to the log and not yet decided (every partition's, summed, in a
        partitioned engine worker)."""
        with self.engine_db.connect() as conn:
            # Any process on a database engine workers run (a dispatch or api process too):
            # the single engine's cursor stopped where they took over.
            if self.partitioned or (sql_backend_is_postgres(self.engine_db) and partition_work.partitioned(conn)):
                return sum(max(0, head - pos) for _, head, pos in partition_work.partition_lags(conn))
            return lag(conn)

    def backlog(self) -> dict[str, float]:
        """What waits, read when /metrics is scraped (store/backlog.py; every workspace): the
        outbox's pending and due rows, how long the oldest due one has waited, and how far
        past its due time the earliest timer is (0 when none is due: the engine keeps up)."""
        now_ms = to_ms(self.clock.now())
        with self.engine_db.connect() as conn:
            outbox_now = backlog.outbox_backlog(conn, now_ms)
            timer_due = backlog.oldest_timer_due_ms(conn)
        oldest = outbox_now.oldest_due_ms
        return {
            "outbox_pending": outbox_now.pending,
            "outbox_due": outbox_now.due,
            "outbox_oldest_due_seconds": 0.0 if oldest is None else max(0, now_ms - oldest) / 1000,
            "timer_overdue_seconds": 0.0 if timer_due is None else max(0, now_ms - int(timer_due)) / 1000,
        }

    def snapshot(self) -> dict[str, float]:
        s = self.stats
        return {
            "events_processed": s.events_processed,
            "timers_fired": s.timers_fired,
            "messages_queued": s.messages_queued,
            "messages_sent": s.messages_sent,
            "messages_logged": s.messages_logged,
            "messages_failed": s.messages_failed + s.messages_failed_at_decision,
            "messages_retried": s.messages_retried,
            "messages_redelivered": s.messages_redelivered,
            "engine_errors": s.event_errors + s.timer_errors + s.catalog_errors,
        }

    def not_sent(self) -> dict[tuple[str, str, str], int]:
        """Messages not sent so far, by (status, reason family, channel): a copy."""
        return dict(self.stats.not_sent)

    def channel_problems(self) -> dict[str, int]:
        """Messages failed for a channel's own problem (channels/base.ChannelProblem) so far,
        by channel: a copy."""
        return dict(self.stats.channel_problems)


def sql_backend_is_postgres(engine: Engine) -> bool:
    return engine.url.get_backend_name().startswith("postgres")


def _run_coroutine(factory: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async function to completion from synchronous code, even inside a running loop."""

    def call(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(factory(*args))
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = asyncio.run(factory(*args))
            except BaseException as exc:  # handed to the caller
                box["error"] = exc

        thread = threading.Thread(target=target, name="nudgeflow-send")
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    return call
