"""Applying a segment: the engine computes a new live version for the people already stored.

`apply_batch` is engine work beside events, timers and journey backfills (the embedded
runtime runs one batch per round, after the round's events and due timers, so those are
never kept waiting behind it). A batch takes the next profiles of the oldest pending apply
(store/segments.py) in id order, reads their stored past (store/backfill.py: the events of
the names the segment counts, and reachability's), lets the core decide each person as of
the batch's time (Engine.on_segment_apply, core/segments.py: lapses overdue, their timers not
fired yet, are decided first at their due times) — but not, for a segment that requires an
occurrence of what it counts, someone with none stored who is not a member now: that person
cannot be in it, and their state stays as it is — and writes states, members rows, daily sizes,
`Segment Entered` / `Segment Exited` and lapse timers through the same EffectsBatch as any
decision, with the apply's new position, in one transaction. The batch that finds no one
left records the size (a count of the members rows) and the event of the log it is exact
as of. A process that dies mid-way resumes after the last batch committed.

No gap, no double count. The version is live in the engine's catalog from the moment it is
applied, so events decided since then already count for it. A batch reads only the events
the engine has decided (seq <= its cursor, less the open gaps: store/backfill.Decided), and
the core *replaces* the person's kept history of those names with what it read, rather than
adding to it: an event decided before the batch is counted once, through the store, however
it was counted live; an event decided after the batch (seq past the cursor, or in a gap
that fills later) reaches the segment the usual way, once, on top of the rebuilt history.
Membership is the core's answer on that history, and the members rows change only where
they differ from it (store/segments.write_changes), so the size is the count of people the
core says are in. The cursor does not move while a batch runs: the batch is a job of the one
writer thread, as event batches are, and this process holds the engine lock.

Everyone is walked, people who appear while the apply runs too (unlike a journey's
backfill, which leaves them to the live journey): a person's first event decides every live
segment (core/segments.py), and the walk, reading what the store holds of them, comes to the
same answer and changes nothing; but a person created in the apply's very millisecond whose
events the engine decided just before it would otherwise be missed by both.

A segment that refers to other segments waits while one of those has an apply pending, so
it reads their membership once it is computed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection

from nudgeflow.core import segments as planner
from nudgeflow.core.catalog import Catalog
from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.core.effects import Effect
from nudgeflow.core.engine import Engine
from nudgeflow.core.inputs import EventInput
from nudgeflow.core.state import ProfileState
from nudgeflow.model.segments import referenced_segments
from nudgeflow.runtime.processor import Decider, DecisionBatch, EngineCache, RuntimeStats
from nudgeflow.store import backfill as past_store
from nudgeflow.store import segments as store
from nudgeflow.store.groups import refresh_group_traits

log = logging.getLogger("nudgeflow.runtime")

APPLY_BATCH = 500  # profiles per transaction (the stage shrinks it to the time budget)
APPLY_BUDGET_MS = 40.0  # as a journey backfill's batch: ingest's commits wait behind it


def _job(conn: Connection, now_ms: int) -> store.Apply | None:
    """The oldest apply that can go on now. One whose version is no longer the live one
    (applied again, archived) is cancelled; one whose segment refers to a segment with an
    apply of its own pending waits for it."""
    pending = store.pending_applies(conn)
    waiting = {(j.workspace_id, j.segment_id) for j in pending}
    for job in pending:
        found = store.status_of(conn, job.workspace_id, job.segment_id)
        if found is None or found[0] != store.LIVE or found[1] != job.version:
            store.cancel_apply(conn, job, now_ms)
            waiting.discard((job.workspace_id, job.segment_id))
            continue
        definition = store.load_version(conn, job.workspace_id, job.segment_id, job.version)
        refs = referenced_segments(definition.when) if definition is not None else set()
        if any((job.workspace_id, ref) in waiting for ref in refs):
            continue
        return job
    return None


@dataclass(frozen=True, slots=True)
class _Read:
    """A batch's profiles and past, read before the writer's transaction (ReadAhead)."""

    key: tuple[str, str, int, str]  # workspace, segment, version, position
    rows: list[tuple[str, int]]
    seen: past_store.Decided
    needs: planner.SegmentNeeds
    now_ms: int
    pasts: dict[str, list[EventInput]]


class ReadAhead:
    """Reads the next batch's past on a connection of its own, before the batch's transaction
    (as runtime/backfill.ReadAhead does for journeys, and checked the same way: the same
    apply position, people, decided events and needs, or the batch reads again itself)."""

    def __init__(self) -> None:
        self._needs: dict[tuple[str, str, int], planner.SegmentNeeds] = {}
        self._read: _Read | None = None

    def read(self, conn: Connection, clock: Clock, max_profiles: int) -> None:
        self._read = None
        now_ms = to_ms(clock.now())
        job = next(
            (j for j in store.pending_applies(conn) if (j.workspace_id, j.segment_id, j.version) in self._needs), None
        )
        if job is None:
            return
        needs = self._needs[(job.workspace_id, job.segment_id, job.version)]
        rows = past_store.profiles_after(conn, job.workspace_id, job.position, max_profiles)
        if not rows:
            return
        seen = past_store.decided(conn)
        pasts = _read_pasts(conn, needs, rows, now_ms, seen)
        key = (job.workspace_id, job.segment_id, job.version, job.position)
        self._read = _Read(key, rows, seen, needs, now_ms, pasts)

    def take(self) -> _Read | None:
        read, self._read = self._read, None
        return read

    def remember(self, job: store.Apply, needs: planner.SegmentNeeds) -> None:
        if len(self._needs) > 100:
            self._needs.clear()
        self._needs[(job.workspace_id, job.segment_id, job.version)] = needs


def apply_batch(
    conn: Connection,
    engines: EngineCache,
    clock: Clock,
    max_profiles: int = APPLY_BATCH,
    stats: RuntimeStats | None = None,
    ahead: ReadAhead | None = None,
) -> int:
    """Decide the next batch of the oldest pending apply; returns the profiles handled."""
    stats = stats if stats is not None else RuntimeStats()
    read = ahead.take() if ahead is not None else None
    now_ms = to_ms(clock.now())
    while True:
        job = _job(conn, now_ms)
        if job is None:
            return 0
        engine = engines.get(conn, job.workspace_id, stats)
        catalog: Catalog | None = getattr(engine, "catalog", None)
        index = catalog.segment_index if catalog is not None else None
        sv = index.get(job.segment_id) if index is not None else None
        if catalog is None or sv is None or sv.version != job.version or not hasattr(engine, "on_segment_apply"):
            return 0  # an engine that does not run this version (yet): nothing to decide with
        needs = planner.needs(catalog, job.segment_id)
        if ahead is not None:
            ahead.remember(job, needs)
        rows = past_store.profiles_after(conn, job.workspace_id, job.position, max_profiles)
        seen = past_store.decided(conn)
        if rows:
            break
        # Everyone walked: the size is recorded, and the next apply (one that waited for this
        # segment, say) goes on in this same call.
        store.advance_apply(conn, job, job.position, 0, now_ms, finished=True, as_of_seq=seen.through)
    ids = [pid for pid, _ in rows]
    key = (job.workspace_id, job.segment_id, job.version, job.position)
    if read is not None and read.key == key and read.rows == rows and read.seen == seen and read.needs == needs:
        pasts, now_ms = read.pasts, read.now_ms  # decided as of the time it was read
    else:
        pasts = _read_pasts(conn, needs, rows, now_ms, seen)
    if needs.required:
        # Someone with no stored event the segment counts cannot be in it: unless they are a
        # member now (of an earlier version), deciding them would change nothing, and loading
        # and saving everyone's state was most of an apply's time.
        members = store.members_among(conn, job.workspace_id, job.segment_id, ids)
        ids = [pid for pid in ids if pasts.get(pid) or pid in members]
    batch = DecisionBatch(conn, engines, stats, ids)
    refresh_group_traits(conn, batch.states, {pid: job.workspace_id for pid in ids})  # `group.*` as stored
    segment_id = job.segment_id
    for pid in ids:
        past = pasts.get(pid, [])

        # One factory makes every engine of the cache: this one has on_segment_apply, as asked above.
        def on_apply(eng: Decider, state: ProfileState, _p: list[EventInput] = past) -> list[Effect]:
            return cast(Engine, eng).on_segment_apply(state, segment_id, _p, now_ms)

        error = batch.decide(job.workspace_id, pid, now_ms, on_apply)
        if error is not None:
            stats.event_errors += 1
            stats.note_skip(f"segment:{segment_id}:{pid}")
            log.error(
                "engine failed on a segment's apply; person skipped",
                exc_info=error,
                extra={
                    "error": type(error).__name__,
                    "workspace_id": job.workspace_id,
                    "segment_id": segment_id,
                    "profile_id": pid,
                },
            )
    counts = batch.write(now_ms)
    stats.add_counts(counts)
    finished = len(rows) < max_profiles
    store.advance_apply(conn, job, rows[-1][0], len(rows), now_ms, finished=finished, as_of_seq=seen.through)
    return len(rows)


def skip_profile(conn: Connection, clock: Clock) -> str | None:
    """Move the oldest apply past its next person (a last resort, when a batch of one fails)."""
    now_ms = to_ms(clock.now())
    job = _job(conn, now_ms)
    if job is None:
        return None
    seen = past_store.decided(conn)
    rows = past_store.profiles_after(conn, job.workspace_id, job.position, 1)
    if not rows:
        store.advance_apply(conn, job, job.position, 0, now_ms, finished=True, as_of_seq=seen.through)
        return None
    store.advance_apply(conn, job, rows[0][0], 1, now_ms, finished=False, as_of_seq=seen.through)
    return f"segment:{job.segment_id}:{rows[0][0]}"


def _read_pasts(
    conn: Connection,
    needs: planner.SegmentNeeds,
    rows: list[tuple[str, int]],
    now_ms: int,
    seen: past_store.Decided,
) -> dict[str, list[EventInput]]:
    """What the store holds of these people's past that the segment reads, as the engine's
    inputs, oldest first: only events the engine has decided (`seen`)."""
    ids = [pid for pid, _ in rows]
    since = now_ms - needs.lookback_ms
    out: dict[str, list[EventInput]] = {}
    for pid, found in past_store.stored_payloads(conn, ids, needs.names, since, seen).items():
        out[pid] = [EventInput.from_payload(payload, ts) for ts, payload in found]
    if needs.device_token:
        for pid, (ts, payload) in past_store.device_token_events(conn, ids, since, seen).items():
            out.setdefault(pid, []).append(EventInput.from_payload(payload, ts))
    return out


__all__ = ["APPLY_BATCH", "APPLY_BUDGET_MS", "ReadAhead", "apply_batch", "skip_profile"]
