"""The `nudgeflow` command line."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from nudgeflow.settings import Settings

app = typer.Typer(help="Nudgeflow: behavior-triggered email and push messaging.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
workspace_app = typer.Typer(help="Workspaces and their keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(workspace_app, name="workspace")
journeys_app = typer.Typer(help="Journeys as code: validate, apply, publish, pause, resume, archive, list.", no_args_is_help=True)
app.add_typer(journeys_app, name="journeys")
from nudgeflow.cli_email import smtp_app  # noqa: E402

workspace_app.add_typer(smtp_app, name="smtp")
from nudgeflow.cli_bounces import bounce_webhooks_app  # noqa: E402

workspace_app.add_typer(bounce_webhooks_app, name="bounce-webhooks")
from nudgeflow.cli_mobile_push import apns_app, fcm_app  # noqa: E402

workspace_app.add_typer(fcm_app, name="fcm")
workspace_app.add_typer(apns_app, name="apns")
from nudgeflow.cli_identity import identity_app, keys_app  # noqa: E402

workspace_app.add_typer(keys_app, name="keys")
workspace_app.add_typer(identity_app, name="identity")
from nudgeflow.cli_secrets import secrets_app  # noqa: E402

app.add_typer(secrets_app, name="secrets")
catalog_app = typer.Typer(help="The product and place catalog templates personalize with.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
templates_app = typer.Typer(help="Message templates (Liquid + MJML): apply, list, render.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")

DatabaseOpt = Annotated[
    Optional[str],
    typer.Option("--database", envvar="NUDGEFLOW_DATABASE_URL", help="sqlite:///path or postgresql://… (default: ./nudgeflow.db)"),
]

err = Console(stderr=True)


def _settings(database: str | None, **overrides: object) -> Settings:
    from nudgeflow.settings import ConfigError

    try:
        return Settings.from_env(database_url=database, **overrides)
    except ConfigError as exc:  # names the variable; a usage error, not a crash
        raise _fail(str(exc), 2) from None


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _engine(settings: Settings, migrate_sqlite: bool = True):  # type: ignore[no-untyped-def]
    from nudgeflow.store import database
    from nudgeflow.web.app import prepare_database

    engine = database.create_db_engine(
        settings.database_url, sqlite_synchronous=settings.sqlite_synchronous, secret_key=settings.secret_key
    )
    try:
        if migrate_sqlite:
            prepare_database(settings, engine)
    except database.DatabaseError as exc:
        raise _fail(str(exc)) from exc
    except Exception as exc:  # a server that does not answer, a file we cannot open
        raise _fail(f"cannot open the database: {exc}") from exc
    return engine


def open_workspace(database: str | None, workspace_id: str):  # type: ignore[no-untyped-def]
    """An engine on the database once the workspace is known to exist (else exit 1 naming it):
    what every command on one workspace starts with."""
    from nudgeflow.store import journeys as store

    engine = _engine(_settings(database))
    try:
        with engine.connect() as conn:
            store.require_workspace(conn, workspace_id)
    except store.JourneyError as exc:
        engine.dispose()
        raise _fail(str(exc)) from exc
    return engine


def now_ms() -> int:
    """The wall clock, for commands (the server and the engine take an injected clock)."""
    from nudgeflow.core.clock import SystemClock, to_ms

    return to_ms(SystemClock().now())


@app.command()
def serve(
    database: DatabaseOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    public_url: Annotated[Optional[str], typer.Option("--public-url", metavar="URL", help="Where the outside world reaches this server (links in messages); env NUDGEFLOW_PUBLIC_URL. Needed off loopback.")] = None,
    log_requests: Annotated[bool, typer.Option(help="Log one line per request.")] = False,
    dev: Annotated[bool, typer.Option("--dev", help="Development: email goes to a built-in SMTP sink, shown at /dev/inbox.")] = False,
    dev_smtp_port: Annotated[int, typer.Option(min=1, max=65535, help="The dev inbox's SMTP port (with --dev).")] = 1025,
    bounce_smtp: Annotated[Optional[str], typer.Option(metavar="HOST:PORT", help="Receive bounces (DSN) and ARF complaints by SMTP here (docs/bounces.md).")] = None,
    bounce_domain: Annotated[Optional[list[str]], typer.Option(metavar="DOMAIN", help="Domain of the bounce address bounces+<workspace>@DOMAIN (repeatable; with --bounce-smtp).")] = None,
    bounce_workspace: Annotated[Optional[str], typer.Option(help="Workspace of bounce mail whose address has no +<workspace> tag.")] = None,
) -> None:
    """Run the HTTP API (ingest, admin, health, metrics)."""
    import uvicorn

    from nudgeflow.logs import configure_logging
    from nudgeflow.cli_settings import serve_public_url
    from nudgeflow.store.database import DatabaseError
    from nudgeflow.store.secret_box import SecretKeyError
    from nudgeflow.web.app import create_app

    settings = _settings(database, host=host, port=port, log_requests=log_requests, dev_mode=dev or None,
                         dev_smtp_port=dev_smtp_port)
    settings = settings.with_(public_url=serve_public_url(settings, public_url, dev))
    configure_logging(settings.log_level)
    err.print(f"public URL: {settings.public_url} (links in messages; a workspace's public_base_url wins)",
              highlight=False, markup=False, soft_wrap=True)
    if bounce_smtp:  # a usage error, before the database is opened
        from nudgeflow.runtime.inbound_smtp import parse_listen

        try:
            parse_listen(bounce_smtp)
        except ValueError as exc:
            raise _fail(str(exc), 2) from None
    if dev:
        err.print(f"dev inbox: http://{host}:{port}/dev/inbox (SMTP sink on {settings.dev_smtp_host}:{dev_smtp_port};"
                  " a local Web Push service for simulated browsers, its address on that page)")
    try:
        application = create_app(settings)
    except DatabaseError as exc:
        raise _fail(str(exc)) from exc
    except SecretKeyError as exc:  # a malformed NUDGEFLOW_SECRET_KEY: named, never shown
        raise _fail(str(exc), 2) from exc
    if (runtime := application.state.nudgeflow.runtime) is not None:
        # One engine per database (README: Running the server): a second one exits here,
        # before it listens, naming the first.
        from nudgeflow.store.engine_lock import EngineLocked

        try:
            runtime.claim_database()
        except EngineLocked as exc:
            raise _fail(str(exc)) from exc
        except Exception as exc:  # a server that does not answer, a directory we cannot write
            raise _fail(f"cannot take the engine lock: {exc}") from exc
    # Everything loaded so far lives as long as the process: keep the cyclic collector from
    # walking it again on every full collection (the longest pauses a busy server takes).
    bounces = None
    if bounce_smtp:
        from nudgeflow.runtime.inbound_smtp import committer_jobs, parse_listen, start_bounce_smtp

        try:
            smtp_host, smtp_port = parse_listen(bounce_smtp)
            state = application.state.nudgeflow
            bounces = start_bounce_smtp(
                committer_jobs(state.committer), state.clock, smtp_host, smtp_port, bounce_domain or [], bounce_workspace
            )
        except (ValueError, OSError, RuntimeError) as exc:
            raise _fail(f"bounce SMTP server: {exc}") from exc
        err.print(f"bounces: SMTP on {smtp_host}:{smtp_port} for {', '.join(bounce_domain or [])}")
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(application, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    finally:
        if bounces is not None:
            bounces.stop()


@db_app.command("upgrade")
def db_upgrade(database: DatabaseOpt = None) -> None:
    """Apply schema migrations (Alembic) up to the latest."""
    from nudgeflow.store import database as db

    settings = _settings(database)
    engine = db.create_db_engine(settings.database_url)
    try:
        before = db.current_revision(engine)
        db.upgrade(engine)
        after = db.current_revision(engine)
    except Exception as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    err.print(f"schema: {before or 'empty'} -> {after}")


@workspace_app.command("create")
def workspace_create(
    name: str,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create a workspace and print its id, write key and admin token (shown only once)."""
    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.store.workspaces import create_workspace

    engine = _engine(_settings(database))
    try:
        with engine.begin() as conn:
            created = create_workspace(conn, name, to_ms(SystemClock().now()))
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps({"workspace_id": created.workspace_id, "write_key": created.write_key, "admin_token": created.admin_token}))
        return
    out = Console()
    out.print(f"workspace_id  {created.workspace_id}")
    out.print(f"write_key     {created.write_key}")
    out.print(f"admin_token   {created.admin_token}")
    err.print("Keep these: they are stored only as digests and cannot be shown again.")


