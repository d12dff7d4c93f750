"""`nudgeflow simulate`: load journey files, replay a JSON Lines file of events, report.

A file is replayed in timestamp order whatever order its lines are in, without holding a
million messages in memory: a first pass checks every line and records only its time and
where it sits in the file (standard input is spooled to a temporary file for this); the
second pass reads the lines again in time order (a stable sort: lines at the same
millisecond keep their file order) and feeds them to the simulator. A file already in
order, the usual case, is simply read twice from start to end.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from nudgeflow.errors import EngineRuntimeError
from nudgeflow.model.iso_time import iso
from nudgeflow.model.journeys import Journey
from nudgeflow.model.json_lines import BOM, read_lines
from nudgeflow.model.policies import EMPTY, Policies
from nudgeflow.model.segments import Segment
from nudgeflow.runtime.simulation import (
    LAST_INSTANT_MS,
    InvalidMessage,
    PlannedMessage,
    Simulation,
    check_message,
    message_time_ms,
)
from nudgeflow.settings import Settings

STDIN = "-"
JOURNEY_SUFFIXES = (".yaml", ".yml", ".json")


# --- journeys ------------------------------------------------------------------------------


class JourneyLoadError(EngineRuntimeError, ValueError):
    """Journey files that cannot go live; `problems` lists each as 'file: path: reason'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def journey_files(paths: Iterable[str | Path], what: str = "journey") -> list[Path]:
    """The files named, and the .yaml/.yml/.json files directly inside directories named."""
    found: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in JOURNEY_SUFFIXES)
            if not inside:
                problems.append(f"{path}: no .yaml, .yml or .json {what} file in this directory")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            problems.append(f"{path}: no such file or directory")
    if problems:
        raise JourneyLoadError(problems)
    return found


def load_journeys(paths: Iterable[str | Path]) -> list[Journey]:
    """Every journey in the files and directories given, checked as `journeys validate`
    checks them; JourneyLoadError lists every error (file:line: path: reason) if any."""
    from nudgeflow.model.journey_checks import ERROR, DocumentError, FileProblem, check_journey, load_documents

    journeys: list[Journey] = []
    problems: list[str] = []
    where: dict[str, str] = {}
    for path in journey_files(paths):
        try:
            docs = load_documents(path)
        except (OSError, DocumentError, UnicodeDecodeError) as exc:
            line = getattr(exc, "line", None)
            problems.append(f"{path}:{line}: {exc}" if line else f"{path}: {exc}")
            continue
        if not docs:
            problems.append(f"{path}: no journey in this file")
        for index, doc in docs:
            journey, found = check_journey(doc)
            errors = [p for p in found if p.severity == ERROR]
            problems.extend(
                FileProblem(str(path), p.path, p.line, p.message, p.severity, index).format() for p in errors
            )
            if journey is None or errors:
                continue
            label = f"{path}" if len(docs) == 1 else f"{path} (document {index + 1})"
            if journey.id in where:
                problems.append(f"{label}: id: journey {journey.id!r} is already defined in {where[journey.id]}")
                continue
            where[journey.id] = label
            journeys.append(journey)
    if problems:
        raise JourneyLoadError(problems)
    return journeys


# --- policies and segments ------------------------------------------------------------------


def load_policies(path: str | Path) -> Policies:
    """A policies.yaml (or .json) checked as `nudgeflow policies validate` checks it;
    JourneyLoadError lists every error (file:line: path: reason)."""
    from nudgeflow.model.journey_checks import ERROR
    from nudgeflow.model.policy_checks import check_policies_file, is_valid

    policies, problems = check_policies_file(path)
    if policies is None or not is_valid(problems):
        raise JourneyLoadError([p.format() for p in problems if p.severity == ERROR])
    return policies


