"""One person as the console's People page shows them: who they are, and one timeline.

`person_card` gathers what is held about the person now (traits, identities and merges,
consent per channel and topic, push targets, segments, pending timers, runs in progress),
each part bounded. `timeline` interleaves their events, journey runs (entered, ended with
the reason, converted), profiles merged into them, the engine's decisions (split and experiment arms) and their
messages (with status and, for one not sent, why), newest first, a page at a time.

Every source is read with its own indexed, bounded query (events by profile and time,
runs, messages, arms, merges by profile): a page costs a few index probes per source whatever
the person's history, and the cursor says where the next page starts in all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Column, ColumnElement, Connection, and_, func, or_, select, tuple_

from nudgeflow.core.person_why import JourneyFacts, trigger_event_of
from nudgeflow.errors import StoreError
from nudgeflow.model.iso_time import iso
from nudgeflow.model.journeys import Journey
from nudgeflow.store import consent, consent_records, segments
from nudgeflow.store.engine_state import stored_state
from nudgeflow.store.journeys import load_version, parse_definition
from nudgeflow.store.outbox import DEFERRED
from nudgeflow.store.privacy import mask, person_ids
from nudgeflow.store.profiles import get_profile
from nudgeflow.store.schema import (
    device_tokens,
    events,
    journey_runs,
    journey_versions,
    journeys,
    outbox,
    profile_merges,
    push_subscriptions,
    run_arms,
    timers,
)

PAGE = 50
MAX_PAGE = 200
# What the card shows of each list at most: a person with more is shown the newest.
CARD_LIMIT = 50
# An event's message shown in the timeline is cut here: the page is a view, the export
# (GET /api/profiles/{ref}/export) has the whole document.
MESSAGE_TEXT_LIMIT = 2000


class BadCursor(StoreError, ValueError):
    """A timeline cursor that this module did not write (or a mangled one)."""


# -- who the person is ---------------------------------------------------------------------------


def describe_timer(payload: dict[str, Any]) -> str:
    """What a pending timer is for, in words, from the payload the engine armed it with."""
    kind = payload.get("kind")
    step, journey = payload.get("step"), payload.get("journey")
    if kind == "step":
        return f"the wait at step {step} ends; the run moves on"
    if kind == "timeout":
        return f"the wait for an event at step {step} times out"
    if kind == "send_time":
        return f"step {step} sends at the person's best hour (send-time optimization)"
    if kind == "release":
        return f"the deferred message of step {step} (template {payload.get('template')}) is decided again"
    if kind == "not_followed":
        return f"journey {journey}: the trigger fires unless the follow-up event came first"
    if kind == "inactivity":
        return f"journey {journey}: the inactivity window ends (enters if the person stayed inactive)"
    if kind == "date":
        return f"journey {journey}: the date the trigger is set to"
    if kind == "segment":
        return "a time-based segment condition lapses; memberships are decided again"
    return f"engine timer ({kind or 'unknown kind'})"


def pending_timers(
    conn: Connection, workspace_id: str, ids: Sequence[str], limit: int = CARD_LIMIT
) -> list[dict[str, Any]]:
    """The person's pending timers, soonest first: when each fires and what it is for."""
    t = timers.c
    rows = list(
        conn.execute(
            select(t.key, t.due_at_ms, t.payload)
            .where(t.workspace_id == workspace_id, t.profile_id.in_(list(ids)))
            .order_by(t.due_at_ms, t.key)
            .limit(limit)
        )
    )
    run_ids = set()
    parsed = []
    for row in rows:
        payload = orjson.loads(row.payload)
        payload = payload if isinstance(payload, dict) else {}
        parsed.append((row, payload))
        if isinstance(payload.get("run_id"), str):
            run_ids.add(payload["run_id"])
    journeys_of = _journeys_of_runs(conn, workspace_id, sorted(run_ids))
    out = []
    for row, payload in parsed:
        run_id = payload.get("run_id")
        journey = payload.get("journey") or (journeys_of.get(run_id) if isinstance(run_id, str) else None)
        out.append(
            {
                "key": row.key,
                "due_at_ms": row.due_at_ms,
                "due_at": iso(row.due_at_ms, milliseconds=False),
                "kind": payload.get("kind"),
                "journey_id": journey,
                "run_id": run_id,
                "step": payload.get("step"),
                "for": describe_timer(payload),
            }
        )
    return out


