"""Event processing and timer firing: read a batch, decide with the pure core, write it all.

Both functions run inside a transaction their caller owns (in the embedded runtime, a job
of the one writer thread) and work in batches: a batch of events or timers, the touched
profiles' state loaded in one query, decisions in order, then state, effects and the
cursor (or the fired timers' deletion) written in that same transaction. A crash before
the commit leaves everything as it was, so the batch is decided again; after the commit
it is never decided again. That makes timers fire exactly once, and keeps the outbox free
of repeats even when a batch is decided twice (its keys are idempotent).

One bad input must not stop the loop: an exception from the core on one event or timer is
logged (ids and the error's type, never the payload), counted, and that item is skipped,
with the profile's state restored to what it was before it. The rest of the batch goes on.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection

from nudgeflow.core.catalog import Catalog
from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.core.effects import Effect
from nudgeflow.core.inputs import EventInput, TimerInput
from nudgeflow.core.state import ProfileState
from nudgeflow.runtime.merges import fold_merged
from nudgeflow.runtime.state_cache import StateCache
from nudgeflow.store import event_log
from nudgeflow.store.effects_writer import EffectsBatch, WriteCounts
from nudgeflow.store.engine_state import (
    EVENTS_CURSOR,
    claim_due_timers,
    cursor_position,
    load_states,
    merged_into,
    read_cursor,
    read_cursor_state,
    write_cursor,
)
from nudgeflow.store.groups import refresh_group_traits

log = logging.getLogger("nudgeflow.runtime")


class Decider(Protocol):
    """What the runtime needs of the core: nudgeflow.core.engine.Engine, or a test's fake."""

    def on_event(self, state: ProfileState, event: EventInput, now_ms: int) -> list[Effect]: ...

    def on_timer(self, state: ProfileState, timer: TimerInput, now_ms: int) -> list[Effect]: ...


@dataclass
class RuntimeStats:
    """What the loops did; the embedded runtime turns these into metrics."""

    events_processed: int = 0  # read and passed by the cursor, own_events_passed included
    own_events_passed: int = 0  # the engine's own Segment Entered / Exited, not decided again
    timers_fired: int = 0
    event_errors: int = 0
    timer_errors: int = 0
    catalog_errors: int = 0
    messages_queued: int = 0
    messages_failed_at_decision: int = 0
    messages_sent: int = 0
    messages_logged: int = 0  # taken by the log channel (no channel configured): not sent
    messages_failed: int = 0
    messages_retried: int = 0
    messages_redelivered: int = 0  # claimed again after a dispatcher's lease ran out (docs/roles.md)
    # Messages not sent, by (status, reason family, channel): withheld by a send policy
    # (deferred, dropped) or suppressed at dispatch. Families, not reasons: bounded labels.
    not_sent: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # Messages failed for a channel's own problem (ChannelProblem: a relay that denies
    # relaying, the wrong APNs environment), by channel: for an operator, not the person.
    channel_problems: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)  # "event:<seq>" / "timer:<profile>:<key>", newest last

    def note_skip(self, what: str) -> None:
        self.skipped.append(what)
        if len(self.skipped) > 100:
            del self.skipped[:-100]

    def add_counts(self, counts: WriteCounts) -> None:
        self.messages_queued += counts.messages_queued
        self.messages_failed_at_decision += counts.messages_failed
        self.not_sent.update(counts.messages_withheld)


# --- engines per workspace ------------------------------------------------------------------

CatalogLoader = Callable[[Connection, str], Catalog]
Fingerprint = Callable[[Connection, str], Any]


def _store_loader() -> CatalogLoader:
    from nudgeflow.store.journeys import load_catalog

    return load_catalog


def _store_fingerprint() -> Fingerprint:
    from nudgeflow.store.journeys import catalog_fingerprint

    return catalog_fingerprint


