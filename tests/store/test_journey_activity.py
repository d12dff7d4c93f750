"""Who is in a journey now (store/journey_activity.py), on SQLite and PostgreSQL: runs not yet
ended, per journey and per step, of this workspace only."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert

from nudgeflow.store.journey_activity import people_at_steps, people_in_journeys
from nudgeflow.store.schema import journey_runs
from tests.support import make_workspace


def _run(engine: Any, wsid: str, run_id: str, journey_id: str, status: str, step: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(journey_runs).values(
                id=uuid.uuid4().hex,  # the session's PostgreSQL database is shared: ids of its own
                workspace_id=wsid,
                journey_id=journey_id,
                version=1,
                profile_id=run_id,
                status=status,
                step=step,
                holdout=0,
                entered_at_ms=1,
                updated_at_ms=1,
            )
        )


def test_runs_in_flight_per_journey_and_step(engine: Any) -> None:
    ws = make_workspace(engine, "one").workspace_id
    other = make_workspace(engine, "two").workspace_id
    _run(engine, ws, "r1", "cart", "active", "wait")
    _run(engine, ws, "r2", "cart", "active", "wait")
    _run(engine, ws, "r3", "cart", "held", "remind")
    _run(engine, ws, "r4", "cart", "done", None)
    _run(engine, ws, "r5", "cart", "exited", "wait")
    _run(engine, ws, "r6", "welcome", "active", "hello")
    _run(engine, other, "r7", "cart", "active", "wait")  # another workspace's
    with engine.connect() as conn:
        assert people_in_journeys(conn, ws, ["cart", "welcome", "ghost"]) == {"cart": 3, "welcome": 1}
        assert people_in_journeys(conn, ws, ["welcome"]) == {"welcome": 1}
        assert people_in_journeys(conn, ws, []) == {}
        assert people_at_steps(conn, ws, "cart") == {"wait": 2, "remind": 1}
        assert people_at_steps(conn, ws, "ghost") == {}
        assert people_at_steps(conn, other, "cart") == {"wait": 1}
