"""Failed console sign-ins, counted in the database: the limit on them (per email, per client
address, in a sliding window: web/console/sign_in.py) then holds across every serving process
on one database, not once per process.

One row per failed sign-in and key. A key is "email:…" or "address:…", stored as its SHA-256
digest: the emails people mistype and their addresses are not kept in clear. Rows past the
window are deleted as new failures are written, so the table holds at most the window's
failures. Times are the app clock's wall time (milliseconds): the processes share no other.

A sign-in in progress is counted as a failure from its start (`begin`): its rows are written,
and committed, before the limit is read, and taken back (`forget`) if it is refused or
succeeds. Counting only once the password had been found wrong let every sign-in sent at
the same moment pass the check while the others were still hashing: twenty at once were
twenty guesses, not five.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import Connection, delete, insert

from nudgeflow.store import sql
from nudgeflow.store.schema import sign_in_failures
from nudgeflow.store.workspaces import key_digest  # the SHA-256 hex digest keys are kept as


def retry_after_ms(conn: Connection, limits: Mapping[str, int], window_ms: int, now_ms: int, *, own: int = 0) -> int:
    """Milliseconds until a sign-in for these keys (key -> how many failures it may have in the
    window) may be tried; 0: now. A key at its limit waits until its limit-th most recent
    failure leaves the window. `own`: rows per key that are the asking sign-in's own (begun)."""
    m = sql.mark(conn)
    wait = 0
    for key, limit in limits.items():
        row = conn.exec_driver_sql(
            f"SELECT failed_at_ms FROM sign_in_failures WHERE key_digest = {m} AND failed_at_ms > {m}"
            f" ORDER BY failed_at_ms DESC, id DESC LIMIT 1 OFFSET {int(limit) - 1 + int(own)}",
            (key_digest(key), now_ms - window_ms),
        ).first()
        if row is not None:
            wait = max(wait, int(row[0]) + window_ms - now_ms)
    return wait


def begin(conn: Connection, keys: Iterable[str], window_ms: int, now_ms: int) -> list[int]:
    """Count a sign-in as failed from now, for each key, before it is checked; the ids of its
    rows, for `forget`. Rows past the window are deleted."""
    ids = []
    for key in sorted(set(keys)):
        made = conn.execute(
            insert(sign_in_failures)
            .values(key_digest=key_digest(key), failed_at_ms=now_ms)
            .returning(sign_in_failures.c.id)
        )
        ids.append(int(made.scalar_one()))
    m = sql.mark(conn)
    conn.exec_driver_sql(f"DELETE FROM sign_in_failures WHERE failed_at_ms <= {m}", (now_ms - window_ms,))
    return ids


def forget(conn: Connection, ids: Iterable[int]) -> None:
    """Take back a begun sign-in's rows: it was refused without trying, or it succeeded."""
    wanted = list(ids)
    if wanted:
        conn.execute(delete(sign_in_failures).where(sign_in_failures.c.id.in_(wanted)))
