"""An erasure while an engine is deciding the person, on PostgreSQL: the engine's batch read
the person before the erasure and writes after it; what it writes must not outlive the
erasure (a journey run, a message, a timer of someone erased).

Each test holds open, in one transaction, what the engine does in a batch: take its lock
(the single engine's events cursor; a partition worker's lease fence; the single engine's
claim of due timers), then write new rows for the person as a decision does. An erasure
runs meanwhile in another transaction; the engine's transaction then commits. SQLite has
one writer: an erasure and a batch cannot overlap there.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from nudgeflow.store import engine_state, partition_leases, privacy
from tests.support import make_workspace

NOW = 1_800_000_000_000
WAIT_S = 30


def _person(engine: Engine, name: str) -> tuple[str, str]:
    ws = make_workspace(engine, f"erasure-race-{name}").workspace_id
    pid = f"p-race-{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO profiles (id, workspace_id, user_id, traits, created_at_ms, updated_at_ms)"
                " VALUES (:p, :w, 'u', '{}', 1, 1)"
            ),
            {"p": pid, "w": ws},
        )
        conn.execute(
            sa.text(
                'INSERT INTO timers (profile_id, "key", workspace_id, due_at_ms, payload, partition)'
                " VALUES (:p, 'wait', :w, :due, '{}', 0)"
            ),
            {"p": pid, "w": ws, "due": NOW - 1},
        )
    return ws, pid


def _decide(conn: Connection, ws: str, pid: str) -> None:
    """What a decision on the person writes: a new run, its message, a new timer."""
    run = f"run-{uuid.uuid4().hex[:8]}"
    conn.execute(
        sa.text(
            "INSERT INTO journey_runs (id, workspace_id, journey_id, version, profile_id, status, step, holdout,"
            " entered_at_ms, updated_at_ms) VALUES (:r, :w, 'j', 1, :p, 'active', 'send', 0, :t, :t)"
        ),
        {"r": run, "w": ws, "p": pid, "t": NOW},
    )
    conn.execute(
        sa.text(
            "INSERT INTO outbox (workspace_id, idempotency_key, profile_id, run_id, journey_id, journey_version,"
            " step, channel, template, marketing, payload, status, attempts, next_attempt_at_ms, created_at_ms,"
            " updated_at_ms) VALUES (:w, :k, :p, :r, 'j', 1, 'send', 'email', 't', :m, '{}', 'pending', 0,"
            " :t, :t, :t)"
        ),
        {"w": ws, "k": f"{run}/send/0", "p": pid, "r": run, "t": NOW, "m": 1},
    )
    conn.execute(
        sa.text(
            'INSERT INTO timers (profile_id, "key", workspace_id, due_at_ms, payload, partition)'
            " VALUES (:p, :k, :w, :due, '{}', 0)"
        ),
        {"p": pid, "k": f"next-{run}", "w": ws, "due": NOW + 60_000},
    )


def _erase_during(engine: Engine, ws: str, pid: str, batch: Callable[[Connection], Any]) -> dict[str, int]:
    """Run `batch` in an open transaction, erase the person in another, commit the batch once
    the erasure waits for it (or has finished), and count the person's rows left."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: an erasure cannot overlap an engine batch")
    conn = engine.connect()
    tx = conn.begin()
    batch(conn)
    done = threading.Event()
    failed: list[BaseException] = []

    def erase() -> None:
        try:
            with engine.begin() as other:
                privacy.erase_person(other, ws, pid, NOW)
        except BaseException as exc:  # handed to the test
            failed.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=erase)
    thread.start()
    with engine.connect() as watcher:
        for _ in range(100):
            waiting = watcher.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).scalar()
            if waiting or done.wait(0.05):
                break
    tx.commit()
    conn.close()
    assert done.wait(WAIT_S)
    thread.join(WAIT_S)
    assert failed == []
    with engine.connect() as check:
        return {
            table: int(
                check.execute(sa.text(f"SELECT count(*) FROM {table} WHERE profile_id = :p"), {"p": pid}).scalar_one()
            )
            for table in ("journey_runs", "outbox", "timers", "profile_state")
        }


NOTHING = {"journey_runs": 0, "outbox": 0, "timers": 0, "profile_state": 0}


def test_an_erasure_waits_for_the_single_engines_event_batch(fresh_engine: Engine) -> None:
    ws, pid = _person(fresh_engine, "events")

    def batch(conn: Connection) -> None:
        engine_state.read_cursor_state(conn)  # what process_events locks first
        _decide(conn, ws, pid)

    assert _erase_during(fresh_engine, ws, pid, batch) == NOTHING


def test_an_erasure_waits_for_the_single_engines_timers(fresh_engine: Engine) -> None:
    ws, pid = _person(fresh_engine, "timers")

    def batch(conn: Connection) -> None:
        claimed = engine_state.claim_due_timers(conn, NOW, 1000)  # what fire_timers locks first
        assert pid in {row[0] for row in claimed}
        _decide(conn, ws, pid)

    assert _erase_during(fresh_engine, ws, pid, batch) == NOTHING


def test_an_erasure_waits_for_a_partition_workers_batch(fresh_engine: Engine) -> None:
    ws, pid = _person(fresh_engine, "partition")
    with fresh_engine.begin() as conn:
        partition_leases.register_worker(conn, "w-race", host="h", pid=1, now_ms=NOW)
        partition_leases.claim(conn, "w-race", 2, NOW, 60_000)
        epochs = partition_leases.owned(conn, "w-race")

    def batch(conn: Connection) -> None:
        partition_leases.fence(conn, 1, epochs[1])  # what a worker's batch does first
        _decide(conn, ws, pid)

    assert _erase_during(fresh_engine, ws, pid, batch) == NOTHING