class EngineCache:
    """One core Engine per workspace, rebuilt when the workspace's journeys change.

    The fingerprint (cheap: statuses and live versions) is checked once per batch and
    workspace; the catalog is loaded only when it moved. A catalog that fails to load is
    logged and counted; the workspace keeps its previous engine (or an empty catalog) and
    the load is tried again after `retry_ms`, so a bad definition cannot stop the loop.

    It also holds the profile states the engine saved last (`states`, runtime/state_cache.py),
    which every batch of this process decides with when their rows are unchanged: none
    unless it is given a cache with a capacity (NUDGEFLOW_ENGINE_STATE_CACHE_MB).
    """

    def __init__(
        self,
        load_catalog: CatalogLoader | None = None,
        fingerprint: Fingerprint | None = None,
        make_engine: Callable[[Catalog], Decider] | None = None,
        retry_ms: float = 30_000,
        states: StateCache | None = None,
    ) -> None:
        self._load = load_catalog
        # The states the engine saved last, reused while their rows still hold what was saved.
        self.states = states if states is not None else StateCache(0)  # off unless given one
        self._fingerprint = fingerprint
        if make_engine is None:
            from nudgeflow.core.engine import Engine

            make_engine = Engine
        self._make = make_engine
        self._retry_s = retry_ms / 1000
        self._engines: dict[str, tuple[Any, Decider]] = {}
        self._failed_at: dict[str, float] = {}

    def invalidate(self, workspace_id: str | None = None) -> None:
        if workspace_id is None:
            self._engines.clear()
        else:
            self._engines.pop(workspace_id, None)

    def get(self, conn: Connection, workspace_id: str, stats: RuntimeStats | None = None) -> Decider:
        cached = self._engines.get(workspace_id)
        fingerprint_fn = self._fingerprint or _store_fingerprint()
        try:
            mark = fingerprint_fn(conn, workspace_id)
        except Exception:
            log.exception("journey catalog fingerprint failed", extra={"workspace_id": workspace_id})
            mark = object()  # unknown: load below (or keep the old engine if loading fails too)
        if cached is not None and cached[0] == mark:
            return cached[1]
        failed_at = self._failed_at.get(workspace_id)
        if cached is not None and failed_at is not None and time.monotonic() - failed_at < self._retry_s:
            return cached[1]
        try:
            catalog = (self._load or _store_loader())(conn, workspace_id)
        except Exception as exc:
            self._failed_at[workspace_id] = time.monotonic()
            if stats is not None:
                stats.catalog_errors += 1
            log.error(
                "journey catalog failed to load; keeping the previous one",
                extra={"workspace_id": workspace_id, "error": type(exc).__name__},
                exc_info=True,
            )
            if cached is not None:
                return cached[1]
            engine = self._make(Catalog())
            self._engines[workspace_id] = (object(), engine)
            return engine
        self._failed_at.pop(workspace_id, None)
        engine = self._make(catalog)
        self._engines[workspace_id] = (mark, engine)
        return engine


# --- shared pieces ----------------------------------------------------------------------------


def _load(
    conn: Connection, profile_ids: list[str], kept: StateCache
) -> tuple[dict[str, ProfileState], dict[str, str], dict[str, str | None]]:
    """States to decide with; their documents as loaded (to skip unchanged writes); and what
    a failed decision restores from (differs from the loaded one where a merged-away
    profile's state was folded in)."""
    found = load_states(conn, profile_ids, kept.take)
    states = {pid: st for pid, (st, _) in found.items()}
    loaded = {pid: doc for pid, (_, doc) in found.items()}
    base: dict[str, str | None] = dict(loaded)
    fold_merged(conn, states, base, profile_ids)
    return states, loaded, base


def _restore(pid: str, loaded: str | None, replay: list[Callable[[ProfileState], Any]]) -> ProfileState:
    """A profile's state as it was before a failed decision.

    The core is a pure function, so this batch's earlier (successful) decisions for the
    person are replayed on the state as loaded; their effects are already collected and
    are dropped here. This costs nothing on the common path, where nothing fails.
    """
    state = ProfileState.from_json(pid, loaded)
    for decide in replay:
        decide(state)
    return state


def _log_failure(kind: str, exc: BaseException, **ids: Any) -> None:
    # Ids and the error's type only: event payloads carry personal data.
    log.error(
        f"engine failed on {kind}; skipped",
        extra={"error": type(exc).__name__, **ids},
        exc_info=True,
    )


