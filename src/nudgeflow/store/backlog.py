"""What waits to be done, read across every workspace for `nudgeflow status`: the oldest
pending timer and the outbox's backlog. Each is one read by an index (timers by due time,
the outbox by status and next attempt)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from nudgeflow.store.outbox import PENDING
from nudgeflow.store.schema import outbox, timers


@dataclass(frozen=True)
class OutboxBacklog:
    pending: int  # rows still to send, due or waiting (a retry's backoff, a lease)
    due: int  # of those, the ones due by now
    oldest_due_ms: int | None  # the earliest next attempt among pending rows


def oldest_timer_due_ms(conn: Connection) -> int | None:
    """When the earliest timer still in the table is due (a fired timer is deleted)."""
    return conn.execute(select(func.min(timers.c.due_at_ms))).scalar_one_or_none()


def outbox_backlog(conn: Connection, now_ms: int) -> OutboxBacklog:
    pending = outbox.c.status == PENDING
    count, oldest = conn.execute(select(func.count(), func.min(outbox.c.next_attempt_at_ms)).where(pending)).one()
    due = conn.execute(select(func.count()).where(pending, outbox.c.next_attempt_at_ms <= now_ms)).scalar_one()
    return OutboxBacklog(int(count), int(due), None if oldest is None else int(oldest))
