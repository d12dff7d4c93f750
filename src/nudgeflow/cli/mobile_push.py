"""`nudgeflow workspace fcm|apns set|show|clear`: a workspace's own mobile push credentials.

Keys go into the workspace's settings in the database and never come back out: `show` and
the answer to `set` mask them. A running server picks a change up within 30 seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from nudgeflow.cli.common import DatabaseOpt, fail, load_settings, now_ms, open_engine

if TYPE_CHECKING:
    from nudgeflow.settings import Settings

fcm_app = typer.Typer(
    help="A workspace's FCM credentials (NUDGEFLOW_FCM_SERVICE_ACCOUNT_FILE is the default).", no_args_is_help=True
)
apns_app = typer.Typer(
    help="A workspace's APNs credentials (NUDGEFLOW_APNS_KEY_FILE and friends are the default).", no_args_is_help=True
)

WorkspaceArg = Annotated[str, typer.Option("--workspace", "-w", help="Workspace id.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _show(service: str, shown: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(shown))
        return
    out = Console()
    if shown.get("error"):
        out.print(f"source  {shown['source']} (invalid: {shown['error']})")
        return
    config = shown.get("config")
    if config is None:
        out.print(f"no {service} credentials: push to {service} devices fails until they are set")
        return
    out.print(f"{'source':<16}{shown['source']}")
    for name, value in config.items():
        if value not in (None, ""):
            out.print(f"{name:<16}{value}")


def _write(workspace: str, database: str | None, section: str, value: Any, as_json: bool | None) -> None:
    """Store (or with None clear) one section and show what is now in effect."""
    from nudgeflow.channels import push_config
    from nudgeflow.store.journeys import JourneyError, require_workspace

    settings = load_settings(database)
    engine = open_engine(settings)
    setter = push_config.set_fcm if section == push_config.FCM_SECTION else push_config.set_apns
    try:
        with engine.begin() as conn:
            try:
                require_workspace(conn, workspace)
            except JourneyError as exc:
                raise fail(str(exc)) from exc
            setter(conn, workspace, value, now_ms())
            shown = push_config.masked(conn, workspace, section, _default(section, settings))
    finally:
        engine.dispose()
    if as_json is None:
        Console(stderr=True).print("cleared")
    else:
        _show("FCM" if section == push_config.FCM_SECTION else "APNs", shown, as_json)


def _default(section: str, settings: Settings) -> Callable[[], Any]:
    from nudgeflow.channels import push_config, wiring

    if section == push_config.FCM_SECTION:
        return lambda: wiring.fcm_default(settings)
    return lambda: wiring.apns_default(settings)


def _read(workspace: str, database: str | None, section: str, as_json: bool) -> None:
    from nudgeflow.channels import push_config

    settings = load_settings(database)
    engine = open_engine(settings)
    try:
        with engine.connect() as conn:
            shown = push_config.masked(conn, workspace, section, _default(section, settings))
    finally:
        engine.dispose()
    _show("FCM" if section == push_config.FCM_SECTION else "APNs", shown, as_json)


# -- FCM --------------------------------------------------------------------------------------


@fcm_app.command("set")
def fcm_set(
    workspace: WorkspaceArg,
    service_account: Annotated[
        Path, typer.Option("--service-account", help="The service account key JSON file (stored in the database).")
    ],
    project_id: Annotated[
        str | None, typer.Option("--project-id", help="The Firebase project (default: the key file's).")
    ] = None,
    token_uri: Annotated[
        str | None, typer.Option("--token-uri", help="The OAuth2 token endpoint (default: the key file's).")
    ] = None,
    api_base: Annotated[
        str | None, typer.Option("--api-base", help="The FCM API (default https://fcm.googleapis.com).")
    ] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the workspace's own FCM credentials (a Firebase service account)."""
    from nudgeflow.channels.push_config import PushConfigError, fcm_from_file

    try:
        config = fcm_from_file(
            str(service_account),
            project_id=project_id,
            token_uri=token_uri,
            api_base=api_base,
            what=str(service_account),
        )
    except PushConfigError as exc:
        raise fail(str(exc)) from exc
    _write(workspace, database, "fcm", config, as_json)


@fcm_app.command("show")
def fcm_show(workspace: WorkspaceArg, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """The FCM credentials the workspace's push goes out with (the key masked)."""
    _read(workspace, database, "fcm", as_json)


@fcm_app.command("clear")
def fcm_clear(workspace: WorkspaceArg, database: DatabaseOpt = None) -> None:
    """Remove the workspace's own FCM credentials (back to the server's default)."""
    _write(workspace, database, "fcm", None, None)


# -- APNs -------------------------------------------------------------------------------------


@apns_app.command("set")
def apns_set(
    workspace: WorkspaceArg,
    key_file: Annotated[
        Path, typer.Option("--key-file", help="The AuthKey_<key id>.p8 file (stored in the database).")
    ],
    key_id: Annotated[str, typer.Option("--key-id", help="The key's 10-character id.")],
    team_id: Annotated[str, typer.Option("--team-id", help="The Apple developer team id.")],
    topic: Annotated[
        str | None, typer.Option("--topic", help="The app's bundle id, for devices that do not give theirs.")
    ] = None,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Development builds: api.sandbox.push.apple.com.")] = False,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Another APNs endpoint (a proxy, a test server).")
    ] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the workspace's own APNs credentials (a token-based .p8 key)."""
    from nudgeflow.channels.push_config import ApnsConfig, PushConfigError

    try:
        key = key_file.read_text()
    except OSError as exc:
        raise fail(f"cannot read {key_file}: {exc.strerror}") from exc
    try:
        config = ApnsConfig(
            team_id=team_id, key_id=key_id, private_key=key, topic=topic, sandbox=sandbox, base_url=base_url
        )
    except PushConfigError as exc:
        raise fail(str(exc)) from exc
    _write(workspace, database, "apns", config, as_json)


@apns_app.command("show")
def apns_show(workspace: WorkspaceArg, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """The APNs credentials the workspace's push goes out with (the key masked)."""
    _read(workspace, database, "apns", as_json)


@apns_app.command("clear")
def apns_clear(workspace: WorkspaceArg, database: DatabaseOpt = None) -> None:
    """Remove the workspace's own APNs credentials (back to the server's default)."""
    _write(workspace, database, "apns", None, None)
