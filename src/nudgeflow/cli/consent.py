"""`nudgeflow suppressions add|remove|list` and `nudgeflow consent show|set|request-confirmation`:
the suppression list and a person's consent from the command line, as the admin API gives them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from nudgeflow.cli.common import DatabaseOpt, WorkspaceOpt, fail, now_ms, open_workspace
from nudgeflow.core.clock import from_ms

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from nudgeflow.store.consent_records import Person

suppressions_app = typer.Typer(
    help="The suppression list: addresses nothing is sent to, transactional messages included.", no_args_is_help=True
)

_Channel = Annotated[str, typer.Option("--channel", "-c", help="The channel the address belongs to.")]


@suppressions_app.command("add")
def suppressions_add(
    addresses: Annotated[list[str], typer.Argument(metavar="ADDRESS", help="One or more addresses.")],
    workspace: WorkspaceOpt,
    channel: _Channel = "email",
    reason: Annotated[str, typer.Option(help="hard_bounce, complaint, manual, …")] = "manual",
    detail: Annotated[str | None, typer.Option(help="A note kept with the suppression.")] = None,
    database: DatabaseOpt = None,
) -> None:
    """Suppress addresses: nothing more is sent to them."""
    from nudgeflow.store import consent

    engine = open_workspace(database, workspace)
    try:
        with engine.begin() as conn:
            added = sum(consent.suppress(conn, workspace, channel, a, reason, now_ms(), detail) for a in addresses)
    finally:
        engine.dispose()
    print(f"{added} added, {len(addresses) - added} already suppressed ({reason} now)")


@suppressions_app.command("remove")
def suppressions_remove(
    addresses: Annotated[list[str], typer.Argument(metavar="ADDRESS", help="One or more addresses.")],
    workspace: WorkspaceOpt,
    channel: _Channel = "email",
    database: DatabaseOpt = None,
) -> None:
    """Lift suppressions (a person who asked to receive mail again, a bounce fixed)."""
    from nudgeflow.store import consent

    engine = open_workspace(database, workspace)
    try:
        with engine.begin() as conn:
            missing = [a for a in addresses if not consent.unsuppress(conn, workspace, channel, a)]
    finally:
        engine.dispose()
    print(f"{len(addresses) - len(missing)} removed")
    if missing:
        raise fail("not suppressed: " + ", ".join(missing))


@suppressions_app.command("list")
def suppressions_list(
    workspace: WorkspaceOpt,
    channel: Annotated[str | None, typer.Option("--channel", "-c", help="Only this channel.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    database: DatabaseOpt = None,
) -> None:
    """The suppression list, by address."""
    from nudgeflow.store import consent

    engine = open_workspace(database, workspace)
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
        table.add_row(
            s["address"],
            s["channel"],
            s["reason"],
            from_ms(s["created_at_ms"]).strftime("%Y-%m-%d %H:%M"),
            s["detail"] or "",
        )
    Console().print(table)
    if not found:
        Console(stderr=True).print("no suppressions")


# -- a person's consent -------------------------------------------------------------------------

consent_app = typer.Typer(
    help="A person's marketing consent per channel and topic: show it, record a choice, ask for a double opt-in.",
    no_args_is_help=True,
)

_Ref = Annotated[str, typer.Argument(metavar="ID", help="A profile id, userId or anonymousId.")]
_Topic = Annotated[str, typer.Option("--topic", "-t", help='A topic id, or "*" for all marketing of the channel.')]


def _person(engine: Engine, workspace: str, ref: str) -> Person:
    from nudgeflow.store.consent_records import Person
    from nudgeflow.store.profiles import id_and_user, resolve_profile_id

    if "\x00" in ref:
        raise fail("ID: a NUL character is not allowed", 2)
    with engine.connect() as conn:
        profile_id = resolve_profile_id(conn, workspace, ref)
        found = id_and_user(conn, profile_id) if profile_id is not None else None
    if found is None:
        raise fail(f"no profile with id, userId or anonymousId {ref!r} in workspace {workspace}")
    return Person(*found)


@consent_app.command("show")
def consent_show(
    ref: _Ref,
    workspace: WorkspaceOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print the admin API's JSON.")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Per channel, for all marketing and each topic: let through or not (and why), and the choice recorded."""
    from nudgeflow.store import consent, consent_records

    engine = open_workspace(database, workspace)
    try:
        person = _person(engine, workspace, ref)
        with engine.connect() as conn:
            shown = consent_records.view(conn, workspace, person.profile_id, consent.get_settings(conn, workspace))
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(shown))
        return
    table = Table(
        "channel", "topic", "marketing", "recorded", "source", "at", title=f"{person.profile_id} ({shown['mode']})"
    )
    for channel, part in shown["channels"].items():
        for topic, entry in [("*", part["all"]), *part["topics"].items()]:
            recorded = entry["recorded"]
            table.add_row(
                channel,
                topic,
                "allowed" if entry["allowed"] else f"not sent: {entry['reason']}",
                "" if recorded is None else ("yes" if recorded["subscribed"] else "no"),
                "" if recorded is None else recorded["source"] or "",
                "" if recorded is None else recorded["at"],
            )
    Console().print(table)


@consent_app.command("set")
def consent_set(
    ref: _Ref,
    workspace: WorkspaceOpt,
    subscribed: Annotated[
        bool, typer.Option("--subscribe/--unsubscribe", help="A yes (consent) or a no (unsubscribe).")
    ],
    channel: _Channel = "email",
    topic: _Topic = "*",
    database: DatabaseOpt = None,
) -> None:
    """Record a choice for the person (source cli): a Consent Updated event when it changes anything."""
    from nudgeflow.store import consent_records

    engine = open_workspace(database, workspace)
    try:
        person = _person(engine, workspace, ref)
        with engine.begin() as conn:
            changed = consent_records.record(
                conn, workspace, person, channel, topic, subscribed, now_ms(), consent_records.CLI
            )
    finally:
        engine.dispose()
    what = "subscribed to" if subscribed else "unsubscribed from"
    scope = "all marketing" if topic == "*" else f"topic {topic}"
    print(f"{person.profile_id} {what} {scope} on {channel}" + ("" if changed else " (no change)"))


@consent_app.command("request-confirmation")
def consent_request_confirmation(
    ref: _Ref,
    workspace: WorkspaceOpt,
    topic: _Topic = "*",
    template: Annotated[
        str | None,
        typer.Option(
            help="An email template with {{ links.confirm_subscription }} (default: the workspace's setting)."
        ),
    ] = None,
    database: DatabaseOpt = None,
) -> None:
    """Queue a double opt-in email: its link records the person's consent to the topic on email."""
    from nudgeflow.store import consent_records
    from nudgeflow.store.consent_records import ConsentProblem

    engine = open_workspace(database, workspace)
    try:
        person = _person(engine, workspace, ref)
        with engine.begin() as conn:
            key = consent_records.request_confirmation(
                conn, workspace, person.profile_id, topic, now_ms(), template=template
            )
    except ConsentProblem as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    print(f"queued {key}: a running server sends it")
