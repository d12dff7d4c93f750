"""`nudgeflow workspace smtp set|show|clear`: a workspace's own SMTP server (secrets masked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from nudgeflow.cli.common import DatabaseOpt, fail, load_settings, now_ms, open_engine
from nudgeflow.model.smtp_config import SmtpConfigError, parse_smtp_url

smtp_app = typer.Typer(help="A workspace's SMTP server (NUDGEFLOW_SMTP_URL is the default).", no_args_is_help=True)


WorkspaceArg = Annotated[str, typer.Option("--workspace", "-w", help="Workspace id.")]


def _show(shown: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(shown))
        return
    out = Console()
    config = shown.get("config")
    if shown.get("error"):
        out.print(f"source  {shown['source']} (invalid: {shown['error']})")
        return
    if config is None:
        out.print("no SMTP server: email goes to the log channel (set NUDGEFLOW_SMTP_URL or `workspace smtp set`)")
        return
    out.print(f"source  {shown['source']}")
    for name in (
        "url",
        "from_address",
        "from_name",
        "reply_to",
        "pool_size",
        "concurrency",
        "rate_per_second",
        "dkim_selector",
        "dkim_domain",
        "dkim_private_key",
        "dkim_key_path",
        "dkim_ed25519_selector",
        "dkim_ed25519_private_key",
        "dkim_ed25519_key_path",
        "bounce_domain",
    ):
        if config.get(name) not in (None, "", 0, 0.0):
            out.print(f"{name:<25}{config[name]}")


def _read_key(path: Path | None) -> str | None:
    try:
        return path.read_text() if path is not None else None
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}") from exc


@smtp_app.command("set")
def smtp_set(
    url: Annotated[str, typer.Argument(metavar="URL", help="smtp://user:pass@host:port, smtp+starttls://…, smtps://…")],
    workspace: WorkspaceArg,
    database: DatabaseOpt = None,
    from_: Annotated[str | None, typer.Option("--from", help="From address.")] = None,
    from_name: Annotated[str | None, typer.Option("--from-name", help="From display name.")] = None,
    reply_to: Annotated[str | None, typer.Option("--reply-to")] = None,
    dkim_key: Annotated[
        Path | None, typer.Option("--dkim-key", help="PEM private key file (stored in the database).")
    ] = None,
    dkim_selector: Annotated[str | None, typer.Option("--dkim-selector")] = None,
    dkim_domain: Annotated[str | None, typer.Option("--dkim-domain")] = None,
    dkim_ed25519_key: Annotated[
        Path | None,
        typer.Option(
            "--dkim-ed25519-key",
            help="An Ed25519 PEM private key file: a second signature beside the RSA one (stored in the database).",
        ),
    ] = None,
    dkim_ed25519_selector: Annotated[
        str | None, typer.Option("--dkim-ed25519-selector", help="The Ed25519 key's selector (its own DNS record).")
    ] = None,
    bounce_domain: Annotated[
        str | None,
        typer.Option(
            "--bounce-domain",
            help="Envelope sender: a signed bounces+<workspace>.<ref>.<mac>@DOMAIN, where `serve --bounce-smtp` "
            "listens.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Set the workspace's own SMTP server (overrides NUDGEFLOW_SMTP_URL for it)."""
    from nudgeflow.store import workspace_settings as store
    from nudgeflow.store.journeys import JourneyError, require_workspace

    key, ed25519_key = _read_key(dkim_key), _read_key(dkim_ed25519_key)
    try:
        config = parse_smtp_url(
            url,
            from_address=from_,
            from_name=from_name,
            reply_to=reply_to,
            dkim_selector=dkim_selector,
            dkim_domain=dkim_domain,
            dkim_private_key=key,
            dkim_ed25519_selector=dkim_ed25519_selector,
            dkim_ed25519_private_key=ed25519_key,
            bounce_domain=bounce_domain,
        )
    except SmtpConfigError as exc:
        raise fail(str(exc)) from exc
    engine = open_engine(load_settings(database))
    try:
        with engine.begin() as conn:
            try:
                require_workspace(conn, workspace)
            except JourneyError as exc:
                raise fail(str(exc)) from exc
            store.set_smtp(conn, workspace, config, now_ms())
            shown = store.smtp_settings_masked(conn, workspace)
    finally:
        engine.dispose()
    _show(shown, as_json)


@smtp_app.command("show")
def smtp_show(
    workspace: WorkspaceArg, database: DatabaseOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """The SMTP server the workspace's email goes to (password and DKIM key masked)."""
    from nudgeflow.store import workspace_settings as store

    settings = load_settings(database)
    try:
        default = parse_smtp_url(settings.smtp_url) if settings.smtp_url else None
    except SmtpConfigError as exc:
        raise fail(f"NUDGEFLOW_SMTP_URL: {exc}") from exc
    engine = open_engine(settings)
    try:
        with engine.connect() as conn:
            shown = store.smtp_settings_masked(conn, workspace, default)
    finally:
        engine.dispose()
    _show(shown, as_json)


@smtp_app.command("clear")
def smtp_clear(workspace: WorkspaceArg, database: DatabaseOpt = None) -> None:
    """Remove the workspace's own SMTP server (back to NUDGEFLOW_SMTP_URL)."""
    from nudgeflow.store import workspace_settings as store

    engine = open_engine(load_settings(database))
    try:
        with engine.begin() as conn:
            store.set_smtp(conn, workspace, None, now_ms())
    finally:
        engine.dispose()
    Console(stderr=True).print("cleared")
