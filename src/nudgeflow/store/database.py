"""Engines for SQLite and PostgreSQL, and applying migrations."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from nudgeflow.errors import StoreError
from nudgeflow.settings import Settings
from nudgeflow.store import secret_box

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseError(StoreError, RuntimeError):
    """The database cannot be used: a bad URL, no server, or a schema that is not ours."""


def normalize_url(url: str) -> str:
    # Users write postgresql://; SQLAlchemy would pick psycopg2 for that, we ship psycopg 3.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(url: str) -> bool:
    return normalize_url(url).startswith("sqlite")


# Pages the write-ahead log may hold before the committing connection checkpoints it
# (SQLite's default is 1,000). The server checkpoints in the background and leaves only a
# short remainder to this; see store/checkpoint.py.
WAL_AUTOCHECKPOINT_PAGES = 4000
# The most page cache one connection may hold, in KiB; it only grows as pages are used.
SQLITE_CACHE_KIB = 32 * 1024


def _keep_null(value: None) -> None:
    return value


def _bind_null_directly() -> None:
    """Python 3.11's sqlite3 binds int, float, str and bytes directly but sends None through
    its adapter lookup, which misses and then raises and clears two AttributeErrors: ~0.2 us
    a None. The writers bind about ten a fired timer (a run's unset columns, an outbox row's),
    6 % of the instructions of firing one (benchmarks/RESULTS.md, issue 18 item 4). An adapter
    registered for None is found at once and binds the same NULL. Registered when a SQLite
    engine is made (the registry is the sqlite3 module's, process-wide), not at import."""
    sqlite3.register_adapter(type(None), _keep_null)


def _sqlite_pragmas(synchronous: str) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        # A page cache that holds the event indexes (SQLite's default is 2 MiB): each
        # event lands on random leaf pages of its message-id and profile indexes.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


def create_db_engine(
    url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 8, secret_key: str | None = None
) -> Engine:
    """An engine for `url`, carrying the box that seals workspace secrets (store/secret_box.py):
    `secret_key` (NUDGEFLOW_SECRET_KEY) when given, else a SQLite file's key file."""
    engine = _create_engine(url, sqlite_synchronous=sqlite_synchronous, pool_size=pool_size)
    sqlite_file = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    engine.update_execution_options(**{secret_box.OPTION: secret_box.SecretBox.for_database(sqlite_file, secret_key)})
    return engine


def _create_engine(url: str, *, sqlite_synchronous: str, pool_size: int) -> Engine:
    if sqlite_synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise DatabaseError(f"sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA, not {sqlite_synchronous!r}")
    try:
        parsed = make_url(normalize_url(url))
    except Exception as exc:  # sqlalchemy raises ArgumentError with a message worth keeping
        raise DatabaseError(f"invalid database URL: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file::memory:"):
            # Each pooled connection would hold a database of its own: what ingest stored,
            # the engine would never see.
            raise DatabaseError(
                "an in-memory SQLite database cannot be served: give a file, sqlite:///path/to/nudgeflow.db"
            )
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        _bind_null_directly()
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=pool_size,
            max_overflow=pool_size,
            # The writer checks a connection out per commit: LIFO hands it back the one it
            # just used, whose page cache is still valid, instead of rotating through the
            # pool (each SQLite connection drops its cache when another one has written).
            pool_use_lifo=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas(sqlite_synchronous.upper()))
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    raise DatabaseError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql://")


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision`. Safe to run again: applied ones are skipped."""
    try:
        command.upgrade(_alembic_config(engine), revision)
    except Exception as exc:
        raise DatabaseError(f"migration failed: {exc}") from exc


def downgrade(engine: Engine, revision: str) -> None:
    """Undo migrations down to `revision` (tests of a migration's data, and operators going back)."""
    try:
        command.downgrade(_alembic_config(engine), revision)
    except Exception as exc:
        raise DatabaseError(f"migration failed: {exc}") from exc


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def ping(engine: Engine) -> None:
    """One round trip to the database (the health check); raises if it is unavailable."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def prepare_database(settings: Settings, engine: Engine) -> None:
    """Migrate SQLite by itself (it is ours alone); ask for an explicit upgrade of PostgreSQL."""
    if is_current(engine):
        return
    if settings.is_sqlite and settings.auto_migrate:
        upgrade(engine)
        return
    raise DatabaseError(
        f"the database schema is at {current_revision(engine) or 'nothing'}, "
        f"not {head_revision()}: run `nudgeflow db upgrade` first"
    )
