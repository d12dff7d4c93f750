"""A journey's push message through the push channel to FCM and APNs, end to end on a real
database: the devices arrive the Segment way (context.device.token on events), the message
is rendered from its template, and the tokens the services report dead are deleted.

The local FCM, token and APNs servers are those of tests/channels/push_servers.py.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import httpx
import pytest
import trustme
from sqlalchemy import select

from nudgeflow.channels.apns import ApnsSender
from nudgeflow.channels.base import ChannelProblem, PermanentError, PushOptedOut, TransientError
from nudgeflow.channels.fcm import FcmSender
from nudgeflow.channels.push import DatabasePush, PushChannel
from nudgeflow.channels.wiring import apns_default, fcm_default
from nudgeflow.core.clock import VirtualClock, from_ms, to_ms
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.settings import Settings
from nudgeflow.store.profiles import erase_profile
from nudgeflow.store.schema import device_tokens, push_deliveries
from tests.channels.push_accounts import IPHONE, OLD_IPAD, PIXEL, TOPIC
from tests.channels.push_servers import ApnsServer, FcmServer, client_ssl_context


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


def send(
    engine: Any,
    settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
    msg: OutboundMessage,
    providers: tuple[str, ...] = ("fcm", "apns"),
) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(http2=True, verify=client_ssl_context(ca), timeout=10) as client:
            db = DatabasePush(engine, clock)
            senders = {
                "fcm": FcmSender(engine, clock, default=lambda: fcm_default(settings), client=client),
                "apns": ApnsSender(engine, clock, default=lambda: apns_default(settings), client=client),
            }
            channel = PushChannel(
                {name: sender for name, sender in senders.items() if name in providers},
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
    person_with_devices: tuple[str, str],
    fcm_and_apns: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person_with_devices
    fcm, apns = fcm_and_apns
    fcm.gone.add(PIXEL)  # the app was uninstalled
    apns.gone.add(OLD_IPAD)
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


def test_a_wrong_apns_environment_deletes_no_token(
    engine: Any,
    person_with_devices: tuple[str, str],
    fcm_and_apns: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    """Every iOS token is a development build's and the workspace sends to production: APNs
    answers BadDeviceToken to each. The tokens are kept (the setting, not the devices, is
    wrong) and the message fails as a channel problem that names the environment."""
    ws, pid = person_with_devices
    _, apns = fcm_and_apns
    apns.other_environment.update({IPHONE, OLD_IPAD})
    with pytest.raises(ChannelProblem, match="BadDeviceToken") as info:
        send(engine, push_settings, ca, clock, message(ws, pid, clock), providers=("apns",))
    assert not isinstance(info.value, PushOptedOut)
    assert "apns.sandbox is false" in info.value.reason and "the token is kept" in info.value.reason
    assert tokens(engine, ws) == {IPHONE, OLD_IPAD, PIXEL}
    # Once the setting is right (here: the devices' environment), the same tokens take it.
    apns.other_environment.clear()
    send(engine, push_settings, ca, clock, message(ws, pid, clock, key="run1:streak:2"), providers=("apns",))
    assert {r.device for r in apns.sent()} == {IPHONE, OLD_IPAD}


def test_when_every_token_is_dead_the_message_fails_and_they_are_gone(
    engine: Any,
    person_with_devices: tuple[str, str],
    fcm_and_apns: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person_with_devices
    fcm, apns = fcm_and_apns
    fcm.script(PIXEL, "INVALID_TOKEN")
    apns.gone.update({IPHONE, OLD_IPAD})
    with pytest.raises(PermanentError, match="410 Unregistered") as info:
        send(engine, push_settings, ca, clock, message(ws, pid, clock))
    assert "not a valid FCM registration token" in info.value.reason
    # Every device gone: the person's push opt-out, as reports count it.
    assert isinstance(info.value, PushOptedOut)
    assert tokens(engine, ws) == set()
    with pytest.raises(PermanentError, match="no push target"):
        send(engine, push_settings, ca, clock, message(ws, pid, clock, key="run1:streak:2"))


def test_busy_services_retry_later_and_keep_the_tokens(
    engine: Any,
    person_with_devices: tuple[str, str],
    fcm_and_apns: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person_with_devices
    fcm, apns = fcm_and_apns
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
    person_with_devices: tuple[str, str],
    fcm_and_apns: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person_with_devices
    queued = message(ws, pid, clock)
    clock.set(from_ms(queued.created_at_ms + 2 * 3600_000))
    with pytest.raises(PermanentError, match="expired"):
        send(engine, push_settings, ca, clock, queued)
    assert fcm_and_apns[0].requests == [] and fcm_and_apns[1].requests == []


def test_a_retry_goes_only_to_the_targets_that_missed_the_message(
    engine: Any,
    person_with_devices: tuple[str, str],
    fcm_and_apns: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person_with_devices
    fcm, apns = fcm_and_apns
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
    person_with_devices: tuple[str, str],
    fcm_and_apns: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person_with_devices
    fcm, apns = fcm_and_apns
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
    person_with_devices: tuple[str, str],
    fcm_and_apns: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person_with_devices
    _fcm, apns = fcm_and_apns
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
    person_with_devices: tuple[str, str],
    fcm_and_apns: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
) -> None:
    ws, pid = person_with_devices
    fcm_and_apns[1].script(IPHONE, (503, "ServiceUnavailable"))
    with pytest.raises(TransientError):
        send(engine, push_settings, ca, clock, message(ws, pid, clock))
    assert deliveries(engine, ws) == 2
    with engine.begin() as conn:
        assert erase_profile(conn, ws, pid)["push_deliveries"] == 2
    assert deliveries(engine, ws) == 0


def test_credentials_set_while_the_server_runs_are_used(
    engine: Any,
    person_with_devices: tuple[str, str],
    fcm: FcmServer,
    sa_key: Any,
    ca: trustme.CA,
    clock: VirtualClock,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Push goes on with no FCM credentials anywhere (Ada's tokens make it in use); then the
    workspace sets its own. Within the cache's 30 s, without a restart, FCM tokens get
    the message."""
    if engine.dialect.name != "sqlite":
        pytest.skip("needs a database where no workspace has FCM credentials (PostgreSQL's is shared)")
    from nudgeflow.channels.base import ChannelRegistry
    from nudgeflow.channels.push_config import FcmConfig, set_fcm
    from nudgeflow.channels.wiring import configure_push
    from tests.channels.push_accounts import PROJECT, service_account

    ws, pid = person_with_devices
    settings = Settings(database_url=str(engine.url))  # no server default either
    channel = configure_push(ChannelRegistry.development(), engine, settings, clock)
    assert channel is not None
    with engine.begin() as conn:
        config = FcmConfig(PROJECT, service_account(sa_key, fcm.url + "/token"), api_base=fcm.url)
        set_fcm(conn, ws, config, to_ms(clock.now()))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the senders' own clients trust the local FCM

    async def main() -> None:
        try:
            await channel.send(message(ws, pid, clock))
        finally:
            await channel.aclose()

    asyncio.run(main())  # sent: the Android phone took it (no APNs credentials: the iPads did not)
    assert [r.body["message"]["token"] for r in fcm.sent()] == [PIXEL]


