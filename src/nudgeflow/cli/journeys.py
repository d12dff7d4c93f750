"""`nudgeflow journeys …`: journeys as code."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer
from rich.console import Console
from rich.table import Table

from nudgeflow.cli.common import DatabaseOpt, WorkspaceOpt, err, fail, load_settings, now_ms, open_engine, plural

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Connection

    from nudgeflow.model.journey_checks import Delivery, FileProblem
    from nudgeflow.settings import Settings
    from nudgeflow.store.journeys import Transition

    StatusChange = Callable[[Connection, str, str, int], Transition]

journeys_app = typer.Typer(
    help="Journeys as code: validate, apply, publish, pause, resume, archive, list.", no_args_is_help=True
)

JourneyFiles = Annotated[list[str], typer.Argument(help="Journey files (.yaml, .yml, .json) or directories of them.")]
JourneyId = Annotated[str, typer.Argument(metavar="ID")]


def _print_problems(problems: list[FileProblem], stream: TextIO) -> tuple[int, int]:
    for problem in problems:
        print(problem.format(), file=stream)
    errors = sum(1 for p in problems if p.severity == "error")
    return errors, len(problems) - errors


def _workspace_delivery(conn: Connection, workspace: str, settings: Settings) -> Delivery:
    """The channels this deployment serves, the workspace's templates, places, webhook
    destinations and live segments, for the journey checks."""
    from nudgeflow.core.catalog import place_tags
    from nudgeflow.model.journey_checks import Delivery
    from nudgeflow.store import catalog as catalog_store
    from nudgeflow.store import segments as segment_store
    from nudgeflow.store import templates as template_store
    from nudgeflow.store import webhook_destinations

    known = {t["name"]: t["channel"] for t in template_store.list_templates(conn, workspace)}
    places = {
        p["id"]: frozenset(place_tags(p["attributes"])) for p in catalog_store.all_items(conn, workspace, "places")
    }
    return Delivery.serving(
        settings.log_channels,
        known,
        "this workspace",
        places,
        webhook_destinations.destination_names(conn, workspace),
        segments=set(segment_store.live_definitions(conn, workspace)),
    )


@journeys_app.command("validate")
def journeys_validate(
    files: JourneyFiles,
    templates: Annotated[
        str | None,
        typer.Option(
            "--templates",
            metavar="DIR",
            help="A folder of template files (as `templates apply` reads): check that each send step's template is "
            "there, with the step's channel.",
        ),
    ] = None,
) -> None:
    """Check journey files without a database: every problem as file:line: path: message."""
    from nudgeflow.content import compiled_templates
    from nudgeflow.model.journey_checks import Delivery, check_files, journey_files

    paths = journey_files(files)
    if not paths:
        raise fail("no journey files (.yaml, .yml, .json) found in " + " ".join(files))
    known = None
    if templates is not None:
        if not Path(templates).is_dir():
            raise fail(f"--templates {templates}: not a folder")
        try:
            known = {name: source.channel for name, source in compiled_templates.load_template_files(templates)}
        except compiled_templates.TemplateFileError as exc:
            raise fail(f"--templates {templates}: {exc}") from exc
    problems, valid = check_files(paths, Delivery.serving(load_settings(None).log_channels, known, templates or ""))
    errors, warnings = _print_problems(problems, sys.stdout)
    print(
        f"{plural(len(paths), 'file')}, {plural(len(valid), 'valid journey')}: "
        f"{plural(errors, 'error')}, {plural(warnings, 'warning')}"
    )
    if templates is None:
        print("note: templates were not checked (give --templates DIR to check them)", file=sys.stderr)
    if errors:
        raise typer.Exit(1)


@journeys_app.command("apply")
def journeys_apply(
    files: JourneyFiles,
    workspace: WorkspaceOpt,
    publish: Annotated[bool, typer.Option("--publish", help="Publish each journey after saving its draft.")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Create or update journey drafts from files, all or nothing; --publish makes them live."""
    from nudgeflow.model.journey_checks import check_files, journey_files
    from nudgeflow.store import journeys as store

    paths = journey_files(files)
    if not paths:
        raise fail("no journey files (.yaml, .yml, .json) found in " + " ".join(files))
    problems, valid = check_files(paths)
    if any(p.severity == "error" for p in problems):  # before opening the database; warnings come below
        errors, _warnings = _print_problems(problems, sys.stderr)
        raise fail(f"nothing applied: {plural(errors, 'error')} in the files above")
    now = now_ms()
    settings = load_settings(database)
    engine = open_engine(settings)
    lines = []
    try:
        with engine.begin() as conn:
            store.require_workspace(conn, workspace)
            # Channels and the workspace's templates: checked again with them, file:line as above.
            delivery = _workspace_delivery(conn, workspace, settings)
            problems, valid = check_files(paths, delivery)
            errors, _warnings = _print_problems(problems, sys.stderr)
            if errors:
                raise fail(f"nothing applied: {plural(errors, 'error')} in the files above")
            for _file, journey in valid:
                before = store.get_journey(conn, workspace, journey.id)
                created = store.apply_draft(conn, workspace, journey, now)
                after = store.get_journey(conn, workspace, journey.id)
                assert after is not None
                what = (
                    "created (draft)"
                    if created
                    else ("draft updated" if before and before["draft"] != after["draft"] else "draft unchanged")
                )
                if publish:
                    version = store.publish(conn, workspace, journey.id, now)
                    status = store.get_journey(conn, workspace, journey.id)["status"]  # type: ignore[index]
                    if before is not None and before["live_version"] == version:
                        what += f", version {version} stays {status} (nothing new to publish)"
                    else:
                        what += f", published version {version} ({status})"
                lines.append(f"{journey.id}: {what}")
    except store.JourneyError as exc:
        raise fail(f"nothing applied: {exc}") from exc
    finally:
        engine.dispose()
    for line in lines:
        print(line)