def load_segments(paths: Iterable[str | Path]) -> list[Segment]:
    """Every segment in the files and directories given, each checked, ids unique, references
    to segments among them and no cycle; JourneyLoadError lists every problem."""
    from nudgeflow.model.journey_checks import ERROR, DocumentError, FileProblem, load_documents
    from nudgeflow.model.segment_checks import check_segment
    from nudgeflow.model.segments import SegmentCycleError, referenced_segments, segment_order

    segments: list[Segment] = []
    problems: list[str] = []
    where: dict[str, str] = {}
    for path in journey_files(paths, "segment"):
        try:
            docs = load_documents(path)
        except (OSError, DocumentError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        if not docs:
            problems.append(f"{path}: no segment in this file")
        for index, doc in docs:
            label = f"{path}" if len(docs) == 1 else f"{path} (document {index + 1})"
            segment, found = check_segment(doc)  # as `segments validate` checks it, with lines
            problems.extend(
                FileProblem(str(path), p.path, p.line, p.message, p.severity, index).format()
                for p in found
                if p.severity == ERROR
            )
            if segment is None:
                continue
            if segment.id in where:
                problems.append(f"{label}: id: segment {segment.id!r} is already defined in {where[segment.id]}")
                continue
            where[segment.id] = label
            segments.append(segment)
    for segment in segments:
        for missing in sorted(referenced_segments(segment.when) - where.keys()):
            problems.append(f"{where[segment.id]}: when: segment {missing!r} is not among the segments given")
    if not problems:
        try:
            segment_order(segments)
        except SegmentCycleError as exc:
            problems.append(str(exc))
    if problems:
        raise JourneyLoadError(problems)
    return segments


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


@dataclass
class ReplayReport:
    sim: Simulation
    lines: int = 0  # non-blank lines read
    bad_lines: list[BadLine] = field(default_factory=list)
    horizon_ms: int | None = None  # timers were fired up to here
    read_seconds: float = 0.0
    replay_seconds: float = 0.0
    # Send policies or segments were given: message lines carry a status, and the summary
    # the pressure report and segment sizes. Without them the output is what it always was.
    extended: bool = False

    @property
    def seconds(self) -> float:
        return self.read_seconds + self.replay_seconds

    def summary(self) -> dict[str, Any]:
        base = self.sim.summary()
        out = {"events": base.pop("events"), "lines": self.lines, "bad_lines": len(self.bad_lines)}
        journeys = base.pop("journeys")
        out.update(base)
        out["horizon"] = iso(self.horizon_ms) if self.horizon_ms is not None else None
        out["journeys"] = journeys
        if not self.extended:
            out.pop("withheld", None)
            return out
        from nudgeflow.runtime.simulation_report import pressure, segment_report

        out["pressure"] = pressure(self.sim)
        if self.sim.segments:
            out["segments"] = segment_report(self.sim)
        return out


class _Index:
    """Where each good line is and when it happened: four flat arrays, not a million objects."""

    def __init__(self) -> None:
        self.times = array("q")
        self.offsets = array("q")
        self.sizes = array("q")
        self.numbers = array("q")
        self.slow: set[int] = set()  # lines ingest's validation had to coerce: check again
        self.in_order = True


def _reason(exc: Exception) -> str:
    return f"invalid event: {exc}" if isinstance(exc, InvalidMessage) else str(exc)


def replay_file(
    journeys: Sequence[Journey],
    path_or_dash: str,
    *,
    horizon_ms: int | None = None,
    console: Console | None = None,
    on_bad_line: Callable[[BadLine], None] | None = None,
    max_event_bytes: int = Settings.max_event_bytes,
    stdin: IO[bytes] | None = None,
    engine: Any = None,
    places: Sequence[Mapping[str, Any]] = (),
    policies: Policies | None = None,
    segments: Sequence[Segment] = (),
) -> ReplayReport:
    """Replay a JSON Lines file (or standard input for "-") through the journeys, then fire
    timers up to the last event + `horizon_ms`. Bad lines are reported and skipped.
    `engine` replaces the core (the benchmark measures the simulator's own cost with it).
    `policies` and `segments` go into the simulator's catalog, as the engine's."""
    console = console or Console(stderr=True)
    sim = Simulation(
        journeys, engine=engine, places=places, segments=segments, policies=EMPTY if policies is None else policies
    )
    report = ReplayReport(sim, extended=policies is not None or bool(segments))
    spool: IO[bytes] | None = None
    if path_or_dash == STDIN:
        source: IO[bytes] = stdin or sys.stdin.buffer
        total: int | None = None
        spool = tempfile.TemporaryFile(prefix="nudgeflow-simulate-")
    else:
        path = Path(path_or_dash)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory, not a JSON Lines file")
        source = path.open("rb")
        total = os.fstat(source.fileno()).st_size  # of the file opened: nothing can fail between
    name = "stdin" if spool is not None else Path(path_or_dash).name

    def bad(line: int, reason: str, progress: Progress) -> None:
        item = BadLine(line, reason)
        report.bad_lines.append(item)
        if on_bad_line is not None:
            on_bad_line(item)
        else:
            progress.console.print(f"[yellow]line {line}:[/] {escape(reason)}", highlight=False, soft_wrap=True)

    limit = max_event_bytes + 512
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            started = time.perf_counter()
            reading = progress.add_task(f"reading {name}", total=total, note="bytes")
            index = _read(
                source,
                spool,
                index_bad=lambda n, r: bad(n, r, progress),
                progress=progress,
                task=reading,
                limit=limit,
                report=report,
            )
            report.read_seconds = time.perf_counter() - started

            started = time.perf_counter()
            count = len(index.times)
            replaying = progress.add_task("replaying", total=count, note="events")
            stream = spool if spool is not None else source
            _replay(sim, index, stream, progress, replaying)
            if horizon_ms is not None and sim.last_event_ms is not None:
                # No further than a time can be shown (an event on 9999-12-31 and a 30d horizon).
                report.horizon_ms = min(sim.last_event_ms + horizon_ms, LAST_INSTANT_MS)
                progress.update(replaying, note=f"events; timers up to {iso(report.horizon_ms)}")
                sim.drain(report.horizon_ms)
            progress.update(replaying, completed=count, note="events")
            report.replay_seconds = time.perf_counter() - started
    finally:
        if spool is not None:
            spool.close()
        else:
            source.close()
    report.bad_lines.sort(key=lambda b: b.line)
    return report


def _read(
    source: IO[bytes],
    spool: IO[bytes] | None,
    *,
    index_bad: Callable[[int, str], None],
    progress: Progress,
    task: Any,
    limit: int,
    report: ReplayReport,
) -> _Index:
    index = _Index()
    times, offsets, sizes, numbers = index.times, index.offsets, index.sizes, index.numbers
    loads, check, when = orjson.loads, check_message, message_time_ms
    offset = unreported = 0
    last = -(2**63)
    # The spool is given every byte read, so that its offsets are the ones recorded here.
    for number, line, size, bom in read_lines(source, limit, copy_to=spool):
        start = offset
        offset += size
        unreported += size
        if number & 1023 == 0:
            progress.update(task, advance=unreported)
            unreported = 0
        if line is not None and not line.strip():
            continue
        report.lines += 1
        if line is None or len(line) > limit:
            index_bad(number, f"invalid event: event is {size - bom} bytes; the limit is {limit - 512}")
            continue
        try:
            decoded = loads(line)
        except orjson.JSONDecodeError as exc:
            index_bad(number, f"invalid JSON: {exc}")
            continue
        try:
            message = check(decoded)
            at = when(message)
        except InvalidMessage as exc:
            index_bad(number, _reason(exc))
            continue
        if at is None:
            index_bad(number, "invalid event: timestamp: required to place the event in time")
            continue
        if message is not decoded:
            index.slow.add(len(times))
        if at < last:
            index.in_order = False
        else:
            last = at
        times.append(at)
        offsets.append(start)
        sizes.append(size)
        numbers.append(number)
    progress.update(task, advance=unreported)
    if spool is not None:
        spool.flush()
    return index


def _replay(sim: Simulation, index: _Index, stream: IO[bytes], progress: Progress, task: Any) -> None:
    times, offsets, sizes = index.times, index.offsets, index.sizes
    count = len(times)
    order: Iterable[int] = range(count) if index.in_order else sorted(range(count), key=times.__getitem__)
    slow = index.slow
    loads, feed = orjson.loads, sim.feed_checked
    stream.seek(0)
    position = 0
    for done, i in enumerate(order, start=1):
        offset = offsets[i]
        if offset != position:
            stream.seek(offset)
        data = stream.read(sizes[i])
        position = offset + sizes[i]
        if offset == 0 and data.startswith(BOM):
            data = data[len(BOM) :]
        message = loads(data)
        if i in slow:
            message = check_message(message)
        feed(message, times[i])
        if done & 1023 == 0:
            progress.update(task, completed=done)


# --- output --------------------------------------------------------------------------------


def ordered(messages: Sequence[PlannedMessage]) -> list[PlannedMessage]:
    """Planned messages by time (a stable sort: the order the core planned them in ties)."""
    return sorted(messages, key=lambda m: m.at_ms)


def write_json_lines(report: ReplayReport, out: IO[str], extra: Mapping[str, Any] | None = None) -> None:
    """One object per planned message, then {"summary": {...}} on the last line. With
    policies or segments, one per message wanted, with its status (runtime/simulation_report).
    `extra` is added to the summary (simulate --report's reports)."""
    dumps = orjson.dumps
    if report.extended:
        from nudgeflow.runtime.simulation_report import message_lines

        lines: Iterable[dict[str, Any]] = message_lines(report.sim)
    else:
        lines = (message.as_json() for message in ordered(report.sim.messages))
    for line in lines:
        out.write(dumps(line).decode())
        out.write("\n")
    summary = report.summary()
    if extra:
        summary.update(extra)
    out.write(dumps({"summary": summary}).decode())
    out.write("\n")


def _who(message: PlannedMessage) -> str:
    return message.user_id if message.user_id is not None else f"anon {message.anonymous_id}"


def messages_table(messages: Sequence[PlannedMessage], limit: int) -> Table:
    shown = ordered(messages)[: max(limit, 0)]
    with_variants = any(m.variant for m in shown)
    with_deferrals = any(m.deferred_from_ms is not None for m in shown)
    table = Table(title=f"Planned messages ({len(messages):,})", title_justify="left")
    table.add_column("at (UTC)", no_wrap=True)
    for name in ("user", "journey", "step", "channel", "template"):
        table.add_column(name, overflow="fold")
    if with_variants:
        table.add_column("variant", overflow="fold")
    if with_deferrals:
        table.add_column("deferred from", no_wrap=True)
    for m in shown:
        row = [iso(m.at_ms), escape(_who(m)), escape(m.journey), escape(m.step), escape(m.channel), escape(m.template)]
        if with_variants:
            row.append(escape(m.variant or ""))
        if with_deferrals:
            row.append(iso(m.deferred_from_ms) if m.deferred_from_ms is not None else "")
        table.add_row(*row)
    if len(messages) > len(shown):
        table.caption = f"the first {len(shown):,} of {len(messages):,} (--limit to see more; --json prints them all)"
    return table


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="Per journey", title_justify="left")
    table.add_column("journey", no_wrap=True)
    # Only with a global control group in the policies (the summary then counts its runs).
    control = any("global_control" in row for row in summary["journeys"].values())
    for name in ("entered", "holdout", "active", "completed"):
        table.add_column(name, justify="right")
    table.add_column("exited, by reason", overflow="fold")
    table.add_column("converted", justify="right")
    table.add_column("revenue", justify="right")
    if control:
        table.add_column("global control (converted)", justify="right")
    for journey_id, row in summary["journeys"].items():
        exited = "\n".join(f"{reason}: {n:,}" for reason, n in row["exited"].items()) or "0"
        cells = [
            escape(journey_id),
            f"{row['entered']:,}",
            f"{row['holdout']:,}",
            f"{row['active']:,}",
            f"{row['completed']:,}",
            escape(exited),
            f"{row['converted']:,}",
            f"{row['revenue']:,.2f}",
        ]
        if control:
            cells.append(f"{row['global_control']:,} ({row['global_control_converted']:,})")
        table.add_row(*cells)
    return table