def test_the_senders_work_from_one_event_loop_to_the_next(
    engine: Any,
    person_with_devices: tuple[str, str],
    fcm_and_apns: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """run_until_idle sends each round in an event loop of its own: the FCM and APNs
    senders' own HTTP clients (and FCM's token lock) must not outlive theirs."""
    ws, pid = person_with_devices
    fcm, apns = fcm_and_apns
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the senders' own clients trust the local services
    db = DatabasePush(engine, clock)
    fcm_sender = FcmSender(engine, clock, default=lambda: fcm_default(push_settings))
    channel = PushChannel(
        {"fcm": fcm_sender, "apns": ApnsSender(engine, clock, default=lambda: apns_default(push_settings))},
        db,
        db,
        clock,
    )

    async def token_twice() -> None:  # two sends wait on one refresh: the lock is taken in this loop
        fcm_sender._tokens.clear()
        await asyncio.gather(*(fcm_sender.access_token(fcm_default(push_settings)) for _ in range(2)))  # type: ignore[arg-type]

    for n in (1, 2, 3):
        asyncio.run(token_twice())
        asyncio.run(channel.send(message(ws, pid, clock, key=f"run1:streak:{n}")))
    asyncio.run(channel.aclose())
    # The clients of the loops that ended are dropped with their loops' transports: collect
    # them here, not in some later compile (CPython 3.11.7 can fail an AST build when a
    # finalizer runs inside it).
    gc.collect()
    assert [r.body["message"]["data"]["key"] for r in fcm.sent()] == [f"run1:streak:{n}" for n in (1, 2, 3)]
    assert len(apns.sent()) == 6  # the iPhone and the old iPad, each time


class BrokenSender:
    """A sender with a bug: it raises what no push service answer means."""

    provider = "apns"

    async def send(self, workspace_id: str, target: Any, content: Any) -> None:
        raise RuntimeError("a bug, not an answer")

    async def aclose(self) -> None:
        pass


def test_a_senders_bug_is_retried_not_a_failure_for_good(
    engine: Any,
    person_with_devices: tuple[str, str],
    fcm_and_apns: tuple[FcmServer, ApnsServer],
    push_settings: Settings,
    ca: trustme.CA,
    clock: VirtualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The dispatcher retries a channel that raises something unexpected; so does the push
    channel for a sender's target: the devices it missed get the retry, and the traceback
    is logged (a reason that named only RuntimeError hid where it came from)."""
    ws, pid = person_with_devices
    fcm, apns = fcm_and_apns

    async def main() -> None:
        async with httpx.AsyncClient(http2=True, verify=client_ssl_context(ca), timeout=10) as client:
            db = DatabasePush(engine, clock)
            fcm_sender = FcmSender(engine, clock, default=lambda: fcm_default(push_settings), client=client)
            broken = PushChannel({"fcm": fcm_sender, "apns": BrokenSender()}, db, db, clock)
            with pytest.raises(TransientError, match="RuntimeError"):
                await broken.send(message(ws, pid, clock))
            assert deliveries(engine, ws) == 1  # the Android phone took it: the retry skips it
            apns_sender = ApnsSender(engine, clock, default=lambda: apns_default(push_settings), client=client)
            fixed = PushChannel({"fcm": fcm_sender, "apns": apns_sender}, db, db, clock)
            await fixed.send(message(ws, pid, clock, attempt=2))

    asyncio.run(main())
    assert len(fcm.sent()) == 1 and {r.device for r in apns.sent()} == {IPHONE, OLD_IPAD}
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert len(logged) == 2 and {r.levelname for r in logged} == {"ERROR"}  # one per iPhone and iPad
