"""GET /api/profiles/{ref}/send-time on a live server (the engine running beside ingest): the
person's hours as the engine counted them (machine opens left out), and the hour a live
send_time step would choose and why; admin token, workspace-scoped, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx

_ids = itertools.count(1)

PROMO = {
    "id": "promo",
    "name": "Promo at the best hour",
    "trigger": {"type": "event", "event": "Go"},
    "steps": {
        "mail": {
            "type": "send",
            "channel": "log",
            "template": "promo-1",
            "send_time": {"within": "24h", "fallback": "10:00", "explore": 0},
        }
    },
}


def post_events(live: Any, write_key: str, *messages: dict[str, Any]) -> None:
    batch = [{"messageId": f"send-time-{next(_ids)}", **m} for m in messages]
    with live.client(auth=(write_key, "")) as client:
        answer = client.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 200, answer.text


def opened(day: int, hour: int, **properties: Any) -> dict[str, Any]:
    """An Email Opened of ada on 2025-12-`day` at `hour`:20 in Tokyo."""
    return {
        "type": "track",
        "userId": "ada",
        "event": "Email Opened",
        "timestamp": f"2025-12-{day:02d}T{hour:02d}:20:00+09:00",
        "properties": properties,
    }


def eventually(api: httpx.Client, path: str, ready: Any, timeout: float = 20.0) -> dict[str, Any]:
    """The answer once `ready(body)` holds: the engine decides the events after ingest acks."""
    deadline = time.monotonic() + timeout
    while True:
        answer = api.get(path)
        if answer.status_code == 200 and ready(answer.json()):
            return dict(answer.json())
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {answer.status_code} {answer.text}")
        time.sleep(0.05)


def test_a_persons_hours_and_the_hour_chosen(live: Any, ws: Any, api: httpx.Client) -> None:
    assert api.put("/api/journeys/promo?publish=true", json=PROMO).status_code == 201
    post_events(
        live,
        ws.write_key,
        {"type": "identify", "userId": "ada", "traits": {"timezone": "Asia/Tokyo"}},
        *(opened(day, 8) for day in (1, 2, 3, 4)),
        *(opened(day, 3, machine=True) for day in (1, 2, 3, 4, 5, 6)),  # a privacy proxy's fetches
        {"type": "track", "userId": "ada", "event": "Email Link Clicked", "timestamp": "2025-12-05T21:05:00+09:00"},
    )
    body = eventually(api, "/api/profiles/ada/send-time", lambda b: b["events"] == 5)
    assert body["timezone"] == "Asia/Tokyo"
    assert {h: n for h, n in enumerate(body["histogram"]) if n} == {8: 4, 21: 1}
    assert body["basis"] == "person" and body["best_hour"] == 8
    assert body["workspace"] is None  # five events are too few for a workspace pattern
    assert len(body["scores"]) == 24 and abs(sum(body["scores"]) - 1) < 1e-4
    # The virtual clock's now is 2026-01-01T00:00Z, 09:00 in Tokyo: the next 08:00 is tomorrow.
    assert body["steps"] == [
        {
            "journey_id": "promo",
            "version": 1,
            "step": "mail",
            "within": "24h",
            "fallback": "10:00",
            "explore": 0.0,
            "arm": "optimized",
            "hour": 8,
            "at": "2026-01-01T23:00:00.000Z",
            "basis": "person",
        }
    ]
    assert body["decisions"] == []
    by_id = api.get(f"/api/profiles/{body['profile_id']}/send-time")
    assert by_id.status_code == 200 and by_id.json()["histogram"] == body["histogram"]


def test_unknown_people_other_workspaces_and_no_token(live: Any, ws: Any, api: httpx.Client) -> None:
    post_events(live, ws.write_key, {"type": "identify", "userId": "bob", "traits": {}})
    fresh = eventually(api, "/api/profiles/bob/send-time", lambda b: True)
    assert fresh["events"] == 0 and fresh["basis"] == "none" and fresh["best_hour"] is None
    assert api.get("/api/profiles/nobody/send-time").status_code == 404
    other = live.workspace("other")
    with live.admin(other.admin_token) as theirs:
        assert theirs.get("/api/profiles/bob/send-time").status_code == 404
        assert theirs.get(f"/api/profiles/{fresh['profile_id']}/send-time").status_code == 404
    with live.client() as anonymous:
        assert anonymous.get("/api/profiles/bob/send-time").status_code == 401
    with live.admin(ws.write_key) as wrong_kind:
        assert wrong_kind.get("/api/profiles/bob/send-time").status_code == 401
