"""Backfill: the engine shows a journey just published the people already in the database.

`backfill_batch` is a third kind of engine work beside events and timers (the embedded
runtime runs one batch per round, after the new events and due timers, so those are never
kept waiting behind it). A batch takes the next profiles of the oldest pending backfill in
id order, reads what the store holds of their past (store/backfill.py), lets the core
decide for each (Engine.on_backfill, core/backfill.py) exactly as for an event, and
writes states, runs, messages and timers through the same EffectsBatch, with the
backfill's new position, in one transaction. A process that dies mid-way resumes after
the last committed batch; a batch decided twice changes nothing more (the planner leaves
a person the engine already tracks as they are). The embedded runtime reads each batch's
past beforehand, outside the writer's transaction (ReadAhead), so that ingest's commits
do not wait behind the reads.

`preview` is the same decision on copies, written nowhere: how many people would enter
at once if the draft were published now (`journeys publish` asks for --yes above a count).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection

from nudgeflow.core import backfill as planner
from nudgeflow.core.catalog import LIVE, PAUSED, Catalog, JourneyVersion
from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.core.effects import Effect
from nudgeflow.core.engine import Engine
from nudgeflow.core.state import ProfileState
from nudgeflow.model.journeys import InactivityTrigger, Journey, duration_ms
from nudgeflow.runtime.processor import Decider, DecisionBatch, EngineCache, RuntimeStats
from nudgeflow.store import backfill as store
from nudgeflow.store import journeys as journey_store
from nudgeflow.store.groups import refresh_group_traits

log = logging.getLogger("nudgeflow.runtime")

BACKFILL_BATCH = 500  # profiles per transaction (the stage shrinks it to the time budget)
# A batch's time budget: longer than an event batch's (each commit is an fsync, and a
# backfill is a long run of them) and still short beside ingest's latency target, since
# ingest's commits wait behind it on the one writer thread.
BACKFILL_BUDGET_MS = 40.0


def _job(conn: Connection, now_ms: int) -> store.Backfill | None:
    """The oldest backfill that can go on now; those whose version is no longer the live one
    (republished, archived) are cancelled; a paused journey's waits for its resume."""
    for job in store.pending(conn):
        found = journey_store.status_of(conn, job.workspace_id, job.journey_id)
        if found is None or found[0] not in (LIVE, PAUSED) or found[1] != job.version:
            store.cancel(conn, job, now_ms)
            continue
        if found[0] == LIVE:
            return job
    return None


@dataclass(frozen=True, slots=True)
class _Read:
    """A batch's profiles and past, read before the writer's transaction (ReadAhead)."""

    key: tuple[str, str, int, str]  # workspace, journey, version, position
    rows: list[tuple[str, int]]
    seen: store.Decided
    needs: planner.Needs
    now_ms: int
    pasts: dict[str, planner.Past]


class ReadAhead:
    """Reads the next batch's past on a connection of its own, before the batch's transaction.

    Reading people's stored events is most of a backfill batch. Done inside the batch's
    transaction it runs on the one writer thread, and every ingest commit waits behind it;
    read beforehand, on the engine's thread, it holds nobody up (SQLite reads beside the
    writer under WAL, and steps without the GIL). The transaction then checks that what was
    read still holds (the same job position, the same people, the same decided events, the
    same needs of the catalog) and reads it again itself when it does not: this is only
    ever a shortcut, never a second source of truth. Nothing but the engine's own thread
    decides events, and it is the one running the backfill, so the check nearly always passes.
    """

    def __init__(self) -> None:
        self._needs: dict[tuple[str, str, int], planner.Needs] = {}  # as the last batch computed them
        self._read: _Read | None = None

    def read(self, conn: Connection, clock: Clock, max_profiles: int) -> None:
        self._read = None
        now_ms = to_ms(clock.now())
        job = next((j for j in store.pending(conn) if (j.workspace_id, j.journey_id, j.version) in self._needs), None)
        if job is None:
            return  # none the last batch knew: the batch reads for itself
        needs = self._needs[(job.workspace_id, job.journey_id, job.version)]
        rows = store.profiles_after(conn, job.workspace_id, job.position, max_profiles, job.created_at_ms)
        if not rows:
            return
        seen = store.decided(conn)
        pasts = _read_pasts(conn, needs, rows, now_ms, seen)
        self._read = _Read(
            (job.workspace_id, job.journey_id, job.version, job.position), rows, seen, needs, now_ms, pasts
        )

    def take(self) -> _Read | None:
        read, self._read = self._read, None
        return read

    def remember(self, job: store.Backfill, needs: planner.Needs) -> None:
        if len(self._needs) > 100:
            self._needs.clear()
        self._needs[(job.workspace_id, job.journey_id, job.version)] = needs


