"""PostgreSQL databases of a test's (or a session's, a module's) own, made and dropped here.

Most tests share the session's database and stay apart by workspace. Tests of what is not
per workspace (the runtime's cursor, the whole outbox, partition leases) need a database
of their own: cloned from a migrated template when there are many (CREATE DATABASE ...
TEMPLATE is a file copy), or migrated when there is one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from nudgeflow.store import database


@contextmanager
def own_database(admin_url: str, prefix: str, *, template: str | None = None) -> Iterator[tuple[str, str]]:
    """(name, url) of a new database: a copy of `template` (a database name), or migrated
    to the newest schema without one. Dropped, whoever is still connected, on the way out."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(database.normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        if template is None:
            engine = database.create_db_engine(url)
            database.upgrade(engine)
            engine.dispose()
        yield name, url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
