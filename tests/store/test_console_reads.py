"""The store's reads behind the console's overview, on SQLite and PostgreSQL: the rollups
summed per day and channel, the not-sent reasons read along the outbox's status index with a
bound, and the engine's lag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nudgeflow.store import database, engine_state, event_log, outbox, rollups
from tests.store.outbox_rows import outbox_row

DAY = rollups.DAY_MS


def dims(ws: str, journey: str, day: int, step: str = "", variant: str = "", channel: str = "") -> rollups.Dims:
    return (ws, journey, 1, step, variant, channel, day)


def write(engine: Any, rollup: rollups.Rollup) -> None:
    with engine.begin() as conn:
        rollup.write(conn)


def test_channel_days_sum_every_journey_per_day_and_channel(engine: Any, wsid: str) -> None:
    r = rollups.Rollup()
    # Two journeys' messages on day 100, email and push; a run's row (entries, conversions).
    r.add(
        dims(wsid, "a", 100, "s1", "", "email"), sent=5, delivered=4, attributed_conversions=1, attributed_revenue=9.5
    )
    r.add(dims(wsid, "a", 100, "s1", "b", "email"), sent=2, delivered=2)
    r.add(dims(wsid, "b", 100, "p1", "", "push"), sent=3, delivered=1)
    r.add(dims(wsid, "a", 100), entered=7, conversions=2, revenue=20.0)
    r.add(dims(wsid, "b", 101, "s1", "", "email"), sent=1)
    # Left out: an arm's row (a step, no channel), the workspace's row of no journey, another
    # workspace, a day out of range.
    r.add(dims(wsid, "a", 100, "split", "b"), arm_runs=50, arm_conversions=40)
    r.add(dims(wsid, rollups.WORKSPACE_ROW, 100), conversions=99, revenue=999.0)
    r.add(dims("ws_other", "a", 100, "s1", "", "email"), sent=1000)
    r.add(dims(wsid, "a", 90, "s1", "", "email"), sent=1000)
    write(engine, r)
    with engine.connect() as conn:
        rows = rollups.read_channel_days(conn, wsid, from_day=95, to_day=101)
    assert [(row["day"], row["channel"]) for row in rows] == [(100, ""), (100, "email"), (100, "push"), (101, "email")]
    by = {(row["day"], row["channel"]): row for row in rows}
    assert by[(100, "email")]["sent"] == 7 and by[(100, "email")]["delivered"] == 6
    assert by[(100, "email")]["attributed_conversions"] == 1 and by[(100, "email")]["attributed_revenue"] == 9.5
    assert by[(100, "push")]["sent"] == 3 and by[(100, "push")]["delivered"] == 1
    assert by[(100, "")]["conversions"] == 2 and by[(100, "")]["revenue"] == 20.0 and by[(100, "")]["sent"] == 0
    assert by[(101, "email")]["sent"] == 1


def test_not_sent_counts_each_status_by_why_within_the_period(engine: Any, wsid: str) -> None:
    now = 200 * DAY
    rows = [
        *(outbox_row(wsid, f"f{i}", outbox.FAILED, now - 1000 * i, error="550 mailbox unavailable") for i in range(3)),
        outbox_row(wsid, "f-other", outbox.FAILED, now, error="template: missing variable first_name"),
        outbox_row(wsid, "f-old", outbox.FAILED, now - 40 * DAY, error="550 mailbox unavailable"),
        *(outbox_row(wsid, f"c{i}", outbox.DROPPED, now, reason="frequency_cap:email-daily") for i in range(2)),
        outbox_row(wsid, "q", outbox.DEFERRED, now + DAY, reason="quiet_hours"),
        outbox_row(wsid, "u", outbox.SUPPRESSED, now, reason="unsubscribed:*"),
        outbox_row(wsid, "ok", outbox.SENT, now),
        outbox_row("ws_other", "f-x", outbox.FAILED, now, error="550 mailbox unavailable"),
    ]
    with engine.begin() as conn:
        outbox.queue(conn, rows)
    with engine.connect() as conn:
        found = outbox.not_sent_summary(conn, wsid, now - 30 * DAY)
    assert found[outbox.FAILED] == {
        "total": 4,
        "complete": True,
        "reasons": [
            {"why": "550 mailbox unavailable", "count": 3},
            {"why": "template: missing variable first_name", "count": 1},
        ],
        "other": 0,
    }
    assert found[outbox.DROPPED]["reasons"] == [{"why": "frequency_cap:email-daily", "count": 2}]
    assert found[outbox.DEFERRED]["reasons"] == [{"why": "quiet_hours", "count": 1}]
    assert found[outbox.SUPPRESSED]["reasons"] == [{"why": "unsubscribed:*", "count": 1}]
    # The bound: at most `scan` rows of a status are read, and the answer says it stopped there.
    with engine.connect() as conn:
        bounded = outbox.not_sent_summary(conn, wsid, now - 30 * DAY, scan=2, top=1)
    assert bounded[outbox.FAILED]["complete"] is False and bounded[outbox.FAILED]["total"] <= 2
    assert len(bounded[outbox.FAILED]["reasons"]) == 1
    assert bounded[outbox.DROPPED]["complete"] is False  # exactly `scan` rows: maybe more


def test_lag_counts_the_events_after_the_engine_cursor(tmp_path: Path) -> None:
    # A database of its own: the event log and the cursor are the server's, not a workspace's.
    engine = database.create_db_engine(f"sqlite:///{tmp_path / 'lag.db'}", sqlite_synchronous="NORMAL")
    database.upgrade(engine)
    try:
        with engine.connect() as conn:
            assert engine_state.lag_view(conn) == {"events": 0, "oldest_received_at_ms": None}
        rows = [event_log.event_row("ws_1", "prf_1", "u1", "Viewed", f"m{i}", {}, 1_000 + i) for i in range(5)]
        with engine.begin() as conn:
            event_log.append_events(conn, rows)
            engine_state.read_cursor(conn)  # the cursor's row, as the engine's first batch makes it
            engine_state.write_cursor(conn, event_log.newest_seq(conn) - 3, 2_000)
        with engine.connect() as conn:
            assert engine_state.lag_view(conn) == {"events": 3, "oldest_received_at_ms": 1_002}
    finally:
        engine.dispose()
