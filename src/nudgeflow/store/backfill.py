"""Backfills and the stored past: the queries that let a journey published today see the
people already in the database (docs/journeys.md, "Publishing and the past").

A backfill is one row of `journey_backfills` per published version: the engine walks the
workspace's profiles in id order, a batch at a time, and commits each batch's decisions
with the new `position` (the last profile id done), so a process that dies mid-way goes
on from there. The reads below are what the pure planner (core/backfill.py) is given:
each person's latest activity and their stored events of the names the journeys need,
only from the events the engine has already decided (seq <= its cursor, less its open gaps), since the later
ones reach the journey through the normal path.

Every function takes a Connection and leaves committing to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, and_, func, insert, or_, select, update

from nudgeflow.model.event_names import SEGMENT_ENTERED, SEGMENT_EXITED
from nudgeflow.model.events import OWN_SEGMENT_PREFIX
from nudgeflow.store.schema import engine_cursors, events, journey_backfills, profile_state, profiles

PENDING, DONE, CANCELLED = "pending", "done", "cancelled"
_IN_CHUNK = 500  # ids per IN list: well under SQLite's bound parameter limit


@dataclass(frozen=True, slots=True)
class Backfill:
    workspace_id: str
    journey_id: str
    version: int
    status: str
    position: str
    profiles_done: int
    entered: int
    created_at_ms: int
    finished_at_ms: int | None


def _backfill(row: Any) -> Backfill:
    return Backfill(
        row.workspace_id,
        row.journey_id,
        int(row.version),
        row.status,
        row.position,
        int(row.profiles_done),
        int(row.entered),
        int(row.created_at_ms),
        None if row.finished_at_ms is None else int(row.finished_at_ms),
    )


def start(conn: Connection, workspace_id: str, journey_id: str, version: int, now_ms: int) -> None:
    """Queue a backfill of this version; an earlier unfinished one of the journey is cancelled
    (the new version's backfill covers everyone again). Starting the same version twice is a no-op."""
    conn.execute(
        update(journey_backfills)
        .where(
            journey_backfills.c.workspace_id == workspace_id,
            journey_backfills.c.journey_id == journey_id,
            journey_backfills.c.status == PENDING,
            journey_backfills.c.version != version,
        )
        .values(status=CANCELLED, updated_at_ms=now_ms, finished_at_ms=now_ms)
    )
    exists = conn.execute(
        select(journey_backfills.c.version).where(
            journey_backfills.c.workspace_id == workspace_id,
            journey_backfills.c.journey_id == journey_id,
            journey_backfills.c.version == version,
        )
    ).first()
    if exists is None:
        conn.execute(
            insert(journey_backfills).values(
                workspace_id=workspace_id,
                journey_id=journey_id,
                version=version,
                status=PENDING,
                position="",
                profiles_done=0,
                entered=0,
                created_at_ms=now_ms,
                updated_at_ms=now_ms,
                finished_at_ms=None,
            )
        )


def pending(conn: Connection) -> list[Backfill]:
    """Unfinished backfills, oldest first."""
    rows = conn.execute(
        select(journey_backfills)
        .where(journey_backfills.c.status == PENDING)
        .order_by(journey_backfills.c.created_at_ms, journey_backfills.c.workspace_id, journey_backfills.c.journey_id)
    )
    return [_backfill(r) for r in rows]


def of_journey(conn: Connection, workspace_id: str, journey_id: str) -> list[Backfill]:
    rows = conn.execute(
        select(journey_backfills)
        .where(journey_backfills.c.workspace_id == workspace_id, journey_backfills.c.journey_id == journey_id)
        .order_by(journey_backfills.c.version)
    )
    return [_backfill(r) for r in rows]


def advance(
    conn: Connection, job: Backfill, position: str, profiles_done: int, entered: int, now_ms: int, finished: bool
) -> None:
    """Record a batch's progress, in the transaction that wrote what it decided."""
    values: dict[str, Any] = {
        "position": position,
        "profiles_done": journey_backfills.c.profiles_done + profiles_done,
        "entered": journey_backfills.c.entered + entered,
        "updated_at_ms": now_ms,
    }
    if finished:
        values.update(status=DONE, finished_at_ms=now_ms)
    conn.execute(update(journey_backfills).where(*_key(job)).values(**values))


def cancel(conn: Connection, job: Backfill, now_ms: int) -> None:
    conn.execute(
        update(journey_backfills)
        .where(*_key(job))
        .values(status=CANCELLED, updated_at_ms=now_ms, finished_at_ms=now_ms)
    )


def _key(job: Backfill) -> tuple[Any, ...]:
    return (
        journey_backfills.c.workspace_id == job.workspace_id,
        journey_backfills.c.journey_id == job.journey_id,
        journey_backfills.c.version == job.version,
    )


# --- the stored past ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decided:
    """The events the engine has decided: seq <= through, less the open gaps (seqs its cursor
    passed before they were visible, decided when they turn up; runtime/processor.py)."""

    through: int
    gaps: tuple[tuple[int, int], ...] = ()

    def clause(self) -> Any:
        clause = events.c.seq <= self.through
        for first, last in self.gaps:
            clause = and_(clause, ~events.c.seq.between(first, last))
        return clause


def decided(conn: Connection) -> Decided:
    """Read without locking or creating anything: a preview only reads."""
    row = conn.execute(
        select(engine_cursors.c.position, engine_cursors.c.gaps).where(engine_cursors.c.name == "events")
    ).first()
    if row is None:
        return Decided(0)
    gaps: list[tuple[int, int]] = []
    try:
        for gap in orjson.loads(row.gaps) if row.gaps else ():
            gaps.append((int(gap[0]), int(gap[1])))
    except (orjson.JSONDecodeError, TypeError, ValueError, IndexError):
        pass  # unreadable: the engine's own reader decides what it means
    return Decided(int(row.position or 0), tuple(gaps))


def profiles_after(
    conn: Connection, workspace_id: str, position: str, limit: int, created_before_ms: int | None = None
) -> list[tuple[str, int]]:
    """The next `limit` profiles of the workspace after `position` in id order: (id, created_at_ms).

    `created_before_ms`: only the people who existed before then (a backfill's publish). Ids
    are not in creation order, so without it a backfill still walking would also take people
    who appeared at or after the publish, whom the live journey already follows from their
    first event: it would decide them a second way (an inactivity timer from their creation,
    say, beside the live one). Strictly before: a person created in the publish's very
    millisecond is the live journey's too (their first event reaches it)."""
    query = select(profiles.c.id, profiles.c.created_at_ms).where(
        profiles.c.workspace_id == workspace_id, profiles.c.id > position
    )
    if created_before_ms is not None:
        query = query.where(profiles.c.created_at_ms < created_before_ms)
    rows = conn.execute(query.order_by(profiles.c.id).limit(limit))
    return [(pid, int(created)) for pid, created in rows]


def count_profiles(conn: Connection, workspace_id: str) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(profiles).where(profiles.c.workspace_id == workspace_id)
        ).scalar_one()
    )


