"""Double opt-in end to end, on both databases: an opt_in workspace's newsletter is not sent
without consent; a journey's confirmation email (a real SMTP server on loopback) carries
{{ links.confirm_subscription }}; a GET of it changes nothing, its POST records the consent
(source double_opt_in, the message's key), once; the newsletter then goes. A tampered,
expired or moved link is refused with a page that says so, and records nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from nudgeflow.content import links
from nudgeflow.content.compiled_templates import save_template
from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.model.journeys import Journey
from nudgeflow.store import consent
from nudgeflow.store.journeys import apply_draft, publish
from tests.channels.smtp_support import Sink
from tests.support import LiveServer

CONFIRM = {
    "channel": "email",
    "subject": "Please confirm",
    "body": '<p>Hi! <a href="{{ links.confirm_subscription }}">Yes, send me the news</a></p>',
}
NEWS = {"channel": "email", "subject": "The news", "body": "<p>News</p>"}
JOURNEYS = [
    {
        "id": "signup",
        "name": "Sign-up confirmation",
        "trigger": {"type": "event", "event": "Newsletter Requested"},
        "entry": {"reentry": "always"},
        "steps": {
            "ask": {"type": "send", "channel": "email", "template": "confirm-news", "marketing": False, "topic": "news"}
        },
    },
    {
        "id": "news",
        "name": "News",
        "trigger": {"type": "event", "event": "News Published"},
        "entry": {"reentry": "always"},
        "steps": {"mail": {"type": "send", "channel": "email", "template": "news", "topic": "news"}},
    },
]


def _local(live: LiveServer, url: str) -> str:
    parts = urlsplit(url)
    return f"{live.url}{parts.path}"


def _confirm_link(sink: Sink) -> str:
    html = "".join(
        part.get_payload(decode=True).decode()
        for part in sink.received[-1].message.walk()
        if part.get_content_type() == "text/html"
    )
    [link] = [part.split('"')[0] for part in html.split('href="')[1:] if "/s/" in part]
    return str(link)


class Shop:
    def __init__(self, live: LiveServer, clock: VirtualClock) -> None:
        self.live, self.clock = live, clock
        self.ws = live.workspace()
        engine = live.state.engine
        now = to_ms(clock.now())
        with engine.begin() as conn:
            consent.update_settings(conn, self.ws.workspace_id, {consent.CONSENT_MODE: consent.OPT_IN}, now)
            save_template(conn, self.ws.workspace_id, "confirm-news", CONFIRM, now)
            save_template(conn, self.ws.workspace_id, "news", NEWS, now)
            for journey in JOURNEYS:
                apply_draft(conn, self.ws.workspace_id, Journey.model_validate(journey), now)
                publish(conn, self.ws.workspace_id, journey["id"], now)
        self.send("/v1/identify", {"userId": "ada", "traits": {"email": "ada@example.org"}})

    def send(self, path: str, body: dict[str, Any]) -> None:
        with self.live.client(auth=(self.ws.write_key, "")) as http:
            assert http.post(path, json=body).status_code == 200
        self.live.state.runtime.run_until_idle()

    def track(self, event: str) -> None:
        self.send("/v1/track", {"userId": "ada", "event": event})

    def statuses(self) -> list[tuple[str, str, str | None]]:
        with self.live.state.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT template, status, reason FROM outbox WHERE workspace_id = :w ORDER BY id"),
                {"w": self.ws.workspace_id},
            )
            return [(r.template, r.status, r.reason) for r in rows]

    def confirmation_key(self) -> str:
        with self.live.state.engine.connect() as conn:
            return str(
                conn.execute(
                    text("SELECT idempotency_key FROM outbox WHERE workspace_id = :w AND template = 'confirm-news'"),
                    {"w": self.ws.workspace_id},
                ).scalar_one()
            )

    def consent_events(self) -> list[dict[str, Any]]:
        with self.live.admin(self.ws.admin_token) as api:
            page = api.get("/api/profiles/ada/events", params={"limit": 1000}).json()["events"]
        return [e["message"]["properties"] for e in page if e["event"] == "Consent Updated"]


def test_a_journeys_confirmation_email_records_consent_once_and_the_newsletter_follows(
    mail_server: tuple[LiveServer, VirtualClock], sink: Sink
) -> None:
    live, clock = mail_server
    shop = Shop(live, clock)
    shop.track("News Published")
    assert shop.statuses() == [("news", "suppressed", "no_consent")] and sink.received == []

    shop.track("Newsletter Requested")
    assert len(sink.received) == 1 and sink.received[0].message["Subject"] == "Please confirm"
    link = _local(live, _confirm_link(sink))
    with live.client(follow_redirects=False) as http:
        page = http.get(link)  # what a mail scanner does: nothing is recorded
        assert page.status_code == 200 and '<form method="post"' in page.text and "“news” email" in page.text
        assert shop.consent_events() == []
        done = http.post(link, data={"confirm": "yes"})
        assert done.status_code == 200 and "is confirmed" in done.text and "location" not in done.headers
        again = http.post(link, data={"confirm": "yes"})
        assert again.status_code == 200 and "was already confirmed" in again.text
    [event] = shop.consent_events()
    key = shop.confirmation_key()
    assert event == {
        "channel": "email",
        "topic": "news",
        "subscribed": True,
        "source": "double_opt_in",
        "message_key": key,
    }

    clock.advance(timedelta(minutes=1))
    shop.track("News Published")
    assert [s for s in shop.statuses() if s[0] == "news"] == [
        ("news", "suppressed", "no_consent"),
        ("news", "sent", None),
    ]


def test_an_admins_request_sends_the_confirmation_and_bad_links_record_nothing(
    mail_server: tuple[LiveServer, VirtualClock], sink: Sink
) -> None:
    live, clock = mail_server
    shop = Shop(live, clock)
    with live.admin(shop.ws.admin_token) as api:
        asked = api.post("/api/profiles/ada/consent/confirmation", json={"topic": "news", "template": "confirm-news"})
        assert asked.status_code == 202, asked.text
    live.state.runtime.run_until_idle()
    assert len(sink.received) == 1
    link = _local(live, _confirm_link(sink))
    token = link.rsplit("/", 1)[1]
    with live.state.engine.connect() as conn:
        secret = consent.existing_tracking_secret(conn, shop.ws.workspace_id)
    assert secret is not None
    verified = links.verify(secret, token, links.CONFIRM, to_ms(clock.now()))
    assert (verified.channel, verified.topic, verified.message_key) == ("email", "news", asked.json()["message_key"])
    assert "ada@example.org" not in token  # the address is bound by a digest, not carried

    with live.client(follow_redirects=False) as http:
        # Tampered: another topic in the payload, the same MAC.
        payload, mac = token.split(".")
        forged = links.sign("not-the-secret", links.LinkToken(**{**_fields(verified), "topic": "*"}))
        for bad in (f"{forged.split('.')[0]}.{mac}", f"{payload}.{mac[:-2]}xx", "garbage", f"{payload}x.{mac}"):
            refused = http.post(f"{live.url}/s/{bad}")
            assert refused.status_code == 404 and "Link not valid" in refused.text, bad
            assert "location" not in refused.headers
        # Another kind of our own links is not a confirmation.
        unsubscribe = links.unsubscribe_url(live.url, secret, shop.ws.workspace_id, "k", verified.profile_id)
        assert http.post(unsubscribe.replace("/u/", "/s/")).status_code == 404
        # The person's address changed since: the link no longer speaks for them.
        shop.send("/v1/identify", {"userId": "ada", "traits": {"email": "ada@elsewhere.example"}})
        moved = http.post(link)
        assert moved.status_code == 410 and "no longer the one" in moved.text
        shop.send("/v1/identify", {"userId": "ada", "traits": {"email": "ADA@example.org"}})
        # Past its week: expired, said so, nothing recorded.
        clock.advance(timedelta(days=8))
        for answer in (http.get(link), http.post(link)):
            assert answer.status_code == 410 and "expired" in answer.text
    assert shop.consent_events() == []


def _fields(token: links.LinkToken) -> dict[str, Any]:
    return {name: getattr(token, name) for name in links.LinkToken.__slots__}


def test_a_confirmation_link_binds_the_address_as_written_any_case_and_expires() -> None:
    """Pure: the link is a function of the message (its key, creation time, topic, address)."""
    first = links.confirm_url("https://n.example", "s", "ws", "k", "p", "email", "news", "A@x.org", 10)
    assert first == links.confirm_url("https://n.example", "s", "ws", "k", "p", "email", "news", "a@x.org ", 10)
    token = first.rsplit("/", 1)[1]
    assert links.verify("s", token, links.CONFIRM, 9).expires_ms == 10
    with pytest.raises(links.ExpiredToken):
        links.verify("s", token, links.CONFIRM, 10)
    with pytest.raises(links.InvalidToken):  # the signature is checked before the time
        links.verify("t", token, links.CONFIRM, 9)
    with pytest.raises(ValueError, match="needs the time"):
        links.verify("s", token, links.CONFIRM)
