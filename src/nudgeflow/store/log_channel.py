"""The `log` channel's sink: what it recorded in place of sending, written and read back.

channels/log.py records a row of `log_channel_messages` per message it takes (in the
transaction that marks the outbox row `logged`); the demo reads them here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from nudgeflow.store import sql
from nudgeflow.store.schema import log_channel_messages

COLUMNS = ("workspace_id", "idempotency_key", "profile_id", "channel", "template", "body", "sent_at_ms")


def record(conn: Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    """Append rows of COLUMNS, in the caller's transaction."""
    sql.insert_rows(conn, "log_channel_messages", COLUMNS, list(rows))


def recorded(conn: Connection, workspace_id: str) -> list[Any]:
    """(profile_id, body, sent_at_ms) of every message the log channel recorded for the
    workspace, in the order it recorded them."""
    t = log_channel_messages.c
    return list(
        conn.execute(
            select(t.profile_id, t.body, t.sent_at_ms)
            .where(t.workspace_id == workspace_id)
            .order_by(t.sent_at_ms, t.id)
        ).all()
    )
