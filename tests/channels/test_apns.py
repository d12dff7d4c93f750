"""APNs over HTTP/2 against a local TLS server that checks the headers and verifies the ES256
provider token with the team's public key (tests/channels/push_servers.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec

from nudgeflow.channels.apns import ApnsSender, apns_id
from nudgeflow.channels.base import ChannelProblem, PermanentError, TransientError
from nudgeflow.channels.common import TargetGone
from nudgeflow.channels.push_config import APNS_PRODUCTION, APNS_SANDBOX, ApnsConfig, PushConfigError, set_apns
from nudgeflow.channels.push_limits import PayloadTooLarge
from nudgeflow.channels.wiring import apns_default
from nudgeflow.content.push_render import PushContent
from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.settings import Settings
from nudgeflow.store.push_targets import PushTarget
from tests.channels.push_accounts import APNS_KEY_ID, TEAM, TOPIC
from tests.channels.push_servers import ApnsServer, client_ssl_context, p8_pem
from tests.support import make_workspace

DEVICE = "a0b1c2d3e4f5a6b7" * 4


pem = p8_pem


def content(clock: VirtualClock, **kw: Any) -> PushContent:
    values: dict[str, Any] = dict(
        message_key="run7:send_push:1",
        title="Your streak",
        body="Day 7: keep it going",
        url="https://app.example.com/streak",
        data={"streak": "7"},
        ttl_s=3600,
        collapse_key="streak",
        expires_at_ms=to_ms(clock.now()) + 3600_000,
        report_url="https://t.example.com/p/xyz",
    )
    values.update(kw)
    return PushContent(**values)


def target(token: str = DEVICE, app_id: str | None = None) -> PushTarget:
    return PushTarget("apns", token, platform="ios", app_id=app_id)


def run(
    ca: trustme.CA,
    settings: Settings,
    clock: VirtualClock,
    fn: Callable[[ApnsSender], Awaitable[Any]],
    engine: Any = None,
) -> Any:
    async def main() -> Any:
        async with httpx.AsyncClient(http2=True, verify=client_ssl_context(ca), timeout=10) as client:
            sender = ApnsSender(engine, clock, default=lambda: apns_default(settings), client=client)
            try:
                return await fn(sender)
            finally:
                await sender.aclose()

    return asyncio.run(main())


def test_headers_payload_and_provider_token(
    ca: trustme.CA, apns_server: ApnsServer, apns_defaults: Settings, clock: VirtualClock
) -> None:
    sent = content(clock, image="https://cdn.example.com/flame.png")
    run(ca, apns_defaults, clock, lambda s: s.send("ws_1", target(), sent))
    [req] = apns_server.requests
    assert req.status == 200 and req.http_version == "2"
    assert req.claims == {"iss": TEAM, "iat": int(clock.now().timestamp())}  # verified ES256 by the server
    headers = {k: v for k, v in req.headers.items() if k.startswith("apns-")}
    assert headers == {
        "apns-topic": TOPIC,  # the workspace's, as the device gave no app id
        "apns-push-type": "alert",
        "apns-priority": "10",
        "apns-expiration": str(sent.expires_at_ms // 1000),
        "apns-collapse-id": "streak",
        "apns-id": apns_id("run7:send_push:1", DEVICE),
    }
    assert req.payload == {
        "aps": {
            "alert": {"title": "Your streak", "body": "Day 7: keep it going"},
            "sound": "default",
            "mutable-content": 1,
        },
        "key": "run7:send_push:1",
        "image": "https://cdn.example.com/flame.png",
        "url": "https://app.example.com/streak",
        "report_url": "https://t.example.com/p/xyz",
        "data": {"streak": "7"},
    }


def test_the_devices_app_is_the_topic_and_low_urgency_is_priority_5(
    ca: trustme.CA, apns_server: ApnsServer, apns_defaults: Settings, clock: VirtualClock
) -> None:
    run(
        ca,
        apns_defaults,
        clock,
        lambda s: s.send(
            "ws_1", target(app_id="com.example.shop.beta"), content(clock, urgency="low", collapse_key=None)
        ),
    )
    [req] = apns_server.requests
    assert req.headers["apns-topic"] == "com.example.shop.beta"
    assert req.headers["apns-priority"] == "5"
    assert req.headers["apns-collapse-id"] == "run7:send_push:1"  # no collapse_key: the message key
    assert req.payload["aps"] == {"alert": {"title": "Your streak", "body": "Day 7: keep it going"}}


def test_a_retry_reuses_the_apns_id(
    ca: trustme.CA, apns_server: ApnsServer, apns_defaults: Settings, clock: VirtualClock
) -> None:
    apns_server.script(DEVICE, (503, "ServiceUnavailable"))
    with pytest.raises(TransientError):
        run(ca, apns_defaults, clock, lambda s: s.send("ws_1", target(), content(clock)))
    run(ca, apns_defaults, clock, lambda s: s.send("ws_1", target(), content(clock)))
    first, second = apns_server.requests
    assert first.headers["apns-id"] == second.headers["apns-id"] == apns_id("run7:send_push:1", DEVICE)
    other = "ffee" * 16
    assert apns_id("run7:send_push:1", other) != first.headers["apns-id"]  # one notification per device


def test_the_provider_token_is_reused_and_refreshed_before_an_hour(
    ca: trustme.CA, apns_server: ApnsServer, apns_defaults: Settings, clock: VirtualClock
) -> None:
    async def scenario(sender: ApnsSender) -> None:
        await asyncio.gather(*(sender.send("ws_1", target(), content(clock)) for _ in range(5)))
        assert len(apns_server.provider_tokens) == 1
        clock.advance(timedelta(minutes=49, seconds=59))
        await sender.send("ws_1", target(), content(clock))
        assert len(apns_server.provider_tokens) == 1
        clock.advance(timedelta(seconds=1))  # 50 minutes old: replaced, well before Apple's hour
        await sender.send("ws_1", target(), content(clock))
        assert len(apns_server.provider_tokens) == 2
        clock.advance(timedelta(minutes=30))
        await sender.send("ws_1", target(), content(clock))

    run(ca, apns_defaults, clock, scenario)
    assert len(apns_server.provider_tokens) == 2
    assert [r.status for r in apns_server.requests] == [200] * 8  # never expired, never TooManyProviderTokenUpdates


def test_expired_provider_token_is_replaced_once_for_all_sends(
    ca: trustme.CA, apns_server: ApnsServer, apns_defaults: Settings, clock: VirtualClock
) -> None:
    async def scenario(sender: ApnsSender) -> None:
        await sender.send("ws_1", target(), content(clock))
        clock.advance(timedelta(minutes=25))
        apns_server.expire_current_tokens()  # as if Apple's clock were ahead of ours
        await asyncio.gather(*(sender.send("ws_1", target(), content(clock)) for _ in range(6)))

    run(ca, apns_defaults, clock, scenario)
    assert len(apns_server.provider_tokens) == 2  # one new token, not six: Apple limits how often
    statuses = [(r.status, r.reason) for r in apns_server.requests]
    assert statuses.count((403, "ExpiredProviderToken")) == 6 and statuses.count((200, None)) == 7
    assert (429, "TooManyProviderTokenUpdates") not in statuses


def test_expired_twice_in_a_row_is_permanent(
    ca: trustme.CA, apns_server: ApnsServer, apns_defaults: Settings, clock: VirtualClock
) -> None:
    async def scenario(sender: ApnsSender) -> None:
        await sender.send("ws_1", target(), content(clock))
        clock.advance(timedelta(minutes=30))
        apns_server.script(DEVICE, (403, "ExpiredProviderToken"), (403, "ExpiredProviderToken"))
        await sender.send("ws_1", target(), content(clock))

    with pytest.raises(PermanentError, match="check this machine's clock"):
        run(ca, apns_defaults, clock, scenario)
    assert len(apns_server.requests) == 3 and len(apns_server.provider_tokens) == 2  # renewed once, not again


@pytest.mark.parametrize(
    "answer, error, fragment",
    [
        ((410, "Unregistered"), TargetGone, "APNs 410 Unregistered"),
        ((410, "ExpiredToken"), TargetGone, "APNs 410 ExpiredToken"),
        ((400, "BadDeviceToken"), ChannelProblem, "APNs 400 BadDeviceToken: .* the token is kept"),
        ((400, "DeviceTokenNotForTopic"), ChannelProblem, "DeviceTokenNotForTopic: .* the token is kept"),
        ((429, "TooManyRequests", {"Retry-After": "30"}), TransientError, "APNs 429 TooManyRequests"),
        ((500, "InternalServerError"), TransientError, "APNs 500 InternalServerError"),
        ((503, "ServiceUnavailable"), TransientError, "APNs 503 ServiceUnavailable"),
        ((403, "InvalidProviderToken"), PermanentError, "APNs 403 InvalidProviderToken"),
        ((400, "BadTopic"), PermanentError, "APNs 400 BadTopic"),
    ],
)
def test_outcomes(
    ca: trustme.CA,
    apns_server: ApnsServer,
    apns_defaults: Settings,
    clock: VirtualClock,
    answer: tuple[Any, ...],
    error: type,
    fragment: str,
) -> None:
    apns_server.script(DEVICE, answer)  # type: ignore[arg-type]
    with pytest.raises(error, match=fragment) as info:
        run(ca, apns_defaults, clock, lambda s: s.send("ws_1", target(), content(clock)))
    if error in (PermanentError, ChannelProblem):
        assert not isinstance(info.value, TargetGone)
    if answer[0] == 429:
        assert info.value.retry_after_s == 30.0  # type: ignore[attr-defined]
    assert len(apns_server.requests) == 1


def test_many_tokens_refused_by_one_environment_say_the_sandbox_setting_is_likely_wrong(
    ca: trustme.CA,
    apns_server: ApnsServer,
    apns_defaults: Settings,
    clock: VirtualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    devices = [f"{i:02x}" * 32 for i in range(1, 5)]
    apns_server.other_environment.update(devices)

    async def scenario(sender: ApnsSender) -> list[str]:
        reasons = []
        for device in [*devices, devices[0]]:  # the same token twice counts once
            with pytest.raises(ChannelProblem) as info:
                await sender.send("ws_1", target(device), content(clock))
            reasons.append(info.value.reason)
        with pytest.raises(ChannelProblem) as other:  # another workspace's count is its own
            await sender.send("ws_2", target(devices[0]), content(clock))
        reasons.append(other.value.reason)
        await sender.send("ws_1", target(), content(clock))  # one accepted: the count starts again
        with pytest.raises(ChannelProblem) as after:
            await sender.send("ws_1", target(devices[1]), content(clock))
        reasons.append(after.value.reason)
        return reasons

    with caplog.at_level(logging.WARNING, logger="nudgeflow.push.apns"):
        reasons = run(ca, apns_defaults, clock, scenario)
    assert all("BadDeviceToken" in r and "the token is kept" in r for r in reasons)
    said = ["none was accepted since" in r for r in reasons]
    assert said == [False, False, True, True, True, False, False]
    assert "4 device tokens of this workspace" in reasons[3] and "4 device tokens" in reasons[4]
    assert [r.getMessage() for r in caplog.records if "sandbox" in r.getMessage()] == [
        "APNs: many device tokens of a workspace answered BadDeviceToken; the sandbox setting is most likely wrong"
    ]
    assert all(d not in caplog.text for d in devices)


def test_a_gone_device(ca: trustme.CA, apns_server: ApnsServer, apns_defaults: Settings, clock: VirtualClock) -> None:
    apns_server.gone.add(DEVICE)
    with pytest.raises(TargetGone, match="410 Unregistered"):
        run(ca, apns_defaults, clock, lambda s: s.send("ws_1", target(), content(clock)))
    with pytest.raises(TargetGone, match="hexadecimal"):  # never sent: it cannot be an APNs token
        run(ca, apns_defaults, clock, lambda s: s.send("ws_1", target("not-a-token/../x"), content(clock)))
    assert len(apns_server.requests) == 1


def test_nothing_is_sent_that_apns_would_refuse(
    ca: trustme.CA, apns_server: ApnsServer, apns_defaults: Settings, clock: VirtualClock
) -> None:
    with pytest.raises(
        PayloadTooLarge, match=r"the APNs payload is 4,[0-9]{3} bytes, over the service's limit of 4,096"
    ):
        run(ca, apns_defaults, clock, lambda s: s.send("ws_1", target(), content(clock, body="é" * 2100)))
    with pytest.raises(PermanentError, match="collapse_key is 65 bytes"):
        run(ca, apns_defaults, clock, lambda s: s.send("ws_1", target(), content(clock, collapse_key="c" * 65)))
    no_topic = apns_defaults.with_(apns_topic=None)
    with pytest.raises(PermanentError, match="no topic"):
        run(ca, no_topic, clock, lambda s: s.send("ws_1", target(), content(clock)))
    assert apns_server.requests == []
    run(ca, apns_defaults, clock, lambda s: s.send("ws_1", target(), content(clock, collapse_key="c" * 64)))
    assert len(apns_server.sent()) == 1


def test_an_unreachable_service_is_transient(ca: trustme.CA, apns_defaults: Settings, clock: VirtualClock) -> None:
    with pytest.raises(TransientError, match="APNs: ConnectError"):
        run(
            ca,
            apns_defaults.with_(apns_base_url="https://127.0.0.1:9"),
            clock,
            lambda s: s.send("ws_1", target(), content(clock)),
        )


def test_no_credentials(ca: trustme.CA, clock: VirtualClock) -> None:
    with pytest.raises(PermanentError, match="no APNs credentials configured for this workspace"):
        run(ca, Settings(database_url="sqlite://"), clock, lambda s: s.send("ws_1", target(), content(clock)))


def test_a_workspace_uses_its_own_credentials(
    engine: Any, ca: trustme.CA, apns: tuple[ApnsServer, str], clock: VirtualClock
) -> None:
    apns_server, url = apns
    key = ec.generate_private_key(ec.SECP256R1())  # the workspace's own key: the server knows only the default's
    ws = make_workspace(engine, "apns-own", clock).workspace_id
    with engine.begin() as conn:
        set_apns(
            conn,
            ws,
            ApnsConfig(team_id=TEAM, key_id=APNS_KEY_ID, private_key=pem(key), topic=TOPIC, base_url=url),
            to_ms(clock.now()),
        )
    with pytest.raises(PermanentError, match="403 InvalidProviderToken"):
        run(
            ca, Settings(database_url="sqlite://"), clock, lambda s: s.send(ws, target(), content(clock)), engine=engine
        )
    apns_server.public_key = key.public_key()
    run(ca, Settings(database_url="sqlite://"), clock, lambda s: s.send(ws, target(), content(clock)), engine=engine)
    assert apns_server.requests[-1].status == 200


def test_config(p8: ec.EllipticCurvePrivateKey) -> None:
    config = ApnsConfig.from_dict({"team_id": TEAM, "key_id": APNS_KEY_ID, "private_key": pem(p8), "topic": TOPIC})
    assert config.base == APNS_PRODUCTION
    assert ApnsConfig.from_dict({**config.to_dict(), "sandbox": True}).base == APNS_SANDBOX
    shown = config.masked()
    assert shown["private_key"] == "********" and pem(p8) not in json.dumps(shown) and pem(p8) not in repr(config)
    rsa_pem = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
    p384 = pem(ec.generate_private_key(ec.SECP384R1()))
    for data, fragment in [
        ({"team_id": ""}, "team_id"),
        ({"key_id": "has space"}, "key_id"),
        ({"private_key": rsa_pem}, "does not load"),
        ({"private_key": p384}, "not an EC P-256 key"),
        ({"private_key": ""}, "PEM text is required"),
        ({"base_url": "api.push.apple.com"}, "base_url"),
        ({"sandbox": "yes"}, "sandbox"),
        ({"cert": "x"}, "unknown settings: cert"),
    ]:
        with pytest.raises(PushConfigError, match=fragment):
            ApnsConfig.from_dict({**config.to_dict(), **data})


def test_the_device_token_stays_out_of_the_logs(
    ca: trustme.CA,
    apns_server: ApnsServer,
    apns_defaults: Settings,
    clock: VirtualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    apns_server.gone.add(DEVICE)
    with caplog.at_level(logging.DEBUG), pytest.raises(TargetGone):
        run(ca, apns_defaults, clock, lambda s: s.send("ws_1", target(), content(clock)))
    assert any(r.name == "httpx" for r in caplog.records)  # httpx did log the request…
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert DEVICE not in logged  # …without the token, as did we
    assert "BEGIN PRIVATE KEY" not in logged


def test_configured(engine: Any, p8: ec.EllipticCurvePrivateKey, clock: VirtualClock) -> None:
    from nudgeflow.channels.wiring import push_credentials_configured as configured

    bare = Settings(database_url="sqlite://")
    assert not configured(None, bare, "apns")
    assert configured(None, bare.with_(apns_key_file="/etc/nudgeflow/AuthKey.p8"), "apns")
    ws = make_workspace(engine, "apns-configured", clock).workspace_id
    with engine.begin() as conn:
        set_apns(
            conn, ws, ApnsConfig(team_id=TEAM, key_id=APNS_KEY_ID, private_key=pem(p8), topic=TOPIC), to_ms(clock.now())
        )
    assert configured(engine, bare, "apns")


def test_a_send_cancelled_by_its_timeout_and_sent_again_shows_once(
    ca: trustme.CA, apns_server: ApnsServer, apns_defaults: Settings, clock: VirtualClock
) -> None:
    """APNs took the notification but its answer did not come back before the send's timeout,
    which cancels the send (the dispatcher's wait_for does so), and the retry sends it again.
    Apple keeps no idempotency key: both reach the device. The template sets no collapse_key;
    the message key is the apns-collapse-id, so the second replaces the first on the device."""
    sent = content(clock, collapse_key=None)
    apns_server.hold(DEVICE)

    async def scenario(sender: ApnsSender) -> None:
        first = asyncio.create_task(sender.send("ws_1", target(), sent))
        assert await asyncio.to_thread(apns_server.arrived.wait, 10)
        first.cancel()  # the send timeout: the send is cancelled, its answer never read
        with pytest.raises(asyncio.CancelledError):
            await first
        await sender.send("ws_1", target(), sent)  # the retry

    run(ca, apns_defaults, clock, scenario)
    assert [r.status for r in apns_server.requests] == [200, 200]  # it did reach APNs twice
    assert {r.headers["apns-collapse-id"] for r in apns_server.requests} == {"run7:send_push:1"}
    assert len(apns_server.shown(DEVICE)) == 1
    # Other messages to the device are not collapsed with it.
    run(
        ca,
        apns_defaults,
        clock,
        lambda s: s.send("ws_1", target(), content(clock, message_key="run8:x:1", collapse_key=None)),
    )
    assert len(apns_server.shown(DEVICE)) == 2


def test_a_long_message_key_is_hashed_into_the_collapse_id(
    ca: trustme.CA, apns_server: ApnsServer, apns_defaults: Settings, clock: VirtualClock
) -> None:
    key = "run_" + "x" * 80 + ":send_push:1"
    run(
        ca, apns_defaults, clock, lambda s: s.send("ws_1", target(), content(clock, message_key=key, collapse_key=None))
    )
    [req] = apns_server.sent()
    collapse = req.headers["apns-collapse-id"]
    assert len(collapse.encode()) <= 64 and collapse.startswith("k-")
