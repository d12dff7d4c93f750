"""The partitioned event log: each event the engine decides has a partition (the person's,
model/partitions.partition_of) and an offset in it, 1, 2, 3, ... in commit order.

`partition_heads` holds, per partition, the last offset given. A writer takes the offsets of
its events with `take_offsets` as late in its transaction as it can, and inserts the events
with them (store/event_log.py, store/ingest_writer.py).

Why the order of offsets is the order of commits within a partition: `take_offsets` locks the
partition's head row (an UPDATE, or SELECT ... FOR UPDATE, on PostgreSQL) and the lock is held
until the writer's transaction ends. A second writer wanting offsets in the same partition
waits on that lock until the first commits or rolls back, and then reads the head the first
left: its offsets come after the first's, and it cannot commit before the first has. The first
is visible to every reader before it lets go of the lock (PostgreSQL marks a transaction
committed before it releases its locks), so no reader ever sees offset k+1 while k is still
to come. A rollback takes its head change back with it: the next writer gives the same
offsets again. What can leave an offset unused is an insert skipped as a duplicate message
(ON CONFLICT DO NOTHING): readers step over it, they never wait for an offset.
Several partitions are locked in ascending order in one call, so two writers cannot deadlock
on them; a transaction makes one call (store/event_log.appending gathers its events).

On SQLite one writer holds the database at a time, which gives the same order.

The engine's own Segment Entered / Exited are never decided again and have no partition.

The partition count P is the number of head rows: 64 (model/partitions.DEFAULT_PARTITIONS)
unless `set_partition_count` chose another before the log's first event. Each connection
reads it once (`partition_count`) and keeps it: P is fixed for a deployment's life, and
choosing it is done with every process stopped (docs/partitions.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from nudgeflow.errors import StoreError
from nudgeflow.model.partitions import check_partitions, partition_of
from nudgeflow.store import sql


class UnknownPartition(StoreError, LookupError):
    """A partition with no head row (outside 0..P-1)."""


class PartitionCountLocked(StoreError, RuntimeError):
    """The partition count cannot change now: the log holds events, or workers are alive."""


_COUNT = "nudgeflow.partition_count"


def partition_count(conn: Connection) -> int:
    """P, the deployment's partition count: the head rows, read once per pooled connection
    (conn.info outlives transactions) — it changes only with every process stopped."""
    cached = conn.info.get(_COUNT)
    if cached is None:
        cached = int(conn.exec_driver_sql("SELECT count(*) FROM partition_heads").scalar_one())
        conn.info[_COUNT] = cached
    return int(cached)


def partition_for(conn: Connection, workspace_id: str, canonical_id: str) -> int:
    """The partition of a person in this deployment (model/partitions.partition_of with P)."""
    return partition_of(workspace_id, canonical_id, partition_count(conn))


def set_partition_count(conn: Connection, partitions: int, live_workers: int) -> int:
    """Make the log's partition count `partitions`; returns the count it had.

    Only before the log's first event: an event's partition and offset are part of the
    stored data's meaning (positions, merges, timers all point at them), and moving people
    between partitions would mean rewriting them all. And only with no engine worker alive
    (`live_workers`, counted by the caller from the leases' heartbeats): a process reads P
    once, so the others must be stopped too — the command's help and docs/partitions.md say so.
    """
    check_partitions(partitions)
    m = sql.mark(conn)
    suffix = " FOR UPDATE" if sql.is_postgres(conn) else ""
    # Lock every head row: an ingest transaction under way finishes first, or waits for this.
    had = len(conn.exec_driver_sql(f"SELECT partition FROM partition_heads{suffix}").all())
    if live_workers:
        raise PartitionCountLocked(
            f"{live_workers} engine worker(s) are alive: "
            "stop every nudgeflow process before changing the partition count"
        )
    if conn.exec_driver_sql("SELECT 1 FROM events WHERE partition IS NOT NULL LIMIT 1").first() is not None:
        raise PartitionCountLocked(
            f"the event log already holds events in its {had} partitions: the partition count is chosen before the "
            "first event (moving people between partitions would mean rewriting every event, position and timer)"
        )
    conn.exec_driver_sql(f"DELETE FROM partition_heads WHERE partition >= {m}", (partitions,))
    sql.execute_many(
        conn, "INSERT INTO partition_heads (partition, head) VALUES (?, 0)", [(p,) for p in range(had, partitions)]
    )
    # Positions of partitions that no longer exist would read as lag in status and metrics.
    conn.exec_driver_sql(f"DELETE FROM partition_positions WHERE partition >= {m}", (partitions,))
    conn.info[_COUNT] = partitions
    return had


def take_offsets(conn: Connection, counts: Mapping[int, int]) -> dict[int, int]:
    """Give `counts[p]` new offsets in each partition p; {p: the first one given}.

    The head rows are locked in ascending partition order and stay locked to the end of the
    caller's transaction (see the module's docstring). A count of 0 only locks the row, and
    returns head + 1: the head itself is the last offset given before this transaction.
    """
    if not counts:
        return {}
    parts = sorted(counts)
    m = sql.mark(conn)
    # ORDER BY with FOR UPDATE locks the rows in that order (PostgreSQL locks above the sort).
    suffix = " ORDER BY partition FOR UPDATE" if sql.is_postgres(conn) else " ORDER BY partition"
    ids = sql.padded(parts, 64)
    found: dict[int, int] = {
        int(p): int(h)
        for p, h in conn.exec_driver_sql(
            f"SELECT partition, head FROM partition_heads WHERE partition IN {sql.in_list(m, len(ids))}{suffix}",
            tuple(ids),
        ).all()
    }
    missing = [p for p in parts if p not in found]
    if missing:
        raise UnknownPartition(f"no partition head for partition(s) {missing}")
    grow = [(counts[p], p) for p in parts if counts[p] > 0]
    # The rows are already locked: the order of these updates no longer matters.
    sql.execute_many(conn, "UPDATE partition_heads SET head = head + ? WHERE partition = ?", grow)
    return {p: found[p] + 1 for p in parts}


def heads(conn: Connection) -> dict[int, int]:
    """The last offset given in every partition, read without locking."""
    return {int(p): int(h) for p, h in conn.exec_driver_sql("SELECT partition, head FROM partition_heads").all()}


def head(conn: Connection, partition: int) -> int:
    """The last offset given in `partition` (0 before the first), read without locking."""
    value = conn.exec_driver_sql(
        f"SELECT head FROM partition_heads WHERE partition = {sql.mark(conn)}", (partition,)
    ).scalar()
    if value is None:
        raise UnknownPartition(f"no partition head for partition {partition}")
    return int(value)


def read(conn: Connection, partition: int, after_offset: int, limit: int) -> Sequence[Any]:
    """(part_offset, seq, workspace_id, profile_id, timestamp_ms, payload) of the partition's
    next events after `after_offset`, in offset order. The payload is what event_log.read_after
    gives: the engine's own segment events, read there as NULL, have no partition."""
    m = sql.mark(conn)
    return conn.exec_driver_sql(
        "SELECT part_offset, seq, workspace_id, profile_id, timestamp_ms, payload FROM events"
        f" WHERE partition = {m} AND part_offset > {m} ORDER BY part_offset LIMIT {m}",
        (partition, after_offset, limit),
    ).all()


def forward(conn: Connection, seq: int, profile_id: str, partition: int) -> int:
    """Move one event to `profile_id` in `partition`, at a new offset there; returns it."""
    offset = take_offsets(conn, {partition: 1})[partition]
    sql.execute_many(
        conn,
        "UPDATE events SET profile_id = ?, partition = ?, part_offset = ? WHERE seq = ?",
        [(profile_id, partition, offset, seq)],
    )
    return offset
