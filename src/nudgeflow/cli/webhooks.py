"""`nudgeflow workspace webhooks destinations set|list|remove` and `… secret show|rotate`:
where a workspace's webhook steps may send, and what signs them (docs/webhooks.md).

Secrets go in and come out once: a secret Nudgeflow makes is printed when it is made (the
receiver needs it to check signatures), and masked afterwards, as every header value is.
Only `secret show --reveal` prints the workspace's secret again, on the operator's terminal.
A running server picks a change up within 30 seconds (at once through the admin API).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

from nudgeflow.cli.common import DatabaseOpt, WorkspaceOpt, err, fail, now_ms, open_workspace
from nudgeflow.model.webhooks import Destination, WebhookSettingsError, check_secret, new_secret

webhooks_app = typer.Typer(
    help="Webhook destinations and signing secrets (the webhook step: docs/webhooks.md).", no_args_is_help=True
)
destinations_app = typer.Typer(help="Named destinations a webhook step may send to.", no_args_is_help=True)
secret_app = typer.Typer(help="The secret that signs webhook steps that give their own url.", no_args_is_help=True)
webhooks_app.add_typer(destinations_app, name="destinations")
webhooks_app.add_typer(secret_app, name="secret")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise WebhookSettingsError(f"--header {text!r}: write it as 'Name: value'")
    return name.strip(), value.strip()


@destinations_app.command("set")
def destinations_set(
    name: Annotated[str, typer.Argument(help="The name webhook steps use (`webhook: {destination: NAME}`).")],
    workspace: WorkspaceOpt,
    url: Annotated[str, typer.Option("--url", help="The http(s) URL to call.")],
    method: Annotated[str, typer.Option("--method", help="POST or PUT (a step may choose).")] = "POST",
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="'Name: value', sent with every call (repeat it); values are secret."),
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option("--secret", help="whsec_… to sign with; default: the one stored, or a new one printed once."),
    ] = None,
    new_secret_: Annotated[bool, typer.Option("--new-secret", help="Make a new secret (printed once).")] = False,
    allow_private: Annotated[
        bool, typer.Option("--allow-private", help="May reach private, loopback and link-local addresses.")
    ] = False,
    allow_network: Annotated[
        list[str] | None,
        typer.Option("--allow-network", help="A private network (CIDR) it may reach, e.g. 10.20.0.0/16 (repeat it)."),
    ] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds for the whole call (at most 30).")] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add or replace a destination. Every field is as given; the secret is kept unless
    --secret or --new-secret says otherwise (a new destination gets a new one)."""
    if secret is not None and new_secret_:
        raise fail("give --secret or --new-secret, not both")
    from nudgeflow.store import webhook_destinations

    engine = open_workspace(database, workspace)
    made: str | None = None
    try:
        with engine.begin() as conn:
            current = webhook_destinations.load(conn, workspace).destinations.get(name)
            if secret is None and (new_secret_ or current is None):
                secret = made = new_secret()
            data: dict[str, Any] = {
                "url": url,
                "method": method,
                "headers": dict(parse_header(h) for h in header or []),
                "secret": secret if secret is not None else current.secret if current is not None else None,
                "allow_private": allow_private,
                "allow_networks": list(allow_network or []),
                "timeout_s": timeout,
            }
            destination = Destination.build(name, data)
            webhook_destinations.set_destination(conn, workspace, destination, now_ms())
    except WebhookSettingsError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    shown = destination.masked()
    if as_json:
        print(json.dumps({**shown, **({"secret": made} if made else {})}))
        return
    _print_destination(shown)
    if made:
        err.print("the signing secret (shown this once; the receiver checks webhook-signature with it):")
        print(made)


def _print_destination(shown: dict[str, Any]) -> None:
    out = Console()
    out.print(f"{shown['name']}  {shown['method']} {shown['url']}")
    for name in shown.get("headers", {}):
        out.print(f"  header {name}: ********")
    if shown.get("allow_private"):
        out.print("  may reach private addresses")
    for network in shown.get("allow_networks", []):
        out.print(f"  may reach {network}")
    if shown.get("timeout_s") is not None:
        out.print(f"  timeout {shown['timeout_s']:g} s")


@destinations_app.command("list")
def destinations_list(workspace: WorkspaceOpt, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """The workspace's destinations (secrets and header values masked)."""
    from nudgeflow.store import webhook_destinations

    engine = open_workspace(database, workspace)
    try:
        with engine.connect() as conn:
            shown = webhook_destinations.load(conn, workspace).masked()
    except WebhookSettingsError as exc:
        raise fail(f"the stored webhook settings are invalid: {exc}") from exc
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(shown))
        return
    if not shown["destinations"]:
        err.print("no webhook destinations")
    for destination in shown["destinations"]:
        _print_destination(destination)


@destinations_app.command("remove")
def destinations_remove(
    name: Annotated[str, typer.Argument(help="The destination to remove.")],
    workspace: WorkspaceOpt,
    database: DatabaseOpt = None,
) -> None:
    """Remove a destination: the steps that name it fail until it is set again."""
    from nudgeflow.store import webhook_destinations

    engine = open_workspace(database, workspace)
    try:
        with engine.begin() as conn:
            removed = webhook_destinations.remove_destination(conn, workspace, name, now_ms())
    except WebhookSettingsError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    if not removed:
        raise fail(f"no webhook destination {name!r}")
    err.print(f"removed {name}")


@secret_app.command("show")
def secret_show(
    workspace: WorkspaceOpt,
    reveal: Annotated[bool, typer.Option("--reveal", help="Print the secret itself.")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Whether the workspace has its webhook secret (made at the first webhook to a url);
    --reveal prints it, for the receiver that checks the signatures."""
    from nudgeflow.store import webhook_destinations

    engine = open_workspace(database, workspace)
    try:
        with engine.connect() as conn:
            current = webhook_destinations.load(conn, workspace).secret
    except WebhookSettingsError as exc:
        raise fail(f"the stored webhook settings are invalid: {exc}") from exc
    finally:
        engine.dispose()
    if current is None:
        err.print("no webhook secret yet: the first webhook step with a url makes one (or run `secret rotate`)")
        return
    print(current if reveal else "********")


@secret_app.command("rotate")
def secret_rotate(
    workspace: WorkspaceOpt,
    secret: Annotated[str | None, typer.Option("--secret", help="whsec_… to use; default: a new one.")] = None,
    database: DatabaseOpt = None,
) -> None:
    """Replace the workspace's webhook secret; prints a new one once. Calls signed from now
    on use it: give it to the receiver first."""
    from nudgeflow.store import webhook_destinations

    engine = open_workspace(database, workspace)
    value = secret or new_secret()
    try:
        check_secret(value)
        with engine.begin() as conn:
            webhook_destinations.set_secret(conn, workspace, value, now_ms())
    except WebhookSettingsError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    if secret is None:
        err.print("the new signing secret (shown this once):")
        print(value)
    else:
        err.print("secret set")
