"""Bounce and complaint notifications already applied, by their provider's event id.

A captured webhook (or DSN) delivered again must change nothing: not re-suppress an
address an operator lifted in between, not count again. Events were already stored once
(by their message id), but the suppression was written again on every delivery. Each
applied notification item leaves a row here, in the transaction that applied it; a repeat
finds the row and is skipped whole. The row holds a SHA-256 digest of (provider, event id,
address, kind), not the address. Rows older than `KEEP_MS` are deleted as new ones come:
a signed webhook older than its few minutes of tolerance is refused anyway
(web/bounces.py), and a repeat after that long would only suppress what already was.
"""

from __future__ import annotations

from sqlalchemy import Connection

from nudgeflow.store import sql

KEEP_MS = 30 * 24 * 3600 * 1000


def first_time(conn: Connection, workspace_id: str, digest: str, now_ms: int) -> bool:
    """Record the item `digest` as applied; False when it already was (a repeat)."""
    m = sql.mark(conn)
    inserted = conn.exec_driver_sql(
        f"INSERT INTO feedback_seen (workspace_id, digest, seen_at_ms) VALUES ({m}, {m}, {m})"
        " ON CONFLICT (workspace_id, digest) DO NOTHING",
        (workspace_id, digest, now_ms),
    ).rowcount
    return inserted == 1


def forget_old(conn: Connection, now_ms: int) -> int:
    """Delete the rows past `KEEP_MS`; how many went."""
    m = sql.mark(conn)
    return conn.exec_driver_sql(f"DELETE FROM feedback_seen WHERE seen_at_ms < {m}", (now_ms - KEEP_MS,)).rowcount
