"""Engine state: the engine cursor over the event log, each person's state, and the timers.

What the engine's loops (runtime/processor.py, runtime/backfill.py) read and write in the
transaction that decides a batch: the cursor's position and its open gaps, the touched
profiles' states (locked on PostgreSQL), and the timers that are due (claimed with SKIP
LOCKED, deleted when fired).

This is one side of the seam the distributed runtime (issue 17: PostgreSQL + NATS
JetStream) swaps: a second implementation would keep the engine cursor as a stream
consumer's acknowledged position, and the due timers in a timer service, behind these
same functions; the states stay rows in PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from nudgeflow.core.state import ProfileState
from nudgeflow.store import partition_log, rollups, segments, sql
from nudgeflow.store.schema import profile_state, timers

EVENTS_CURSOR = "events"


def read_cursor(conn: Connection, name: str = EVENTS_CURSOR, *, lock: bool = True) -> int:
    """The cursor's position (0 before the first batch). On PostgreSQL the row is locked
    until commit, so two processors can never decide the same batch at once."""
    return read_cursor_state(conn, name, lock=lock)[0]


def read_cursor_state(conn: Connection, name: str = EVENTS_CURSOR, *, lock: bool = True) -> tuple[int, list[list[int]]]:
    """The cursor's position and its open gaps ([first, last, seen_at_ms] each; see
    `process_events`), the row locked as in `read_cursor`."""
    m = sql.mark(conn)
    suffix = " FOR UPDATE" if lock and sql.is_postgres(conn) else ""
    select = f"SELECT position, gaps FROM engine_cursors WHERE name = {m}{suffix}"
    row = conn.exec_driver_sql(select, (name,)).first()
    if row is None:
        # Created on first use only: an idle poll must not write (a SQLite write transaction).
        conn.exec_driver_sql(
            f"INSERT INTO engine_cursors (name, position, updated_at_ms) VALUES ({m}, 0, 0) "
            "ON CONFLICT (name) DO NOTHING",
            (name,),
        )
        row = conn.exec_driver_sql(select, (name,)).first()
    if row is None:
        return 0, []
    return int(row[0]), _gaps_from(row[1])


def write_cursor(
    conn: Connection, position: int, now_ms: int, name: str = EVENTS_CURSOR, gaps: list[list[int]] | None = None
) -> None:
    """Move the cursor; `gaps`, when given, replaces its open gaps."""
    if gaps is None:
        sql.execute_many(
            conn, "UPDATE engine_cursors SET position = ?, updated_at_ms = ? WHERE name = ?", [(position, now_ms, name)]
        )
        return
    doc = orjson.dumps(gaps).decode() if gaps else None
    sql.execute_many(
        conn,
        "UPDATE engine_cursors SET position = ?, gaps = ?, updated_at_ms = ? WHERE name = ?",
        [(position, doc, now_ms, name)],
    )


def _gaps_from(doc: str | None) -> list[list[int]]:
    if not doc:
        return []
    try:
        value = orjson.loads(doc)
    except orjson.JSONDecodeError:
        return []
    return [[int(g[0]), int(g[1]), int(g[2])] for g in value if isinstance(g, list) and len(g) == 3]


def load_states(
    conn: Connection,
    profile_ids: list[str],
    reuse: Callable[[str, str], ProfileState | None] | None = None,
) -> dict[str, tuple[ProfileState, str]]:
    """The touched profiles' state in one query (chunked); locked on PostgreSQL, in id order,
    so a concurrent worker on the same person waits instead of losing an update. `reuse`
    may answer a state already parsed from exactly that document (runtime/state_cache.py)."""
    suffix = " ORDER BY profile_id FOR UPDATE" if sql.is_postgres(conn) else ""
    out: dict[str, tuple[ProfileState, str]] = {}
    for pid, doc in sql.select_in(
        conn, "SELECT profile_id, state FROM profile_state WHERE profile_id IN", sorted(profile_ids), suffix=suffix
    ):
        state = reuse(pid, doc) if reuse is not None else None
        out[pid] = (state if state is not None else ProfileState.from_json(pid, doc), doc)
    return out


def cursor_position(conn: Connection, name: str = EVENTS_CURSOR) -> int:
    """The cursor's position, read without locking or creating its row (0 if there is none)."""
    position = conn.exec_driver_sql(
        f"SELECT position FROM engine_cursors WHERE name = {sql.mark(conn)}", (name,)
    ).scalar()
    return int(position or 0)