def _journeys_of_runs(conn: Connection, workspace_id: str, run_ids: list[str]) -> dict[str, str]:
    if not run_ids:
        return {}
    r = journey_runs.c
    return dict(
        conn.execute(select(r.id, r.journey_id).where(r.workspace_id == workspace_id, r.id.in_(run_ids))).tuples().all()
    )


def run_view(row: Any) -> dict[str, Any]:
    return {
        "run_id": row.id,
        "journey_id": row.journey_id,
        "version": row.version,
        "status": row.status,
        "step": row.step,
        "holdout": bool(row.holdout),
        "control": bool(row.control),
        "entered_at": iso(row.entered_at_ms, milliseconds=False),
        "ended_at": iso(row.ended_at_ms, milliseconds=False),
        "exit_reason": row.exit_reason,
        "converted_at": iso(row.converted_at_ms, milliseconds=False),
        "revenue": row.revenue,
    }


def push_targets(
    conn: Connection, workspace_id: str, ids: Sequence[str], limit: int = CARD_LIMIT
) -> list[dict[str, Any]]:
    """Web Push subscriptions and device tokens, masked as the export shows them."""
    ps, dt = push_subscriptions.c, device_tokens.c
    web = conn.execute(
        select(ps.endpoint, ps.user_agent, ps.created_at_ms, ps.updated_at_ms)
        .where(ps.workspace_id == workspace_id, ps.profile_id.in_(list(ids)))
        .order_by(ps.updated_at_ms.desc())
        .limit(limit)
    )
    devices = conn.execute(
        select(dt.token, dt.provider, dt.platform, dt.app_id, dt.created_at_ms, dt.updated_at_ms)
        .where(dt.workspace_id == workspace_id, dt.profile_id.in_(list(ids)))
        .order_by(dt.updated_at_ms.desc())
        .limit(limit)
    )
    return [
        {
            "provider": "webpush",
            "target": mask(row.endpoint),
            "detail": row.user_agent,
            "updated_at": iso(row.updated_at_ms, milliseconds=False),
        }
        for row in web
    ] + [
        {
            "provider": row.provider,
            "target": mask(row.token),
            "detail": " ".join(p for p in (row.platform, row.app_id) if p),
            "updated_at": iso(row.updated_at_ms, milliseconds=False),
        }
        for row in devices
    ]


def person_card(conn: Connection, workspace_id: str, profile_id: str) -> dict[str, Any] | None:
    """What is held about the person now, each list bounded; None for no such profile in
    the workspace (a profile of another workspace is not found either)."""
    doc = get_profile(conn, workspace_id, profile_id, recent=0)
    if doc is None:
        return None
    doc.pop("recent_events")
    ids = person_ids(conn, workspace_id, profile_id)
    m = profile_merges.c
    doc["merges"] = [
        {"from_profile_id": r.from_profile_id, "merged_at": iso(r.merged_at_ms, milliseconds=False)}
        for r in conn.execute(
            select(m.from_profile_id, m.merged_at_ms)
            .where(m.workspace_id == workspace_id, m.into_profile_id == profile_id)
            .order_by(m.merged_at_ms.desc())
            .limit(CARD_LIMIT)
        )
    ]
    settings = consent.get_settings(conn, workspace_id)
    doc["consent"] = consent_records.view(conn, workspace_id, profile_id, settings)
    address = consent.address_of(consent.EMAIL, doc["traits"])
    doc["email"] = address
    doc["email_suppression"] = (
        consent.suppression_of(conn, workspace_id, consent.EMAIL, address) if address is not None else None
    )
    doc["push_targets"] = push_targets(conn, workspace_id, ids)
    doc["segments"] = [
        {"segment_id": sid, "since": iso(since, milliseconds=False)}
        for sid, since in sorted(
            (sid, since)
            for found in segments.memberships(conn, workspace_id, ids).values()
            for sid, since in found.items()
        )
    ][:CARD_LIMIT]
    doc["timers"] = pending_timers(conn, workspace_id, ids)
    r = journey_runs.c
    doc["open_runs"] = [
        run_view(row)
        for row in conn.execute(
            select(journey_runs)
            .where(r.workspace_id == workspace_id, r.profile_id.in_(ids), r.status.in_(("active", "held")))
            .order_by(r.entered_at_ms.desc())
            .limit(CARD_LIMIT)
        )
    ]
    return doc


