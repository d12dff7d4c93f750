"""What every command group uses: the shared options, the error console, settings, the database.

Start-up cost: every command, `--help` included, imports every module of cli/ and Typer
builds every command from its signature. So a module imports at its top only what is cheap
(typer, rich, the settings, model's plain modules), and the types in command signatures are
among those; helpers' annotations that mypy alone reads import under TYPE_CHECKING. store/
(SQLAlchemy, Alembic), content/ (Liquid, MJML), the journey model (pydantic, YAML), channels,
ingest, runtime and web are imported inside the command bodies that use them: for their
import time, not to dodge a cycle (cli/ may import everything). tests/cli/test_cli_imports.py
checks what a start loads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from nudgeflow.core.clock import SystemClock, to_ms
from nudgeflow.settings import ConfigError, Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database", envvar="NUDGEFLOW_DATABASE_URL", help="sqlite:///path or postgresql://… (default: ./nudgeflow.db)"
    ),
]
WorkspaceOpt = Annotated[
    str, typer.Option("--workspace", "-w", envvar="NUDGEFLOW_WORKSPACE", help="The workspace id (ws_…).")
]

err = Console(stderr=True)


def load_settings(database: str | None, **overrides: object) -> Settings:
    try:
        return Settings.from_env(None, database_url=database, **overrides)
    except ConfigError as exc:  # names the variable; a usage error, not a crash
        raise fail(str(exc), 2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print the error; the caller raises what this returns (`raise fail(...)`)."""
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def open_engine(settings: Settings, migrate_sqlite: bool = True) -> Engine:
    from nudgeflow.store import database  # SQLAlchemy and Alembic: loaded by the commands that open one

    engine = database.create_db_engine(
        settings.database_url, sqlite_synchronous=settings.sqlite_synchronous, secret_key=settings.secret_key
    )
    try:
        if migrate_sqlite:
            database.prepare_database(settings, engine)
    except database.DatabaseError as exc:
        raise fail(str(exc)) from exc
    except Exception as exc:  # a server that does not answer, a file we cannot open
        raise fail(f"cannot open the database: {exc}") from exc
    return engine


def open_workspace(database: str | None, workspace_id: str) -> Engine:
    """An engine on the database once the workspace is known to exist (else exit 1 naming it):
    what every command on one workspace starts with."""
    from nudgeflow.store import journeys as journey_store  # SQLAlchemy: as in open_engine

    engine = open_engine(load_settings(database))
    try:
        with engine.connect() as conn:
            journey_store.require_workspace(conn, workspace_id)
    except journey_store.JourneyError as exc:
        engine.dispose()
        raise fail(str(exc)) from exc
    return engine


def now_ms() -> int:
    """The wall clock, for commands (the server and the engine take an injected clock)."""
    return to_ms(SystemClock().now())


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