def quiet_profiles(
    conn: Connection, workspace_id: str, activity_names: Iterable[str] | None, cutoff_ms: int, seen: Decided
) -> list[tuple[str, int]]:
    """The workspace's people whose latest decided activity (of these names; None: any event)
    is at or before cutoff_ms, or who have none and were created by then: (id, created_at_ms).

    One statement, the test done by the database: for each profile a seek on
    (profile_id, timestamp_ms) for an activity after the cutoff, so it costs one index probe
    per person rather than reading everyone's events (a preview's count, before a publish)."""

    def activity(*where: Any) -> Any:
        clause = and_(events.c.profile_id == profiles.c.id, seen.clause(), *where)
        clause = and_(clause, _activity_clause(activity_names))
        return select(events.c.seq).where(clause).exists()

    query = (
        select(profiles.c.id, profiles.c.created_at_ms)
        .where(
            profiles.c.workspace_id == workspace_id,
            ~activity(events.c.timestamp_ms > cutoff_ms),
            # Created after the cutoff: quiet only if stored events (older than the profile row,
            # as imported history can be) say so.
            or_(profiles.c.created_at_ms <= cutoff_ms, activity()),
        )
        .order_by(profiles.c.id)
    )
    return [(pid, int(created)) for pid, created in conn.execute(query)]


