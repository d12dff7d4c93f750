"""The workspace's pattern of attention by local hour, read from stored events for the core.

Send-time optimization (core/send_time.py) shrinks each person's hours toward the workspace's.
The pure core cannot query, so this reads the workspace's latest opens, clicks and app opens
when the engine's catalog loads (store/journeys.load_catalog, only when a live journey uses
`send_time`), and the catalog keeps the result until it is loaded again (a journey, segment,
policy or places change). Bounded twice: at most SCAN_ROWS of the log's newest rows are
looked at, and at most SAMPLE_EVENTS of them used, so a catalog load never reads the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from nudgeflow.core import send_time
from nudgeflow.core.send_time import Prior
from nudgeflow.model.engagement_signals import is_flagged
from nudgeflow.store.schema import events, profiles

SCAN_ROWS = 500_000  # the newest rows of the event log looked at
SAMPLE_EVENTS = 50_000  # counted events used, newest first
_CHUNK = 500  # profile ids per IN (…) when reading time zones


def hour_rows(conn: Connection, workspace_id: str) -> list[tuple[str, int, bool]]:
    """(profile id, event time ms, machine?) of the workspace's newest counted events."""
    top = conn.execute(select(func.max(events.c.seq))).scalar_one_or_none()
    if top is None:
        return []
    rows = conn.execute(
        select(events.c.profile_id, events.c.timestamp_ms, events.c.payload)
        .where(
            events.c.seq > top - SCAN_ROWS,
            events.c.workspace_id == workspace_id,
            events.c.type == "track",
            events.c.event.in_(sorted(send_time.COUNTED)),
        )
        .order_by(events.c.seq.desc())
        .limit(SAMPLE_EVENTS)
    )
    return [(profile_id, int(ts), _machine(payload)) for profile_id, ts, payload in rows]


def _machine(payload: str) -> bool:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    properties = doc.get("properties") if isinstance(doc, dict) else None
    return isinstance(properties, dict) and is_flagged(properties)


def traits_of(conn: Connection, workspace_id: str, profile_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stored traits of these people (their time zones place each event in a local hour)."""
    ids = sorted(set(profile_ids))
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for pid, text in conn.execute(
            select(profiles.c.id, profiles.c.traits).where(
                profiles.c.workspace_id == workspace_id, profiles.c.id.in_(chunk)
            )
        ):
            try:
                traits = orjson.loads(text)
            except orjson.JSONDecodeError:
                traits = {}
            out[pid] = traits if isinstance(traits, dict) else {}
    return out


def histograms(rows: Sequence[tuple[str, int, bool]], traits: dict[str, dict[str, Any]]) -> dict[str, list[int]]:
    """Each person's 24 local-hour counts from the rows, machine opens left out, as the core counts."""
    out: dict[str, list[int]] = {}
    for profile_id, ts, machine in rows:
        if machine:
            continue
        out[profile_id] = send_time.record(out.get(profile_id, []), ts, traits.get(profile_id, {}))
    return out


def load_prior(conn: Connection, workspace_id: str) -> Prior | None:
    """The workspace's Dirichlet prior (core/send_time.workspace_prior); None with too few events."""
    rows = hour_rows(conn, workspace_id)
    if not rows:
        return None
    people = histograms(rows, traits_of(conn, workspace_id, (pid for pid, _, machine in rows if not machine)))
    return send_time.workspace_prior(people.values())
