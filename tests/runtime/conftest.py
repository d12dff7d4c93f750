"""Fixtures of the runtime tests: a fresh database per test, a harness on it, a live server on it.

The runtime is process-wide (one cursor over the whole event log, all timers, the whole
outbox), so unlike most tests these cannot share the session's PostgreSQL database with
other tests' workspaces: each PostgreSQL test gets a fresh database cloned from a migrated
template (fast), each SQLite test a fresh file.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from nudgeflow.core.clock import VirtualClock
from nudgeflow.settings import Settings
from nudgeflow.store import database
from tests.runtime.harness import Harness
from tests.support import LiveServer, start_server


@pytest.fixture(scope="session")
def pg_template(postgres_admin_url: str) -> Iterator[str]:
    name = f"nudgeflow_rt_tpl_{uuid.uuid4().hex[:10]}"
    admin = create_engine(database.normalize_url(postgres_admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    eng = database.create_db_engine(url)
    database.upgrade(eng)
    eng.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def rt_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database for this test alone, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'runtime.db'}"
        eng = database.create_db_engine(url, sqlite_synchronous="NORMAL")
        database.upgrade(eng)
        eng.dispose()
        yield url
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    template = request.getfixturevalue("pg_template")
    name = f"nudgeflow_rt_{uuid.uuid4().hex[:10]}"
    admin = create_engine(database.normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def h(rt_url: str) -> Iterator[Harness]:
    harness = Harness.open(rt_url, VirtualClock())
    yield harness
    harness.close()


@pytest.fixture
def server(rt_url: str) -> Iterator[tuple[LiveServer, VirtualClock]]:
    """A live server with its runtime on this test's own database, on a virtual clock."""
    clock = VirtualClock()
    settings = Settings(database_url=rt_url, sqlite_synchronous="NORMAL", ingest_rate_per_second=0, engine_poll_ms=50)
    srv = start_server(settings, clock)
    yield srv, clock
    srv.stop()
