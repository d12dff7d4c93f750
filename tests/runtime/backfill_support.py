"""What the backfill tests share (test_backfill, and tests/partitions' coordinator test): the
winback journey, publishing a journey, and reading who entered it and its backfill jobs."""

from __future__ import annotations

from typing import Any

from nudgeflow.core.clock import to_ms
from nudgeflow.model.journeys import Journey
from nudgeflow.store import backfill as backfill_store
from nudgeflow.store import journeys as journey_store
from tests.runtime.harness import Harness

MARK = {"update_profile": {"type": "update_profile", "set": {"entered": True}}}


def winback(**entry: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "id": "winback",
        "name": "Win back",
        "trigger": {"type": "inactivity", "window": "7d"},
        "steps": MARK,
    }
    if entry:
        definition["entry"] = entry
    return definition


def publish(h: Harness, definition: dict[str, Any], **kw: Any) -> int:
    now = to_ms(h.clock.now())
    with h.db.begin() as conn:
        journey_store.apply_draft(conn, h.ws, Journey.model_validate(definition), now)
        return journey_store.publish(conn, h.ws, definition["id"], now, **kw)


def entered(h: Harness, journey: str = "winback") -> list[str]:
    rows = h.q(
        "SELECT profile_id FROM journey_runs WHERE journey_id = :j ORDER BY entered_at_ms, profile_id", j=journey
    )
    return [r.profile_id for r in rows]


def jobs(h: Harness, journey: str = "winback") -> list[backfill_store.Backfill]:
    with h.db.connect() as conn:
        return backfill_store.of_journey(conn, h.ws, journey)
