"""Partition leases with fencing epochs: which engine worker decides which partition
(issue 17; docs/partitions.md). Every SQL statement of the leases lives here; the loop that
calls them on a clock is runtime/leases.py.

- `engine_workers` lists the workers and their heartbeats. A worker is live while its
  heartbeat is younger than the lease TTL and it has not stopped.
- `partition_leases` has a row per partition: its owner (NULL: nobody), when the lease
  expires, and its fencing `epoch`, which grows by one every time the lease changes hands
  (taken by a worker, or given back). A lease that expired is free for any worker to take.
- `partition_positions` holds, per partition, the stream sequence of the last message
  decided, written in the same transaction as the state it produced.

Fencing: a worker's lease may move while it still runs (a long pause, a cut network). So a
transaction that writes a partition's state calls `fence(conn, partition, epoch)` with the
epoch it was given: the row is locked until the transaction ends (FOR UPDATE on PostgreSQL;
SQLite's one writer lock), and `LeaseLost` is raised if the epoch is no longer the lease's.
A claim that would move the lease waits for that lock, so a worker that lost its lease
cannot commit, and one that commits held the lease until the commit.

Claims serialize: `claim` locks every lease row in partition order (PostgreSQL) or takes
SQLite's writer lock before it reads, so two workers never take the same lease with the
same epoch. `fence_all` locks in the same order, so a claim and a transaction that fences
several partitions cannot deadlock.

The rebalance rule (why it cannot flap): the live workers, sorted by id, each get a quota,
floor(P / n), and the first P mod n of them one more; a worker takes free leases (lowest
partitions first) up to its quota, and gives back its highest partitions above its quota
only while another live worker holds fewer than its own. Quotas depend only on the set of
live workers, so while that set stands still no lease moves back and forth.

The partition count P is fixed for a deployment: rows for partitions at or above the P a
worker is given are left alone by its claims.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, false, select, update

from nudgeflow.errors import StoreError
from nudgeflow.model.partitions import check_partitions
from nudgeflow.store import sql
from nudgeflow.store.schema import engine_workers, partition_leases, partition_positions

# An engine worker's role in engine_workers: the only one today. Dispatchers and API
# processes hold no partitions.
ENGINE_ROLE = "engine"
MAX_WORKER_ID = 80  # engine_workers.id and partition_leases.owner


class LeaseLost(StoreError, RuntimeError):
    """A partition's lease is no longer held with this epoch: it moved to another worker, or
    was given back. The transaction that checked must roll back (its writes are not ours)."""

    def __init__(self, partition: int, epoch: int, current: int | None) -> None:
        self.partition = partition
        self.epoch = epoch
        self.current = current
        now = "no lease row" if current is None else f"epoch {current}"
        super().__init__(f"the lease of partition {partition} was lost: held with epoch {epoch}, now {now}")


class LeaseArgumentError(StoreError, ValueError):
    """A worker id, TTL or time the lease functions cannot use."""


@dataclass(frozen=True)
class Worker:
    id: str
    host: str
    pid: int
    role: str
    started_at_ms: int
    heartbeat_at_ms: int
    stopped_at_ms: int | None

    def alive(self, now_ms: int, ttl_ms: int) -> bool:
        """Running and heard from within the TTL: what claims count as a live worker."""
        return self.stopped_at_ms is None and self.heartbeat_at_ms > now_ms - ttl_ms


@dataclass(frozen=True)
class Lease:
    partition: int
    owner: str | None
    epoch: int
    expires_at_ms: int
    moved_at_ms: int

    def held(self, now_ms: int) -> bool:
        return self.owner is not None and self.expires_at_ms > now_ms


@dataclass(frozen=True)
class Position:
    partition: int
    stream_seq: int
    updated_at_ms: int


@dataclass(frozen=True)
class Claim:
    """What one claim did, and the worker's leases after it ({partition: epoch})."""

    owned: dict[int, int]
    taken: tuple[int, ...]
    given_back: tuple[int, ...]
    live_workers: int
    quota: int