def steps_table(summary: dict[str, Any]) -> Table:
    table = Table(title="Messages per step", title_justify="left")
    table.add_column("journey", no_wrap=True)
    table.add_column("step", overflow="fold")
    table.add_column("messages", justify="right")
    table.add_column("failed", justify="right")
    for journey_id, row in summary["journeys"].items():
        steps = list(row["messages"]) + [s for s in row["failed"] if s not in row["messages"]]
        for i, step in enumerate(steps):
            failed = row["failed"].get(step, 0)
            table.add_row(
                escape(journey_id) if i == 0 else "",
                escape(step),
                f"{row['messages'].get(step, 0):,}",
                f"[red]{failed:,}[/]" if failed else "0",
                end_section=i == len(steps) - 1,
            )
    return table


def totals_line(report: ReplayReport) -> str:
    s = report.summary()
    rate = report.lines / report.seconds if report.seconds > 0 else 0.0
    span = f"{s['first_event']} .. {s['last_event']}" if s["first_event"] else "no events"
    horizon = f", timers fired up to {s['horizon']}" if s["horizon"] else ""
    bad = f", [red]{s['bad_lines']:,} bad lines[/]" if s["bad_lines"] else ""
    return (
        f"{s['events']:,} events ({span}){horizon}{bad}; {s['profiles']:,} profiles; "
        f"{s['messages']:,} planned messages; {report.seconds:.2f} s ({rate:,.0f} lines/s)"
    )


