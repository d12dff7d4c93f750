"""The outbox: messages the engine decided to send, claimed, leased and recorded.

The engine queues a row per message (store/effects_writer.py, keyed by its idempotency
key, so a batch decided twice queues it once). The dispatcher (runtime/dispatcher.py)
claims the due rows, leases those it sends outside any transaction, and records each
outcome; the statuses below are the life of a row.

This is one side of the seam the distributed runtime (issue 17: PostgreSQL + NATS
JetStream) swaps: a second implementation would hand the claimed messages to senders
through a work queue stream (a lease becomes the stream's ack wait) instead of
`FOR UPDATE SKIP LOCKED` over rows, behind these same functions and statuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from nudgeflow.store import sql
from nudgeflow.store.schema import outbox

# The statuses of an outbox row.
PENDING, SENT, FAILED = "pending", "sent", "failed"
SUPPRESSED = "suppressed"  # not sent, by consent or suppression (reason in `error`)
LOGGED = "logged"  # taken by the log channel in place of an unconfigured one; not sent

OUTBOX_COLUMNS = (
    "workspace_id",
    "idempotency_key",
    "profile_id",
    "run_id",
    "journey_id",
    "journey_version",
    "step",
    "channel",
    "template",
    "variant",
    "marketing",
    "payload",
    "status",
    "attempts",
    "next_attempt_at_ms",
    "created_at_ms",
    "updated_at_ms",
    "sent_at_ms",
    "error",
)

CLAIM_COLUMNS = (
    "id, workspace_id, idempotency_key, profile_id, run_id, journey_id, journey_version, step,"
    " channel, template, variant, marketing, payload, attempts, created_at_ms"
)


def queue(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert rows of OUTBOX_COLUMNS; a repeat of an idempotency key is queued once."""
    sql.insert_rows(conn, "outbox", OUTBOX_COLUMNS, rows, conflict="workspace_id, idempotency_key")


def claim_due(conn: Connection, now_ms: int, limit: int) -> Sequence[Any]:
    """The pending rows that are due (CLAIM_COLUMNS), oldest first; locked on PostgreSQL,
    skipping rows another dispatcher holds."""
    m = sql.mark(conn)
    suffix = " FOR UPDATE SKIP LOCKED" if sql.is_postgres(conn) else ""
    return conn.exec_driver_sql(
        f"SELECT {CLAIM_COLUMNS} FROM outbox WHERE status = {m} AND next_attempt_at_ms <= {m}"
        f" ORDER BY next_attempt_at_ms, id LIMIT {m}{suffix}",
        (PENDING, now_ms, limit),
    ).all()


def lease(conn: Connection, leases: Sequence[tuple[int, int, int, int, int]]) -> None:
    """(attempts, next_attempt_at_ms, leased_until_ms, updated_at_ms, id) per leased row."""
    sql.execute_many(
        conn,
        "UPDATE outbox SET attempts = ?, next_attempt_at_ms = ?, leased_until_ms = ?, updated_at_ms = ? WHERE id = ?",
        leases,
    )


def record(
    conn: Connection,
    sent: Sequence[tuple[Any, ...]],
    retry: Sequence[tuple[Any, ...]],
    failed: Sequence[tuple[Any, ...]],
    *,
    leased: bool,
) -> None:
    """Record outcomes: `sent` (status, attempts, sent_at_ms, updated_at_ms, id), `retry`
    (attempts, next_attempt_at_ms, updated_at_ms, error, id), `failed` (status, attempts,
    updated_at_ms, error, id); each followed, when `leased`, by (PENDING, attempts)."""
    # A leased row is only updated while the lease is ours: same attempt, still pending.
    guard = " AND status = ? AND attempts = ?" if leased else ""
    sql.execute_many(
        conn,
        "UPDATE outbox SET status = ?, attempts = ?, sent_at_ms = ?, updated_at_ms = ?, error = NULL "
        f"WHERE id = ?{guard}",
        sent,
    )
    sql.execute_many(
        conn,
        f"UPDATE outbox SET attempts = ?, next_attempt_at_ms = ?, updated_at_ms = ?, error = ? WHERE id = ?{guard}",
        retry,
    )
    sql.execute_many(
        conn, f"UPDATE outbox SET status = ?, attempts = ?, updated_at_ms = ?, error = ? WHERE id = ?{guard}", failed
    )


def next_due(conn: Connection, now_ms: int) -> tuple[int, str] | None:
    """(id, idempotency key) of the pending row the next claim would take first."""
    m = sql.mark(conn)
    row = conn.exec_driver_sql(
        f"SELECT id, idempotency_key FROM outbox WHERE status = {m} AND next_attempt_at_ms <= {m}"
        " ORDER BY next_attempt_at_ms, id LIMIT 1",
        (PENDING, now_ms),
    ).first()
    return (row[0], row[1]) if row is not None else None


def fail(conn: Connection, row_id: int, error: str, now_ms: int) -> None:
    """Mark one row failed, with the reason (the safety net's last resort)."""
    sql.execute_many(
        conn,
        "UPDATE outbox SET status = ?, error = ?, updated_at_ms = ? WHERE id = ?",
        [(FAILED, error, now_ms, row_id)],
    )


def profile_of(conn: Connection, workspace_id: str, idempotency_key: str) -> str | None:
    """The profile a message was queued for, or None."""
    m = sql.mark(conn)
    row = conn.exec_driver_sql(
        f"SELECT profile_id FROM outbox WHERE workspace_id = {m} AND idempotency_key = {m}",
        (workspace_id, idempotency_key),
    ).first()
    return row[0] if row is not None else None


def message_origin(conn: Connection, workspace_id: str, idempotency_key: str) -> Any:
    """(journey_id, run_id, step, channel, template, variant) of a queued message, or None."""
    t = outbox.c
    return conn.execute(
        select(t.journey_id, t.run_id, t.step, t.channel, t.template, t.variant).where(
            t.workspace_id == workspace_id, t.idempotency_key == idempotency_key
        )
    ).first()


# --- reading back what was sent (the demo's report) --------------------------------------------


def sent_messages(conn: Connection, workspace_id: str, channels: Sequence[str]) -> list[Any]:
    """(profile_id, journey_id, step, template, variant, sent_at_ms, channel) of the
    workspace's messages sent on `channels`, in no particular order."""
    t = outbox.c
    return list(
        conn.execute(
            select(t.profile_id, t.journey_id, t.step, t.template, t.variant, t.sent_at_ms, t.channel).where(
                t.workspace_id == workspace_id, t.channel.in_(list(channels)), t.status == SENT
            )
        ).all()
    )


def failed_steps(conn: Connection, workspace_id: str) -> list[Any]:
    """(journey_id, step) of each of the workspace's messages that failed for good."""
    t = outbox.c
    return list(conn.execute(select(t.journey_id, t.step).where(t.workspace_id == workspace_id, t.status == FAILED)))


def origins(conn: Connection, workspace_id: str, channel: str) -> list[Any]:
    """(idempotency_key, journey_id, step, template, profile_id) of every message the
    workspace queued on `channel`, whatever its status: what a received message's key
    (the X-Nudgeflow-Message-Key header, a push's `key`) is matched against."""
    t = outbox.c
    return list(
        conn.execute(
            select(t.idempotency_key, t.journey_id, t.step, t.template, t.profile_id).where(
                t.workspace_id == workspace_id, t.channel == channel
            )
        ).all()
    )