def _check_worker(worker_id: str) -> None:
    if not worker_id or len(worker_id) > MAX_WORKER_ID:
        raise LeaseArgumentError(f"a worker id must have 1 to {MAX_WORKER_ID} characters, not {worker_id!r}")


def _check_ttl(ttl_ms: int) -> None:
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms <= 0:
        raise LeaseArgumentError(f"the lease TTL must be a positive number of milliseconds, not {ttl_ms!r}")


# -- workers ---------------------------------------------------------------------------------


def register_worker(
    conn: Connection, worker_id: str, *, host: str, pid: int, now_ms: int, role: str = ENGINE_ROLE
) -> None:
    """Add the worker, or start it again under the same id (a restart keeps its name)."""
    _check_worker(worker_id)
    columns = ("id", "host", "pid", "role", "started_at_ms", "heartbeat_at_ms", "stopped_at_ms")
    sql.insert_rows(
        conn,
        "engine_workers",
        columns,
        [(worker_id, host[:255], pid, role[:20], now_ms, now_ms, None)],
        conflict="id",
        update=columns[1:],
    )


def heartbeat(conn: Connection, worker_id: str, now_ms: int) -> bool:
    """Say the worker is alive at `now_ms`; False when it is not registered."""
    done = conn.execute(
        update(engine_workers)
        .where(engine_workers.c.id == worker_id)
        .values(heartbeat_at_ms=now_ms, stopped_at_ms=None)
    )
    return bool(done.rowcount)


def stop_worker(conn: Connection, worker_id: str, now_ms: int) -> tuple[int, ...]:
    """A graceful stop: give back every lease at once and mark the worker stopped, so the
    others count it out without waiting for its heartbeat to age. Returns the partitions."""
    released = release(conn, worker_id, now_ms)
    conn.execute(update(engine_workers).where(engine_workers.c.id == worker_id).values(stopped_at_ms=now_ms))
    return released


def workers(conn: Connection) -> list[Worker]:
    rows = conn.execute(select(engine_workers).order_by(engine_workers.c.id)).all()
    return [Worker(r.id, r.host, r.pid, r.role, r.started_at_ms, r.heartbeat_at_ms, r.stopped_at_ms) for r in rows]


def _live_ids(conn: Connection, now_ms: int, ttl_ms: int) -> set[str]:
    rows = conn.execute(
        select(engine_workers.c.id).where(
            engine_workers.c.stopped_at_ms.is_(None), engine_workers.c.heartbeat_at_ms > now_ms - ttl_ms
        )
    )
    return {r[0] for r in rows}


# -- leases ----------------------------------------------------------------------------------


def _lease(row: Any) -> Lease:
    return Lease(row.partition, row.owner, row.epoch, row.expires_at_ms, row.moved_at_ms)


def leases(conn: Connection) -> list[Lease]:
    """Every lease row, in partition order (what `nudgeflow status` shows)."""
    return [_lease(r) for r in conn.execute(select(partition_leases).order_by(partition_leases.c.partition))]


def owned(conn: Connection, worker_id: str) -> dict[int, int]:
    """The worker's leases as {partition: epoch}, expired or not: a lease stays the worker's
    until another takes it (its epoch then moves on, and `fence` says so)."""
    rows = conn.execute(
        select(partition_leases.c.partition, partition_leases.c.epoch).where(partition_leases.c.owner == worker_id)
    )
    return {int(p): int(e) for p, e in rows}


def _take_write_lock(conn: Connection) -> None:
    """SQLite: begin the transaction with a write, which takes the database's one writer lock
    (reads alone would run outside any transaction under pysqlite). A no-op elsewhere."""
    if not sql.is_postgres(conn):
        conn.execute(update(partition_leases).where(false()).values(epoch=partition_leases.c.epoch))


