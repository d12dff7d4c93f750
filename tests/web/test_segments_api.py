"""The segments admin API over HTTP on a live server, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from nudgeflow.model.segments import segment_json_schema
from nudgeflow.store import segments as store
from nudgeflow.store.workspaces import NewWorkspace
from tests.support import LiveServer

BUYERS: dict[str, Any] = {
    "id": "buyers",
    "name": "Recent buyers",
    "when": {"performed": "Order Completed", "within": "30d"},
}

YAML_TWO = """\
id: pro-buyers
name: Pro buyers
when:
  all:
    - {trait: plan, value: pro}
    - {segment: buyers}
---
id: buyers
name: Recent buyers
when: {performed: Order Completed, within: 30d}
"""


def segment(**changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(BUYERS))
    out.update(changes)
    return out


def test_put_applies_a_segment_and_a_change_makes_a_new_version(api: httpx.Client) -> None:
    created = api.put("/api/segments/buyers", json=BUYERS)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["created"], body["status"], body["version"], body["new_version"]) == (True, "live", 1, True)
    assert body["segment"]["computed"]["version"] == 1
    assert body["segment"]["definition"]["when"]["within"] == "30d"

    same = api.put("/api/segments/buyers", json=BUYERS)
    assert same.status_code == 200 and (same.json()["version"], same.json()["new_version"]) == (1, False)
    changed = api.put("/api/segments/buyers", json=segment(when={"performed": "Order Completed", "within": "60d"}))
    assert (changed.json()["version"], changed.json()["new_version"]) == (2, True)

    got = api.get("/api/segments/buyers").json()
    assert got["live_version"] == 2 and [v["version"] for v in got["versions"]] == [1, 2]
    assert got["size"] == 0 and got["as_of"]["seq"] >= 0
    assert api.get("/api/segments/buyers/versions/1").json()["definition"]["when"]["within"] == "30d"
    assert api.get("/api/segments/buyers/versions/1").json()["live"] is False
    assert api.get("/api/segments/buyers/versions/3").status_code == 404
    listed = api.get("/api/segments").json()["segments"]
    assert [(s["id"], s["status"], s["live_version"]) for s in listed] == [("buyers", "live", 2)]


def test_a_body_without_id_takes_the_urls_and_a_different_one_is_refused(api: httpx.Client) -> None:
    no_id = {k: v for k, v in BUYERS.items() if k != "id"}
    assert api.put("/api/segments/buyers", json=no_id).status_code == 201
    other = api.put("/api/segments/other", json=BUYERS)
    assert other.status_code == 422
    assert other.json()["problems"][0]["path"] == "id"


def test_errors_are_answered_in_the_journey_apis_style(api: httpx.Client) -> None:
    bad = api.put(
        "/api/segments/buyers",
        content="id: buyers\nname: B\nwhen:\n  performed: Order Completed\n  within: 30 days\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert bad.status_code == 422
    problem = bad.json()["problems"][0]
    assert problem["path"] == "when.within" and problem["line"] == 5 and problem["severity"] == "error"
    unknown = api.put("/api/segments/pro", json={"id": "pro", "name": "P", "when": {"segment": "nowhere"}})
    assert unknown.status_code == 422
    assert "no segment 'nowhere'" in unknown.json()["problems"][0]["message"]
    assert api.get("/api/segments/nowhere").status_code == 404
    assert api.get("/api/segments/nowhere/members").status_code == 404
    assert api.post("/api/segments/nowhere/archive").status_code == 404
    assert api.put("/api/segments/buyers", content=b"", headers={"Content-Type": "application/json"}).status_code == 422
    assert api.put("/api/segments/schema", json=segment(id="schema")).status_code == 422  # a reserved id


def test_post_applies_several_documents_those_referred_to_first(api: httpx.Client) -> None:
    answer = api.post("/api/segments", content=YAML_TWO, headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 200, answer.text
    assert [(a["id"], a["version"]) for a in answer.json()["applied"]] == [("buyers", 1), ("pro-buyers", 1)]
    circle = api.post(
        "/api/segments",
        json=[
            {"id": "a", "name": "A", "when": {"segment": "b"}},
            {"id": "b", "name": "B", "when": {"segment": "a"}},
        ],
    )
    assert circle.status_code == 422 and "circle" in circle.json()["problems"][-1]["message"]
    assert [s["id"] for s in api.get("/api/segments").json()["segments"]] == ["buyers", "pro-buyers"]


def test_validate_stores_nothing(api: httpx.Client) -> None:
    answer = api.post("/api/segments/validate", content=YAML_TWO, headers={"Content-Type": "application/yaml"})
    assert answer.json() == {"valid": True, "problems": []}
    lone = api.post("/api/segments/validate", json={"id": "pro", "name": "P", "when": {"segment": "buyers"}})
    assert lone.json()["valid"] is False
    assert api.get("/api/segments").json() == {"segments": []}
    assert api.get("/api/segments/schema").json() == segment_json_schema()


def test_draft_then_apply_then_archive(api: httpx.Client) -> None:
    draft = api.put("/api/segments/buyers?draft=true", json=BUYERS)
    assert draft.status_code == 201 and draft.json()["status"] == "draft" and draft.json()["version"] is None
    applied = api.post("/api/segments/buyers/apply")
    assert applied.json() == {"id": "buyers", "status": "live", "version": 1, "new_version": True}
    api.put("/api/segments/pro", json={"id": "pro", "name": "P", "when": {"segment": "buyers"}})
    refused = api.post("/api/segments/buyers/archive")
    assert refused.status_code == 409 and "segment 'pro'" in refused.json()["detail"]
    assert api.post("/api/segments/pro/archive").json() == {"id": "pro", "status": "archived", "changed": True}
    assert api.post("/api/segments/buyers/archive").json()["changed"] is True
    assert api.put("/api/segments/buyers", json=BUYERS).status_code == 409


def test_members_are_paged_by_id_with_daily_sizes(live: LiveServer, ws: NewWorkspace, api: httpx.Client) -> None:
    api.put("/api/segments/buyers", json=BUYERS)
    day = 20_000
    changes = {(ws.workspace_id, "buyers", f"p{n:02d}"): (True, day * store.DAY_MS + n) for n in range(7)}
    changes[(ws.workspace_id, "buyers", "p00")] = (True, (day - 2) * store.DAY_MS)
    with live.state.engine.begin() as conn:
        store.write_changes(conn, changes)
    pages, after = [], ""
    while True:
        answer = api.get("/api/segments/buyers/members", params={"after": after, "limit": 3}).json()
        pages.append([m["profile_id"] for m in answer["members"]])
        if answer["next"] is None:
            break
        after = answer["next"]
    assert pages == [["p00", "p01", "p02"], ["p03", "p04", "p05"], ["p06"]]
    assert api.get("/api/segments/buyers/members", params={"limit": 1001}).status_code == 422
    got = api.get("/api/segments/buyers").json()
    assert got["size"] == 7
    assert got["daily"][:3] == [
        {"date": "2024-10-02", "entered": 1, "exited": 0, "size": 1},
        {"date": "2024-10-03", "entered": 0, "exited": 0, "size": 1},
        {"date": "2024-10-04", "entered": 6, "exited": 0, "size": 7},
    ]
    assert got["daily"][-1]["size"] == 7  # carried over to today


def test_a_full_last_page_of_members_says_it_is_the_last(live: LiveServer, ws: NewWorkspace, api: httpx.Client) -> None:
    api.put("/api/segments/buyers", json=BUYERS)
    changes = {(ws.workspace_id, "buyers", f"full{n}"): (True, 20_000 * store.DAY_MS + n) for n in range(4)}
    with live.state.engine.begin() as conn:
        store.write_changes(conn, changes)
    first = api.get("/api/segments/buyers/members", params={"limit": 2}).json()
    assert first["next"] == "full1"
    last = api.get("/api/segments/buyers/members", params={"after": "full1", "limit": 2}).json()
    assert [m["profile_id"] for m in last["members"]] == ["full2", "full3"]
    assert last["next"] is None  # no empty page to fetch after it


@pytest.mark.parametrize("path", ["/api/segments", "/api/segments/buyers", "/api/segments/buyers/members"])
def test_the_api_needs_the_workspaces_token(live: LiveServer, path: str) -> None:
    with live.client() as client:
        assert client.get(path).status_code == 401


def test_two_editors_of_one_segment_the_second_is_refused_and_nothing_goes_live(api: httpx.Client) -> None:
    created = api.put("/api/segments/buyers", json=BUYERS)
    assert created.status_code == 201 and created.headers["etag"] == '"1"'
    loaded = api.get("/api/segments/buyers")
    assert loaded.headers["etag"] == '"1"' and loaded.json()["draft_revision"] == 1
    first = api.put("/api/segments/buyers", json=segment(name="First"), headers={"If-Match": '"1"'})
    assert first.status_code == 200 and first.headers["etag"] == '"2"' and first.json()["version"] == 2
    late = api.put("/api/segments/buyers", json=segment(name="Second"), headers={"If-Match": loaded.headers["etag"]})
    assert late.status_code == 412, late.text
    assert late.json()["current_revision"] == 2 and late.headers["etag"] == '"2"'
    now = api.get("/api/segments/buyers").json()
    assert now["name"] == "First" and now["live_version"] == 2 and now["draft_revision"] == 2
    draft = api.put("/api/segments/buyers?draft=true", json=segment(name="Third"), headers={"If-Match": '"2"'})
    assert draft.status_code == 200 and draft.headers["etag"] == '"3"' and draft.json()["version"] == 2
    # If-Match names one draft: the several-at-once POST refuses it rather than ignore it.
    many = api.post("/api/segments", json=[BUYERS], headers={"If-Match": '"3"'})
    assert many.status_code == 400 and "PUT /api/segments/{id}" in many.json()["detail"]
    assert api.put("/api/segments/buyers", json=BUYERS).status_code == 200  # no If-Match: last writer wins


def test_if_none_match_star_creates_a_segment_and_never_replaces_one(api: httpx.Client) -> None:
    assert api.put("/api/segments/buyers", json=BUYERS, headers={"If-None-Match": "*"}).status_code == 201
    taken = api.put("/api/segments/buyers", json=segment(name="Mine"), headers={"If-None-Match": "*"})
    assert taken.status_code == 412 and taken.json()["current_revision"] == 1
    assert api.get("/api/segments/buyers").json()["name"] == "Recent buyers"
    assert api.post("/api/segments", json=[BUYERS], headers={"If-None-Match": "*"}).status_code == 400
