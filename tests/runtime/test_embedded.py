"""The embedded runtime: background loops woken by commits, graceful stop, the safety net."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from nudgeflow.core.effects import Effect, RunChanged
from nudgeflow.core.inputs import EventInput
from nudgeflow.core.state import ProfileState
from nudgeflow.runtime.embedded import EmbeddedRuntime
from nudgeflow.runtime.stages import SET_ASIDE_AFTER, Stage
from tests.runtime.harness import FakeEngine, Harness

WAIT_S = 20.0


def eventually(check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    """Wait for a background loop (real threads, real time) to get somewhere."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(0.02)


class PoisonEngine(FakeEngine):
    """ "Poison" produces an effect the database refuses (a run without a journey): the core
    did not fail, the batch's transaction does. Only the safety net can get past it."""

    def on_event(self, state: ProfileState, event: EventInput, now_ms: int) -> list[Effect]:
        if event.name == "Poison":
            return [
                RunChanged({"id": "bad", "journey_id": None, "version": 1, "status": "active", "entered_at_ms": now_ms})
            ]
        return super().on_event(state, event, now_ms)


def test_a_commit_wakes_the_engine_and_the_message_is_sent_in_the_background(h: Harness) -> None:
    # Polling an hour apart: only the commit listener can explain a prompt send.
    rt = h.runtime(engine_poll_ms=3_600_000)
    rt.start()
    assert rt.running
    started = time.monotonic()
    h.track("ada", "Signed Up")
    eventually(lambda: len(h.log_messages()) == 1)
    assert time.monotonic() - started < 5
    assert h.outbox()[0].status == "logged"  # the log channel: not sent
    eventually(lambda: h.cursor() == h.scalar("SELECT MAX(seq) FROM events"))  # engagement event decided too
    rt.stop()
    assert not rt.running


def test_due_timers_are_fired_by_the_poll(h: Harness) -> None:
    rt = h.runtime(engine_poll_ms=20)
    rt.start()
    h.track("ada", "Signed Up")
    eventually(lambda: len(h.log_messages()) == 1)
    h.clock.advance(timedelta(days=1))
    eventually(lambda: [m.template for m in h.log_messages()] == ["welcome", "reminder"])
    assert h.timers() == []
    assert rt.stats.timers_fired == 1


def test_stop_finishes_then_stops_and_a_restart_takes_up_where_it_left(h: Harness) -> None:
    rt = h.runtime(engine_poll_ms=20)
    rt.start()
    h.track("ada", "Signed Up")
    eventually(lambda: len(h.log_messages()) == 1)
    rt.stop()
    h.track("bob", "Signed Up")  # accepted while the engine is stopped
    time.sleep(0.2)
    assert len(h.log_messages()) == 1 and h.cursor() < h.scalar("SELECT MAX(seq) FROM events")
    assert rt.lag() >= 1
    again = h.runtime(engine_poll_ms=20)
    again.start()
    eventually(lambda: len(h.log_messages()) == 2 and again.lag() == 0)
    again.stop()


def test_run_until_idle_drives_events_timers_and_dispatch_to_rest(h: Harness) -> None:
    rt = h.runtime()
    h.track("ada", "Signed Up")
    h.track("bob", "Signed Up")
    report = rt.run_until_idle()
    # Round 1: 2 events, 2 messages; round 2: the 2 engagement events; round 3: nothing.
    assert (report.events, report.timers, report.messages, report.rounds) == (4, 0, 2, 3)
    h.clock.advance(timedelta(days=1))
    report = rt.run_until_idle()
    assert (report.events, report.timers, report.messages) == (2, 2, 2)
    assert sorted(m.template for m in h.log_messages()) == ["reminder", "reminder", "welcome", "welcome"]


def test_a_batch_the_database_refuses_is_narrowed_down_and_only_the_bad_event_is_set_aside(h: Harness) -> None:
    h.track("ada", "Signed Up")
    h.track("bob", "Poison")
    h.track("cy", "Signed Up")
    h.track("dee", "Signed Up")
    rt = h.runtime(PoisonEngine())
    rt.run_until_idle()
    poison = h.events_named("Poison")[0].seq
    assert rt.stats.skipped == [f"event:{poison}"] and rt.stats.event_errors == 1
    assert sorted(m.profile_id for m in h.log_messages()) == sorted(h.profile_id(u) for u in ("ada", "cy", "dee"))
    assert h.cursor() == h.scalar("SELECT MAX(seq) FROM events")
    assert h.q("SELECT id FROM journey_runs WHERE id = 'bad'") == []


