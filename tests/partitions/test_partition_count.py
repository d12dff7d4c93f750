"""The event log's partition count P (store/partition_log.set_partition_count, `nudgeflow db
partitions`): chosen on a new database before the first event, then used by every writer of
events and timers and by the engine workers; refused once the log holds an event, while a
worker is alive, or outside 1..4096."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nudgeflow.cli import app
from nudgeflow.model.partitions import PartitionCountError, partition_of
from nudgeflow.runtime.partition_worker import PartitionWorker
from nudgeflow.runtime.processor import RuntimeStats
from nudgeflow.store import partition_log, partition_work
from tests.runtime.harness import FakeEngine, Harness, fake_cache

TTL_MS = 6000


def test_a_count_chosen_before_the_first_event_routes_events_timers_and_workers(h: Harness) -> None:
    with h.db.begin() as conn:
        assert partition_log.set_partition_count(conn, 8, live_workers=0) == 64
    with h.db.connect() as conn:
        assert partition_log.partition_count(conn) == 8
        assert sorted(partition_log.heads(conn)) == list(range(8))
    engine = FakeEngine()
    one = PartitionWorker(h.db, h.clock, fake_cache(engine), RuntimeStats(), worker_id="w1", ttl_ms=TTL_MS)
    two = PartitionWorker(h.db, h.clock, fake_cache(engine), RuntimeStats(), worker_id="w2", ttl_ms=TTL_MS)
    assert one.partitions == two.partitions == 8  # read from the database, not the default
    for _ in range(4):
        one.tick_leases()
        two.tick_leases()
    assert sorted(one.keeper.owned_now() | two.keeper.owned_now()) == list(range(8))
    for i in range(40):
        h.track(f"user-{i}", "Signed Up")
    events = h.q("SELECT profile_id, partition FROM events WHERE workspace_id = :ws", ws=h.ws)
    assert len(events) == 40
    assert all(row.partition == partition_of(h.ws, row.profile_id, 8) for row in events)
    assert len({row.partition for row in events}) > 4  # spread over the 8, not all in a few
    one.run_until_idle()
    two.run_until_idle()
    with h.db.connect() as conn:
        assert {p: head - pos for p, head, pos in partition_work.partition_lags(conn) if head - pos} == {}
    decided = Counter(c[1] for c in engine.calls if c[0] == "event")
    assert len(decided) == 40 and set(decided.values()) == {1}
    # The fake engine arms a timer a day out for each person: in that person's partition of 8.
    timers = h.q("SELECT profile_id, partition FROM timers")
    assert len(timers) == 40 and all(t.partition == partition_of(h.ws, t.profile_id, 8) for t in timers)
    h.clock.advance(timedelta(days=1, minutes=1))
    for w in (one, two):
        w.tick_leases()
        w.run_until_idle()
    assert Counter(c[1] for c in engine.calls if c[0] == "timer") == Counter({pid: 1 for pid in decided})


def test_the_count_is_refused_once_an_event_is_logged_while_a_worker_lives_or_out_of_range(h: Harness) -> None:
    with h.db.begin() as conn, pytest.raises(partition_log.PartitionCountLocked, match="worker"):
        partition_log.set_partition_count(conn, 8, live_workers=1)
    for bad in (0, 4097):
        with h.db.begin() as conn, pytest.raises(PartitionCountError, match="between 1 and 4096"):
            partition_log.set_partition_count(conn, bad, live_workers=0)
    h.track("user-1", "Signed Up")
    with h.db.begin() as conn, pytest.raises(partition_log.PartitionCountLocked, match="already holds events"):
        partition_log.set_partition_count(conn, 8, live_workers=0)
    with h.db.connect() as conn:
        assert len(partition_log.heads(conn)) == 64  # unchanged


def test_the_command_shows_and_chooses_the_count_on_a_new_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nf.db'}"
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade", "--database", url]).exit_code == 0
    shown = runner.invoke(app, ["db", "partitions", "--database", url])
    assert shown.exit_code == 0 and "partitions: 64" in shown.output
    chosen = runner.invoke(app, ["db", "partitions", "16", "--database", url])
    assert chosen.exit_code == 0, chosen.output
    assert "partitions: 64 -> 16" in chosen.output
    assert "partitions: 16" in runner.invoke(app, ["db", "partitions", "--database", url]).output
    wrong = runner.invoke(app, ["db", "partitions", "0", "--database", url])
    assert wrong.exit_code != 0 and "between 1 and 4096" in wrong.output


def test_going_back_to_the_single_engine_where_no_worker_ran_does_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nf.db'}"
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade", "--database", url]).exit_code == 0
    done = runner.invoke(app, ["db", "single-engine", "--database", url])
    assert done.exit_code == 0 and "runs the single engine already: nothing to do" in " ".join(done.output.split())