def backfill_batch(
    conn: Connection,
    engines: EngineCache,
    clock: Clock,
    max_profiles: int = BACKFILL_BATCH,
    stats: RuntimeStats | None = None,
    ahead: ReadAhead | None = None,
) -> int:
    """Decide the next batch of the oldest pending backfill; returns the profiles handled.
    `ahead`: what a ReadAhead read for this batch, used when it still holds."""
    stats = stats if stats is not None else RuntimeStats()
    read = ahead.take() if ahead is not None else None
    now_ms = to_ms(clock.now())
    job = _job(conn, now_ms)
    if job is None:
        return 0
    engine = engines.get(conn, job.workspace_id, stats)
    catalog: Catalog | None = getattr(engine, "catalog", None)
    jv = catalog.live.get(job.journey_id) if catalog is not None else None
    if catalog is None or jv is None or jv.version != job.version or not hasattr(engine, "on_backfill"):
        return 0  # an engine that does not run this version (yet): nothing to decide with
    needs = planner.needs(catalog, jv)
    if ahead is not None:
        ahead.remember(job, needs)
    rows = store.profiles_after(conn, job.workspace_id, job.position, max_profiles, job.created_at_ms)
    if not rows:
        store.advance(conn, job, job.position, 0, 0, now_ms, finished=True)
        return 0
    ids = [pid for pid, _ in rows]
    seen = store.decided(conn)
    if (
        read is not None
        and read.key == (job.workspace_id, job.journey_id, job.version, job.position)
        and read.rows == rows
        and read.seen == seen
        and read.needs == needs
    ):
        pasts, now_ms = read.pasts, read.now_ms  # decided as of the time it was read
    else:
        pasts = _read_pasts(conn, needs, rows, now_ms, seen)
    batch = DecisionBatch(conn, engines, stats, ids)
    refresh_group_traits(conn, batch.states, {pid: job.workspace_id for pid in ids})  # `group.*` as stored
    entered = 0
    for pid, _created in rows:
        before = _entries(batch.states.get(pid), job.journey_id)

        # One factory makes every engine of the cache: this one has on_backfill, as the one asked above.
        def on_backfill(eng: Decider, state: ProfileState, _p: planner.Past = pasts[pid]) -> list[Effect]:
            return cast(Engine, eng).on_backfill(state, job.journey_id, _p, now_ms)

        error = batch.decide(job.workspace_id, pid, now_ms, on_backfill)
        if error is not None:
            stats.event_errors += 1
            stats.note_skip(f"backfill:{job.journey_id}:{pid}")
            log.error(
                "engine failed on a backfill; person skipped",
                exc_info=error,
                extra={
                    "error": type(error).__name__,
                    "workspace_id": job.workspace_id,
                    "journey_id": job.journey_id,
                    "profile_id": pid,
                },
            )
            continue
        entered += _entries(batch.states.get(pid), job.journey_id) - before
    counts = batch.write(now_ms)
    stats.add_counts(counts)
    store.advance(conn, job, rows[-1][0], len(rows), entered, now_ms, finished=len(rows) < max_profiles)
    return len(rows)


