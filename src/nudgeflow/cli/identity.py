"""`nudgeflow workspace keys …` and `nudgeflow workspace identity …`: write keys and identity verification.

    workspace keys create WS --kind public|server    a new write key, printed once
    workspace keys list WS                           hints and kinds (keys are kept only as digests)
    workspace keys revoke WS HINT                    a running server refuses it within 30 s
    workspace identity show|enable|disable|rotate|finish-rotation WS

The same operations are in the admin API (web/identity_api.py). docs/identity.md explains them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console

from nudgeflow.cli.common import DatabaseOpt, err, fail, load_settings, now_ms, open_engine

keys_app = typer.Typer(
    help="A workspace's write keys: public (browsers, apps) and server (backends).", no_args_is_help=True
)
identity_app = typer.Typer(
    help="Identity verification: public-key requests prove the userId with context.userHash.", no_args_is_help=True
)

_Ws = Annotated[str, typer.Argument(metavar="WORKSPACE_ID", help="The workspace id (ws_…).")]
_Json = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _run(workspace: str, database: str | None, work: Callable[[Any, int], Any], *, write: bool = True) -> Any:
    """Open the database, check the workspace, run `work(conn, now_ms)` in one transaction."""
    from nudgeflow.store.identity_settings import IdentityProblem
    from nudgeflow.store.journeys import JourneyError, require_workspace
    from nudgeflow.store.workspaces import KeyProblem

    engine = open_engine(load_settings(database))
    try:
        with engine.begin() if write else engine.connect() as conn:
            require_workspace(conn, workspace)
            return work(conn, now_ms())
    except (JourneyError, KeyProblem, IdentityProblem) as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data))
        return
    out = Console()
    for name, value in data.items():
        out.print(f"{name:<14}{value}", highlight=False)


# -- keys ---------------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    workspace: _Ws,
    kind: Annotated[str, typer.Option("--kind", help="public: for browsers and apps; server: a secret for backends.")],
    database: DatabaseOpt = None,
    as_json: _Json = False,
) -> None:
    """Create a write key and print it (shown only once)."""
    from nudgeflow.store.workspaces import create_write_key

    key = _run(workspace, database, lambda conn, now: create_write_key(conn, workspace, kind, now))
    _print({"write_key": key, "kind": kind}, as_json)
    if not as_json:
        err.print(
            "Keep it: it is stored only as a digest and cannot be shown again."
            + (" A server key is a secret: never put it in a page or an app." if kind == "server" else "")
        )


@keys_app.command("list")
def keys_list(workspace: _Ws, database: DatabaseOpt = None, as_json: _Json = False) -> None:
    """The workspace's write keys and admin tokens, by hint (their first 8 characters)."""
    from nudgeflow.store.workspaces import list_keys

    rows = _run(workspace, database, lambda conn, now: list_keys(conn, workspace), write=False)
    if as_json:
        print(json.dumps({"keys": rows}))
        return
    out = Console()
    for row in rows:
        created = datetime.fromtimestamp(int(row["created_at_ms"]) / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        out.print(f"{row['hint']:<10}{row['kind']:<8}created {created} UTC", highlight=False)


@keys_app.command("revoke")
def keys_revoke(
    workspace: _Ws,
    hint: Annotated[str, typer.Argument(metavar="HINT", help="The key's first 8 characters, as `keys list` shows.")],
    database: DatabaseOpt = None,
) -> None:
    """Revoke a write key. A running server stops accepting it within 30 seconds."""
    from nudgeflow.store.workspaces import revoke_write_key

    kind = _run(workspace, database, lambda conn, now: revoke_write_key(conn, workspace, hint))
    err.print(f"revoked the {kind} write key {hint[:8]}…; a running server refuses it within 30 seconds")


# -- identity verification ------------------------------------------------------------------------


def _secret_printed(view: dict[str, Any], secret: str | None, as_json: bool) -> None:
    _print({**view, **({"secret": secret} if secret else {})}, as_json)
    if secret and not as_json:
        err.print(
            "The secret is shown only once. Your backend sends context.userHash = hex HMAC-SHA256(secret, "
            "userId) with each signed-in user's calls (docs/identity.md)."
        )


@identity_app.command("show")
def identity_show(workspace: _Ws, database: DatabaseOpt = None, as_json: _Json = False) -> None:
    """Whether verification is on, and how many secrets are valid (never the secrets)."""
    from nudgeflow.store import identity_settings

    settings = _run(workspace, database, lambda conn, now: identity_settings.read(conn, workspace), write=False)
    _print(settings.view(), as_json)


@identity_app.command("enable")
def identity_enable(workspace: _Ws, database: DatabaseOpt = None, as_json: _Json = False) -> None:
    """Turn verification on. With no secret yet, one is made and printed (once)."""
    from nudgeflow.store import identity_settings

    settings, made = _run(workspace, database, lambda conn, now: identity_settings.enable(conn, workspace, now))
    _secret_printed(settings.view(), made, as_json)
    if not as_json:
        err.print("A running server applies it within 5 seconds.")


@identity_app.command("disable")
def identity_disable(workspace: _Ws, database: DatabaseOpt = None, as_json: _Json = False) -> None:
    """Turn verification off (the secrets are kept)."""
    from nudgeflow.store import identity_settings

    settings = _run(workspace, database, lambda conn, now: identity_settings.disable(conn, workspace, now))
    _print(settings.view(), as_json)


@identity_app.command("rotate")
def identity_rotate(workspace: _Ws, database: DatabaseOpt = None, as_json: _Json = False) -> None:
    """Make a new current secret and print it once; the previous one stays valid until finish-rotation.
    With no secret yet, this makes the first (verification stays off until `enable`)."""
    from nudgeflow.store import identity_settings

    settings, made = _run(workspace, database, lambda conn, now: identity_settings.rotate(conn, workspace, now))
    _secret_printed(settings.view(), made, as_json)
    if settings.rotating and not as_json:
        err.print(
            "Both secrets are valid now. Once your backend uses the new one (and sessions hashed with "
            "the old one have ended), run `nudgeflow workspace identity finish-rotation`."
        )


@identity_app.command("finish-rotation")
def identity_finish_rotation(workspace: _Ws, database: DatabaseOpt = None, as_json: _Json = False) -> None:
    """End a rotation: the previous secret stops being valid."""
    from nudgeflow.store import identity_settings

    settings = _run(workspace, database, lambda conn, now: identity_settings.finish_rotation(conn, workspace, now))
    _print(settings.view(), as_json)
