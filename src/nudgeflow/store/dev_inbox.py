"""The dev inbox (`serve --dev`, the demo): what the local SMTP sink and Web Push service received.

runtime/dev_smtp.py and runtime/dev_push_inbox.py keep each message here; web/dev_inbox.py
shows them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from nudgeflow.store.schema import inbox_messages


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