def skip_profile(conn: Connection, clock: Clock) -> str | None:
    """Move the oldest backfill past its next person (a last resort, when a batch of one fails)."""
    now_ms = to_ms(clock.now())
    job = _job(conn, now_ms)
    if job is None:
        return None
    rows = store.profiles_after(conn, job.workspace_id, job.position, 1, job.created_at_ms)
    if not rows:
        store.advance(conn, job, job.position, 0, 0, now_ms, finished=True)
        return None
    store.advance(conn, job, rows[0][0], 1, 0, now_ms, finished=False)
    return f"backfill:{job.journey_id}:{rows[0][0]}"


def _entries(state: ProfileState | None, journey_id: str) -> int:
    if state is None:
        return 0
    return int(state.entries.get(journey_id, {}).get("count", 0))


def _read_pasts(
    conn: Connection, needs: planner.Needs, rows: list[tuple[str, int]], now_ms: int, seen: store.Decided
) -> dict[str, planner.Past]:
    """What the store holds of these people's past: only events the engine has decided
    (`seen`); the later ones reach the journey as it is live now."""
    ids = [pid for pid, _ in rows]
    last, stored = store.past_of(
        conn, ids, needs.activity, needs.activity_names, needs.names, now_ms - needs.lookback_ms, seen
    )
    return {pid: planner.Past(created, last.get(pid), stored.get(pid, {})) for pid, created in rows}


# --- preview ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preview:
    profiles: int  # people looked at
    entering: int  # of them, how many would enter the journey at once


def preview(conn: Connection, workspace_id: str, journey: Journey, now_ms: int, batch: int = 2000) -> Preview:
    """How many people would enter `journey` at once if it went live now with a backfill.

    The backfill's own decision, on copies of the states, with the journey as it would be
    live; nothing is written. The database picks out who is already quiet for the
    trigger's window (one index probe per person); only they are read and decided."""
    if not isinstance(journey.trigger, InactivityTrigger):
        # Only the already quiet enter at once (core/backfill.py): other triggers arm timers,
        # seed histories and counts, and start runs later.
        return Preview(store.count_profiles(conn, workspace_id), 0)
    window = duration_ms(journey.trigger.window)
    live = journey_store.load_catalog(conn, workspace_id)
    jv = JourneyVersion(journey.id, 0, journey)
    others = [v for v in live.live.values() if v.journey_id != journey.id]
    statuses = {**live.statuses, journey.id: LIVE}
    catalog = Catalog(live=[*others, jv], statuses=statuses, load_version=live.version)
    engine = Engine(catalog)
    seen = store.decided(conn)
    needs = planner.needs(catalog, jv)
    looked = store.count_profiles(conn, workspace_id)
    # Only who has been quiet for the window can enter at once: the database finds them, and
    # only they are read further and decided.
    quiet = store.quiet_profiles(conn, workspace_id, needs.activity_names, now_ms - window, seen)
    entering = 0
    for start in range(0, len(quiet), batch):
        rows = quiet[start : start + batch]
        ids = [pid for pid, _ in rows]
        docs = store.read_states(conn, ids)
        last, stored = store.past_of(
            conn, ids, True, needs.activity_names, needs.names, now_ms - needs.lookback_ms, seen
        )
        for pid, created in rows:
            state = ProfileState.from_json(pid, docs.get(pid))
            before = _entries(state, journey.id)
            try:
                engine.on_backfill(state, journey.id, planner.Past(created, last.get(pid), stored.get(pid, {})), now_ms)
            except Exception:  # the real backfill skips such a person too
                log.exception("preview: engine failed on a person", extra={"profile_id": pid})
                continue
            entering += _entries(state, journey.id) - before
    return Preview(looked, entering)


__all__ = [
    "BACKFILL_BATCH",
    "BACKFILL_BUDGET_MS",
    "Preview",
    "ReadAhead",
    "backfill_batch",
    "preview",
    "skip_profile",
]
