"""Journeys see the past: a journey published today looks at the people already known.

Real core, real store, on SQLite and PostgreSQL, with the virtual clock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from nudgeflow.core.clock import to_ms
from nudgeflow.model.journeys import Journey
from nudgeflow.runtime.backfill import backfill_batch, preview
from nudgeflow.runtime.processor import EngineCache, process_events
from tests.runtime.backfill_support import MARK, entered, jobs, publish, winback
from tests.runtime.harness import DAY_MS, Harness


def quiet_and_recent(h: Harness, rt: Any) -> None:
    """ada's last event was 10 days ago, bob's 2 days ago."""
    h.track("ada", "Session Started")
    h.clock.advance(timedelta(days=8))
    h.track("bob", "Session Started")
    rt.run_until_idle()
    h.clock.advance(timedelta(days=2))


def test_people_already_quiet_enter_at_publish_and_the_others_when_their_window_ends(h: Harness) -> None:
    rt = h.runtime(engines=EngineCache())
    quiet_and_recent(h, rt)
    publish(h, winback())
    rt.run_until_idle()
    ada, bob = h.profile_id("ada"), h.profile_id("bob")
    assert entered(h) == [ada]
    [job] = jobs(h)
    assert (job.status, job.profiles_done, job.entered) == ("done", 2, 1)
    idle = [t for t in h.timers() if t.key == "idle:winback"]
    assert [(t.profile_id, t.due_at_ms) for t in idle] == [(bob, to_ms(h.clock.now()) + 5 * DAY_MS)]

    h.clock.advance(timedelta(days=5))
    rt.run_until_idle()
    assert sorted(entered(h)) == sorted([ada, bob])

    # A new version backfills again and enters no one twice for the same silence.
    publish(h, {**winback(), "name": "Win back v2"})
    rt.run_until_idle()
    assert sorted(entered(h)) == sorted([ada, bob])
    assert [(j.version, j.status, j.entered) for j in jobs(h)] == [(1, "done", 1), (2, "done", 0)]


def test_people_who_appear_after_the_publish_are_the_live_journeys_alone(h: Harness) -> None:
    rt = h.runtime(engines=EngineCache())
    quiet_and_recent(h, rt)
    publish(h, winback())
    h.identify("cleo", plan="free")  # appears before the backfill has walked anyone
    rt.run_until_idle()
    [job] = jobs(h)
    assert job.profiles_done == 2  # ada and bob; cleo is not walked
    cleo = h.profile_id("cleo")
    # The live journey armed her one inactivity timer from her identify.
    assert len([t for t in h.timers() if t.key == "idle:winback" and t.profile_id == cleo]) == 1
    h.clock.advance(timedelta(days=30))
    rt.run_until_idle()
    assert entered(h).count(cleo) == 1


def test_from_now_opts_out_of_the_backfill(h: Harness) -> None:
    rt = h.runtime(engines=EngineCache())
    quiet_and_recent(h, rt)
    publish(h, winback(), backfill=False)
    rt.run_until_idle()
    assert entered(h) == [] and jobs(h) == []
    assert [t for t in h.timers() if t.key == "idle:winback"] == []


def test_history_conditions_read_the_stored_events(h: Harness) -> None:
    rt = h.runtime(engines=EngineCache())
    h.track("ada", "Order Completed", revenue=20)  # no journey keeps Order Completed yet
    h.track("bob", "Session Started")
    rt.run_until_idle()
    assert "Order Completed" not in h.state("ada").history
    h.clock.advance(timedelta(days=20))
    publish(h, winback(filter=[{"event": "Order Completed", "within": "90d", "op": "eq", "value": 0}]))
    rt.run_until_idle()
    # Both are quiet for 20 days; ada ordered within 90 days, so only bob enters.
    assert entered(h) == [h.profile_id("bob")]
    assert [ts for ts, _ in h.state("ada").history["Order Completed"]] == [to_ms(h.clock.now()) - 20 * DAY_MS]


def test_the_lookback_ends_at_its_maximum(h: Harness) -> None:
    rt = h.runtime(engines=EngineCache())
    h.track("ada", "Order Completed")
    rt.run_until_idle()
    h.clock.advance(timedelta(days=400))
    h.track("ada", "Session Started")
    rt.run_until_idle()
    h.clock.advance(timedelta(days=8))
    publish(h, winback(filter=[{"event": "Order Completed", "op": "eq", "value": 0}]))
    rt.run_until_idle()
    assert entered(h) == [h.profile_id("ada")]  # the order 408 days ago is past the 365-day lookback


def test_date_traits_already_held_schedule_their_timer_at_publish(h: Harness) -> None:
    rt = h.runtime(engines=EngineCache())
    h.identify("ada", trial_ends_at="2026-01-10", timezone="UTC")
    h.identify("bob", plan="free")
    rt.run_until_idle()
    h.clock.advance(timedelta(seconds=1))  # a publish comes after the people it looks at
    publish(
        h,
        {
            "id": "trial",
            "name": "Trial",
            "steps": MARK,
            "trigger": {"type": "date_relative", "trait": "trial_ends_at", "offset": "-1d", "at": "09:00"},
        },
    )
    rt.run_until_idle()
    timers = [(t.profile_id, t.due_at_ms) for t in h.timers() if t.key == "date:trial"]
    assert timers == [
        (h.profile_id("ada"), to_ms(h.clock.now().replace(day=9, hour=9, minute=0, second=0, microsecond=0)))
    ]
    h.clock.advance(timedelta(days=9))
    rt.run_until_idle()
    assert entered(h, "trial") == [h.profile_id("ada")]


def test_milestones_count_what_was_done_before_the_publish(h: Harness) -> None:
    rt = h.runtime(engines=EngineCache())
    for _ in range(2):
        h.track("ada", "Order Completed")
    h.track("bob", "Order Completed")
    rt.run_until_idle()
    h.clock.advance(timedelta(seconds=1))  # a publish comes after the people it looks at
    publish(
        h,
        {
            "id": "third",
            "name": "Third order",
            "steps": MARK,
            "trigger": {"type": "milestone", "event": "Order Completed", "count": 3},
        },
    )
    rt.run_until_idle()
    assert entered(h, "third") == []
    h.track("ada", "Order Completed")
    h.track("bob", "Order Completed")
    rt.run_until_idle()
    assert entered(h, "third") == [h.profile_id("ada")]


def test_a_backfill_resumes_where_it_stopped_and_enters_each_person_once(h: Harness) -> None:
    engines = EngineCache()
    rt = h.runtime(engines=engines)
    for user in ("ada", "bob", "cy", "dee"):
        h.track(user, "Session Started")
    rt.run_until_idle()
    h.clock.advance(timedelta(days=8))
    publish(h, winback())

    assert h.in_transaction(lambda conn: backfill_batch(conn, engines, h.clock, 1)) == 1
    [job] = jobs(h)
    assert (job.status, job.profiles_done, job.entered) == ("pending", 1, 1)

    class Crash(Exception):
        pass

    def dies(conn: Any) -> None:
        backfill_batch(conn, engines, h.clock, 2)
        raise Crash  # the process dies before the commit: nothing of the batch stays

    with pytest.raises(Crash):
        h.in_transaction(dies)
    assert jobs(h)[0].profiles_done == 1 and len(entered(h)) == 1

    rt.run_until_idle()  # a new process picks it up from its position
    [job] = jobs(h)
    assert (job.status, job.profiles_done, job.entered) == ("done", 4, 4)
    assert sorted(entered(h)) == sorted(h.profile_id(u) for u in ("ada", "bob", "cy", "dee"))


def test_the_read_ahead_is_used_while_it_holds_and_read_again_when_it_does_not(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The past a ReadAhead read before the transaction stands in for the batch's own read
    only while nothing it depends on moved: here the person's latest event is decided in
    between (the read said quiet, the truth is active), and the batch reads again."""
    import nudgeflow.runtime.backfill as runtime_backfill

    engines = EngineCache()
    rt = h.runtime(engines=engines)
    for user in ("ada", "bob", "cy"):
        h.track(user, "Session Started")
    rt.run_until_idle()
    h.clock.advance(timedelta(days=8))
    publish(h, winback())
    first, second, third = sorted(("ada", "bob", "cy"), key=h.profile_id)  # the backfill's order
    reads: list[int] = []
    real = runtime_backfill._read_pasts
    monkeypatch.setattr(runtime_backfill, "_read_pasts", lambda *a: reads.append(len(a[2])) or real(*a))
    ahead = runtime_backfill.ReadAhead()

    def batch(conn: Any) -> int:
        return backfill_batch(conn, engines, h.clock, 1, ahead=ahead)

    assert h.in_transaction(batch) == 1 and reads == [1]  # nothing read ahead yet: its own read
    with h.db.connect() as conn:
        ahead.read(conn, h.clock, 1)
    assert reads == [1, 1]
    assert h.in_transaction(batch) == 1 and reads == [1, 1]  # the read ahead stood in for it
    with h.db.connect() as conn:
        ahead.read(conn, h.clock, 1)  # the third: quiet for 8 days, as read
    h.track(third, "Session Started")
    h.in_transaction(lambda conn: process_events(conn, engines, h.clock, 10))
    assert h.in_transaction(batch) == 1 and reads == [1, 1, 1, 1]  # read again: it is active
    assert sorted(entered(h)) == sorted(h.profile_id(u) for u in (first, second))
    assert h.q("SELECT count(*) AS n FROM timers WHERE profile_id = :p", p=h.profile_id(third))[0].n == 1


