"""Machine opens and bot clicks through the real app (web/tracking.py with
model/engagement_signals.py): the recorded request samples of
tests/model/data/engagement_samples.json sent to the open pixel and the click route, on
SQLite and PostgreSQL; the fast-click rule on messages really sent; HEAD; the relay ranges."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from nudgeflow.model.engagement_signals import FAST_CLICK
from nudgeflow.settings import ConfigError
from nudgeflow.web.tracking import engagement_rules
from tests.web.tracking_ctx import TrackingCtx

SAMPLES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "model" / "data" / "engagement_samples.json").read_text()
)["samples"]
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
APPLE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
)


def bare_client(tracking: TrackingCtx) -> httpx.Client:
    """A public client that sends only the headers a request names (no httpx User-Agent)."""
    client = tracking.public()
    client.headers.pop("User-Agent", None)
    return client


def by_key(tracking: TrackingCtx, name: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for event in tracking.events(name):
        props = event["message"]["properties"]
        found.setdefault(props["message_key"], []).append(props)
    return found


def test_every_recorded_sample_is_recorded_with_its_classification(tracking: TrackingCtx) -> None:
    # These message keys were never sent, so the timing rule has nothing to go on here (its
    # samples are below, on sent messages); the relay ranges are not configured.
    samples = [(i, s) for i, s in enumerate(SAMPLES) if s["expect"]["reason"] not in (FAST_CLICK, "apple_relay")]
    with bare_client(tracking) as client:
        for i, sample in samples:
            key = f"sample-{i}"
            if sample["kind"] == "open":
                answer = client.request(sample["method"], tracking.url("open", key=key), headers=sample["headers"])
                assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif", sample["name"]
                if sample["method"] == "HEAD":
                    assert answer.content == b""
                else:
                    assert answer.content.startswith(b"GIF89a")
            else:
                url = tracking.url("click", key=key, destination=f"https://shop.example/p/{i}")
                answer = client.request(sample["method"], url, headers=sample["headers"])
                # A scanner following the link gets where it leads, as a person does.
                assert answer.status_code == 302, sample["name"]
                assert answer.headers["location"] == f"https://shop.example/p/{i}"
    opens, clicks = by_key(tracking, "Email Opened"), by_key(tracking, "Email Link Clicked")
    for i, sample in samples:
        key, expect = f"sample-{i}", sample["expect"]
        [props] = (opens if sample["kind"] == "open" else clicks)[key]
        base = {"message_key": key, "channel": "email"}
        if sample["kind"] == "click":
            base["url"] = f"https://shop.example/p/{i}"
        if expect["flag"] is None:
            assert props == base, sample["name"]  # exactly what a person's open or click always recorded
        else:
            flag = expect["flag"]
            assert props == {**base, flag: True, f"{flag}_reason": expect["reason"]}, sample["name"]


def test_a_machine_open_never_takes_the_place_of_the_persons_open_that_day(tracking: TrackingCtx) -> None:
    url = tracking.url("open", key="m-1")
    with bare_client(tracking) as client:
        for agent in ("Mozilla/5.0", "Mozilla/5.0", SAFARI, SAFARI):  # Apple's proxy first, twice; then the person
            assert client.get(url, headers={"User-Agent": agent}).status_code == 200
    [mpp, person] = sorted(by_key(tracking, "Email Opened")["m-1"], key=lambda p: "machine" not in p)
    assert mpp == {"message_key": "m-1", "channel": "email", "machine": True, "machine_reason": "apple_mpp"}
    assert person == {"message_key": "m-1", "channel": "email"}


def test_head_gets_the_redirect_and_records_no_persons_click(tracking: TrackingCtx) -> None:
    url = tracking.url("click", key="h-1", destination="https://shop.example/sale")
    with bare_client(tracking) as client:
        head = client.head(url, headers={"User-Agent": CHROME})
        assert head.status_code == 302 and head.headers["location"] == "https://shop.example/sale"
        assert head.content == b""
        assert [p.get("bot_reason") for p in by_key(tracking, "Email Link Clicked")["h-1"]] == ["head_request"]
        # The person's click that follows is recorded as theirs.
        assert client.get(url, headers={"User-Agent": SAFARI}).status_code == 302
        pixel = client.head(tracking.url("open", key="h-1"), headers={"User-Agent": CHROME})
        assert pixel.status_code == 200 and pixel.content == b""
    assert sorted(p.get("bot_reason", "person") for p in by_key(tracking, "Email Link Clicked")["h-1"]) == [
        "head_request",
        "person",
    ]
    [open_] = by_key(tracking, "Email Opened")["h-1"]
    assert open_["machine_reason"] == "head_request"
    # A bad token is refused the same way for HEAD.
    with bare_client(tracking) as client:
        assert client.head("/t/c/garbage", headers={"User-Agent": CHROME}).status_code == 404


def sent_message(tracking: TrackingCtx, template: str) -> tuple[str, int]:
    with tracking.live.state.engine.connect() as conn:
        row = conn.execute(
            text("SELECT idempotency_key, sent_at_ms FROM outbox WHERE workspace_id = :w AND template = :t"),
            {"w": tracking.wid, "t": template},
        ).one()
    assert row.sent_at_ms is not None
    return row.idempotency_key, row.sent_at_ms


def test_a_click_seconds_after_sending_with_no_open_is_a_scanners(tracking: TrackingCtx) -> None:
    tracking.track("Sale Started")
    tracking.run()
    key, _sent = sent_message(tracking, "promo")
    url = tracking.url("click", key=key, destination="https://shop.example/sale")
    clock = tracking.live.state.clock
    with bare_client(tracking) as client:
        clock.advance(timedelta(seconds=3))
        fast = client.get(url, headers={"User-Agent": CHROME})
        assert fast.status_code == 302 and fast.headers["location"] == "https://shop.example/sale"
        clock.advance(timedelta(minutes=2))
        assert client.get(url, headers={"User-Agent": CHROME}).status_code == 302  # the person, later
    [scanner, person] = sorted(by_key(tracking, "Email Link Clicked")[key], key=lambda p: "bot" not in p)
    assert scanner["bot"] is True and scanner["bot_reason"] == "fast_click"
    assert scanner["journey_id"] == "sale" and scanner["step"] == "mail"  # the message's facts, as always
    assert "bot" not in person and person["journey_id"] == "sale"


def test_a_fast_click_after_the_persons_open_is_the_persons(tracking: TrackingCtx) -> None:
    tracking.track("News Published")
    tracking.run()
    key, _sent = sent_message(tracking, "newsletter")
    clock = tracking.live.state.clock
    with bare_client(tracking) as client:
        clock.advance(timedelta(seconds=1))
        # Apple's proxy fetch is no open of the person: it does not vouch for the click.
        assert client.get(tracking.url("open", key=key), headers={"User-Agent": "Mozilla/5.0"}).status_code == 200
        url = tracking.url("click", key=key, destination="https://shop.example/a")
        assert client.get(url, headers={"User-Agent": APPLE_MAIL}).status_code == 302
        # The person's client loads the pixel, then the person clicks, still within seconds.
        assert client.get(tracking.url("open", key=key), headers={"User-Agent": APPLE_MAIL}).status_code == 200
        clock.advance(timedelta(seconds=2))
        url = tracking.url("click", key=key, destination="https://shop.example/b")
        assert client.get(url, headers={"User-Agent": APPLE_MAIL}).status_code == 302
    clicks = {p["url"]: p for p in by_key(tracking, "Email Link Clicked")[key]}
    assert clicks["https://shop.example/a"]["bot_reason"] == "fast_click"
    assert "bot" not in clicks["https://shop.example/b"]


def test_the_click_window_follows_the_setting(tracking: TrackingCtx) -> None:
    state = tracking.live.state
    state.engagement_rules = engagement_rules(state.settings.with_(bot_click_seconds=0))  # the rule off
    tracking.track("Sale Started")
    tracking.run()
    key, _sent = sent_message(tracking, "promo")
    with bare_client(tracking) as client:
        url = tracking.url("click", key=key, destination="https://shop.example/sale")
        assert client.get(url, headers={"User-Agent": CHROME}).status_code == 302
    [props] = by_key(tracking, "Email Link Clicked")[key]
    assert "bot" not in props


def test_opens_from_apples_relay_ranges_when_configured(tracking: TrackingCtx, tmp_path: Path) -> None:
    ranges = tmp_path / "egress-ip-ranges.csv"
    ranges.write_text("127.0.0.0/8,ZZ,,,\n::1/128,ZZ,,,\n")  # loopback stands in for Apple's egress here
    state = tracking.live.state
    state.engagement_rules = engagement_rules(state.settings.with_(apple_relay_ranges_file=str(ranges)))
    with bare_client(tracking) as client:
        assert client.get(tracking.url("open", key="r-1"), headers={"User-Agent": APPLE_MAIL}).status_code == 200
        url = tracking.url("click", key="r-1", destination="https://shop.example/")
        assert client.get(url, headers={"User-Agent": SAFARI}).status_code == 302
    [opened] = by_key(tracking, "Email Opened")["r-1"]
    assert opened["machine_reason"] == "apple_relay"
    [clicked] = by_key(tracking, "Email Link Clicked")["r-1"]
    assert "bot" not in clicked  # a click through Private Relay is Safari's: a person's


def test_a_relay_ranges_file_that_cannot_be_used_names_the_variable(tracking: TrackingCtx, tmp_path: Path) -> None:
    settings = tracking.live.state.settings
    with pytest.raises(ConfigError, match=r"NUDGEFLOW_APPLE_RELAY_RANGES: .*missing\.csv"):
        engagement_rules(settings.with_(apple_relay_ranges_file=str(tmp_path / "missing.csv")))
    bad = tmp_path / "bad.csv"
    bad.write_text("17.0.0.0/8,US,,,\nnot-a-prefix,US,,,\n")
    with pytest.raises(ConfigError, match="line 2: 'not-a-prefix' is not an IP prefix"):
        engagement_rules(settings.with_(apple_relay_ranges_file=str(bad)))
