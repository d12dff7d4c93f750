"""Event processing and timer firing, on both databases, with a fake core and a virtual clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from nudgeflow.core.catalog import Catalog
from nudgeflow.core.clock import to_ms
from nudgeflow.runtime.processor import EngineCache, RuntimeStats, fire_timers, lag, process_events
from tests.runtime.harness import DAY_MS, HOUR_MS, FakeEngine, Harness, fake_cache


def test_events_become_decisions_outbox_rows_timers_runs_and_state(h: Harness) -> None:
    h.track("ada", "Signed Up", plan="pro")
    h.track("bob", "Signed Up")
    h.track("ada", "Product Viewed")
    engine = FakeEngine()
    stats = RuntimeStats()
    now = to_ms(h.clock.now())

    n = h.in_transaction(lambda conn: process_events(conn, fake_cache(engine), h.clock, 1000, stats))

    assert n == 3 and stats.events_processed == 3 and stats.messages_queued == 2
    assert [c[2] for c in engine.calls] == ["Signed Up", "Signed Up", "Product Viewed"]  # log order
    rows = h.outbox()
    assert [(r.profile_id, r.step, r.channel, r.template, r.status, r.attempts) for r in rows] == [
        (h.profile_id("ada"), "welcome", "email", "welcome", "pending", 0),
        (h.profile_id("bob"), "welcome", "email", "welcome", "pending", 0),
    ]
    assert rows[0].next_attempt_at_ms == now and rows[0].workspace_id == h.ws
    assert orjson.loads(rows[0].payload) == {"trigger": {"event": "Signed Up", "plan": "pro"}}
    assert sorted((t.profile_id, t.due_at_ms) for t in h.timers()) == sorted(
        [(h.profile_id("ada"), now + DAY_MS), (h.profile_id("bob"), now + DAY_MS)]
    )
    runs = h.q("SELECT id, workspace_id, status, step, profile_id FROM journey_runs ORDER BY profile_id")
    assert {r.profile_id for r in runs} == {h.profile_id("ada"), h.profile_id("bob")}
    assert all(r.workspace_id == h.ws and r.status == "active" for r in runs)
    assert h.state("ada").counters["seen"] == ["Signed Up", "Product Viewed"]
    assert h.cursor() == h.scalar("SELECT MAX(seq) FROM events")
    # Nothing new: nothing read, nothing written.
    assert h.in_transaction(lambda conn: process_events(conn, fake_cache(engine), h.clock)) == 0


def test_batches_follow_the_cursor_in_seq_order(h: Harness) -> None:
    for i in range(7):
        h.track(f"u{i % 3}", "Product Viewed", i=i)
    engine = FakeEngine()
    cache = fake_cache(engine)
    sizes = []
    while n := h.in_transaction(lambda conn: process_events(conn, cache, h.clock, 3)):
        sizes.append(n)
    assert sizes == [3, 3, 1]
    assert sum(h.state(f"u{i}").counters["events"] for i in range(3)) == 7
    with h.db.connect() as conn:
        assert lag(conn) == 0
    h.track("u0", "Product Viewed")
    with h.db.connect() as conn:
        assert lag(conn) == 1


def test_an_engine_exception_on_one_event_skips_it_and_the_batch_goes_on(h: Harness, caplog: Any) -> None:
    h.track("ada", "Product Viewed")
    h.track("ada", "Boom", secret_note="do-not-log-me")
    h.track("bob", "Signed Up")
    h.track("ada", "Signed Up")
    stats = RuntimeStats()
    n = h.in_transaction(lambda conn: process_events(conn, fake_cache(FakeEngine()), h.clock, 100, stats))

    assert n == 4 and stats.event_errors == 1 and stats.events_processed == 4
    bad_seq = h.events_named("Boom")[0].seq
    assert stats.skipped == [f"event:{bad_seq}"]
    # The events after the bad one were decided: both welcome messages are queued.
    assert sorted(r.profile_id for r in h.outbox()) == sorted([h.profile_id("ada"), h.profile_id("bob")])
    # Ada's state is as if the bad event never came: its half-done change is gone, and the
    # decisions before and after it are kept.
    ada = h.state("ada")
    assert ada.counters["seen"] == ["Product Viewed", "Signed Up"]
    assert "poisoned" not in ada.counters
    assert h.cursor() == h.scalar("SELECT MAX(seq) FROM events")
    failures = [r for r in caplog.records if "engine failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].seq == bad_seq and failures[0].error == "RuntimeError"
    assert all("do-not-log-me" not in r.getMessage() and "do-not-log-me" not in str(vars(r)) for r in caplog.records)


def test_a_crash_before_commit_decides_the_batch_again_without_duplicates(h: Harness) -> None:
    h.track("ada", "Signed Up")
    h.track("bob", "Signed Up")
    engine = FakeEngine()

    class Crash(Exception):
        pass

    def crashing(conn: Any) -> None:
        process_events(conn, fake_cache(engine), h.clock)
        raise Crash  # the process dies after the decisions, before the commit

    with pytest.raises(Crash):
        h.in_transaction(crashing)
    assert h.outbox() == [] and h.timers() == [] and h.cursor() == 0
    assert h.in_transaction(lambda conn: process_events(conn, fake_cache(engine), h.clock)) == 2
    assert len(h.outbox()) == 2 and len(h.timers()) == 2
    assert len(engine.calls) == 4  # decided twice, written once


def test_a_batch_decided_twice_queues_each_message_once(h: Harness) -> None:
    """Even when the second decision commits on top of the first (a cursor moved back by
    hand), the outbox's idempotency keys keep one row per message."""
    h.track("ada", "Signed Up")
    h.track("bob", "Signed Up")
    engine = FakeEngine()
    h.in_transaction(lambda conn: process_events(conn, fake_cache(engine), h.clock))
    first = [(r.idempotency_key, r.id) for r in h.outbox()]
    h.in_transaction(lambda conn: conn.exec_driver_sql("UPDATE engine_cursors SET position = 0"))
    h.in_transaction(lambda conn: conn.exec_driver_sql("DELETE FROM profile_state"))  # decide from scratch: same keys
    assert h.in_transaction(lambda conn: process_events(conn, fake_cache(engine), h.clock)) == 2
    assert [(r.idempotency_key, r.id) for r in h.outbox()] == first


