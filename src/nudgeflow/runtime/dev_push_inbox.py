"""The dev inbox's push sink: the local Web Push service of runtime/dev_push.py, run by
`serve --dev` and the demo, keeping every push it decrypts in `inbox_messages` (channel
"push") so /dev/inbox shows the pushes beside the emails.

A simulated browser subscribes to it (`POST {origin}/subscriptions`, or
`DevPushService.subscribe` in the process) and registers the subscription on a profile the
way the browser SDK does (`POST /v1/push/subscriptions`). Push messages of journeys then
go out through the real Web Push path: rendered, encrypted (RFC 8291), VAPID-signed
(RFC 8292), accepted and decrypted here. For development only, like the SMTP sink.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from sqlalchemy import Engine

from nudgeflow.core.clock import Clock, SystemClock
from nudgeflow.runtime.dev_push import DevPushService, ReceivedPush, RunningDevPush, serve_dev_push
from nudgeflow.store import dev_inbox

log = logging.getLogger("nudgeflow.dev_inbox")

PUSH = dev_inbox.PUSH


def _row(received: ReceivedPush) -> dict[str, Any]:
    note = received.notification if isinstance(received.notification, dict) else {}
    title = note.get("title") if isinstance(note.get("title"), str) else None
    doc = {
        "notification": received.notification,
        "ttl": received.ttl,
        "urgency": received.urgency,
        "topic": received.topic,
        "vapid_subject": received.subject,
        "subscription": received.subscription_id,
    }
    return {
        "mail_from": "web push",
        "rcpt_to": dev_inbox.push_recipient(received.subscription_id),
        "subject": title,
        "raw": orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode(),
        "received_at_ms": received.received_at_ms,
        "channel": PUSH,
    }


def start_dev_push(
    engine: Engine, host: str = "127.0.0.1", port: int = 0, clock: Clock | None = None
) -> RunningDevPush:
    """Serve the local Web Push service in a thread; each push it accepts is stored."""
    service = DevPushService(clock=clock or SystemClock())

    def keep(received: ReceivedPush) -> None:
        with engine.begin() as conn:
            dev_inbox.keep(conn, _row(received))

    service.on_push.append(keep)
    running = serve_dev_push(service, host, port)
    log.info("dev inbox push service listening", extra={"origin": running.url})
    return running
