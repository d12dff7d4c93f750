"""Tracking and consent over HTTP on a live server, on SQLite and PostgreSQL: the open pixel,
signed clicks, RFC 8058 one-click unsubscribe, the confirmation page, the preference center,
and what the next message does after each."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from nudgeflow.content import links
from nudgeflow.core.clock import to_ms
from nudgeflow.model.journeys import Journey
from nudgeflow.store import consent
from nudgeflow.store import journeys as journey_store
from tests.support import LiveServer

TOPICS = ["product_news", "offers", {"id": "reminders", "label": "Reminders <& tips>"}]
JOURNEYS = [
    {
        "id": "sale",
        "name": "Sale",
        "trigger": {"type": "event", "event": "Sale Started"},
        "steps": {"mail": {"type": "send", "channel": "email", "template": "promo"}},
    },
    {
        "id": "news",
        "name": "News",
        "trigger": {"type": "event", "event": "News Published"},
        "steps": {"mail": {"type": "send", "channel": "email", "template": "newsletter"}},
    },
    {
        "id": "receipt",
        "name": "Receipt",
        "trigger": {"type": "event", "event": "Order Completed"},
        "steps": {"mail": {"type": "send", "channel": "email", "template": "receipt", "marketing": False}},
    },
]


class Ctx:
    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.ws = live.workspace()
        self.wid = self.ws.workspace_id
        now = to_ms(live.state.clock.now())
        with live.state.engine.begin() as conn:
            consent.update_settings(
                conn,
                self.wid,
                {
                    consent.TOPICS: TOPICS,
                    consent.PUBLIC_BASE_URL: live.url,
                    consent.TOPIC_BY_TEMPLATE: {"promo": "offers", "newsletter": "product_news"},
                },
                now,
            )
            self.secret = consent.tracking_secret(conn, self.wid, now)
            for definition in JOURNEYS:
                journey_store.apply_draft(conn, self.wid, Journey.model_validate(definition), now)
                journey_store.publish(conn, self.wid, definition["id"], now)
        with self.write() as client:
            assert (
                client.post("/v1/identify", json={"userId": "ada", "traits": {"email": "ada@example.com"}}).status_code
                == 200
            )
        self.pid = self.admin().get("/api/profiles/ada").json()["id"]

    def write(self) -> httpx.Client:
        return self.live.client(auth=(self.ws.write_key, ""))

    def admin(self) -> httpx.Client:
        return self.live.admin(self.ws.admin_token)

    def public(self) -> httpx.Client:
        """No cookies, no credentials, never following a redirect."""
        return self.live.client(follow_redirects=False)

    def path(self, url: str) -> str:
        assert url.startswith(self.live.url)
        return url[len(self.live.url) :]

    def url(self, kind: str, key: str = "msg-1", **kw: Any) -> str:
        fn = {
            "open": links.open_pixel_url,
            "click": links.click_url,
            "unsub": links.unsubscribe_url,
            "prefs": links.preferences_url,
        }[kind]
        args = [self.live.url, self.secret, self.wid, key, self.pid]
        if kind == "click":
            args.append(kw.pop("destination"))
        return self.path(fn(*args, **kw))

    def events(self, name: str) -> list[dict[str, Any]]:
        page = self.admin().get("/api/profiles/ada/events", params={"limit": 1000}).json()["events"]
        return [e for e in page if e["event"] == name]

    def subscriptions(self) -> dict[str, Any]:
        answer = self.admin().get("/api/profiles/ada/subscriptions")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def track(self, event: str) -> None:
        with self.write() as client:
            assert client.post("/v1/track", json={"userId": "ada", "event": event}).status_code == 200

    def run(self) -> None:
        self.live.state.runtime.run_until_idle()

    def outbox(self) -> dict[str, tuple[str, str | None]]:
        with self.live.state.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT template, status, error FROM outbox WHERE workspace_id = :w ORDER BY id"), {"w": self.wid}
            )
            return {r.template: (r.status, r.error) for r in rows}


@pytest.fixture
def ctx(live: LiveServer) -> Ctx:
    # These tests read what "email" recorded from the log channel. On the shared PostgreSQL
    # database another test's workspace may have SMTP settings, which makes the runtime
    # serve "email" over SMTP: pin it to the log channel here.
    runtime = live.state.runtime
    runtime.run_until_idle()  # the runtime picks its email channel on its first run
    runtime.channels.register("email", runtime.channels.get("log"))
    return Ctx(live)


def test_the_open_pixel_is_a_gif_and_records_one_open_per_message_and_day(ctx: Ctx) -> None:
    with ctx.public() as client:
        for _ in range(2):
            answer = client.get(ctx.url("open"))
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
            assert answer.content.startswith(b"GIF89a") and "no-store" in answer.headers["cache-control"]
        bad = client.get("/t/o/not-a-token.gif")
        assert bad.status_code == 200 and bad.content.startswith(b"GIF89a")
    [opened] = ctx.events("Email Opened")
    assert opened["message"]["properties"]["message_key"] == "msg-1"
    assert opened["message"]["userId"] == "ada"


def test_a_click_redirects_only_when_signed(ctx: Ctx) -> None:
    url = ctx.url("click", destination="https://shop.example/item?id=7&utm=mail")
    with ctx.public() as client:
        answer = client.get(url)
        assert answer.status_code == 302
        assert answer.headers["location"] == "https://shop.example/item?id=7&utm=mail"
        # The same token with another destination: the MAC no longer matches.
        token = url.removeprefix("/t/c/")
        evil = links.click_url(ctx.live.url, "another secret", ctx.wid, "msg-1", ctx.pid, "https://evil.example/")
        forged = evil.rsplit("/", 1)[1].split(".")[0] + "." + token.split(".")[1]
        wrong_kind = ctx.url("open").removeprefix("/t/o/").removesuffix(".gif")
        for bad in (f"/t/c/{forged}", f"/t/c/{token[:-1]}", f"/t/c/{wrong_kind}", "/t/c/garbage", f"/t/c/{token}x"):
            refused = client.get(bad)
            assert refused.status_code == 404, bad
            assert "location" not in refused.headers
    [clicked] = ctx.events("Email Link Clicked")
    assert clicked["message"]["properties"]["url"] == "https://shop.example/item?id=7&utm=mail"


def test_one_click_post_unsubscribes_without_cookies_or_auth_and_answers_200(ctx: Ctx) -> None:
    assert ctx.subscriptions()["subscribed"] is True
    url = ctx.url("unsub")
    with ctx.public() as client:
        for _ in range(2):  # providers may POST more than once
            answer = client.post(
                url, content="List-Unsubscribe=One-Click", headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
            assert answer.status_code == 200, answer.text
            assert "location" not in answer.headers and "set-cookie" not in answer.headers
            assert "unsubscribed" in answer.text
        assert client.cookies == httpx.Cookies()
    assert ctx.subscriptions()["subscribed"] is False
    [event] = ctx.events("Unsubscribed")
    assert event["message"]["properties"]["method"] == "one_click" and event["message"]["properties"]["topic"] == "*"
    # A tampered one unsubscribes nobody.
    with ctx.public() as client:
        assert client.post(url[:-2] + "xx", content="List-Unsubscribe=One-Click").status_code == 404


def test_a_get_shows_a_confirmation_page_and_does_not_unsubscribe(ctx: Ctx) -> None:
    url = ctx.url("unsub", topic="offers")
    with ctx.public() as client:
        page = client.get(url)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<form method="post"' in page.text and "<button" in page.text and "Offers" in page.text
        assert ctx.subscriptions()["topics"]["offers"] is True and ctx.events("Unsubscribed") == []
        assert client.get("/u/nonsense").status_code == 404
        # Pressing the button: that topic only.
        assert client.post(url, data={"confirm": "yes"}).status_code == 200
    subs = ctx.subscriptions()
    assert subs["subscribed"] is True and subs["topics"] == {"product_news": True, "offers": False, "reminders": True}
    [event] = ctx.events("Unsubscribed")
    assert event["message"]["properties"] == {
        "message_key": "msg-1",
        "channel": "email",
        "topic": "offers",
        "method": "page",
    }


def test_the_preference_center_is_honoured_by_the_next_messages(ctx: Ctx) -> None:
    url = ctx.url("prefs")
    with ctx.public() as client:
        page = client.get(url)
        assert page.status_code == 200
        assert (
            page.text.count('type="checkbox" id="topic-') == 3 and page.text.count(" checked") == 4
        )  # 3 topics + normal
        assert "Reminders &lt;&amp; tips&gt;" in page.text and "<& tips>" not in page.text
        saved = client.post(url, data={"topic": ["product_news", "reminders"], "frequency": "fewer"})
        assert saved.status_code == 200 and "Your preferences are saved" in saved.text
        assert "location" not in saved.headers
    subs = ctx.subscriptions()
    assert (subs["subscribed"], subs["frequency"]) == (True, "fewer")
    assert subs["topics"] == {"product_news": True, "offers": False, "reminders": True}
    [event] = ctx.events("Subscription Preferences Updated")
    assert event["message"]["properties"]["topics"]["offers"] is False
    assert event["message"]["properties"]["frequency"] == "fewer"

    for name in ("Sale Started", "News Published", "Order Completed"):
        ctx.track(name)
    ctx.run()
    assert ctx.outbox() == {
        "promo": ("suppressed", "unsubscribed from topic offers"),
        "newsletter": ("logged", None),  # the log channel: no email channel configured here
        "receipt": ("logged", None),
    }
    [suppressed] = ctx.events("Message Suppressed")
    assert suppressed["message"]["properties"]["reason"] == "unsubscribed from topic offers"

    # Unsubscribe from all: marketing stops, the receipt still goes.
    with ctx.public() as client:
        assert client.post(url, data={"unsubscribe_all": "1", "frequency": "normal"}).status_code == 200
    assert ctx.subscriptions()["subscribed"] is False
    assert [e["message"]["properties"]["method"] for e in ctx.events("Unsubscribed")] == ["preferences"]
    ctx.live.state.clock.advance(timedelta(days=1))
    for name in ("News Published", "Order Completed"):
        ctx.track(name)
    ctx.run()
    with ctx.live.state.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT template, status, error FROM outbox WHERE workspace_id = :w ORDER BY id"), {"w": ctx.wid}
        ).all()
    assert [(r.template, r.status, r.error) for r in rows[3:]] == [
        ("newsletter", "suppressed", "unsubscribed"),
        ("receipt", "logged", None),
    ]


def test_the_suppression_list_stops_transactional_messages_too(ctx: Ctx) -> None:
    api = ctx.admin()
    created = api.post("/api/suppressions", json={"address": "ADA@example.com", "detail": "asked by phone"})
    assert created.status_code == 201 and created.json()["address"] == "ada@example.com"
    listed = api.get("/api/suppressions").json()["suppressions"]
    assert [(s["address"], s["reason"]) for s in listed] == [("ada@example.com", "manual")]
    assert (
        api.get("/api/suppressions", params={"address": "ada@example.com"}).json()["suppressions"][0]["detail"]
        == "asked by phone"
    )
    assert ctx.live.client().get("/api/suppressions").status_code == 401
    ctx.track("Order Completed")
    ctx.run()
    assert ctx.outbox() == {"receipt": ("suppressed", "suppressed: manual")}

    assert api.delete("/api/suppressions", params={"address": "ada@example.com"}).status_code == 200
    assert api.delete("/api/suppressions", params={"address": "ada@example.com"}).status_code == 404
    ctx.live.state.clock.advance(timedelta(days=1))
    ctx.track("Order Completed")
    ctx.run()
    with ctx.live.state.engine.connect() as conn:
        statuses = (
            conn.execute(text("SELECT status FROM outbox WHERE workspace_id = :w ORDER BY id"), {"w": ctx.wid})
            .scalars()
            .all()
        )
    assert statuses == ["suppressed", "logged"]


def test_events_of_each_action_appear_on_the_profile(ctx: Ctx) -> None:
    with ctx.public() as client:
        client.get(ctx.url("open"))
        client.get(ctx.url("click", destination="https://shop.example/"))
        client.post(ctx.url("unsub"), content="List-Unsubscribe=One-Click")
        client.post(ctx.url("prefs"), data={"topic": "offers", "frequency": "normal"})
    profile = ctx.admin().get("/api/profiles/ada").json()
    names = {e["event"] for e in profile["recent_events"]}
    assert {"Email Opened", "Email Link Clicked", "Unsubscribed", "Subscription Preferences Updated"} <= names