def _check_draft_delivery(conn: Connection, workspace: str, journey_id: str, settings: Settings) -> None:
    """Refuse to publish a draft whose channels or templates are not there (each as
    `journey ID: path: reason`): it would otherwise fail only when its first message is due."""
    from nudgeflow.model.journey_checks import check_journey
    from nudgeflow.store import journeys as store

    found = store.get_journey(conn, workspace, journey_id)
    if found is None:
        return  # store.publish says there is no such journey
    _journey, problems = check_journey(found["draft"], _workspace_delivery(conn, workspace, settings))
    errors = [p for p in problems if p.severity == "error"]
    for problem in problems:
        kind = "" if problem.severity == "error" else " warning:"
        print(f"journey {journey_id}: {problem.path}:{kind} {problem.message}", file=sys.stderr)
    if errors:
        raise fail(f"not published: {plural(len(errors), 'error')} above")


def _publish(
    journey_id: str, workspace: str, database: str | None, from_now: bool, yes: bool, confirm_above: int
) -> None:
    from nudgeflow.cli.publish_plan import plan_publish, refusal  # the engine's backfill preview
    from nudgeflow.store import journeys as store

    now = now_ms()
    settings = load_settings(database)
    engine = open_engine(settings)
    try:
        if not from_now:
            plan = plan_publish(engine, workspace, journey_id, now)
            if plan is not None:
                print(plan.line(journey_id))
                if plan.entering > confirm_above and not yes:
                    raise fail(refusal(journey_id, plan, confirm_above))
        with engine.begin() as conn:
            store.require_workspace(conn, workspace)
            _check_draft_delivery(conn, workspace, journey_id, settings)
            before = store.get_journey(conn, workspace, journey_id)
            version = store.publish(conn, workspace, journey_id, now, backfill=not from_now)
            status = store.get_journey(conn, workspace, journey_id)["status"]  # type: ignore[index]
            same = before is not None and before["live_version"] == version
            message = (
                f"{journey_id}: version {version} stays {status} (the draft has no changes)"
                if same
                else f"{journey_id}: published version {version} ({status})"
            )
            if not same:
                message += (
                    ", from now on (no backfill)"
                    if from_now
                    else "; the engine looks at the people already known in the background"
                )
    except store.JourneyError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    print(message)


