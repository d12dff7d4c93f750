"""Push through the runtime: a journey's push message reaches a browser's push service.

The runtime serves "push" with the development log channel until push is in use (a
subscription, a device token, FCM or APNs credentials), then with the PushChannel; the
message is rendered from its template with the person's context, encrypted, VAPID-signed
and accepted by a local Web Push service (runtime/dev_push.py), which decrypts it.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import insert, text

from nudgeflow.channels.base import ChannelRegistry
from nudgeflow.channels.log import LogChannel
from nudgeflow.channels.push import PushChannel
from nudgeflow.channels.wiring import configure_push, push_in_use
from nudgeflow.content.compiled_templates import save_template
from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.runtime.dev_push import RunningDevPush
from nudgeflow.runtime.embedded import EmbeddedRuntime
from nudgeflow.settings import Settings
from nudgeflow.store.push_targets import save_subscription
from nudgeflow.store.schema import outbox, profiles
from tests.support import make_workspace

TEMPLATE = {
    "channel": "push",
    "title": "Level up, {{ profile.first_name | default: 'there' }}!",
    "body": "You reached level {{ event.properties.level | default: 'new' }}.",
    "url": "https://app.example.com/levels",
    "ttl": 3600,
    "urgency": "high",
}


def _queue(engine: Any, ws: str, pid: str, key: str, now_ms: int) -> None:
    context = {"trigger": {"event": "Level Completed", "message_id": "m1", "at": now_ms, "properties": {"level": 7}}}
    with engine.begin() as conn:
        conn.execute(
            insert(outbox).values(
                workspace_id=ws,
                idempotency_key=key,
                profile_id=pid,
                run_id="r1",
                journey_id="push-level-completed",
                journey_version=1,
                step="push",
                channel="push",
                template="level-up",
                variant=None,
                marketing=1,
                payload=orjson.dumps(context).decode(),
                status="pending",
                attempts=0,
                next_attempt_at_ms=now_ms,
                created_at_ms=now_ms,
                updated_at_ms=now_ms,
            )
        )


def test_push_goes_to_the_push_service_once_in_use(engine: Any, clock: VirtualClock, dev_push: RunningDevPush) -> None:
    settings = Settings(database_url=str(engine.url))
    ws = make_workspace(engine, clock=clock).workspace_id
    now = to_ms(clock.now())
    with engine.begin() as conn:
        save_template(conn, ws, "level-up", TEMPLATE, now)
        conn.execute(
            insert(profiles).values(
                id="p_ada",
                workspace_id=ws,
                user_id="ada",
                traits=orjson.dumps({"first_name": "Ada"}).decode(),
                created_at_ms=now,
                updated_at_ms=now,
            )
        )

    # Nobody subscribed anywhere yet: push stays with the log channel.
    registry = ChannelRegistry.development()
    if engine.dialect.name == "sqlite":  # a database of its own (PostgreSQL's is shared by the session's tests)
        assert not push_in_use(engine, settings)
        assert configure_push(registry, engine, settings, clock) is None
        assert isinstance(registry.get("push"), LogChannel)
    browser = dev_push.service.subscribe()
    with engine.begin() as conn:
        save_subscription(conn, ws, "p_ada", browser.info(), now, user_agent="test")
    assert push_in_use(engine, settings)
    channel = configure_push(registry, engine, settings, clock)
    assert isinstance(channel, PushChannel) and registry.get("push") is channel
    assert isinstance(registry.get("email"), LogChannel)

    # Through the runtime as `serve` builds it (its own registry, push configured at start).
    runtime = EmbeddedRuntime(engine, None, clock, settings)
    _queue(engine, ws, "p_ada", "k-level-7", now)
    runtime.run_until_idle()
    assert isinstance(runtime.channels.get("push"), PushChannel)
    with engine.connect() as conn:
        status, error = conn.execute(
            text("SELECT status, error FROM outbox WHERE workspace_id = :ws AND idempotency_key = 'k-level-7'"),
            {"ws": ws},
        ).one()
    assert (status, error) == ("sent", None)
    got = dev_push.service.received_for(browser.id)
    assert len(got) == 1
    note = got[0].notification
    assert note["title"] == "Level up, Ada!" and note["body"] == "You reached level 7."
    assert note["url"] == "https://app.example.com/levels" and note["key"] == "k-level-7"
    assert note["report_url"].startswith("http") and "/t/n/" in note["report_url"]
    assert got[0].urgency == "high" and 0 < got[0].ttl <= 3600


def test_an_expired_push_is_never_sent(engine: Any, clock: VirtualClock, dev_push: RunningDevPush) -> None:
    settings = Settings(database_url=str(engine.url))
    ws = make_workspace(engine, clock=clock).workspace_id
    now = to_ms(clock.now())
    browser = dev_push.service.subscribe()
    with engine.begin() as conn:
        save_template(conn, ws, "level-up", TEMPLATE, now)
        conn.execute(
            insert(profiles).values(
                id="p_bo", workspace_id=ws, user_id="bo", traits="{}", created_at_ms=now, updated_at_ms=now
            )
        )
        save_subscription(conn, ws, "p_bo", browser.info(), now)
    _queue(engine, ws, "p_bo", "k-stale", now)
    clock.advance(2 * 3600)  # the template's ttl is one hour: the outage outlasted it
    runtime = EmbeddedRuntime(engine, None, clock, settings)
    runtime.run_until_idle()
    with engine.connect() as conn:
        status, error = conn.execute(
            text("SELECT status, error FROM outbox WHERE workspace_id = :ws AND idempotency_key = 'k-stale'"),
            {"ws": ws},
        ).one()
    assert status == "failed" and "expired" in error
    assert dev_push.service.received_for(browser.id) == []
