"""Bulk import: Segment-shaped JSON Lines (history, or a migration from another tool).

Each line is validated by the same model code as HTTP ingest and written through the same
writer, in batches of one transaction each. A bad line is reported with its number and
reason and the import goes on. Lines without a messageId get one derived from their
content, so running the same import twice stores nothing twice.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from nudgeflow.core.clock import Clock, SystemClock, to_ms
from nudgeflow.errors import IntakeError
from nudgeflow.model.events import (
    EventRecord,
    InvalidEvent,
    InvalidPayload,
    describe_clamp,
    normalize,
    parse_message,
)
from nudgeflow.model.json_lines import read_lines
from nudgeflow.model.timestamps import as_utc
from nudgeflow.settings import Settings
from nudgeflow.store.ingest_writer import write_events
from nudgeflow.store.workspaces import WRITE, workspace_for_key

STDIN = "-"


class UnknownWriteKey(IntakeError, ValueError):
    """No workspace in this database has the write key given."""


class ImportFailed(IntakeError, ValueError):
    """The database stopped accepting writes; lines before `line` are committed."""


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


@dataclass
class ImportReport:
    lines: int = 0  # non-blank lines read
    imported: int = 0
    duplicates: int = 0  # lines whose messageId was already stored (or repeated in the file)
    bad_lines: list[BadLine] = field(default_factory=list)
    profiles_created: int = 0
    merges: int = 0
    # Imported lines with a reserved trait that failed validation and was not applied.
    trait_warnings: list[BadLine] = field(default_factory=list)
    # Imported lines timestamped too far after the import ran, stored at their receipt time.
    clamped: list[BadLine] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def bad(self) -> int:
        return len(self.bad_lines)


def _reason(exc: Exception) -> str:
    if isinstance(exc, InvalidPayload):
        return "invalid event: " + "; ".join(str(e) for e in exc.errors[:5])
    if isinstance(exc, InvalidEvent):
        return f"invalid event: {exc}"
    return str(exc)


def _received_at(message: dict[str, Any], now: datetime) -> datetime:
    """When the event reached its first collector, for the timestamp correction.

    An export from Segment carries receivedAt: use it, so the correction is the one Segment
    made. Without it, the best guess for a historical event is that it arrived when it was
    sent (correcting against the time of the import would move history to today).
    """
    raw = message.get("receivedAt")
    if raw is not None:
        if not isinstance(raw, str):
            raise InvalidEvent("receivedAt", "not an ISO 8601 date-time")
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidEvent("receivedAt", "not an ISO 8601 date-time") from exc
        return _in_utc("receivedAt", parsed)
    sent_at = message.get("sentAt")
    if isinstance(sent_at, datetime):
        return _in_utc("sentAt", sent_at)
    return now


def _in_utc(name: str, value: datetime) -> datetime:
    try:
        return as_utc(value)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+14:00: before year 1 in UTC
        raise InvalidEvent(name, "out of range once converted to UTC") from exc


def parse_line(
    raw: bytes, now: datetime, *, max_event_bytes: int, future_limit: timedelta = timedelta(days=1)
) -> EventRecord:
    """One line to the record HTTP ingest would store; raises ValueError with the reason.
    History is in the past, so the future limit is counted from the import's own time `now`
    (a receivedAt in the file may be as wrong as its timestamp)."""
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from exc
    message = parse_message(decoded)
    return normalize(
        message,
        _received_at(message, now),
        max_event_bytes=max_event_bytes,
        derive_message_id=True,
        own=True,  # an operator's import (of an export, say): Nudgeflow's own events keep their ids
        future_limit=future_limit,
        now=now,
    )


def line_limit(max_event_bytes: int) -> int:
    """The longest line read whole: twice the event limit (room for a line's spaces between
    tokens) and 64 KiB. A longer line cannot hold an event within the limit."""
    return 2 * max_event_bytes + 64 * 1024


def _progress(console: Console, total_bytes: int | None) -> Progress:
    if total_bytes is not None:
        columns: list[Any] = [
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[lines]:,} lines"),
            TimeRemainingColumn(),
        ]
    else:  # standard input: no size to measure against, so count lines
        columns = [
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            TextColumn("{task.fields[lines]:,} lines"),
            TimeElapsedColumn(),
        ]
    return Progress(*columns, console=console, transient=False)


def _open(path_or_dash: str) -> tuple[IO[bytes], int | None, bool]:
    if path_or_dash == STDIN:
        return sys.stdin.buffer, None, False
    path = Path(path_or_dash)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a JSON Lines file")
    stream = path.open("rb")
    return stream, os.fstat(stream.fileno()).st_size, True


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def _aborted(line: int, exc: BaseException) -> ImportFailed:
    return ImportFailed(
        f"the database stopped accepting writes at the batch starting on line {line} ({_first_line(exc)}); "
        "the lines before it are imported, and running the import again skips them"
    )


def summary_table(report: ImportReport) -> Table:
    table = Table(title="Import", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("lines read", f"{report.lines:,}")
    table.add_row("imported", f"{report.imported:,}")
    table.add_row("duplicates skipped", f"{report.duplicates:,}")
    table.add_row("bad lines", f"[red]{report.bad:,}[/]" if report.bad else "0")
    if report.trait_warnings:
        table.add_row("traits not applied", f"[yellow]{len(report.trait_warnings):,}[/]")
    if report.clamped:
        table.add_row("future timestamps clamped", f"[yellow]{len(report.clamped):,}[/]")
    table.add_row("profiles created", f"{report.profiles_created:,}")
    table.add_row("profile merges", f"{report.merges:,}")
    rate = report.lines / report.seconds if report.seconds > 0 else 0.0
    table.add_row("time", f"{report.seconds:.2f} s ({rate:,.0f} lines/s)")
    return table


def import_file(
    engine: Engine,
    path_or_dash: str,
    write_key: str,
    *,
    batch_size: int = 1000,
    console: Console | None = None,
    clock: Clock | None = None,
    max_event_bytes: int = Settings.max_event_bytes,
    max_future_seconds: int = Settings.ingest_max_future_seconds,
) -> ImportReport:
    """Import a JSON Lines file (or standard input for "-") into the write key's workspace."""
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    console = console or Console(stderr=True)
    clock = clock or SystemClock()
    with engine.connect() as conn:
        workspace_id = workspace_for_key(conn, WRITE, write_key)
    if workspace_id is None:
        # The key itself is never printed: it is a secret, and a typo'd one is nearly a real one.
        raise UnknownWriteKey("unknown write key: no workspace in this database has it")

    report = ImportReport()
    started = time.perf_counter()
    stream, total_bytes, close = _open(path_or_dash)
    pending: list[tuple[int, EventRecord]] = []

    def write(items: list[tuple[int, EventRecord]]) -> None:
        with engine.begin() as conn:
            result = write_events(conn, workspace_id, [record for _, record in items], to_ms(clock.now()))
        report.imported += result.accepted
        report.duplicates += result.duplicates
        report.profiles_created += result.profiles_created
        report.merges += result.merges

    def flush(progress: Progress) -> None:
        nonlocal pending
        items, pending = pending, []
        if not items:
            return
        try:
            write(items)
            return
        except OperationalError as exc:  # the database went away: nothing more can be stored
            raise _aborted(items[0][0], exc) from exc
        except SQLAlchemyError:
            pass
        # Something in the batch was refused: store the lines one by one, so only the
        # culprit is reported and its neighbours are kept.
        for number, record in items:
            try:
                write([(number, record)])
            except OperationalError as exc:
                raise _aborted(number, exc) from exc
            except SQLAlchemyError as exc:
                bad = BadLine(number, f"not stored: the database refused it ({_first_line(exc)})")
                report.bad_lines.append(bad)
                progress.console.print(
                    f"[yellow]line {number}:[/] {escape(bad.reason)}", highlight=False, soft_wrap=True
                )

    try:
        with _progress(console, total_bytes) as progress:
            name = "stdin" if path_or_dash == STDIN else Path(path_or_dash).name
            task = progress.add_task(f"importing {name}", total=total_bytes, lines=0)
            unreported = last = 0
            limit = line_limit(max_event_bytes)
            future_limit = timedelta(seconds=max_future_seconds)
            for number, raw, size, _ in read_lines(stream, limit):
                unreported, last = unreported + size, number
                if number % 256 == 0:  # the bar need not move per line; updating it costs
                    progress.update(task, advance=unreported, lines=number)
                    unreported = 0
                if raw is None:
                    report.lines += 1
                    bad = BadLine(number, f"invalid event: line is {size} bytes; the limit is {max_event_bytes}")
                    report.bad_lines.append(bad)
                    progress.console.print(
                        f"[yellow]line {number}:[/] {escape(bad.reason)}", highlight=False, soft_wrap=True
                    )
                    continue
                line = raw.strip()
                if not line:
                    continue
                report.lines += 1
                try:
                    record = parse_line(line, clock.now(), max_event_bytes=max_event_bytes, future_limit=future_limit)
                except (ValueError, InvalidPayload) as exc:
                    bad = BadLine(number, _reason(exc))
                    report.bad_lines.append(bad)
                    progress.console.print(
                        f"[yellow]line {number}:[/] {escape(bad.reason)}", highlight=False, soft_wrap=True
                    )
                    continue
                for trait, problem in (record.trait_errors or {}).items():
                    warning = BadLine(number, f"traits.{trait}: {problem['reason']}; the trait was not applied")
                    report.trait_warnings.append(warning)
                    progress.console.print(
                        f"[dim]line {number}: warning:[/] {escape(warning.reason)}", highlight=False, soft_wrap=True
                    )
                if record.clamped_from is not None:
                    warning = BadLine(
                        number, "timestamp: " + describe_clamp(record.clamped_from, future_limit, "the import ran")
                    )
                    report.clamped.append(warning)
                    progress.console.print(
                        f"[dim]line {number}: warning:[/] {escape(warning.reason)}", highlight=False, soft_wrap=True
                    )
                pending.append((number, record))
                if len(pending) >= batch_size:
                    flush(progress)
            flush(progress)
            progress.update(task, advance=unreported, lines=last)
    except ImportFailed:
        report.seconds = time.perf_counter() - started
        console.print(summary_table(report))
        raise
    finally:
        if close:
            stream.close()
        report.seconds = time.perf_counter() - started
        report.bad_lines.sort(key=lambda bad: bad.line)
    console.print(summary_table(report))
    return report
