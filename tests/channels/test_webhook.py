"""The webhook channel against a real HTTP(S) receiver on loopback, on both databases.

Loopback is private, so each destination here is allowlisted (`allow_networks`); the guard's
refusals are shown in test_url_guard.py and once here through the channel. Signatures are
verified by the receiver's own recipe (tests/webhook_receiver.verify_signature), not by the
channel's code."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import trustme
from sqlalchemy import text

from nudgeflow.channels.base import PermanentError, TransientError
from nudgeflow.channels.url_guard import UrlRefused
from nudgeflow.channels.webhook import WebhookChannel, webhook_id
from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.model.events import normalize, parse_message
from nudgeflow.model.journeys import Journey
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.model.webhooks import Destination, new_secret
from nudgeflow.store import journeys as journey_store
from nudgeflow.store import webhook_destinations
from nudgeflow.store.ingest_writer import write_events
from nudgeflow.store.profiles import resolve_profile_id
from tests.channels.push_servers import client_ssl_context
from tests.support import make_workspace
from tests.webhook_receiver import Receiver, Reply, verify_signature

LOOPBACK = ["127.0.0.0/8"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def journey(webhook: dict[str, Any], step: str = "crm.sync") -> dict[str, Any]:
    return {
        "id": "crm",
        "name": "CRM sync",
        "trigger": {"type": "event", "event": "Order Completed"},
        "steps": {step: {"type": "send", "channel": "webhook", "marketing": False, "webhook": webhook}},
    }


def prepare(
    engine: Any,
    clock: VirtualClock,
    webhook: dict[str, Any],
    *,
    destinations: Sequence[Destination] = (),
    step: str = "crm.sync",
) -> OutboundMessage:
    """A workspace with Ada (identified), a published journey with this webhook step, its
    destinations; the message the engine would have queued for Ada."""
    ws = make_workspace(engine, clock=clock).workspace_id
    now = to_ms(clock.now())
    identify = {"type": "identify", "userId": "ada", "traits": {"email": "ada@example.com", "first_name": "Ada"}}
    with engine.begin() as conn:
        write_events(conn, ws, [normalize(parse_message(identify), clock.now(), max_event_bytes=32_768)], now)
        pid = resolve_profile_id(conn, ws, "ada")
        definition = Journey.model_validate(journey(webhook, step))
        journey_store.apply_draft(conn, ws, definition, now)
        journey_store.publish(conn, ws, "crm", now, backfill=False)
        for destination in destinations:
            webhook_destinations.set_destination(conn, ws, destination, now)
    assert pid is not None
    trigger = {"event": "Order Completed", "message_id": "m-1", "at": now, "properties": {"total": 42.5, "id": "o.7"}}
    return OutboundMessage(
        key=f"0190abc:{step}:1",
        workspace_id=ws,
        profile_id=pid,
        run_id="0190abc",
        journey_id="crm",
        step=step,
        channel="webhook",
        template="",
        variant=None,
        marketing=False,
        context={"trigger": trigger, "journey": {"id": "crm", "version": 1, "name": "CRM sync"}, "run": {"id": "r"}},
        version=1,
    )


def destination(receiver: Receiver, **fields: Any) -> Destination:
    data = {"url": receiver.url(), "secret": new_secret(), "allow_networks": LOOPBACK, **fields}
    return Destination.build(fields.pop("name", "crm"), data)


def send(channel: WebhookChannel, message: OutboundMessage) -> None:
    asyncio.run(channel.send(message))


def test_a_call_is_rendered_signed_and_keyed(engine: Any, clock: VirtualClock, receiver: Receiver) -> None:
    crm = destination(receiver, headers={"Authorization": "Bearer s3cret"})
    body = {
        "type": "order.completed",
        "email": "{{ profile.email }}",
        "total": "{{ event.properties.total }}",  # one output tag: stays a number
        "greeting": "Hi {{ profile.first_name }}!",
        "key": "{{ message.key }}",
    }
    message = prepare(engine, clock, {"destination": "crm", "method": "PUT", "body": body}, destinations=[crm])
    send(WebhookChannel(engine, clock), message)

    [got] = receiver.wait_for(1)
    assert (got.method, got.path) == ("PUT", "/hooks")
    assert got.json() == {
        "type": "order.completed",
        "email": "ada@example.com",
        "total": 42.5,
        "greeting": "Hi Ada!",
        "key": message.key,
    }
    # Standard Webhooks, checked the receiver's way; the id may hold no dot.
    assert got.headers["webhook-id"] == "0190abc:crm%2Esync:1" == webhook_id(message.key)
    assert got.headers["webhook-timestamp"] == str(int(clock.now().timestamp()))
    assert got.headers["webhook-signature"].startswith("v1,")
    assert verify_signature(crm.secret, got, tolerance_s=300, now=clock.now().timestamp())
    assert not verify_signature(new_secret(), got)
    assert got.headers["idempotency-key"] == message.key
    assert got.headers["authorization"] == "Bearer s3cret"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["host"] == f"127.0.0.1:{receiver.port}"


def test_a_body_written_as_one_template_must_render_to_json(
    engine: Any, clock: VirtualClock, receiver: Receiver
) -> None:
    crm = destination(receiver)
    template = '{"who": {{ profile | json }}, "order": {{ event.properties.id | json }}, "n": {{ 2 | plus: 1 }}}'
    message = prepare(engine, clock, {"destination": "crm", "body": template}, destinations=[crm])
    channel = WebhookChannel(engine, clock)
    send(channel, message)
    [got] = receiver.wait_for(1)
    assert got.method == "POST"
    assert got.json()["order"] == "o.7" and got.json()["n"] == 3 and got.json()["who"]["first_name"] == "Ada"

    broken = prepare(
        engine, clock, {"destination": "crm", "body": '{"who": {{ profile.first_name }}}'}, destinations=[crm]
    )
    with pytest.raises(PermanentError) as info:
        send(channel, broken)
    assert info.value.reason.startswith(
        "webhook.body: the rendered text is not JSON (unexpected character, expected a JSON value) at line 1, "
        'column 9: …{"who": Ada}…'
    )
    undefined = prepare(engine, clock, {"destination": "crm", "body": {"a": "{{ profile.nope }}"}}, destinations=[crm])
    with pytest.raises(PermanentError, match=r"webhook\.body\.a:1:4: profile\.nope is undefined"):
        send(channel, undefined)
    assert len(receiver.received) == 1  # nothing half-rendered went out


@pytest.mark.parametrize(
    "reply, retry_after",
    [
        (Reply(429, b"slow down", {"Retry-After": "120"}), 120.0),
        (Reply(503, b"", {"Retry-After": "Wed, 01 Jan 2031 00:01:30 GMT"}), 90.0),
        (Reply(500, b"oops"), None),
        (Reply(502, b"bad gateway"), None),
    ],
)
def test_429_and_5xx_are_retried_after_their_retry_after(
    engine: Any, receiver: Receiver, reply: Reply, retry_after: float | None
) -> None:
    clock = VirtualClock(datetime(2031, 1, 1, tzinfo=UTC))
    message = prepare(engine, clock, {"destination": "crm", "body": {}}, destinations=[destination(receiver)])
    receiver.answer(reply)
    with pytest.raises(TransientError) as info:
        send(WebhookChannel(engine, clock), message)
    assert info.value.retry_after_s == retry_after
    assert info.value.reason.startswith(f"webhook (destination crm) answered {reply.status}")


@pytest.mark.parametrize("status", [400, 401, 404, 409, 410, 422])
def test_other_4xx_are_permanent(engine: Any, clock: VirtualClock, receiver: Receiver, status: int) -> None:
    message = prepare(engine, clock, {"destination": "crm", "body": {}}, destinations=[destination(receiver)])
    receiver.answer(Reply(status, b'{"error": "no such contact"}'))
    with pytest.raises(PermanentError) as info:
        send(WebhookChannel(engine, clock), message)
    assert not isinstance(info.value, TransientError)
    assert info.value.reason == f'webhook (destination crm) answered {status}: {{"error": "no such contact"}}'


def test_redirects_are_not_followed(engine: Any, clock: VirtualClock, receiver: Receiver) -> None:
    message = prepare(engine, clock, {"destination": "crm", "body": {}}, destinations=[destination(receiver)])
    receiver.answer(Reply(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}))
    with pytest.raises(PermanentError) as info:
        send(WebhookChannel(engine, clock), message)
    assert info.value.reason == (
        "webhook (destination crm) answered 302, a redirect to http://169.254.169.254/latest/meta-data/: "
        "redirects are not followed; give the final URL"
    )
    time.sleep(0.1)
    assert len(receiver.received) == 1


def test_a_slow_receiver_times_out(engine: Any, clock: VirtualClock, receiver: Receiver) -> None:
    slow = destination(receiver, timeout_s=0.3)
    message = prepare(engine, clock, {"destination": "crm", "body": {}}, destinations=[slow])
    receiver.answer(Reply(200, delay_s=5))
    start = time.monotonic()
    with pytest.raises(TransientError, match=r"^webhook to 127\.0\.0\.1:\d+: no answer within 0\.3 s$"):
        send(WebhookChannel(engine, clock), message)
    assert time.monotonic() - start < 2


def test_a_long_answer_is_read_only_up_to_the_limit(engine: Any, clock: VirtualClock, receiver: Receiver) -> None:
    # 1 MB announced; the receiver sends 100 KB and then holds the connection for 10 s. A
    # client that read the whole answer would wait for it (past its timeout); one that stops
    # at its limit returns at once.
    crm = destination(receiver, timeout_s=5)
    webhook = {"destination": "crm", "body": {}, "response_traits": {"crm_id": "$.id"}}
    message = prepare(engine, clock, webhook, destinations=[crm])
    receiver.answer(Reply(200, b'{"id": "c-1", "pad": "' + b"x" * 1_000_000 + b'"}', stall_after=100_000, stall_s=10))
    start = time.monotonic()
    send(WebhookChannel(engine, clock, max_response_bytes=4096), message)  # sent: the call succeeded
    assert time.monotonic() - start < 2
    with engine.connect() as conn:  # cut at the limit, the answer is not read for traits
        identifies = text("SELECT count(*) FROM events WHERE workspace_id = :ws AND type = 'identify'")
        assert conn.execute(identifies, {"ws": message.workspace_id}).scalar() == 1  # Ada's own


def test_refused_addresses_and_missing_destinations_are_permanent(
    engine: Any, clock: VirtualClock, receiver: Receiver
) -> None:
    unlisted = destination(receiver, allow_networks=[])
    message = prepare(engine, clock, {"destination": "crm", "body": {}}, destinations=[unlisted])
    channel = WebhookChannel(engine, clock)
    with pytest.raises(UrlRefused, match=r"the URL's host 127\.0\.0\.1 is loopback"):
        send(channel, message)
    other = prepare(engine, clock, {"destination": "erp", "body": {}}, destinations=[unlisted])
    with pytest.raises(PermanentError) as info:
        send(channel, other)
    assert info.value.reason == (
        "no webhook destination 'erp' in this workspace (nudgeflow workspace webhooks destinations set erp --url …)"
    )
    assert receiver.received == []


def test_a_step_url_is_signed_with_the_workspace_secret_and_never_private(engine: Any, clock: VirtualClock) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]  # a public-looking name that resolves to loopback

    webhook = {"url": "http://hooks.example.com/users/{{ profile.first_name | downcase }}", "body": {}}
    message = prepare(engine, clock, webhook)
    with engine.connect() as conn:
        assert webhook_destinations.load(conn, message.workspace_id).secret is None
    with pytest.raises(UrlRefused, match=r"hooks\.example\.com \(127\.0\.0\.1\) is loopback"):
        send(WebhookChannel(engine, clock, resolver=resolve), message)
    with engine.connect() as conn:  # made at the first call to a url, kept for the next
        made = webhook_destinations.load(conn, message.workspace_id).secret
    assert made is not None and made.startswith("whsec_")


def test_a_closed_port_is_transient(engine: Any, clock: VirtualClock) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = Destination.build(
        "crm", {"url": f"http://127.0.0.1:{port}/", "secret": new_secret(), "allow_private": True}
    )
    message = prepare(engine, clock, {"destination": "crm", "body": {}}, destinations=[closed])
    with pytest.raises(TransientError, match=r"ConnectError"):
        send(WebhookChannel(engine, clock), message)


def test_the_answer_maps_into_traits_once(engine: Any, clock: VirtualClock, receiver: Receiver) -> None:
    webhook = {
        "destination": "crm",
        "body": {"email": "{{ profile.email }}"},
        "response_traits": {"crm_id": "$.id", "tier": "$.customer.tier", "first_tag": "$.tags[0]", "gone": "$.nope"},
    }
    message = prepare(engine, clock, webhook, destinations=[destination(receiver)])
    answer = b'{"id": "c-42", "customer": {"tier": "gold"}, "tags": ["vip", "eu"]}'
    receiver.answer(Reply(201, answer), Reply(200, answer))
    channel = WebhookChannel(engine, clock)
    send(channel, message)
    send(channel, message)  # a retry after a lost outcome: the traits are recorded once
    assert len(receiver.received) == 2
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT message_id, profile_id, payload FROM events WHERE workspace_id = :ws AND type = 'identify'"
                " ORDER BY seq"
            ),
            {"ws": message.workspace_id},
        ).all()
        traits = conn.execute(text("SELECT traits FROM profiles WHERE id = :p"), {"p": message.profile_id}).scalar()
    assert [r.message_id for r in rows] == [rows[0].message_id, f"nudgeflow:{message.key}:webhook-answer"]
    assert rows[1].profile_id == message.profile_id
    payload = orjson.loads(rows[1].payload)
    assert payload["userId"] == "ada" and payload["traits"] == {"crm_id": "c-42", "tier": "gold", "first_tag": "vip"}
    assert payload["context"]["nudgeflow"] == {"message_key": message.key, "journey_id": "crm", "step": "crm.sync"}
    assert orjson.loads(traits) == {
        "email": "ada@example.com",
        "first_name": "Ada",
        "crm_id": "c-42",
        "tier": "gold",
        "first_tag": "vip",
    }


def test_https_goes_to_the_checked_address_with_the_name_as_sni(
    engine: Any, clock: VirtualClock, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is resolved once, by the guard; the connection goes to that address, and TLS
    still checks the certificate against the name (SNI)."""
    secure = Receiver(ca, names=("hooks.test",)).start()
    resolved: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    system = socket.getaddrinfo
    looked_up: list[Any] = []

    def spy(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        return system(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    try:
        crm = destination(secure, url=secure.url(host="hooks.test"))
        message = prepare(engine, clock, {"destination": "crm", "body": {"a": 1}}, destinations=[crm])
        channel = WebhookChannel(engine, clock, resolver=resolve, verify=client_ssl_context(ca))
        send(channel, message)
        [got] = secure.wait_for(1)
        assert got.headers["host"] == f"hooks.test:{secure.port}"
        assert secure.sni_seen == ["hooks.test"]
        assert verify_signature(crm.secret, got)
        assert resolved == ["hooks.test"] and "hooks.test" not in looked_up  # no second lookup
    finally:
        secure.stop()
    # A certificate for another name fails, although the address is the same.
    other = Receiver(ca, names=("elsewhere.test",)).start()
    try:
        crm = destination(other, url=other.url(host="hooks.test"))
        message = prepare(engine, clock, {"destination": "crm", "body": {}}, destinations=[crm])
        with pytest.raises(TransientError, match="ConnectError"):
            send(WebhookChannel(engine, clock, resolver=resolve, verify=client_ssl_context(ca)), message)
    finally:
        other.stop()
