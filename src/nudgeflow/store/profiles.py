"""Reading a person back: lookup by any id, their events, export, and erasure."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from nudgeflow.model.iso_time import iso
from nudgeflow.store.schema import events, identities, profile_merges, profiles


def resolve_profile_id(conn: Connection, workspace_id: str, ref: str) -> str | None:
    """Find a profile by its id (following merges), its userId, or an anonymousId."""
    row = conn.execute(
        select(profiles.c.id).where(profiles.c.workspace_id == workspace_id, profiles.c.id == ref)
    ).scalar_one_or_none()
    if row:
        return row
    merged = conn.execute(
        select(profile_merges.c.into_profile_id).where(
            profile_merges.c.workspace_id == workspace_id, profile_merges.c.from_profile_id == ref
        )
    ).scalar_one_or_none()
    if merged:
        return merged
    for key in ("u:" + ref, "a:" + ref):
        pid = conn.execute(
            select(identities.c.profile_id).where(identities.c.workspace_id == workspace_id, identities.c.key == key)
        ).scalar_one_or_none()
        if pid:
            return pid
    return None


def event_view(row: Any) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "message_id": row.message_id,
        "type": row.type,
        "event": row.event,
        "timestamp": iso(row.timestamp_ms, milliseconds=False),
        "received_at": iso(row.received_at_ms, milliseconds=False),
        "message": orjson.loads(row.payload),
    }


def _identities(conn: Connection, profile_id: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"user_ids": [], "anonymous_ids": []}
    for (key,) in conn.execute(select(identities.c.key).where(identities.c.profile_id == profile_id).order_by(identities.c.key)):
        kind, _, value = key.partition(":")
        out["user_ids" if kind == "u" else "anonymous_ids"].append(value)
    return out


def get_profile(conn: Connection, workspace_id: str, profile_id: str, recent: int = 10) -> dict[str, Any] | None:
    row = conn.execute(
        select(profiles).where(profiles.c.workspace_id == workspace_id, profiles.c.id == profile_id)
    ).one_or_none()
    if row is None:
        return None
    count = conn.execute(select(func.count()).select_from(events).where(events.c.profile_id == profile_id)).scalar_one()
    recent_rows = conn.execute(
        select(events).where(events.c.profile_id == profile_id).order_by(events.c.seq.desc()).limit(recent)
    )
    merged_from = list(
        conn.execute(
            select(profile_merges.c.from_profile_id).where(profile_merges.c.into_profile_id == profile_id)
        ).scalars()
    )
    return {
        "id": row.id,
        "user_id": row.user_id,
        "traits": orjson.loads(row.traits),
        "trait_errors": orjson.loads(row.trait_errors) if row.trait_errors else {},
        "identities": _identities(conn, profile_id),
        "merged_from": merged_from,
        "event_count": count,
        "recent_events": [event_view(r) for r in recent_rows],
        "created_at": iso(row.created_at_ms, milliseconds=False),
        "updated_at": iso(row.updated_at_ms, milliseconds=False),
    }


def list_events(
    conn: Connection, profile_id: str, *, limit: int = 100, before: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first; `before` is the cursor (a seq) returned by the previous page."""
    stmt = select(events).where(events.c.profile_id == profile_id)
    if before is not None:
        stmt = stmt.where(events.c.seq < before)
    rows = list(conn.execute(stmt.order_by(events.c.seq.desc()).limit(limit + 1)))
    page = [event_view(r) for r in rows[:limit]]
    next_cursor = rows[limit - 1].seq if len(rows) > limit else None
    return page, next_cursor


def export_profile(conn: Connection, workspace_id: str, profile_id: str) -> dict[str, Any] | None:
    """Everything held about the person (store/privacy.py)."""
    from nudgeflow.store.privacy import export_person  # it reads profiles through this module

    return export_person(conn, workspace_id, profile_id)


def erase_profile(conn: Connection, workspace_id: str, profile_id: str) -> dict[str, int]:
    """Delete the person and everything derived from them. Returns rows deleted per table
    (store/privacy.py; suppressions of their addresses are kept hashed, not deleted)."""
    from nudgeflow.store.privacy import erase_person

    return erase_person(conn, workspace_id, profile_id).deleted


def count_summary(conn: Connection, workspace_id: str) -> dict[str, Any]:
    """What a workspace holds, for the demo and `GET /api/stats`."""
    by_type = dict(
        conn.execute(
            select(events.c.type, func.count()).where(events.c.workspace_id == workspace_id).group_by(events.c.type)
        ).all()
    )
    by_event = dict(
        conn.execute(
            select(events.c.event, func.count())
            .where(events.c.workspace_id == workspace_id, events.c.type == "track")
            .group_by(events.c.event)
            .order_by(func.count().desc())
        ).all()
    )
    n_profiles = conn.execute(
        select(func.count()).select_from(profiles).where(profiles.c.workspace_id == workspace_id)
    ).scalar_one()
    known = conn.execute(
        select(func.count())
        .select_from(profiles)
        .where(profiles.c.workspace_id == workspace_id, profiles.c.user_id.is_not(None))
    ).scalar_one()
    merges = conn.execute(
        select(func.count()).select_from(profile_merges).where(profile_merges.c.workspace_id == workspace_id)
    ).scalar_one()
    return {
        "events_by_type": by_type,
        "track_events": by_event,
        "events": sum(by_type.values()),
        "profiles": n_profiles,
        "known_profiles": known,
        "merges": merges,
    }