def test_timers_fire_once_when_due(h: Harness) -> None:
    h.track("ada", "Signed Up")
    engine = FakeEngine()
    cache = fake_cache(engine)
    h.in_transaction(lambda conn: process_events(conn, cache, h.clock))
    due = h.timers()[0].due_at_ms

    h.clock.advance(timedelta(hours=23, minutes=59))
    assert h.in_transaction(lambda conn: fire_timers(conn, cache, h.clock)) == 0
    h.clock.advance(timedelta(minutes=1))
    stats = RuntimeStats()
    assert h.in_transaction(lambda conn: fire_timers(conn, cache, h.clock, 1000, stats)) == 1
    assert stats.timers_fired == 1 and stats.messages_queued == 1
    assert h.timers() == []
    assert [r.step for r in h.outbox()] == ["welcome", "reminder"]
    run = h.state("ada").counters["runs"][0]
    assert h.state("ada").counters["fired"] == [[f"run:{run}", due, due]]
    h.clock.advance(timedelta(days=5))
    assert h.in_transaction(lambda conn: fire_timers(conn, cache, h.clock)) == 0
    assert len(h.outbox()) == 2


def test_a_timer_due_during_an_outage_fires_once_late(h: Harness) -> None:
    h.track("ada", "Signed Up")
    h.track("bob", "Signed Up")
    engine = FakeEngine()
    cache = fake_cache(engine)
    h.in_transaction(lambda conn: process_events(conn, cache, h.clock))
    due = h.timers()[0].due_at_ms
    h.clock.advance(timedelta(days=3))  # nothing ran for three days
    now = to_ms(h.clock.now())
    fired = []
    while n := h.in_transaction(lambda conn: fire_timers(conn, cache, h.clock, 1)):
        fired.append(n)
    assert fired == [1, 1]
    assert [f[1:] for f in h.state("ada").counters["fired"]] == [[due, now]]  # due then, fired now, once
    assert [r.step for r in h.outbox()].count("reminder") == 2


def test_a_crash_while_firing_fires_the_timer_again_and_a_commit_never(h: Harness) -> None:
    h.track("ada", "Signed Up")
    engine = FakeEngine()
    cache = fake_cache(engine)
    h.in_transaction(lambda conn: process_events(conn, cache, h.clock))
    h.clock.advance(timedelta(days=1))

    def crashing(conn: Any) -> None:
        fire_timers(conn, cache, h.clock)
        raise KeyboardInterrupt  # anything: the transaction never commits

    with pytest.raises(KeyboardInterrupt):
        h.in_transaction(crashing)
    assert len(h.timers()) == 1 and [r.step for r in h.outbox()] == ["welcome"]
    assert h.in_transaction(lambda conn: fire_timers(conn, cache, h.clock)) == 1
    assert h.in_transaction(lambda conn: fire_timers(conn, cache, h.clock)) == 0
    assert [r.step for r in h.outbox()] == ["welcome", "reminder"]
    assert len(h.state("ada").counters["fired"]) == 1


