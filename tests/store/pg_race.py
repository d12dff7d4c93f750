"""Two transactions that write the same new row at once, on PostgreSQL: the first holds its
insert open while the second runs into it and waits; then the first commits."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, Engine

WAIT_S = 30


def second_after_first(
    engine: Engine, first: Callable[[Connection], Any], second: Callable[[Connection], Any], table: str
) -> Any:
    """Run `first` in an open transaction, then `second` in another, which must wait for a lock
    on `table` (checked in pg_stat_activity, a bounded wait); commit the first, and return
    what the second returned, or the exception it raised."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: two transactions cannot both find no row")
    conn = engine.connect()
    tx = conn.begin()
    first(conn)
    done = threading.Event()
    results: list[Any] = []

    def run_second() -> None:
        try:
            with engine.begin() as other:
                results.append(second(other))
        except BaseException as exc:  # handed to the test
            results.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run_second)
    thread.start()
    with engine.connect() as watcher:
        for _ in range(600):
            waiting = watcher.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                f" AND wait_event_type = 'Lock' AND query LIKE '%%{table}%%'"
            ).scalar()
            if waiting or done.is_set():
                break
            done.wait(0.05)
    assert not done.is_set(), f"the second transaction did not wait for the first: {results}"
    tx.commit()
    conn.close()
    assert done.wait(WAIT_S)
    thread.join(WAIT_S)
    return results[0]
