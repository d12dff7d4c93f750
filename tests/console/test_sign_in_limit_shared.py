"""The console's sign-in limit across serving processes: two apps on one database (as two API
processes behind a balancer), on SQLite and PostgreSQL, share the failures each counts, so the
limit is 5 per email and 30 per address in all, not per process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.settings import Settings
from nudgeflow.store import console_users
from tests.console.support import PASSWORD, START, sign_in
from tests.support import LiveServer, start_server

ADMIN = "shared-admin@example.com"
VIEWER = "shared-viewer@example.com"


@pytest.fixture
def two_apps(private_database_url: str) -> Iterator[tuple[LiveServer, LiveServer, VirtualClock]]:
    settings = Settings(
        database_url=private_database_url,
        sqlite_synchronous="NORMAL",
        ingest_rate_per_second=0,
        engine_enabled=False,
    )
    clock = VirtualClock(START)
    one = start_server(settings, clock)
    two = start_server(settings, clock)  # the same database, the same clock
    try:
        with one.state.engine.begin() as conn:
            conn.execute(text("DELETE FROM sign_in_failures"))  # the module's database: its own
        ws = one.workspace("shared").workspace_id
        with one.state.engine.begin() as conn:
            for email, role in ((ADMIN, console_users.ADMIN), (VIEWER, console_users.VIEWER)):
                console_users.create_user(conn, ws, email, role, PASSWORD, to_ms(clock.now()))
        yield one, two, clock
    finally:
        one.stop()
        two.stop()


def test_the_sign_in_limit_holds_across_serving_processes(
    two_apps: tuple[LiveServer, LiveServer, VirtualClock],
) -> None:
    one, two, clock = two_apps
    with one.client() as first, two.client() as second:
        for client in (first, second, first, second, first):
            assert sign_in(client, email=ADMIN, password="wrong password").status_code == 401
        for client in (second, first):  # the sixth try, on either, even with the right password
            limited = sign_in(client, email=ADMIN, password=PASSWORD)
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        # Per address as well: 30 failures in all, spread over the two, then nobody from there.
        with two.client() as third:  # another email from that address still may (6 of its 30)
            assert sign_in(third, email=VIEWER, password=PASSWORD).status_code == 303
        for n in range(30 - 5):
            client = (first, second)[n % 2]
            assert sign_in(client, email=f"guess{n}@example.com", password="wrong").status_code == 401
        for client in (first, second):
            assert sign_in(client, email=VIEWER, password=PASSWORD).status_code == 429
    clock.advance(timedelta(minutes=15, seconds=1))
    with two.client() as second:
        assert sign_in(second, email=ADMIN, password=PASSWORD).status_code == 303
