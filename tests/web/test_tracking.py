"""Tracking and consent over HTTP on a live server, on SQLite and PostgreSQL: the open pixel,
signed clicks, RFC 8058 one-click unsubscribe, the confirmation page, the preference center,
and what the next message does after each."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import text

from nudgeflow.content import links
from tests.web.tracking_ctx import TrackingCtx


def test_the_open_pixel_is_a_gif_and_records_one_open_per_message_and_day(tracking: TrackingCtx) -> None:
    with tracking.public() as client:
        for _ in range(2):
            answer = client.get(tracking.url("open"))
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
            assert answer.content.startswith(b"GIF89a") and "no-store" in answer.headers["cache-control"]
        bad = client.get("/t/o/not-a-token.gif")
        assert bad.status_code == 200 and bad.content.startswith(b"GIF89a")
    [opened] = tracking.events("Email Opened")
    assert opened["message"]["properties"]["message_key"] == "msg-1"
    assert opened["message"]["userId"] == "ada"


def test_a_click_redirects_only_when_signed(tracking: TrackingCtx) -> None:
    url = tracking.url("click", destination="https://shop.example/item?id=7&utm=mail")
    with tracking.public() as client:
        answer = client.get(url)
        assert answer.status_code == 302
        assert answer.headers["location"] == "https://shop.example/item?id=7&utm=mail"
        # The same token with another destination: the MAC no longer matches.
        token = url.removeprefix("/t/c/")
        evil = links.click_url(
            tracking.live.url, "another secret", tracking.wid, "msg-1", tracking.pid, "https://evil.example/"
        )
        forged = evil.rsplit("/", 1)[1].split(".")[0] + "." + token.split(".")[1]
        wrong_kind = tracking.url("open").removeprefix("/t/o/").removesuffix(".gif")
        for bad in (f"/t/c/{forged}", f"/t/c/{token[:-1]}", f"/t/c/{wrong_kind}", "/t/c/garbage", f"/t/c/{token}x"):
            refused = client.get(bad)
            assert refused.status_code == 404, bad
            assert "location" not in refused.headers
    [clicked] = tracking.events("Email Link Clicked")
    assert clicked["message"]["properties"]["url"] == "https://shop.example/item?id=7&utm=mail"


def test_one_click_post_unsubscribes_without_cookies_or_auth_and_answers_200(tracking: TrackingCtx) -> None:
    assert tracking.subscriptions()["subscribed"] is True
    url = tracking.url("unsub")
    with tracking.public() as client:
        for _ in range(2):  # providers may POST more than once
            answer = client.post(
                url, content="List-Unsubscribe=One-Click", headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
            assert answer.status_code == 200, answer.text
            assert "location" not in answer.headers and "set-cookie" not in answer.headers
            assert "unsubscribed" in answer.text
        assert client.cookies == httpx.Cookies()
    assert tracking.subscriptions()["subscribed"] is False
    [event] = tracking.events("Unsubscribed")
    assert event["message"]["properties"]["method"] == "one_click" and event["message"]["properties"]["topic"] == "*"
    # A tampered one unsubscribes nobody.
    with tracking.public() as client:
        assert client.post(url[:-2] + "xx", content="List-Unsubscribe=One-Click").status_code == 404


def test_a_get_shows_a_confirmation_page_and_does_not_unsubscribe(tracking: TrackingCtx) -> None:
    url = tracking.url("unsub", topic="offers")
    with tracking.public() as client:
        page = client.get(url)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<form method="post"' in page.text and "<button" in page.text and "Offers" in page.text
        assert tracking.subscriptions()["topics"]["offers"] is True and tracking.events("Unsubscribed") == []
        assert client.get("/u/nonsense").status_code == 404
        # Pressing the button: that topic only.
        assert client.post(url, data={"confirm": "yes"}).status_code == 200
    subs = tracking.subscriptions()
    assert subs["subscribed"] is True and subs["topics"] == {"product_news": True, "offers": False, "reminders": True}
    [event] = tracking.events("Unsubscribed")
    assert event["message"]["properties"] == {
        "message_key": "msg-1",
        "channel": "email",
        "topic": "offers",
        "method": "page",
    }


def test_the_preference_center_is_honoured_by_the_next_messages(tracking: TrackingCtx) -> None:
    url = tracking.url("prefs")
    with tracking.public() as client:
        page = client.get(url)
        assert page.status_code == 200
        assert (
            page.text.count('type="checkbox" id="topic-') == 3 and page.text.count(" checked") == 4
        )  # 3 topics + normal
        assert "Reminders &lt;&amp; tips&gt;" in page.text and "<& tips>" not in page.text
        saved = client.post(url, data={"topic": ["product_news", "reminders"], "frequency": "fewer"})
        assert saved.status_code == 200 and "Your preferences are saved" in saved.text
        assert "location" not in saved.headers
    subs = tracking.subscriptions()
    assert (subs["subscribed"], subs["frequency"]) == (True, "fewer")
    assert subs["topics"] == {"product_news": True, "offers": False, "reminders": True}
    [event] = tracking.events("Subscription Preferences Updated")
    assert event["message"]["properties"]["topics"]["offers"] is False
    assert event["message"]["properties"]["frequency"] == "fewer"

    for name in ("Sale Started", "News Published", "Order Completed"):
        tracking.track(name)
    tracking.run()
    assert tracking.outbox() == {
        "promo": ("suppressed", "unsubscribed:offers"),
        "newsletter": ("logged", None),  # the log channel: no email channel configured here
        "receipt": ("logged", None),
    }
    [suppressed] = tracking.events("Message Suppressed")
    assert suppressed["message"]["properties"]["reason"] == "unsubscribed:offers"

    # Unsubscribe from all: marketing stops, the receipt still goes.
    with tracking.public() as client:
        assert client.post(url, data={"unsubscribe_all": "1", "frequency": "normal"}).status_code == 200
    assert tracking.subscriptions()["subscribed"] is False
    assert [e["message"]["properties"]["method"] for e in tracking.events("Unsubscribed")] == ["preferences"]
    tracking.live.state.clock.advance(timedelta(days=1))
    for name in ("News Published", "Order Completed"):
        tracking.track(name)
    tracking.run()
    with tracking.live.state.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT template, status, reason FROM outbox WHERE workspace_id = :w ORDER BY id"), {"w": tracking.wid}
        ).all()
    assert [(r.template, r.status, r.reason) for r in rows[3:]] == [
        ("newsletter", "suppressed", "unsubscribed:*"),
        ("receipt", "logged", None),
    ]


def test_the_suppression_list_stops_transactional_messages_too(tracking: TrackingCtx) -> None:
    api = tracking.admin()
    created = api.post("/api/suppressions", json={"address": "ADA@example.com", "detail": "asked by phone"})
    assert created.status_code == 201 and created.json()["address"] == "ada@example.com"
    listed = api.get("/api/suppressions").json()["suppressions"]
    assert [(s["address"], s["reason"]) for s in listed] == [("ada@example.com", "manual")]
    assert (
        api.get("/api/suppressions", params={"address": "ada@example.com"}).json()["suppressions"][0]["detail"]
        == "asked by phone"
    )
    assert tracking.live.client().get("/api/suppressions").status_code == 401
    tracking.track("Order Completed")
    tracking.run()
    assert tracking.outbox() == {"receipt": ("suppressed", "suppressed:manual")}

    assert api.delete("/api/suppressions", params={"address": "ada@example.com"}).status_code == 200
    assert api.delete("/api/suppressions", params={"address": "ada@example.com"}).status_code == 404
    tracking.live.state.clock.advance(timedelta(days=1))
    tracking.track("Order Completed")
    tracking.run()
    with tracking.live.state.engine.connect() as conn:
        statuses = (
            conn.execute(text("SELECT status FROM outbox WHERE workspace_id = :w ORDER BY id"), {"w": tracking.wid})
            .scalars()
            .all()
        )
    assert statuses == ["suppressed", "logged"]


def test_events_of_each_action_appear_on_the_profile(tracking: TrackingCtx) -> None:
    with tracking.public() as client:
        client.get(tracking.url("open"))
        client.get(tracking.url("click", destination="https://shop.example/"))
        client.post(tracking.url("unsub"), content="List-Unsubscribe=One-Click")
        client.post(tracking.url("prefs"), data={"topic": "offers", "frequency": "normal"})
    names = {
        name
        for name in ("Email Opened", "Email Link Clicked", "Unsubscribed", "Subscription Preferences Updated")
        if tracking.events(name)
    }
    assert len(names) == 4