def test_preview_counts_who_would_enter_at_once_and_writes_nothing(h: Harness) -> None:
    rt = h.runtime(engines=EngineCache())
    quiet_and_recent(h, rt)
    h.track("cy", "Order Completed")
    h.clock.advance(timedelta(days=8))  # ada 18 days quiet, bob 10, cy 8 (but ordered)
    h.track("dee", "Session Started")
    rt.run_until_idle()
    journey = Journey.model_validate(
        winback(filter=[{"event": "Order Completed", "within": "90d", "op": "eq", "value": 0}])
    )
    with h.db.connect() as conn:
        seen = preview(conn, h.ws, journey, to_ms(h.clock.now()))
    assert (seen.profiles, seen.entering) == (4, 2)
    assert entered(h) == [] and jobs(h) == []
    publish(h, winback(filter=[{"event": "Order Completed", "within": "90d", "op": "eq", "value": 0}]))
    rt.run_until_idle()
    assert sorted(entered(h)) == sorted([h.profile_id("ada"), h.profile_id("bob")])


def test_the_previews_quiet_people_are_the_backfills_own(h: Harness) -> None:
    """The preview picks out the quiet in SQL, the backfill in Python from every event: the
    same people, over the cases where the two could part (activity of the trigger's names
    only, imported history older than the profile, a new profile with no such activity)."""
    rt = h.runtime(engines=EngineCache())
    twenty_days_ago = (h.clock.now() - timedelta(days=20)).isoformat()
    h.track("ada", "Session Started")
    h.track("bob", "Session Started")
    h.track("eve", "Page Viewed")
    rt.run_until_idle()
    h.clock.advance(timedelta(days=19))
    h.track("bob", "Page Viewed")  # not one of the trigger's events
    h.track("dee", "Session Started")
    h.track("fay", "Page Viewed")  # new, and never active by the trigger's events
    # New today, with history imported from 20 days ago: quiet by its events.
    h.send({"type": "track", "userId": "cy", "event": "Session Started", "timestamp": twenty_days_ago})
    rt.run_until_idle()
    h.clock.advance(timedelta(days=1))
    definition = winback()
    definition["trigger"]["events"] = ["Session Started"]
    with h.db.connect() as conn:
        seen = preview(conn, h.ws, Journey.model_validate(definition), to_ms(h.clock.now()))
    publish(h, definition)
    rt.run_until_idle()
    expected = sorted(h.profile_id(u) for u in ("ada", "bob", "cy", "eve"))
    assert sorted(entered(h)) == expected
    assert (seen.profiles, seen.entering) == (6, 4)


