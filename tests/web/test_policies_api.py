"""The send policies admin API, and a person's messages with why each was not sent, over HTTP
on a live server, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from nudgeflow.core.effects import DEFERRED, DROPPED, MessageWithheld, SendMessage
from nudgeflow.model.policies import policies_json_schema
from nudgeflow.store.effects_writer import EffectsBatch
from nudgeflow.store.workspaces import NewWorkspace
from tests.support import LiveServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policies.yaml"
CAPS = {"frequency_caps": [{"id": "daily", "channel": "email", "limit": 2, "calendar": "day"}]}


def test_no_policies_until_some_are_put(api: httpx.Client) -> None:
    got = api.get("/api/policies")
    assert got.status_code == 200
    body = got.json()
    assert (body["version"], body["updated_at"], body["updated_by"], body["source"]) == (0, None, None, None)
    assert body["policies"]["frequency_caps"] == [] and body["policies"]["max_deferral"] == "7d"


def test_put_stores_a_version_get_returns_it_and_the_same_document_changes_nothing(
    api: httpx.Client, ws: NewWorkspace
) -> None:
    put = api.put("/api/policies", json=CAPS)
    assert put.status_code == 200, put.text
    body = put.json()
    assert body["changed"] is True and body["version"] == 1
    assert body["updated_by"] == f"api (admin token {ws.admin_token[:8]}…)" and ws.admin_token not in put.text
    assert body["policies"]["frequency_caps"][0] == {
        "id": "daily",
        "channel": "email",
        "limit": 2,
        "window": None,
        "calendar": "day",
        "category": "marketing",
        "topic": None,
    }
    got = api.get("/api/policies").json()
    assert got["version"] == 1 and got["updated_at"].endswith("Z") and got["policies"] == body["policies"]
    again = api.put("/api/policies", json=CAPS).json()
    assert (again["changed"], again["version"]) == (False, 1)

    yaml = api.put("/api/policies", content=EXAMPLE.read_text(), headers={"Content-Type": "application/yaml"})
    assert yaml.status_code == 200, yaml.text
    assert yaml.json()["version"] == 2
    assert api.get("/api/policies").json()["source"] == EXAMPLE.read_text()
    history = api.get("/api/policies/history").json()["versions"]
    assert [v["version"] for v in history] == [2, 1]
    first = api.get("/api/policies/versions/1").json()
    assert first["policies"]["frequency_caps"][0]["id"] == "daily" and first["version"] == 1
    assert api.get("/api/policies/versions/7").status_code == 404
    # Back to none: an empty document is a version too.
    assert api.put("/api/policies", json={}).json()["version"] == 3


def test_put_refuses_a_bad_document_with_every_problem_and_stores_nothing(api: httpx.Client) -> None:
    bad = {
        "frequency_caps": [{"id": "daily", "channel": "email", "limt": 2, "window": "1 day"}],
        "quiet_hours": [{"channel": "push", "start": "21:00", "end": "08:00", "action": "later"}],
    }
    answer = api.put("/api/policies", json=bad)
    assert answer.status_code == 422
    problems = {(p["path"], p["message"]) for p in answer.json()["problems"]}
    assert ("frequency_caps.0", "missing required key 'limit'") in problems
    assert ("frequency_caps.0.limt", "unknown key 'limt' (did you mean 'limit'?)") in problems
    assert ("quiet_hours.0.action", "unknown action 'later' (use one of defer, drop)") in problems
    assert any(path == "frequency_caps.0.window" and "is not a duration" in msg for path, msg in problems)
    yaml = api.put(
        "/api/policies",
        content="collision:\n  window: 10m\n  windw: 5m\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert yaml.status_code == 422
    [problem] = yaml.json()["problems"]
    assert (problem["path"], problem["line"]) == ("collision.windw", 3)
    # The ledger keeps 1,000 messages a person: a higher limit could never cap.
    huge = api.put(
        "/api/policies", json={"frequency_caps": [{"id": "a", "channel": "push", "limit": 1001, "window": "1d"}]}
    )
    assert huge.status_code == 422
    [problem] = huge.json()["problems"]
    assert problem["path"] == "frequency_caps.0.limit" and "1000" in problem["message"], problem
    both = api.put("/api/policies", json={"frequency_caps": [{"id": "a", "channel": "email", "limit": 1}]})
    assert both.json()["problems"][0]["message"] == (
        "cap 'a' needs exactly one of `window` (rolling) and `calendar` (day|week)"
    )
    for content, expected in (
        (b"", "the body is empty"),
        (b"{", "not valid JSON"),
        (b"[1]", "expected a mapping"),
        (b"\xff", "not UTF-8"),
        (b'{"timezone": "a\\u0000b"}', "NUL"),
    ):
        refused = api.put("/api/policies", content=content, headers={"Content-Type": "application/json"})
        assert refused.status_code == 422 and expected in refused.json()["problems"][0]["message"], refused.text
    # A name longer than the file system allows is an unknown zone too, not a server error.
    for zone in ("a" * 300, "Europe/" + "x" * 300):
        long_zone = api.put("/api/policies", json={"timezone": zone})
        assert long_zone.status_code == 422, long_zone.text
        assert "unknown time zone" in long_zone.json()["problems"][0]["message"]
    assert api.get("/api/policies").json()["version"] == 0


def test_the_schema_and_the_token(live: LiveServer, api: httpx.Client) -> None:
    assert api.get("/api/policies/schema").json() == policies_json_schema()
    with live.client() as anonymous:
        assert anonymous.get("/api/policies").status_code == 401
        assert anonymous.put("/api/policies", json=CAPS).status_code == 401


def test_workspaces_have_their_own_policies(live: LiveServer, api: httpx.Client) -> None:
    api.put("/api/policies", json=CAPS)
    other = live.workspace("other")
    with live.admin(other.admin_token) as client:
        assert client.get("/api/policies").json()["version"] == 0


def _message(kind: type, key: str, **fields: Any) -> Any:
    common: dict[str, Any] = {
        "key": key,
        "run_id": "run1",
        "journey_id": "welcome",
        "version": 1,
        "step": "hello",
        "channel": "email",
        "template": "welcome-1",
        "variant": None,
        "marketing": True,
        "at_ms": 1_000,
    }
    return kind(**{**common, **fields})


def test_a_person_s_messages_say_why_each_was_not_sent(live: LiveServer, ws: NewWorkspace, api: httpx.Client) -> None:
    with live.client(auth=(ws.write_key, "")) as client:
        client.post("/v1/identify", json={"userId": "ada", "traits": {"email": "ada@example.com"}}).raise_for_status()
    profile_id = api.get("/api/profiles/ada").json()["id"]

    def write(conn: Any) -> None:
        batch = EffectsBatch()
        effects = [
            _message(MessageWithheld, "k1", status=DEFERRED, reason="quiet_hours", until_ms=86_400_000),
            _message(MessageWithheld, "k2", status=DROPPED, reason="collision:winback"),
            # Due far ahead: the live server's dispatcher leaves it pending while we look.
            _message(SendMessage, "k3", at_ms=10**13),
        ]
        batch.add(ws.workspace_id, profile_id, effects, 1_000)
        batch.write(conn, 1_000)

    live.state.committer.submit_job(write).result(timeout=30)
    page = api.get("/api/profiles/ada/messages", params={"limit": 2})
    assert page.status_code == 200, page.text
    first = page.json()
    assert [(m["key"], m["status"], m["reason"]) for m in first["messages"]] == [
        ("k3", "pending", None),
        ("k2", "dropped", "collision:winback"),
    ]
    rest = api.get("/api/profiles/ada/messages", params={"limit": 2, "before": first["next_before"]}).json()
    [deferred] = rest["messages"]
    assert rest["next_before"] is None
    assert (deferred["key"], deferred["status"], deferred["reason"], deferred["deferred_until"]) == (
        "k1",
        "deferred",
        "quiet_hours",
        "1970-01-02T00:00:00Z",
    )
    assert api.get("/api/profiles/nobody/messages").status_code == 404
    export = api.get("/api/profiles/ada/export").json()
    assert {m["key"]: m["reason"] for m in export["messages"]} == {
        "k1": "quiet_hours",
        "k2": "collision:winback",
        "k3": None,
    }