def _ensure_rows(conn: Connection, partitions: int, now_ms: int) -> None:
    have = {
        r[0]
        for r in conn.execute(select(partition_leases.c.partition).where(partition_leases.c.partition < partitions))
    }
    missing = [(p, None, 0, 0, now_ms) for p in range(partitions) if p not in have]
    # ON CONFLICT DO NOTHING: two workers starting at once may both find a row missing.
    sql.insert_rows(
        conn,
        "partition_leases",
        ("partition", "owner", "epoch", "expires_at_ms", "moved_at_ms"),
        missing,
        conflict='"partition"',
    )


def _locked_leases(conn: Connection, partitions: int) -> list[Lease]:
    query = (
        select(partition_leases).where(partition_leases.c.partition < partitions).order_by(partition_leases.c.partition)
    )
    if sql.is_postgres(conn):
        query = query.with_for_update()  # locked in partition order: claims queue behind each other
    return [_lease(r) for r in conn.execute(query)]


def quotas(live: set[str], partitions: int) -> dict[str, int]:
    """Each live worker's share: floor(P / n), and one more for the first P mod n by id."""
    ids = sorted(live)
    base, extra = divmod(partitions, len(ids))
    return {w: base + (1 if i < extra else 0) for i, w in enumerate(ids)}


def claim(conn: Connection, worker_id: str, partitions: int, now_ms: int, ttl_ms: int) -> Claim:
    """Take free or expired leases up to the worker's quota, give back those above it while
    another live worker is short of its own, and renew the rest, in the caller's transaction.

    The worker counts as live here even before its first heartbeat. Each lease taken gets
    epoch + 1 and expires `ttl_ms` from now; so does each renewed one (its epoch unchanged).
    """
    _check_worker(worker_id)
    check_partitions(partitions)
    _check_ttl(ttl_ms)
    _take_write_lock(conn)
    _ensure_rows(conn, partitions, now_ms)
    rows = _locked_leases(conn, partitions)
    live = _live_ids(conn, now_ms, ttl_ms) | {worker_id}
    quota = quotas(live, partitions)
    held = Counter(r.owner for r in rows if r.owner in live and r.held(now_ms))
    mine = [r for r in rows if r.owner == worker_id]
    mine_quota = quota[worker_id]

    given_back: list[int] = []
    others_short = any(held[w] < q for w, q in quota.items() if w != worker_id)
    if len(mine) > mine_quota and others_short:
        surplus = mine[mine_quota:]  # the highest partitions: rows are in partition order
        given_back = [r.partition for r in surplus]
        _give_back(conn, worker_id, given_back, now_ms)
        mine = mine[:mine_quota]

    taken: list[int] = []
    if len(mine) < mine_quota:
        free = [r for r in rows if r.owner is None or (r.owner != worker_id and r.expires_at_ms <= now_ms)]
        for lease in free[: mine_quota - len(mine)]:
            # Guarded by the epoch read under the lock: a change since (none can happen on
            # PostgreSQL under the row locks, nor on SQLite under the writer lock) takes nothing.
            done = conn.execute(
                update(partition_leases)
                .where(partition_leases.c.partition == lease.partition, partition_leases.c.epoch == lease.epoch)
                .values(
                    owner=worker_id,
                    epoch=partition_leases.c.epoch + 1,
                    expires_at_ms=now_ms + ttl_ms,
                    moved_at_ms=now_ms,
                )
            )
            if done.rowcount:
                taken.append(lease.partition)

    conn.execute(
        update(partition_leases)
        .where(partition_leases.c.owner == worker_id, partition_leases.c.partition < partitions)
        .values(expires_at_ms=now_ms + ttl_ms)
    )
    mine_now = {p: e for p, e in owned(conn, worker_id).items() if p < partitions}
    return Claim(mine_now, tuple(taken), tuple(given_back), len(live), mine_quota)


