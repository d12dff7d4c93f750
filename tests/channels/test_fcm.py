"""FCM HTTP v1 against a local FCM endpoint and OAuth2 token endpoint (tests/channels/push_servers.py).

The service account key is made here; the token endpoint verifies the JWT-bearer grant
signed with it, and FCM accepts only the access tokens it issued, until they expire on the
test's virtual clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa

from nudgeflow.channels.base import PermanentError, TransientError
from nudgeflow.channels.common import TargetGone
from nudgeflow.channels.fcm import FcmSender, fcm_message
from nudgeflow.channels.push_config import FcmConfig, PushConfigError, set_fcm
from nudgeflow.channels.push_limits import PayloadTooLarge
from nudgeflow.channels.wiring import fcm_default
from nudgeflow.content.push_render import PushContent
from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.settings import Settings
from nudgeflow.store.push_targets import PushTarget
from tests.channels.push_accounts import EMAIL, PROJECT, service_account
from tests.channels.push_servers import FcmServer, client_ssl_context
from tests.support import make_workspace

DEVICE = "dGVzdC1pbnN0YW5jZQ:APA91bH-" + "k" * 100


def content(clock: VirtualClock, **kw: Any) -> PushContent:
    now = to_ms(clock.now())
    values: dict[str, Any] = dict(
        message_key="run1:send_push:1",
        title="Still thinking, Ada?",
        body="Your red shoes are waiting",
        image="https://cdn.example.com/shoes.jpg",
        url="https://shop.example.com/cart",
        data={"sku": "A1", "qty": "2"},
        ttl_s=3600,
        collapse_key="cart",
        expires_at_ms=now + 3600_000,
        report_url="https://t.example.com/p/abc",
    )
    values.update(kw)
    return PushContent(**values)


def target(token: str = DEVICE, platform: str | None = "android") -> PushTarget:
    return PushTarget("fcm", token, platform=platform)


def run(
    ca: trustme.CA,
    settings: Settings,
    clock: VirtualClock,
    fn: Callable[[FcmSender], Awaitable[Any]],
    engine: Any = None,
) -> Any:
    async def main() -> Any:
        async with httpx.AsyncClient(http2=True, verify=client_ssl_context(ca), timeout=10) as client:
            sender = FcmSender(engine, clock, default=lambda: fcm_default(settings), client=client)
            try:
                return await fn(sender)
            finally:
                await sender.aclose()

    return asyncio.run(main())


# -- the message and the OAuth flow --------------------------------------------------------------


def test_message_shape_and_the_oauth_grant(
    ca: trustme.CA, fcm: FcmServer, fcm_defaults: Settings, clock: VirtualClock
) -> None:
    sent = content(clock)
    clock.advance(600)  # ten minutes after it was queued: fifty left to live
    run(ca, fcm_defaults, clock, lambda s: s.send("ws_1", target(), sent))

    [grant] = fcm.assertions
    iat = int(clock.now().timestamp())
    assert grant == {
        "iss": EMAIL,
        "aud": fcm.url + "/token",
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
        "iat": iat,
        "exp": iat + 3600,
    }
    [req] = fcm.sent()
    assert req.project == PROJECT and req.access_token in fcm.issued and req.http_version == "2"
    assert req.body == {
        "message": {
            "token": DEVICE,
            "notification": {
                "title": "Still thinking, Ada?",
                "body": "Your red shoes are waiting",
                "image": "https://cdn.example.com/shoes.jpg",
            },
            "data": {
                "sku": "A1",
                "qty": "2",
                "key": "run1:send_push:1",
                "url": "https://shop.example.com/cart",
                "report_url": "https://t.example.com/p/abc",
                "image": "https://cdn.example.com/shoes.jpg",
            },
            "android": {
                "ttl": "3000s",
                "priority": "high",
                "collapse_key": "cart",
                "notification": {"tag": "cart"},  # a second copy replaces the first on the device
            },
        }
    }


def test_urgency_and_an_ios_device_registered_with_fcm(clock: VirtualClock) -> None:
    sent = content(
        clock, urgency="very-low", collapse_key=None, image=None, actions=({"action": "open", "title": "Open"},)
    )
    message = fcm_message(target(platform="ios"), sent, to_ms(clock.now()))["message"]
    # No collapse_key: the message key tags and collapses it (no Android collapse_key: FCM
    # keeps at most 4 per device), so that a retried copy replaces the first.
    assert message["android"] == {"ttl": "3600s", "priority": "normal", "notification": {"tag": "run1:send_push:1"}}
    assert message["apns"] == {
        "headers": {
            "apns-expiration": str(sent.expires_at_ms // 1000),
            "apns-priority": "5",
            "apns-collapse-id": "run1:send_push:1",
        }
    }
    assert json.loads(message["data"]["actions"]) == [{"action": "open", "title": "Open"}]
    assert (
        fcm_message(target(), content(clock, urgency="normal"), to_ms(clock.now()))["message"]["android"]["priority"]
        == "high"
    )


def test_the_access_token_is_reused_then_refreshed_before_it_expires(
    ca: trustme.CA, fcm: FcmServer, fcm_defaults: Settings, clock: VirtualClock
) -> None:
    async def scenario(sender: FcmSender) -> None:
        for _ in range(3):
            await sender.send("ws_1", target(), content(clock))
        assert len(fcm.assertions) == 1
        clock.advance(timedelta(minutes=54))  # the token (3599 s) has six minutes left: still used
        await sender.send("ws_1", target(), content(clock))
        assert len(fcm.assertions) == 1
        clock.advance(timedelta(minutes=1, seconds=30))  # within five minutes of its expiry: replaced
        await sender.send("ws_1", target(), content(clock))
        assert len(fcm.assertions) == 2
        assert fcm.assertions[1]["iat"] == int(clock.now().timestamp())
        # Many sends waiting for a token share one refresh.
        clock.advance(timedelta(hours=2))
        await asyncio.gather(*(sender.send("ws_1", target(), content(clock)) for _ in range(8)))
        assert len(fcm.assertions) == 3

    run(ca, fcm_defaults, clock, scenario)
    assert len(fcm.sent()) == 13
    assert all(r.status == 200 for r in fcm.requests)  # never an expired token sent


def test_a_revoked_access_token_is_replaced_once(
    ca: trustme.CA, fcm: FcmServer, fcm_defaults: Settings, clock: VirtualClock
) -> None:
    async def scenario(sender: FcmSender) -> None:
        await sender.send("ws_1", target(), content(clock))
        fcm.revoke_tokens()
        await sender.send("ws_1", target(), content(clock))

    run(ca, fcm_defaults, clock, scenario)
    assert [r.status for r in fcm.requests] == [200, 401, 200]
    assert len(fcm.assertions) == 2


def test_a_token_endpoint_that_keeps_refusing_is_permanent(
    ca: trustme.CA, fcm: FcmServer, fcm_defaults: Settings, clock: VirtualClock
) -> None:
    fcm.token_endpoint_answers.append((400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}))
    with pytest.raises(PermanentError, match="invalid_grant: Invalid JWT Signature") as info:
        run(ca, fcm_defaults, clock, lambda s: s.send("ws_1", target(), content(clock)))
    assert not isinstance(info.value, TargetGone)
    fcm.token_endpoint_answers.append((503, {"error": "backend_error"}))
    with pytest.raises(TransientError):
        run(ca, fcm_defaults, clock, lambda s: s.send("ws_1", target(), content(clock)))
    assert fcm.requests == []


def test_the_grant_is_verified_by_the_token_endpoint(
    ca: trustme.CA, fcm: FcmServer, fcm_defaults: Settings, clock: VirtualClock
) -> None:
    # A key the endpoint does not know: its signature fails, and FCM is never called.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    config = FcmConfig(PROJECT, service_account(other, fcm.url + "/token"), api_base=fcm.url)

    async def scenario(sender: FcmSender) -> None:
        sender.credentials.default = lambda: config  # type: ignore[method-assign]
        await sender.send("ws_1", target(), content(clock))

    with pytest.raises(PermanentError, match="invalid_grant"):
        run(ca, fcm_defaults, clock, scenario)
    assert fcm.assertions == [] and fcm.requests == []


# -- outcomes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, error, fragment",
    [
        ("UNREGISTERED", TargetGone, "404 UNREGISTERED"),
        ("INVALID_TOKEN", TargetGone, "not a valid FCM registration token"),
        ("SENDER_ID_MISMATCH", PermanentError, "403 SENDER_ID_MISMATCH"),
        ("THIRD_PARTY_AUTH_ERROR", PermanentError, "401 THIRD_PARTY_AUTH_ERROR"),
        ("INVALID_MESSAGE", PermanentError, "message.android.ttl"),
        ("UNAVAILABLE", TransientError, "503 UNAVAILABLE"),
        ("INTERNAL", TransientError, "500 INTERNAL"),
    ],
)
def test_errors(
    ca: trustme.CA,
    fcm: FcmServer,
    fcm_defaults: Settings,
    clock: VirtualClock,
    answer: str,
    error: type,
    fragment: str,
) -> None:
    fcm.script(DEVICE, answer)
    with pytest.raises(error, match=fragment) as info:
        run(ca, fcm_defaults, clock, lambda s: s.send("ws_1", target(), content(clock)))
    if error is PermanentError:  # an error about the message or the sender is not the token's fault
        assert not isinstance(info.value, TargetGone)
    assert len(fcm.requests) == 1  # none of these is retried by the sender itself


def test_quota_exceeded_honours_retry_after(
    ca: trustme.CA, fcm: FcmServer, fcm_defaults: Settings, clock: VirtualClock
) -> None:
    fcm.script(
        DEVICE,
        ("QUOTA_EXCEEDED", {"Retry-After": "17"}),
        ("QUOTA_EXCEEDED", {"Retry-After": format_datetime(clock.now() + timedelta(seconds=90), usegmt=True)}),
        "QUOTA_EXCEEDED",
    )
    waits = []
    for _ in range(3):
        with pytest.raises(TransientError, match="429 QUOTA_EXCEEDED") as info:
            run(ca, fcm_defaults, clock, lambda s: s.send("ws_1", target(), content(clock)))
        waits.append(info.value.retry_after_s)
    assert waits == [17.0, 90.0, None]


def test_nothing_is_sent_that_fcm_would_refuse(
    ca: trustme.CA, fcm: FcmServer, fcm_defaults: Settings, clock: VirtualClock
) -> None:
    with pytest.raises(
        PayloadTooLarge, match=r"the FCM payload is 4,[0-9]{3} bytes, over the service's limit of 4,096"
    ):
        run(ca, fcm_defaults, clock, lambda s: s.send("ws_1", target(), content(clock, body="x" * 3900)))
    with pytest.raises(PermanentError, match=r"the data key 'google.sent_time' is reserved"):
        run(ca, fcm_defaults, clock, lambda s: s.send("ws_1", target(), content(clock, data={"google.sent_time": "1"})))
    assert fcm.requests == [] and fcm.assertions == []
    # Just under the limit goes through, and FCM's own check agrees.
    size = len(json.dumps({"notification": {"title": "t", "body": ""}, "data": {"key": "k"}}, separators=(",", ":")))
    run(
        ca,
        fcm_defaults,
        clock,
        lambda s: s.send(
            "ws_1",
            target(),
            PushContent(
                message_key="k", title="t", body="b" * (4096 - size), expires_at_ms=to_ms(clock.now()) + 60_000
            ),
        ),
    )
    assert len(fcm.sent()) == 1


def test_an_unreachable_service_is_transient(ca: trustme.CA, fcm_defaults: Settings, clock: VirtualClock) -> None:
    down = Settings(
        database_url="sqlite://",
        fcm_service_account_file=fcm_defaults.fcm_service_account_file,
        fcm_api_base="https://127.0.0.1:9",
    )
    # The token endpoint is up (the service account's token_uri); FCM itself refuses connections.
    with pytest.raises(TransientError, match="FCM: ConnectError"):
        run(ca, down, clock, lambda s: s.send("ws_1", target(), content(clock)))


# -- credentials ------------------------------------------------------------------------------


def test_no_credentials(ca: trustme.CA, clock: VirtualClock) -> None:
    with pytest.raises(PermanentError, match="no FCM credentials configured for this workspace"):
        run(ca, Settings(database_url="sqlite://"), clock, lambda s: s.send("ws_1", target(), content(clock)))


def test_an_unreadable_default_file(ca: trustme.CA, clock: VirtualClock, tmp_path: Path) -> None:
    settings = Settings(database_url="sqlite://", fcm_service_account_file=str(tmp_path / "missing.json"))
    with pytest.raises(PermanentError, match="NUDGEFLOW_FCM_SERVICE_ACCOUNT_FILE: No such file"):
        run(ca, settings, clock, lambda s: s.send("ws_1", target(), content(clock)))


def test_a_workspace_uses_its_own_credentials(
    engine: Any, ca: trustme.CA, fcm: FcmServer, sa_key: rsa.RSAPrivateKey, clock: VirtualClock
) -> None:
    own = make_workspace(engine, "fcm-own", clock).workspace_id
    other = make_workspace(engine, "fcm-none", clock).workspace_id
    with engine.begin() as conn:
        set_fcm(
            conn,
            own,
            FcmConfig.from_dict(
                {"service_account": json.dumps(service_account(sa_key, fcm.url + "/token")), "api_base": fcm.url}
            ),
            to_ms(clock.now()),
        )
    run(ca, Settings(database_url="sqlite://"), clock, lambda s: s.send(own, target(), content(clock)), engine=engine)
    assert fcm.sent()[0].project == PROJECT
    with pytest.raises(PermanentError, match="no FCM credentials configured"):
        run(
            ca,
            Settings(database_url="sqlite://"),
            clock,
            lambda s: s.send(other, target(), content(clock)),
            engine=engine,
        )


def test_config_validation_names_the_field_never_the_key(sa_key: rsa.RSAPrivateKey) -> None:
    sa = service_account(sa_key, "https://oauth2.googleapis.com/token")
    config = FcmConfig.from_dict({"service_account": sa})
    assert (
        config.project_id == PROJECT
        and config.send_url == f"https://fcm.googleapis.com/v1/projects/{PROJECT}/messages:send"
    )
    shown = config.masked()
    assert shown["service_account"] == "********" and shown["client_email"] == EMAIL
    assert sa["private_key"] not in repr(config) and sa["private_key"] not in json.dumps(shown)
    bad_key = {**sa, "private_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"}
    for data, fragment in [
        ({"service_account": bad_key}, "private key does not load"),
        ({"service_account": {**sa, "client_email": ""}}, "client_email: required"),
        ({"service_account": {**sa, "type": "authorized_user"}}, "not a service account"),
        ({"service_account": "{nope"}, "not JSON"),
        ({"service_account": sa, "project_id": "Bad Project"}, "project_id"),
        ({"service_account": sa, "api_base": "ftp://x"}, "api_base"),
        ({"service_account": sa, "extra": 1}, "unknown settings: extra"),
    ]:
        with pytest.raises(PushConfigError, match=fragment) as info:
            FcmConfig.from_dict(data)
        assert "not a key" not in str(info.value)


def test_tokens_and_keys_stay_out_of_the_logs(
    ca: trustme.CA, fcm: FcmServer, fcm_defaults: Settings, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    fcm.gone.add(DEVICE)
    with caplog.at_level(logging.DEBUG), pytest.raises(TargetGone):
        run(ca, fcm_defaults, clock, lambda s: s.send("ws_1", target(), content(clock)))
    assert any(r.name == "httpx" for r in caplog.records)
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert fcm.issued and not any(token in logged for token in fcm.issued)  # the OAuth access token
    assert DEVICE not in logged and "PRIVATE KEY" not in logged and "assertion" not in logged


def test_a_send_cancelled_by_its_timeout_and_sent_again_shows_once(
    ca: trustme.CA, fcm: FcmServer, fcm_defaults: Settings, clock: VirtualClock
) -> None:
    """FCM took the message but its answer did not come back before the send's timeout, which
    cancels the send (the dispatcher's wait_for does so); the retry sends it again. FCM has no
    idempotency key, so the device gets both; the message key is the Android notification tag,
    so the second replaces the first in the notification drawer."""
    sent = content(clock, collapse_key=None)
    fcm.hold(DEVICE)

    async def scenario(sender: FcmSender) -> None:
        first = asyncio.create_task(sender.send("ws_1", target(), sent))
        assert await asyncio.to_thread(fcm.arrived.wait, 10)
        first.cancel()  # the send timeout: the send is cancelled, its answer never read
        with pytest.raises(asyncio.CancelledError):
            await first
        await sender.send("ws_1", target(), sent)  # the retry

    run(ca, fcm_defaults, clock, scenario)
    assert len(fcm.sent()) == 2  # FCM took it twice
    assert len(fcm.shown(DEVICE)) == 1
    run(
        ca,
        fcm_defaults,
        clock,
        lambda s: s.send("ws_1", target(), content(clock, message_key="run2:x:1", collapse_key=None)),
    )
    assert len(fcm.shown(DEVICE)) == 2  # another message is not collapsed with it
