"""Segments in the runtime: applying one computes it for the people already stored, exactly;
membership then follows the events and the lapse timers, with its events in the log.

Real core, real store, on SQLite and PostgreSQL, with the virtual clock.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import text

from nudgeflow.core.clock import to_ms
from nudgeflow.model.event_names import SEGMENT_ENTERED, SEGMENT_EXITED
from nudgeflow.model.iso_time import iso
from nudgeflow.model.journeys import Journey
from nudgeflow.model.segments import Segment
from nudgeflow.runtime.processor import EngineCache, RuntimeStats, process_events
from nudgeflow.runtime.segments import apply_batch
from nudgeflow.store import journeys as journey_store
from nudgeflow.store import segments as store
from tests.runtime.harness import DAY_MS, Harness

RECENT = {"id": "recent", "name": "Recent buyers", "when": {"performed": "Order Completed", "within": "30d"}}
TWICE = {"id": "twice", "name": "Two orders", "when": {"performed": "Order Completed", "within": "30d", "count": 2}}
SPENDERS = {
    "id": "spenders",
    "name": "Big spenders",
    "when": {"performed": "Order Completed", "within": "90d", "sum": {"property": "revenue", "value": 100}},
}
LAPSED = {
    "id": "lapsed",
    "name": "Lapsed",
    "when": {
        "all": [
            {"performed": "Order Completed", "within": "365d"},
            {"not": {"performed": "Order Completed", "within": "30d"}},
        ]
    },
}


def apply(h: Harness, *definitions: dict[str, Any]) -> None:
    now = to_ms(h.clock.now())
    with h.db.begin() as conn:
        for doc in definitions:
            store.apply(conn, h.ws, Segment.model_validate(doc), now)


def members(h: Harness, segment_id: str) -> set[str]:
    with h.db.connect() as conn:
        return {pid for pid, _ in store.members(conn, h.ws, segment_id, limit=1000)}


def computation(h: Harness, segment_id: str) -> store.Apply:
    with h.db.connect() as conn:
        return store.latest_applies(conn, h.ws)[segment_id]


def order(h: Harness, user: str, at_ms: int, revenue: float = 10.0) -> None:
    h.send(
        {
            "type": "track",
            "userId": user,
            "event": "Order Completed",
            "properties": {"revenue": revenue},
            "timestamp": iso(at_ms),
        }
    )


def batches(h: Harness, engines: EngineCache, size: int) -> int:
    """Apply batches of `size` until none is left; returns how many ran."""
    count = 0
    while h.in_transaction(lambda conn: apply_batch(conn, engines, h.clock, size)) > 0:
        count += 1
    return count


def test_apply_is_exact_on_a_generated_population(h: Harness) -> None:
    rng = random.Random(7)
    now = to_ms(h.clock.now())
    orders: dict[str, list[tuple[int, float]]] = {}
    for n in range(60):
        user = f"u{n:02d}"
        h.identify(user, plan=rng.choice(["free", "pro"]))
        for _ in range(rng.randrange(0, 5)):
            at = now - rng.randrange(1, 400) * DAY_MS + rng.randrange(DAY_MS)
            revenue = float(rng.randrange(5, 80))
            order(h, user, at, revenue)
            orders.setdefault(user, []).append((at, revenue))
    rt = h.runtime(engines=EngineCache())
    rt.run_until_idle()
    h.clock.advance(timedelta(minutes=1))
    apply(h, RECENT, SPENDERS, LAPSED)
    engines = EngineCache()
    assert batches(h, engines, 7) >= 9  # 60 people, 7 a batch: several transactions each

    at = to_ms(h.clock.now())

    def brute(test: Any) -> set[str]:
        return {h.profile_id(u) for u, found in orders.items() if test(found)}

    def within(found: list[tuple[int, float]], days: int) -> list[tuple[int, float]]:
        return [(t, r) for t, r in found if at - days * DAY_MS < t <= at]

    expected = {
        "recent": brute(lambda f: len(within(f, 30)) >= 1),
        "spenders": brute(lambda f: sum(r for _, r in within(f, 90)) >= 100),
        "lapsed": brute(lambda f: within(f, 365) and not within(f, 30)),
    }
    for segment_id, people in expected.items():
        assert people, segment_id  # the population has some of each
        assert members(h, segment_id) == people, segment_id
        done = computation(h, segment_id)
        assert (done.status, done.profiles_done, done.size) == ("done", 60, len(people))
        assert done.as_of_seq == h.cursor()
        with h.db.connect() as conn:
            found = store.get_segment(conn, h.ws, segment_id)
        assert found is not None and found["size"] == len(people)
        assert found["daily"][-1]["size"] == len(people)

    # Windows lapse (recent buyers leave, some become lapsed): the sizes, read from the daily
    # counts, still equal the members rows.
    h.clock.advance(timedelta(days=31))
    rt.run_until_idle()
    with h.db.connect() as conn:
        counted = dict(
            conn.execute(
                text("SELECT segment_id, count(*) FROM segment_members WHERE workspace_id = :ws GROUP BY segment_id"),
                {"ws": h.ws},
            ).all()
        )
        assert store.sizes(conn, h.ws) == counted
    assert counted.get("recent", 0) < len(expected["recent"])


def test_no_gap_and_no_double_count_while_events_arrive_during_the_apply(h: Harness) -> None:
    now = to_ms(h.clock.now())
    rt = h.runtime(engines=EngineCache())
    # Profile ids are random: who is walked first is found out below, not chosen.
    for user in ("a", "b", "c", "d"):
        order(h, user, now - 10 * DAY_MS)
    rt.run_until_idle()
    h.clock.advance(timedelta(minutes=1))
    apply(h, TWICE)
    engines = EngineCache()
    assert h.in_transaction(lambda conn: apply_batch(conn, engines, h.clock, 2)) == 2
    walked = {pid for pid in (h.profile_id(u) for u in "abcd") if pid <= computation(h, "twice").position}
    assert len(walked) == 2
    # One more order each, decided live before the walk reaches the other two.
    for user in ("a", "b", "c", "d"):
        order(h, user, to_ms(h.clock.now()))
    assert h.in_transaction(lambda conn: process_events(conn, engines, h.clock)) > 0
    # Two orders in 30 days each, counted once whichever way they were seen: live on top of
    # the walk's history, or read from the store by the walk (not added to the live count).
    batches(h, engines, 2)
    rt.run_until_idle()
    assert members(h, "twice") == {h.profile_id(u) for u in "abcd"}
    assert all(len(h.state(u).history["Order Completed"]) == 2 for u in "abcd")
    assert computation(h, "twice").size == 4


def test_people_created_while_the_apply_runs_are_decided_once(h: Harness) -> None:
    rt = h.runtime(engines=EngineCache())
    order(h, "old", to_ms(h.clock.now()) - DAY_MS)
    rt.run_until_idle()
    apply(h, RECENT)  # in the very millisecond the person was created and decided
    h.clock.advance(timedelta(seconds=1))
    order(h, "new", to_ms(h.clock.now()))
    rt.run_until_idle()
    # The walk went through both; the new one's first event had decided her already.
    assert computation(h, "recent").profiles_done == 2
    assert members(h, "recent") == {h.profile_id("old"), h.profile_id("new")}
    causes = [orjson.loads(e.payload)["properties"]["cause"] for e in h.events_named(SEGMENT_ENTERED)]
    assert sorted(c.get("event") or f"apply {c['apply']}" for c in causes) == ["Order Completed", "apply 1"]


def test_changes_are_logged_windows_lapse_by_timer_and_journeys_enter_once(h: Harness) -> None:
    journey = Journey.model_validate(
        {
            "id": "thanks",
            "name": "Thanks",
            "trigger": {"type": "segment", "segment": "recent", "on": "enter"},
            "steps": {"mark": {"type": "update_profile", "set": {"thanked": True}}},
        }
    )
    apply(h, RECENT)
    now = to_ms(h.clock.now())
    with h.db.begin() as conn:
        journey_store.apply_draft(conn, h.ws, journey, now)
        journey_store.publish(conn, h.ws, "thanks", now)
    rt = h.runtime(engines=EngineCache())
    rt.run_until_idle()
    order(h, "ada", now)
    rt.run_until_idle()
    rt.run_until_idle()  # the appended Segment Entered is passed by the cursor undecided: it starts nothing again
    ada = h.profile_id("ada")
    assert members(h, "recent") == {ada}
    assert [r.profile_id for r in h.q("SELECT profile_id FROM journey_runs WHERE journey_id = 'thanks'")] == [ada]
    [entered] = h.events_named(SEGMENT_ENTERED)
    props = orjson.loads(entered.payload)["properties"]
    assert (props["segment_id"], props["segment_version"], props["cause"]["event"]) == ("recent", 1, "Order Completed")
    assert entered.user_id == "ada" and entered.timestamp_ms == now
    [timer] = [t for t in h.timers() if t.key == "seg:*"]
    assert timer.due_at_ms == now + 30 * DAY_MS

    h.clock.advance(timedelta(days=31))
    rt.run_until_idle()
    assert members(h, "recent") == set()
    [exited] = h.events_named(SEGMENT_EXITED)
    assert orjson.loads(exited.payload)["properties"]["cause"] == {"timer": "window"}
    assert exited.timestamp_ms == now + 30 * DAY_MS
    with h.db.connect() as conn:
        daily = store.daily_sizes(conn, h.ws, "recent")
    assert (daily[0]["entered"], daily[-1]["exited"], daily[-1]["size"]) == (1, 1, 0)


def test_a_new_version_is_computed_again_and_replaces_the_old_ones_computation(h: Harness) -> None:
    now = to_ms(h.clock.now())
    rt = h.runtime(engines=EngineCache())
    order(h, "ada", now - 10 * DAY_MS)
    order(h, "bob", now - 50 * DAY_MS)
    rt.run_until_idle()
    apply(h, RECENT)
    rt.run_until_idle()
    assert members(h, "recent") == {h.profile_id("ada")}
    apply(h, {**RECENT, "when": {"performed": "Order Completed", "within": "60d"}})
    rt.run_until_idle()
    assert members(h, "recent") == {h.profile_id("ada"), h.profile_id("bob")}
    with h.db.connect() as conn:
        jobs = {j.version: j for j in store.latest_applies(conn, h.ws).values()}
    assert jobs[2].status == "done" and jobs[2].size == 2
    [bob_in] = [e for e in h.events_named(SEGMENT_ENTERED) if e.profile_id == h.profile_id("bob")]
    assert orjson.loads(bob_in.payload)["properties"]["cause"] == {"apply": 2}


def test_a_segment_waits_for_the_segments_it_refers_to(h: Harness) -> None:
    now = to_ms(h.clock.now())
    rt = h.runtime(engines=EngineCache())
    h.identify("ada", plan="pro")
    order(h, "ada", now - DAY_MS)
    h.identify("bob", plan="pro")
    rt.run_until_idle()
    h.clock.advance(timedelta(minutes=1))
    pro = {
        "id": "pro-recent",
        "name": "Pro recent",
        "when": {"all": [{"trait": "plan", "value": "pro"}, {"segment": "recent"}]},
    }
    apply(h, RECENT, pro)
    engines = EngineCache()
    h.in_transaction(lambda conn: apply_batch(conn, engines, h.clock, 1))
    assert computation(h, "recent").profiles_done == 1 and computation(h, "pro-recent").profiles_done == 0
    batches(h, engines, 1)
    assert members(h, "pro-recent") == {h.profile_id("ada")}
    assert computation(h, "pro-recent").size == 1


def test_an_apply_that_stops_midway_goes_on_from_its_position(h: Harness) -> None:
    now = to_ms(h.clock.now())
    rt = h.runtime(engines=EngineCache())
    for n in range(9):
        order(h, f"p{n}", now - n * 5 * DAY_MS)
    rt.run_until_idle()
    h.clock.advance(timedelta(minutes=1))
    apply(h, RECENT)
    h.in_transaction(lambda conn: apply_batch(conn, EngineCache(), h.clock, 4))
    assert computation(h, "recent").profiles_done == 4
    # Another process (a restart): a fresh engine cache, the stored position.
    h.runtime(engines=EngineCache()).run_until_idle()
    done = computation(h, "recent")
    assert (done.status, done.profiles_done) == ("done", 9)
    expected = {h.profile_id(f"p{n}") for n in range(9) if n * 5 < 30}
    assert members(h, "recent") == expected and done.size == len(expected)


def test_the_engines_own_segment_events_are_passed_undecided_and_an_sdks_are_decided(h: Harness) -> None:
    """The engine reacts to a membership change in the turn that makes it; the Segment Entered
    it appends is passed by the cursor without loading the person (as the simulator does).
    An event of that name sent by an SDK is someone's behaviour, and is decided."""
    apply(h, RECENT)
    engines, stats = EngineCache(), RuntimeStats()
    now = to_ms(h.clock.now())
    order(h, "ada", now)
    assert h.in_transaction(lambda conn: process_events(conn, engines, h.clock, stats=stats)) == 1
    assert len(h.events_named(SEGMENT_ENTERED)) == 1
    saved = h.q("SELECT state FROM profile_state WHERE profile_id = :p", p=h.profile_id("ada"))
    assert h.in_transaction(lambda conn: process_events(conn, engines, h.clock, stats=stats)) == 1  # read...
    assert stats.own_events_passed == 1 and stats.event_errors == 0  # ...and passed
    assert h.q("SELECT state FROM profile_state WHERE profile_id = :p", p=h.profile_id("ada")) == saved
    h.track("bob", SEGMENT_ENTERED, segment_id="recent")  # an SDK's, with its own message id
    assert h.in_transaction(lambda conn: process_events(conn, engines, h.clock, stats=stats)) == 1
    assert stats.own_events_passed == 1 and stats.events_processed == 3
    assert h.state("bob").identity == "bob"  # decided: the engine keeps a state for bob now


