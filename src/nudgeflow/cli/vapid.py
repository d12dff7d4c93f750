"""`nudgeflow workspace vapid show|rotate`: the Web Push keys (store/vapid.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from nudgeflow.cli.common import DatabaseOpt, err, fail, load_settings, now_ms, open_engine

vapid_app = typer.Typer(help="A workspace's Web Push (VAPID) keys: show, rotate.", no_args_is_help=True)
VapidSubjectOpt = Annotated[
    str | None, typer.Option("--subject", help="Set the contact push services see: mailto:you@example.com or https://…")
]


def _vapid(workspace_id: str, database: str | None, subject: str | None, rotate: bool, as_json: bool) -> None:
    from nudgeflow.store import vapid
    from nudgeflow.store.journeys import JourneyError, require_workspace

    engine = open_engine(load_settings(database))
    try:
        with engine.begin() as conn:
            require_workspace(conn, workspace_id)
            now = now_ms()
            keys = (
                vapid.rotate_vapid_keys(conn, workspace_id, now)
                if rotate
                else vapid.ensure_vapid_keys(conn, workspace_id, now)
            )
            if subject is not None:
                keys = vapid.set_vapid_subject(conn, workspace_id, subject, now)
    except (JourneyError, vapid.VapidError) as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    shown = keys.public_view()  # never the private key
    if as_json:
        print(json.dumps(shown))
    else:
        # plain print: a console would wrap the key, and it is meant to be copied
        print(f"public_key     {shown['public_key']}")
        print(f"subject        {shown['subject']}")
        print(f"rotated_at_ms  {shown['rotated_at_ms']}")
    if shown["subject_is_placeholder"]:
        err.print(
            "The subject is a placeholder: set a real contact with --subject mailto:you@example.com "
            "(Apple's push service refuses the placeholder)."
        )
    if rotate:
        err.print(
            "Rotated: browser subscriptions made with the previous key are refused from now on; "
            "the SDK subscribes again when it fetches the new key. Running servers pick it up within 30 s."
        )


@vapid_app.command("show")
def vapid_show(
    workspace_id: Annotated[str, typer.Argument(metavar="WORKSPACE_ID")],
    subject: VapidSubjectOpt = None,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The workspace's VAPID public key and subject (made now if it has none; --subject sets it)."""
    _vapid(workspace_id, database, subject, False, as_json)


@vapid_app.command("rotate")
def vapid_rotate(
    workspace_id: Annotated[str, typer.Argument(metavar="WORKSPACE_ID")],
    subject: VapidSubjectOpt = None,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A new VAPID key pair. Every browser must subscribe again (the SDK does it by itself)."""
    _vapid(workspace_id, database, subject, True, as_json)
