"""`nudgeflow experiments …`: what experiment automation decided, and undoing it."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nudgeflow.cli.common import DatabaseOpt, WorkspaceOpt, err, fail, now_ms, open_workspace, plural

experiments_app = typer.Typer(
    help="Experiment automation: the arms paused and winners routed to, and resuming them.", no_args_is_help=True
)

JourneyArg = Annotated[str, typer.Argument(metavar="JOURNEY", help="The journey's id.")]


def _when(at_ms: int | None) -> str:
    from nudgeflow.model.iso_time import iso

    return "—" if at_ms is None else iso(at_ms, milliseconds=False)


@experiments_app.command("list")
def experiments_list(
    workspace: WorkspaceOpt,
    journey: Annotated[str | None, typer.Option("--journey", "-j", help="Only this journey's decisions.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Cleared decisions too (the whole record).")] = False,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """The decisions in force (arms paused, winners routed to), with when and why."""
    from nudgeflow.store import experiment_decisions as decisions

    engine = open_workspace(database, workspace)
    try:
        with engine.connect() as conn:
            found = decisions.listed(conn, workspace, journey, active_only=not show_all)
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps([d.as_dict() for d in found]))
        return
    table = Table("journey", "version", "step", "arm", "decision", "when", "why", "cleared")
    for d in found:
        cleared = "—" if d.active else f"{_when(d.cleared_at_ms)}: {d.cleared_note or ''}"
        table.add_row(d.journey_id, str(d.version), d.step, d.arm, d.action, _when(d.decided_at_ms), d.reason, cleared)
    Console(width=200).print(table)
    if not found:
        err.print("no experiment decisions" + ("" if show_all else " in force (--all shows cleared ones)"))


@experiments_app.command("resume")
def experiments_resume(
    journey: JourneyArg,
    step: Annotated[str, typer.Argument(metavar="STEP", help="The experiment step (a send with variants, a split).")],
    workspace: WorkspaceOpt,
    arm: Annotated[str | None, typer.Option("--arm", help="Only this arm's decision (default: every one).")] = None,
    version: Annotated[int | None, typer.Option("--version", min=1, help="Only this version's (default: all).")] = None,
    note: Annotated[str, typer.Option("--note", help="Kept with the cleared decision.")] = "resumed from the CLI",
    database: DatabaseOpt = None,
) -> None:
    """Clear the step's decisions: paused arms take new runs again, a routed winner no longer
    takes them all. The running engine picks it up at its next batch. The evaluator does not
    make a cleared decision again on that version."""
    from nudgeflow.store import experiment_decisions as decisions

    engine = open_workspace(database, workspace)
    try:
        with engine.begin() as conn:
            cleared = decisions.resume(conn, workspace, journey, step, now_ms(), note, version=version, arm=arm)
    except decisions.DecisionError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    if not cleared:
        print(f"{journey} {step}: nothing in force (cleared before)")
        return
    done = ", ".join(
        f"{d.arm} {'no longer paused' if d.action == 'paused' else 'no longer routed to'}" for d in cleared
    )
    print(f"{journey} {step}: {plural(len(cleared), 'decision')} cleared ({done})")