# -- the timeline ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last item's time, its source's rank and its key in the source."""

    at_ms: int
    rank: int
    key: tuple[Any, ...]

    def encode(self) -> str:
        return orjson.dumps([self.at_ms, self.rank, list(self.key)]).decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            at_ms, rank, key = orjson.loads(text)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            raise BadCursor(f"not a timeline cursor: {text[:80]!r}") from exc
        source = SOURCES_BY_RANK.get(rank) if isinstance(rank, int) else None
        if (
            source is None
            or not isinstance(at_ms, int)
            or isinstance(at_ms, bool)
            or not isinstance(key, list)
            or len(key) != len(source.key_types)
            or not all(_storable(v, t) for v, t in zip(key, source.key_types, strict=True))
            or not -(2**63) <= at_ms < 2**63
        ):
            raise BadCursor(f"not a timeline cursor: {text[:80]!r}")
        return cls(at_ms, rank, tuple(key))


def _storable(value: Any, kind: type) -> bool:
    """Whether a cursor's key value is one the database can compare with its column: an int
    of 64 bits, a text without NUL (PostgreSQL text cannot hold one); else the driver would
    fail the page rather than the cursor be refused."""
    if not isinstance(value, kind) or isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return not isinstance(value, str) or "\x00" not in value


@dataclass(frozen=True)
class Source:
    """One kind of timeline item: its table's time column, its key columns (a total order
    among items of the same time), which rows count, and how a row reads."""

    rank: int
    kind: str
    time: Column[Any]
    key: tuple[Column[Any], ...]
    key_types: tuple[type, ...]
    where: Callable[[str, list[str]], list[ColumnElement[bool]]]
    item: Callable[[Any], dict[str, Any]]


def _event_item(row: Any) -> dict[str, Any]:
    text = row.payload if len(row.payload) <= MESSAGE_TEXT_LIMIT else row.payload[:MESSAGE_TEXT_LIMIT] + "…"
    return {
        "type": row.type,
        "event": row.event,
        "message_id": row.message_id,
        "received_at": iso(row.received_at_ms, milliseconds=False),
        "message": text,
    }


def _run_item(row: Any) -> dict[str, Any]:
    return run_view(row)


def _arm_item(row: Any) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "journey_id": row.journey_id,
        "version": row.version,
        "step": row.step,
        "arm": row.arm,
        "decision": row.kind,
    }


def _message_item(row: Any) -> dict[str, Any]:
    return {
        "message_id": row.id,
        "key": row.idempotency_key,
        "run_id": row.run_id,
        "journey_id": row.journey_id,
        "version": row.journey_version,
        "step": row.step,
        "channel": row.channel,
        "template": row.template,
        "variant": row.variant,
        "status": row.status,
        "reason": row.reason,  # suppressed, deferred, dropped: why (model/reasons.py)
        "error": row.error,  # failed: what went wrong
        "sent_at": iso(row.sent_at_ms, milliseconds=False),
        "deferred_until": iso(row.next_attempt_at_ms, milliseconds=False) if row.status == DEFERRED else None,
    }