def test_the_engines_own_segment_events_take_no_place_in_a_batch(h: Harness) -> None:
    """A batch of N events decides N events even when the engine's own Segment Entered lie
    among them: they are read past (a batch is a commit; membership bursts must not multiply
    them). An SDK's event after them is decided in the same batch."""
    apply(h, RECENT)
    engines, stats = EngineCache(), RuntimeStats()
    now = to_ms(h.clock.now())
    for n in range(3):
        order(h, f"p{n}", now)
    assert h.in_transaction(lambda conn: process_events(conn, engines, h.clock, 3, stats)) == 3
    assert len(h.events_named(SEGMENT_ENTERED)) == 3  # appended after the three orders
    order(h, "p3", now)
    order(h, "p4", now)
    # The next two to decide lie behind three of the engine's own: one batch of two reads all five.
    assert h.in_transaction(lambda conn: process_events(conn, engines, h.clock, 2, stats)) == 5
    assert stats.own_events_passed == 3 and stats.events_processed == 8
    assert members(h, "recent") == {h.profile_id(f"p{n}") for n in range(5)}
    assert h.in_transaction(lambda conn: process_events(conn, engines, h.clock, 2, stats)) == 2  # their own two
    assert stats.own_events_passed == 5


def _publish(h: Harness, doc: dict[str, Any]) -> None:
    now = to_ms(h.clock.now())
    with h.db.begin() as conn:
        journey_store.apply_draft(conn, h.ws, Journey.model_validate(doc), now)
        journey_store.publish(conn, h.ws, doc["id"], now)


