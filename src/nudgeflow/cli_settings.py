"""`nudgeflow workspace settings show|set` and `nudgeflow workspace set`: every workspace
setting of the registry (model/workspace_keys.py) from the command line; and the public URL
`serve` builds links with."""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from nudgeflow.settings import Settings

settings_app = typer.Typer(
    help="A workspace's settings: show (secrets masked), set KEY=VALUE … (docs/settings.md lists the keys).",
    no_args_is_help=True,
)

_Database = Annotated[
    Optional[str],
    typer.Option("--database", envvar="NUDGEFLOW_DATABASE_URL", help="sqlite:///path or postgresql://… (default: ./nudgeflow.db)"),
]
_WorkspaceArg = Annotated[str, typer.Argument(metavar="WORKSPACE_ID")]


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve_public_url(settings: Settings, option: str | None, dev: bool) -> str | None:
    """The server-wide public URL `serve` uses: --public-url, else NUDGEFLOW_PUBLIC_URL, else
    on loopback (or with --dev) the server's own address. Off loopback with neither, links
    would point at an address no customer can open: refuse (exit 2) and say what to set."""
    from nudgeflow import cli
    from nudgeflow.model.workspace_keys import check_public_url

    if option is not None:
        try:
            return check_public_url(option)
        except ValueError as exc:
            raise cli._fail(f"--public-url: {option!r} {exc}", 2) from None
    if settings.public_url:
        return settings.public_url
    host = settings.host
    if _is_loopback(host) or dev:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
        return f"http://{shown}:{settings.port}"
    raise cli._fail(
        f"serving on {host}, which is not loopback, with no public URL: links in messages would point at no "
        "address customers can open. Give --public-url https://… or set NUDGEFLOW_PUBLIC_URL "
        "(a workspace may set its own: nudgeflow workspace set WS --public-url URL)",
        2,
    )


def _open(database: str | None, workspace_id: str):  # type: ignore[no-untyped-def]
    from nudgeflow import cli

    return cli.open_workspace(database, workspace_id)


def _now_ms() -> int:
    from nudgeflow import cli

    return cli.now_ms()


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
    from nudgeflow import cli
    from nudgeflow.model.workspace_keys import SettingError
    from nudgeflow.store import workspace_settings

    engine = _open(database, workspace_id)
    try:
        with engine.begin() as conn:
            shown = workspace_settings.change_settings(conn, workspace_id, changes, _now_ms())
    except SettingError as exc:
        raise cli._fail(str(exc), 2) from None
    finally:
        engine.dispose()
    _print(shown, as_json)
    Console(stderr=True).print("Saved. Running servers pick it up within 30 s.")


@settings_app.command("show")
def settings_show(workspace_id: _WorkspaceArg, database: _Database = None,
                  as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Every setting: its value (secrets masked) or default; then the sections with commands of their own."""
    from nudgeflow.store import workspace_settings

    engine = _open(database, workspace_id)
    try:
        with engine.connect() as conn:
            shown = workspace_settings.show_settings(conn, workspace_id)
    finally:
        engine.dispose()
    _print(shown, as_json)


@settings_app.command("set")
def settings_set(
    workspace_id: _WorkspaceArg,
    assignments: Annotated[list[str], typer.Argument(metavar="KEY=VALUE...", help="Lists and objects as JSON (a list may be a,b); an empty VALUE clears the key.")],
    database: _Database = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the settings as one JSON object.")] = False,
) -> None:
    """Change settings, all or none: a wrong value is refused naming its key."""
    from nudgeflow import cli
    from nudgeflow.model.workspace_keys import BY_NAME, SettingError, parse_cli_value

    changes: dict[str, Any] = {}
    for item in assignments:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise cli._fail(f"{item!r}: expected KEY=VALUE", 2)
        key = BY_NAME.get(name)
        if key is None:
            raise cli._fail(f"{name}: no such setting (nudgeflow workspace settings show lists them)", 2)
        try:
            changes[name] = parse_cli_value(key, text)
        except SettingError as exc:
            raise cli._fail(str(exc), 2) from None
    _change(workspace_id, changes, database, as_json)


def workspace_set(
    workspace_id: _WorkspaceArg,
    public_url: Annotated[Optional[str], typer.Option("--public-url", metavar="URL", help="Where this workspace's links point (wins over the server's); an empty URL clears it.")] = None,
    database: _Database = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the settings as one JSON object.")] = False,
) -> None:
    """Set a workspace's everyday settings (all keys: nudgeflow workspace settings set)."""
    from nudgeflow import cli

    if public_url is None:
        raise cli._fail("nothing to set: give --public-url URL", 2)
    _change(workspace_id, {"public_base_url": public_url or None}, database, as_json)
