"""The engine lock on SQLite (a locked file) and PostgreSQL (an advisory lock), and the
reclaiming of a dead engine's leases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from sqlalchemy import insert, select

from nudgeflow.store import engine_lock
from nudgeflow.store.engine_lock import EngineLocked
from nudgeflow.store.schema import outbox

NOW_MS = 1_767_268_800_000

HOLD = """
import sys
from nudgeflow.store import database, engine_lock
lock = engine_lock.acquire(database.create_db_engine(sys.argv[1]), 1767268800000)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_holder_is_refused_with_the_first_ones_host_pid_and_start(engine: Any) -> None:
    lock = engine_lock.acquire(engine, NOW_MS)
    try:
        with pytest.raises(EngineLocked) as refused:
            engine_lock.acquire(engine, NOW_MS + 5)
        holder = refused.value.holder
        assert holder is not None
        assert (holder.pid, holder.started_at_ms) == (os.getpid(), NOW_MS)
        assert "started 2026-01-01T12:00:00Z" in str(refused.value)
    finally:
        lock.release()
    again = engine_lock.acquire(engine, NOW_MS + 10)  # released: free again
    again.release()


def test_the_lock_dies_with_its_process(engine: Any, database_url: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, database_url], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        with pytest.raises(EngineLocked) as refused:
            engine_lock.acquire(engine, NOW_MS)
        assert refused.value.holder is not None and refused.value.holder.pid == holder.pid
        holder.send_signal(signal.SIGKILL)  # no release, no goodbye
        holder.wait(30)
        deadline = time.monotonic() + 30
        while True:  # PostgreSQL frees it when it sees the connection close
            try:
                lock = engine_lock.acquire(engine, NOW_MS)
                break
            except EngineLocked:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(30)


def test_the_sqlite_lock_file_sits_beside_the_database(tmp_path: Any) -> None:
    from nudgeflow.store import database

    db = database.create_db_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    lock = engine_lock.acquire(db, NOW_MS)
    try:
        assert engine_lock.lock_file_path(db) == str(tmp_path / "shop.db.engine.lock")
        assert f'"pid": {os.getpid()}' in (tmp_path / "shop.db.engine.lock").read_text()
    finally:
        lock.release()
        db.dispose()


def _row(key: str, status: str, next_ms: int, leased_until: int | None) -> dict[str, Any]:
    return dict(
        workspace_id="ws_lease",
        idempotency_key=key,
        profile_id="prf_lease",
        run_id="r",
        journey_id="j",
        journey_version=1,
        step="s",
        channel="email",
        template="t",
        variant=None,
        marketing=1,
        payload="{}",
        status=status,
        attempts=1,
        next_attempt_at_ms=next_ms,
        created_at_ms=NOW_MS,
        updated_at_ms=NOW_MS,
        leased_until_ms=leased_until,
    )


def test_reclaim_makes_only_running_leases_due_now(engine: Any) -> None:
    later = NOW_MS + 300_000
    rows = [
        _row("lease:leased", "pending", later, later),  # claimed, never recorded: reclaimed
        _row("lease:retry", "pending", NOW_MS + 60_000, later),  # recorded since (backoff): left
        _row("lease:ended", "pending", NOW_MS - 1, NOW_MS - 1),  # lease over: due already
        _row("lease:sent", "sent", later, later),  # done
        _row("lease:never", "pending", later, None),  # scheduled, never leased
    ]
    with engine.begin() as conn:
        conn.execute(insert(outbox), rows)
        assert engine_lock.reclaim_leases(conn, "pending", NOW_MS) == 1
    with engine.connect() as conn:
        got = dict(
            conn.execute(
                select(outbox.c.idempotency_key, outbox.c.next_attempt_at_ms).where(outbox.c.workspace_id == "ws_lease")
            ).all()
        )
    assert got == {
        "lease:leased": NOW_MS,
        "lease:retry": NOW_MS + 60_000,
        "lease:ended": NOW_MS - 1,
        "lease:sent": later,
        "lease:never": later,
    }
    with engine.begin() as conn:
        conn.execute(outbox.delete().where(outbox.c.workspace_id == "ws_lease"))
