"""The `log` channel's sink read back: what it recorded in place of sending.

channels/log.py writes a row of `log_channel_messages` per message it takes (in the
transaction that marks the outbox row `logged`); the demo reads them here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from nudgeflow.store.schema import log_channel_messages


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