class DecisionBatch:
    """What event processing and timer firing share: the touched profiles' states, one
    decision at a time, a failed decision undone for its person only, and the writes.

    A decision is a function of (engine, state) -> effects. Kept per person, it is also how a
    failed decision restores the state: the earlier successful ones are replayed (see
    `_restore`)."""

    def __init__(
        self,
        conn: Connection,
        engines: EngineCache,
        stats: RuntimeStats,
        profile_ids: list[str],
        *,
        count_rollups: bool = True,
        keep_states: bool = False,
    ) -> None:
        self.conn, self.engines, self.stats = conn, engines, stats
        self.states, self.loaded, self.base = _load(conn, profile_ids, engines.states)
        # Events keep their people's states for the next batch (people act in bursts: a
        # session's events fall in batches close together). Timers, backfills and segment
        # applies reuse a kept state but keep none: each reaches a person once in a while,
        # and keeping theirs would push out the states of people acting now. Measured on the
        # timers benchmark, keeping them made firing ~10 % dearer (the heap the collector
        # walks grew by the states kept) and saved nothing.
        self.keep_states = keep_states
        self.workspace_of: dict[str, str] = {}
        self.engines_of: dict[str, Decider] = {}
        self.done: dict[str, list[Callable[[ProfileState], Any]]] = {}
        self.effects = EffectsBatch(count_rollups=count_rollups)

    def decide(
        self, workspace_id: str, profile_id: str, now_ms: int, decision: Callable[[Decider, ProfileState], list[Effect]]
    ) -> BaseException | None:
        """Apply one decision; on failure restore the person's state and return the error."""
        engine = self.engines_of.get(workspace_id)
        if engine is None:
            engine = self.engines_of[workspace_id] = self.engines.get(self.conn, workspace_id, self.stats)
        state = self.states.get(profile_id)
        if state is None:
            state = self.states[profile_id] = ProfileState(profile_id)
        self.workspace_of[profile_id] = workspace_id
        try:
            self.effects.add(workspace_id, profile_id, decision(engine, state), now_ms)
        except Exception as exc:
            done = self.done.get(profile_id, [])
            self.states[profile_id] = _restore(profile_id, self.base.get(profile_id), done)
            return exc
        self.done.setdefault(profile_id, []).append(partial(decision, engine))
        return None

    def write(self, now_ms: int) -> WriteCounts:
        kept = self.engines.states if self.keep_states else None
        for pid, state in self.states.items():
            doc = self.effects.add_state(self.workspace_of.get(pid, ""), state, self.loaded.get(pid), now_ms)
            if doc is not None and kept is not None:
                kept.keep(pid, doc, state)
        return self.effects.write(self.conn, now_ms)


# --- events -----------------------------------------------------------------------------------


# Sequence gaps. `seq` is taken when a row is inserted, but the row becomes visible when
# its transaction commits: on PostgreSQL a reader can see seq 11 before seq 10 commits
# (two ingest processes; an ingest commit beside the engine's own emitted events), and a
# cursor that simply moved to 11 would never decide 10. So every seq the cursor passes
# without seeing it is remembered as an open gap and read again, batch after batch, until
# it fills (decided then) or GAP_WAIT_MS passes (a rolled-back insert, or an event erased
# before it was decided, leaves a gap that never fills).
#
# Why gaps and not a safe horizon (pg_snapshot_xmin and a per-row xid): the horizon needs
# an xid column and index written on every insert, and stalls the whole engine behind any
# long transaction on the server; gaps cost nothing while seqs come dense (one writer per
# process, the common case) and one indexed range read per batch while some are open. The
# same code runs on SQLite, where a gap can only come from a deletion.
GAP_WAIT_MS = 10 * 60_000  # far longer than any transaction of ours that appends events
MAX_GAPS = 1000  # open gap ranges kept; beyond it the oldest are given up (and logged)
_GAP_RANGES_PER_QUERY = 200


def process_events(
    conn: Connection,
    engines: EngineCache,
    clock: Clock,
    max_events: int = 1000,
    stats: RuntimeStats | None = None,
    *,
    count_rollups: bool = True,
) -> int:
    """Decide the events of the log that filled open gaps, then the next ones (seq > cursor);
    returns how many were read. `count_rollups=False` is for benchmarks/engine.py alone (see
    EffectsBatch): it leaves the report rollups uncounted."""
    stats = stats if stats is not None else RuntimeStats()
    cursor, gaps = read_cursor_state(conn)
    late = _gap_rows(conn, gaps, max_events) if gaps else []
    rows = _read_next(conn, cursor, max_events - len(late)) if len(late) < max_events else []
    now_ms = to_ms(clock.now())
    if not rows and not late:
        if gaps and (open_ := _expire_gaps(gaps, now_ms)) != gaps:
            write_cursor(conn, cursor, now_ms, gaps=open_)
        return 0
    # A Segment Entered / Exited the engine appended reads without its payload: the change
    # was reacted to in the turn that made it, so the cursor passes it undecided (event_log).
    todo = [r for r in (*late, *rows) if r[4] is not None]
    stats.own_events_passed += len(late) + len(rows) - len(todo)
    # Ingest no longer re-points a merged-away profile's events (the fold does): an event
    # stored under one is decided on the profile it went into, as before (one indexed query).
    merged = merged_into(conn, list({r[2] for r in todo}))
    if merged:
        todo = [(r[0], r[1], merged[r[2]][0], *r[3:]) if r[2] in merged else r for r in todo]
    batch = DecisionBatch(
        conn, engines, stats, list({r[2] for r in todo}), count_rollups=count_rollups, keep_states=True
    )
    refresh_group_traits(conn, batch.states, {r[2]: r[1] for r in todo})  # `group.*` as stored
    decide_events(batch, todo, now_ms, stats)
    counts = batch.write(now_ms)
    gaps = _fill_gaps(gaps, [r[0] for r in late])
    gaps.extend(_new_gaps(cursor, [r[0] for r in rows], now_ms))
    write_cursor(conn, rows[-1][0] if rows else cursor, now_ms, gaps=_expire_gaps(gaps, now_ms))
    stats.events_processed += len(late) + len(rows)
    stats.add_counts(counts)
    return len(late) + len(rows)