def test_a_timer_that_rearms_its_own_key_survives_its_firing(h: Harness) -> None:
    h.track("ada", "Signed Up", timer={"rearm": 2})
    cache = fake_cache(FakeEngine())
    h.in_transaction(lambda conn: process_events(conn, cache, h.clock))
    key = h.timers()[0].key
    h.clock.advance(timedelta(days=1))
    assert h.in_transaction(lambda conn: fire_timers(conn, cache, h.clock)) == 1
    [timer] = h.timers()
    assert timer.key == key and timer.due_at_ms == to_ms(h.clock.now()) + HOUR_MS
    assert orjson.loads(timer.payload)["rearm"] == 1
    h.clock.advance(timedelta(hours=1))
    assert h.in_transaction(lambda conn: fire_timers(conn, cache, h.clock)) == 1
    h.clock.advance(timedelta(hours=1))
    assert h.in_transaction(lambda conn: fire_timers(conn, cache, h.clock)) == 1
    assert h.timers() == []  # rearm reached 0


def test_a_timer_the_engine_fails_on_is_skipped_and_the_others_fire(h: Harness) -> None:
    h.track("ada", "Signed Up", timer={"boom": True})
    h.track("bob", "Signed Up")
    cache = fake_cache(FakeEngine())
    h.in_transaction(lambda conn: process_events(conn, cache, h.clock))
    h.clock.advance(timedelta(days=1))
    stats = RuntimeStats()
    assert h.in_transaction(lambda conn: fire_timers(conn, cache, h.clock, 100, stats)) == 2
    assert stats.timer_errors == 1 and stats.skipped[0].startswith(f"timer:{h.profile_id('ada')}:")
    assert h.timers() == []  # the bad timer does not come back
    assert [(r.profile_id, r.step) for r in h.outbox() if r.step == "reminder"] == [(h.profile_id("bob"), "reminder")]
    assert "fired" not in h.state("ada").counters  # its state is as before the failed decision


def test_cancelled_timers_do_not_fire(h: Harness) -> None:
    h.track("ada", "Signed Up")
    h.track("ada", "Cancel")
    cache = fake_cache(FakeEngine())
    h.in_transaction(lambda conn: process_events(conn, cache, h.clock))
    assert h.timers() == []  # scheduled and cancelled in one batch: the last word wins
    h.clock.advance(timedelta(days=2))
    assert h.in_transaction(lambda conn: fire_timers(conn, cache, h.clock)) == 0


def test_update_profile_merges_and_drops_traits(h: Harness) -> None:
    h.identify("ada", email="ada@example.com", plan="pro", old="x")
    h.track("ada", "Set Trait", set={"plan": "free", "score": 3})
    h.track("ada", "Set Trait", set={"score": 4}, unset=["old"])
    h.in_transaction(lambda conn: process_events(conn, fake_cache(FakeEngine()), h.clock))
    traits = orjson.loads(h.scalar("SELECT traits FROM profiles WHERE id = :p", p=h.profile_id("ada")))
    assert traits == {"email": "ada@example.com", "plan": "free", "score": 4}


def test_message_failed_is_recorded_in_the_outbox(h: Harness) -> None:
    h.track("ada", "Fail Step")
    stats = RuntimeStats()
    h.in_transaction(lambda conn: process_events(conn, fake_cache(FakeEngine()), h.clock, 100, stats))
    [row] = h.outbox()
    assert (row.status, row.error, row.step) == ("failed", "template 'nope' not found", "s")
    assert stats.messages_failed_at_decision == 1 and stats.messages_queued == 0


def test_engine_cache_reloads_when_the_fingerprint_moves_and_survives_a_bad_catalog(h: Harness) -> None:
    marks = {"v": 1}
    loads: list[int] = []
    fail = {"on": False}

    def load(conn: Any, ws: str) -> Catalog:
        if fail["on"]:
            raise ValueError("bad definition")
        loads.append(marks["v"])
        return Catalog()

    made: list[Any] = []

    def make(catalog: Catalog) -> FakeEngine:
        made.append(catalog)
        return FakeEngine()

    cache = EngineCache(load_catalog=load, fingerprint=lambda conn, ws: marks["v"], make_engine=make, retry_ms=0)
    stats = RuntimeStats()
    with h.db.connect() as conn:
        first = cache.get(conn, h.ws, stats)
        assert cache.get(conn, h.ws, stats) is first and loads == [1]
        marks["v"] = 2
        second = cache.get(conn, h.ws, stats)
        assert second is not first and loads == [1, 2]
        marks["v"] = 3
        fail["on"] = True
        assert cache.get(conn, h.ws, stats) is second  # keeps the previous engine
        assert stats.catalog_errors == 1
        fail["on"] = False
        assert cache.get(conn, h.ws, stats) is not second and loads == [1, 2, 3]