# -- workspace vapid: the Web Push keys (store/vapid.py) -----------------------------------------

vapid_app = typer.Typer(help="A workspace's Web Push (VAPID) keys: show, rotate.", no_args_is_help=True)
workspace_app.add_typer(vapid_app, name="vapid")
VapidSubjectOpt = Annotated[
    Optional[str], typer.Option("--subject", help="Set the contact push services see: mailto:you@example.com or https://…")
]


def _vapid(workspace_id: str, database: str | None, subject: str | None, rotate: bool, as_json: bool) -> None:
    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.store import vapid
    from nudgeflow.store.journeys import JourneyError, require_workspace

    engine = _engine(_settings(database))
    try:
        with engine.begin() as conn:
            require_workspace(conn, workspace_id)
            now = to_ms(SystemClock().now())
            keys = vapid.rotate_vapid_keys(conn, workspace_id, now) if rotate else vapid.ensure_vapid_keys(conn, workspace_id, now)
            if subject is not None:
                keys = vapid.set_vapid_subject(conn, workspace_id, subject, now)
    except (JourneyError, vapid.VapidError) as exc:
        raise _fail(str(exc)) from exc
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
        err.print("The subject is a placeholder: set a real contact with --subject mailto:you@example.com "
                  "(Apple's push service refuses the placeholder).")
    if rotate:
        err.print("Rotated: browser subscriptions made with the previous key are refused from now on; "
                  "the SDK subscribes again when it fetches the new key. Running servers pick it up within 30 s.")


