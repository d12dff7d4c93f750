"""Groups: the traits of each group (Segment `group` call: an account, a company, a team).

A group call names a groupId and may carry traits. Every call is merged into the group's
row the way identify merges a person's traits: a later call (by event time) overwrites the
traits it names and keeps the others; a call older than the latest merged one only fills
traits the group does not have yet, so an offline queue flushed late cannot undo a newer
change. Which group a person belongs to is not kept here: the engine's state holds the
group of the person's latest call (core/state.py), and conditions and templates read that
group's traits as `group.*`.

Every function takes a Connection and leaves committing to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from nudgeflow.model.events import EventRecord
from nudgeflow.store.schema import groups

CHUNK = 500


def _call(record: EventRecord) -> tuple[str, dict[str, Any]] | None:
    """(groupId, traits) of a stored group call; None for anything else."""
    try:
        message = orjson.loads(record.payload)
    except orjson.JSONDecodeError:
        return None
    group_id = message.get("groupId") if isinstance(message, dict) else None
    if not isinstance(group_id, str) or not group_id:
        return None
    traits = message.get("traits")
    return group_id, traits if isinstance(traits, dict) else {}


def merge_call(
    current: dict[str, Any], current_at: int, traits: dict[str, Any], at_ms: int
) -> tuple[dict[str, Any], int]:
    """The group's traits after one more call: newer ones win, older ones only fill gaps."""
    if at_ms >= current_at:
        return {**current, **traits}, at_ms
    return {**traits, **current}, current_at


def apply_group_calls(conn: Connection, workspace_id: str, records: Iterable[EventRecord], now_ms: int) -> int:
    """Merge these group calls into their groups' rows (created as needed); returns how many
    groups were written. Called by ingest in the transaction that stores the events."""
    calls = [
        (record.timestamp_ms, found)
        for record in records
        if record.type == "group"
        if (found := _call(record)) is not None
    ]
    if not calls:
        return 0
    calls.sort(key=lambda c: c[0])
    ids = list(dict.fromkeys(gid for _, (gid, _) in calls))
    rows = read_groups(conn, workspace_id, ids)
    state: dict[str, tuple[dict[str, Any], int, int]] = {
        gid: (row["traits"], row["traits_at_ms"], row["created_at_ms"]) for gid, row in rows.items()
    }
    for at_ms, (gid, traits) in calls:
        current, current_at, created = state.get(gid, ({}, -(1 << 62), now_ms))
        merged, merged_at = merge_call(current, current_at, traits, at_ms)
        state[gid] = (merged, merged_at, created)
    values = [
        {
            "workspace_id": workspace_id,
            "id": gid,
            "traits": orjson.dumps(traits).decode(),
            "traits_at_ms": at,
            "created_at_ms": created,
            "updated_at_ms": now_ms,
        }
        for gid, (traits, at, created) in state.items()
    ]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(groups)
    stmt = stmt.on_conflict_do_update(
        index_elements=[groups.c.workspace_id, groups.c.id],
        set_={
            "traits": stmt.excluded.traits,
            "traits_at_ms": stmt.excluded.traits_at_ms,
            "updated_at_ms": stmt.excluded.updated_at_ms,
        },
    )
    conn.execute(stmt, values)
    return len(values)


def read_groups(conn: Connection, workspace_id: str, group_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored groups among `group_ids`, by id: traits, traits_at_ms, created/updated times."""
    out: dict[str, dict[str, Any]] = {}
    wanted = list(dict.fromkeys(group_ids))
    for start in range(0, len(wanted), CHUNK):
        part = wanted[start : start + CHUNK]
        for row in conn.execute(select(groups).where(groups.c.workspace_id == workspace_id, groups.c.id.in_(part))):
            try:
                traits = orjson.loads(row.traits)
            except orjson.JSONDecodeError:
                traits = {}
            out[row.id] = {
                "id": row.id,
                "traits": traits if isinstance(traits, dict) else {},
                "traits_at_ms": row.traits_at_ms,
                "created_at_ms": row.created_at_ms,
                "updated_at_ms": row.updated_at_ms,
            }
    return out


def get_group(conn: Connection, workspace_id: str, group_id: str) -> dict[str, Any] | None:
    return read_groups(conn, workspace_id, [group_id]).get(group_id)


def refresh_group_traits(conn: Connection, states: Any, workspace_of: dict[str, str]) -> None:
    """Give each loaded engine state (ProfileState by profile id) its group's stored traits,
    merged from every member's calls: one query per workspace, none when no state has a group.

    The runtime calls it when it loads a batch's states, so that `group.*` in conditions
    sees what other members' calls set, not only this person's own."""
    wanted: dict[str, list[str]] = {}
    for pid, state in states.items():
        group = getattr(state, "group", None)
        ws = workspace_of.get(pid)
        if group and ws is not None and isinstance(group.get("id"), str):
            wanted.setdefault(ws, []).append(group["id"])
    for ws, ids in wanted.items():
        found = read_groups(conn, ws, ids)
        for pid, state in states.items():
            group = state.group
            if not group or workspace_of.get(pid) != ws or group.get("id") not in found:
                continue
            row = found[group["id"]]
            # The row already holds every call ingest stored, this person's included.
            traits, _at = merge_call(group.get("traits") or {}, group.get("at", 0), row["traits"], row["traits_at_ms"])
            state.group = {**group, "traits": traits}
