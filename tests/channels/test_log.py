"""The log channel and the channel registry."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import text

from nudgeflow.channels.base import (
    ChannelRegistry,
    DatabaseSink,
    OutboundMessage,
    PermanentError,
    RemoteChannel,
    TransientError,
)
from nudgeflow.channels.log import LogChannel
from nudgeflow.store.workspaces import create_workspace


def message(**changes: Any) -> OutboundMessage:
    base: dict[str, Any] = dict(
        key="run_1:welcome:1",
        workspace_id="ws_x",
        profile_id="prf_1",
        run_id="run_1",
        journey_id="welcome",
        step="welcome",
        channel="email",
        template="welcome",
        variant=None,
        marketing=True,
        context={"trigger": {"event": "Signed Up"}},
        traits={"email": "ada@example.com", "firstName": "Ada", "password_hint": "x", "plan": "pro"},
    )
    base.update(changes)
    return OutboundMessage(**base)


def test_the_body_holds_the_context_and_only_the_address_traits() -> None:
    body = LogChannel().body(message(variant="b"))
    assert body == {
        "to": {"email": "ada@example.com", "firstName": "Ada"},
        "channel": "email",
        "template": "welcome",
        "variant": "b",
        "marketing": True,
        "journey_id": "welcome",
        "step": "welcome",
        "run_id": "run_1",
        "context": {"trigger": {"event": "Signed Up"}},
    }


def test_known_templates_refuse_an_unknown_one() -> None:
    LogChannel().check(message(template="anything"))  # no list: everything goes
    channel = LogChannel(templates={"welcome"})
    channel.check(message())
    with pytest.raises(PermanentError) as err:
        channel.check(message(template="promo"))
    assert err.value.reason == "template 'promo' not found"


def test_errors_carry_their_reason_and_retry_after() -> None:
    transient = TransientError("429 too many requests", retry_after_s=30)
    assert (transient.reason, transient.retry_after_s, str(transient)) == (
        "429 too many requests",
        30,
        "429 too many requests",
    )
    assert TransientError("timeout").retry_after_s is None
    assert PermanentError("bounced").reason == "bounced"


def test_the_development_registry_serves_email_and_push_with_the_log_channel() -> None:
    registry = ChannelRegistry.development()
    assert registry.names() == ["email", "log", "push"]
    assert registry.get("email") is registry.get("log") is registry.get("push")
    assert isinstance(registry.get("log"), DatabaseSink)
    assert registry.get("sms") is None
    only_log = ChannelRegistry.development(aliases=())
    assert only_log.names() == ["log"]

    class Webhook(RemoteChannel):
        name = "webhook"

    registry.register("webhook", Webhook())
    assert isinstance(registry.get("webhook"), RemoteChannel)


def test_the_sink_writes_in_the_callers_transaction(engine: Any) -> None:
    with engine.begin() as conn:
        ws = create_workspace(conn, "log-channel", 0).workspace_id
    channel = LogChannel()
    first, second = message(workspace_id=ws), message(workspace_id=ws, key="run_1:reminder:1", template="reminder")
    # Rolled back with the transaction: nothing recorded.
    with pytest.raises(RuntimeError), engine.begin() as conn:
        channel.sink_in_transaction(conn, [first], 1000)
        raise RuntimeError("rolled back")
    with engine.begin() as conn:
        channel.sink_in_transaction(conn, [first, second], 2000)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT idempotency_key, template, channel, body, sent_at_ms FROM log_channel_messages "
                "WHERE workspace_id = :w ORDER BY id"
            ),
            {"w": ws},
        ).all()
    assert [(r.idempotency_key, r.template, r.channel, r.sent_at_ms) for r in rows] == [
        ("run_1:welcome:1", "welcome", "email", 2000),
        ("run_1:reminder:1", "reminder", "email", 2000),
    ]
    assert orjson.loads(rows[0].body)["to"] == {"email": "ada@example.com", "firstName": "Ada"}