def _give_back(conn: Connection, worker_id: str, partition_numbers: list[int], now_ms: int) -> None:
    # The epoch grows on a release too: the old owner's epoch must fail `fence` from now on,
    # even before another worker takes the lease.
    conn.execute(
        update(partition_leases)
        .where(partition_leases.c.owner == worker_id, partition_leases.c.partition.in_(partition_numbers))
        .values(owner=None, epoch=partition_leases.c.epoch + 1, expires_at_ms=now_ms, moved_at_ms=now_ms)
    )


def release(conn: Connection, worker_id: str, now_ms: int) -> tuple[int, ...]:
    """Give back every lease of the worker at once (a drain); returns the partitions."""
    _take_write_lock(conn)
    query = (
        select(partition_leases.c.partition)
        .where(partition_leases.c.owner == worker_id)
        .order_by(partition_leases.c.partition)
    )
    if sql.is_postgres(conn):
        query = query.with_for_update()
    mine = [int(r[0]) for r in conn.execute(query)]
    if mine:
        _give_back(conn, worker_id, mine, now_ms)
    return tuple(mine)


# -- fencing ---------------------------------------------------------------------------------


def fence(conn: Connection, partition: int, epoch: int) -> None:
    """Check, in the caller's transaction, that `epoch` is still the partition's lease epoch,
    and keep the lease from moving until the transaction ends; else raise LeaseLost (the
    caller's transaction must then roll back)."""
    fence_all(conn, {partition: epoch})


def fence_all(conn: Connection, epochs: Mapping[int, int]) -> None:
    """`fence` for several partitions, locked in partition order (as claims lock)."""
    m = sql.mark(conn)
    if sql.is_postgres(conn) and len(epochs) > 1:
        # One statement: FOR UPDATE locks the rows as the sort returns them, in partition order.
        found = {
            int(r[0]): int(r[1])
            for r in sql.select_in(
                conn,
                'SELECT "partition", epoch FROM partition_leases WHERE "partition" IN',
                sorted(epochs),
                suffix=' ORDER BY "partition" FOR UPDATE',
            )
        }
        for partition in sorted(epochs):
            if found.get(partition) != epochs[partition]:
                raise LeaseLost(partition, epochs[partition], found.get(partition))
        return
    for partition in sorted(epochs):
        if sql.is_postgres(conn):
            row = conn.exec_driver_sql(
                f'SELECT epoch FROM partition_leases WHERE "partition" = {m} FOR UPDATE', (partition,)
            ).first()
        else:
            # The write takes SQLite's writer lock for the rest of the transaction: no claim
            # can commit a move before this transaction ends.
            conn.exec_driver_sql(f'UPDATE partition_leases SET epoch = epoch WHERE "partition" = {m}', (partition,))
            row = conn.exec_driver_sql(
                f'SELECT epoch FROM partition_leases WHERE "partition" = {m}', (partition,)
            ).first()
        current = None if row is None else int(row[0])
        if current != epochs[partition]:
            raise LeaseLost(partition, epochs[partition], current)


# -- positions -------------------------------------------------------------------------------


def save_position(conn: Connection, partition: int, stream_seq: int, now_ms: int) -> None:
    """Store how far the partition is decided, in the transaction of the decisions (after
    `fence`). A position never goes back: a lower one than stored changes nothing."""
    sql.insert_rows(
        conn,
        "partition_positions",
        ("partition", "stream_seq", "updated_at_ms"),
        [(partition, stream_seq, now_ms)],
        conflict='"partition"',
        update=("stream_seq", "updated_at_ms"),
        update_where='"partition_positions".stream_seq < excluded.stream_seq',
    )


def positions(conn: Connection) -> dict[int, Position]:
    rows = conn.execute(select(partition_positions).order_by(partition_positions.c.partition))
    return {r.partition: Position(r.partition, r.stream_seq, r.updated_at_ms) for r in rows}


def position(conn: Connection, partition: int) -> int | None:
    """The stream sequence of the partition's last decided message; None before the first."""
    row = conn.execute(
        select(partition_positions.c.stream_seq).where(partition_positions.c.partition == partition)
    ).first()
    return None if row is None else int(row[0])
