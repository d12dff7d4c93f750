"""A journey's push message through the push channel to FCM and APNs, end to end on a real
database: the devices arrive the Segment way (context.device.token on events), the message
is rendered from its template, and the tokens the services report dead are deleted.

The local FCM, token and APNs servers are those of tests/channels/push_servers.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select

from nudgeflow.channels.apns import ApnsSender
from nudgeflow.channels.base import PermanentError, TransientError
from nudgeflow.channels.fcm import FcmSender
from nudgeflow.channels.push import DatabasePush, PushChannel
from nudgeflow.channels.wiring import apns_default, fcm_default
from nudgeflow.content.compiled_templates import save_template
from nudgeflow.core.clock import VirtualClock, from_ms, to_ms
from nudgeflow.model.events import normalize, parse_message
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.settings import Settings
from nudgeflow.store.ingest_writer import write_events
from nudgeflow.store.profiles import erase_profile, resolve_profile_id
from nudgeflow.store.schema import device_tokens, push_deliveries
from tests.channels.push_servers import (
    ApnsServer,
    FcmServer,
    Hypercorn,
    client_ssl_context,
    p8_pem,
    service_account_json,
)
from tests.support import make_workspace

PROJECT, EMAIL, SA_KEY_ID = "nudgeflow-test", "push@nudgeflow-test.iam.gserviceaccount.com", "0a1b2c3d"
TEAM, KEY_ID, TOPIC = "TEAM123456", "KEY7654321", "com.example.shop"
IPHONE = "1a2b3c4d" * 8
OLD_IPAD = "9f8e7d6c" * 8
PIXEL = "cGl4ZWw:APA91bF-" + "p" * 100
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048), ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def servers(ca: trustme.CA, keys: Any, clock: VirtualClock) -> Iterator[tuple[FcmServer, ApnsServer]]:
    now = lambda: clock.now().timestamp()  # noqa: E731
    fcm = FcmServer(PROJECT, EMAIL, SA_KEY_ID, keys[0].public_key(), now=now)
    apns = ApnsServer(TEAM, KEY_ID, keys[1].public_key(), now=now, topics={TOPIC})
    running = [Hypercorn(fcm, ca).start(), Hypercorn(apns, ca).start()]
    fcm.url = running[0].url
    apns.url = running[1].url  # type: ignore[attr-defined]
    yield fcm, apns
    for server in running:
        server.stop()


@pytest.fixture
def push_settings(servers: tuple[FcmServer, ApnsServer], keys: Any, tmp_path: Path) -> Settings:
    fcm, apns = servers
    sa = tmp_path / "sa.json"
    sa.write_text(json.dumps(service_account_json(keys[0], fcm.url + "/token", PROJECT, EMAIL, SA_KEY_ID)))
    p8 = tmp_path / "key.p8"
    p8.write_text(p8_pem(keys[1]))
    return Settings(
        database_url="sqlite://",
        fcm_service_account_file=str(sa),
        fcm_api_base=fcm.url,
        apns_key_file=str(p8),
        apns_key_id=KEY_ID,
        apns_team_id=TEAM,
        apns_topic=TOPIC,
        apns_base_url=apns.url,
    )  # type: ignore[attr-defined]


def ingest(engine: Any, ws: str, clock: VirtualClock, *messages: dict[str, Any]) -> None:
    records = [
        normalize(parse_message({"messageId": f"mp-{next(_ids)}", **m}), clock.now(), max_event_bytes=32 * 1024)
        for m in messages
    ]
    with engine.begin() as conn:
        write_events(conn, ws, records, to_ms(clock.now()))


@pytest.fixture
def person(engine: Any, clock: VirtualClock) -> tuple[str, str]:
    """Ada, with an iPhone, an old iPad and an Android phone, as her apps reported them."""
    ws = make_workspace(engine, "mobile-push", clock).workspace_id
    with engine.begin() as conn:
        save_template(
            conn,
            ws,
            "streak",
            {
                "channel": "push",
                "title": "Day {{ event.properties.day }}, {{ profile.first_name }}!",
                "body": "Keep your streak going",
                "url": "https://app.example.com/streak",
                "collapse_key": "streak",
                "ttl": 7200,
            },
            to_ms(clock.now()),
        )
    app = {"name": "Shop", "namespace": TOPIC}
    ingest(
        engine,
        ws,
        clock,
        {
            "type": "identify",
            "userId": "ada",
            "traits": {"first_name": "Ada"},
            "context": {"device": {"type": "ios", "token": OLD_IPAD}, "app": app},
        },
        {
            "type": "track",
            "userId": "ada",
            "event": "App Opened",
            "context": {"device": {"type": "ios", "token": IPHONE}, "app": app},
        },
        {
            "type": "track",
            "userId": "ada",
            "event": "App Opened",
            "context": {
                "device": {"type": "android", "token": PIXEL},
                "app": {"namespace": "com.example.shop.android"},
            },
        },
    )
    with engine.connect() as conn:
        pid = resolve_profile_id(conn, ws, "ada")
    assert pid is not None
    return ws, pid


def message(
    ws: str,
    pid: str,
    clock: VirtualClock,
    key: str = "run1:streak:1",
    attempt: int = 1,
    last_attempt: bool = False,
    created_at_ms: int | None = None,
) -> OutboundMessage:
    return OutboundMessage(
        key=key,
        workspace_id=ws,
        profile_id=pid,
        run_id="run1",
        journey_id="streaks",
        step="streak",
        channel="push",
        template="streak",
        variant=None,
        marketing=True,
        context={"trigger": {"event": "Streak Extended", "properties": {"day": 7}, "timestamp_ms": to_ms(clock.now())}},
        created_at_ms=to_ms(clock.now()) if created_at_ms is None else created_at_ms,
        attempt=attempt,
        last_attempt=last_attempt,
    )


def deliveries(engine: Any, ws: str) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(push_deliveries.c.target_key).where(push_deliveries.c.workspace_id == ws)).all())


def tokens(engine: Any, ws: str) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(device_tokens.c.token).where(device_tokens.c.workspace_id == ws)).scalars())


def send(engine: Any, settings: Settings, ca: trustme.CA, clock: VirtualClock, msg: OutboundMessage) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(http2=True, verify=client_ssl_context(ca), timeout=10) as client:
            db = DatabasePush(engine, clock)
            channel = PushChannel(
                {
                    "fcm": FcmSender(engine, clock, default=lambda: fcm_default(settings), client=client),
                    "apns": ApnsSender(engine, clock, default=lambda: apns_default(settings), client=client),
                },
                db,
                db,
                clock,
            )
            try:
                await channel.send(msg)
            finally:
                await channel.aclose()

    asyncio.run(main())


def test_dead_tokens_are_deleted_and_the_live_one_gets_the_message(
    engine: Any,
    person: tuple[str, str],
    servers: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person
    fcm, apns = servers
    fcm.gone.add(PIXEL)  # the app was uninstalled
    apns.script(OLD_IPAD, (400, "BadDeviceToken"))  # a development build's token sent to production
    send(engine, push_settings, ca, clock, message(ws, pid, clock))

    assert tokens(engine, ws) == {IPHONE}
    [delivered] = apns.sent()
    assert delivered.device == IPHONE and delivered.headers["apns-topic"] == TOPIC
    assert delivered.payload["aps"]["alert"] == {"title": "Day 7, Ada!", "body": "Keep your streak going"}
    assert delivered.payload["key"] == "run1:streak:1" and delivered.payload["url"] == "https://app.example.com/streak"
    assert delivered.payload["report_url"].startswith("http")
    assert int(delivered.headers["apns-expiration"]) == int(clock.now().timestamp()) + 2 * 3600
    assert [r.error_code for r in fcm.requests] == ["UNREGISTERED"]
    assert fcm.requests[0].body["message"]["android"]["ttl"] == "7200s"


def test_when_every_token_is_dead_the_message_fails_and_they_are_gone(
    engine: Any,
    person: tuple[str, str],
    servers: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person
    fcm, apns = servers
    fcm.script(PIXEL, "INVALID_TOKEN")
    apns.gone.update({IPHONE, OLD_IPAD})
    with pytest.raises(PermanentError, match="410 Unregistered") as info:
        send(engine, push_settings, ca, clock, message(ws, pid, clock))
    assert "not a valid FCM registration token" in info.value.reason
    assert tokens(engine, ws) == set()
    with pytest.raises(PermanentError, match="no push target"):
        send(engine, push_settings, ca, clock, message(ws, pid, clock, key="run1:streak:2"))


def test_busy_services_retry_later_and_keep_the_tokens(
    engine: Any,
    person: tuple[str, str],
    servers: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person
    fcm, apns = servers
    fcm.script(PIXEL, ("QUOTA_EXCEEDED", {"Retry-After": "120"}))
    apns.script(IPHONE, (429, "TooManyRequests", {"Retry-After": "30"}))
    apns.script(OLD_IPAD, (503, "ServiceUnavailable"))
    with pytest.raises(TransientError) as info:
        send(engine, push_settings, ca, clock, message(ws, pid, clock))
    assert info.value.retry_after_s == 120.0  # the longest wait asked for
    assert tokens(engine, ws) == {IPHONE, OLD_IPAD, PIXEL}
    # The retry, later, reaches all three; APNs sees the same apns-id as the first time.
    clock.advance(120)
    send(engine, push_settings, ca, clock, message(ws, pid, clock))
    assert len(fcm.sent()) == 1 and len(apns.sent()) == 2
    first = {r.device: r.headers["apns-id"] for r in apns.requests if r.status != 200}
    assert all(first[r.device] == r.headers["apns-id"] for r in apns.sent())


def test_an_expired_message_is_not_sent(
    engine: Any,
    person: tuple[str, str],
    servers: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person
    queued = message(ws, pid, clock)
    clock.set(from_ms(queued.created_at_ms + 2 * 3600_000))
    with pytest.raises(PermanentError, match="expired"):
        send(engine, push_settings, ca, clock, queued)
    assert servers[0].requests == [] and servers[1].requests == []


def test_a_retry_goes_only_to_the_targets_that_missed_the_message(
    engine: Any,
    person: tuple[str, str],
    servers: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person
    fcm, apns = servers
    apns.script(IPHONE, (503, "ServiceUnavailable", {"Retry-After": "60"}))
    with pytest.raises(TransientError, match="reached 2 of 3 targets, retrying the rest") as info:
        send(engine, push_settings, ca, clock, message(ws, pid, clock))
    assert info.value.retry_after_s == 60.0
    assert {r.device for r in apns.sent()} == {OLD_IPAD} and len(fcm.sent()) == 1
    assert deliveries(engine, ws) == 2  # the two that took it, remembered for the retry

    clock.advance(60)
    send(engine, push_settings, ca, clock, message(ws, pid, clock, attempt=2))
    # The retry reached the iPhone alone: no device shows the notification twice.
    assert sorted(r.device for r in apns.sent()) == sorted([OLD_IPAD, IPHONE]) and len(fcm.sent()) == 1
    assert deliveries(engine, ws) == 0  # done: the record is dropped


def test_a_last_try_that_reaches_no_one_new_still_counts_earlier_deliveries_as_sent(
    engine: Any,
    person: tuple[str, str],
    servers: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person
    fcm, apns = servers
    apns.script(IPHONE, (503, "ServiceUnavailable"), (503, "ServiceUnavailable"), (503, "ServiceUnavailable"))
    with pytest.raises(TransientError, match="reached 2 of 3"):
        send(engine, push_settings, ca, clock, message(ws, pid, clock))
    clock.advance(60)
    with pytest.raises(TransientError, match="reached 2 of 3"):  # not the last try: retried again
        send(engine, push_settings, ca, clock, message(ws, pid, clock, attempt=2))
    clock.advance(120)
    send(engine, push_settings, ca, clock, message(ws, pid, clock, attempt=3, last_attempt=True))  # sent, not failed
    assert [r.device for r in apns.requests].count(OLD_IPAD) == 1 and len(fcm.requests) == 1
    assert [r.device for r in apns.requests].count(IPHONE) == 3
    assert deliveries(engine, ws) == 0


def test_a_partial_message_that_expires_is_sent_to_those_it_reached_and_no_more(
    engine: Any,
    person: tuple[str, str],
    servers: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person
    _fcm, apns = servers
    queued_at = to_ms(clock.now())
    apns.script(IPHONE, (503, "ServiceUnavailable"))
    with pytest.raises(TransientError):
        send(engine, push_settings, ca, clock, message(ws, pid, clock))
    clock.advance(3 * 3600)  # past the template's 2 h ttl
    send(engine, push_settings, ca, clock, message(ws, pid, clock, attempt=2, created_at_ms=queued_at))
    assert [r.device for r in apns.requests].count(IPHONE) == 1  # never sent late
    assert deliveries(engine, ws) == 0


def test_erasing_the_person_erases_their_partial_deliveries(
    engine: Any,
    person: tuple[str, str],
    servers: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person
    servers[1].script(IPHONE, (503, "ServiceUnavailable"))
    with pytest.raises(TransientError):
        send(engine, push_settings, ca, clock, message(ws, pid, clock))
    assert deliveries(engine, ws) == 2
    with engine.begin() as conn:
        assert erase_profile(conn, ws, pid)["push_deliveries"] == 2
    assert deliveries(engine, ws) == 0
