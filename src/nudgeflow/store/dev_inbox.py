"""The dev inbox (`serve --dev`, the demo): what the local SMTP sink and Web Push service received.

runtime/dev_smtp.py and runtime/dev_push_inbox.py keep each message here; web/dev_inbox.py
shows them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, insert, select

from nudgeflow.store.schema import inbox_messages

PUSH = "push"


def push_recipient(subscription_id: str) -> str:
    """The `rcpt_to` of a push the dev push service received for this subscription."""
    return f"subscription {subscription_id}"


def push_recipients(endpoints: Iterable[str]) -> list[str]:
    """The `rcpt_to` of the pushes sent to these endpoints, for those of the dev push service
    (`{origin}/push/{subscription id}`, runtime/dev_push.py): what the inbox holds of a
    person's push subscriptions (store/privacy.py exports and erases them)."""
    found = set()
    for endpoint in endpoints:
        path = urlsplit(endpoint).path
        head, sep, sub_id = path.rpartition("/push/")
        if sep and not head.strip("/") and sub_id and "/" not in sub_id:
            found.add(push_recipient(sub_id))
    return sorted(found)


def keep(conn: Connection, row: dict[str, Any]) -> None:
    """Store one received message (a row of `inbox_messages`, its columns by name)."""
    conn.execute(insert(inbox_messages).values(**row))


def get(conn: Connection, message_id: int) -> Any:
    """(raw, channel) of one message, or None."""
    t = inbox_messages.c
    return conn.execute(select(t.raw, t.channel).where(t.id == message_id)).one_or_none()


def newest(conn: Connection, limit: int = 500) -> list[Any]:
    """(id, mail_from, rcpt_to, subject, received_at_ms, channel) of the newest messages first."""
    t = inbox_messages.c
    return list(
        conn.execute(
            select(t.id, t.mail_from, t.rcpt_to, t.subject, t.received_at_ms, t.channel)
            .order_by(t.id.desc())
            .limit(limit)
        ).all()
    )


def received(conn: Connection, channel: str) -> list[Any]:
    """(id, rcpt_to, subject, raw) of every message received on `channel` ("email" or
    "push"), oldest first."""
    t = inbox_messages.c
    return list(
        conn.execute(select(t.id, t.rcpt_to, t.subject, t.raw).where(t.channel == channel).order_by(t.id)).all()
    )
