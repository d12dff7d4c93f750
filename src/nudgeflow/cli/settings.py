"""`nudgeflow workspace settings show|set` and `nudgeflow workspace set`: every workspace
setting of the registry (model/workspace_keys.py) from the command line."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

from nudgeflow.cli.common import DatabaseOpt, fail, now_ms, open_workspace
from nudgeflow.model.workspace_keys import BY_NAME, SettingError, parse_cli_value

settings_app = typer.Typer(
    help="A workspace's settings: show (secrets masked), set KEY=VALUE … (docs/settings.md lists the keys).",
    no_args_is_help=True,
)

_WorkspaceArg = Annotated[str, typer.Argument(metavar="WORKSPACE_ID")]


def _print(shown: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(shown))
        return
    out = Console(highlight=False, soft_wrap=True)
    for name, key in shown["keys"].items():
        value = json.dumps(key["value"]) if key["value"] is not None else "-"
        note = "" if key["set"] else "  (default)"
        out.print(f"{name:<24} {value}{note}", markup=False)
    for name, section in shown["sections"].items():
        value = json.dumps(section["value"]) if section["value"] is not None else "-"
        out.print(f"{name:<24} {value}  [{section['command']}]", markup=False)
    for name, value in (shown.get("other") or {}).items():
        out.print(f"{name:<24} {json.dumps(value)}", markup=False)


def _change(workspace_id: str, changes: dict[str, Any], database: str | None, as_json: bool) -> None:
    from nudgeflow.store import workspace_settings

    engine = open_workspace(database, workspace_id)
    try:
        with engine.begin() as conn:
            shown = workspace_settings.change_settings(conn, workspace_id, changes, now_ms())
    except SettingError as exc:
        raise fail(str(exc), 2) from None
    finally:
        engine.dispose()
    _print(shown, as_json)
    Console(stderr=True).print("Saved. Running servers pick it up within 30 s.")


@settings_app.command("show")
def settings_show(
    workspace_id: _WorkspaceArg,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Every setting: its value (secrets masked) or default; then the sections with commands of their own."""
    from nudgeflow.store import workspace_settings

    engine = open_workspace(database, workspace_id)
    try:
        with engine.connect() as conn:
            shown = workspace_settings.show_settings(conn, workspace_id)
    finally:
        engine.dispose()
    _print(shown, as_json)


@settings_app.command("set")
def settings_set(
    workspace_id: _WorkspaceArg,
    assignments: Annotated[
        list[str],
        typer.Argument(
            metavar="KEY=VALUE...", help="Lists and objects as JSON (a list may be a,b); an empty VALUE clears the key."
        ),
    ],
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the settings as one JSON object.")] = False,
) -> None:
    """Change settings, all or none: a wrong value is refused naming its key."""
    changes: dict[str, Any] = {}
    for item in assignments:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise fail(f"{item!r}: expected KEY=VALUE", 2)
        key = BY_NAME.get(name)
        if key is None:
            raise fail(f"{name}: no such setting (nudgeflow workspace settings show lists them)", 2)
        try:
            changes[name] = parse_cli_value(key, text)
        except SettingError as exc:
            raise fail(str(exc), 2) from None
    _change(workspace_id, changes, database, as_json)


def workspace_set(
    workspace_id: _WorkspaceArg,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            metavar="URL",
            help="Where this workspace's links point (wins over the server's); an empty URL clears it.",
        ),
    ] = None,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the settings as one JSON object.")] = False,
) -> None:
    """Set a workspace's everyday settings (all keys: nudgeflow workspace settings set)."""
    if public_url is None:
        raise fail("nothing to set: give --public-url URL", 2)
    _change(workspace_id, {"public_base_url": public_url or None}, database, as_json)
