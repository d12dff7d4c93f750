"""`nudgeflow workspace create`; the workspace's other commands are groups of their own."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from nudgeflow.cli.common import DatabaseOpt, err, fail, load_settings, now_ms, open_engine

workspace_app = typer.Typer(help="Workspaces and their keys.", no_args_is_help=True)


@workspace_app.command("create")
def workspace_create(
    name: str,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create a workspace and print its id, write key and admin token (shown only once)."""
    from nudgeflow.store.workspaces import create_workspace

    engine = open_engine(load_settings(database))
    try:
        with engine.begin() as conn:
            created = create_workspace(conn, name, now_ms())
    except ValueError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    if as_json:
        print(
            json.dumps(
                {
                    "workspace_id": created.workspace_id,
                    "write_key": created.write_key,
                    "admin_token": created.admin_token,
                }
            )
        )
        return
    out = Console()
    out.print(f"workspace_id  {created.workspace_id}")
    out.print(f"write_key     {created.write_key}")
    out.print(f"admin_token   {created.admin_token}")
    err.print("Keep these: they are stored only as digests and cannot be shown again.")