def test_the_safety_net_halves_then_sets_aside_after_repeated_failures() -> None:
    calls: list[int] = []
    set_aside: list[str] = []

    class Runner:
        def call(self, fn: Callable[[Any], Any]) -> Any:
            return fn(None)

    def work(_conn: Any, size: int) -> int:
        calls.append(size)
        raise ValueError("bad item")

    def aside(_conn: Any) -> str:
        set_aside.append("x")
        return "x"

    stage = Stage("test", work, aside, 8)
    results = [stage.run(Runner()) for _ in range(3 + SET_ASIDE_AFTER)]
    assert calls == [8, 4, 2, 1, 1, 1]
    assert results == [Stage.RETRY] * 6 and set_aside == ["x"]


def test_a_database_outage_is_never_charged_to_an_item() -> None:
    from sqlalchemy.exc import OperationalError

    class Runner:
        def call(self, fn: Callable[[Any], Any]) -> Any:
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))

    stage = Stage("test", lambda conn, n: 0, lambda conn: "never", 8)
    for _ in range(5):
        with pytest.raises(OperationalError):
            stage.run(Runner())
    assert stage.size == 8 and stage.failures == 0


def test_the_runtime_without_a_writer_uses_its_own_transactions(h: Harness) -> None:
    rt = EmbeddedRuntime(h.db, None, h.clock, h.settings(), engines=h.runtime().engines)
    h.track("ada", "Signed Up")
    assert rt.run_until_idle().messages == 1


def test_batches_shrink_to_the_time_budget_and_grow_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from nudgeflow.runtime import embedded

    now = [0.0]
    monkeypatch.setattr(embedded.time, "perf_counter", lambda: now[0])
    per_item = [0.001]  # 1 ms an item: 1,000 take a second, far over a 50 ms budget

    def work(_conn: Any, size: int) -> int:
        now[0] += size * per_item[0]
        return size

    class Runner:
        def call(self, fn: Callable[[Any], Any]) -> Any:
            return fn(None)

    stage = Stage("test", work, lambda conn: None, 1000, budget_ms=50)
    stage.run(Runner())
    assert stage.size == 50  # 1,000 × 50 ms / 1 s
    per_item[0] = 0.00001  # cheap items again: back up, doubling, to the configured size
    sizes = []
    for _ in range(6):
        stage.run(Runner())
        sizes.append(stage.size)
    assert sizes == [100, 200, 400, 800, 1000, 1000]
    # A short batch (the log is drained) says nothing about cost: the size stays.
    per_item[0] = 0.001
    stage.work = lambda conn, size: work(conn, 10)
    stage.run(Runner())
    assert stage.size == 1000


def test_the_backlog_says_what_waits_and_for_how_long(h: Harness) -> None:
    # What /metrics reports as nudgeflow_outbox_* and nudgeflow_timer_overdue_seconds.
    from datetime import timedelta

    from nudgeflow.runtime.processor import RuntimeStats, process_events

    rt = h.runtime()
    assert rt.backlog() == {
        "outbox_pending": 0,
        "outbox_due": 0,
        "outbox_oldest_due_seconds": 0.0,
        "timer_overdue_seconds": 0.0,
    }
    h.track("ada", "Signed Up")  # a message now, and a timer a day later (the fake engine)
    with h.db.begin() as conn:  # decided, not dispatched
        process_events(conn, rt.engines, h.clock, 100, RuntimeStats())
    h.clock.advance(timedelta(days=2))
    waiting = rt.backlog()
    assert waiting["outbox_pending"] == 1 and waiting["outbox_due"] == 1
    assert waiting["outbox_oldest_due_seconds"] == 2 * 86_400.0
    assert waiting["timer_overdue_seconds"] == 86_400.0
    rt.run_until_idle()  # sent, and the timer fired
    assert rt.backlog()["outbox_pending"] == 0 and rt.backlog()["timer_overdue_seconds"] == 0.0
