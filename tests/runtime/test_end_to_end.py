"""The whole path with the real core: HTTP ingest -> event log -> engine -> outbox -> log channel,
over a live server on loopback, on both databases, with a virtual clock."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import orjson

from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.model.journeys import Journey
from nudgeflow.settings import Settings
from nudgeflow.store import journeys as journey_store
from nudgeflow.web.app import create_app
from tests.support import LiveServer

WELCOME = {
    "id": "welcome",
    "name": "Welcome series",
    "trigger": {"type": "event", "event": "Signed Up"},
    "steps": {
        "first": {"type": "send", "channel": "email", "template": "welcome-1", "next": "wait"},
        "wait": {"type": "wait", "duration": "1d", "next": "second"},
        "second": {"type": "send", "channel": "email", "template": "welcome-2"},
    },
}

# A send through a channel nobody serves, which says to end the run when it fails.
STRICT = {
    "id": "strict",
    "name": "Strict SMS",
    "trigger": {"type": "event", "event": "Trial Started"},
    "steps": {
        "text": {"type": "send", "channel": "sms", "template": "trial-sms", "on_failure": "exit", "next": "wait"},
        "wait": {"type": "wait", "duration": "1d", "next": "mail"},
        "mail": {"type": "send", "channel": "email", "template": "trial-mail"},
    },
}


def publish(server: LiveServer, workspace_id: str, *definitions: dict[str, Any]) -> None:
    now = to_ms(server.state.clock.now())
    with server.state.engine.begin() as conn:
        for definition in definitions:
            journey_store.apply_draft(conn, workspace_id, Journey.model_validate(definition), now)
            journey_store.publish(conn, workspace_id, definition["id"], now)


def q(server: LiveServer, sql: str, **params: Any) -> list[Any]:
    from sqlalchemy import text

    with server.state.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(0.02)
    return value


def test_a_welcome_series_over_http_sends_now_and_a_day_later(server: tuple[LiveServer, VirtualClock]) -> None:
    srv, clock = server
    ws = srv.workspace()
    publish(srv, ws.workspace_id, WELCOME)
    runtime = srv.state.runtime
    with srv.client(auth=(ws.write_key, "")) as client:
        assert (
            client.post("/v1/identify", json={"userId": "ada", "traits": {"email": "ada@example.com"}}).status_code
            == 200
        )
        assert (
            client.post(
                "/v1/track", json={"userId": "ada", "event": "Signed Up", "properties": {"plan": "pro"}}
            ).status_code
            == 200
        )
        assert client.post("/v1/track", json={"userId": "bob", "event": "Product Viewed"}).status_code == 200
    start = to_ms(clock.now())
    runtime.run_until_idle()

    sent = q(srv, "SELECT template, channel, body, sent_at_ms FROM log_channel_messages ORDER BY id")
    assert [(m.template, m.channel, m.sent_at_ms) for m in sent] == [("welcome-1", "email", start)]
    body = orjson.loads(sent[0].body)
    assert body["to"] == {"email": "ada@example.com"}
    assert body["context"]["trigger"]["event"] == "Signed Up"

    clock.advance(timedelta(hours=23, minutes=59))
    runtime.run_until_idle()
    assert len(q(srv, "SELECT id FROM log_channel_messages")) == 1
    clock.advance(timedelta(minutes=1))
    runtime.run_until_idle()
    sent = q(srv, "SELECT template, sent_at_ms FROM log_channel_messages ORDER BY id")
    assert [(m.template, m.sent_at_ms) for m in sent] == [("welcome-1", start), ("welcome-2", start + 86_400_000)]

    # Both messages were logged (no channel is configured: never "sent"), and their
    # "Message Logged" events went through the event log.
    [(state_doc,)] = q(
        srv,
        "SELECT state FROM profile_state WHERE profile_id IN (SELECT profile_id FROM identities WHERE key = 'u:ada')",
    )
    outbox = q(srv, "SELECT idempotency_key, status, attempts FROM outbox ORDER BY id")
    assert [(o.status, o.attempts) for o in outbox] == [("logged", 1), ("logged", 1)]
    logged = q(srv, "SELECT message_id FROM events WHERE event = 'Message Logged' ORDER BY seq")
    assert [d.message_id for d in logged] == [f"nudgeflow:{o.idempotency_key}:logged" for o in outbox]
    assert q(srv, "SELECT seq FROM events WHERE event IN ('Message Sent', 'Message Delivered')") == []
    runs = q(srv, "SELECT journey_id, status FROM journey_runs")
    assert [(r.journey_id, r.status) for r in runs] == [("welcome", "done")]
    assert q(srv, "SELECT * FROM timers") == []
    del state_doc

    # Nothing more, ever: the run is over.
    clock.advance(timedelta(days=30))
    assert runtime.run_until_idle().messages == 0

    metrics = httpx.get(srv.url + "/metrics").text
    assert "nudgeflow_messages_sent_total 0.0" in metrics and "nudgeflow_messages_logged_total 2.0" in metrics
    assert "nudgeflow_engine_timers_fired_total 1.0" in metrics
    assert "nudgeflow_engine_lag_events 0.0" in metrics
    assert "nudgeflow_engine_errors_total 0.0" in metrics
    # Nothing waits: the outbox is sent (logged) and no timer is left.
    assert "nudgeflow_outbox_pending 0.0" in metrics and "nudgeflow_outbox_due 0.0" in metrics
    assert "nudgeflow_outbox_oldest_due_seconds 0.0" in metrics
    assert "nudgeflow_timer_overdue_seconds 0.0" in metrics


def test_serve_runs_the_engine_in_the_background(server: tuple[LiveServer, VirtualClock]) -> None:
    srv, clock = server
    ws = srv.workspace()
    publish(srv, ws.workspace_id, WELCOME)
    with srv.client(auth=(ws.write_key, "")) as client:
        client.post("/v1/track", json={"userId": "cy", "event": "Signed Up"}).raise_for_status()
    wait_for(lambda: q(srv, "SELECT template FROM log_channel_messages"))
    clock.advance(timedelta(days=1))  # the poll finds the timer
    wait_for(lambda: len(q(srv, "SELECT template FROM log_channel_messages")) == 2)


def test_a_failed_send_with_on_failure_exit_ends_the_run(server: tuple[LiveServer, VirtualClock]) -> None:
    srv, clock = server
    ws = srv.workspace()
    publish(srv, ws.workspace_id, STRICT)
    with srv.client(auth=(ws.write_key, "")) as client:
        client.post("/v1/track", json={"userId": "dee", "event": "Trial Started"}).raise_for_status()
    runtime = srv.state.runtime
    runtime.run_until_idle()
    [row] = q(srv, "SELECT status, error, template FROM outbox")
    assert (row.status, row.error, row.template) == ("failed", "no channel named 'sms'", "trial-sms")
    [run] = q(srv, "SELECT status, exit_reason FROM journey_runs")
    assert (run.status, run.exit_reason) == ("exited", "message_failed")
    clock.advance(timedelta(days=2))
    runtime.run_until_idle()
    assert q(srv, "SELECT * FROM log_channel_messages") == []


def test_the_engine_can_be_switched_off(rt_url: str) -> None:
    settings = Settings.from_env({"NUDGEFLOW_ENGINE": "0", "NUDGEFLOW_DATABASE_URL": rt_url})
    assert settings.engine_enabled is False
    assert create_app(settings).state.nudgeflow.runtime is None
    assert Settings.from_env({"NUDGEFLOW_DATABASE_URL": rt_url}).engine_enabled is True
    assert Settings.from_env({"NUDGEFLOW_LOG_CHANNELS": "email, sms"}).log_channels == ("email", "sms")
    assert Settings.from_env({"NUDGEFLOW_ENGINE_BATCH_MS": "10"}).engine_batch_ms == 10.0
    assert Settings.from_env({"NUDGEFLOW_ENGINE_LINGER_MS": "0"}).engine_linger_ms == 0.0
    assert Settings().engine_linger_ms > 0
