"""Fixtures of the partitioned engine worker tests: a PostgreSQL database of each test's own
(the leases, positions and heads are the database's, not a workspace's), a harness on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nudgeflow.core.clock import VirtualClock
from tests.pg_databases import own_database
from tests.runtime.harness import Harness


@pytest.fixture
def pg_url(postgres_admin_url: str, pg_template: str) -> Iterator[str]:
    with own_database(postgres_admin_url, "nudgeflow_parts", template=pg_template) as (_, url):
        yield url


@pytest.fixture
def h(pg_url: str) -> Iterator[Harness]:
    harness = Harness.open(pg_url, VirtualClock())
    yield harness
    harness.close()
