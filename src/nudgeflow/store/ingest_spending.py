"""What each serving process has let through of each workspace's ingest rate limit, shared.

The per-workspace rate limit (ingest/ratelimit.py) is a token bucket in each process's
memory. Several API processes on one database would each let the whole rate through, so
each also keeps, here, a running total of the events it admitted per workspace, and reads
the other processes' totals: what they admitted since it last looked is taken out of its
own bucket (ingest/shared_limits.py). One row per (workspace, process), only ever added to.

Rows of a process that stopped are deleted once they are STALE_MS old; a process that
comes back under the same id starts a new row (its id carries its start time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import Connection

from nudgeflow.store import sql

STALE_MS = 3_600_000  # a process not heard of for an hour is gone


def exchange(
    conn: Connection, process_id: str, admitted: Mapping[str, int], watched: Iterable[str], now_ms: int
) -> dict[tuple[str, str], tuple[int, int]]:
    """Add `admitted` ({workspace: events since the last exchange}) to this process's totals,
    and return the other live processes' (total, created_at_ms) for the `watched`
    workspaces, by (workspace, process). One short transaction, the caller's."""
    sql.execute_many(
        conn,
        "INSERT INTO ingest_spending (workspace_id, process_id, admitted, created_at_ms, updated_at_ms)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, process_id) DO UPDATE SET"
        " admitted = ingest_spending.admitted + excluded.admitted, updated_at_ms = excluded.updated_at_ms",
        [(ws, process_id, n, now_ms, now_ms) for ws, n in sorted(admitted.items()) if n > 0],
    )
    out: dict[tuple[str, str], tuple[int, int]] = {}
    workspaces = sorted(set(watched))
    if not workspaces:
        return out
    m = sql.mark(conn)
    for ws, proc, total, created in sql.select_in(
        conn,
        f"SELECT workspace_id, process_id, admitted, created_at_ms FROM ingest_spending WHERE process_id <> {m}"
        f" AND updated_at_ms > {m} AND workspace_id IN",
        workspaces,
        before=(process_id, now_ms - STALE_MS),
    ):
        out[(str(ws), str(proc))] = (int(total), int(created))
    return out


def forget_stale(conn: Connection, now_ms: int) -> int:
    """Delete the rows of processes not heard of for STALE_MS; returns how many."""
    m = sql.mark(conn)
    result = conn.exec_driver_sql(f"DELETE FROM ingest_spending WHERE updated_at_ms < {m}", (now_ms - STALE_MS,))
    return int(result.rowcount or 0)