QUIET = {
    "id": "quiet",
    "name": "Quiet for 40 days",
    "trigger": {"type": "inactivity", "window": "40d"},
    "steps": {"mark": {"type": "update_profile", "set": {"quiet": True}}},
}


def test_the_engines_own_segment_events_are_no_activity(h: Harness) -> None:
    """A Segment Exited written when a window lapses is not the person doing something: an
    inactivity trigger on any event runs from their order, live and in a backfill alike."""
    apply(h, RECENT)
    rt = h.runtime(engines=EngineCache())
    _publish(h, QUIET)
    order(h, "ada", to_ms(h.clock.now()))
    order(h, "bob", to_ms(h.clock.now()))
    rt.run_until_idle()
    h.clock.advance(timedelta(days=31))  # the window lapses: Segment Exited for both
    rt.run_until_idle()
    assert len(h.events_named(SEGMENT_EXITED)) == 2
    h.clock.advance(timedelta(days=10))  # 41 days after the orders, 10 after the exits
    rt.run_until_idle()
    assert h.state("ada").traits.get("quiet") is True  # live: entered 40 days after the order
    # A journey published now looks back at the stored events: the exit is no activity.
    _publish(h, {**QUIET, "id": "quiet_again", "name": "Quiet again"})
    rt.run_until_idle()
    entered = h.q("SELECT profile_id FROM journey_runs WHERE journey_id = 'quiet_again'")
    assert {r.profile_id for r in entered} == {h.profile_id("ada"), h.profile_id("bob")}


