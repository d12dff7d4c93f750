"""The classification of opens and clicks (model/engagement_signals.py), on the recorded
request samples of data/engagement_samples.json: each gets the flag and reason it says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nudgeflow.model import event_names
from nudgeflow.model.engagement_signals import (
    APPLE_RELAY,
    FAST_CLICK,
    HUMAN,
    Networks,
    Rules,
    Sample,
    Verdict,
    classify,
    is_flagged,
    machine_engagement,
)

DATA = json.loads((Path(__file__).parent / "data" / "engagement_samples.json").read_text())
SAMPLES: list[dict[str, Any]] = DATA["samples"]
RULES = Rules(apple_relay=Networks.parse(DATA["relay_ranges"]))


def as_sample(recorded: dict[str, Any]) -> Sample:
    headers = {k.lower(): v for k, v in recorded["headers"].items()}
    return Sample(
        kind=recorded["kind"],
        method=recorded["method"],
        user_agent=headers.get("user-agent"),
        client_ip=recorded["client_ip"],
        seconds_since_sent=recorded["seconds_since_sent"],
        opened_before=recorded["opened_before"],
    )


@pytest.mark.parametrize("recorded", SAMPLES, ids=[s["name"] for s in SAMPLES])
def test_each_recorded_sample_gets_its_classification(recorded: dict[str, Any]) -> None:
    verdict = classify(as_sample(recorded), RULES)
    assert (verdict.flag, verdict.reason) == (recorded["expect"]["flag"], recorded["expect"]["reason"])


def test_the_samples_cover_every_rule_and_both_answers() -> None:
    seen = {(s["kind"], s["expect"]["reason"]) for s in SAMPLES}
    assert seen >= {
        ("open", "apple_mpp"),
        ("open", "apple_relay"),
        ("open", "head_request"),
        ("open", "scanner_user_agent"),
        ("open", "automated_user_agent"),
        ("open", None),
        ("click", "head_request"),
        ("click", "scanner_user_agent"),
        ("click", "automated_user_agent"),
        ("click", "fast_click"),
        ("click", None),
    }


def test_without_relay_ranges_a_relay_address_proves_nothing() -> None:
    relayed = next(s for s in SAMPLES if s["expect"]["reason"] == APPLE_RELAY)
    assert classify(as_sample(relayed)) == HUMAN
    assert classify(as_sample(relayed), RULES).reason == APPLE_RELAY


def test_the_click_window_is_configurable_and_zero_turns_it_off() -> None:
    fast = next(s for s in SAMPLES if s["expect"]["reason"] == FAST_CLICK)  # 2.6 s after sending
    assert classify(as_sample(fast), Rules(bot_click_seconds=2.0)) == HUMAN
    assert classify(as_sample(fast), Rules(bot_click_seconds=0)) == HUMAN
    assert classify(as_sample(fast), Rules(bot_click_seconds=60)).reason == FAST_CLICK
    # Opens are never flagged on timing alone: a person may read a message the second it lands.
    thunderbird = "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.9.0"
    assert (
        classify(Sample("open", user_agent=thunderbird, seconds_since_sent=0.5), Rules(bot_click_seconds=60)) == HUMAN
    )


def test_what_the_events_carry() -> None:
    assert HUMAN.properties == {}
    assert Verdict("machine", "apple_mpp").properties == {"machine": True, "machine_reason": "apple_mpp"}
    assert Verdict("bot", "fast_click").properties == {"bot": True, "bot_reason": "fast_click"}
    assert is_flagged({"machine": True}) and is_flagged({"bot": True, "url": "x"})
    assert not is_flagged({}) and not is_flagged({"machine": "yes"}) and not is_flagged({"bot": 1})
    assert machine_engagement(event_names.EMAIL_OPENED, {"machine": True})
    assert machine_engagement(event_names.PUSH_CLICKED, {"bot": True})
    # An event of the sender's own that happens to have such a property is no engagement.
    assert not machine_engagement("Page Viewed", {"bot": True})
    assert not machine_engagement(event_names.EMAIL_OPENED, {"message_key": "k"})


def test_networks_merge_and_look_up_by_binary_search() -> None:
    nets = Networks.parse(["10.0.0.0/25", "10.0.0.128/25", "", "# comment", "192.0.2.7,US,,,", "2001:db8::/48"])
    assert nets.v4 == ((0x0A000000, 0x0A0000FF), (0xC0000207, 0xC0000207))  # the halves merged
    assert len(nets) == 3
    assert "10.0.0.0" in nets and "10.0.0.255" in nets and "10.0.1.0" not in nets and "9.255.255.255" not in nets
    assert "192.0.2.7" in nets and "192.0.2.8" not in nets
    assert "2001:db8:0:ffff::1" in nets and "2001:db8:1::1" not in nets
    assert "::ffff:10.0.0.9" in nets  # an IPv4 client on a dual-stack socket
    assert "not an address" not in nets and None not in nets
    with pytest.raises(ValueError, match="line 2: 'nonsense' is not an IP prefix"):
        Networks.parse(["10.0.0.0/8", "nonsense,US"])
