"""Fixtures of the store tests: databases of their own (empty, or a SQLite file for the WAL,
or one the privacy seeding may fill), two servers on one database, a group committer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from nudgeflow.core.clock import VirtualClock
from nudgeflow.settings import Settings
from nudgeflow.store import database
from nudgeflow.store.group_commit import GroupCommitter
from tests.store.commit_recorder import Commits
from tests.support import BACKENDS, LiveServer, start_server


@pytest.fixture
def empty_postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A brand-new PostgreSQL database with nothing in it, dropped afterwards."""
    name = f"nudgeflow_empty_{uuid.uuid4().hex[:10]}"
    admin = create_engine(database.normalize_url(postgres_admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'new' / 'nudgeflow.db'}"
    return str(request.getfixturevalue("empty_postgres_url"))


@pytest.fixture
def new_engine(empty_url: str) -> Iterator[Any]:
    engine = database.create_db_engine(empty_url, sqlite_synchronous="NORMAL")
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Any]:
    """A SQLite file (tmp_path/wal.db) with one table, t, for the WAL checkpointer's tests."""
    engine = database.create_db_engine(f"sqlite:///{tmp_path / 'wal.db'}", sqlite_synchronous="NORMAL")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def fresh_engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A database of its own, migrated: the seeding writes into every table a person touches
    (engine cursors, the dev inbox), which must not leak into other tests' shared one."""
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('privacy')) / 'privacy.db'}"
        engine = database.create_db_engine(url, sqlite_synchronous="NORMAL")
        database.upgrade(engine)
        yield engine
        engine.dispose()
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    name = f"nudgeflow_privacy_{uuid.uuid4().hex[:10]}"
    admin = create_engine(database.normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = database.create_db_engine(make_url(admin_url).set(database=name).render_as_string(hide_password=False))
    database.upgrade(engine)
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def two_servers(settings: Settings) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two processes' worth of servers on one database: the engine's, and an ingest-only one."""
    clock = VirtualClock()
    main = start_server(settings, clock)
    ingest_only = start_server(settings.with_(engine_enabled=False), clock)
    yield main, ingest_only
    ingest_only.stop()
    main.stop()


@pytest.fixture
def commits() -> Commits:
    return Commits()


@pytest.fixture
def committer(engine: Any, commits: Commits) -> Iterator[GroupCommitter]:
    c = GroupCommitter(engine, VirtualClock(), max_events=5000, on_commit=commits)
    c.start()
    yield c
    c.stop()
