"""Fixtures of the roles tests: a PostgreSQL database of the test's own (several dispatchers
claim the whole outbox, so they cannot share the session's database with other tests'
workspaces), and an SMTP sink on loopback that can hold a message's DATA unanswered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.channels.smtp_support import start_sink
from tests.pg_databases import own_database
from tests.roles.support import HoldingSink


@pytest.fixture
def pg_db(postgres_admin_url: str, pg_template: str) -> Iterator[str]:
    """The URL of a PostgreSQL database for this test alone."""
    with own_database(postgres_admin_url, "nudgeflow_roles", template=pg_template) as (_name, url):
        yield url


@pytest.fixture
def holding_sink() -> Iterator[HoldingSink]:
    """A real SMTP server on loopback; `hold_after` makes it leave DATA unanswered."""
    s = HoldingSink()
    controller = start_sink(s)
    s.port = controller.port
    yield s
    s.release.set()  # a DATA still held is answered, so the server can stop
    controller.stop()
