"""POST /t/n/{token}: a service worker reports a notification shown or clicked, on SQLite and
PostgreSQL. The signed token is the authority; each report is one event on the person's
profile, stored once per (message, event, action); a bad token is a 404, never a 5xx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from nudgeflow.content import links
from nudgeflow.store import consent
from tests.web.push_report_ctx import ORIGIN, PushReportCtx


def ok(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True}
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["cache-control"] == "no-store"


def test_the_report_url_the_renderer_signs_is_this_endpoint(push_report: PushReportCtx) -> None:
    url = links.push_report_url(
        push_report.live.url, push_report.secret, push_report.wid, "run-1:nudge:1", push_report.pid
    )
    assert url.startswith(push_report.live.url + "/t/n/")
    ok(push_report.report({"event": "delivered"}, path=url[len(push_report.live.url) :]))


def test_delivered_is_recorded_once_per_message_with_its_journey_facts(push_report: PushReportCtx) -> None:
    for _ in range(3):  # two devices of one person, or a retrying worker
        ok(push_report.report({"event": "delivered"}))
    [event] = push_report.events("Push Delivered")
    assert event["userId"] == "ada" and event["_profile"] == push_report.pid
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


def test_clicks_are_recorded_once_per_action(push_report: PushReportCtx) -> None:
    for body in (
        {"event": "clicked", "action": "view"},
        {"event": "clicked", "action": "view"},
        {"event": "clicked"},
        {"event": "clicked", "action": ""},
        {"event": "clicked", "action": "later"},
    ):
        ok(push_report.report(body))
    clicks = push_report.events("Push Clicked")
    assert [c["properties"]["action"] for c in clicks] == ["view", None, "later"]
    assert all(c["properties"]["journey_id"] == "cart" for c in clicks)


def test_a_message_the_outbox_does_not_know_still_says_push(push_report: PushReportCtx) -> None:
    ok(push_report.report({"event": "delivered"}, path=push_report.path(key="test-send-1")))
    [event] = push_report.events("Push Delivered")
    assert event["properties"] == {"message_key": "test-send-1", "channel": "push"}


def test_a_long_action_id_is_hashed_into_the_message_id(push_report: PushReportCtx) -> None:
    action = "a" * 128
    ok(push_report.report({"event": "clicked", "action": action}))
    [event] = push_report.events("Push Clicked")
    assert event["properties"]["action"] == action and len(event["messageId"]) < 120


def test_a_beacon_body_as_text_plain_is_accepted(push_report: PushReportCtx) -> None:
    ok(push_report.report({"event": "delivered"}, **{"content-type": "text/plain;charset=UTF-8"}))
    assert len(push_report.events("Push Delivered")) == 1


def test_the_preflight_allows_a_json_post_from_any_origin(push_report: PushReportCtx) -> None:
    with push_report.live.client() as client:
        answer = client.options(
            push_report.path(),
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


def test_tokens_that_are_not_valid_push_tokens_are_404_and_record_nothing(push_report: PushReportCtx) -> None:
    good = push_report.path()
    payload, mac = good[len("/t/n/") :].split(".")
    other_ws = links.sign(push_report.secret, links.LinkToken(links.PUSH, "ws_unknown", "k", push_report.pid))
    cases = [
        "/t/n/garbage",
        "/t/n/" + payload + "." + mac[:-2] + ("AA" if not mac.endswith("AA") else "BB"),  # tampered MAC
        push_report.path(kind=links.OPEN),  # another kind of link, correctly signed
        push_report.path(secret=consent.new_secret()),  # signed with another secret
        f"/t/n/{other_ws}",  # a workspace that has no secret
        "/t/n/" + "x" * 9000,
    ]
    for path in cases:
        answer = push_report.report({"event": "delivered"}, path=path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.headers["access-control-allow-origin"] == "*"
    assert push_report.events("Push Delivered") == []


def test_a_person_who_was_erased_gets_a_404(push_report: PushReportCtx) -> None:
    with push_report.live.admin(push_report.ws.admin_token) as admin:
        assert admin.delete("/api/profiles/ada").status_code == 200
    assert push_report.report({"event": "delivered"}).status_code == 404
    assert push_report.events("Push Delivered") == []


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
def test_bad_bodies_are_4xx_naming_the_field(push_report: PushReportCtx, body: Any, status: int, field: str) -> None:
    answer = push_report.report(body)
    assert answer.status_code == status, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == [field]
    assert push_report.events("Push Delivered") == [] and push_report.events("Push Clicked") == []


def test_a_form_post_is_refused(push_report: PushReportCtx) -> None:
    answer = push_report.report(b"event=delivered", **{"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 415
    assert answer.json()["errors"][0]["field"] == "Content-Type"
