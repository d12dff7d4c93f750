"""`nudgeflow db upgrade`: the database schema."""

from __future__ import annotations

import typer

from nudgeflow.cli.common import DatabaseOpt, err, fail, load_settings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(database: DatabaseOpt = None) -> None:
    """Apply schema migrations (Alembic) up to the latest."""
    from nudgeflow.store import database as db

    settings = load_settings(database)
    engine = db.create_db_engine(settings.database_url)
    try:
        before = db.current_revision(engine)
        db.upgrade(engine)
        after = db.current_revision(engine)
    except Exception as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    err.print(f"schema: {before or 'empty'} -> {after}")
