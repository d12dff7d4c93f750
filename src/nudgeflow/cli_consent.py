"""`nudgeflow suppressions add|remove|list`: the suppression list from the command line."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.console import Console

suppressions_app = typer.Typer(
    help="The suppression list: addresses nothing is sent to, transactional messages included.", no_args_is_help=True
)

_Database = Annotated[
    Optional[str],
    typer.Option("--database", envvar="NUDGEFLOW_DATABASE_URL", help="sqlite:///path or postgresql://… (default: ./nudgeflow.db)"),
]
_Workspace = Annotated[str, typer.Option("--workspace", "-w", envvar="NUDGEFLOW_WORKSPACE", help="The workspace id (ws_…).")]
_Channel = Annotated[str, typer.Option("--channel", "-c", help="The channel the address belongs to.")]


def _open(database: str | None, workspace: str):  # type: ignore[no-untyped-def]
    from nudgeflow import cli

    return cli.open_workspace(database, workspace)


def _now_ms() -> int:
    from nudgeflow import cli

    return cli.now_ms()


@suppressions_app.command("add")
def suppressions_add(
    addresses: Annotated[list[str], typer.Argument(metavar="ADDRESS", help="One or more addresses.")],
    workspace: _Workspace,
    channel: _Channel = "email",
    reason: Annotated[str, typer.Option(help="hard_bounce, complaint, manual, …")] = "manual",
    detail: Annotated[Optional[str], typer.Option(help="A note kept with the suppression.")] = None,
    database: _Database = None,
) -> None:
    """Suppress addresses: nothing more is sent to them."""
    from nudgeflow.store import consent

    engine = _open(database, workspace)
    try:
        with engine.begin() as conn:
            added = sum(consent.suppress(conn, workspace, channel, a, reason, _now_ms(), detail) for a in addresses)
    finally:
        engine.dispose()
    print(f"{added} added, {len(addresses) - added} already suppressed ({reason} now)")


@suppressions_app.command("remove")
def suppressions_remove(
    addresses: Annotated[list[str], typer.Argument(metavar="ADDRESS", help="One or more addresses.")],
    workspace: _Workspace,
    channel: _Channel = "email",
    database: _Database = None,
) -> None:
    """Lift suppressions (a person who asked to receive mail again, a bounce fixed)."""
    from nudgeflow import cli
    from nudgeflow.store import consent

    engine = _open(database, workspace)
    try:
        with engine.begin() as conn:
            missing = [a for a in addresses if not consent.unsuppress(conn, workspace, channel, a)]
    finally:
        engine.dispose()
    print(f"{len(addresses) - len(missing)} removed")
    if missing:
        raise cli._fail("not suppressed: " + ", ".join(missing))


@suppressions_app.command("list")
def suppressions_list(
    workspace: _Workspace,
    channel: Annotated[Optional[str], typer.Option("--channel", "-c", help="Only this channel.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    database: _Database = None,
) -> None:
    """The suppression list, by address."""
    from rich.table import Table

    from nudgeflow.core.clock import from_ms
    from nudgeflow.store import consent

    engine = _open(database, workspace)
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
        table.add_row(s["address"], s["channel"], s["reason"], from_ms(s["created_at_ms"]).strftime("%Y-%m-%d %H:%M"), s["detail"] or "")
    Console().print(table)
    if not found:
        Console(stderr=True).print("no suppressions")
