"""`nudgeflow status`: the distributed runtime's engine workers and partitions, and what
waits to be done (docs/partitions.md).

Read from the database alone, so it answers for any deployment that shares it: the workers
(store/partition_leases.py's engine_workers) with their heartbeats, the partitions each
holds and their fencing epochs, each partition's head (the last offset given), position
(the last offset decided) and lag (their difference) in the partitioned event log, the oldest
pending timer and the outbox backlog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from nudgeflow.cli.common import DatabaseOpt, load_settings, now_ms, open_engine

if TYPE_CHECKING:
    from rich.table import Table

    from nudgeflow.store.partition_leases import Lease, Position, Worker

DEFAULT_LEASE_TTL_MS = 6000  # runtime/leases.py's default: kept here so --help imports no runtime


def status(
    database: DatabaseOpt = None,
    lease_ttl_ms: Annotated[
        int,
        typer.Option(
            "--lease-ttl-ms",
            min=1,
            help="A worker is alive while its last heartbeat is younger than this: the workers' lease TTL.",
        ),
    ] = DEFAULT_LEASE_TTL_MS,
) -> None:
    """Show the engine workers, the partitions each owns, each partition's position, the
    oldest pending timer and the outbox backlog."""
    from rich.console import Console

    from nudgeflow.store import backlog, partition_work
    from nudgeflow.store import partition_leases as leases

    engine = open_engine(load_settings(database))
    now = now_ms()
    try:
        with engine.connect() as conn:
            workers = leases.workers(conn)
            lease_rows = leases.leases(conn)
            positions = leases.positions(conn)
            heads = {p: head for p, head, _ in partition_work.partition_lags(conn)}
            oldest_timer = backlog.oldest_timer_due_ms(conn)
            outbox = backlog.outbox_backlog(conn, now)
    finally:
        engine.dispose()

    console = Console(width=250)
    if workers:
        console.print(_workers_table(workers, lease_rows, now, lease_ttl_ms))
    else:
        console.print(
            "No engine workers are registered: the embedded runtime (`nudgeflow serve`) keeps no partition"
            " leases, or no distributed engine workers are running."
        )
    if lease_rows or positions:
        console.print(_partitions_table(lease_rows, positions, heads, now))
    if oldest_timer is None:
        console.print("Oldest pending timer: none")
    else:
        console.print(f"Oldest pending timer: due {_when(oldest_timer)} ({_relative(oldest_timer, now)})")
    line = f"Outbox backlog: {outbox.pending} pending, {outbox.due} due now"
    if outbox.oldest_due_ms is not None:
        line += f"; the oldest due {_relative(outbox.oldest_due_ms, now)}"
    console.print(line)


def _workers_table(workers: list[Worker], lease_rows: list[Lease], now: int, ttl_ms: int) -> Table:
    from rich.table import Table

    from nudgeflow.model.partitions import ranges

    table = Table(title="engine workers")
    for name in ("worker", "host", "pid", "role", "last heartbeat", "alive", "partitions"):
        table.add_column(name, justify="right" if name == "pid" else "left")
    for worker in workers:
        held = [lease.partition for lease in lease_rows if lease.owner == worker.id]
        alive = "stopped" if worker.stopped_at_ms is not None else "yes" if worker.alive(now, ttl_ms) else "no"
        count = f"{len(held)}: {ranges(held)}" if held else "none"
        heard = f"{_when(worker.heartbeat_at_ms)} ({_relative(worker.heartbeat_at_ms, now)})"
        table.add_row(worker.id, worker.host, str(worker.pid), worker.role, heard, alive, count)
    return table


def _partitions_table(
    lease_rows: list[Lease], positions: dict[int, Position], heads: dict[int, int], now: int
) -> Table:
    from rich.table import Table

    table = Table(title="partitions")
    for name in ("partition", "owner", "epoch", "lease", "head", "position", "lag", "position updated"):
        table.add_column(name, justify="right" if name in ("partition", "epoch", "head", "position", "lag") else "left")
    by_partition = {lease.partition: lease for lease in lease_rows}
    for partition in sorted(set(by_partition) | set(positions)):
        lease = by_partition.get(partition)
        at = positions.get(partition)
        if lease is None or lease.owner is None:
            owner, state = "-", "free"
        else:
            owner = lease.owner
            state = f"expires {_relative(lease.expires_at_ms, now)}" if lease.held(now) else "expired"
        table.add_row(
            str(partition),
            owner,
            "-" if lease is None else str(lease.epoch),
            state,
            str(heads.get(partition, "-")),
            "-" if at is None else str(at.stream_seq),
            str(max(0, heads.get(partition, 0) - (at.stream_seq if at is not None else 0))),
            "-" if at is None else _relative(at.updated_at_ms, now),
        )
    return table


def _when(ms: int) -> str:
    from nudgeflow.model.iso_time import iso

    return iso(ms - ms % 1000, milliseconds=False)  # to the second: whole seconds print no fraction


def _relative(ms: int, now: int) -> str:
    """'3 s ago' or 'in 4 s'."""
    gap = now - ms
    return f"{_duration(gap)} ago" if gap >= 0 else f"in {_duration(-gap)}"


def _duration(ms: int) -> str:
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds} s" if seconds else f"{ms} ms"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
