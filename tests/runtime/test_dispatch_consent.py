"""Consent and suppression at send time, in the dispatcher, on both databases."""

from __future__ import annotations

import orjson

from nudgeflow.channels.base import ChannelRegistry, NoTarget
from nudgeflow.core.clock import to_ms
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.store import consent
from nudgeflow.web.metrics import Metrics
from tests.runtime.harness import FlakyRemote, Harness, registry


def now(h: Harness) -> int:
    return to_ms(h.clock.now())


def test_a_suppressed_address_gets_nothing_and_the_row_says_why(h: Harness) -> None:
    h.identify("ada", email="Ada@Example.com")
    h.identify("bob", email="bob@example.com")
    h.in_transaction(
        lambda conn: consent.suppress(conn, h.ws, "email", "ada@example.COM", "hard_bounce", now(h), "550 5.1.1")
    )
    h.track("ada", "Signed Up")
    h.track("bob", "Signed Up")
    rt = h.runtime()
    rt.run_until_idle()
    rows = {r.profile_id: r for r in h.outbox()}
    ada, bob = rows[h.profile_id("ada")], rows[h.profile_id("bob")]
    assert (ada.status, ada.reason, ada.attempts, ada.sent_at_ms) == ("suppressed", "suppressed:hard_bounce", 0, None)
    assert bob.status == "logged"
    assert [m.profile_id for m in h.log_messages()] == [h.profile_id("bob")]
    [event] = h.events_named("Message Suppressed")
    assert event.message_id == f"nudgeflow:{ada.idempotency_key}:suppressed" and event.profile_id == h.profile_id("ada")
    assert orjson.loads(event.payload)["properties"]["reason"] == "suppressed:hard_bounce"
    assert rt.run_until_idle().messages == 0  # final: never claimed again


def test_an_unsubscribed_person_gets_no_marketing_and_a_remote_channel_is_never_called(h: Harness) -> None:
    h.identify("ada", email="ada@example.com")
    pid = h.profile_id("ada")
    h.in_transaction(
        lambda conn: consent.set_subscription(conn, h.ws, pid, consent.ALL, False, now(h), channel="flaky")
    )
    flaky = FlakyRemote()
    h.track("ada", "Signed Up", channel="flaky")
    rt = h.runtime(channels=registry(flaky=flaky))
    rt.run_until_idle()
    [row] = h.outbox()
    assert (row.status, row.reason) == ("suppressed", "unsubscribed:*") and flaky.sent == []


def test_a_topic_unsubscribe_stops_that_topic_only(h: Harness) -> None:
    h.identify("ada", email="ada@example.com")
    pid = h.profile_id("ada")

    def setup(conn: object) -> None:
        consent.update_settings(
            conn,
            h.ws,
            {
                consent.TOPICS: ["offers", "reminders"],
                consent.TOPIC_BY_TEMPLATE: {"promo": "offers", "welcome": "reminders"},
            },
            now(h),
        )
        consent.set_subscription(conn, h.ws, pid, "offers", False, now(h))

    h.in_transaction(setup)
    h.track("ada", "Signed Up", template="promo")
    h.track("ada", "Signed Up", template="welcome")
    rt = h.runtime(channels=ChannelRegistry.development())
    rt.run_until_idle()
    by_template = {r.template: r for r in h.outbox()}
    assert (by_template["promo"].status, by_template["promo"].reason) == ("suppressed", "unsubscribed:offers")
    assert by_template["welcome"].status == "logged"
    [logged] = h.log_messages()
    assert orjson.loads(logged.body)["context"]["topic"] == "reminders"


