"""Experiment decisions in the admin API: seeing them and resuming a step, admin-authenticated,
each workspace its own (a live server, SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import httpx

from nudgeflow.core.clock import to_ms
from nudgeflow.store import experiment_decisions as decisions

OFFER: dict[str, Any] = {
    "id": "offer",
    "name": "Offer",
    "trigger": {"type": "event", "event": "Signed Up"},
    "steps": {
        "mail": {
            "type": "send",
            "channel": "log",
            "variants": [
                {"name": "A", "template": "offer-a", "weight": 1},
                {"name": "B", "template": "offer-b", "weight": 1},
            ],
        }
    },
}
WHY = "'B' unsubscribe rate 3.00 % is credibly above control 'A''s 0.20 %"


def pause_b(live: Any, workspace_id: str) -> None:
    now = to_ms(live.state.clock.now())
    with live.state.engine.begin() as conn:
        decisions.record(conn, workspace_id, "offer", 1, "mail", "B", "paused", WHY, now)


def test_decisions_are_listed_and_a_step_resumed(live: Any, api: httpx.Client, ws: Any) -> None:
    assert api.put("/api/journeys/offer?publish=true", json=OFFER).status_code == 201
    assert api.get("/api/journeys/offer/experiments").json() == {"journey_id": "offer", "decisions": []}
    pause_b(live, ws.workspace_id)

    (shown,) = api.get("/api/journeys/offer/experiments").json()["decisions"]
    assert {k: shown[k] for k in ("version", "step", "arm", "action", "reason", "active", "cleared_at")} == {
        "version": 1,
        "step": "mail",
        "arm": "B",
        "action": "paused",
        "reason": WHY,
        "active": True,
        "cleared_at": None,
    }
    assert shown["decided_at"].endswith("Z")

    resumed = api.post("/api/journeys/offer/experiments/mail/resume")
    assert resumed.status_code == 200, resumed.text
    (cleared,) = resumed.json()["cleared"]
    assert cleared["arm"] == "B" and cleared["active"] is False
    assert cleared["cleared_note"] == "resumed through the admin API"
    assert api.get("/api/journeys/offer/experiments").json()["decisions"] == []
    (kept,) = api.get("/api/journeys/offer/experiments?all=true").json()["decisions"]
    assert kept["id"] == shown["id"] and kept["cleared_at"] is not None
    # Resuming again clears nothing, and says so without failing.
    assert api.post("/api/journeys/offer/experiments/mail/resume").json()["cleared"] == []


def test_resume_names_what_has_no_decision(api: httpx.Client) -> None:
    assert api.put("/api/journeys/offer?publish=true", json=OFFER).status_code == 201
    unknown_step = api.post("/api/journeys/offer/experiments/nope/resume")
    assert unknown_step.status_code == 404
    assert unknown_step.json()["detail"] == "journey 'offer' has no experiment decision on step 'nope'"
    unknown_journey = api.post("/api/journeys/ghost/experiments/mail/resume")
    assert unknown_journey.status_code == 404 and "no journey 'ghost'" in unknown_journey.json()["detail"]
    assert api.get("/api/journeys/ghost/experiments").status_code == 404
    assert api.post("/api/journeys/offer/experiments/mail/resume?version=0").status_code == 422
    assert api.post("/api/journeys/offer/experiments/" + "s" * 101 + "/resume").status_code == 422


def test_admin_only_and_each_workspace_its_own(live: Any, ws: Any) -> None:
    other = live.workspace("other")
    with live.admin(ws.admin_token) as mine:
        assert mine.put("/api/journeys/offer?publish=true", json=OFFER).status_code == 201
    pause_b(live, ws.workspace_id)
    with live.client() as anonymous:
        assert anonymous.get("/api/journeys/offer/experiments").status_code == 401
        assert anonymous.post("/api/journeys/offer/experiments/mail/resume").status_code == 401
    with live.admin(ws.write_key) as wrong_kind:
        assert wrong_kind.post("/api/journeys/offer/experiments/mail/resume").status_code == 401
    with live.admin(other.admin_token) as theirs:
        assert theirs.get("/api/journeys/offer/experiments").status_code == 404
        assert theirs.post("/api/journeys/offer/experiments/mail/resume").status_code == 404
    with live.admin(ws.admin_token) as mine:
        assert len(mine.get("/api/journeys/offer/experiments").json()["decisions"]) == 1
