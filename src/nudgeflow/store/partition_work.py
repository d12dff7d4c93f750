"""What a partitioned engine worker reads and writes besides events and states.

The SQL of runtime/partition_processor.py and runtime/partition_worker.py that is not the
event log's (store/partition_log.py) or the leases' (store/partition_leases.py):

- the merges that hold a partition back (`waiting_merges`): a person who was merged from
  another partition is not decided until that partition has decided everything the merged-
  away profile had before the merge (docs/partitions.md, "Merges across partitions");
- moving a due timer of a merged-away profile to the partition of the person it went
  into (`forward_timer`);
- where a partition starts when the single engine ran this database before
  (`handover_position`);
- the lock a job that writes people of every partition takes (`lock_all_partitions`);
- going back from the workers to the single engine (`hand_back`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from nudgeflow.errors import StoreError
from nudgeflow.store import engine_state, sql


def waiting_merges(conn: Connection, partition: int, profile_ids: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
    """For the profiles of `partition` among `profile_ids`: the (from_partition, from_offset)
    of each merge into them from another partition that the from-partition has not decided
    through yet (its position is below from_offset). Profiles with none are left out.

    One indexed query for the batch's profiles; it finds nothing almost always."""
    if not profile_ids:
        return {}
    m = sql.mark(conn)
    rows = sql.select_in(
        conn,
        "SELECT mg.into_profile_id, mg.from_partition, mg.from_offset FROM profile_merges mg"
        ' LEFT JOIN partition_positions pp ON pp."partition" = mg.from_partition'
        f" WHERE mg.from_partition IS NOT NULL AND mg.from_partition <> {m}"
        " AND COALESCE(pp.stream_seq, 0) < mg.from_offset AND mg.into_profile_id IN",
        sorted(set(profile_ids)),
        before=(partition,),
    )
    out: dict[str, list[tuple[int, int]]] = {}
    for into, from_partition, from_offset in rows:
        out.setdefault(str(into), []).append((int(from_partition), int(from_offset)))
    return out


def forward_timer(conn: Connection, profile_id: str, key: str, into: str, partition: int) -> None:
    """Move one timer of a merged-away profile to the profile it went into, in that profile's
    partition. The target's own timer of the same key wins (as when a merge is folded:
    engine_state.move_merged), so the moved one is then dropped."""
    m = sql.mark(conn)
    taken = conn.exec_driver_sql(f'SELECT 1 FROM timers WHERE profile_id = {m} AND "key" = {m}', (into, key)).first()
    if taken is not None:
        conn.exec_driver_sql(f'DELETE FROM timers WHERE profile_id = {m} AND "key" = {m}', (profile_id, key))
        return
    conn.exec_driver_sql(
        f'UPDATE timers SET profile_id = {m}, "partition" = {m} WHERE profile_id = {m} AND "key" = {m}',
        (into, partition, profile_id, key),
    )


def handover_position(conn: Connection, partition: int, cursor_seq: int) -> int:
    """The offset a partition starts after when partitioned workers take over from the single
    engine: the last offset of the partition among the events the single engine's cursor
    has passed (0 when there is none)."""
    m = sql.mark(conn)
    value = conn.exec_driver_sql(
        f'SELECT MAX(part_offset) FROM events WHERE "partition" = {m} AND seq <= {m}', (partition, cursor_seq)
    ).scalar()
    return int(value or 0)


def lock_all_partitions(conn: Connection) -> None:
    """Hold every partition's lease row until the transaction ends (in partition order, as
    claims and fences lock): no partition's owner can commit meanwhile. For the work that
    writes people of every partition (a backfill, a segment apply), which is rare and
    batched, so the partitions wait for one batch of it at a time."""
    if sql.is_postgres(conn):
        conn.exec_driver_sql('SELECT "partition" FROM partition_leases ORDER BY "partition" FOR UPDATE').all()
    else:
        conn.exec_driver_sql("UPDATE partition_leases SET epoch = epoch")


def partitions_with_work(conn: Connection, partitions: Sequence[int], now_ms: int) -> list[int]:
    """Which of `partitions` have events past their position or a timer due: one query, an
    indexed probe or two per partition."""
    if not partitions:
        return []
    m = sql.mark(conn)
    return [
        int(r[0])
        for r in sql.select_in(
            conn,
            'SELECT h."partition" FROM partition_heads h LEFT JOIN partition_positions p'
            ' ON p."partition" = h."partition" WHERE (h.head > COALESCE(p.stream_seq, 0) OR EXISTS'
            f' (SELECT 1 FROM timers t WHERE t."partition" = h."partition" AND t.due_at_ms <= {m}))'
            ' AND h."partition" IN',
            sorted(partitions),
            before=(now_ms,),
            suffix=' ORDER BY h."partition"',
        )
    ]


def spans(conn: Connection, partitions: Sequence[int]) -> dict[int, tuple[int, int | None]]:
    """(head, position or None before the partition's first batch) of each of `partitions`:
    one query."""
    if not partitions:
        return {}
    return {
        int(r[0]): (int(r[1]), None if r[2] is None else int(r[2]))
        for r in sql.select_in(
            conn,
            'SELECT h."partition", h.head, p.stream_seq FROM partition_heads h LEFT JOIN partition_positions p'
            ' ON p."partition" = h."partition" WHERE h."partition" IN',
            sorted(partitions),
        )
    }