def test_the_templates_own_topic_gates_its_messages(h: Harness) -> None:
    """No topic in the message and none mapped in the workspace: the template's `topic:`
    decides, so an email template declared as "offers" never reaches who left offers."""
    from nudgeflow.content.compiled_templates import save_template

    h.identify("ada", email="ada@example.com")
    pid = h.profile_id("ada")

    def setup(conn: object) -> None:
        save_template(
            conn, h.ws, "promo-own-topic", {"subject": "Deal", "body": "<p>Deal</p>", "topic": "offers"}, now(h)
        )
        consent.set_subscription(conn, h.ws, pid, "offers", False, now(h))

    h.in_transaction(setup)
    h.track("ada", "Signed Up", template="promo-own-topic")
    rt = h.runtime(channels=ChannelRegistry.development())
    rt.run_until_idle()
    [row] = h.outbox()
    assert (row.status, row.reason) == ("suppressed", "unsubscribed:offers")


class NoAddress(FlakyRemote):
    """A channel for which nobody has an address: refused at `check`, before any try."""

    name = "noaddress"

    def check(self, message: OutboundMessage) -> None:
        raise NoTarget("profile has no address for this channel")


class NoDevice(FlakyRemote):
    """A channel that learns only when sending that the person has no device."""

    name = "nodevice"

    async def send(self, message: OutboundMessage) -> None:
        self.sent.append((message.key, message.attempt))
        raise NoTarget("no push target: the person has no push subscription or device token")


def test_a_person_with_nothing_to_send_to_is_not_a_failure_but_a_suppression_no_target(h: Harness) -> None:
    h.identify("ada", email="ada@example.com")
    h.track("ada", "Signed Up", channel="noaddress", template="a")
    h.track("ada", "Signed Up", channel="nodevice", template="b")
    nodevice = NoDevice()
    rt = h.runtime(channels=registry(noaddress=NoAddress(), nodevice=nodevice))
    rt.run_until_idle()
    rows = {r.template: r for r in h.outbox()}
    assert [(r.status, r.reason, r.error) for r in (rows["a"], rows["b"])] == [
        ("suppressed", "no_target", None),
        ("suppressed", "no_target", None),
    ]
    assert len(nodevice.sent) == 1  # tried once, never retried
    reasons = [orjson.loads(e.payload)["properties"]["reason"] for e in h.events_named("Message Suppressed")]
    assert reasons == ["no_target", "no_target"]
    assert h.events_named("Message Failed") == []
    assert rt.stats.messages_failed == 0
    assert rt.not_sent() == {("suppressed", "no_target", "noaddress"): 1, ("suppressed", "no_target", "nodevice"): 1}


def test_suppressions_are_counted_by_reason_family_and_exported_to_prometheus(h: Harness) -> None:
    for user in ("ada", "bob", "cy"):
        h.identify(user, email=f"{user}@example.com")

    def setup(conn: object) -> None:
        consent.suppress(conn, h.ws, "email", "ada@example.com", "complaint", now(h))
        consent.set_subscription(conn, h.ws, h.profile_id("bob"), "offers", False, now(h))
        consent.set_subscription(conn, h.ws, h.profile_id("cy"), consent.ALL, False, now(h))
        consent.update_settings(conn, h.ws, {consent.TOPIC_BY_TEMPLATE: {"welcome": "offers"}}, now(h))

    h.in_transaction(setup)
    for user in ("ada", "bob", "cy"):
        h.track(user, "Signed Up")
    rt = h.runtime(channels=ChannelRegistry.development())
    rt.run_until_idle()
    assert sorted(r.reason for r in h.outbox()) == ["suppressed:complaint", "unsubscribed:*", "unsubscribed:offers"]
    assert rt.not_sent() == {("suppressed", "suppressed", "email"): 1, ("suppressed", "unsubscribed", "email"): 2}
    metrics = Metrics()
    metrics.watch_runtime(rt)
    text = metrics.render().decode()
    # The family, never the topic or the suppression's own reason: bounded labels.
    assert 'nudgeflow_messages_not_sent_total{channel="email",reason="unsubscribed",status="suppressed"} 2.0' in text
    assert 'nudgeflow_messages_not_sent_total{channel="email",reason="suppressed",status="suppressed"} 1.0' in text
    assert "offers" not in text and "complaint" not in text
