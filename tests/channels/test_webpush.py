"""WebPushSender against the local Web Push service (runtime/dev_push.py), no mocks.

The service decrypts every message with the subscription's keys and verifies the VAPID JWT,
so a message it records went out encrypted and signed correctly. Time is a virtual clock
shared by the sender (TTL, JWT exp) and the service (JWT checks).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
import trustme
from sqlalchemy import func, select

from nudgeflow.channels.base import PermanentError, TransientError
from nudgeflow.channels.common import TargetGone
from nudgeflow.channels.push import DatabasePush, PushChannel
from nudgeflow.channels.push_limits import WEBPUSH_MAX_PLAINTEXT, PayloadTooLarge
from nudgeflow.channels.webpush import WebPushSender, topic_for
from nudgeflow.content.compiled_templates import save_template
from nudgeflow.content.push_render import PushContent
from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.runtime.dev_push import (
    BrowserSubscription,
    DevPushService,
    RunningDevPush,
    new_subscription,
    serve_dev_push,
)
from nudgeflow.store import vapid
from nudgeflow.store.push_targets import PushTarget, save_subscription
from nudgeflow.store.schema import push_subscriptions

T = TypeVar("T")


def target(sub: BrowserSubscription) -> PushTarget:
    info = sub.info()
    return PushTarget("webpush", info["endpoint"], info["keys"]["p256dh"], info["keys"]["auth"])


def content(clock: VirtualClock, **kw: Any) -> PushContent:
    now = to_ms(clock.now())
    values: dict[str, Any] = dict(
        message_key="run1:s1:1",
        title="Still thinking about it?",
        body="2 items in your cart",
        url="https://shop.example/cart",
        data={"cart": "c1"},
        ttl_s=3600,
        expires_at_ms=now + 3600_000,
    )
    values.update(kw)
    return PushContent(**values)


def with_sender(engine: Any, clock: VirtualClock, scenario: Callable[[WebPushSender], Awaitable[T]], **kw: Any) -> T:
    async def run() -> T:
        sender = WebPushSender(engine, clock, **kw)
        try:
            return await scenario(sender)
        finally:
            await sender.aclose()

    return asyncio.run(run())


def test_delivers_encrypted_and_signed(engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock) -> None:
    sub = dev_push.service.subscribe()
    message = content(clock, urgency="high", collapse_key="cart-c1")
    clock.advance(600)  # ten minutes after it was queued: 50 minutes left to live

    with_sender(engine, clock, lambda s: s.send(wsid, target(sub), message))
    [got] = dev_push.service.received_for(sub.id)
    assert got.notification == message.notification()
    assert (got.ttl, got.urgency, got.topic) == (3000, "high", "cart-c1")
    with engine.connect() as conn:
        keys = vapid.get_vapid_keys(conn, wsid)
    assert keys is not None and got.vapid_key == keys.public_key and got.subject == keys.subject
    assert got.jwt_exp == int(clock.now().timestamp()) + 12 * 3600


def test_no_urgency_unless_set_and_the_message_key_is_the_topic(
    engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock
) -> None:
    sub = dev_push.service.subscribe()
    with_sender(engine, clock, lambda s: s.send(wsid, target(sub), content(clock)))
    [got] = dev_push.service.received_for(sub.id)
    assert (got.ttl, got.urgency, got.topic) == (3600, None, topic_for("run1:s1:1"))


def test_a_send_cancelled_by_its_timeout_and_sent_again_replaces_the_first_while_undelivered(
    engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock
) -> None:
    """The browser is offline, so the push service keeps what it accepts. It accepted the
    message but its answer did not come back before the send's timeout, which cancels the
    send (the dispatcher's wait_for does so); the retry sends it again. The template sets no
    collapse_key: the message key is the Topic, so the service replaces the copy it keeps
    and the browser, back online, receives one."""
    service = dev_push.service
    sub = service.subscribe()
    service.offline(sub.id)
    service.hold(sub.id)
    sent = content(clock, collapse_key=None)

    async def scenario(sender: WebPushSender) -> None:
        first = asyncio.create_task(sender.send(wsid, target(sub), sent))
        assert await asyncio.to_thread(service.held.wait, 10)
        first.cancel()  # the send timeout: the send is cancelled, its answer never read
        with pytest.raises(asyncio.CancelledError):
            await first
        await sender.send(wsid, target(sub), sent)  # the retry

    try:
        with_sender(engine, clock, scenario)
    finally:
        service.release()
    assert service.accepted == 2  # the service took it twice
    [got] = service.online(sub.id)
    assert got.notification == sent.notification() and got.topic == topic_for("run1:s1:1")
    assert service.received_for(sub.id) == [got]


def test_topic_is_at_most_32_url_safe_characters() -> None:
    assert topic_for("cart-c1") == "cart-c1"
    hashed = topic_for("cart:c1 for jo@example.com, the long version")
    assert len(hashed) == 32 and all(c.isalnum() or c in "-_" for c in hashed)
    assert hashed == topic_for("cart:c1 for jo@example.com, the long version") != topic_for("cart:c2")
    assert len(topic_for("x" * 33)) == 32


def test_a_hashed_topic_reaches_the_service(
    engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock
) -> None:
    sub = dev_push.service.subscribe()
    with_sender(engine, clock, lambda s: s.send(wsid, target(sub), content(clock, collapse_key="cart/c1: your items")))
    assert dev_push.service.received_for(sub.id)[0].topic == topic_for("cart/c1: your items")


def test_payload_too_large_is_refused_before_sending(
    engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock
) -> None:
    sub = dev_push.service.subscribe()
    big = content(clock, body="x" * WEBPUSH_MAX_PLAINTEXT)
    with pytest.raises(PayloadTooLarge) as caught:
        with_sender(engine, clock, lambda s: s.send(wsid, target(sub), big))
    assert caught.value.limit == WEBPUSH_MAX_PLAINTEXT and "shorten" in caught.value.reason
    assert dev_push.service.accepted == 0 and dev_push.service.refused == {}
    # right at the limit it goes through: the limit is what one 4096-byte record holds
    empty = len(orjson.dumps(content(clock, body="").notification()))
    fits = content(clock, body="y" * (WEBPUSH_MAX_PLAINTEXT - empty))
    assert len(orjson.dumps(fits.notification())) == WEBPUSH_MAX_PLAINTEXT
    with_sender(engine, clock, lambda s: s.send(wsid, target(sub), fits))
    assert dev_push.service.received_for(sub.id)[0].notification["body"] == fits.body


@pytest.mark.parametrize("status", [404, 410])
def test_gone_subscriptions(engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock, status: int) -> None:
    sub = dev_push.service.subscribe()
    if status == 410:
        dev_push.service.unsubscribe(sub.id)
    else:
        dev_push.service.respond(sub.id, 404)
    with pytest.raises(TargetGone, match=str(status)):
        with_sender(engine, clock, lambda s: s.send(wsid, target(sub), content(clock)))


def test_429_and_5xx_are_transient_with_retry_after(
    engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock
) -> None:
    sub = dev_push.service.subscribe()
    cases = [
        (429, 30, 30.0),
        (429, format_datetime(clock.now() + timedelta(seconds=120), usegmt=True), 120.0),
        (503, 5, 5.0),
        (500, None, None),
    ]
    for status, header, expected in cases:
        dev_push.service.respond(sub.id, status, retry_after=header, times=1)
        with pytest.raises(TransientError) as caught:
            with_sender(engine, clock, lambda s: s.send(wsid, target(sub), content(clock)))
        assert caught.value.retry_after_s == expected, (status, header)
        assert str(status) in caught.value.reason
    with_sender(engine, clock, lambda s: s.send(wsid, target(sub), content(clock)))
    assert len(dev_push.service.received_for(sub.id)) == 1


def test_other_4xx_are_permanent_with_an_excerpt(
    engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock
) -> None:
    sub = dev_push.service.subscribe()
    dev_push.service.respond(sub.id, 400, body="UnauthorizedRegistration: the p256dh key is wrong " + "x" * 500)
    with pytest.raises(PermanentError) as caught:
        with_sender(engine, clock, lambda s: s.send(wsid, target(sub), content(clock)))
    assert not isinstance(caught.value, (TargetGone, TransientError))
    assert "400" in caught.value.reason and "UnauthorizedRegistration" in caught.value.reason
    assert len(caught.value.reason) < 300
    dev_push.service.respond(sub.id, 413)
    with pytest.raises(PermanentError, match="too large"):
        with_sender(engine, clock, lambda s: s.send(wsid, target(sub), content(clock)))


def test_unreachable_service_is_transient(engine: Any, wsid: str, clock: VirtualClock) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    sub = new_subscription(f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError, match="cannot reach"):
        with_sender(engine, clock, lambda s: s.send(wsid, target(sub), content(clock)))


def test_only_https_endpoints_or_loopback(engine: Any, wsid: str, clock: VirtualClock) -> None:
    bad = PushTarget("webpush", "http://push.example.com/p/1", "BAAA", "AAAA")
    with pytest.raises(PermanentError, match="https"):
        with_sender(engine, clock, lambda s: s.send(wsid, bad, content(clock)))


def test_jwt_reused_then_refreshed_before_it_expires(
    engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock
) -> None:
    subs = [dev_push.service.subscribe() for _ in range(3)]
    start = int(clock.now().timestamp())

    async def scenario(sender: WebPushSender) -> list[int]:
        signed = []
        await asyncio.gather(*(sender.send(wsid, target(s), content(clock)) for s in subs))
        signed.append(sender.jwts_signed)
        clock.advance(timedelta(hours=10))  # 2 h left: still reused
        await sender.send(wsid, target(subs[0]), content(clock))
        signed.append(sender.jwts_signed)
        clock.advance(timedelta(hours=1, minutes=1))  # under an hour left: a new one
        await sender.send(wsid, target(subs[0]), content(clock))
        signed.append(sender.jwts_signed)
        return signed

    assert with_sender(engine, clock, scenario) == [1, 1, 2]
    exps = [r.jwt_exp for r in dev_push.service.received]
    assert exps == [start + 12 * 3600] * 4 + [start + 11 * 3600 + 60 + 12 * 3600]


def test_rotation_signs_with_the_new_key(engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock) -> None:
    with engine.connect() as conn:
        old = vapid.vapid_public_key(conn, wsid)
    restricted = dev_push.service.subscribe(application_server_key=old)  # a browser subscribed with the old key
    fresh = dev_push.service.subscribe()

    async def scenario(sender: WebPushSender) -> str:
        await sender.send(wsid, target(restricted), content(clock))
        with engine.begin() as conn:
            new = vapid.rotate_vapid_keys(conn, wsid, to_ms(clock.now())).public_key
        clock.advance(31)  # the cached key expires (or the admin API invalidates it at once)
        await sender.send(wsid, target(fresh), content(clock))
        with pytest.raises(PermanentError, match="403") as caught:
            await sender.send(wsid, target(restricted), content(clock))
        assert not isinstance(caught.value, TargetGone)  # a wrong key is ours to fix, not the browser's
        return new

    new = with_sender(engine, clock, scenario)
    assert [r.vapid_key for r in dev_push.service.received] == [old, new]


def test_invalidate_drops_the_cached_key_at_once(
    engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock
) -> None:
    sub = dev_push.service.subscribe()

    async def scenario(sender: WebPushSender) -> str:
        await sender.send(wsid, target(sub), content(clock))
        with engine.begin() as conn:
            new = vapid.rotate_vapid_keys(conn, wsid, to_ms(clock.now())).public_key
        sender.invalidate(wsid)
        await sender.send(wsid, target(sub), content(clock))
        return new

    new = with_sender(engine, clock, scenario)
    assert dev_push.service.received[-1].vapid_key == new


def test_no_keys_is_permanent(engine: Any, clock: VirtualClock, dev_push: RunningDevPush) -> None:
    sub = dev_push.service.subscribe()
    with pytest.raises(PermanentError, match="VAPID"):
        with_sender(engine, clock, lambda s: s.send("ws_missing", target(sub), content(clock)))


def test_https_over_http11(engine: Any, wsid: str, clock: VirtualClock, tmp_path: Path) -> None:
    """TLS to a service that also speaks HTTP/2 (hypercorn, ALPN h2 and http/1.1): the
    sender speaks HTTP/1.1, which every push service takes, and verifies the certificate."""
    ca = trustme.CA()
    pem = tmp_path / "push.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    srv = serve_dev_push(DevPushService(clock), certfile=str(pem))
    try:
        assert srv.url.startswith("https://")
        subs = [srv.service.subscribe() for _ in range(5)]
        trust = ssl.create_default_context()
        ca.configure_trust(trust)

        async def scenario(sender: WebPushSender) -> None:
            await asyncio.gather(*(sender.send(wsid, target(s), content(clock, urgency="low")) for s in subs))

        with_sender(engine, clock, scenario, ssl_context=trust)
        got = srv.service.received
        assert len(got) == 5 and {r.http_version for r in got} == {"1.1"} and {r.urgency for r in got} == {"low"}

        # without our CA the certificate does not verify: transient (the operator's CA store may be fixed)
        with pytest.raises(TransientError, match="cannot reach"):
            with_sender(engine, clock, lambda s: s.send(wsid, target(subs[0]), content(clock)))

        async def given_session() -> None:  # the caller's session: used, and left open for its owner
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
                sender = WebPushSender(engine, clock, session=session)
                await sender.send(wsid, target(subs[1]), content(clock))
                await sender.aclose()
                assert not session.closed

        asyncio.run(given_session())
        assert len(srv.service.received_for(subs[1].id)) == 2
    finally:
        srv.stop()


def test_a_new_session_in_each_event_loop(
    engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock
) -> None:
    """A session belongs to its loop; the runtime's run_until_idle sends each batch in a
    loop of its own (asyncio.run), its dispatch thread in one long-lived loop."""
    sub = dev_push.service.subscribe()
    sender = WebPushSender(engine, clock)

    async def send() -> aiohttp.ClientSession:
        await sender.send(wsid, target(sub), content(clock))
        return sender.session()

    first = asyncio.run(send())
    second = asyncio.run(send())
    assert second is not first and first.closed and not second.closed
    idle = asyncio.new_event_loop()  # made, left idle (as the dispatch thread's between batches), still open
    try:
        third = idle.run_until_complete(send())
        fourth = asyncio.run(send())
        assert fourth is not third and not third.closed  # closed in its own loop, when that runs again
        idle.run_until_complete(asyncio.sleep(0.01))
        assert third.closed
        idle.run_until_complete(sender.aclose())  # fourth's loop is closed: marked closed from here
        assert fourth.closed
    finally:
        idle.close()
    assert len(dev_push.service.received_for(sub.id)) == 4


def test_rate_per_origin_on_the_injected_clock(
    engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock
) -> None:
    sub = dev_push.service.subscribe()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    async def scenario(sender: WebPushSender) -> None:
        for _ in range(4):
            await sender.send(wsid, target(sub), content(clock))

    with_sender(engine, clock, scenario, sleep=sleep, rate_per_second=2.0)
    assert len(dev_push.service.received_for(sub.id)) == 4 and sum(slept) == pytest.approx(1.0)


def test_no_secrets_or_endpoints_in_logs(
    engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    sub = dev_push.service.subscribe()
    gone = dev_push.service.subscribe()
    dev_push.service.unsubscribe(gone.id)
    caplog.set_level(logging.DEBUG)

    async def scenario(sender: WebPushSender) -> str:
        await sender.send(wsid, target(sub), content(clock))
        with pytest.raises(TargetGone) as caught:
            await sender.send(wsid, target(gone), content(clock))
        return caught.value.reason

    reason = with_sender(engine, clock, scenario)
    with engine.connect() as conn:
        keys = vapid.get_vapid_keys(conn, wsid)
    assert keys is not None
    logged = caplog.text + reason
    assert not any(r.name.startswith(("httpx", "httpcore")) for r in caplog.records)  # aiohttp sends them now
    for secret in (keys.private_key, sub.id, gone.id, sub.info()["keys"]["auth"], "vapid t="):
        assert secret not in logged


# -- through the push channel, with the database --------------------------------------------------------


def _setup_person(engine: Any, wsid: str, clock: VirtualClock, subs: list[BrowserSubscription]) -> None:
    now = to_ms(clock.now())
    with engine.begin() as conn:
        save_template(
            conn,
            wsid,
            "push-cart",
            {
                "channel": "push",
                "title": "Hi {{ profile.first_name | default: 'there' }}",
                "body": "Your cart is waiting",
                "ttl": 7200,
                "urgency": "normal",
                "collapse_key": "cart",
            },
            now,
        )
        for sub in subs:
            save_subscription(conn, wsid, "prf_jo", sub.info(), now)


def _message(wsid: str, clock: VirtualClock) -> OutboundMessage:
    return OutboundMessage(
        key="run1:push:1",
        workspace_id=wsid,
        profile_id="prf_jo",
        run_id="run1",
        journey_id="cart",
        step="push",
        channel="push",
        template="push-cart",
        variant=None,
        marketing=True,
        created_at_ms=to_ms(clock.now()),
    )


def _count_subs(engine: Any, wsid: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(push_subscriptions).where(push_subscriptions.c.workspace_id == wsid)
            ).scalar_one()
        )


def _send_through_channel(engine: Any, clock: VirtualClock, message: OutboundMessage) -> None:
    async def run() -> None:
        db = DatabasePush(engine, clock)
        channel = PushChannel({"webpush": WebPushSender(engine, clock)}, db, db, clock)
        try:
            await channel.send(message)
        finally:
            await channel.aclose()

    asyncio.run(run())


def test_channel_delivers_and_deletes_gone_subscriptions(
    engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock
) -> None:
    alive, expired, unknown = (dev_push.service.subscribe() for _ in range(3))
    dev_push.service.unsubscribe(expired.id)
    dev_push.service.respond(unknown.id, 404)
    _setup_person(engine, wsid, clock, [alive, expired, unknown])
    assert _count_subs(engine, wsid) == 3

    _send_through_channel(engine, clock, _message(wsid, clock))
    [got] = dev_push.service.received_for(alive.id)
    assert got.notification["title"] == "Hi there" and got.notification["key"] == "run1:push:1"
    assert (got.ttl, got.urgency, got.topic) == (7200, "normal", "cart")
    with engine.connect() as conn:
        left = (
            conn.execute(select(push_subscriptions.c.endpoint).where(push_subscriptions.c.workspace_id == wsid))
            .scalars()
            .all()
        )
    assert left == [alive.endpoint]

    dev_push.service.unsubscribe(alive.id)  # the last one goes too: nothing took the message
    with pytest.raises(PermanentError, match="410"):
        _send_through_channel(engine, clock, _message(wsid, clock))
    assert _count_subs(engine, wsid) == 0


def test_channel_retries_when_every_target_failed_transiently(
    engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock
) -> None:
    busy, down = dev_push.service.subscribe(), dev_push.service.subscribe()
    dev_push.service.respond(busy.id, 429, retry_after=20)
    dev_push.service.respond(down.id, 503, retry_after=60)
    _setup_person(engine, wsid, clock, [busy, down])
    with pytest.raises(TransientError) as caught:
        _send_through_channel(engine, clock, _message(wsid, clock))
    assert caught.value.retry_after_s == 60.0  # the longest wait wins
    assert _count_subs(engine, wsid) == 2  # nothing deleted for a transient failure


def test_a_first_try_after_a_lost_claim_skips_the_targets_the_dead_dispatchers_try_reached(
    engine: Any, wsid: str, dev_push: RunningDevPush, clock: VirtualClock
) -> None:
    # A try reached one target and recorded it (to retry the other), then its dispatcher died
    # before recording the retry: the next claim is the message's first try again (attempts
    # count tries with an outcome), its second claim. It must not notify the reached one twice.
    reached, down = dev_push.service.subscribe(), dev_push.service.subscribe()
    dev_push.service.respond(down.id, 503)
    _setup_person(engine, wsid, clock, [reached, down])
    with pytest.raises(TransientError, match="reached 1 of 2"):
        _send_through_channel(engine, clock, replace(_message(wsid, clock), claim=1))
    dev_push.service.clear_responses()
    _send_through_channel(engine, clock, replace(_message(wsid, clock), claim=2))  # attempt 1 again
    assert (len(dev_push.service.received_for(reached.id)), len(dev_push.service.received_for(down.id))) == (1, 1)