def shares(lags: dict[int, int], budget: int) -> dict[int, int]:
    """How many events each partition may read of a batch of `budget`: all it has when that
    fits, else the budget split so that no partition's share exceeds what it has and the
    rest are equal (water-filling). Partitions with nothing to read get nothing."""
    out: dict[int, int] = {}
    waiting = sorted((lag, p) for p, lag in lags.items() if lag > 0)
    left = max(1, budget)
    for i, (lag, p) in enumerate(waiting):
        fair = max(1, left // (len(waiting) - i))
        out[p] = min(lag, fair)
        left = max(0, left - out[p])
    return out


def partition_lags(conn: Connection) -> list[tuple[int, int, int]]:
    """(partition, head offset, decided position) of every partition: the lag of each is
    their difference."""
    rows = conn.exec_driver_sql(
        'SELECT h."partition", h.head, COALESCE(p.stream_seq, 0) FROM partition_heads h'
        ' LEFT JOIN partition_positions p ON p."partition" = h."partition" ORDER BY h."partition"'
    ).all()
    return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]


def partitioned(conn: Connection) -> bool:
    """Whether partitioned engine workers have run on this database (a position is stored):
    the single engine's cursor is behind them, and must not decide their events again."""
    return conn.exec_driver_sql("SELECT 1 FROM partition_positions LIMIT 1").first() is not None


# -- back to the single engine -------------------------------------------------------------


class HandBackRefused(StoreError, RuntimeError):
    """The workers have not decided every event yet: the single engine's cursor cannot
    start past events that nobody decided."""


@dataclass(frozen=True)
class HandBack:
    cursor_seq: int  # where the single engine's cursor now stands
    partitions: int  # how many partitions' positions were given up


def undecided(conn: Connection, cursor_seq: int) -> dict[int, int]:
    """{partition: events not decided} of every partition that has some. A partition no
    worker has decided yet (no position) stands where the single engine left it when the
    workers took over (`handover_position` from the single engine's `cursor_seq`)."""
    out: dict[int, int] = {}
    stored = {
        int(p): int(s) for p, s in conn.exec_driver_sql('SELECT "partition", stream_seq FROM partition_positions')
    }
    for partition, head in conn.exec_driver_sql('SELECT "partition", head FROM partition_heads').all():
        p = int(partition)
        position = stored[p] if p in stored else handover_position(conn, p, cursor_seq)
        if int(head) > position:
            out[p] = int(head) - position
    return out


def hand_back(conn: Connection, now_ms: int) -> HandBack:
    """Go back from partitioned engine workers to the single engine (`nudgeflow db
    single-engine`, docs/partitions.md). The caller holds the engine lock exclusively, so
    no worker runs, and calls this in one transaction.

    Every partition head is locked first: ingest takes a partition's offsets before it
    inserts the events (store/partition_log.py), so with all heads held, no transaction has
    an event in the log uncommitted, and every event committed is visible. If every
    partition is decided to its head, the single engine's cursor moves past the last event
    (the engine's own Segment Entered / Exited included: they are passed, never decided)
    with no open gaps, and the positions are dropped: the database is the single engine's
    again, and workers started later take over from this cursor as they did the first time.
    Refused, changing nothing, while any partition has an event not decided."""
    if sql.is_postgres(conn):
        conn.exec_driver_sql('SELECT "partition" FROM partition_heads ORDER BY "partition" FOR UPDATE').all()
    else:
        conn.exec_driver_sql("UPDATE partition_heads SET head = head")
    cursor_seq, _ = engine_state.read_cursor_state(conn)
    behind = undecided(conn, cursor_seq)
    if behind:
        shown = ", ".join(f"{p} ({n})" for p, n in sorted(behind.items())[:10])
        more = f" and {len(behind) - 10} more" if len(behind) > 10 else ""
        raise HandBackRefused(
            f"{sum(behind.values())} events are not decided yet, in partitions {shown}{more}: run the engine"
            " workers until `nudgeflow status` shows no lag, stop them, then run this again"
        )
    last = int(conn.exec_driver_sql("SELECT COALESCE(MAX(seq), 0) FROM events").scalar_one())
    engine_state.write_cursor(conn, max(last, cursor_seq), now_ms, gaps=[])
    given_up = conn.exec_driver_sql("DELETE FROM partition_positions").rowcount
    # Leases given back as a drain gives them back (the epoch grows: a worker of before can
    # never commit under its old one), and every worker counted out.
    m = sql.mark(conn)
    conn.exec_driver_sql(
        f"UPDATE partition_leases SET owner = NULL, epoch = epoch + 1, expires_at_ms = {m}, moved_at_ms = {m}"
        " WHERE owner IS NOT NULL",
        (now_ms, now_ms),
    )
    conn.exec_driver_sql(f"UPDATE engine_workers SET stopped_at_ms = {m} WHERE stopped_at_ms IS NULL", (now_ms,))
    return HandBack(max(last, cursor_seq), int(given_up or 0))