def _merge_item(row: Any) -> dict[str, Any]:
    return {"from_profile_id": row.from_profile_id}


e, r, a, o, pm = events.c, journey_runs.c, run_arms.c, outbox.c, profile_merges.c
# Higher rank first among items of the same millisecond: a run's end after its message,
# its message after its entry, its entry after the event that started it.
SOURCES: tuple[Source, ...] = (
    Source(
        0,
        "event",
        e.timestamp_ms,
        (e.seq,),
        (int,),
        lambda w, ids: [e.workspace_id == w, e.profile_id.in_(ids)],
        _event_item,
    ),
    Source(
        1,
        "run_entered",
        r.entered_at_ms,
        (r.id,),
        (str,),
        lambda w, ids: [r.workspace_id == w, r.profile_id.in_(ids)],
        _run_item,
    ),
    Source(
        2,
        "decision",
        a.assigned_at_ms,
        (a.run_id, a.step),
        (str, str),
        lambda w, ids: [a.workspace_id == w, a.profile_id.in_(ids)],
        _arm_item,
    ),
    Source(
        3,
        "message",
        o.created_at_ms,
        (o.id,),
        (int,),
        lambda w, ids: [o.workspace_id == w, o.profile_id.in_(ids)],
        _message_item,
    ),
    Source(
        4,
        "run_converted",
        r.converted_at_ms,
        (r.id,),
        (str,),
        lambda w, ids: [r.workspace_id == w, r.profile_id.in_(ids), r.converted_at_ms.is_not(None)],
        _run_item,
    ),
    Source(
        5,
        "run_ended",
        r.ended_at_ms,
        (r.id,),
        (str,),
        lambda w, ids: [r.workspace_id == w, r.profile_id.in_(ids), r.ended_at_ms.is_not(None)],
        _run_item,
    ),
    # Another profile (an anonymous visitor's) found to be this person and merged into them.
    Source(
        6,
        "merged",
        pm.merged_at_ms,
        (pm.from_profile_id,),
        (str,),
        lambda w, ids: [pm.workspace_id == w, pm.into_profile_id.in_(ids)],
        _merge_item,
    ),
)
SOURCES_BY_RANK = {s.rank: s for s in SOURCES}


def _after(source: Source, cursor: Cursor) -> ColumnElement[bool]:
    """The items of `source` that come after the cursor, newest first (time, rank, key descending)."""
    if source.rank < cursor.rank:
        return source.time <= cursor.at_ms
    if source.rank > cursor.rank:
        return source.time < cursor.at_ms
    key = source.key[0] < cursor.key[0] if len(source.key) == 1 else tuple_(*source.key) < tuple_(*cursor.key)
    return or_(source.time < cursor.at_ms, and_(source.time == cursor.at_ms, key))


