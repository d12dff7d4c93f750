"""Failed console sign-ins counted in the database (store/sign_in_failures.py), on SQLite and
PostgreSQL: the limit's arithmetic, the window sliding, old rows deleted, keys not in clear."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from nudgeflow.store import database, sign_in_failures

WINDOW = 15 * 60 * 1000
T0 = 1_780_000_000_000


@pytest.fixture
def engine(private_database_url: str) -> Iterator[Any]:
    """The module's own database (the table is not per workspace), emptied first."""
    eng = database.create_db_engine(private_database_url, sqlite_synchronous="NORMAL")
    with eng.begin() as conn:
        conn.execute(text("DELETE FROM sign_in_failures"))
    yield eng
    eng.dispose()


def test_a_key_waits_once_at_its_limit_until_its_oldest_counted_failure_leaves(engine: Any) -> None:
    limits = {"email:a@example.com": 3, "address:10.0.0.1": 5}
    for minute in (0, 1, 2):
        with engine.begin() as conn:
            assert sign_in_failures.retry_after_ms(conn, limits, WINDOW, T0 + minute * 60_000) == 0
            sign_in_failures.begin(conn, limits, WINDOW, T0 + minute * 60_000)
    with engine.connect() as conn:
        # The third failure (at minute 0 the first of the 3) leaves the window at minute 15.
        assert sign_in_failures.retry_after_ms(conn, limits, WINDOW, T0 + 3 * 60_000) == 12 * 60_000
        assert sign_in_failures.retry_after_ms(conn, limits, WINDOW, T0 + WINDOW - 60_000) == 60_000
        assert sign_in_failures.retry_after_ms(conn, limits, WINDOW, T0 + WINDOW) == 0
        # Another email from the same address is not held (3 of the address's 5).
        other = {"email:b@example.com": 3, "address:10.0.0.1": 5}
        assert sign_in_failures.retry_after_ms(conn, other, WINDOW, T0 + 3 * 60_000) == 0
        stored = {row[0] for row in conn.execute(text("SELECT key_digest FROM sign_in_failures"))}
    assert stored == {sign_in_failures.key_digest(k) for k in limits}
    assert not any("example.com" in digest or "10.0.0.1" in digest for digest in stored)


def test_failures_past_the_window_are_deleted_as_new_ones_are_written(engine: Any) -> None:
    with engine.begin() as conn:
        sign_in_failures.begin(conn, ["email:old@example.com"], WINDOW, T0)
        sign_in_failures.begin(conn, ["email:new@example.com"], WINDOW, T0 + WINDOW - 1)
    with engine.begin() as conn:
        sign_in_failures.begin(conn, ["address:10.0.0.2"], WINDOW, T0 + WINDOW)
        left = sorted(row[0] for row in conn.execute(text("SELECT failed_at_ms FROM sign_in_failures")))
    assert left == [T0 + WINDOW - 1, T0 + WINDOW]
