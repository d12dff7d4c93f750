"""The event log: appending events, its one column list, and the events Nudgeflow emits itself.

Every event in the log is a row of `events` with these columns, whether ingest accepted it
(store/ingest_writer.py), the dispatcher recorded a delivery outcome, the tracking
endpoints saw an open or a click, or bounce feedback arrived. The engine reads them all
alike, in `seq` order (`read_after`), behind the engine cursor (store/engine_state.py).

Every event the engine decides also gets its person's partition and an offset in it
(store/partition_log.py): `append_events` gives them, unless told the rows are not `logged`
(the engine's own Segment Entered / Exited, never decided again). A transaction that appends
for many people in several steps (ingest's group commit) gathers them with `appending`, so
that it takes its offsets once, at the end, in one call: two such transactions then lock
the partitions' heads in the same order and cannot deadlock.

This is one side of the seam the distributed runtime (issue 17: PostgreSQL + NATS
JetStream) swaps: a second implementation of this module would append to the event log
as a stream (the message id still the key that makes recording an event twice store it
once) instead of inserting rows, and keep the same functions and payloads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection

from nudgeflow.model.event_names import SEGMENT_ENTERED, SEGMENT_EXITED
from nudgeflow.model.events import OWN_SEGMENT_PREFIX
from nudgeflow.model.iso_time import iso
from nudgeflow.model.partitions import partition_of
from nudgeflow.store import partition_log, sql
from nudgeflow.store.profiles import load_for_messages

# The columns of a row of `events`, in the order `event_row` builds them.
EVENT_COLUMNS = (
    "workspace_id",
    "message_id",
    "profile_id",
    "type",
    "event",
    "user_id",
    "anonymous_id",
    "timestamp_ms",
    "received_at_ms",
    "payload",
)
# A row of an event some partition decides: EVENT_COLUMNS, then its partition and offset.
LOGGED_COLUMNS = (*EVENT_COLUMNS, "partition", "part_offset")
# A batch's events share their received time, and a change's events their instant:
# formatting each once was a tenth of appending the engine's own events.
_iso = lru_cache(maxsize=1024)(iso)

# What the engine reads of each event, in `seq` order. The payload of a Segment Entered /
# Exited the engine appended itself reads as NULL: the engine reacted to that change in the
# turn that made it (core/segments.py), as the simulator does, and does not decide it again.
# Only the name and the id prefix together say so: an SDK's own "Segment Entered" is decided.
_READ_COLUMNS = (
    f"seq, workspace_id, profile_id, timestamp_ms, CASE WHEN event IN ('{SEGMENT_ENTERED}', '{SEGMENT_EXITED}')"
    f" AND substr(message_id, 1, {len(OWN_SEGMENT_PREFIX)}) = '{OWN_SEGMENT_PREFIX}' THEN NULL ELSE payload END"
)
# A repeat of a message id is stored once: the first one stored wins.
CONFLICT = "workspace_id, message_id"


def event_row(
    workspace_id: str,
    profile_id: str,
    user_id: str | None,
    name: str,
    message_id: str,
    properties: dict[str, Any],
    now_ms: int,
    library: str = "nudgeflow-dispatcher",
    at_ms: int | None = None,
) -> tuple[Any, ...]:
    """A track event of the runtime's own (delivery, tracking, consent) as a row of `events`,
    for `append_events`. A deterministic `message_id` makes recording it twice store it once.
    `at_ms` is when it happened, if not when it is recorded (a provider's bounce report)."""
    at = now_ms if at_ms is None else at_ms
    payload: dict[str, Any] = {
        "type": "track",
        "event": name,
        "messageId": message_id,
        "properties": properties,
        "timestamp": _iso(at),
        "receivedAt": _iso(now_ms),
        "context": {"library": {"name": library}},
    }
    if user_id:
        payload["userId"] = user_id
    return (
        workspace_id,
        message_id,
        profile_id,
        "track",
        name,
        user_id,
        None,
        at,
        now_ms,
        orjson.dumps(payload).decode(),
    )


def append_events(conn: Connection, rows: Sequence[tuple[Any, ...]], *, logged: bool = True) -> None:
    """Append rows of EVENT_COLUMNS (`event_row`s) to the event log; the engine reads them like
    ingested events. `logged` rows get the partition of their (workspace_id, profile_id) and
    an offset there: at once, or at the end of an open `appending` scope. Rows that are not
    `logged` (the engine's own segment events) get neither, and are inserted at once."""
    if not rows:
        return
    if not logged:
        sql.insert_rows(conn, "events", EVENT_COLUMNS, rows, conflict=CONFLICT)
        return
    pending = conn.info.get(_PENDING)
    if pending is not None:
        pending.rows.extend(rows)
        return
    _write(conn, _Pending(rows=list(rows)))


def with_head(conn: Connection, partition: int, then: Callable[[Connection, int], None]) -> None:
    """Call `then(conn, head)` with the last offset given in `partition` before this
    transaction's own events, read under the head's lock, in the same one call that takes
    this transaction's offsets (at the end of an open `appending` scope, else at once).
    A merge records where the merged-away profile's events end this way."""
    pending = conn.info.get(_PENDING)
    if pending is not None:
        pending.heads.append((partition, then))
        return
    _write(conn, _Pending(heads=[(partition, then)]))


@contextmanager
def appending(conn: Connection) -> Iterator[None]:
    """Gather the logged events appended inside the block, and insert them when it ends, with
    one take_offsets for all (see the module docstring). An inner scope joins the outer one.
    The gathered rows are not in the table before the block ends (`event_exists` sees them;
    other reads do not). If the block raises, they are dropped (its transaction rolls back)."""
    if conn.info.get(_PENDING) is not None:
        yield
        return
    pending = _Pending()
    conn.info[_PENDING] = pending
    try:
        yield
    finally:
        # conn.info outlives the transaction (it is the pooled connection's): always clear it.
        conn.info.pop(_PENDING, None)
    _write(conn, pending)


_PENDING = "nudgeflow.event_log.pending"


@dataclass
class _Pending:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    heads: list[tuple[int, Callable[[Connection, int], None]]] = field(default_factory=list)


def _write(conn: Connection, pending: _Pending) -> None:
    """Take the offsets of the pending rows (and lock the heads asked for), insert the rows."""
    count = partition_log.partition_count(conn)
    parts = [partition_of(row[0], row[2], count) for row in pending.rows]
    counts = Counter(parts)
    for p, _ in pending.heads:
        counts[p] += 0
    if not counts:
        return
    first = partition_log.take_offsets(conn, counts)
    given = dict(first)
    logged = []
    for row, p in zip(pending.rows, parts, strict=True):
        logged.append((*row, p, given[p]))
        given[p] += 1
    sql.insert_rows(conn, "events", LOGGED_COLUMNS, logged, conflict=CONFLICT)
    for p, then in pending.heads:
        then(conn, first[p] - 1)


def event_exists(conn: Connection, workspace_id: str, message_id: str) -> bool:
    """Whether the log holds this message id, or an open `appending` scope will insert it."""
    pending = conn.info.get(_PENDING)
    if pending is not None and any(row[0] == workspace_id and row[1] == message_id for row in pending.rows):
        return True
    m = sql.mark(conn)
    return (
        conn.exec_driver_sql(
            f"SELECT 1 FROM events WHERE workspace_id = {m} AND message_id = {m}", (workspace_id, message_id)
        ).first()
        is not None
    )


def profile_identity(conn: Connection, profile_id: str) -> tuple[str, str | None] | None:
    """(the profile's id, its userId), following a merge; None if there is no such profile."""
    found = load_for_messages(conn, [profile_id]).get(profile_id)
    return (found[2], found[1]) if found else None


# --- reading, in seq order (the engine) ----------------------------------------------------


def read_after(conn: Connection, after_seq: int, limit: int) -> Sequence[Any]:
    """(seq, workspace_id, profile_id, timestamp_ms, payload) of the next events after `after_seq`;
    payload is None for the engine's own Segment Entered / Exited (see _READ_COLUMNS)."""
    m = sql.mark(conn)
    return conn.exec_driver_sql(
        f"SELECT {_READ_COLUMNS} FROM events WHERE seq > {m} ORDER BY seq LIMIT {m}",
        (after_seq, limit),
    ).all()


def read_ranges(conn: Connection, ranges: Sequence[tuple[int, int]], limit: int) -> Sequence[Any]:
    """The events whose seq is in any of `ranges` ([first, last] each), as `read_after`."""
    m = sql.mark(conn)
    where = " OR ".join([f"seq BETWEEN {m} AND {m}"] * len(ranges))
    params = [v for r in ranges for v in (r[0], r[1])]
    return conn.exec_driver_sql(
        f"SELECT {_READ_COLUMNS} FROM events WHERE {where} ORDER BY seq LIMIT {m}", (*params, limit)
    ).all()


def first_seq_after(conn: Connection, after_seq: int) -> int | None:
    m = sql.mark(conn)
    value = conn.exec_driver_sql(f"SELECT MIN(seq) FROM events WHERE seq > {m}", (after_seq,)).scalar()
    return int(value) if value is not None else None


def newest_seq(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT COALESCE(MAX(seq), 0) FROM events").scalar_one())