def _activity_clause(names: Iterable[str] | None) -> Any:
    """Events that count as activity: of these names, or (None) any but the Segment Entered /
    Exited the engine appends, which it passes undecided (store/event_log.py) and which are
    no one's doing."""
    if names is not None:
        return _names_clause(names)
    prefix = OWN_SEGMENT_PREFIX
    return ~and_(
        events.c.type == "track",
        events.c.event.in_((SEGMENT_ENTERED, SEGMENT_EXITED)),
        func.substr(events.c.message_id, 1, len(prefix)) == prefix,
    )


def _names_clause(names: Iterable[str]) -> Any:
    """Events whose engine-side name (the track event's, else the call type) is one of these."""
    names = sorted(set(names))
    calls = [n for n in names if n in ("identify", "page", "screen", "group", "alias")]
    clause = and_(events.c.type == "track", events.c.event.in_(names))
    if calls:
        clause = or_(clause, and_(events.c.type != "track", events.c.type.in_(calls)))
    return clause


def past_of(
    conn: Connection,
    profile_ids: Sequence[str],
    activity: bool,
    activity_names: Iterable[str] | None,
    names: Iterable[str],
    since_ms: int,
    seen: Decided,
) -> tuple[dict[str, int], dict[str, dict[str, list[tuple[int, dict[str, Any], str]]]]]:
    """Each person's latest activity (when asked) and their stored_events of these names:
    ({profile: latest activity}, {profile: {name: [(ts, properties, message_id), …]}})."""
    names = sorted(set(names))
    last = latest_activity(conn, profile_ids, activity_names, seen) if activity else {}
    return last, stored_events(conn, profile_ids, names, since_ms, seen) if names else {}


def latest_activity(
    conn: Connection, profile_ids: Sequence[str], activity_names: Iterable[str] | None, seen: Decided
) -> dict[str, int]:
    """Each person's latest decided event of these names (None: of any name): {profile: ts}.

    Per person, the (profile_id, timestamp_ms) index is walked from the newest event back
    to the first that counts, usually the first one looked at: a person's whole history is
    neither read by the database nor sent to Python (a backfill asks this of everyone)."""
    clause = _activity_clause(activity_names)
    out: dict[str, int] = {}
    for start in range(0, len(profile_ids), _IN_CHUNK):
        chunk = list(profile_ids[start : start + _IN_CHUNK])
        newest = select(events.c.timestamp_ms).where(events.c.profile_id == profiles.c.id, seen.clause(), clause)
        newest_ts = newest.order_by(events.c.timestamp_ms.desc()).limit(1).scalar_subquery()
        for pid, ts in conn.execute(select(profiles.c.id, newest_ts).where(profiles.c.id.in_(chunk))):
            if ts is not None:
                out[pid] = int(ts)
    return out


def _properties(payload: str) -> tuple[dict[str, Any], str]:
    """The stored message's properties and messageId (as the engine's EventInput reads them)."""
    try:
        message = orjson.loads(payload)
        props = message.get("properties")
    except (orjson.JSONDecodeError, AttributeError):
        return {}, ""
    return (props if isinstance(props, dict) else {}), str(message.get("messageId", ""))


