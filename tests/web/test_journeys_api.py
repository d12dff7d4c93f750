"""The journeys admin API over HTTP on a live server, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import insert, select

from nudgeflow.model.journeys import journey_json_schema
from nudgeflow.store.schema import journey_runs, journeys, timers
from tests.support import LiveServer

JOURNEY: dict[str, Any] = {
    "id": "cart",
    "name": "Cart reminder",
    "trigger": {"type": "event", "event": "Product Added"},
    "exit": {"events": [{"event": "Order Completed", "match": "cart_id"}]},
    "steps": {
        "remind": {"type": "send", "channel": "log", "template": "cart-1", "next": "wait"},
        "wait": {"type": "wait", "duration": "1d", "next": "again"},
        "again": {"type": "send", "channel": "log", "template": "cart-2"},
    },
}

YAML = """\
id: cart
name: Cart reminder (YAML)
trigger:
  type: event
  event: Product Added
steps:
  remind:
    type: send
    channel: log
    template: cart-1
"""


def journey(**changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(JOURNEY))
    out.update(changes)
    return out


def test_put_creates_then_updates_a_draft(api: httpx.Client) -> None:
    created = api.put("/api/journeys/cart", json=JOURNEY)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["created"] is True and body["published_version"] is None and body["warnings"] == []
    assert body["journey"]["status"] == "draft" and body["journey"]["versions"] == []
    assert body["journey"]["created_at"].endswith("Z")

    updated = api.put("/api/journeys/cart", json=journey(name="Cart reminder 2"))
    assert updated.status_code == 200, updated.text
    assert updated.json()["created"] is False
    got = api.get("/api/journeys/cart").json()
    assert got["name"] == "Cart reminder 2"
    assert got["draft"]["steps"]["remind"]["template"] == "cart-1"
    assert got["draft_changed"] is True and got["live_version"] is None


def test_put_accepts_yaml_and_takes_the_id_from_the_url(api: httpx.Client) -> None:
    answer = api.put("/api/journeys/cart", content=YAML, headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["journey"]["name"] == "Cart reminder (YAML)"
    no_id = {k: v for k, v in JOURNEY.items() if k != "id"}
    answer = api.put("/api/journeys/other", json=no_id)
    assert answer.status_code == 201, answer.text
    assert answer.json()["journey"]["id"] == "other"


def test_invalid_definitions_are_refused_with_every_problem(api: httpx.Client) -> None:
    bad = journey(
        trigger={
            "type": "event",
            "event": "Product Added",
            "where": [{"property": "price", "op": "equals", "value": 1}],
        }
    )
    bad["steps"]["wait"]["next"] = "nowhere"
    answer = api.put("/api/journeys/cart", json=bad)
    assert answer.status_code == 422
    problems = {(p["path"], p["message"]) for p in answer.json()["problems"]}
    assert ("steps.wait.next", "no step named 'nowhere'") in problems
    assert any(
        path == "trigger.where.0.op" and message.startswith("unknown operator 'equals'") for path, message in problems
    )
    assert api.get("/api/journeys/cart").status_code == 404  # nothing stored

    # YAML problems carry their line.
    yaml_bad = YAML.replace("template: cart-1", "template: cart-1\n    next: gone")
    answer = api.put("/api/journeys/cart", content=yaml_bad, headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 422
    assert answer.json()["problems"] == [
        {"path": "steps.remind.next", "message": "no step named 'gone'", "severity": "error", "line": 11}
    ]


@pytest.mark.parametrize(
    "body, content_type, words",
    [
        ("{not json", "application/json", "not valid JSON"),
        ("id: [unclosed", "application/yaml", "not valid YAML"),
        ("", "application/json", "the body is empty"),
        (YAML + "---\n" + YAML, "application/yaml", "one journey per request"),
        (
            json.dumps(journey(id="another")),
            "application/json",
            "the definition's id 'another' is not the URL's 'cart'",
        ),
        ("[1, 2]", "application/json", "one journey per request"),
        ('"text"', "application/json", "a journey is a mapping"),
    ],
)
def test_unusable_bodies(api: httpx.Client, body: str, content_type: str, words: str) -> None:
    answer = api.put("/api/journeys/cart", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["problems"][0]["message"]


def test_too_large_a_body(api: httpx.Client) -> None:
    answer = api.put("/api/journeys/cart", content=b"x" * (1024 * 1024 + 1))
    assert answer.status_code == 413


def test_warnings_come_back_with_success(api: httpx.Client) -> None:
    body = journey()
    body["steps"]["orphan"] = {"type": "exit"}
    answer = api.put("/api/journeys/cart", json=body)
    assert answer.status_code == 201
    assert [w["path"] for w in answer.json()["warnings"]] == ["steps.orphan"]


def test_publish_versions_and_lifecycle(api: httpx.Client) -> None:
    api.put("/api/journeys/cart", json=JOURNEY)
    first = api.post("/api/journeys/cart/publish")
    assert first.status_code == 200, first.text
    assert first.json() == {"id": "cart", "version": 1, "new_version": True, "status": "live", "backfill": True}
    assert api.post("/api/journeys/cart/publish").json()["new_version"] is False

    changed = journey()
    changed["steps"]["again"]["template"] = "cart-2b"
    answer = api.put("/api/journeys/cart?publish=true", json=changed)
    assert answer.json()["published_version"] == 2

    got = api.get("/api/journeys/cart").json()
    assert got["live_version"] == 2 and got["draft_changed"] is False
    assert [v["version"] for v in got["versions"]] == [1, 2]
    v1 = api.get("/api/journeys/cart/versions/1").json()
    assert v1["live"] is False and v1["definition"]["steps"]["again"]["template"] == "cart-2"
    assert api.get("/api/journeys/cart/versions/2").json()["live"] is True
    assert api.get("/api/journeys/cart/versions/3").status_code == 404
    # Beyond a 32-bit version column: was a 500 (OverflowError on SQLite, integer out of
    # range on PostgreSQL); now a 422 that names the parameter.
    for version in (2**31, 10**20, 0, -(10**20)):
        bad = api.get(f"/api/journeys/cart/versions/{version}")
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "version", bad.text

    assert api.post("/api/journeys/cart/pause").json() == {
        "id": "cart",
        "status": "paused",
        "changed": True,
        "runs_woken": 0,
    }
    assert api.post("/api/journeys/cart/pause").json()["changed"] is False
    assert api.post("/api/journeys/cart/resume").json()["status"] == "live"
    assert api.post("/api/journeys/cart/archive").json()["status"] == "archived"

    refused = api.post("/api/journeys/cart/publish")
    assert refused.status_code == 409 and "archived" in refused.json()["detail"]
    assert api.post("/api/journeys/cart/resume").status_code == 409
    assert api.put("/api/journeys/cart", json=JOURNEY).status_code == 409

    listed = api.get("/api/journeys").json()["journeys"]
    assert [(j["id"], j["status"], j["live_version"]) for j in listed] == [("cart", "archived", 2)]


def test_transitions_on_drafts_and_unknown_journeys(api: httpx.Client) -> None:
    for action in ("publish", "pause", "resume", "archive"):
        answer = api.post(f"/api/journeys/ghost/{action}")
        assert answer.status_code == 404, (action, answer.text)
        assert "no journey 'ghost'" in answer.json()["detail"]
    assert api.get("/api/journeys/ghost").status_code == 404
    api.put("/api/journeys/cart", json=JOURNEY)
    assert api.post("/api/journeys/cart/pause").status_code == 409
    assert "publish it instead" in api.post("/api/journeys/cart/resume").json()["detail"]


def test_an_invalid_draft_is_never_published(live: Any, api: httpx.Client, ws: Any) -> None:
    api.put("/api/journeys/cart", json=JOURNEY)
    broken = journey()
    broken["steps"]["wait"]["next"] = "wait"  # would pass a cycle check, but dangles nowhere: make it worse
    broken["steps"]["again"]["next"] = "remind"
    broken["steps"]["wait"] = {"type": "update_profile", "next": "again"}  # remind -> wait -> again -> remind
    with live.state.engine.begin() as conn:  # a draft stored before the checker knew better
        conn.execute(
            journeys.update()
            .where(journeys.c.workspace_id == ws.workspace_id, journeys.c.id == "cart")
            .values(draft=json.dumps(broken))
        )
    answer = api.post("/api/journeys/cart/publish")
    assert answer.status_code == 422
    assert answer.json()["problems"][0]["message"].startswith("cycle without a wait: remind -> wait -> again -> remind")
    assert api.get("/api/journeys/cart").json()["status"] == "draft"


def test_resume_wakes_held_runs(api_only: LiveServer) -> None:
    live, ws = api_only, api_only.workspace()
    with live.admin(ws.admin_token) as api:
        api.put("/api/journeys/cart?publish=true", json=JOURNEY)
        api.post("/api/journeys/cart/pause")
        run_id, profile_id = f"run-{ws.workspace_id}", f"p-{ws.workspace_id}"
        with live.state.engine.begin() as conn:
            conn.execute(
                insert(journey_runs).values(
                    id=run_id,
                    workspace_id=ws.workspace_id,
                    journey_id="cart",
                    version=1,
                    profile_id=profile_id,
                    status="held",
                    step="wait",
                    holdout=0,
                    entered_at_ms=1,
                    updated_at_ms=1,
                )
            )
        live_clock = live.state.clock
        live_clock.advance(timedelta(minutes=5))
        answer = api.post("/api/journeys/cart/resume")
        assert answer.json() == {"id": "cart", "status": "live", "changed": True, "runs_woken": 1}
        with live.state.engine.connect() as conn:
            rows = conn.execute(select(timers).where(timers.c.workspace_id == ws.workspace_id)).all()
        assert [(r.profile_id, r.key, orjson.loads(r.payload)) for r in rows] == [
            (profile_id, f"resume:{run_id}", {"kind": "resume", "run_id": run_id})
        ]
        assert rows[0].due_at_ms == int(live_clock.now().timestamp() * 1000)


def test_validate_stores_nothing(api: httpx.Client) -> None:
    ok = api.post("/api/journeys/validate", json=JOURNEY)
    assert ok.json() == {"valid": True, "problems": []}
    bad = api.post(
        "/api/journeys/validate",
        content=YAML + "---\n" + YAML.replace("cart-1\n", "cart-1\n    next: x\n"),
        headers={"Content-Type": "application/yaml"},
    )
    assert bad.status_code == 200
    assert bad.json() == {
        "valid": False,
        "problems": [
            {
                "path": "steps.remind.next",
                "message": "no step named 'x'",
                "severity": "error",
                "line": 22,
                "document": 1,
            }
        ],
    }
    assert api.get("/api/journeys").json() == {"journeys": []}


def test_schema(api: httpx.Client) -> None:
    answer = api.get("/api/journeys/schema")
    assert answer.status_code == 200
    assert answer.json() == journey_json_schema()


def test_reserved_ids_cannot_be_journeys(api: httpx.Client) -> None:
    answer = api.put("/api/journeys/schema", json=journey(id="schema"))
    assert answer.status_code == 422
    assert answer.json()["problems"][0]["path"] == "id"


def test_auth_and_workspace_isolation(live: Any, ws: Any) -> None:
    other = live.workspace("other")
    with live.client() as anonymous:
        for method, path in (
            ("GET", "/api/journeys"),
            ("GET", "/api/journeys/schema"),
            ("PUT", "/api/journeys/cart"),
            ("POST", "/api/journeys/validate"),
            ("POST", "/api/journeys/cart/publish"),
        ):
            assert anonymous.request(method, path, json=JOURNEY).status_code == 401, path
    with live.admin(ws.write_key) as wrong_kind:
        assert wrong_kind.get("/api/journeys").status_code == 401
    with live.admin(ws.admin_token) as mine, live.admin(other.admin_token) as theirs:
        assert mine.put("/api/journeys/cart?publish=true", json=JOURNEY).status_code == 201
        assert theirs.get("/api/journeys").json() == {"journeys": []}
        assert theirs.get("/api/journeys/cart").status_code == 404
        assert theirs.get("/api/journeys/cart/versions/1").status_code == 404
        assert theirs.post("/api/journeys/cart/pause").status_code == 404
        assert theirs.put("/api/journeys/cart", json=journey(name="Theirs")).status_code == 201
        assert mine.get("/api/journeys/cart").json()["name"] == "Cart reminder"


def test_listed_in_the_openapi_document(live: Any) -> None:
    with live.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/journeys",
        "/api/journeys/{journey_id}",
        "/api/journeys/{journey_id}/publish",
        "/api/journeys/{journey_id}/pause",
        "/api/journeys/{journey_id}/resume",
        "/api/journeys/{journey_id}/archive",
        "/api/journeys/validate",
        "/api/journeys/schema",
    ):
        assert path in paths, path
    assert paths["/api/journeys/{journey_id}"]["put"]["security"] == [{"adminToken": []}]


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        ("[" * 5000 + "]" * 5000, "application/json", "nested too deeply"),  # RecursionError: was a 500
        ("name: " + "[" * 5000 + "]" * 5000, "application/yaml", "nested too deeply"),
        ("name: Cart\x00\n", "application/yaml", "unacceptable character #x0000"),  # a ReaderError: was a 500
        ("name: Cart\x01\n", "application/yaml", "unacceptable character #x0001"),
    ],
)
def test_bodies_the_parsers_refuse_are_422(api: httpx.Client, body: str, content_type: str, words: str) -> None:
    for answer in (
        api.put("/api/journeys/cart", content=body, headers={"Content-Type": content_type}),
        api.post("/api/journeys/validate", content=body, headers={"Content-Type": content_type}),
    ):
        assert answer.status_code == 422, answer.text
        assert words in answer.json()["problems"][0]["message"]
    assert api.get("/api/journeys/cart").status_code == 404


def test_a_nul_character_in_a_definition_is_a_problem_naming_its_path(api: httpx.Client) -> None:
    """Its name and events become text columns, which PostgreSQL cannot give a NUL: was a 500 there."""
    bad = journey(name="Cart\x00")
    answer = api.put("/api/journeys/cart", json=bad)
    assert answer.status_code == 422, answer.text
    assert answer.json()["problems"][0]["path"] == "name" and "NUL" in answer.json()["problems"][0]["message"]
    checked = api.post("/api/journeys/validate", json=journey(trigger={"type": "event", "event": "Added\x00"}))
    assert checked.status_code == 200 and checked.json()["valid"] is False
    assert "trigger.event" in [p["path"] for p in checked.json()["problems"]]
    assert api.get("/api/journeys/cart").status_code == 404


# --- channels and templates are checked against the workspace (issue 12, item 3) ---------------

EMAIL_JOURNEY = """\
id: welcome
name: Welcome
trigger:
  type: event
  event: Signed Up