def test_events_the_engine_has_not_decided_yet_are_left_to_it(h: Harness) -> None:
    engines = EngineCache()
    rt = h.runtime(engines=engines)
    h.track("ada", "Order Completed")
    h.track("ada", "Order Completed")
    rt.run_until_idle()
    h.clock.advance(timedelta(days=1))
    publish(
        h,
        {
            "id": "third",
            "name": "Third order",
            "steps": MARK,
            "trigger": {"type": "milestone", "event": "Order Completed", "count": 3},
        },
    )
    # The second order's seq is an open gap of the cursor (committed late): the engine will
    # decide it when it turns up, so the backfill must not count it as well.
    [_, late] = [r.seq for r in h.events_named("Order Completed")]
    h.in_transaction(
        lambda conn: conn.exec_driver_sql(
            f"UPDATE engine_cursors SET gaps = '[[{late}, {late}, 0]]' WHERE name = 'events'"
        )
    )
    assert h.in_transaction(lambda conn: backfill_batch(conn, engines, h.clock, 10)) == 1
    assert h.state("ada").counters["third:count"] == 1


@pytest.mark.parametrize(
    "entry",
    [
        {},  # the goal event kept for the goal alone
        {"filter": [{"event": "Order Completed", "op": "gte", "value": 0}]},  # and counted by a condition
    ],
)
def test_a_late_trigger_event_after_the_publish_is_converted_by_a_goal_event_from_before_it(
    h: Harness, entry: dict[str, Any]
) -> None:
    # The order (sent by the server at once) is decided before the publish; the sign-up it
    # followed arrives late, from an app's queue, after it. The run converts as it enters and
    # names the order, as it would have had the journey been live all along.
    rt = h.runtime(engines=EngineCache())
    signed_up_at = h.clock.now()
    h.clock.advance(timedelta(minutes=5))
    h.send({"type": "track", "userId": "ada", "event": "Order Completed", "messageId": "order-1"})
    order_at = to_ms(h.clock.now())
    rt.run_until_idle()
    h.clock.advance(timedelta(minutes=1))
    welcome = {
        "id": "welcome",
        "name": "Welcome",
        "steps": MARK,
        "trigger": {"type": "event", "event": "Signed Up", "max_lateness": "1d"},
        "goal": {"event": "Order Completed", "within": "3d"},
        **({"entry": entry} if entry else {}),
    }
    publish(h, welcome)
    rt.run_until_idle()
    assert [j.status for j in jobs(h, "welcome")] == ["done"]
    h.send({"type": "track", "userId": "ada", "event": "Signed Up", "timestamp": signed_up_at.isoformat()})
    rt.run_until_idle()
    rows = h.q("SELECT entered_at_ms, converted_at_ms, converted_by FROM journey_runs WHERE journey_id = 'welcome'")
    assert [tuple(r) for r in rows] == [(to_ms(signed_up_at), order_at, "order-1")]
