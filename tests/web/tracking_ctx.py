"""A workspace with topics, email journeys and Ada, and the tracked links of her messages
(test_tracking.py, its fixture in conftest.py)."""

from __future__ import annotations

from typing import Any

import httpx
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


class TrackingCtx:
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
                text("SELECT template, status, reason, error FROM outbox WHERE workspace_id = :w ORDER BY id"),
                {"w": self.wid},
            )
            # Why it was not sent (reason), else what went wrong (error).
            return {r.template: (r.status, r.reason or r.error) for r in rows}