steps:
  hello:
    type: send
    channel: email
    template: welcome-1
    next: ping
  ping:
    type: send
    channel: push
    template: welcome-1
"""


def save_template(api: httpx.Client, name: str, channel: str) -> None:
    source = (
        {"channel": "email", "subject": "Hi", "body": "<p>Hello</p>"}
        if channel == "email"
        else {"channel": "push", "title": "Hi", "body": "Hello"}
    )
    answer = api.put(f"/api/templates/{name}", json=source)
    assert answer.status_code in (200, 201), answer.text


def test_put_refuses_missing_templates_and_channels_that_differ(api: httpx.Client) -> None:
    answer = api.put("/api/journeys/welcome", content=EMAIL_JOURNEY, headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 422
    assert answer.json()["problems"] == [
        {
            "path": "steps.hello.template",
            "message": "no template 'welcome-1' in this workspace",
            "severity": "error",
            "line": 10,
        },
        {
            "path": "steps.ping.template",
            "message": "no template 'welcome-1' in this workspace",
            "severity": "error",
            "line": 15,
        },
    ]
    assert api.get("/api/journeys/welcome").status_code == 404

    save_template(api, "welcome-1", "email")
    answer = api.put("/api/journeys/welcome", content=EMAIL_JOURNEY, headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 422
    assert answer.json()["problems"] == [
        {
            "path": "steps.ping.template",
            "message": "template 'welcome-1' is an email template, and this step sends push",
            "severity": "error",
            "line": 15,
        },
    ]
    save_template(api, "welcome-push", "push")
    fixed = EMAIL_JOURNEY.replace("channel: push\n    template: welcome-1", "channel: push\n    template: welcome-push")
    answer = api.put("/api/journeys/welcome?publish=true", content=fixed, headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["published_version"] == 1


def test_unknown_channels_are_refused(api: httpx.Client) -> None:
    for channel, message in (
        ("emial", "unknown channel 'emial': the channels there are email, push, webhook, log (did you mean 'email'?)"),
    ):
        bad = journey()
        bad["steps"]["again"]["channel"] = channel
        answer = api.put("/api/journeys/cart", json=bad)
        assert answer.status_code == 422
        assert [(p["path"], p["message"]) for p in answer.json()["problems"]] == [("steps.again.channel", message)]
        checked = api.post("/api/journeys/validate", json=bad).json()
        assert checked["valid"] is False and checked["problems"][0]["path"] == "steps.again.channel"
    assert api.get("/api/journeys").json() == {"journeys": []}


def test_validate_checks_the_workspace_templates(api: httpx.Client) -> None:
    answer = api.post("/api/journeys/validate", content=EMAIL_JOURNEY, headers={"Content-Type": "application/yaml"})
    assert answer.json()["valid"] is False
    assert {p["path"] for p in answer.json()["problems"]} == {"steps.hello.template", "steps.ping.template"}


def test_publish_refuses_a_draft_whose_template_is_not_there(live: Any, api: httpx.Client, ws: Any) -> None:
    from nudgeflow.model.journey_checks import load_text
    from nudgeflow.model.journeys import Journey
    from nudgeflow.store import journeys as journey_store

    # A draft saved without the API's checks (the store itself does not know the templates).
    definition = Journey.model_validate(dict(load_text(EMAIL_JOURNEY)[0][1]))
    with live.state.engine.begin() as conn:
        journey_store.apply_draft(conn, ws.workspace_id, definition, 1)
    answer = api.post("/api/journeys/welcome/publish")
    assert answer.status_code == 422
    body = answer.json()
    assert body["detail"] == "journey 'welcome' cannot be published"
    assert [p["path"] for p in body["problems"]] == ["steps.hello.template", "steps.ping.template"]
    assert api.get("/api/journeys/welcome").json()["status"] == "draft"

    save_template(api, "welcome-1", "email")
    with live.state.engine.begin() as conn:
        journey_store.apply_draft(
            conn,
            ws.workspace_id,
            definition.model_copy(
                update={"steps": {"hello": definition.steps["hello"].model_copy(update={"next": None})}}
            ),
            2,
        )
    answer = api.post("/api/journeys/welcome/publish")
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 1


def test_catalog_places_the_workspace_lacks_come_back_as_warnings(live: Any, api: httpx.Client, ws: Any) -> None:
    from nudgeflow.store import catalog as catalog_store

    near = {
        "id": "near",
        "name": "Near",
        "trigger": {"type": "location", "radius_m": 200, "catalog_places": {"tags": ["store"]}},
        "steps": {"nearby": {"type": "send", "channel": "log", "template": "store-nearby"}},
    }
    answer = api.put("/api/journeys/near", json=near)
    assert answer.status_code == 201, answer.text
    assert [(w["path"], w["severity"]) for w in answer.json()["warnings"]] == [
        ("trigger.catalog_places.tags.0", "warning")
    ]
    with live.state.engine.begin() as conn:
        catalog_store.import_text(
            conn,
            ws.workspace_id,
            "places",
            '[{"id": "nyc", "name": "NYC", "latitude": 40.7, "longitude": -74, "tags": ["store"]}]',
            1,
            filename="p.json",
        )
    answer = api.put("/api/journeys/near", json=near)
    assert answer.status_code == 200 and answer.json()["warnings"] == []


WINBACK: dict[str, Any] = {
    "id": "winback",
    "name": "Win back",
    "trigger": {"type": "inactivity", "window": "7d"},
    "steps": {"mark": {"type": "update_profile", "set": {"winback": True}}},
}


def test_publish_dry_run_counts_who_would_enter_and_from_now_skips_the_backfill(
    live: Any, api: httpx.Client, ws: Any, clock: Any
) -> None:
    from nudgeflow.store.schema import journey_backfills

    with live.client(auth=(ws.write_key, "")) as sdk:
        for user in ("ada", "bob", "cy"):
            assert sdk.post("/v1/track", json={"userId": user, "event": "Session Started"}).status_code == 200
    clock.advance(timedelta(days=10))
    assert api.put("/api/journeys/winback", json=WINBACK).status_code == 201

    dry = api.post("/api/journeys/winback/publish?dry_run=true")
    assert dry.status_code == 200, dry.text
    assert dry.json() == {"id": "winback", "dry_run": True, "new_version": True, "profiles": 3, "would_enter": 3}
    assert api.get("/api/journeys/winback").json()["status"] == "draft"  # nothing published
    assert api.post("/api/journeys/ghost/publish?dry_run=true").status_code == 404

    done = api.post("/api/journeys/winback/publish?from_now=true")
    assert done.json() == {"id": "winback", "version": 1, "new_version": True, "status": "live", "backfill": False}
    with live.state.engine.connect() as conn:
        jobs = conn.execute(
            select(journey_backfills.c.version).where(journey_backfills.c.workspace_id == ws.workspace_id)
        ).all()
    assert jobs == []

    changed = {**WINBACK, "name": "Win back 2"}
    assert api.put("/api/journeys/winback?publish=true", json=changed).json()["published_version"] == 2
    with live.state.engine.connect() as conn:
        jobs = conn.execute(
            select(journey_backfills.c.version).where(journey_backfills.c.workspace_id == ws.workspace_id)
        ).all()
    assert [j.version for j in jobs] == [2]


def test_two_editors_of_one_draft_the_second_is_refused_not_silently_overwriting(api: httpx.Client) -> None:
    created = api.put("/api/journeys/cart", json=JOURNEY)
    assert created.status_code == 201 and created.headers["etag"] == '"1"'
    # Two editors load the draft at revision 1...
    alice = api.get("/api/journeys/cart")
    bob = api.get("/api/journeys/cart")
    assert alice.headers["etag"] == bob.headers["etag"] == '"1"' and alice.json()["draft_revision"] == 1
    # ...Alice saves first,
    saved = api.put("/api/journeys/cart", json=journey(name="Alice's"), headers={"If-Match": alice.headers["etag"]})
    assert saved.status_code == 200, saved.text
    assert saved.headers["etag"] == '"2"' and saved.json()["journey"]["draft_revision"] == 2
    # then Bob, on the revision he loaded: refused, naming the revision now; Alice's draft stays.
    late = api.put("/api/journeys/cart", json=journey(name="Bob's"), headers={"If-Match": bob.headers["etag"]})
    assert late.status_code == 412, late.text  # Precondition Failed (RFC 9110 §13.1.1)
    assert late.json()["current_revision"] == 2 and late.headers["etag"] == '"2"'
    assert "revision 2, not 1" in late.json()["detail"]
    assert api.get("/api/journeys/cart").json()["name"] == "Alice's"
    # Reloaded, his change goes in; publishing does not move the draft's revision.
    again = api.put("/api/journeys/cart", json=journey(name="Bob's"), headers={"If-Match": '"2"'})
    assert again.status_code == 200 and again.headers["etag"] == '"3"'
    assert api.post("/api/journeys/cart/publish").status_code == 200
    assert api.get("/api/journeys/cart").headers["etag"] == '"3"'
    # Without If-Match the last writer wins, as before (journeys-as-code).
    assert api.put("/api/journeys/cart", json=journey(name="Carol's")).status_code == 200
    assert api.get("/api/journeys/cart").json()["draft_revision"] == 4


@pytest.mark.parametrize("value", ['"two"', "*", '"1", "2"', "", '"-1"', '"1234567890"'])
def test_an_if_match_that_names_no_revision_is_a_400(api: httpx.Client, value: str) -> None:
    assert api.put("/api/journeys/cart", json=JOURNEY).status_code == 201
    answer = api.put("/api/journeys/cart", json=journey(name="x"), headers={"If-Match": value})
    assert answer.status_code == 400 and "If-Match must be one ETag" in answer.json()["detail"]
    assert api.get("/api/journeys/cart").json()["name"] == "Cart reminder"


def test_if_match_on_a_journey_that_does_not_exist_is_a_412_and_creates_nothing(api: httpx.Client) -> None:
    answer = api.put("/api/journeys/cart", json=JOURNEY, headers={"If-Match": '"1"'})
    assert answer.status_code == 412 and answer.json()["current_revision"] is None
    assert api.get("/api/journeys/cart").status_code == 404
    weak = api.put("/api/journeys/cart", json=JOURNEY)
    assert weak.status_code == 201
    # The weak form a compressing proxy may make of the ETag names the same revision.
    assert api.put("/api/journeys/cart", json=journey(name="y"), headers={"If-Match": 'W/"1"'}).status_code == 200


def test_if_none_match_star_creates_a_journey_and_never_replaces_one(api: httpx.Client) -> None:
    new = api.put("/api/journeys/cart", json=JOURNEY, headers={"If-None-Match": "*"})
    assert new.status_code == 201 and new.headers["etag"] == '"1"'
    taken = api.put("/api/journeys/cart", json=journey(name="Mine"), headers={"If-None-Match": "*"})
    assert taken.status_code == 412 and taken.json()["current_revision"] == 1
    assert "exists already" in taken.json()["detail"]
    assert api.get("/api/journeys/cart").json()["name"] == "Cart reminder"
    for headers in ({"If-None-Match": '"1"'}, {"If-None-Match": "*", "If-Match": '"1"'}):
        assert api.put("/api/journeys/cart", json=JOURNEY, headers=headers).status_code == 400
