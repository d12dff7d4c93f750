"""The webhook step through the whole runtime, on both databases and a virtual clock: an order
calls the CRM (a real receiver on loopback, allowlisted), the CRM first says 429 with a
Retry-After, later answers with the customer's tier, and the journey branches on that tier an
hour later: the answer became a trait by way of the event log, applied by the engine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest

from nudgeflow.channels.webhook import WebhookChannel, webhook_id
from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.model.journeys import Journey
from nudgeflow.store import journeys as journey_store
from tests.support import LiveServer
from tests.webhook_receiver import Receiver, Reply, verify_signature

CRM = {
    "id": "crm-sync",
    "name": "CRM sync",
    "trigger": {"type": "event", "event": "Order Completed"},
    "steps": {
        "sync": {
            "type": "send",
            "channel": "webhook",
            "marketing": False,
            "webhook": {
                "destination": "crm",
                "body": {
                    "type": "order.completed",
                    "email": "{{ profile.email }}",
                    "total": "{{ event.properties.total }}",
                },
                "response_traits": {"crm_id": "$.id", "tier": "$.customer.tier"},
            },
            "next": "wait",
        },
        "wait": {"type": "wait", "duration": "1h", "next": "check"},
        "check": {
            "type": "branch",
            "cases": [{"when": [{"trait": "tier", "op": "eq", "value": "gold"}], "next": "gold"}],
            "default": "other",
        },
        "gold": {"type": "send", "channel": "email", "template": "gold-thanks"},
        "other": {"type": "send", "channel": "email", "template": "thanks"},
    },
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def q(srv: LiveServer, sql: str, **params: Any) -> list[Any]:
    from sqlalchemy import text

    with srv.state.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def test_an_answer_becomes_a_trait_the_journey_branches_on(
    server: tuple[LiveServer, VirtualClock], receiver: Receiver
) -> None:
    srv, clock = server
    ws = srv.workspace()
    with srv.admin(ws.admin_token) as admin:
        made = admin.put(
            "/api/settings/webhooks/destinations/crm",
            json={"url": receiver.url("/orders"), "allow_networks": ["127.0.0.0/8"], "headers": {"X-Api-Key": "k1"}},
        )
        assert made.status_code == 200, made.text
    secret = made.json()["secret"]
    now = to_ms(clock.now())
    with srv.state.engine.begin() as conn:
        journey_store.apply_draft(conn, ws.workspace_id, Journey.model_validate(CRM), now)
        journey_store.publish(conn, ws.workspace_id, "crm-sync", now)

    receiver.answer(
        Reply(429, b"busy", {"Retry-After": "120"}),
        Reply(200, b'{"id": "c-9", "customer": {"tier": "gold"}}'),
    )
    runtime = srv.state.runtime
    with srv.client(auth=(ws.write_key, "")) as client:
        assert client.post("/v1/identify", json={"userId": "ada", "traits": {"email": "ada@x.test"}}).status_code == 200
        sent = client.post(
            "/v1/track", json={"userId": "ada", "event": "Order Completed", "properties": {"total": 42.5}}
        )
        assert sent.status_code == 200
    runtime.run_until_idle()
    assert isinstance(runtime.channels.get("webhook"), WebhookChannel)
    [first] = receiver.wait_for(1)
    [(key, status, attempts, error)] = q(
        srv, "SELECT idempotency_key, status, attempts, error FROM outbox WHERE workspace_id = :ws", ws=ws.workspace_id
    )
    assert (status, attempts, error) == ("pending", 1, "webhook (destination crm) answered 429: busy")

    clock.advance(timedelta(seconds=119))  # the receiver asked for 120 s
    runtime.run_until_idle()
    assert len(receiver.received) == 1
    clock.advance(timedelta(seconds=2))
    runtime.run_until_idle()
    first, second = receiver.wait_for(2)
    assert q(srv, "SELECT status, attempts FROM outbox WHERE idempotency_key = :k", k=key) == [("sent", 2)]
    for got in (first, second):
        assert got.json() == {"type": "order.completed", "email": "ada@x.test", "total": 42.5}
        assert got.headers["webhook-id"] == webhook_id(key) and got.headers["idempotency-key"] == key
        assert got.headers["x-api-key"] == "k1"
        assert verify_signature(secret, got)
    assert int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 121

    # The answer went in as an identify, before the delivery was recorded; the engine applied it.
    events = q(
        srv,
        "SELECT type, event, message_id FROM events WHERE workspace_id = :ws AND seq > 2 ORDER BY seq",
        ws=ws.workspace_id,
    )
    assert [(e.type, e.event) for e in events] == [("identify", None), ("track", "Message Delivered")]
    assert events[0].message_id == f"nudgeflow:{key}:webhook-answer"
    [(traits,)] = q(srv, "SELECT traits FROM profiles WHERE workspace_id = :ws", ws=ws.workspace_id)
    assert orjson.loads(traits) == {"email": "ada@x.test", "crm_id": "c-9", "tier": "gold"}

    clock.advance(timedelta(hours=1))
    runtime.run_until_idle()
    logged = q(srv, "SELECT template FROM log_channel_messages WHERE workspace_id = :ws", ws=ws.workspace_id)
    assert [m.template for m in logged] == ["gold-thanks"]
    assert len(receiver.received) == 2  # nothing sent twice