def decide_events(
    batch: DecisionBatch, todo: Iterable[tuple[int, str, str, int, str | bytes]], now_ms: int, stats: RuntimeStats
) -> None:
    """Decide (seq, workspace_id, profile_id, timestamp_ms, payload) events in order, each on
    the profile given; one that fails is skipped, logged and counted (the single engine's
    and the partitioned workers' batches alike)."""
    for seq, workspace_id, profile_id, timestamp_ms, payload in todo:

        def on_event(
            engine: Decider, state: ProfileState, _p: str | bytes = payload, _t: int = int(timestamp_ms)
        ) -> list[Effect]:
            return engine.on_event(state, EventInput.from_payload(_p, _t), now_ms)

        error = batch.decide(workspace_id, profile_id, now_ms, on_event)
        if error is not None:
            stats.event_errors += 1
            stats.note_skip(f"event:{seq}")
            _log_failure("an event", error, seq=seq, workspace_id=workspace_id, profile_id=profile_id)


OWN_READ_AHEAD = 10


def _read_next(conn: Connection, cursor: int, limit: int) -> list[Any]:
    """The next `limit` events to decide after `cursor`, and the engine's own Segment Entered /
    Exited among them (passed undecided). Those are read past, up to OWN_READ_AHEAD × `limit`
    of them more (a row read and passed costs little; its read is bounded so a batch's memory
    is), so that a batch still decides about `limit` events when memberships change often:
    each batch is a commit, and a burst of changes would otherwise halve the batches and
    double the commits."""
    rows = list(event_log.read_after(conn, cursor, limit))
    more = OWN_READ_AHEAD * limit
    while len(rows) >= limit and more > 0:
        passed = sum(1 for r in rows if r[4] is None)
        want = min(passed - (len(rows) - limit), more)
        if want <= 0:
            break
        extra = event_log.read_after(conn, rows[-1][0], want)
        rows.extend(extra)
        more -= len(extra)
        if len(extra) < want:
            break
    return rows


def _gap_rows(conn: Connection, gaps: list[list[int]], limit: int) -> list[Any]:
    """Events that have appeared in open gaps, oldest first (an indexed range read each)."""
    out: list[Any] = []
    for start in range(0, len(gaps), _GAP_RANGES_PER_QUERY):
        part = gaps[start : start + _GAP_RANGES_PER_QUERY]
        out.extend(event_log.read_ranges(conn, [(g[0], g[1]) for g in part], limit - len(out)))
        if len(out) >= limit:
            break
    out.sort(key=lambda r: r[0])
    return out[:limit]


def _new_gaps(after: int, seqs: list[int], now_ms: int) -> list[list[int]]:
    """The seqs between `after` and the last of `seqs` (ascending) that were not read."""
    gaps: list[list[int]] = []
    expected = after + 1
    for seq in seqs:
        if seq > expected:
            gaps.append([expected, seq - 1, now_ms])
        expected = seq + 1
    return gaps


def _fill_gaps(gaps: list[list[int]], filled: list[int]) -> list[list[int]]:
    """The gaps without the seqs just read (a range splits around each)."""
    if not filled:
        return [list(g) for g in gaps]
    out: list[list[int]] = []
    done = sorted(filled)
    for first, last, seen in gaps:
        lo = first
        for seq in done:
            if seq < lo or seq > last:
                continue
            if seq > lo:
                out.append([lo, seq - 1, seen])
            lo = seq + 1
        if lo <= last:
            out.append([lo, last, seen])
    return out