def test_an_apply_decides_only_who_has_what_the_segment_requires_or_is_a_member(h: Harness) -> None:
    """recent-buyers requires an order: someone with none stored cannot be in it, and is
    neither loaded nor saved (their state stays byte for byte); a member of the earlier version
    with no order left in the new window is decided, and leaves."""
    now = to_ms(h.clock.now())
    rt = h.runtime(engines=EngineCache())
    order(h, "ada", now - 10 * DAY_MS)
    h.track("bob", "Page Viewed")
    rt.run_until_idle()
    apply(h, RECENT)
    rt.run_until_idle()
    assert members(h, "recent") == {h.profile_id("ada")}
    assert computation(h, "recent").profiles_done == 2
    bob = h.q("SELECT state FROM profile_state WHERE profile_id = :p", p=h.profile_id("bob"))
    assert "recent" not in bob[0].state  # never decided: the segment is not in bob's state at all
    h.clock.advance(timedelta(minutes=1))
    apply(h, {**RECENT, "when": {"performed": "Order Completed", "within": "5d"}})  # version 2
    rt.run_until_idle()
    assert members(h, "recent") == set()  # ada's order is 10 days old: decided, and out
    assert h.q("SELECT state FROM profile_state WHERE profile_id = :p", p=h.profile_id("bob")) == bob
    [exited] = h.events_named(SEGMENT_EXITED)
    assert orjson.loads(exited.payload)["properties"]["cause"] == {"apply": 2}


