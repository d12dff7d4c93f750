"""Who is in a journey now: runs that have not ended (active, or held while the journey is
paused), counted per journey and per step. The console's journey list and canvas show them.

Both counts read journey_runs through its (workspace_id, journey_id, status) index, bounded by
the journeys asked for: never the whole table, never the event log.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, func, select

from nudgeflow.core.state import ACTIVE, HELD
from nudgeflow.store import sql
from nudgeflow.store.schema import journey_runs

IN_FLIGHT = (ACTIVE, HELD)


def people_in_journeys(conn: Connection, workspace_id: str, journey_ids: Sequence[str]) -> dict[str, int]:
    """journey id -> runs not yet ended, for the given journeys (absent: none)."""
    r = journey_runs.c
    counts: dict[str, int] = {}
    for chunk in sql.chunks(list(journey_ids)):
        stmt = (
            select(r.journey_id, func.count())
            .where(r.workspace_id == workspace_id, r.journey_id.in_(chunk), r.status.in_(IN_FLIGHT))
            .group_by(r.journey_id)
        )
        counts.update({journey_id: int(n) for journey_id, n in conn.execute(stmt)})
    return counts


def people_at_steps(conn: Connection, workspace_id: str, journey_id: str) -> dict[str, int]:
    """step id -> runs of the journey (any version) now at that step and not yet ended."""
    r = journey_runs.c
    stmt = (
        select(r.step, func.count())
        .where(r.workspace_id == workspace_id, r.journey_id == journey_id, r.status.in_(IN_FLIGHT))
        .group_by(r.step)
    )
    return {step: int(n) for step, n in conn.execute(stmt) if step is not None}
