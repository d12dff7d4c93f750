"""`nudgeflow report …`: journeys' metrics, read from the report rollups (never the event log)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from nudgeflow.cli.common import DatabaseOpt, WorkspaceOpt, fail, open_workspace

report_app = typer.Typer(help="Reports: a journey's metrics, by step, variant and channel.", no_args_is_help=True)

# The columns the table shows (JSON and CSV have every metric).
TABLE = (
    ("entered", "entered"),
    ("held_out", "held out"),
    ("recipients", "recipients"),
    ("sent", "sent"),
    ("delivered", "delivered"),
    ("unique_opens", "opens"),
    ("open_rate", "open %"),
    ("unique_clicks", "clicks"),
    ("click_rate", "click %"),
    ("conversions", "conv."),
    ("conversion_rate", "conv. %"),
    ("revenue", "revenue"),
    ("unsubscribes", "unsubs"),
    ("complaints", "complaints"),
    ("bounces", "bounces"),
)


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name.endswith("_rate"):
        return f"{100 * value:.1f}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} s"


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
    database: DatabaseOpt = None,
) -> None:
    """A journey's metrics: entered, held out, sent, opens, clicks, conversions, revenue…

    Over the runs that entered and the messages sent from --from to --to (UTC days); what each
    number means is in docs/measurement.md."""
    from rich.console import Console
    from rich.table import Table

    from nudgeflow.measure import report
    from nudgeflow.web.reports_api import BadQuery, load_journey_report, parse_by, parse_day

    if as_json and as_csv:
        raise fail("--json and --csv: choose one")
    try:
        span = parse_day(from_, "--from"), parse_day(to, "--to")
        groups = parse_by(by)
    except BadQuery as exc:
        raise fail(str(exc)) from exc
    engine = open_workspace(database, workspace)
    try:
        with engine.connect() as conn:
            found = load_journey_report(
                conn, workspace, journey_id, from_day=span[0], to_day=span[1], by=groups, include_machine=machine
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
    table = Table(title=f"{journey_id}  {found['from'] or '…'} to {found['to'] or '…'}")
    for name in groups:
        table.add_column(name)
    for _, label in TABLE:
        table.add_column(label, justify="right")
    table.add_column("to trigger p50/p90", justify="right")
    table.add_column("to convert p50/p90", justify="right")

    def line(row: dict[str, Any], heads: list[str]) -> list[str]:
        times = [
            f"{_seconds(row[name]['p50_s'])} / {_seconds(row[name]['p90_s'])}"
            for name in ("time_to_trigger", "time_to_convert")
        ]
        return [*heads, *(_cell(name, row[name]) for name, _ in TABLE), *times]

    for row in found["rows"]:
        table.add_row(*line(row, [str(row[name]) if row[name] != "" else "(journey)" for name in groups]))
    table.add_row(*line(found["totals"], ["total", *[""] * (len(groups) - 1)] if groups else []), style="bold")
    Console(width=250).print(table)
    totals = found["totals"]
    if totals["machine_opens"] or totals["bot_clicks"]:
        shown = "counted in" if machine else "left out of"
        print(f"machine opens {totals['machine_opens']}, bot clicks {totals['bot_clicks']}: {shown} the rates")
