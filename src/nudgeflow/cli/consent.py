"""`nudgeflow suppressions add|remove|list`: the suppression list from the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nudgeflow.cli.common import DatabaseOpt, WorkspaceOpt, fail, now_ms, open_workspace
from nudgeflow.core.clock import from_ms

suppressions_app = typer.Typer(
    help="The suppression list: addresses nothing is sent to, transactional messages included.", no_args_is_help=True
)

_Channel = Annotated[str, typer.Option("--channel", "-c", help="The channel the address belongs to.")]


@suppressions_app.command("add")
def suppressions_add(
    addresses: Annotated[list[str], typer.Argument(metavar="ADDRESS", help="One or more addresses.")],
    workspace: WorkspaceOpt,
    channel: _Channel = "email",
    reason: Annotated[str, typer.Option(help="hard_bounce, complaint, manual, …")] = "manual",
    detail: Annotated[str | None, typer.Option(help="A note kept with the suppression.")] = None,
    database: DatabaseOpt = None,
) -> None:
    """Suppress addresses: nothing more is sent to them."""
    from nudgeflow.store import consent

    engine = open_workspace(database, workspace)
    try:
        with engine.begin() as conn:
            added = sum(consent.suppress(conn, workspace, channel, a, reason, now_ms(), detail) for a in addresses)
    finally:
        engine.dispose()
    print(f"{added} added, {len(addresses) - added} already suppressed ({reason} now)")


@suppressions_app.command("remove")
def suppressions_remove(
    addresses: Annotated[list[str], typer.Argument(metavar="ADDRESS", help="One or more addresses.")],
    workspace: WorkspaceOpt,
    channel: _Channel = "email",
    database: DatabaseOpt = None,
) -> None:
    """Lift suppressions (a person who asked to receive mail again, a bounce fixed)."""
    from nudgeflow.store import consent

    engine = open_workspace(database, workspace)
    try:
        with engine.begin() as conn:
            missing = [a for a in addresses if not consent.unsuppress(conn, workspace, channel, a)]
    finally:
        engine.dispose()
    print(f"{len(addresses) - len(missing)} removed")
    if missing:
        raise fail("not suppressed: " + ", ".join(missing))


@suppressions_app.command("list")
def suppressions_list(
    workspace: WorkspaceOpt,
    channel: Annotated[str | None, typer.Option("--channel", "-c", help="Only this channel.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    database: DatabaseOpt = None,
) -> None:
    """The suppression list, by address."""
    from nudgeflow.store import consent

    engine = open_workspace(database, workspace)
    try:
        with engine.connect() as conn:
            found = consent.list_suppressions(conn, workspace, channel, limit=limit)
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(found))
        return
    table = Table("address", "channel", "reason", "since", "detail")
    for s in found:
        table.add_row(
            s["address"],
            s["channel"],
            s["reason"],
            from_ms(s["created_at_ms"]).strftime("%Y-%m-%d %H:%M"),
            s["detail"] or "",
        )
    Console().print(table)
    if not found:
        Console(stderr=True).print("no suppressions")
