"""Fired timers are written by the rowids they were claimed with on SQLite (issue 18 item 4),
by key on PostgreSQL, and the rows that result are the same: a fired timer re-armed by its
decision has its new due time, the others are gone, and a claimed timer that a merge moved
to another person meanwhile is left to that person while the fired key is written by key."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection

from nudgeflow.core.effects import ScheduleTimer
from nudgeflow.model.partitions import partition_of
from nudgeflow.store import engine_state, sql
from nudgeflow.store.effects_writer import EffectsBatch

KEY = "run:run_1"


def arm(conn: Connection, wsid: str, profile_id: str, due_ms: int) -> None:
    m = sql.mark(conn)
    conn.exec_driver_sql(
        'INSERT INTO timers (profile_id, "key", workspace_id, due_at_ms, payload, partition)'
        f" VALUES ({m}, {m}, {m}, {m}, {m}, {m})",
        (profile_id, KEY, wsid, due_ms, '{"kind": "step"}', partition_of(wsid, profile_id)),
    )


def claimed(conn: Connection, wsid: str, now_ms: int) -> list[Any]:
    """The workspace's due timers as the engine claims them. On PostgreSQL, whose database the
    session's tests share, read without claiming (and locking) other tests' timers."""
    if sql.is_postgres(conn):
        rows = conn.exec_driver_sql(
            'SELECT profile_id, "key", workspace_id, due_at_ms, payload FROM timers'
            " WHERE workspace_id = %s AND due_at_ms <= %s ORDER BY due_at_ms",
            (wsid, now_ms),
        ).all()
    else:
        rows = [r for r in engine_state.claim_due_timers(conn, now_ms, 1000) if r[2] == wsid]
        assert rows and all(len(r) == 6 for r in rows)  # with their rowids
    return list(rows)


def fire(conn: Connection, wsid: str, rows: list[Any], rearm: dict[str, int], now_ms: int) -> None:
    """What decide_timers does with the rows: each fired timer deleted, then those in `rearm`
    armed again under the same key, due at the time given."""
    batch = EffectsBatch()
    for profile_id, key, _ws, _due, _payload, *rowid in rows:
        batch.delete_timer(profile_id, key, rowid[0] if rowid else None)
        if profile_id in rearm:
            again = ScheduleTimer(key, rearm[profile_id], {"kind": "step", "again": True})
            batch.add(wsid, profile_id, [again], now_ms)
    batch.write(conn, now_ms)


def rowid_writes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each write of fired timers by rowid answered (True: every row was where it was
    claimed, none left to write by key); empty when the path was not taken (PostgreSQL)."""
    answers: list[bool] = []
    write = engine_state.write_fired_timers

    def spy(conn: Connection, rearmed: Any, deleted: Any) -> bool:
        answers.append(write(conn, rearmed, deleted))
        return answers[-1]

    monkeypatch.setattr(engine_state, "write_fired_timers", spy)
    return answers


def timers_of(conn: Connection, wsid: str) -> dict[str, tuple[int, str]]:
    m = sql.mark(conn)
    rows = conn.exec_driver_sql(
        f'SELECT profile_id, due_at_ms, payload FROM timers WHERE workspace_id = {m} AND "key" = {m}', (wsid, KEY)
    ).all()
    return {r[0]: (int(r[1]), r[2]) for r in rows}


def test_fired_timers_are_rearmed_or_deleted(engine: Any, wsid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    by_rowid = rowid_writes(monkeypatch)
    a, b, c, later = (f"{wsid}-{name}" for name in ("a", "b", "c", "later"))
    with engine.begin() as conn:
        for person in (a, b, c):
            arm(conn, wsid, person, 10)
        arm(conn, wsid, later, 10_000)
    with engine.begin() as conn:
        rows = claimed(conn, wsid, 100)
        assert {r[0] for r in rows} == {a, b, c}
        fire(conn, wsid, rows, {a: 500}, 100)
    with engine.connect() as conn:
        stored = timers_of(conn, wsid)
    assert set(stored) == {a, later}
    assert stored[a][0] == 500 and '"again":true' in stored[a][1]
    assert stored[later] == (10_000, '{"kind": "step"}')
    # Written by rowid on SQLite, with no fallback by key; PostgreSQL claims no rowids.
    assert by_rowid == ([] if engine.dialect.name == "postgresql" else [True])


def test_a_claimed_timer_moved_by_a_merge_stays_with_its_new_person(
    engine: Any, wsid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_rowid = rowid_writes(monkeypatch)
    a, b = f"{wsid}-a", f"{wsid}-b"
    with engine.begin() as conn:
        arm(conn, wsid, a, 10)
        arm(conn, wsid, b, 10)
    with engine.begin() as conn:
        rows = claimed(conn, wsid, 100)
        # As store/engine_state.move_merged does when a merge is folded into the batch: the
        # rows keep their rowids, and belong to another person now.
        m = sql.mark(conn)
        for person in (a, b):
            moved = f"{person}-moved"
            conn.exec_driver_sql(f"UPDATE timers SET profile_id = {m} WHERE profile_id = {m}", (moved, person))
        fire(conn, wsid, rows, {a: 500}, 100)
    with engine.connect() as conn:
        stored = timers_of(conn, wsid)
    # The moved rows are untouched; the fired key is written by key: a's re-arm is a row of
    # its own, b's deletion finds nothing.
    assert stored == {
        f"{a}-moved": (10, '{"kind": "step"}'),
        f"{b}-moved": (10, '{"kind": "step"}'),
        a: (500, stored[a][1]),
    }
    assert by_rowid == ([] if engine.dialect.name == "postgresql" else [False])  # tried, then by key
