"""Reading a person back: lookup by any id, their events, export, and erasure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from nudgeflow.model.iso_time import iso
from nudgeflow.store import sql
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


def event_owners(conn: Connection, profile_id: str, workspace_id: str | None = None) -> list[str]:
    """The profile and the profiles merged into it: whose ids the person's events are stored
    under. Ingest leaves a merged-away profile's events under its own id until the engine folds
    it into the surviving one (store/engine_state.move_merged), so reading a person's events
    by id alone would miss them meanwhile."""
    where = [profile_merges.c.into_profile_id == profile_id]
    if workspace_id is not None:
        where.append(profile_merges.c.workspace_id == workspace_id)
    merged = conn.execute(select(profile_merges.c.from_profile_id).where(*where)).scalars()
    return [profile_id, *sorted(set(merged) - {profile_id})]


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
    for (key,) in conn.execute(
        select(identities.c.key).where(identities.c.profile_id == profile_id).order_by(identities.c.key)
    ):
        kind, _, value = key.partition(":")
        out["user_ids" if kind == "u" else "anonymous_ids"].append(value)
    return out


def get_profile(conn: Connection, workspace_id: str, profile_id: str, recent: int = 10) -> dict[str, Any] | None:
    row = conn.execute(
        select(profiles).where(profiles.c.workspace_id == workspace_id, profiles.c.id == profile_id)
    ).one_or_none()
    if row is None:
        return None
    owners = event_owners(conn, profile_id)
    count = conn.execute(select(func.count()).select_from(events).where(events.c.profile_id.in_(owners))).scalar_one()
    recent_rows = conn.execute(
        select(events).where(events.c.profile_id.in_(owners)).order_by(events.c.seq.desc()).limit(recent)
    )
    merged_from = owners[1:]
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
    stmt = select(events).where(events.c.profile_id.in_(event_owners(conn, profile_id)))
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
    by_type: dict[str, int] = dict(
        conn.execute(
            select(events.c.type, func.count()).where(events.c.workspace_id == workspace_id).group_by(events.c.type)
        ).all()
    )
    by_event: dict[str, int] = dict(
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


def load_for_messages(conn: Connection, profile_ids: list[str]) -> dict[str, tuple[dict[str, Any], str | None, str]]:
    """Traits, userId and id per profile; a profile merged away is found where it went (its
    engagement events go there too: that is where its runs will be)."""
    out: dict[str, tuple[dict[str, Any], str | None, str]] = {}
    for pid, traits, user_id in sql.select_in(
        conn, "SELECT id, traits, user_id FROM profiles WHERE id IN", profile_ids
    ):
        out[pid] = (orjson.loads(traits), user_id, pid)
    missing = [pid for pid in profile_ids if pid not in out]
    if missing:
        merged = dict(
            sql.select_in(
                conn, "SELECT from_profile_id, into_profile_id FROM profile_merges WHERE from_profile_id IN", missing
            )
        )
        if merged:
            targets = sorted(set(merged.values()))
            found = {
                pid: (orjson.loads(traits), user_id, pid)
                for pid, traits, user_id in sql.select_in(
                    conn, "SELECT id, traits, user_id FROM profiles WHERE id IN", targets
                )
            }
            for source, target in merged.items():
                if target in found:
                    out[source] = found[target]
    return out


def follow_merge(conn: Connection, workspace_id: str, profile_id: str) -> str:
    """The profile a merged-away one went into (following a chain), else itself."""
    m = sql.mark(conn)
    for _ in range(8):  # merges chain rarely; never loop forever on bad data
        row = conn.exec_driver_sql(
            f"SELECT into_profile_id FROM profile_merges WHERE workspace_id = {m} AND from_profile_id = {m}",
            (workspace_id, profile_id),
        ).first()
        if row is None:
            break
        profile_id = row[0]
    return profile_id


def id_and_user(conn: Connection, profile_id: str) -> tuple[str, str | None] | None:
    """(id, userId) of the profile, or None."""
    m = sql.mark(conn)
    found = conn.exec_driver_sql(f"SELECT id, user_id FROM profiles WHERE id = {m}", (profile_id,)).first()
    return (found[0], found[1]) if found is not None else None


def mentioning(conn: Connection, workspace_id: str, address: str) -> Sequence[Any]:
    """(id, userId, traits) of the profiles whose traits mention `address` (lower-cased
    traits, so a lower-case address), most recently updated first."""
    m = sql.mark(conn)
    # The scan: the LIKE narrows to profiles whose traits mention the address at all.
    escaped = address.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return conn.exec_driver_sql(
        f"SELECT id, user_id, traits FROM profiles WHERE workspace_id = {m} AND lower(traits) LIKE {m} ESCAPE '\\'"
        " ORDER BY updated_at_ms DESC",
        (workspace_id, f"%{escaped}%"),
    ).all()


def profile_of_identity(conn: Connection, workspace_id: str, key: str) -> str | None:
    """The profile an identity key ("u:<userId>", "a:<anonymousId>") belongs to, or None."""
    found = conn.execute(
        select(identities.c.profile_id).where(identities.c.workspace_id == workspace_id, identities.c.key == key)
    ).scalar_one_or_none()
    return str(found) if found is not None else None


def stored_traits(conn: Connection, workspace_id: str, profile_id: str) -> str | None:
    """The profile's traits document as stored, or None if there is no such profile."""
    row = conn.execute(
        select(profiles.c.traits).where(profiles.c.id == profile_id, profiles.c.workspace_id == workspace_id)
    ).one_or_none()
    return row.traits if row is not None else None


