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

DatabaseOpt = Annotated[
    Optional[str],
    typer.Option("--database", envvar="NUDGEFLOW_DATABASE_URL", help="sqlite:///path or postgresql://… (default: ./nudgeflow.db)"),
]

err = Console(stderr=True)


def _settings(database: str | None, **overrides: object) -> Settings:
    return Settings.from_env(database_url=database, **overrides)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _engine(settings: Settings, migrate_sqlite: bool = True):  # type: ignore[no-untyped-def]
    from nudgeflow.store import database
    from nudgeflow.web.app import prepare_database

    engine = database.create_db_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        if migrate_sqlite:
            prepare_database(settings, engine)
    except database.DatabaseError as exc:
        raise _fail(str(exc)) from exc
    except Exception as exc:  # a server that does not answer, a file we cannot open
        raise _fail(f"cannot open the database: {exc}") from exc
    return engine


@app.command()
def serve(
    database: DatabaseOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_requests: Annotated[bool, typer.Option(help="Log one line per request.")] = False,
) -> None:
    """Run the HTTP API (ingest, admin, health, metrics)."""
    import uvicorn

    from nudgeflow.logs import configure_logging
    from nudgeflow.store.database import DatabaseError
    from nudgeflow.web.app import create_app

    settings = _settings(database, host=host, port=port, log_requests=log_requests)
    configure_logging(settings.log_level)
    try:
        application = create_app(settings)
    except DatabaseError as exc:
        raise _fail(str(exc)) from exc
    # Everything loaded so far lives as long as the process: keep the cyclic collector from
    # walking it again on every full collection (the longest pauses a busy server takes).
    gc.collect()
    gc.freeze()
    uvicorn.run(application, host=host, port=port, log_config=None, access_log=False, lifespan="on")


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


@app.command("import")
def import_events(
    file: Annotated[str, typer.Argument(help="A JSON Lines file of Segment messages, or - for standard input.")],
    write_key: Annotated[str, typer.Option("--write-key", envvar="NUDGEFLOW_WRITE_KEY", help="The workspace's write key.")],
    database: DatabaseOpt = None,
    batch_size: Annotated[int, typer.Option(help="Events per transaction.")] = 1000,
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
def demo(
    users: Annotated[int, typer.Option(help="How many people to simulate.")] = 300,
    seed: Annotated[int, typer.Option(help="Random seed for the generated traffic.")] = 7,
    database: DatabaseOpt = None,
) -> None:
    """Generate shop and app traffic, ingest it over HTTP, and show what was stored."""
    from nudgeflow.demo import DemoError, run_demo
    from nudgeflow.store.database import DatabaseError

    try:
        run_demo(users=users, seed=seed, database_url=database)
    except (DemoError, DatabaseError) as exc:
        raise _fail(str(exc)) from exc


def main() -> None:
    app()


if __name__ == "__main__":
    main()