@vapid_app.command("show")
def vapid_show(workspace_id: Annotated[str, typer.Argument(metavar="WORKSPACE_ID")], subject: VapidSubjectOpt = None,
               database: DatabaseOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The workspace's VAPID public key and subject (made now if it has none; --subject sets it)."""
    _vapid(workspace_id, database, subject, False, as_json)


@vapid_app.command("rotate")
def vapid_rotate(workspace_id: Annotated[str, typer.Argument(metavar="WORKSPACE_ID")], subject: VapidSubjectOpt = None,
                 database: DatabaseOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A new VAPID key pair. Every browser must subscribe again (the SDK does it by itself)."""
    _vapid(workspace_id, database, subject, True, as_json)


@app.command("import")
def import_events(
    file: Annotated[str, typer.Argument(help="A JSON Lines file of Segment messages, or - for standard input.")],
    write_key: Annotated[str, typer.Option("--write-key", envvar="NUDGEFLOW_WRITE_KEY", help="The workspace's write key.")],
    database: DatabaseOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Events per transaction.")] = 1000,
) -> None:
    """Load historical events (Segment-shaped JSON Lines); bad lines are reported and skipped."""
    from nudgeflow.ingest.importer import import_file

    engine = _engine(_settings(database))
    try:
        report = import_file(engine, file, write_key, batch_size=batch_size, console=err)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    if report.bad_lines:
        raise typer.Exit(2)


@app.command()
def simulate(
    journeys: Annotated[
        list[str],
        typer.Option("--journeys", "-j", metavar="PATH", help="Journey files, or directories of .yaml/.yml/.json files (several may follow)."),
    ],
    events: Annotated[str, typer.Option("--events", "-e", metavar="FILE", help="A JSON Lines file of Segment messages, or - for standard input.")],
    more_journeys: Annotated[Optional[list[str]], typer.Argument(metavar="PATH", help="More journey files or directories.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per planned message, then a summary line.")] = False,
    horizon: Annotated[str, typer.Option(metavar="DURATION", help="After the last event, keep firing timers this long (30d; 0 for none).")] = "30d",
    limit: Annotated[int, typer.Option(metavar="N", min=0, help="Planned messages shown in the table (all are counted).")] = 50,
    places: Annotated[Optional[str], typer.Option("--places", metavar="FILE", help="A places catalog file (as `catalog import places` reads) for location triggers with catalog_places.")] = None,
) -> None:
    """Replay recorded events through journeys on a virtual clock and show what would be sent."""
    from nudgeflow.model.journeys import duration_ms
    from nudgeflow.runtime.replay import (
        JourneyLoadError,
        load_journeys,
        messages_table,
        replay_file,
        steps_table,
        summary_table,
        totals_line,
        write_json_lines,
    )

    try:
        horizon_ms = 0 if horizon.strip() == "0" else duration_ms(horizon)
    except ValueError as exc:
        raise _fail(f"--horizon: {exc}") from exc
    if horizon_ms < 0:
        raise _fail("--horizon: must not be negative")
    try:
        loaded = load_journeys([*journeys, *(more_journeys or [])])
    except JourneyLoadError as exc:
        for problem in exc.problems:
            err.print(f"[red]invalid journey:[/] {problem}", highlight=False, soft_wrap=True, markup=True)
        raise _fail("no simulation: fix the journeys above") from exc
    if not loaded:
        raise _fail("no journeys to simulate")
    catalog_places = _places_file(places) if places is not None else []
    try:
        report = replay_file(loaded, events, horizon_ms=horizon_ms, console=err, places=catalog_places)
    except OSError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        write_json_lines(report, sys.stdout)
        sys.stdout.flush()
    else:
        out = Console()
        out.print(messages_table(report.sim.messages, limit))
        summary = report.summary()
        out.print(summary_table(summary))
        out.print(steps_table(summary))
        out.print(totals_line(report), highlight=False)
    if report.bad_lines:
        raise typer.Exit(2)


def _places_file(path: str) -> list[dict[str, object]]:
    """A places catalog file read and checked as `catalog import places` would, without a
    database; a bad row is an error naming it (a simulation should not quietly lose a store)."""
    from nudgeflow.store.catalog import CatalogError, RowError, check_row, detect_format, parse_rows

    try:
        text = Path(path).read_text(encoding="utf-8")
        rows = []
        for where, raw in parse_rows(text, detect_format(text, path)):
            if isinstance(raw, RowError):
                raise _fail(f"--places {path}: {where}: {raw}")
            try:
                rows.append(check_row("places", raw))
            except RowError as exc:
                raise _fail(f"--places {path}: {where}: {exc}") from exc
    except (OSError, UnicodeDecodeError, CatalogError) as exc:
        raise _fail(f"--places {path}: {exc}") from exc
    return rows


@app.command()
def demo(
    users: Annotated[int, typer.Option(min=1, help="How many people to simulate.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed for the generated traffic.")] = 7,
    database: DatabaseOpt = None,
    journeys: Annotated[
        Optional[list[str]],
        typer.Option("--journeys", "-j", help="Journey files or directories to publish (default: examples/journeys)."),
    ] = None,
    days: Annotated[float, typer.Option(min=3, help="Virtual days the traffic and the fast-forward cover.")] = 40.0,
    keep_serving: Annotated[bool, typer.Option("--keep-serving", help="Keep the demo server up afterwards, to browse its dev inbox (/dev/inbox); Ctrl-C to stop.")] = False,
) -> None:
    """Generate shop and app traffic, ingest it over HTTP, fast-forward the example journeys
    through it on a virtual clock, and show what was stored and what each journey sent."""
    from nudgeflow.demo import DemoError, run_demo
    from nudgeflow.store.database import DatabaseError

    try:
        run_demo(users=users, seed=seed, database_url=database, journeys=journeys, days=days,
                 keep_serving=keep_serving)
    except (DemoError, DatabaseError) as exc:
        raise _fail(str(exc)) from exc


# --- journeys as code -------------------------------------------------------------------------

WorkspaceOpt = Annotated[
    str, typer.Option("--workspace", "-w", envvar="NUDGEFLOW_WORKSPACE", help="The workspace id (ws_…).")
]
JourneyFiles = Annotated[list[str], typer.Argument(help="Journey files (.yaml, .yml, .json) or directories of them.")]


def _print_problems(problems: list, stream) -> tuple[int, int]:  # type: ignore[type-arg, no-untyped-def]
    for problem in problems:
        print(problem.format(), file=stream)
    errors = sum(1 for p in problems if p.severity == "error")
    return errors, len(problems) - errors


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _workspace_delivery(conn, workspace: str, settings: Settings):  # type: ignore[no-untyped-def]
    """The channels this deployment serves and the workspace's templates, for the journey checks."""
    from nudgeflow.core.catalog import place_tags
    from nudgeflow.model.journey_checks import Delivery
    from nudgeflow.store import catalog as catalog_store
    from nudgeflow.store import templates as template_store

    known = {t["name"]: t["channel"] for t in template_store.list_templates(conn, workspace)}
    places = {p["id"]: frozenset(place_tags(p["attributes"])) for p in catalog_store.all_items(conn, workspace, "places")}
    return Delivery.serving(settings.log_channels, known, "this workspace", places)


@journeys_app.command("validate")
def journeys_validate(
    files: JourneyFiles,
    templates: Annotated[Optional[str], typer.Option(
        "--templates", metavar="DIR",
        help="A folder of template files (as `templates apply` reads): check that each send step's template is "
             "there, with the step's channel.")] = None,
) -> None:
    """Check journey files without a database: every problem as file:line: path: message."""
    from nudgeflow.content import compiled_templates
    from nudgeflow.model.journey_checks import Delivery, check_files, journey_files

    paths = journey_files(files)
    if not paths:
        raise _fail("no journey files (.yaml, .yml, .json) found in " + " ".join(files))
    known = None
    if templates is not None:
        if not Path(templates).is_dir():
            raise _fail(f"--templates {templates}: not a folder")
        try:
            known = {name: source.channel for name, source in compiled_templates.load_template_files(templates)}
        except compiled_templates.TemplateFileError as exc:
            raise _fail(f"--templates {templates}: {exc}") from exc
    problems, valid = check_files(paths, Delivery.serving(_settings(None).log_channels, known, templates or ""))
    errors, warnings = _print_problems(problems, sys.stdout)
    print(f"{_plural(len(paths), 'file')}, {_plural(len(valid), 'valid journey')}: "
          f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}")
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
    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.model.journey_checks import check_files, journey_files
    from nudgeflow.store import journeys as store

    paths = journey_files(files)
    if not paths:
        raise _fail("no journey files (.yaml, .yml, .json) found in " + " ".join(files))
    problems, valid = check_files(paths)
    if any(p.severity == "error" for p in problems):  # before opening the database; warnings come below
        errors, _warnings = _print_problems(problems, sys.stderr)
        raise _fail(f"nothing applied: {_plural(errors, 'error')} in the files above")
    now = to_ms(SystemClock().now())
    settings = _settings(database)
    engine = _engine(settings)
    lines = []
    try:
        with engine.begin() as conn:
            store.require_workspace(conn, workspace)
            # Channels and the workspace's templates: checked again with them, file:line as above.
            delivery = _workspace_delivery(conn, workspace, settings)
            problems, valid = check_files(paths, delivery)
            errors, _warnings = _print_problems(problems, sys.stderr)
            if errors:
                raise _fail(f"nothing applied: {_plural(errors, 'error')} in the files above")
            for _file, journey in valid:
                before = store.get_journey(conn, workspace, journey.id)
                created = store.apply_draft(conn, workspace, journey, now)
                after = store.get_journey(conn, workspace, journey.id)
                assert after is not None
                what = "created (draft)" if created else ("draft updated" if before and before["draft"] != after["draft"]
                                                          else "draft unchanged")
                if publish:
                    version = store.publish(conn, workspace, journey.id, now)
                    status = store.get_journey(conn, workspace, journey.id)["status"]  # type: ignore[index]
                    if before is not None and before["live_version"] == version:
                        what += f", version {version} stays {status} (nothing new to publish)"
                    else:
                        what += f", published version {version} ({status})"
                lines.append(f"{journey.id}: {what}")
    except store.JourneyError as exc:
        raise _fail(f"nothing applied: {exc}") from exc
    finally:
        engine.dispose()
    for line in lines:
        print(line)


def _check_draft_delivery(conn, workspace: str, journey_id: str, settings: Settings) -> None:  # type: ignore[no-untyped-def]
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
        raise _fail(f"not published: {_plural(len(errors), 'error')} above")


def _journey_transition(action: str, journey_id: str, workspace: str, database: str | None,
                        from_now: bool = False, yes: bool = False, confirm_above: int = 0) -> None:
    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.store import journeys as store

    now = to_ms(SystemClock().now())
    settings = _settings(database)
    engine = _engine(settings)
    try:
        if action == "publish" and not from_now:
            from nudgeflow.cli_publish import plan_publish, refusal

            plan = plan_publish(engine, workspace, journey_id, now)
            if plan is not None:
                print(plan.line(journey_id))
                if plan.entering > confirm_above and not yes:
                    raise _fail(refusal(journey_id, plan, confirm_above))
        with engine.begin() as conn:
            store.require_workspace(conn, workspace)
            if action == "publish":
                _check_draft_delivery(conn, workspace, journey_id, settings)
                before = store.get_journey(conn, workspace, journey_id)
                version = store.publish(conn, workspace, journey_id, now, backfill=not from_now)
                status = store.get_journey(conn, workspace, journey_id)["status"]  # type: ignore[index]
                same = before is not None and before["live_version"] == version
                message = (f"{journey_id}: version {version} stays {status} (the draft has no changes)" if same
                           else f"{journey_id}: published version {version} ({status})")
                if not same:
                    message += (", from now on (no backfill)" if from_now else
                                "; the engine looks at the people already known in the background")
            else:
                done = getattr(store, action)(conn, workspace, journey_id, now)
                message = f"{journey_id}: {done.status}" + ("" if done.changed else " (already)")
                if done.runs_woken:
                    message += f", {_plural(done.runs_woken, 'held run')} woken"
    except store.JourneyError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    print(message)


@journeys_app.command("publish")
def journeys_publish(
    journey_id: Annotated[str, typer.Argument(metavar="ID")], workspace: WorkspaceOpt, database: DatabaseOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Publish even if more people than --confirm-above would enter at once.")] = False,
    from_now: Annotated[bool, typer.Option("--from-now", help="Only what happens from now on counts: no backfill of the people already known.")] = False,
    confirm_above: Annotated[int, typer.Option("--confirm-above", min=0, metavar="N", help="Ask for --yes when more than N people would enter at once.")] = 1000,
) -> None:
    """Freeze the draft as a new immutable version and make it live (checked again first).

    Prints how many people already known would enter at once (see docs/journeys.md,
    "Publishing and the past")."""
    _journey_transition("publish", journey_id, workspace, database, from_now=from_now, yes=yes,
                        confirm_above=confirm_above)


@journeys_app.command("pause")
def journeys_pause(journey_id: Annotated[str, typer.Argument(metavar="ID")], workspace: WorkspaceOpt,
                   database: DatabaseOpt = None) -> None:
    """Stop new entries; runs in progress are held where they are."""
    _journey_transition("pause", journey_id, workspace, database)


@journeys_app.command("resume")
def journeys_resume(journey_id: Annotated[str, typer.Argument(metavar="ID")], workspace: WorkspaceOpt,
                    database: DatabaseOpt = None) -> None:
    """Go live again; held runs continue from where they were held."""
    _journey_transition("resume", journey_id, workspace, database)


@journeys_app.command("archive")
def journeys_archive(journey_id: Annotated[str, typer.Argument(metavar="ID")], workspace: WorkspaceOpt,
                     database: DatabaseOpt = None) -> None:
    """Retire the journey for good: nothing enters, runs end, it can no longer be changed."""
    _journey_transition("archive", journey_id, workspace, database)


@journeys_app.command("list")
def journeys_list(
    workspace: WorkspaceOpt,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """The workspace's journeys: status, live version, and whether the draft has unpublished changes."""
    from rich.table import Table

    from nudgeflow.store import journeys as store

    engine = _engine(_settings(database))
    try:
        with engine.connect() as conn:
            store.require_workspace(conn, workspace)
            found = store.list_journeys(conn, workspace)
    except store.JourneyError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(found))
        return
    table = Table("id", "name", "status", "live version", "draft")
    for journey in found:
        draft = "changed since publish" if journey["draft_changed"] and journey["live_version"] else (
            "not published" if not journey["live_version"] else "same as live")
        table.add_row(journey["id"], journey["name"], journey["status"], str(journey["live_version"] or "—"), draft)
    Console().print(table)
    if not found:
        err.print("no journeys yet: `nudgeflow journeys apply FILE… --workspace ID`")


@journeys_app.command("schema")
def journeys_schema() -> None:
    """Print the JSON Schema of the journey format (schema/journey.schema.json is this output)."""
    from nudgeflow.model.journeys import journey_json_schema

    print(json.dumps(journey_json_schema(), indent=2, ensure_ascii=False))


# --- templates ----------------------------------------------------------------------------------


@templates_app.command("apply")
def templates_apply(
    files: Annotated[list[str], typer.Argument(help="NAME.yaml template files, or directories of them.")],
    workspace: WorkspaceOpt,
    database: DatabaseOpt = None,
) -> None:
    """Save templates from files, all or nothing: each changed template becomes a new version."""
    from nudgeflow.content import compiled_templates
    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.store import templates as store

    try:
        loaded = compiled_templates.load_template_files(files)
    except compiled_templates.TemplateFileError as exc:
        raise _fail(f"nothing applied: {exc}") from exc
    if not loaded:
        raise _fail("no template files (.yaml, .yml) found in " + " ".join(files))
    now = to_ms(SystemClock().now())
    engine = _engine(_settings(database))
    lines = []
    try:
        with engine.begin() as conn:
            for name, source in loaded:
                version, new = compiled_templates.save_template(conn, workspace, name, source, now)
                lines.append(f"{name}: version {version}" + ("" if new else " (unchanged)"))
    except (store.TemplateStoreError, ValueError) as exc:
        raise _fail(f"nothing applied: {exc}") from exc
    finally:
        engine.dispose()
    for line in lines:
        print(line)


@templates_app.command("list")
def templates_list(
    workspace: WorkspaceOpt,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """The workspace's templates: channel and current version."""
    from rich.table import Table

    from nudgeflow.store import templates as store

    engine = _engine(_settings(database))
    try:
        with engine.connect() as conn:
            found = store.list_templates(conn, workspace)
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(found))
        return
    table = Table("name", "channel", "version")
    for item in found:
        table.add_row(item["name"], item["channel"], str(item["current_version"]))
    Console().print(table)
    if not found:
        err.print("no templates yet: `nudgeflow templates apply DIR --workspace ID`")


@templates_app.command("render")
def templates_render(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    workspace: WorkspaceOpt,
    profile: Annotated[Optional[str], typer.Option("--profile", help="Render for this profile (id, userId or anonymousId).")] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Render with the built-in sample person, cart and event.")] = False,
    version: Annotated[Optional[int], typer.Option("--version", help="A given version (default: the current one).")] = None,
    html_only: Annotated[bool, typer.Option("--html-only", help="Print only the HTML (for piping to a file or browser).")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Print a rendered template: subject, preheader, text and HTML (push: its fields)."""
    from rich.panel import Panel
    from rich.text import Text

    from nudgeflow.content import compiled_templates
    from nudgeflow.content.sample import sample_context
    from nudgeflow.content.templates import RenderedEmail, TemplateError, render
    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.store import templates as store

    if (profile is None) == (not sample):
        raise _fail("say who to render for: --profile ID or --sample")
    engine = _engine(_settings(database))
    try:
        with engine.connect() as conn:
            compiled = compiled_templates.load_compiled(conn, workspace, name, version)
            context = sample_context() if sample else compiled_templates.preview_context(
                conn, workspace, profile or "", to_ms(SystemClock().now()))
        result = render(compiled, context)
    except store.TemplateStoreError as exc:
        raise _fail(str(exc)) from exc
    except TemplateError as exc:
        raise _fail(f"{name}: {exc}") from exc
    finally:
        engine.dispose()
    if html_only:
        if not isinstance(result, RenderedEmail):
            raise _fail(f"{name} is a push template: it has no HTML")
        sys.stdout.write(result.html)
        return
    console = Console()
    if isinstance(result, RenderedEmail):
        head = Text.assemble(("Subject: ", "bold"), result.subject, "\n", ("Preheader: ", "bold"), result.preheader or "—")
        console.print(Panel(head, title=f"{name} (email)", expand=False))
        if result.text is not None:
            console.print(Panel(Text(result.text), title="text", expand=False))
        else:
            console.print("[dim]text: derived from the HTML when sent[/]")
        console.print(Panel(Text(result.html), title="html", expand=False))
    else:
        fields = [f"Title: {result.title}", f"Body: {result.body}", f"Image: {result.image or '—'}",
                  f"URL: {result.url or '—'}", f"Data: {json.dumps(result.data)}"]
        console.print(Panel(Text("\n".join(fields)), title=f"{name} (push)", expand=False))


CatalogKind = Annotated[str, typer.Argument(metavar="products|places", help="Which catalog.")]


def _catalog_kind(kind: str) -> str:
    if kind not in ("products", "places"):
        raise _fail(f"unknown catalog {kind!r}: products or places", 2)
    return kind


@catalog_app.command("import")
def catalog_import(
    kind: CatalogKind,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="CSV, a JSON array or JSON Lines (- for stdin).")],
    workspace: WorkspaceOpt,
    fmt: Annotated[Optional[str], typer.Option("--format", help="csv, json or jsonl (default: from the file).")] = None,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Upsert products or places by id; bad rows are reported (line or item, reason), the rest imported."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.store import catalog as store
    from nudgeflow.store.journeys import JourneyError, require_workspace

    _catalog_kind(kind)
    if fmt is not None and fmt not in ("csv", "json", "jsonl"):
        raise _fail(f"unknown format {fmt!r}: csv, json or jsonl", 2)
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {file}: {exc}") from exc
    try:
        rows = list(store.parse_rows(text, fmt or store.detect_format(text, file.name)))
    except store.CatalogError as exc:
        raise _fail(f"nothing imported: {exc}") from exc
    engine = _engine(_settings(database))
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                      disable=as_json or not err.is_terminal, transient=True) as progress:
            task = progress.add_task(f"importing {kind}", total=len(rows))
            with engine.begin() as conn:
                require_workspace(conn, workspace)
                report = store.import_rows(conn, workspace, kind, rows, to_ms(SystemClock().now()),
                                           on_progress=lambda done: progress.update(task, completed=done))
    except JourneyError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(report.as_dict()))
    else:
        for problem in report.problems:
            print(f"{file}: {problem.format()}", file=sys.stderr)
        print(f"{_plural(report.rows, 'row')}: {report.imported} imported ({report.created} new, "
              f"{report.updated} updated), {len(report.problems)} rejected")
    if report.problems and not report.imported:
        raise typer.Exit(1)


@catalog_app.command("list")
def catalog_list(
    kind: CatalogKind,
    workspace: WorkspaceOpt,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """Products or places in id order, with the total count."""
    from rich.table import Table

    from nudgeflow.store import catalog as store
    from nudgeflow.store.journeys import JourneyError, require_workspace

    _catalog_kind(kind)
    engine = _engine(_settings(database))
    try:
        with engine.connect() as conn:
            require_workspace(conn, workspace)
            items = store.list_items(conn, workspace, kind, limit=limit)
            total = store.count_items(conn, workspace, kind)
    except JourneyError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(items))
        return
    if kind == "products":
        table = Table("id", "name", "price", "category", "stock")
        for item in items:
            price = "" if item["price"] is None else f"{item['price']:g} {item['currency'] or ''}".strip()
            table.add_row(item["id"], item["name"], price, item["category"] or "",
                          "" if item["stock"] is None else str(item["stock"]))
    else:
        table = Table("id", "name", "latitude", "longitude", "address")
        for item in items:
            table.add_row(item["id"], item["name"], f"{item['latitude']:g}", f"{item['longitude']:g}",
                          item["address"] or "")
    Console().print(table)
    shown = f"{len(items)} of {total}" if total > len(items) else str(total)
    err.print(f"{shown} {kind}" if total else f"no {kind} yet: `nudgeflow catalog import {kind} FILE --workspace ID`")


from nudgeflow.cli_consent import suppressions_app  # noqa: E402 (it uses the helpers above, lazily)
from nudgeflow.cli_settings import settings_app, workspace_set  # noqa: E402 (same)

workspace_app.add_typer(settings_app, name="settings")
workspace_app.command("set")(workspace_set)

app.add_typer(suppressions_app, name="suppressions")
from nudgeflow.cli_profiles import profiles_app  # noqa: E402

app.add_typer(profiles_app, name="profiles")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