def pressure_tables(summary: dict[str, Any]) -> list[Table]:
    """The pressure report of an extended summary (runtime/simulation_report.pressure)."""
    report = summary["pressure"]
    weekly = Table(
        title="Messages per person per channel per ISO week (UTC)",
        title_justify="left",
        caption="over the person-weeks with at least one message on the channel",
        caption_justify="left",
    )
    weekly.add_column("channel", no_wrap=True)
    for name in ("people", "person-weeks", "messages", "p50", "p90", "max"):
        weekly.add_column(name, justify="right")
    for channel, row in report["per_person_week"]["channels"].items():
        weekly.add_row(
            escape(channel),
            *(f"{row[k]:,}" for k in ("people", "person_weeks", "messages", "p50", "p90", "max")),
        )
    tables = [weekly]
    held_caption = "messages held, each counted once per reason: dropped, or deferred (sent later or still held)"
    caps = Table(title="Frequency cap hits by rule", title_justify="left", caption=held_caption, caption_justify="left")
    caps.add_column("rule", no_wrap=True)
    caps.add_column("deferred", justify="right")
    caps.add_column("dropped", justify="right")
    for rule, row in report["cap_hits"].items():
        caps.add_row(escape(rule), f"{row['deferred']:,}", f"{row['dropped']:,}")
    collisions = Table(title="Collisions (winner \u2190 loser)", title_justify="left")
    collisions.add_column("winner \u2190 loser", overflow="fold")
    collisions.add_column("deferred", justify="right")
    collisions.add_column("dropped", justify="right")
    for row in report["collisions"]:
        pair = f"{row['winner']} \u2190 {row['loser']}"
        collisions.add_row(escape(pair), f"{row['deferred']:,}", f"{row['dropped']:,}")
    quiet = Table(title="Quiet hours by channel", title_justify="left")
    quiet.add_column("channel", no_wrap=True)
    quiet.add_column("deferred", justify="right")
    quiet.add_column("dropped", justify="right")
    for channel, row in report["quiet_hours"].items():
        quiet.add_row(escape(channel), f"{row['deferred']:,}", f"{row['dropped']:,}")
    tables.extend([caps, collisions, quiet])
    return tables


def segments_table(summary: dict[str, Any]) -> Table:
    """Segment sizes when the replay ended, with the entries and exits counted on the way."""
    table = Table(title="Segments at the end of the replay", title_justify="left")
    table.add_column("segment", no_wrap=True)
    for name in ("members", "entered", "exited"):
        table.add_column(name, justify="right")
    for segment_id, row in summary.get("segments", {}).items():
        table.add_row(escape(segment_id), f"{row['members']:,}", f"{row['entered']:,}", f"{row['exited']:,}")
    return table