BOUGHT_NOT_RECENTLY = {
    "id": "not-recent",
    "name": "Bought, not recently",
    "when": {"all": [{"performed": "Order Completed", "within": "365d"}, {"segment": "recent", "negate": True}]},
}
WINBACK = {
    "id": "winback",
    "name": "Win back",
    # Ten days late is within its lateness: as the lapse timer fired that late would, it enters.
    "trigger": {"type": "segment", "segment": "recent", "on": "exit", "max_lateness": "30d"},
    "steps": {"mark": {"type": "update_profile", "set": {"winback": True}}},
}


def test_an_apply_decides_overdue_lapses_first_each_at_its_due_time(h: Harness) -> None:
    """The engine fell behind (or the process was down) past ada's 30-day lapse, and the walk
    of a new segment reaches her before her lapse timer fires: the lapse is decided first, at
    its own due time and with what follows from it (the journey on leaving `recent`), as its
    timer would have; the new segment, which reads `recent`, is then decided as of the apply's
    time. The timer that fires later changes nothing."""
    apply(h, RECENT)
    _publish(h, WINBACK)
    rt = h.runtime(engines=EngineCache())
    start = to_ms(h.clock.now())
    order(h, "ada", start)
    rt.run_until_idle()
    ada = h.profile_id("ada")
    assert members(h, "recent") == {ada}
    assert [t.due_at_ms for t in h.timers() if t.key == "seg:*"] == [start + 30 * DAY_MS]

    h.clock.advance(timedelta(days=40))  # no timer fired meanwhile
    apply(h, BOUGHT_NOT_RECENTLY)
    applied_at = to_ms(h.clock.now())
    batches(h, EngineCache(), 10)

    assert members(h, "recent") == set()
    assert members(h, "not-recent") == {ada}
    assert computation(h, "not-recent").size == 1
    [exited] = h.events_named(SEGMENT_EXITED)
    assert orjson.loads(exited.payload)["properties"]["cause"] == {"timer": "window"}
    assert exited.timestamp_ms == start + 30 * DAY_MS  # when it lapsed, not when the apply ran
    entered = {orjson.loads(e.payload)["properties"]["segment_id"]: e for e in h.events_named(SEGMENT_ENTERED)}
    assert entered["not-recent"].timestamp_ms == applied_at
    assert orjson.loads(entered["not-recent"].payload)["properties"]["cause"] == {"apply": 1}
    assert h.state("ada").traits.get("winback") is True  # the exit's journey ran, as the timer's would
    with h.db.connect() as conn:
        daily = store.daily_sizes(conn, h.ws, "recent")
    assert [(d["day"], d["exited"]) for d in daily if d["exited"]] == [((start + 30 * DAY_MS) // DAY_MS, 1)]

    rt.run_until_idle()  # the overdue timer fires now: everything was decided already
    assert len(h.events_named(SEGMENT_EXITED)) == 1
    assert members(h, "recent") == set() and members(h, "not-recent") == {ada}
    assert h.q("SELECT count(*) AS n FROM journey_runs WHERE journey_id = 'winback'")[0].n == 1