def hold_engine(conn: Connection, profile_ids: Sequence[str]) -> None:
    """PostgreSQL: wait for every engine batch that may be deciding these people, and keep
    new ones from deciding them until the caller's transaction ends (an erasure: a batch
    that read the person before it and wrote after it would leave a run, a message or a
    timer of someone erased). The locks are taken in the engines' own order: the single
    engine's events cursor (`read_cursor_state`, first in its event batches), every
    partition's lease row (a worker's fence; store/partition_work.lock_all_partitions),
    then the people's timers (`claim_due_timers`, first in the single engine's firing).
    SQLite has one writer: nothing to wait for there."""
    if not sql.is_postgres(conn):
        return
    read_cursor_state(conn)  # made if missing, as the first batch does: it then waits for that batch
    conn.exec_driver_sql('SELECT "partition" FROM partition_leases ORDER BY "partition" FOR UPDATE').all()
    sql.select_in(conn, "SELECT profile_id FROM timers WHERE profile_id IN", profile_ids, suffix=" FOR UPDATE")


# --- merged profiles (runtime/merges.py folds their state) -------------------------------------


def merged_states(conn: Connection, profile_ids: list[str]) -> list[Any]:
    """(from_profile_id, into_profile_id, state) of profiles merged into `profile_ids` that
    are not folded yet: they still have a state of their own, or events stored under their id
    (state None: a profile merged away before the engine decided any of its events)."""
    return sql.select_in(
        conn,
        "SELECT m.from_profile_id, m.into_profile_id, s.state FROM profile_merges m"
        " LEFT JOIN profile_state s ON s.profile_id = m.from_profile_id"
        " WHERE (s.profile_id IS NOT NULL OR EXISTS (SELECT 1 FROM events e WHERE e.profile_id = m.from_profile_id))"
        " AND m.into_profile_id IN",
        sorted(profile_ids),
    )


def merged_into(conn: Connection, profile_ids: Sequence[str]) -> dict[str, tuple[str, int | None, int | None]]:
    """{from_profile_id: (into_profile_id, from_partition, from_offset)} for those of
    `profile_ids` that were merged away. profile_merges is kept flattened (ingest re-points
    older rows at each merge), so `into_profile_id` is the profile the person is now.
    One indexed lookup per chunk; it finds nothing almost always."""
    return {
        row[0]: (row[1], row[2], row[3])
        for row in sql.select_in(
            conn,
            "SELECT from_profile_id, into_profile_id, from_partition, from_offset FROM profile_merges"
            " WHERE from_profile_id IN",
            sorted(set(profile_ids)),
        )
    }


def move_merged(conn: Connection, source: str, target: str) -> None:
    """Move a merged-away profile's events, timers, runs (and their arms) and messages to the
    profile it went into, and drop its state (folded into the target's by the caller) and its
    segment memberships (the target's next event decides its segments again:
    store/segments.drop_merged).

    The events keep their partition and offset: they stay where they were decided; only the
    person they belong to changes, so that reading the target's events finds them all."""
    sql.execute_many(conn, "UPDATE events SET profile_id = ? WHERE profile_id = ?", [(target, source)])
    # The target's own timers win a key both have (one inactivity timer per journey).
    sql.execute_many(
        conn,
        'DELETE FROM timers WHERE profile_id = ? AND "key" IN (SELECT "key" FROM timers WHERE profile_id = ?)',
        [(source, target)],
    )
    # The timers fire in the target's partition from now on.
    moved = conn.exec_driver_sql(
        f"SELECT workspace_id FROM timers WHERE profile_id = {sql.mark(conn)} LIMIT 1", (source,)
    ).scalar()
    if moved is not None:
        sql.execute_many(
            conn,
            "UPDATE timers SET profile_id = ?, partition = ? WHERE profile_id = ?",
            [(target, partition_log.partition_for(conn, moved, target), source)],
        )
    sql.execute_many(conn, "UPDATE journey_runs SET profile_id = ? WHERE profile_id = ?", [(target, source)])
    sql.execute_many(conn, "UPDATE run_arms SET profile_id = ? WHERE profile_id = ?", [(target, source)])
    # Engagement with these messages must reach the runs, which now live with the target.
    sql.execute_many(conn, "UPDATE outbox SET profile_id = ? WHERE profile_id = ?", [(target, source)])
    # The person in the program's comparison (the global control group) is the target now.
    rollups.move_program_people(conn, source, target)
    sql.execute_many(conn, "DELETE FROM profile_state WHERE profile_id = ?", [(source,)])
    segments.drop_merged(conn, source)


# --- timers -----------------------------------------------------------------------------------


