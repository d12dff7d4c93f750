"""The WAL checkpointer: committed pages reach the database file without the writer's help."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from nudgeflow.store.checkpoint import WalCheckpointer

DEADLINE = 30  # seconds; the checkpointer runs every few milliseconds here


def _fill(engine: Any, rows: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t (body) VALUES (:body)"), [{"body": "x" * 1000} for _ in range(rows)])


def test_applies_to_sqlite_files_only(sqlite_engine: Any) -> None:
    assert WalCheckpointer.applies_to(sqlite_engine)
    memory = create_engine("sqlite:///:memory:")
    assert not WalCheckpointer.applies_to(memory)
    memory.dispose()


def test_commits_stay_in_the_log_below_the_threshold_without_a_checkpointer(sqlite_engine: Any, tmp_path: Path) -> None:
    before = (tmp_path / "wal.db").stat().st_size
    _fill(sqlite_engine, 200)  # ~60 pages, far below WAL_AUTOCHECKPOINT_PAGES
    assert (tmp_path / "wal.db").stat().st_size == before
    assert (tmp_path / "wal.db-wal").stat().st_size > 200 * 1000


def test_the_checkpointer_copies_committed_pages_into_the_database_file(sqlite_engine: Any, tmp_path: Path) -> None:
    before = (tmp_path / "wal.db").stat().st_size
    checkpointer = WalCheckpointer(sqlite_engine, interval=0.005)
    checkpointer.start()
    try:
        _fill(sqlite_engine, 200)
        deadline = time.monotonic() + DEADLINE
        while (tmp_path / "wal.db").stat().st_size < before + 200 * 1000:
            assert time.monotonic() < deadline, "the checkpointer never copied the log into the database"
            time.sleep(0.01)
        # The writer goes on meanwhile: a checkpoint never holds it up.
        _fill(sqlite_engine, 10)
    finally:
        checkpointer.stop()
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 210


def test_stop_is_idempotent_and_start_again_works(sqlite_engine: Any) -> None:
    checkpointer = WalCheckpointer(sqlite_engine, interval=0.005)
    checkpointer.stop()
    checkpointer.start()
    checkpointer.start()
    checkpointer.stop()
    checkpointer.stop()
    checkpointer.start()
    checkpointer.stop()
