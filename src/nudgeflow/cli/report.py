"""`nudgeflow report …`: journeys' metrics and lift, and the program's, read from the report rollups
(never the event log)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from nudgeflow.cli.common import DatabaseOpt, WorkspaceOpt, fail, open_workspace

report_app = typer.Typer(
    help="Reports: a journey's metrics by step, variant and channel; every journey's and the program's lift.",
    no_args_is_help=True,
)


@report_app.command("journey")
def report_journey(
    journey_id: Annotated[str, typer.Argument(metavar="ID")],
    workspace: WorkspaceOpt,
    from_: Annotated[str | None, typer.Option("--from", metavar="YYYY-MM-DD", help="First UTC date.")] = None,
    to: Annotated[str | None, typer.Option("--to", metavar="YYYY-MM-DD", help="Last UTC date (inclusive).")] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Break down by: step, variant, channel (version, day), comma-separated.")
    ] = None,
    machine: Annotated[
        bool, typer.Option("--machine", help="Count machine opens and bot clicks in the rates.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the report as CSV.")] = False,
    minimum_per_arm: Annotated[
        int | None,
        typer.Option(
            "--minimum-per-arm",
            min=1,
            help="Runs each experiment arm needs before a winner is called [default: each step's own "
            "minimum_per_arm, else 500].",
        ),
    ] = None,
    database: DatabaseOpt = None,
) -> None:
    """A journey's metrics: entered, held out, sent, opens, clicks, conversions, revenue…
    and its experiments, arm by arm, with the winner call or why there is none yet.

    Over the runs that entered and the messages sent from --from to --to (UTC days); what each
    number means is in docs/measurement.md."""
    from rich.console import Console

    from nudgeflow.cli.experiment_table import experiment_lines, experiment_table
    from nudgeflow.cli.report_table import journey_table, machine_note, send_time_notes, send_time_table
    from nudgeflow.measure import report
    from nudgeflow.web.reports_api import BadQuery, load_journey_report, parse_by, parse_span

    if as_json and as_csv:
        raise fail("--json and --csv: choose one")
    try:
        span = parse_span(from_, to, ("--from", "--to"))
        groups = parse_by(by)
    except BadQuery as exc:
        raise fail(str(exc)) from exc
    engine = open_workspace(database, workspace)
    try:
        with engine.connect() as conn:
            found = load_journey_report(
                conn,
                workspace,
                journey_id,
                from_day=span[0],
                to_day=span[1],
                by=groups,
                include_machine=machine,
                minimum_per_arm=minimum_per_arm,
            )
    finally:
        engine.dispose()
    if found is None:
        raise fail(f"no journey {journey_id!r} in this workspace")
    if as_json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return
    if as_csv:
        sys.stdout.write(report.journey_csv(found))
        return
    table = journey_table(found, groups, f"{journey_id}  {found['from'] or '…'} to {found['to'] or '…'}")
    console = Console(width=250)
    console.print(table)
    note = machine_note(found, machine)
    if note:
        print(note)
    for entry in found["send_time"]:
        console.print(send_time_table(entry))
        for line in send_time_notes(entry):
            print(line)
    for experiment in found["experiments"]:
        print()
        console.print(experiment_table(experiment))
        for said in experiment_lines(experiment):
            print(said)


@report_app.command("overview")
def report_overview(
    workspace: WorkspaceOpt,
    from_: Annotated[str | None, typer.Option("--from", metavar="YYYY-MM-DD", help="First UTC date.")] = None,
    to: Annotated[str | None, typer.Option("--to", metavar="YYYY-MM-DD", help="Last UTC date (inclusive).")] = None,
    machine: Annotated[
        bool, typer.Option("--machine", help="Count machine opens and bot clicks in the rates.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the overview as JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the overview as CSV.")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Every journey's metrics and lift, and the program's lift: the global control group
    against everyone else (people, not runs; docs/measurement.md)."""
    from rich.console import Console

    from nudgeflow.cli.report_table import lift_line, overview_table
    from nudgeflow.measure import report
    from nudgeflow.web.reports_api import BadQuery, load_overview, parse_span

    if as_json and as_csv:
        raise fail("--json and --csv: choose one")
    try:
        span = parse_span(from_, to, ("--from", "--to"))
    except BadQuery as exc:
        raise fail(str(exc)) from exc
    engine = open_workspace(database, workspace)
    try:
        with engine.connect() as conn:
            found = load_overview(conn, workspace, from_day=span[0], to_day=span[1], include_machine=machine)
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return
    if as_csv:
        sys.stdout.write(report.overview_csv(found))
        return
    Console(width=250).print(overview_table(found, f"journeys  {found['from'] or '…'} to {found['to'] or '…'}"))
    program = found["lift"]
    if program is None:
        print("program lift: no one in a global control group entered a journey in this period")
        return
    print(
        f"program lift (causal: the global control group, randomized): {program['people']:,} people outside the"
        f" group vs {program['control_people']:,} in it, {lift_line(program)}"
    )
