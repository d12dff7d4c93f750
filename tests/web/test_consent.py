"""Consent per channel, opt-in workspaces, consent from identify traits, and the admin API of
a person's consent, over HTTP on both databases (the tracking workspace: topics, email
journeys, Ada; email and push on the log channel)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from nudgeflow.core.clock import to_ms
from nudgeflow.model.journeys import Journey
from nudgeflow.store import journeys as journey_store
from tests.web.tracking_ctx import TrackingCtx

PUSH_SALE = {
    "id": "push-sale",
    "name": "Sale by push",
    "trigger": {"type": "event", "event": "Sale Started"},
    "steps": {"note": {"type": "send", "channel": "push", "template": "promo-push", "topic": "offers"}},
}


def _publish(tracking: TrackingCtx, definition: dict[str, Any]) -> None:
    now = to_ms(tracking.live.state.clock.now())
    with tracking.live.state.engine.begin() as conn:
        journey_store.apply_draft(conn, tracking.wid, Journey.model_validate(definition), now)
        journey_store.publish(conn, tracking.wid, definition["id"], now)


def _outbox(tracking: TrackingCtx) -> list[tuple[str, str, str, str | None]]:
    with tracking.live.state.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT template, channel, status, reason FROM outbox WHERE workspace_id = :w ORDER BY id"),
            {"w": tracking.wid},
        )
        return [(r.template, r.channel, r.status, r.reason) for r in rows]


def _consent_events(tracking: TrackingCtx) -> list[dict[str, Any]]:
    return [e["message"]["properties"] for e in tracking.events("Consent Updated")]


def test_an_email_unsubscribe_stops_marketing_email_not_push(tracking: TrackingCtx) -> None:
    _publish(tracking, PUSH_SALE)
    with tracking.public() as client:
        assert client.post(tracking.url("unsub"), content="List-Unsubscribe=One-Click").status_code == 200
    tracking.track("Sale Started")
    tracking.run()
    email, push = sorted(_outbox(tracking))
    assert email == ("promo", "email", "suppressed", "unsubscribed:*")
    # Push is not stopped by the email unsubscribe. It is "logged" while push is not set up, but
    # on the shared PostgreSQL database another test's stored push target makes the runtime
    # serve "push" for real (channels/wiring.push_in_use), so only consent's verdict is asserted.
    assert push[:2] == ("promo-push", "push")
    assert push[2] in ("logged", "sent", "failed", "suppressed") and not (push[3] or "").startswith("unsubscribed")
    [event] = _consent_events(tracking)
    assert event == {
        "channel": "email",
        "topic": "*",
        "subscribed": False,
        "source": "unsubscribe_link",
        "message_key": "msg-1",
    }
    shown = tracking.admin().get("/api/profiles/ada/consent").json()
    assert shown["mode"] == "opt_out"
    assert shown["channels"]["email"]["all"]["allowed"] is False
    assert shown["channels"]["email"]["all"]["recorded"]["source"] == "unsubscribe_link"
    assert shown["channels"]["push"]["all"] == {"allowed": True, "recorded": None}


def test_the_preference_center_shows_push_once_the_workspace_uses_it_and_saves_each_channel(
    tracking: TrackingCtx,
) -> None:
    with tracking.public() as client:
        assert "Push notifications" not in client.get(tracking.url("prefs")).text
    # A push choice recorded for Ada (here by the API) means push is used: it is shown.
    api = tracking.admin()
    put = api.put(
        "/api/profiles/ada/consent", json={"choices": [{"channel": "push", "topic": "offers", "subscribed": True}]}
    )
    assert put.status_code == 200, put.text
    with tracking.public() as client:
        page = client.get(tracking.url("prefs")).text
        assert "<h2>Email</h2>" in page and "<h2>Push notifications</h2>" in page
        assert page.count('name="push_topic"') == 3 and "Unsubscribe from all marketing push notifications" in page
        # Push: everything off (its topic boxes left as shown). Email: offers off, the rest as it was.
        form = {
            "topic": ["product_news", "reminders"],
            "frequency": "normal",
            "push_topic": ["product_news", "offers", "reminders"],
            "push_unsubscribe_all": "1",
        }
        saved = client.post(tracking.url("prefs"), data=form)
        assert saved.status_code == 200 and "Your preferences are saved" in saved.text
    shown = api.get("/api/profiles/ada/consent").json()["channels"]
    assert shown["push"]["all"]["allowed"] is False and shown["push"]["all"]["recorded"]["source"] == "preferences"
    assert shown["email"]["all"]["allowed"] is True and shown["email"]["topics"]["offers"]["allowed"] is False
    [prefs] = tracking.events("Subscription Preferences Updated")
    props = prefs["message"]["properties"]
    assert props["subscribed"] is True and props["topics"]["offers"] is False  # email, as before
    assert props["channels"]["push"]["subscribed"] is False
    assert tracking.events("Unsubscribed") == []  # Segment's email event: push is not email
    changes = {(e["channel"], e["topic"], e["subscribed"], e["source"]) for e in _consent_events(tracking)}
    assert changes == {
        ("push", "offers", True, "api"),
        ("push", "*", False, "preferences"),
        ("email", "offers", False, "preferences"),
    }


def test_opt_in_sends_marketing_only_with_a_recorded_yes(tracking: TrackingCtx) -> None:
    api = tracking.admin()
    assert api.patch("/api/settings", json={"consent": "opt_in"}).status_code == 200
    assert api.patch("/api/settings", json={"consent": "sometimes"}).status_code == 422
    for name in ("News Published", "Sale Started", "Order Completed"):
        tracking.track(name)
    tracking.run()
    assert _outbox(tracking) == [
        ("newsletter", "email", "suppressed", "no_consent"),
        ("promo", "email", "suppressed", "no_consent"),
        ("receipt", "email", "logged", None),  # transactional: consent does not gate it
    ]
    [event] = [e for e in tracking.events("Message Suppressed") if e["message"]["properties"]["template"] == "promo"]
    assert event["message"]["properties"]["reason"] == "no_consent"

    # A yes to one topic: that topic's marketing goes, the other's still does not.
    choice = {"channel": "email", "topic": "product_news", "subscribed": True}
    answer = api.put("/api/profiles/ada/consent", json={"choices": [choice]})
    assert answer.status_code == 200 and answer.json()["changed"] == 1
    assert answer.json()["channels"]["email"]["topics"]["product_news"]["allowed"] is True
    assert answer.json()["channels"]["email"]["topics"]["offers"] == {
        "allowed": False,
        "reason": "no_consent",
        "recorded": None,
    }
    assert api.put("/api/profiles/ada/consent", json={"choices": [choice]}).json()["changed"] == 0
    tracking.live.state.clock.advance(timedelta(days=1))
    for name in ("News Published", "Sale Started"):
        tracking.track(name)
    tracking.run()
    assert _outbox(tracking)[3:] == [
        ("newsletter", "email", "logged", None),
        ("promo", "email", "suppressed", "no_consent"),
    ]
    assert _consent_events(tracking) == [
        {"channel": "email", "topic": "product_news", "subscribed": True, "source": "api"}
    ]


def test_identify_traits_the_workspace_maps_record_consent_when_they_change(tracking: TrackingCtx) -> None:
    api = tracking.admin()
    mapping = {"newsletter_opt_in": {"channel": "email", "topic": "product_news"}, "push_ok": {"channel": "push"}}
    assert api.patch("/api/settings", json={"consent_traits": mapping}).status_code == 200
    refused = api.patch("/api/settings", json={"consent_traits": {"email": {"channel": "email"}}})
    assert refused.status_code == 422 and "consent_traits" in refused.text

    def identify(**traits: Any) -> None:
        with tracking.write() as client:
            assert client.post("/v1/identify", json={"userId": "ada", "traits": traits}).status_code == 200

    identify(newsletter_opt_in=True, push_ok=False, plan="pro")
    identify(newsletter_opt_in=True)  # the same value again: nothing new is said
    identify(newsletter_opt_in="yes")  # not a boolean: not a choice
    identify(newsletter_opt_in=False)
    changes = [(e["channel"], e["topic"], e["subscribed"], e["source"]) for e in _consent_events(tracking)]
    assert sorted(changes) == sorted(
        [
            ("email", "product_news", True, "identify"),
            ("push", "*", False, "identify"),
            ("email", "product_news", False, "identify"),
        ]
    )
    shown = api.get("/api/profiles/ada/consent").json()["channels"]
    assert shown["email"]["topics"]["product_news"]["recorded"]["subscribed"] is False
    assert shown["push"]["all"]["recorded"]["source"] == "identify"


def test_the_consent_api_refuses_what_it_cannot_record(tracking: TrackingCtx) -> None:
    api = tracking.admin()
    assert api.get("/api/profiles/nobody/consent").status_code == 404
    assert api.put("/api/profiles/ada/consent", json={"choices": []}).status_code == 422
    bad_topic = {"choices": [{"channel": "email", "topic": "no spaces", "subscribed": True}]}
    assert api.put("/api/profiles/ada/consent", json=bad_topic).status_code == 422
    assert tracking.live.client().get("/api/profiles/ada/consent").status_code == 401
    no_template = api.post("/api/profiles/ada/consent/confirmation", json={"topic": "offers"})
    assert no_template.status_code == 422 and "consent_confirmation_template" in no_template.text
    missing = api.post("/api/profiles/ada/consent/confirmation", json={"topic": "offers", "template": "nope"})
    assert missing.status_code == 422 and "no template named 'nope'" in missing.text
    # The old view of one channel still answers, for push too.
    assert api.get("/api/profiles/ada/subscriptions", params={"channel": "push"}).json()["subscribed"] is True
