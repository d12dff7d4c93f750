"""Migration 0025 (the partitioned event log) on both databases: the undecided tail of the
log gets partitions and offsets, the timers their partitions, and the heads follow."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from nudgeflow.model.event_names import SEGMENT_ENTERED
from nudgeflow.model.events import OWN_SEGMENT_PREFIX
from nudgeflow.model.partitions import DEFAULT_PARTITIONS, partition_of
from nudgeflow.store import database

BEFORE = "0024"
OURS = "0025"
PEOPLE = [f"prf_{i}" for i in range(30)]


def test_the_undecided_events_and_every_timer_get_their_partitions(new_engine: Any) -> None:
    database.upgrade(new_engine, BEFORE)
    rows = []
    for n in range(120):
        pid = PEOPLE[n % len(PEOPLE)]
        own = n % 25 == 24  # now and then the engine's own Segment Entered
        rows.append(
            {
                "m": f"{OWN_SEGMENT_PREFIX}{n}" if own else f"m-{n}",
                "p": pid,
                "e": SEGMENT_ENTERED if own else "Viewed",
            }
        )
    with new_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO events (workspace_id, message_id, profile_id, type, event, timestamp_ms,"
                " received_at_ms, payload) VALUES ('ws', :m, :p, 'track', :e, 1, 1, '{}')"
            ),
            rows,
        )
        cursor = int(conn.execute(text("SELECT seq FROM events WHERE message_id = 'm-39'")).scalar_one())
        conn.execute(
            text("INSERT INTO engine_cursors (name, position, updated_at_ms) VALUES ('events', :c, 0)"), {"c": cursor}
        )
        conn.execute(
            text(
                "INSERT INTO timers (profile_id, key, workspace_id, due_at_ms, payload) VALUES (:p, :k, 'ws', 5, '{}')"
            ),
            [{"p": pid, "k": f"k{j}"} for pid in PEOPLE for j in range(2)],
        )
    database.upgrade(new_engine, OURS)
    with new_engine.connect() as conn:
        found = conn.execute(
            text("SELECT seq, profile_id, message_id, partition, part_offset FROM events ORDER BY seq")
        ).all()
        heads = dict(conn.execute(text("SELECT partition, head FROM partition_heads")).all())
        timers = conn.execute(text("SELECT profile_id, partition FROM timers")).all()
    decided = [r for r in found if r.seq <= cursor]
    assert decided and all((r.partition, r.part_offset) == (None, None) for r in decided)
    own = [r for r in found if r.seq > cursor and r.message_id.startswith(OWN_SEGMENT_PREFIX)]
    assert own and all((r.partition, r.part_offset) == (None, None) for r in own)
    tail = [r for r in found if r.seq > cursor and not r.message_id.startswith(OWN_SEGMENT_PREFIX)]
    assert len(tail) == 80 - len(own)
    offsets: dict[int, list[int]] = {}
    for r in tail:
        assert r.partition == partition_of("ws", r.profile_id)
        offsets.setdefault(r.partition, []).append(r.part_offset)
    assert sorted(heads) == list(range(DEFAULT_PARTITIONS))
    for p in range(DEFAULT_PARTITIONS):
        got = offsets.get(p, [])
        assert got == list(range(1, len(got) + 1)) and heads[p] == len(got)
    assert len(timers) == 2 * len(PEOPLE)
    assert all(t.partition == partition_of("ws", t.profile_id) for t in timers)
    database.upgrade(new_engine)
    assert database.is_current(new_engine)


def test_the_migration_goes_down_again(new_engine: Any) -> None:
    database.upgrade(new_engine, OURS)
    database.downgrade(new_engine, BEFORE)
    with new_engine.connect() as conn:
        assert "partition" not in list(conn.execute(text("SELECT * FROM timers")).keys())
    database.upgrade(new_engine)
    assert database.is_current(new_engine)
