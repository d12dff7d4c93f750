"""Failed console sign-ins, counted in the database: the limit on them (per email, per client
address, in a sliding window: web/console/sign_in.py) then holds across every serving process
on one database, not once per process.

One row per failed sign-in and key. A key is "email:…" or "address:…", stored as its SHA-256
digest: the emails people mistype and their addresses are not kept in clear. Rows past the
window are deleted as new failures are written, so the table holds at most the window's
failures. Times are the app clock's wall time (milliseconds): the processes share no other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import Connection

from nudgeflow.store import sql
from nudgeflow.store.workspaces import key_digest  # the SHA-256 hex digest keys are kept as


def retry_after_ms(conn: Connection, limits: Mapping[str, int], window_ms: int, now_ms: int) -> int:
    """Milliseconds until a sign-in for these keys (key -> how many failures it may have in the
    window) may be tried; 0: now. A key at its limit waits until its limit-th most recent
    failure leaves the window."""
    m = sql.mark(conn)
    wait = 0
    for key, limit in limits.items():
        row = conn.exec_driver_sql(
            f"SELECT failed_at_ms FROM sign_in_failures WHERE key_digest = {m} AND failed_at_ms > {m}"
            f" ORDER BY failed_at_ms DESC LIMIT 1 OFFSET {int(limit) - 1}",
            (key_digest(key), now_ms - window_ms),
        ).first()
        if row is not None:
            wait = max(wait, int(row[0]) + window_ms - now_ms)
    return wait


def record(conn: Connection, keys: Iterable[str], window_ms: int, now_ms: int) -> None:
    """A failed sign-in for each key; the failures past the window are deleted."""
    sql.execute_many(
        conn,
        "INSERT INTO sign_in_failures (key_digest, failed_at_ms) VALUES (?, ?)",
        [(key_digest(key), now_ms) for key in sorted(set(keys))],
    )
    m = sql.mark(conn)
    conn.exec_driver_sql(f"DELETE FROM sign_in_failures WHERE failed_at_ms <= {m}", (now_ms - window_ms,))
