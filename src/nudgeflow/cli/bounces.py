"""`nudgeflow workspace bounce-webhooks set|show|clear`: the secrets each provider's webhook is checked with."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from nudgeflow.cli.common import DatabaseOpt, err, fail, load_settings, now_ms, open_engine

bounce_webhooks_app = typer.Typer(
    help="Bounce and complaint webhooks: the key or credentials each provider signs with (docs/bounces.md).",
    no_args_is_help=True,
)

# What each provider needs, and which of it is secret (never printed).
FIELDS: dict[str, dict[str, bool]] = {
    "ses": {"topic_arns": False},
    "sendgrid": {"public_key": False},
    "postmark": {"username": False, "password": True},
    "mailgun": {"signing_key": True},
}

WorkspaceArg = Annotated[str, typer.Option("--workspace", "-w", help="Workspace id.")]


def parse_values(provider: str, pairs: list[str]) -> dict[str, Any]:
    if provider not in FIELDS:
        raise ValueError(f"unknown provider {provider!r}: {', '.join(FIELDS)}")
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in FIELDS[provider]:
            raise ValueError(
                f"{pair.split('=')[0]!r} is not a {provider} field; "
                f"want {', '.join(f'{f}=...' for f in FIELDS[provider])}"
            )
        values[name] = [v.strip() for v in value.split(",") if v.strip()] if name == "topic_arns" else value
    missing = [f for f in FIELDS[provider] if not values.get(f)]
    if missing:
        raise ValueError(f"{provider} needs {', '.join(missing)}")
    return values


def masked(section: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for provider, values in (section or {}).items():
        if isinstance(values, dict):
            secret = FIELDS.get(provider, {})
            out[provider] = {k: ("***" if secret.get(k) else v) for k, v in values.items()}
    return out


@bounce_webhooks_app.command("set")
def set_provider(
    provider: Annotated[str, typer.Argument(help="ses, sendgrid, postmark or mailgun.")],
    values: Annotated[
        list[str],
        typer.Argument(
            metavar="FIELD=VALUE...",
            help="ses: topic_arns=ARN[,ARN]; sendgrid: public_key=BASE64; postmark: username=U password=P; "
            "mailgun: signing_key=K",
        ),
    ],
    workspace: WorkspaceArg,
    database: DatabaseOpt = None,
) -> None:
    """Set one provider's webhook secrets (replacing what was there)."""
    from nudgeflow.store.bounce_webhooks import set_webhook_settings

    try:
        parsed = parse_values(provider, values)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    engine = open_engine(load_settings(database))
    try:
        with engine.begin() as conn:
            set_webhook_settings(conn, workspace, provider, parsed, now_ms())
    finally:
        engine.dispose()
    err.print(f"{provider} webhook: POST /webhooks/{provider}/{workspace}")


@bounce_webhooks_app.command("show")
def show(workspace: WorkspaceArg, database: DatabaseOpt = None) -> None:
    """Print the configured providers as JSON (secrets masked)."""
    from nudgeflow.store.bounce_webhooks import webhook_settings

    engine = open_engine(load_settings(database))
    try:
        with engine.connect() as conn:
            section = webhook_settings(conn, workspace)
    finally:
        engine.dispose()
    print(json.dumps(masked(section), indent=2))


@bounce_webhooks_app.command("clear")
def clear(
    provider: Annotated[str, typer.Argument(help="ses, sendgrid, postmark or mailgun.")],
    workspace: WorkspaceArg,
    database: DatabaseOpt = None,
) -> None:
    """Remove one provider's secrets: its webhook then answers 403."""
    from nudgeflow.store.bounce_webhooks import set_webhook_settings

    engine = open_engine(load_settings(database))
    try:
        with engine.begin() as conn:
            set_webhook_settings(conn, workspace, provider, None, now_ms())
    except ValueError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