def _expire_gaps(gaps: list[list[int]], now_ms: int) -> list[list[int]]:
    """Gaps still worth waiting for; the others are given up (logged: seqs only)."""
    keep = [g for g in gaps if now_ms - g[2] < GAP_WAIT_MS]
    if len(keep) > MAX_GAPS:
        keep = sorted(sorted(keep, key=lambda g: g[2])[len(keep) - MAX_GAPS :])
    if len(keep) < len(gaps):
        given_up = [g for g in gaps if g not in keep]
        log.info(
            "event log: stopped waiting for seqs that never became visible (rolled back or erased)",
            extra={"gaps": len(given_up), "first_seq": given_up[0][0], "last_seq": given_up[-1][1]},
        )
    return keep


def skip_next_event(conn: Connection, now_ms: int) -> int | None:
    """Set aside the event the next batch would decide first, without deciding it (the
    safety net's last resort): one that filled a gap, else the next after the cursor."""
    cursor, gaps = read_cursor_state(conn)
    late = _gap_rows(conn, gaps, 1) if gaps else []
    if late:
        seq = int(late[0][0])
        write_cursor(conn, cursor, now_ms, gaps=_fill_gaps(gaps, [seq]))
        return seq
    value = event_log.first_seq_after(conn, cursor)
    if value is None:
        return None
    seq = value
    write_cursor(conn, seq, now_ms, gaps=[*gaps, *_new_gaps(cursor, [seq], now_ms)])
    return seq


def skip_events(conn: Connection, through_seq: int, now_ms: int) -> None:
    """Move the cursor past an event that cannot be processed at all (a last resort)."""
    if read_cursor(conn) < through_seq:
        write_cursor(conn, through_seq, now_ms)


def lag(conn: Connection) -> int:
    """Events in the log that the engine has not decided yet."""
    return max(0, event_log.newest_seq(conn) - cursor_position(conn, EVENTS_CURSOR))


# --- timers -----------------------------------------------------------------------------------


def fire_timers(
    conn: Connection,
    engines: EngineCache,
    clock: Clock,
    max_timers: int = 1000,
    stats: RuntimeStats | None = None,
) -> int:
    """Fire the timers due now (oldest first); returns how many fired.

    Each fired timer is deleted in the transaction that writes what it caused, before the
    effects: a timer that re-arms its own key survives, and one that was committed as fired
    can never fire again. Timers that fell due while nothing ran fire once, late.
    """
    stats = stats if stats is not None else RuntimeStats()
    now_ms = to_ms(clock.now())
    rows = claim_due_timers(conn, now_ms, max_timers)
    if not rows:
        return 0
    batch = DecisionBatch(conn, engines, stats, list({r[0] for r in rows}))
    refresh_group_traits(conn, batch.states, {r[0]: r[2] for r in rows})  # `group.*` as stored
    decide_timers(batch, rows, now_ms, stats)
    counts = batch.write(now_ms)
    stats.timers_fired += len(rows)
    stats.add_counts(counts)
    return len(rows)


def decide_timers(batch: DecisionBatch, rows: Iterable[Any], now_ms: int, stats: RuntimeStats) -> None:
    """Fire (profile_id, key, workspace_id, due_at_ms, payload[, rowid]) timers in order, each
    deleted in the batch's writes (by its rowid when claim_due_timers gave one); one that
    fails is skipped, logged and counted (the single engine's and the partitioned workers'
    batches alike)."""
    for profile_id, key, workspace_id, due_at_ms, payload, *rowid in rows:
        batch.effects.delete_timer(profile_id, key, rowid[0] if rowid else None)

        def on_timer(
            engine: Decider, state: ProfileState, _k: str = key, _d: int = int(due_at_ms), _p: str | bytes = payload
        ) -> list[Effect]:
            return engine.on_timer(state, TimerInput(_k, _d, timer_payload(_p)), now_ms)

        error = batch.decide(workspace_id, profile_id, now_ms, on_timer)
        if error is not None:
            stats.timer_errors += 1
            stats.note_skip(f"timer:{profile_id}:{key}")
            _log_failure("a timer", error, workspace_id=workspace_id, profile_id=profile_id, timer=key)


def timer_payload(payload: str | bytes) -> dict[str, Any]:
    value = orjson.loads(payload)
    return value if isinstance(value, dict) else {}
