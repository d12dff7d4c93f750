"""Send policies and the webhook step (issue 14 item 12): caps and quiet hours are per channel,
so they hold webhook calls back only when a rule names the `webhook` channel."""

from __future__ import annotations

from typing import Any

from nudgeflow.core.catalog import Catalog, JourneyVersion
from nudgeflow.core.effects import MessageWithheld, SendMessage
from nudgeflow.model.journeys import Journey
from nudgeflow.model.policies import Policies
from tests.core.engine_driver import T0, Driver, H, journey, ms

EMAIL_CAP = {"id": "email-1", "channel": "email", "limit": 1, "window": "24h"}
WEBHOOK_CAP = {"id": "webhook-1", "channel": "webhook", "limit": 1, "window": "24h"}
EMAIL_QUIET = {"channel": "email", "start": "22:00", "end": "08:00"}
WEBHOOK_QUIET = {"channel": "webhook", "start": "22:00", "end": "08:00"}


def both(id: str, event: str) -> Journey:
    """On `event`, an email, then a webhook call to the CRM."""
    steps = {
        "mail": {"type": "send", "channel": "email", "template": f"{id}-t", "next": "call"},
        "call": {"type": "send", "channel": "webhook", "webhook": {"destination": "crm", "body": {"id": "{{ x }}"}}},
    }
    return journey(id, {"type": "event", "event": event}, steps, entry={"reentry": "always"})


def driver(now: int = T0, **policies: Any) -> Driver:
    catalog = Catalog([JourneyVersion("a", 1, both("a", "Ping"))], policies=Policies.model_validate(policies))
    return Driver(cat=catalog, now=now)


def decisions(d: Driver) -> list[tuple[str, str, str | None]]:
    out: list[tuple[str, str, str | None]] = []
    for _, effect in d.log:
        if isinstance(effect, SendMessage):
            out.append((effect.channel, "send", None))
        elif isinstance(effect, MessageWithheld):
            out.append((effect.channel, effect.status, effect.reason))
    return out


def test_an_email_cap_leaves_webhook_calls_alone() -> None:
    d = driver(frequency_caps=[EMAIL_CAP])
    d.track("Ping")
    d.advance_to(T0 + H)
    d.track("Ping")
    assert decisions(d) == [
        ("email", "send", None),
        ("webhook", "send", None),
        ("email", "dropped", "frequency_cap:email-1"),
        ("webhook", "send", None),
    ]
    sent = [e for _, e in d.log if isinstance(e, SendMessage) and e.channel == "webhook"]
    assert [m.template for m in sent] == ["", ""]  # a webhook step has no template of its own


def test_a_cap_that_names_the_webhook_channel_holds_calls_back() -> None:
    d = driver(frequency_caps=[EMAIL_CAP, WEBHOOK_CAP])
    d.track("Ping")
    d.advance_to(T0 + H)
    d.track("Ping")
    assert decisions(d)[2:] == [
        ("email", "dropped", "frequency_cap:email-1"),
        ("webhook", "dropped", "frequency_cap:webhook-1"),
    ]


def test_quiet_hours_hold_webhook_calls_only_when_they_name_the_channel() -> None:
    night = ms("2026-03-02T23:00:00Z")
    d = driver(night, quiet_hours=[EMAIL_QUIET])
    d.track("Ping")
    assert decisions(d) == [("email", "deferred", "quiet_hours"), ("webhook", "send", None)]
    d = driver(night, quiet_hours=[EMAIL_QUIET, WEBHOOK_QUIET])
    d.track("Ping")
    assert decisions(d) == [("email", "deferred", "quiet_hours"), ("webhook", "deferred", "quiet_hours")]