def journeys_publish(
    journey_id: JourneyId,
    workspace: WorkspaceOpt,
    database: DatabaseOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Publish even if more people than --confirm-above would enter at once.")
    ] = False,
    from_now: Annotated[
        bool,
        typer.Option(
            "--from-now", help="Only what happens from now on counts: no backfill of the people already known."
        ),
    ] = False,
    confirm_above: Annotated[
        int,
        typer.Option(
            "--confirm-above", min=0, metavar="N", help="Ask for --yes when more than N people would enter at once."
        ),
    ] = 1000,
) -> None:
    """Freeze the draft as a new immutable version and make it live (checked again first).

    Prints how many people already known would enter at once (see docs/journeys.md,
    "Publishing and the past")."""
    _publish(journey_id, workspace, database, from_now, yes, confirm_above)


def _change_status(change: StatusChange, journey_id: str, workspace: str, database: str | None) -> None:
    from nudgeflow.store import journeys as store

    now = now_ms()
    engine = open_engine(load_settings(database))
    try:
        with engine.begin() as conn:
            store.require_workspace(conn, workspace)
            done = change(conn, workspace, journey_id, now)
    except store.JourneyError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    message = f"{journey_id}: {done.status}" + ("" if done.changed else " (already)")
    if done.runs_woken:
        message += f", {plural(done.runs_woken, 'held run')} woken"
    print(message)


def _status_command(name: str) -> Callable[..., None]:
    """A command that takes the journey and nothing more: the store function of the same name
    (store/journeys.py: pause, resume, archive) changes its status."""

    def command(journey_id: JourneyId, workspace: WorkspaceOpt, database: DatabaseOpt = None) -> None:
        from nudgeflow.store import journeys as store

        change: StatusChange = getattr(store, name)
        _change_status(change, journey_id, workspace, database)

    command.__name__ = f"journeys_{name}"
    return command


# A journey's four status transitions, in the order --help lists them: (command, help, its
# function). All four take the journey ID, --workspace and --database (JourneyId and the
# shared options). publish also takes the options of its backfill preview, so its function is
# written out above (its help is its docstring); the other three are made alike.
TRANSITIONS: tuple[tuple[str, str | None, Callable[..., None]], ...] = (
    ("publish", None, journeys_publish),
    ("pause", "Stop new entries; runs in progress are held where they are.", _status_command("pause")),
    ("resume", "Go live again; held runs continue from where they were held.", _status_command("resume")),
    (
        "archive",
        "Retire the journey for good: nothing enters, runs end, it can no longer be changed.",
        _status_command("archive"),
    ),
)

for _name, _help, _command in TRANSITIONS:
    journeys_app.command(_name, help=_help)(_command)


@journeys_app.command("list")
def journeys_list(
    workspace: WorkspaceOpt,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """The workspace's journeys: status, live version, and whether the draft has unpublished changes."""
    from nudgeflow.store import journeys as store

    engine = open_engine(load_settings(database))
    try:
        with engine.connect() as conn:
            store.require_workspace(conn, workspace)
            found = store.list_journeys(conn, workspace)
    except store.JourneyError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(found))
        return
    table = Table("id", "name", "status", "live version", "draft")
    for journey in found:
        draft = (
            "changed since publish"
            if journey["draft_changed"] and journey["live_version"]
            else ("not published" if not journey["live_version"] else "same as live")
        )
        table.add_row(journey["id"], journey["name"], journey["status"], str(journey["live_version"] or "—"), draft)
    Console().print(table)
    if not found:
        err.print("no journeys yet: `nudgeflow journeys apply FILE… --workspace ID`")


@journeys_app.command("schema")
def journeys_schema() -> None:
    """Print the JSON Schema of the journey format (schema/journey.schema.json is this output)."""
    from nudgeflow.model.journeys import journey_json_schema

    print(json.dumps(journey_json_schema(), indent=2, ensure_ascii=False))