def recent_events(conn: Connection, workspace_id: str, profile_id: str, limit: int) -> list[Any]:
    """(type, event, timestamp_ms, payload) of the person's latest events, newest first."""
    return list(
        conn.execute(
            select(events.c.type, events.c.event, events.c.timestamp_ms, events.c.payload)
            .where(
                events.c.profile_id.in_(event_owners(conn, profile_id, workspace_id)),
                events.c.workspace_id == workspace_id,
            )
            .order_by(events.c.timestamp_ms.desc(), events.c.seq.desc())
            .limit(limit)
        )
    )


def recent_named_events(conn: Connection, workspace_id: str, profile_id: str, name: str, limit: int) -> list[Any]:
    """As `recent_events`, of the events named `name` only."""
    return list(
        conn.execute(
            select(events.c.type, events.c.event, events.c.timestamp_ms, events.c.payload)
            .where(
                events.c.profile_id.in_(event_owners(conn, profile_id, workspace_id)),
                events.c.workspace_id == workspace_id,
                events.c.event == name,
            )
            .order_by(events.c.timestamp_ms.desc())
            .limit(limit)
        )
    )


def latest_track_payloads(conn: Connection, workspace_id: str, name: str, limit: int) -> Any:
    """The payloads of the workspace's latest track events named `name`, newest first."""
    return conn.execute(
        select(events.c.payload)
        .where(events.c.workspace_id == workspace_id, events.c.type == "track", events.c.event == name)
        .order_by(events.c.seq.desc())
        .limit(limit)
    ).scalars()


def user_ids(conn: Connection, workspace_id: str) -> list[Any]:
    """(id, userId) of every profile of the workspace (userId None for the anonymous)."""
    return list(conn.execute(select(profiles.c.id, profiles.c.user_id).where(profiles.c.workspace_id == workspace_id)))


def all_traits(conn: Connection, workspace_id: str) -> list[Any]:
    """(id, traits document as stored) of every profile of the workspace."""
    return list(conn.execute(select(profiles.c.id, profiles.c.traits).where(profiles.c.workspace_id == workspace_id)))


def merges(conn: Connection, workspace_id: str) -> list[Any]:
    """(from_profile_id, into_profile_id) of every merge of the workspace, one step each
    (a chain shows as several rows; `follow_merge` walks one)."""
    m = profile_merges.c
    return list(conn.execute(select(m.from_profile_id, m.into_profile_id).where(m.workspace_id == workspace_id)))
