"""GET /api/segments/{id}/explain: why a person is in a segment or not, condition by
condition, from the engine's own state of them, over HTTP on a live server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from nudgeflow.core.clock import VirtualClock
from nudgeflow.runtime.embedded import EmbeddedRuntime
from nudgeflow.settings import Settings
from nudgeflow.store.workspaces import NewWorkspace
from tests.support import LiveServer

PRO_BUYERS: dict[str, Any] = {
    "id": "pro-buyers",
    "name": "Pro buyers",
    "when": {
        "all": [
            {"trait": "plan", "value": "pro"},
            {"performed": "Order Completed", "within": "30d", "count": 2},
            {"not": {"reachable": "email"}},
        ]
    },
}


def _send(live: LiveServer, clock: VirtualClock, ws: NewWorkspace, path: str, body: dict[str, Any]) -> None:
    with live.client(auth=(ws.write_key, "")) as client:
        assert client.post(path, json=body).status_code == 200
    clock.advance(timedelta(seconds=1))
    live.state.runtime.run_until_idle()


def test_explain_says_which_conditions_hold(
    live: LiveServer, clock: VirtualClock, ws: NewWorkspace, api: httpx.Client
) -> None:
    assert api.put("/api/segments/pro-buyers", json=PRO_BUYERS).status_code in (200, 201)
    live.state.runtime.run_until_idle()
    _send(live, clock, ws, "/v1/identify", {"userId": "ada", "traits": {"plan": "pro"}})
    for _ in range(2):
        _send(live, clock, ws, "/v1/track", {"userId": "ada", "event": "Order Completed"})

    got = api.get("/api/segments/pro-buyers/explain", params={"person": "ada"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["member"] and body["member_recorded"] and body["decided"] and body["user_id"] == "ada"
    plan, orders, unreachable = body["check"]["children"]
    assert plan == {
        "path": "when.all[0]",
        "kind": "trait",
        "holds": True,
        "condition": {"trait": "plan", "value": "pro"},
        "seen": {"found": True, "value": "pro"},
    }
    assert orders["holds"] and orders["seen"]["count"] == 2 and orders["condition"]["performed"] == "Order Completed"
    assert unreachable["kind"] == "not" and unreachable["holds"]
    assert unreachable["children"][0]["seen"]["email"] is False

    # An email address makes `not reachable: email` false: out, and the answer says why.
    _send(live, clock, ws, "/v1/identify", {"userId": "ada", "traits": {"email": "ada@example.com"}})
    out = api.get("/api/segments/pro-buyers/explain", params={"person": "ada@example.com"}).json()
    assert not out["member"] and not out["member_recorded"]
    assert [c["holds"] for c in out["check"]["children"]] == [True, True, False]


def test_explain_refuses_what_is_not_in_the_workspace(live: LiveServer, ws: NewWorkspace, api: httpx.Client) -> None:
    assert api.put("/api/segments/pro-buyers", json=PRO_BUYERS).status_code in (200, 201)
    other = live.workspace()
    with live.client(auth=(other.write_key, "")) as client:
        assert client.post("/v1/identify", json={"userId": "eve", "traits": {"plan": "pro"}}).status_code == 200
    live.state.runtime.run_until_idle()
    missing = api.get("/api/segments/pro-buyers/explain", params={"person": "eve"})
    assert missing.status_code == 404 and "no person" in missing.json()["detail"]
    with live.admin(other.admin_token) as theirs:
        nope = theirs.get("/api/segments/pro-buyers/explain", params={"person": "eve"})
        assert nope.status_code == 404 and "no segment" in nope.json()["detail"]
    assert api.get("/api/segments/pro-buyers/explain").status_code == 422


RECENT_BUYERS: dict[str, Any] = {
    "id": "recent-buyers",
    "name": "Bought in the last day",
    "when": {"performed": "Order Completed", "within": "1d"},
}
BUYERS_TO_THANK: dict[str, Any] = {
    "id": "to-thank",
    "name": "Recent buyers to thank",
    "when": {"segment": "recent-buyers"},
}


def test_explain_decides_an_overdue_lapse_first_without_recording_it(
    api_only: LiveServer, clock: VirtualClock, settings: Settings
) -> None:
    # Ada's order lapses out of "recent-buyers" a day after it; her lapse timer is due then,
    # but the engine has not run since (behind, or down). The engine would decide that lapse
    # before anything else of hers (as a segment's apply does): explain must answer as it
    # would, not from the stored membership it read before the lapse. The server runs no
    # engine of its own (a running one could fire the overdue timer before explain reads):
    # the test runs one on the server's database when it says.
    live, ws = api_only, api_only.workspace()
    engine = EmbeddedRuntime(live.state.engine, None, clock, settings)
    with live.admin(ws.admin_token) as api:
        for segment in (RECENT_BUYERS, BUYERS_TO_THANK):
            assert api.put(f"/api/segments/{segment['id']}", json=segment).status_code in (200, 201)
            engine.run_until_idle()
        with live.client(auth=(ws.write_key, "")) as client:
            assert client.post("/v1/track", json={"userId": "ada", "event": "Order Completed"}).status_code == 200
        clock.advance(timedelta(seconds=1))
        engine.run_until_idle()
        before = api.get("/api/segments/to-thank/explain", params={"person": "ada"}).json()
        assert before["member"] and before["member_recorded"]

        clock.advance(timedelta(days=1, hours=1))  # the lapse is an hour overdue; no timer has fired
        direct = api.get("/api/segments/recent-buyers/explain", params={"person": "ada"}).json()
        assert not direct["member"] and direct["member_recorded"]  # what the engine last wrote
        assert direct["check"]["seen"]["count"] == 0
        got = api.get("/api/segments/to-thank/explain", params={"person": "ada"})
        assert got.status_code == 200, got.text
        body = got.json()
        assert not body["member"], body  # was: true, from the membership of before the lapse
        assert body["check"]["seen"] == {"live": True, "member": False}
        assert body["member_recorded"]  # nothing was written: the timer decides it for the record

        # Read only: the members rows and the pending lapse are the engine's, untouched; when it
        # runs, it comes to the answer explain gave.
        assert [m["profile_id"] for m in api.get("/api/segments/to-thank/members").json()["members"]]
        engine.run_until_idle()
        after = api.get("/api/segments/to-thank/explain", params={"person": "ada"}).json()
    assert not after["member"] and not after["member_recorded"]
    assert after["check"] == body["check"]
