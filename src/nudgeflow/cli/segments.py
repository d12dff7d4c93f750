"""`nudgeflow segments …`: segments as code."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from nudgeflow.cli.common import DatabaseOpt, WorkspaceOpt, err, fail, now_ms, open_workspace, plural
from nudgeflow.model.iso_time import iso

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from nudgeflow.model.journey_checks import FileProblem

# The store's words for a computation's status (store/segments.py), and its page limit: the
# store, the segment model and its checks load in the command bodies (cli/common.py, "Start-up cost").
PENDING, DONE = "pending", "done"
MAX_PAGE = 1000

segments_app = typer.Typer(
    help="Segments as code: validate, apply, list, show, members, archive.", no_args_is_help=True
)

SegmentFiles = Annotated[list[str], typer.Argument(help="Segment files (.yaml, .yml, .json) or directories of them.")]
SegmentId = Annotated[str, typer.Argument(metavar="ID")]


def _print_problems(problems: list[FileProblem], stream: Any) -> tuple[int, int]:
    for problem in problems:
        print(problem.format(), file=stream)
    errors = sum(1 for p in problems if p.severity == "error")
    return errors, len(problems) - errors


@segments_app.command("validate")
def segments_validate(files: SegmentFiles) -> None:
    """Check segment files without a database: every problem as file:line: path: message."""
    from nudgeflow.model.segment_checks import check_files, segment_files

    paths = segment_files(files)
    if not paths:
        raise fail("no segment files (.yaml, .yml, .json) found in " + " ".join(files))
    problems, valid = check_files(paths)
    errors, warnings = _print_problems(problems, sys.stdout)
    print(
        f"{plural(len(paths), 'file')}, {plural(len(valid), 'valid segment')}: "
        f"{plural(errors, 'error')}, {plural(warnings, 'warning')}"
    )
    if errors:
        raise typer.Exit(1)


def _as_of(found: dict[str, Any]) -> str:
    computed = found.get("computed")
    if computed is not None and computed["status"] == PENDING:
        return f"computing version {computed['version']}: {computed['profiles_done']:,} people looked at so far"
    seq, at = found.get("as_of_seq"), found.get("as_of_ms")
    if seq is None:
        return ""
    return f"as of event {seq:,} of the log" + (f" ({iso(at, milliseconds=False)})" if at else "")


@segments_app.command("apply")
def segments_apply(
    files: SegmentFiles,
    workspace: WorkspaceOpt,
    draft: Annotated[bool, typer.Option("--draft", help="Only store the drafts: nothing goes live.")] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            help="Wait up to this long for the engine (of `nudgeflow serve`) to compute each new version, then "
            "print its size and as of when.",
        ),
    ] = 0,
    database: DatabaseOpt = None,
) -> None:
    """Create or change segments from files, all or nothing, and make them live.

    A changed definition becomes a new version, which the engine computes for the people
    already stored, in the background; `segments show ID` says how far it went."""
    from nudgeflow.model.segment_checks import check_files, segment_files
    from nudgeflow.store import segments as store

    paths = segment_files(files)
    if not paths:
        raise fail("no segment files (.yaml, .yml, .json) found in " + " ".join(files))
    problems, _valid = check_files(paths)
    if any(p.severity == "error" for p in problems):  # before opening the database
        errors, _warnings = _print_problems(problems, sys.stderr)
        raise fail(f"nothing applied: {plural(errors, 'error')} in the files above")
    now = now_ms()
    engine = open_workspace(database, workspace)
    lines: list[str] = []
    new: list[str] = []
    try:
        with engine.begin() as conn:
            # Checked again with the workspace's live segments: references must be known.
            problems, valid = check_files(paths, live=store.live_definitions(conn, workspace))
            errors, _warnings = _print_problems(problems, sys.stderr)
            if errors:
                raise fail(f"nothing applied: {plural(errors, 'error')} in the files above")
            for _file, segment in valid:
                done = store.apply(conn, workspace, segment, now, draft=draft)
                what = "created" if done.created else "changed"
                if draft:
                    lines.append(f"{segment.id}: draft stored ({done.status})")
                elif done.new_version:
                    lines.append(f"{segment.id}: {what}, version {done.version} live; the engine computes it")
                    new.append(segment.id)
                else:
                    lines.append(f"{segment.id}: version {done.version} stays live (nothing changed)")
        for line in lines:
            print(line)
        if new and wait > 0:
            _wait_for(engine, workspace, new, wait)
        elif new:
            err.print(
                "the engine of `nudgeflow serve` computes new versions; `nudgeflow segments show ID` says how far"
            )
    except store.SegmentError as exc:
        raise fail(f"nothing applied: {exc}") from exc
    finally:
        engine.dispose()


def _wait_for(engine: Engine, workspace: str, ids: list[str], seconds: float) -> None:
    from nudgeflow.store import segments as store

    deadline = time.monotonic() + seconds
    left = list(ids)
    while left:
        with engine.connect() as conn:
            jobs = store.latest_applies(conn, workspace)
        for segment_id in list(left):
            job = jobs.get(segment_id)
            if job is not None and job.status != PENDING:
                left.remove(segment_id)
                at = iso(job.finished_at_ms, milliseconds=False) if job.finished_at_ms else "?"
                size = job.size or 0
                print(
                    f"{segment_id}: {size:,} {'person' if size == 1 else 'people'} as of event "
                    f"{job.as_of_seq or 0:,} of the log ({at}); {job.profiles_done:,} people looked at"
                    if job.status == DONE
                    else f"{segment_id}: computation {job.status}"
                )
        if left and time.monotonic() > deadline:
            raise fail(f"still computing {', '.join(left)} after {seconds:g} s: is `nudgeflow serve` running?")
        if left:
            time.sleep(0.2)


@segments_app.command("archive")
def segments_archive(segment_id: SegmentId, workspace: WorkspaceOpt, database: DatabaseOpt = None) -> None:
    """Retire a segment for good: nothing computes it, its members are let go."""
    from nudgeflow.store import segments as store

    engine = open_workspace(database, workspace)
    try:
        with engine.begin() as conn:
            changed = store.archive(conn, workspace, segment_id, now_ms())
    except store.SegmentError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    print(f"{segment_id}: archived" + ("" if changed else " (already)"))


@segments_app.command("list")
def segments_list(
    workspace: WorkspaceOpt,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """The workspace's segments: status, live version, size, and the computation of the newest version."""
    from nudgeflow.store import segments as store

    engine = open_workspace(database, workspace)
    try:
        with engine.connect() as conn:
            found = store.list_segments(conn, workspace)
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(found))
        return
    table = Table("id", "name", "status", "version", "size", "computed")
    for segment in found:
        computed = segment["computed"]
        state = (
            "—"
            if computed is None
            else (
                f"v{computed['version']} {computed['status']}"
                + (f", {computed['profiles_done']:,} looked at" if computed["status"] == PENDING else "")
            )
        )
        size = "—" if segment["size"] is None else f"{segment['size']:,}"
        table.add_row(
            segment["id"], segment["name"], segment["status"], str(segment["live_version"] or "—"), size, state
        )
    Console().print(table)
    if not found:
        err.print("no segments yet: `nudgeflow segments apply FILE… --workspace ID`")