def timeline(
    conn: Connection, workspace_id: str, profile_ids: Sequence[str], *, limit: int = PAGE, before: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the person's timeline, newest first, and the cursor of the next page (None
    at the end). `profile_ids`: the person's (privacy.person_ids). BadCursor for a cursor
    this function did not return."""
    limit = max(1, min(limit, MAX_PAGE))
    cursor = Cursor.decode(before) if before is not None else None
    ids = list(profile_ids)
    found: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for source in SOURCES:
        table = source.time.table
        where = source.where(workspace_id, ids)
        if cursor is not None:
            where.append(_after(source, cursor))
        query = (
            select(table).where(*where).order_by(source.time.desc(), *(k.desc() for k in source.key)).limit(limit + 1)
        )
        for row in conn.execute(query):
            at_ms = getattr(row, source.time.name)
            key = tuple(getattr(row, k.name) for k in source.key)
            item = {"kind": source.kind, "at_ms": at_ms, "at": iso(at_ms, milliseconds=False), **source.item(row)}
            found.append(((at_ms, source.rank, key), item))
    found.sort(key=lambda pair: pair[0], reverse=True)
    page = found[:limit]
    if len(found) <= limit:
        return [item for _, item in page], None
    at_ms, rank, key = page[-1][0]
    return [item for _, item in page], Cursor(at_ms, rank, key).encode()


# -- why did or didn't they get X ----------------------------------------------------------------

WHY_EVENTS = 20  # trigger events looked at, the newest
WHY_ROWS = 50  # runs and messages looked at, the newest


def journey_facts(
    conn: Connection, workspace_id: str, profile_id: str, journey_id: str, template: str | None = None
) -> JourneyFacts:
    """What is stored about the person and the journey, for core/person_why.explain."""
    ids = person_ids(conn, workspace_id, profile_id)
    j = journeys.c
    row = conn.execute(
        select(j.status, j.live_version, j.draft).where(j.workspace_id == workspace_id, j.id == journey_id)
    ).one_or_none()
    definition: Journey | None = None
    first_published: int | None = None
    if row is not None:
        v = journey_versions.c
        first_published = conn.execute(
            select(func.min(v.published_at_ms)).where(v.workspace_id == workspace_id, v.journey_id == journey_id)
        ).scalar_one()
        live = load_version(conn, workspace_id, journey_id, row.live_version) if row.live_version is not None else None
        definition = live if live is not None else parse_definition(row.draft)
    name = trigger_event_of(definition) if definition is not None else None
    found: list[dict[str, Any]] = []
    if name is not None:
        found = [
            {"at_ms": ev.timestamp_ms, "received_at_ms": ev.received_at_ms, "message_id": ev.message_id}
            for ev in conn.execute(
                select(e.timestamp_ms, e.received_at_ms, e.message_id)
                .where(e.workspace_id == workspace_id, e.profile_id.in_(ids), e.event == name)
                .order_by(e.timestamp_ms.desc(), e.seq.desc())
                .limit(WHY_EVENTS)
            )
        ]
    runs = [
        dict(run._mapping)
        for run in conn.execute(
            select(journey_runs)
            .where(r.workspace_id == workspace_id, r.profile_id.in_(ids), r.journey_id == journey_id)
            .order_by(r.entered_at_ms.desc(), r.id.desc())
            .limit(WHY_ROWS)
        )
    ]
    query = select(outbox).where(o.workspace_id == workspace_id, o.profile_id.in_(ids), o.journey_id == journey_id)
    if template is not None:
        query = query.where(o.template == template)
    messages = [dict(m._mapping) for m in conn.execute(query.order_by(o.id.desc()).limit(WHY_ROWS))]
    entries: dict[str, Any] | None = None
    for pid in ids:  # the survivor's state first; a merged-away one's until the engine folds it
        text = stored_state(conn, pid)
        doc = orjson.loads(text) if text else {}
        found_entries = (doc.get("entries") or {}).get(journey_id) if isinstance(doc, dict) else None
        if isinstance(found_entries, dict):
            entries = found_entries
            break
    return JourneyFacts(
        journey_id=journey_id,
        status=row.status if row is not None else None,
        definition=definition,
        first_published_ms=first_published,
        trigger_event=name,
        trigger_events=found,
        events_limit=WHY_EVENTS,
        runs=runs,
        entries=entries,
        messages=messages,
        template=template,
    )


def journey_ids(conn: Connection, workspace_id: str, limit: int = 1000) -> list[str]:
    """The workspace's journey ids, by id (what the "why" form offers besides the person's own)."""
    j = journeys.c
    return list(conn.execute(select(j.id).where(j.workspace_id == workspace_id).order_by(j.id).limit(limit)).scalars())


def journeys_of_person(conn: Connection, workspace_id: str, profile_id: str) -> list[str]:
    """The journeys the person has runs or messages in (what the page offers to ask about)."""
    ids = person_ids(conn, workspace_id, profile_id)
    with_runs = conn.execute(
        select(r.journey_id).where(r.workspace_id == workspace_id, r.profile_id.in_(ids)).distinct().limit(WHY_ROWS)
    ).scalars()
    return sorted(set(with_runs))
