"""Group calls through ingest: each group's traits merged by event time, in one batch or
across many, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nudgeflow.core.clock import VirtualClock
from nudgeflow.store import groups as groups_store


def group(user: str, group_id: str, at: str, **traits: Any) -> dict[str, Any]:
    return {"type": "group", "userId": user, "groupId": group_id, "traits": traits, "timestamp": at}


def test_calls_in_one_batch_merge_by_event_time_not_by_arrival(live: Any, ws: Any, clock: VirtualClock) -> None:
    # Received after the calls' times: a time more than a day after its receipt would be
    # stored at the receipt (docs/ingest-limits.md), and these would all tie.
    clock.set(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    with live.client(auth=(ws.write_key, "")) as client:
        answer = client.post(
            "/v1/batch",
            json={
                "batch": [
                    group("ada", "acme", "2026-03-02T09:00:02Z", plan="enterprise"),
                    group("bob", "acme", "2026-03-02T09:00:01Z", plan="free", seats=3),  # older: fills seats only
                    group("ada", "globex", "2026-03-02T09:00:00Z", plan="pro"),
                    {"type": "track", "userId": "ada", "event": "Signed Up"},
                ]
            },
        )
        assert answer.status_code == 200, answer.text
        with live.state.engine.connect() as conn:
            found = groups_store.read_groups(conn, ws.workspace_id, ["acme", "globex", "nobody"])
        assert {gid: g["traits"] for gid, g in found.items()} == {
            "acme": {"plan": "enterprise", "seats": 3},
            "globex": {"plan": "pro"},
        }

        # A later request: newer wins, an older one only fills gaps; nothing is lost.
        answer = client.post("/v1/group", json=group("cy", "acme", "2026-03-02T09:00:03Z", seats=12, region="eu"))
        assert answer.status_code == 200
        answer = client.post("/v1/group", json=group("cy", "acme", "2026-03-01T00:00:00Z", region="us", tier=2))
        assert answer.status_code == 200
        with live.state.engine.connect() as conn:
            acme = groups_store.get_group(conn, ws.workspace_id, "acme")
    assert acme is not None
    assert acme["traits"] == {"plan": "enterprise", "seats": 12, "region": "eu", "tier": 2}
    assert acme["traits_at_ms"] == 1772442003000  # 2026-03-02T09:00:03Z


def test_groups_are_per_workspace(live: Any, ws: Any) -> None:
    other = live.workspace()
    for workspace, plan in ((ws, "pro"), (other, "free")):
        with live.client(auth=(workspace.write_key, "")) as client:
            answer = client.post("/v1/group", json=group("ada", "acme", "2026-03-02T09:00:00Z", plan=plan))
            assert answer.status_code == 200
    with live.state.engine.connect() as conn:
        assert groups_store.get_group(conn, ws.workspace_id, "acme")["traits"] == {"plan": "pro"}  # type: ignore[index]
        assert groups_store.get_group(conn, other.workspace_id, "acme")["traits"] == {"plan": "free"}  # type: ignore[index]
