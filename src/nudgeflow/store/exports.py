"""Exposures, messages and conversions as rows for a warehouse (`nudgeflow export`,
GET /api/exports/{kind}): read in chunks, oldest first, one workspace, a time range.

- exposures: who was assigned what, when. One row per journey run at entry (arm `treated`,
  `holdout` (the journey's own holdout) or `control` (the workspace's global control group,
  held out of the journey or not: such a run is on neither side of the journey's lift)), one
  per message with a variant of an experiment (arm: the variant's name), at the time the
  message was queued (not a global control member's: it was withheld and exposed no one),
  and one per split path a treated run took (arm: the path's name), when it was assigned
  (run_arms; holdout and global-control runs take none).
- messages: one row per outbox row (every message the engine decided, sent or not), with its
  status and, when it was not sent, the reason (model/reasons.py). Not its content.
- conversions: one row per run that converted: the goal event within the journey's window
  after entry, for treated, held-out and control runs alike (what lift is measured on), with
  revenue, and the run's arm as in exposures.

Rows are read a chunk at a time, in a fixed order (time, then id), and written a chunk at a
time, so an export of millions of rows holds one chunk in memory.

CSV: a header of the column names, times as ISO 8601 in UTC with milliseconds, booleans as
true/false, empty cells for nothing. A text cell that a spreadsheet would read as a formula
(starting with =, +, -, @, a tab or a carriage return) is prefixed with a single quote
(OWASP's advice on CSV injection): ids, variant and template names come from documents an
editor wrote, and userIds from whoever holds the write key.

Parquet (pyarrow, the `parquet` extra): one row group per chunk, times as timestamp[ms, UTC],
integers as int64, booleans as bool, revenue as double; each column's meaning goes into its
field's metadata.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal

from sqlalchemy import Connection, case, literal, null, or_, select, union_all

from nudgeflow.errors import StoreError
from nudgeflow.model.iso_time import iso
from nudgeflow.model.reasons import GLOBAL_CONTROL
from nudgeflow.store.schema import journey_runs, outbox, profiles, run_arms

Kind = Literal["exposures", "messages", "conversions"]
KINDS: tuple[Kind, ...] = ("exposures", "messages", "conversions")
CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: Literal["text", "int", "time", "float", "bool"]
    doc: str


COLUMNS: dict[Kind, tuple[Column, ...]] = {
    "exposures": (
        Column(
            "at",
            "time",
            "when the person was exposed: entry into the journey, the variant's message queued, the split path taken",
        ),
        Column(
            "kind",
            "text",
            "journey (an entry: arm treated, holdout or control), variant (a message of an experiment) or split "
            "(a path taken)",
        ),
        Column("journey_id", "text", "the journey"),
        Column("journey_version", "int", "its version"),
        Column("step", "text", "the send step with variants, or the split step (empty for an entry)"),
        Column(
            "arm",
            "text",
            "treated, holdout, control (the global control group), the variant's name or the split path's",
        ),
        Column("run_id", "text", "the journey run"),
        Column("profile_id", "text", "the person (Nudgeflow's id)"),
        Column("user_id", "text", "their userId, when known"),
    ),
    "messages": (
        Column("created_at", "time", "when the engine decided the message"),
        Column("id", "int", "the outbox row"),
        Column("journey_id", "text", "the journey"),
        Column("journey_version", "int", "its version"),
        Column("step", "text", "the send step"),
        Column("channel", "text", "email, webpush, fcm, apns, webhook…"),
        Column("template", "text", "the template"),
        Column("variant", "text", "the experiment's variant, if any"),
        Column("marketing", "bool", "false for a transactional message"),
        Column("status", "text", "pending, sent, failed, suppressed, deferred, dropped…"),
        Column("reason", "text", "why it is not (or not yet) sent (docs/policies.md, docs/consent.md)"),
        Column("attempts", "int", "delivery attempts"),
        Column("sent_at", "time", "when it was sent"),
        Column("run_id", "text", "the journey run"),
        Column("profile_id", "text", "the person (Nudgeflow's id)"),
        Column("user_id", "text", "their userId, when known"),
    ),
    "conversions": (
        Column("converted_at", "time", "the goal event's time"),
        Column("journey_id", "text", "the journey"),
        Column("journey_version", "int", "its version"),
        Column("arm", "text", "treated, holdout or control (the global control group)"),
        Column("entered_at", "time", "when the run entered the journey"),
        Column("revenue", "float", "the goal's revenue property, when it had one"),
        Column("run_id", "text", "the journey run"),
        Column("profile_id", "text", "the person (Nudgeflow's id)"),
        Column("user_id", "text", "their userId, when known"),
    ),
}


def rows(
    conn: Connection, workspace_id: str, kind: Kind, from_ms: int | None = None, to_ms: int | None = None
) -> Iterator[list[tuple[Any, ...]]]:
    """The workspace's rows of this kind with their time in [from_ms, to_ms), in chunks of
    CHUNK, in COLUMNS[kind] order, oldest first. One query, streamed: the database sorts once
    and the rows come a chunk at a time (a read never blocks the writer: SQLite runs in WAL
    mode, PostgreSQL's reads take no locks)."""
    query, time_col, tie_col = _query(workspace_id, kind)
    sub = query.subquery()
    t, tie = sub.c[time_col], sub.c[tie_col]
    stmt = select(*[sub.c[c.name] for c in COLUMNS[kind]])
    if from_ms is not None:
        stmt = stmt.where(t >= from_ms)
    if to_ms is not None:
        stmt = stmt.where(t < to_ms)
    result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(stmt.order_by(t, tie))
    for part in result.partitions():
        yield [tuple(r) for r in part]


def _user_id(profile_id: Any) -> Any:
    """The person's userId beside a row naming their profile."""
    return select(profiles.c.user_id).where(profiles.c.id == profile_id).scalar_subquery()


def _run_arm(r: Any) -> Any:
    """A run's arm: the global control group first (a member held out of its journey is in
    neither side of the journey's lift), then the journey's holdout."""
    return case((r.c.control != 0, "control"), (r.c.holdout != 0, "holdout"), else_="treated")


def _query(workspace_id: str, kind: Kind) -> tuple[Any, str, str]:
    """(the select, its time column, its tiebreak column); the tiebreak is the last column."""
    user = _user_id(journey_runs.c.profile_id)
    if kind == "conversions":
        r = journey_runs
        q = select(
            r.c.converted_at_ms.label("converted_at"),
            r.c.journey_id,
            r.c.version.label("journey_version"),
            _run_arm(r).label("arm"),
            r.c.entered_at_ms.label("entered_at"),
            r.c.revenue,
            r.c.id.label("run_id"),
            r.c.profile_id,
            user.label("user_id"),
            r.c.id.label("tie"),
        ).where(r.c.workspace_id == workspace_id, r.c.converted_at_ms.is_not(None))
        return q, "converted_at", "tie"
    o = outbox
    outbox_user = _user_id(o.c.profile_id)
    if kind == "messages":
        q = select(
            o.c.created_at_ms.label("created_at"),
            o.c.id,
            o.c.journey_id,
            o.c.journey_version,
            o.c.step,
            o.c.channel,
            o.c.template,
            o.c.variant,
            o.c.marketing,
            o.c.status,
            o.c.reason,
            o.c.attempts,
            o.c.sent_at_ms.label("sent_at"),
            o.c.run_id,
            o.c.profile_id,
            outbox_user.label("user_id"),
            o.c.id.label("tie"),
        ).where(o.c.workspace_id == workspace_id)
        return q, "created_at", "tie"
    r = journey_runs
    entries = select(
        r.c.entered_at_ms.label("at"),
        literal("journey").label("kind"),
        r.c.journey_id,
        r.c.version.label("journey_version"),
        null().label("step"),
        _run_arm(r).label("arm"),
        r.c.id.label("run_id"),
        r.c.profile_id,
        user.label("user_id"),
        ("r:" + r.c.id).label("tie"),
    ).where(r.c.workspace_id == workspace_id)
    variants = select(
        o.c.created_at_ms.label("at"),
        literal("variant").label("kind"),
        o.c.journey_id,
        o.c.journey_version,
        o.c.step,
        o.c.variant.label("arm"),
        o.c.run_id,
        o.c.profile_id,
        outbox_user.label("user_id"),
        ("m:" + o.c.idempotency_key).label("tie"),
    ).where(
        o.c.workspace_id == workspace_id,
        o.c.variant.is_not(None),
        # A global control member's message, withheld before any policy saw it, exposed no
        # one: the member is in no arm (store/rollups.count_arms), here as in the report.
        or_(o.c.reason.is_(None), o.c.reason != GLOBAL_CONTROL),
    )
    a = run_arms
    splits = select(
        a.c.assigned_at_ms.label("at"),
        literal("split").label("kind"),
        a.c.journey_id,
        a.c.version.label("journey_version"),
        a.c.step,
        a.c.arm,
        a.c.run_id,
        a.c.profile_id,
        _user_id(a.c.profile_id).label("user_id"),
        ("a:" + a.c.run_id + "/" + a.c.step).label("tie"),
    ).where(a.c.workspace_id == workspace_id, a.c.kind == "split")
    return union_all(entries, variants, splits), "at", "tie"


# --- writing ------------------------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportFormatError(StoreError, ValueError):
    """An export cannot be written in the asked format (Parquet without pyarrow)."""


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "time":
        return iso(int(value))
    if kind == "bool":
        return "true" if value else "false"
    text = str(value)
    if kind == "text" and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def csv_chunks(columns: Sequence[Column], chunks: Iterable[list[tuple[Any, ...]]]) -> Iterator[str]:
    """The CSV text, the header first, then a piece per chunk (for a streaming response)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.name for c in columns])
    yield buffer.getvalue()
    kinds = [c.type for c in columns]
    for chunk in chunks:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([_cell(v, k) for v, k in zip(row, kinds, strict=True)] for row in chunk)
        yield buffer.getvalue()


def write_csv(out: IO[str], columns: Sequence[Column], chunks: Iterable[list[tuple[Any, ...]]]) -> int:
    """Write the CSV to `out`; returns the rows written."""
    count = 0

    def counted() -> Iterator[list[tuple[Any, ...]]]:
        nonlocal count
        for chunk in chunks:
            count += len(chunk)
            yield chunk

    for piece in csv_chunks(columns, counted()):
        out.write(piece)
    return count


def write_parquet(out: IO[bytes], columns: Sequence[Column], chunks: Iterable[list[tuple[Any, ...]]]) -> int:
    """Write a Parquet file to `out` (a binary file object); returns the rows written."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ExportFormatError(
            "Parquet needs pyarrow: pip install 'nudgeflow[parquet]' (or choose --format csv)"
        ) from exc
    types = {"text": pa.string(), "int": pa.int64(), "time": pa.timestamp("ms", tz="UTC"), "float": pa.float64()}
    types["bool"] = pa.bool_()
    schema = pa.schema([pa.field(c.name, types[c.type], metadata={"doc": c.doc}) for c in columns])
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        for chunk in chunks:
            arrays = [
                pa.array([_parquet_value(row[i], c.type) for row in chunk], type=types[c.type])
                for i, c in enumerate(columns)
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            count += len(chunk)
        if count == 0:
            writer.write_table(schema.empty_table())
    return count


def _parquet_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "bool":
        return bool(value)
    if kind == "float":
        return float(value)
    if kind in ("int", "time"):
        return int(value)
    return str(value)
