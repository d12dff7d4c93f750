"""POST /t/n/{token}: a service worker reports a notification shown or clicked, on SQLite and
PostgreSQL. The signed token is the authority; each report is one event on the person's
profile, stored once per (message, event, action); a bad token is a 404, never a 5xx."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import insert, select

from nudgeflow.content import links
from nudgeflow.core.clock import to_ms
from nudgeflow.store import consent
from nudgeflow.store.profiles import resolve_profile_id
from nudgeflow.store.schema import events, outbox
from nudgeflow.store.workspaces import NewWorkspace
from tests.support import LiveServer

ORIGIN = {"Origin": "https://shop.example.com"}


class Ctx:
    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.ws: NewWorkspace = live.workspace()
        self.wid = self.ws.workspace_id
        with live.client(auth=(self.ws.write_key, "")) as client:
            assert client.post("/v1/identify", json={"userId": "ada", "anonymousId": "anon-ada"}).status_code == 200
        now = to_ms(live.state.clock.now())
        with live.state.engine.begin() as conn:
            self.secret = consent.tracking_secret(conn, self.wid, now)
            pid = resolve_profile_id(conn, self.wid, "ada")
            assert pid is not None
            self.pid = pid
            # A push message as the engine queues it (already sent: the dispatcher leaves it).
            conn.execute(
                insert(outbox).values(
                    workspace_id=self.wid,
                    idempotency_key="run-1:nudge:1",
                    profile_id=pid,
                    run_id="run-1",
                    journey_id="cart",
                    journey_version=1,
                    step="nudge",
                    channel="push",
                    template="cart_push",
                    variant="B",
                    marketing=1,
                    payload="{}",
                    status="sent",
                    attempts=1,
                    next_attempt_at_ms=now,
                    created_at_ms=now,
                    updated_at_ms=now,
                    sent_at_ms=now,
                )
            )

    def path(self, key: str = "run-1:nudge:1", kind: str = links.PUSH, secret: str | None = None) -> str:
        token = links.sign(secret or self.secret, links.LinkToken(kind, self.wid, key, self.pid))
        return f"/t/n/{token}"

    def report(self, body: Any, path: str | None = None, **headers: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        with self.live.client() as client:
            return client.post(
                path or self.path(), content=content, headers={"content-type": "application/json", **ORIGIN, **headers}
            )

    def events(self, name: str) -> list[dict[str, Any]]:
        with self.live.state.engine.connect() as conn:
            rows = conn.execute(
                select(events.c.payload, events.c.profile_id)
                .where(events.c.workspace_id == self.wid, events.c.event == name)
                .order_by(events.c.seq)
            )
            return [{**orjson.loads(r.payload), "_profile": r.profile_id} for r in rows]


@pytest.fixture
def ctx(live: LiveServer) -> Ctx:
    return Ctx(live)


def ok(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True}
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["cache-control"] == "no-store"


def test_the_report_url_the_renderer_signs_is_this_endpoint(ctx: Ctx) -> None:
    url = links.push_report_url(ctx.live.url, ctx.secret, ctx.wid, "run-1:nudge:1", ctx.pid)
    assert url.startswith(ctx.live.url + "/t/n/")
    ok(ctx.report({"event": "delivered"}, path=url[len(ctx.live.url) :]))


def test_delivered_is_recorded_once_per_message_with_its_journey_facts(ctx: Ctx) -> None:
    for _ in range(3):  # two devices of one person, or a retrying worker
        ok(ctx.report({"event": "delivered"}))
    [event] = ctx.events("Push Delivered")
    assert event["userId"] == "ada" and event["_profile"] == ctx.pid
    assert event["messageId"] == "nudgeflow:run-1:nudge:1:push-delivered"
    assert event["properties"] == {
        "message_key": "run-1:nudge:1",
        "journey_id": "cart",
        "run_id": "run-1",
        "step": "nudge",
        "channel": "push",
        "template": "cart_push",
        "variant": "B",
    }
    assert event["context"]["library"]["name"] == "nudgeflow-push"


def test_clicks_are_recorded_once_per_action(ctx: Ctx) -> None:
    for body in (
        {"event": "clicked", "action": "view"},
        {"event": "clicked", "action": "view"},
        {"event": "clicked"},
        {"event": "clicked", "action": ""},
        {"event": "clicked", "action": "later"},
    ):
        ok(ctx.report(body))
    clicks = ctx.events("Push Clicked")
    assert [c["properties"]["action"] for c in clicks] == ["view", None, "later"]
    assert all(c["properties"]["journey_id"] == "cart" for c in clicks)


def test_a_message_the_outbox_does_not_know_still_says_push(ctx: Ctx) -> None:
    ok(ctx.report({"event": "delivered"}, path=ctx.path(key="test-send-1")))
    [event] = ctx.events("Push Delivered")
    assert event["properties"] == {"message_key": "test-send-1", "channel": "push"}


def test_a_long_action_id_is_hashed_into_the_message_id(ctx: Ctx) -> None:
    action = "a" * 128
    ok(ctx.report({"event": "clicked", "action": action}))
    [event] = ctx.events("Push Clicked")
    assert event["properties"]["action"] == action and len(event["messageId"]) < 120


def test_a_beacon_body_as_text_plain_is_accepted(ctx: Ctx) -> None:
    ok(ctx.report({"event": "delivered"}, **{"content-type": "text/plain;charset=UTF-8"}))
    assert len(ctx.events("Push Delivered")) == 1


def test_the_preflight_allows_a_json_post_from_any_origin(ctx: Ctx) -> None:
    with ctx.live.client() as client:
        answer = client.options(
            ctx.path(),
            headers={
                **ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert "content-type" in answer.headers["access-control-allow-headers"].lower()


def test_tokens_that_are_not_valid_push_tokens_are_404_and_record_nothing(ctx: Ctx) -> None:
    good = ctx.path()
    payload, mac = good[len("/t/n/") :].split(".")
    other_ws = links.sign(ctx.secret, links.LinkToken(links.PUSH, "ws_unknown", "k", ctx.pid))
    cases = [
        "/t/n/garbage",
        "/t/n/" + payload + "." + mac[:-2] + ("AA" if not mac.endswith("AA") else "BB"),  # tampered MAC
        ctx.path(kind=links.OPEN),  # another kind of link, correctly signed
        ctx.path(secret=consent.new_secret()),  # signed with another secret
        f"/t/n/{other_ws}",  # a workspace that has no secret
        "/t/n/" + "x" * 9000,
    ]
    for path in cases:
        answer = ctx.report({"event": "delivered"}, path=path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.headers["access-control-allow-origin"] == "*"
    assert ctx.events("Push Delivered") == []


def test_a_person_who_was_erased_gets_a_404(ctx: Ctx) -> None:
    with ctx.live.admin(ctx.ws.admin_token) as admin:
        assert admin.delete("/api/profiles/ada").status_code == 200
    assert ctx.report({"event": "delivered"}).status_code == 404
    assert ctx.events("Push Delivered") == []


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"event": "opened"}, 400, "event"),
        ({}, 400, "event"),
        ({"event": "clicked", "action": 3}, 400, "action"),
        ({"event": "clicked", "action": "x" * 129}, 400, "action"),
        ([1], 400, "body"),
        (b"{not json", 400, "body"),
        (b"{" + b" " * 5000 + b"}", 413, "body"),
    ],
)
def test_bad_bodies_are_4xx_naming_the_field(ctx: Ctx, body: Any, status: int, field: str) -> None:
    answer = ctx.report(body)
    assert answer.status_code == status, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == [field]
    assert ctx.events("Push Delivered") == [] and ctx.events("Push Clicked") == []


def test_a_form_post_is_refused(ctx: Ctx) -> None:
    answer = ctx.report(b"event=delivered", **{"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 415
    assert answer.json()["errors"][0]["field"] == "Content-Type"
