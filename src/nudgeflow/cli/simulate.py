"""`nudgeflow simulate`: recorded events replayed through journeys on a virtual clock."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from nudgeflow.cli.common import err, fail

if TYPE_CHECKING:
    from nudgeflow.runtime.simulation import Simulation


def simulate(
    journeys: Annotated[
        list[str],
        typer.Option(
            "--journeys",
            "-j",
            metavar="PATH",
            help="Journey files, or directories of .yaml/.yml/.json files (several may follow).",
        ),
    ],
    events: Annotated[
        str,
        typer.Option(
            "--events", "-e", metavar="FILE", help="A JSON Lines file of Segment messages, or - for standard input."
        ),
    ],
    more_journeys: Annotated[
        list[str] | None, typer.Argument(metavar="PATH", help="More journey files or directories.", show_default=False)
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per planned message, then a summary line.")
    ] = False,
    horizon: Annotated[
        str,
        typer.Option(metavar="DURATION", help="After the last event, keep firing timers this long (30d; 0 for none)."),
    ] = "30d",
    limit: Annotated[
        int, typer.Option(metavar="N", min=0, help="Planned messages shown in the table (all are counted).")
    ] = 50,
    places: Annotated[
        str | None,
        typer.Option(
            "--places",
            metavar="FILE",
            help="A places catalog file (as `catalog import places` reads) for location triggers with catalog_places.",
        ),
    ] = None,
    policies: Annotated[
        str | None,
        typer.Option(
            "--policies",
            metavar="FILE",
            help="A policies.yaml: caps, quiet hours and collisions applied as the engine applies them.",
        ),
    ] = None,
    segments: Annotated[
        list[str] | None,
        typer.Option(
            "--segments",
            metavar="PATH",
            help="Segment files, or directories of .yaml/.yml/.json files (repeat the option for more).",
            show_default=False,
        ),
    ] = None,
    with_report: Annotated[
        bool,
        typer.Option(
            "--report",
            help="Also each journey's report, as `nudgeflow report journey` shows it (--json: in the summary line).",
        ),
    ] = False,
    by: Annotated[
        str | None,
        typer.Option(
            "--by", help="With --report: break down by step, variant, channel (version, day), comma-separated."
        ),
    ] = None,
) -> None:
    """Replay recorded events through journeys on a virtual clock and show what would be sent."""
    from nudgeflow.model.journeys import duration_ms
    from nudgeflow.runtime.replay import (
        JourneyLoadError,
        load_journeys,
        load_policies,
        load_segments,
        messages_table,
        pressure_tables,
        replay_file,
        segments_table,
        steps_table,
        summary_table,
        totals_line,
        write_json_lines,
    )
    from nudgeflow.web.reports_api import BadQuery, parse_by

    if by is not None and not with_report:
        raise fail("--by: only with --report")
    try:
        groups = parse_by(by)
    except BadQuery as exc:
        raise fail(f"--{exc}") from exc
    try:
        horizon_ms = 0 if horizon.strip() == "0" else duration_ms(horizon)
    except ValueError as exc:
        raise fail(f"--horizon: {exc}") from exc
    if horizon_ms < 0:
        raise fail("--horizon: must not be negative")
    try:
        loaded = load_journeys([*journeys, *(more_journeys or [])])
    except JourneyLoadError as exc:
        for problem in exc.problems:
            err.print(f"[red]invalid journey:[/] {problem}", highlight=False, soft_wrap=True, markup=True)
        raise fail("no simulation: fix the journeys above") from exc
    if not loaded:
        raise fail("no journeys to simulate")
    catalog_places = _places_file(places) if places is not None else []
    try:
        send_policies = load_policies(policies) if policies is not None else None
        loaded_segments = load_segments(segments) if segments else []
    except JourneyLoadError as exc:
        for problem in exc.problems:
            err.print(f"[red]invalid:[/] {escape(problem)}", highlight=False, soft_wrap=True, markup=True)
        raise fail("no simulation: fix the policies or segments above") from exc
    try:
        report = replay_file(
            loaded,
            events,
            horizon_ms=horizon_ms,
            console=err,
            places=catalog_places,
            policies=send_policies,
            segments=loaded_segments,
        )
    except OSError as exc:
        raise fail(str(exc)) from exc
    reports = _reports(report.sim, groups) if with_report else None
    if as_json:
        write_json_lines(report, sys.stdout, {"report": reports} if reports is not None else None)
        sys.stdout.flush()
    else:
        out = Console()
        out.print(messages_table(report.sim.messages, limit))
        summary = report.summary()
        out.print(summary_table(summary))
        out.print(steps_table(summary))
        if report.extended:
            for table in pressure_tables(summary):
                out.print(table)
        if "segments" in summary:
            out.print(segments_table(summary))
        if reports is not None:
            _print_reports(reports, groups)
        out.print(totals_line(report), highlight=False)
    if report.bad_lines:
        raise typer.Exit(2)


def _places_file(path: str) -> list[dict[str, object]]:
    """A places catalog file read and checked as `catalog import places` would, without a
    database; a bad row is an error naming it (a simulation should not quietly lose a store)."""
    from nudgeflow.store.catalog import CatalogError, RowError, check_row, detect_format, parse_rows

    try:
        text = Path(path).read_text(encoding="utf-8")
        rows = []
        for where, raw in parse_rows(text, detect_format(text, path)):
            if isinstance(raw, RowError):
                raise fail(f"--places {path}: {where}: {raw}")
            try:
                rows.append(check_row("places", raw))
            except RowError as exc:
                raise fail(f"--places {path}: {where}: {exc}") from exc
    except (OSError, UnicodeDecodeError, CatalogError) as exc:
        raise fail(f"--places {path}: {exc}") from exc
    return rows


def _reports(sim: Simulation, groups: tuple[str, ...]) -> dict[str, Any]:
    """Each journey's report and the overview from the simulation (runtime/simulation_rollups),
    days as dates, as the admin API and `nudgeflow report` give them."""
    from nudgeflow.runtime.simulation_rollups import simulated_report
    from nudgeflow.web.reports_api import iso_date

    found = simulated_report(sim, by=groups)
    for journey in found["journeys"].values():
        journey["from"] = journey["to"] = None
        if "day" in groups:
            for row in journey["rows"]:
                row["day"] = iso_date(row["day"])
    return found


NOT_KNOWN_CAPTION = (
    "n/k: not known from a simulation (delivery, bounces, unsubscribes and complaints happen at dispatch;"
    " opens and clicks only when the replayed events hold them): docs/measurement.md"
)


def _print_reports(reports: dict[str, Any], groups: tuple[str, ...]) -> None:
    from nudgeflow.cli.report_table import journey_table, machine_note

    out = Console(width=250)
    for journey_id, found in reports["journeys"].items():
        out.print(journey_table(found, groups, f"Report: {journey_id} (simulated)", NOT_KNOWN_CAPTION))
        note = machine_note(found, False)
        if note:
            out.print(note, highlight=False)