def claim_due_timers(conn: Connection, now_ms: int, limit: int, partition: int | None = None) -> Sequence[Any]:
    """(profile_id, key, workspace_id, due_at_ms, payload) of the timers due now, oldest first;
    with a `partition`, only that partition's (by ix_timers_partition_due). On SQLite each row
    also carries its rowid, sixth, for `write_fired_timers`."""
    m = sql.mark(conn)
    # SKIP LOCKED: timers another worker is firing are left to it.
    postgres = sql.is_postgres(conn)
    suffix = " FOR UPDATE SKIP LOCKED" if postgres else ""
    where, params = f"due_at_ms <= {m}", [now_ms, limit]
    if partition is not None:
        where, params = f"partition = {m} AND due_at_ms <= {m}", [partition, now_ms, limit]
    rowid = "" if postgres else ", rowid"
    return conn.exec_driver_sql(
        f'SELECT profile_id, "key", workspace_id, due_at_ms, payload{rowid} FROM timers'
        f" WHERE {where} ORDER BY due_at_ms LIMIT {m}{suffix}",
        tuple(params),
    ).all()


# By rowid, and only while the row is still the fired timer's: a merge folded into this batch
# may have moved it to another person (move_merged), and then the key decides, as it would
# have without the rowid.
_REARM_BY_ROWID = (
    "UPDATE timers SET workspace_id = ?, due_at_ms = ?, payload = ?, partition = ?"
    ' WHERE rowid = ? AND profile_id = ? AND "key" = ?'
)
_DELETE_BY_ROWID = 'DELETE FROM timers WHERE rowid = ? AND profile_id = ? AND "key" = ?'


def write_fired_timers(
    conn: Connection, rearmed: Sequence[tuple[Any, ...]], deleted: Sequence[tuple[int, str, str]]
) -> bool:
    """SQLite: re-arm (`rearmed`: workspace_id, due_at_ms, payload, partition, rowid,
    profile_id, key) or delete (`deleted`: rowid, profile_id, key) fired timers by the rowids
    they were claimed with. An upsert by key looks the row up in the timers' primary key
    index first and tries an insert; this finds it straight away: half the statement's cost
    (benchmarks/RESULTS.md, issue 18 item 4). True when every row was where it was claimed;
    False otherwise, and the caller writes them all by key (the same values again)."""
    changed = 0
    if rearmed:
        changed += conn.exec_driver_sql(_REARM_BY_ROWID, list(rearmed)).rowcount
    if deleted:
        changed += conn.exec_driver_sql(_DELETE_BY_ROWID, list(deleted)).rowcount
    return changed == len(rearmed) + len(deleted)


def next_due_timer(conn: Connection, now_ms: int) -> tuple[str, str] | None:
    """(profile_id, key) of the timer the next firing would take first."""
    m = sql.mark(conn)
    row = conn.exec_driver_sql(
        f'SELECT profile_id, "key" FROM timers WHERE due_at_ms <= {m} ORDER BY due_at_ms LIMIT 1',
        (now_ms,),
    ).first()
    return (row[0], row[1]) if row is not None else None


def drop_timers(conn: Connection, keys: list[tuple[str, str]]) -> None:
    """Delete timers that cannot be fired at all (a last resort), so they stop blocking."""
    sql.execute_many(conn, 'DELETE FROM timers WHERE profile_id = ? AND "key" = ?', keys)


def next_timer_due(conn: Connection) -> int | None:
    """When the earliest timer of any workspace falls due, or None when none is waiting."""
    value = conn.exec_driver_sql("SELECT MIN(due_at_ms) FROM timers").scalar()
    return int(value) if value is not None else None


def count_timers(conn: Connection, workspace_id: str) -> int:
    """How many timers of the workspace are waiting."""
    return int(
        conn.execute(select(func.count()).select_from(timers).where(timers.c.workspace_id == workspace_id)).scalar()
        or 0
    )


def stored_state(conn: Connection, profile_id: str) -> str | None:
    """The person's state document as stored, or None."""
    doc: str | None = conn.execute(
        select(profile_state.c.state).where(profile_state.c.profile_id == profile_id)
    ).scalar_one_or_none()
    return doc


def lag_view(conn: Connection) -> dict[str, Any]:
    """How far behind the engine is: the events in the log after its cursor, and when the
    oldest of them was received (None when there are none). For the console's overview; the
    engine itself reads only its cursor."""
    m = sql.mark(conn)
    cursor = cursor_position(conn)
    newest = int(conn.exec_driver_sql("SELECT COALESCE(MAX(seq), 0) FROM events").scalar_one())
    oldest = conn.exec_driver_sql(
        f"SELECT received_at_ms FROM events WHERE seq > {m} ORDER BY seq LIMIT 1", (cursor,)
    ).scalar()
    return {"events": max(0, newest - cursor), "oldest_received_at_ms": None if oldest is None else int(oldest)}
