"""Fixtures of the roles tests: a PostgreSQL database of the test's own (several dispatchers
claim the whole outbox, so they cannot share the session's database with other tests'
workspaces), and an SMTP sink on loopback that can hold a message's DATA unanswered."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from nudgeflow.store import database
from tests.channels.smtp_support import start_sink
from tests.roles.support import HoldingSink


@pytest.fixture(scope="session")
def roles_pg_template(postgres_admin_url: str) -> Iterator[str]:
    """A migrated database that each test's own is cloned from (fast)."""
    name = f"nudgeflow_roles_tpl_{uuid.uuid4().hex[:10]}"
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


@pytest.fixture
def pg_db(postgres_admin_url: str, roles_pg_template: str) -> Iterator[str]:
    """The URL of a PostgreSQL database for this test alone."""
    name = f"nudgeflow_roles_{uuid.uuid4().hex[:10]}"
    admin = create_engine(database.normalize_url(postgres_admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{roles_pg_template}"'))
    yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def holding_sink() -> Iterator[HoldingSink]:
    """A real SMTP server on loopback; `hold_after` makes it leave DATA unanswered."""
    s = HoldingSink()
    controller = start_sink(s)
    s.port = controller.port
    yield s
    s.release.set()  # a DATA still held is answered, so the server can stop
    controller.stop()