def stored_events(
    conn: Connection, profile_ids: Sequence[str], names: Iterable[str], since_ms: int, seen: Decided
) -> dict[str, dict[str, list[tuple[int, dict[str, Any], str]]]]:
    """Each person's decided events of these names after since_ms, oldest first:
    {profile: {name: [(timestamp_ms, properties, message_id), …]}} (the messageId: a goal
    event's kept history carries it, core/backfill._seed_history)."""
    names = list(names)
    out: dict[str, dict[str, list[tuple[int, dict[str, Any], str]]]] = {}
    if not names:
        return out
    for start in range(0, len(profile_ids), _IN_CHUNK):
        chunk = list(profile_ids[start : start + _IN_CHUNK])
        stmt = (
            select(events.c.profile_id, events.c.type, events.c.event, events.c.timestamp_ms, events.c.payload)
            .where(
                events.c.profile_id.in_(chunk), seen.clause(), events.c.timestamp_ms > since_ms, _names_clause(names)
            )
            .order_by(events.c.profile_id, events.c.timestamp_ms, events.c.seq)
        )
        for pid, type_, event, ts, payload in conn.execute(stmt):
            name = event if type_ == "track" else type_
            props, message_id = _properties(payload)
            out.setdefault(pid, {}).setdefault(name, []).append((int(ts), props, message_id))
    return out


def stored_payloads(
    conn: Connection, profile_ids: Sequence[str], names: Iterable[str], since_ms: int, seen: Decided
) -> dict[str, list[tuple[int, str]]]:
    """Each person's decided events of these names after since_ms, whole, oldest first:
    {profile: [(timestamp_ms, payload), …]} (a segment's apply reads their properties and
    context as the engine does)."""
    names = list(names)
    out: dict[str, list[tuple[int, str]]] = {}
    if not names:
        return out
    for start in range(0, len(profile_ids), _IN_CHUNK):
        chunk = list(profile_ids[start : start + _IN_CHUNK])
        stmt = (
            select(events.c.profile_id, events.c.timestamp_ms, events.c.payload)
            .where(
                events.c.profile_id.in_(chunk), seen.clause(), events.c.timestamp_ms > since_ms, _names_clause(names)
            )
            .order_by(events.c.profile_id, events.c.timestamp_ms, events.c.seq)
        )
        for pid, ts, payload in conn.execute(stmt):
            out.setdefault(pid, []).append((int(ts), payload))
    return out


def device_token_events(
    conn: Connection, profile_ids: Sequence[str], since_ms: int, seen: Decided
) -> dict[str, tuple[int, str]]:
    """Each person's newest decided event after since_ms whose payload names a `token` (a
    mobile SDK's context.device.token; the caller checks it is one): {profile: (ts, payload)}.
    One probe per person, walking their events newest first: only segments that need to
    know of a device token ask."""
    out: dict[str, tuple[int, str]] = {}
    for start in range(0, len(profile_ids), _IN_CHUNK):
        chunk = list(profile_ids[start : start + _IN_CHUNK])
        newest = (
            select(events.c.seq)
            .where(
                events.c.profile_id == profiles.c.id,
                seen.clause(),
                events.c.timestamp_ms > since_ms,
                events.c.payload.like('%"token"%'),
            )
            .order_by(events.c.timestamp_ms.desc(), events.c.seq.desc())
            .limit(1)
            .scalar_subquery()
        )
        seqs = {
            seq: pid
            for pid, seq in conn.execute(select(profiles.c.id, newest).where(profiles.c.id.in_(chunk)))
            if seq is not None
        }
        if seqs:
            for seq, ts, payload in conn.execute(
                select(events.c.seq, events.c.timestamp_ms, events.c.payload).where(events.c.seq.in_(sorted(seqs)))
            ):
                out[seqs[seq]] = (int(ts), payload)
    return out


def read_states(conn: Connection, profile_ids: Sequence[str]) -> dict[str, str]:
    """The engine's state documents of these people, without locking them (a preview only reads)."""
    out: dict[str, str] = {}
    for start in range(0, len(profile_ids), _IN_CHUNK):
        chunk = list(profile_ids[start : start + _IN_CHUNK])
        for pid, doc in conn.execute(
            select(profile_state.c.profile_id, profile_state.c.state).where(profile_state.c.profile_id.in_(chunk))
        ):
            out[pid] = doc
    return out