@segments_app.command("show")
def segments_show(
    segment_id: SegmentId,
    workspace: WorkspaceOpt,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """A segment: status, version, size now and as of when, its computation, sizes per day, definition."""
    from nudgeflow.store import segments as store

    engine = open_workspace(database, workspace)
    try:
        with engine.connect() as conn:
            found = store.get_segment(conn, workspace, segment_id, store.day_of(now_ms()))
    finally:
        engine.dispose()
    if found is None:
        raise fail(f"no segment {segment_id!r} in this workspace")
    if as_json:
        print(json.dumps(found))
        return
    print(f"{found['id']}: {found['name']} ({found['status']}, version {found['live_version'] or '—'})")
    if found["size"] is not None:
        print(f"size: {found['size']:,} " + _as_of(found))
    computed = found["computed"]
    if computed is not None and computed["status"] == DONE:
        print(
            f"version {computed['version']} computed over {computed['profiles_done']:,} people: "
            f"{computed['size']:,} members as of event {computed['as_of_seq']:,}"
        )
    daily = found["daily"][-14:]
    if daily:
        print("last days (UTC): " + ", ".join(f"{_date(d['day'])} {d['size']:,}" for d in daily))
    print(json.dumps(found["definition"] or found["draft"], indent=2))


def _date(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%m-%d")


@segments_app.command("members")
def segments_members(
    segment_id: SegmentId,
    workspace: WorkspaceOpt,
    after: Annotated[str, typer.Option("--after", metavar="ID", help="Start after this profile id.")] = "",
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_PAGE, help="Members per page.")] = 100,
    database: DatabaseOpt = None,
) -> None:
    """The members, a page at a time by profile id.

    One `profile_id since` a line; the next page's `--after` is printed on stderr."""
    from nudgeflow.store import segments as store

    engine = open_workspace(database, workspace)
    try:
        with engine.connect() as conn:
            status = store.status_of(conn, workspace, segment_id)
            page, next_after = store.members_page(conn, workspace, segment_id, after, limit)
    finally:
        engine.dispose()
    if status is None:
        raise fail(f"no segment {segment_id!r} in this workspace")
    for pid, since in page:
        print(f"{pid} {iso(since, milliseconds=False)}")
    if next_after is not None:
        err.print(f"next page: --after {next_after}")


@segments_app.command("schema")
def segments_schema() -> None:
    """Print the JSON Schema of the segment format (schema/segment.schema.json is this output)."""
    from nudgeflow.model.segments import segment_json_schema

    print(json.dumps(segment_json_schema(), indent=2, ensure_ascii=False))
