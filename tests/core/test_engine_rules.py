"""The pure core's journey rules (issue 3 item 4): entry, re-entry, exits, goals, priority,
holdout, pause/resume/archive and versions, driven on a virtual clock."""

from __future__ import annotations

from typing import Any

import pytest

from nudgeflow.core.catalog import ARCHIVED, LIVE, PAUSED, JourneyVersion
from nudgeflow.core.turn import unit_hash
from tests.core.engine_driver import T0, D, Driver, H, M, catalog, iso, journey

ON_SIGNUP = {"type": "event", "event": "Signed Up"}


def send(template: str, next: str | None = None, **rest: Any) -> dict[str, Any]:
    return {"type": "send", "channel": "email", "template": template, "next": next, **rest}


TWO_STEPS = {"a": send("first", "w"), "w": {"type": "wait", "duration": "1d", "next": "b"}, "b": send("second")}


def two_step(id: str = "j", trigger: dict[str, Any] = ON_SIGNUP, **rest: Any):
    return journey(id, trigger, TWO_STEPS, **rest)


# --- entry filter and re-entry -----------------------------------------------------------------


def test_entry_filter_on_traits_and_history() -> None:
    j = two_step(
        entry={
            "filter": [
                {"trait": "plan", "value": "pro"},
                {"event": "Session Started", "within": "7d", "value": 2},
            ],
            "reentry": "always",
        }
    )
    d = Driver(j)
    d.identify({"plan": "pro"})
    d.track("Session Started")
    d.track("Signed Up")  # one session only
    d.advance("1h")
    d.track("Session Started")
    d.identify({"plan": "free"})
    d.track("Signed Up")  # not pro any more
    d.identify({"plan": "pro"})
    d.track("Signed Up")
    assert d.sent() == [("a", iso(T0 + H))]
    d.advance("7d")  # the first session left the window
    d.track("Signed Up")
    assert len([s for s in d.sent() if s[0] == "a"]) == 1
    assert len(d.runs()) == 1  # a person filtered out leaves no run behind


@pytest.mark.parametrize(
    ("reentry", "period", "entered"),
    [
        ("once", None, [0]),
        ("once_per_period", "7d", [0, 8 * D]),
        ("one_active", None, [0, 2 * D, 8 * D]),
        ("always", None, [0, H, 2 * D, 8 * D]),
    ],
)
def test_reentry(reentry: str, period: str | None, entered: list[int]) -> None:
    entry: dict[str, Any] = {"reentry": reentry}
    if period:
        entry["period"] = period
    d = Driver(two_step(entry=entry))
    for at in (0, H, 2 * D, 8 * D):
        d.advance_to(T0 + at)
        d.track("Signed Up")
    d.advance("30d")
    assert [r["entered_at_ms"] - T0 for r in d.runs()] == entered
    assert d.state.entries["j"]["count"] == len(entered)


def test_one_active_counts_held_runs() -> None:
    j = two_step()
    d = Driver(j)
    d.track("Signed Up")
    d.use(catalog(j, statuses={"j": PAUSED}))
    d.advance("1d")  # the wait ends while paused: held
    d.use(catalog(j))
    d.track("Signed Up")
    assert len(d.runs()) == 1


# --- exits ---------------------------------------------------------------------------------------


def cart_run(**rest: Any):
    return two_step(
        "cart",
        {"type": "event", "event": "Product Added"},
        exit={"events": [{"event": "Order Completed", "match": "cart_id"}, {"event": "Unsubscribed"}]},
        **rest,
    )


def test_exit_event_ends_the_run_and_cancels_its_timer_at_once() -> None:
    d = Driver(cart_run())
    d.track("Product Added", {"cart_id": "c1"})
    rid = d.run_id(1)
    d.advance("2h")
    mark = d.mark()
    d.track("Order Completed", {"cart_id": "c2"})  # another cart's order
    d.track("Order Completed", {})
    assert d.effects(mark) == []
    d.track("Order Completed", {"cart_id": "c1"})
    assert d.effects(mark) == [("cancel", f"run:{rid}"), ("run", "cart", "exited", "w", "exit_event:Order Completed")]
    assert d.timers == {}
    d.advance("3d")
    assert d.sent() == [("a", iso(T0))]
    assert d.runs()[0]["ended_at_ms"] == T0 + 2 * H


def test_exit_event_without_match_and_late_exit_events() -> None:
    d = Driver(cart_run())
    d.track("Product Added", {"cart_id": "c1"})
    d.track("Unsubscribed", ts=T0 - M)  # happened before the run began: no exit
    assert d.runs()[0]["status"] == "active"
    d.advance("1h")
    d.track("Unsubscribed")
    assert d.runs()[0]["exit_reason"] == "exit_event:Unsubscribed"


def test_exit_event_decided_before_a_late_trigger_event_ends_the_run_before_it_sends() -> None:
    # The order comes from the server at once; the app's batched "Product Added", stamped 20
    # seconds earlier, is flushed after it. The run the add starts is over before it
    # begins: nothing is sent to someone who already ordered that cart.
    d = Driver(cart_run(), now=T0 + 30_000)
    d.track("Order Completed", {"cart_id": "c2"}, ts=T0 + 20_000)  # another cart: no exit
    d.track("Product Added", {"cart_id": "c1"}, ts=T0 - M)
    assert d.sent() == [("a", iso(T0 + 30_000))]
    d.track("Order Completed", {"cart_id": "c1"}, ts=T0 + 20_000)  # ends that run, as it should
    d = Driver(cart_run(), now=T0 + 30_000)
    d.track("Order Completed", {"cart_id": "c1"}, ts=T0 + 20_000)
    d.track("Order Completed", {"cart_id": "c1"}, ts=T0 - 2 * M)  # before the add: no exit
    d.track("Product Added", {"cart_id": "c1"}, ts=T0 - M)
    rid = d.run_id(1)
    assert d.sends() == [] and d.timers == {}
    assert d.runs()[0]["status"] == "exited"
    assert d.runs()[0]["exit_reason"] == "exit_event:Order Completed"
    assert d.state.entries["cart"]["count"] == 1 and rid in d.state.runs


def test_exit_event_between_a_not_followed_trigger_and_its_run_ends_the_run() -> None:
    # "Product Added, then no order within an hour", ending on "Cart Emptied": emptied half
    # an hour after the add, before the run began, the cart is reminded of no more.
    trigger = {
        "type": "event_not_followed",
        "event": "Product Added",
        "not_followed_by": {"event": "Order Completed", "within": "1h", "match": "cart_id"},
    }
    exits = {"events": [{"event": "Cart Emptied", "match": "cart_id"}]}
    d = Driver(journey("cart", trigger, {"a": send("first")}, exit=exits))
    d.track("Product Added", {"cart_id": "c1"})
    d.track("Product Added", {"cart_id": "c2"})
    d.advance("30m")
    d.track("Cart Emptied", {"cart_id": "c1"})
    d.advance("2h")
    assert [r["exit_reason"] for r in d.runs()] == ["exit_event:Cart Emptied", "completed"]
    assert [s.context["trigger"]["properties"]["cart_id"] for s in d.sends()] == ["c2"]


def test_one_event_ends_a_run_and_starts_another_journey() -> None:
    # Exits are decided before triggers; the runs' rows come last, one per run and call.
    thanks = journey("thanks", {"type": "event", "event": "Order Completed"}, {"t": send("thank_you")})
    d = Driver(cart_run(), thanks)
    d.track("Product Added", {"cart_id": "c1"})
    d.advance("1h")
    mark = d.mark()
    d.track("Order Completed", {"cart_id": "c1"})
    assert [e[0:3] for e in d.effects(mark)] == [
        ("cancel", f"run:{d.run_id(1)}"),
        ("send", "thanks", "t"),
        ("run", "cart", "exited"),
        ("run", "thanks", "done"),
    ]


# --- goals ---------------------------------------------------------------------------------------

GOAL = {"event": "Order Completed", "within": "3d", "revenue": "revenue"}


def test_goal_conversion_recorded_with_revenue() -> None:
    d = Driver(two_step(goal=GOAL))
    d.track("Signed Up")
    rid = d.run_id(1)
    d.advance("2h")
    mark = d.mark()
    d.track("Order Completed", {"revenue": "49.90"})
    assert d.effects(mark) == [("run", "j", "active", "w", None)]  # converted, goes on
    row = d.runs()[0]
    assert (row["converted_at_ms"], row["revenue"]) == (T0 + 2 * H, 49.9)
    d.advance("1h")
    mark = d.mark()
    d.track("Order Completed", {"revenue": 10})  # converts once
    assert d.effects(mark) == []
    d.advance("1d")
    assert d.sent() == [("a", iso(T0)), ("b", iso(T0 + D))]
    assert d.runs()[0]["converted_at_ms"] == T0 + 2 * H and d.runs()[0]["status"] == "done"
    d.track("Page Viewed")
    assert rid not in d.state.runs  # done and converted: forgotten at the next call


def test_goal_decided_in_the_same_batch_as_the_trigger() -> None:
    # Entry and conversion are decided at one processing time, ten seconds after both happened.
    d = Driver(journey("one", ON_SIGNUP, {"a": send("only")}, goal=GOAL), now=T0 + 10_000)
    d.track("Signed Up", ts=T0)
    d.track("Order Completed", {"revenue": 5}, ts=T0 + 2_000)
    row = d.runs()[0]
    assert (row["entered_at_ms"], row["converted_at_ms"], row["revenue"]) == (T0, T0 + 2_000, 5.0)
    # The goal window is measured in event time from the trigger.
    assert d.state.runs[d.run_id(1)].goal_until == T0 + 3 * D


def test_goal_decided_before_a_late_trigger_event_converts_the_run() -> None:
    # The order (from the server, at once) is decided before the sign-up it followed (from an
    # app's queue, flushed later): the run the sign-up starts converted five minutes in.
    d = Driver(journey("one", ON_SIGNUP, {"a": send("only")}, goal=GOAL), now=T0 + 10 * M)
    d.track("Order Completed", {"revenue": 3}, ts=T0 - M)  # before the sign-up: not a conversion
    d.track("Order Completed", {"revenue": 5}, ts=T0 + 5 * M)
    d.track("Order Completed", {"revenue": 7}, ts=T0 + 6 * M)  # the first one converts
    d.track("Signed Up", ts=T0)
    row = d.runs()[0]
    assert (row["entered_at_ms"], row["converted_at_ms"], row["revenue"]) == (T0, T0 + 5 * M, 5.0)
    # With `exit: true`, converting ends the run before its first step.
    d = Driver(journey("one", ON_SIGNUP, {"a": send("only")}, goal={**GOAL, "exit": True}), now=T0 + 10 * M)
    d.track("Order Completed", {"revenue": 5}, ts=T0 + 5 * M)
    d.track("Signed Up", ts=T0)
    assert d.sends() == [] and (d.runs()[0]["status"], d.runs()[0]["exit_reason"]) == ("exited", "converted")


def test_a_conversion_found_at_a_late_trigger_event_names_its_goal_event_as_one_on_time_does() -> None:
    # Two journeys converted by one order: the cart's on time, the sign-up's as its late
    # trigger event enters. Both name the order's messageId, so measure/ counts it once.
    cart = journey("cart", {"type": "event", "event": "Product Added"}, {"a": send("only")}, goal=GOAL)
    welcome = journey("welcome", ON_SIGNUP, {"a": send("only")}, goal=GOAL)
    d = Driver(cart, welcome, now=T0 + 10 * M, roundtrip=True)
    d.track("Product Added", ts=T0 - M)
    d.track("Order Completed", {"revenue": 5}, ts=T0 + 5 * M, message_id="order-1")
    d.track("Signed Up", ts=T0)
    rows = {r["journey_id"]: r for r in d.runs()}
    assert {j: (r["converted_at_ms"], r["converted_by"], r["revenue"]) for j, r in rows.items()} == {
        "cart": (T0 + 5 * M, "order-1", 5.0),
        "welcome": (T0 + 5 * M, "order-1", 5.0),
    }


def test_goal_of_the_trigger_events_name_is_not_converted_by_the_trigger_itself() -> None:
    repeat = journey("repeat", {"type": "event", "event": "Order Completed"}, {"a": send("thanks")}, goal=GOAL)
    d = Driver(repeat, now=T0 + 10 * M)
    d.track("Order Completed", {"revenue": 5}, ts=T0)
    assert d.runs()[0]["converted_at_ms"] is None
    d.track("Order Completed", {"revenue": 8}, ts=T0 + M)  # a second order converts
    assert d.runs()[0]["converted_at_ms"] == T0 + M


def test_goal_after_the_last_step_within_the_window() -> None:
    d = Driver(journey("one", ON_SIGNUP, {"a": send("only")}, goal=GOAL))
    d.track("Signed Up")
    assert d.runs()[0]["status"] == "done"
    d.advance("2d")
    d.track("Order Completed", {"revenue": 12, "order_id": "o1"})
    row = d.runs()[0]
    assert (row["status"], row["converted_at_ms"], row["revenue"]) == ("done", T0 + 2 * D, 12.0)


def test_goal_outside_the_window_does_not_count() -> None:
    d = Driver(journey("one", ON_SIGNUP, {"a": send("only")}, goal=GOAL))
    d.track("Signed Up")
    d.advance("3d")
    d.advance(1)
    mark = d.mark()
    d.track("Order Completed", {"revenue": 12})
    assert d.effects(mark) == [] and d.state.runs == {}


def test_goal_without_revenue_property_and_goal_exit() -> None:
    d = Driver(two_step(goal={**GOAL, "exit": True}))
    d.track("Signed Up")
    d.advance("1h")
    mark = d.mark()
    d.track("Order Completed", {"revenue": "lots"})
    assert d.effects(mark) == [("cancel", f"run:{d.run_id(1)}"), ("run", "j", "exited", "w", "converted")]
    row = d.runs()[0]
    assert (row["converted_at_ms"], row["revenue"]) == (T0 + H, None)
    d.advance("3d")
    assert d.sent() == [("a", iso(T0))]


# --- priority ------------------------------------------------------------------------------------


def test_priority_orders_the_entries_one_event_starts() -> None:
    js = [
        journey(id, ON_SIGNUP, {"s": send(id)}, priority=p)
        for id, p in (("alpha", 1), ("mid", 5), ("zeta", 10), ("beta", 1))
    ]
    d = Driver(*js)
    d.track("Signed Up")
    assert [m.journey_id for m in d.sends()] == ["zeta", "mid", "alpha", "beta"]
    assert [r["journey_id"] for r in d.runs()] == ["zeta", "mid", "alpha", "beta"]


# --- holdout -------------------------------------------------------------------------------------


def _profile(holdout: bool, journey_id: str, share: float) -> str:
    return next(
        p for p in (f"user-{i}" for i in range(1000)) if (unit_hash("holdout", journey_id, p) < share) == holdout
    )


def test_holdout_enters_is_recorded_sends_nothing_and_still_converts() -> None:
    j = two_step(holdout=0.3, goal=GOAL)
    d = Driver(j, profile=_profile(True, "j", 0.3))
    d.track("Signed Up")
    # The holdout run walks the steps like a treated one (so it blocks re-entry for as
    # long and converts over the same time) but sends nothing.
    assert d.sends() == [] and d.runs()[0]["holdout"] == 1 and d.runs()[0]["status"] == "active"
    assert len(d.timers) == 1
    d.advance("1d")
    d.track("Order Completed", {"revenue": 30})
    row = d.runs()[0]
    assert (row["holdout"], row["converted_at_ms"], row["revenue"]) == (1, T0 + D, 30.0)
    d.advance("10d")
    assert d.sends() == []
    assert d.runs()[0]["status"] == "done" and d.timers == {}
    # Someone outside the holdout gets the messages.
    d = Driver(j, profile=_profile(False, "j", 0.3))
    d.track("Signed Up")
    d.advance("2d")
    assert [s for s, _ in d.sent()] == ["a", "b"] and d.runs()[0]["holdout"] == 0


def test_holdout_share_over_many_profiles() -> None:
    cat = catalog(journey("h", ON_SIGNUP, {"s": send("x")}, holdout=0.2))
    held = 0
    for i in range(2000):
        d = Driver(cat=cat, profile=f"p{i}")
        d.track("Signed Up")
        held += d.runs()[0]["holdout"]
        assert len(d.sends()) == 1 - d.runs()[0]["holdout"]
    assert abs(held - 400) < 80, held


# --- pause, resume, archive ------------------------------------------------------------------------


def test_pause_holds_a_due_run_and_resume_continues_it() -> None:
    j = two_step()
    d = Driver(j)
    d.track("Signed Up")
    rid = d.run_id(1)
    d.advance("12h")
    d.use(catalog(j, statuses={"j": PAUSED}))
    d.track("Signed Up")  # a paused journey starts nothing
    mark = d.mark()
    d.advance("12h")
    assert d.effects(mark) == [("run", "j", "held", "w", None)]
    assert d.timers == {}
    d.advance("2d")
    assert d.sent() == [("a", iso(T0))]
    # Resumed: the runtime arms one resume timer per held run, due now.
    d.use(catalog(j))
    d.add_timer(f"resume:{rid}", d.now, {"kind": "resume", "run_id": rid})
    mark = d.mark()
    d.advance("1m")
    assert d.effects(mark) == [("send", "j", "b", "second", None, T0 + 3 * D), ("run", "j", "done", None, "completed")]


def test_resume_timer_while_still_paused_or_for_an_active_run_does_nothing() -> None:
    j = two_step()
    d = Driver(j)
    d.track("Signed Up")
    rid = d.run_id(1)
    d.add_timer(f"resume:{rid}", d.now, {"kind": "resume", "run_id": rid})  # not held
    d.use(catalog(j, statuses={"j": PAUSED}))
    d.advance("1d")
    d.add_timer(f"resume:{rid}", d.now, {"kind": "resume", "run_id": rid})  # still paused
    mark = d.mark()
    d.advance("1m")
    assert d.effects(mark) == []
    assert d.state.runs[rid].status == "held"


def test_pause_while_waiting_for_an_event() -> None:
    j = journey(
        "wfe",
        ON_SIGNUP,
        {
            "wait": {
                "type": "wait_for_event",
                "event": "Trial Started",
                "timeout": "3d",
                "on_event": "yes",
                "on_timeout": "no",
            },
            "yes": send("yes"),
            "no": send("no"),
        },
    )
    # The event arrives while paused: the run is held, nothing is sent, and resuming takes
    # the event branch.
    d = Driver(j)
    d.track("Signed Up")
    rid = d.run_id(1)
    d.use(catalog(j, statuses={"wfe": PAUSED}))
    d.advance("1h")
    mark = d.mark()
    d.track("Trial Started")
    assert d.effects(mark) == [("cancel", f"run:{rid}"), ("run", "wfe", "held", "wait", None)]
    d.advance("5d")
    assert d.sends() == []
    d.use(catalog(j))
    d.add_timer(f"resume:{rid}", d.now, {"kind": "resume", "run_id": rid})
    d.advance("1m")
    assert d.sent() == [("yes", iso(T0 + H + 5 * D))]
    # The timeout falls due while paused: held, and resuming takes the timeout branch.
    d = Driver(j)
    d.track("Signed Up")
    d.use(catalog(j, statuses={"wfe": PAUSED}))
    d.advance("3d")
    assert d.runs()[0]["status"] == "held"
    d.track("Trial Started")  # too late: the wait is over
    d.use(catalog(j))
    d.add_timer(f"resume:{rid}", d.now, {"kind": "resume", "run_id": rid})
    d.advance("1m")
    assert d.sent() == [("no", iso(T0 + 3 * D))]


def test_archived_while_waiting_for_an_event() -> None:
    j = journey(
        "wfe",
        ON_SIGNUP,
        {
            "wait": {"type": "wait_for_event", "event": "Trial Started", "timeout": "3d", "on_event": "yes"},
            "yes": send("yes"),
        },
    )
    d = Driver(j)
    d.track("Signed Up")
    d.use(catalog(statuses={"wfe": ARCHIVED}, load_version=lambda jid, v: j))
    mark = d.mark()
    d.track("Trial Started")
    assert d.effects(mark) == [("cancel", f"run:{d.run_id(1)}"), ("run", "wfe", "exited", "wait", "archived")]
    assert d.sends() == [] and d.timers == {}


def test_exit_event_ends_a_held_run() -> None:
    j = cart_run()
    d = Driver(j)
    d.track("Product Added", {"cart_id": "c1"})
    d.use(catalog(j, statuses={"cart": PAUSED}))
    d.advance("1d")
    mark = d.mark()
    d.track("Order Completed", {"cart_id": "c1"})
    assert d.effects(mark) == [("run", "cart", "exited", "w", "exit_event:Order Completed")]


def test_archived_run_exits_when_its_timer_fires() -> None:
    j = two_step()
    d = Driver(j)
    d.track("Signed Up")
    rid = d.run_id(1)
    d.use(catalog(statuses={"j": ARCHIVED}, load_version=lambda jid, v: j if (jid, v) == ("j", 1) else None))
    d.track("Signed Up")  # starts nothing
    mark = d.mark()
    d.advance("1d")
    assert d.effects(mark) == [("cancel", f"run:{rid}"), ("run", "j", "exited", "w", "archived")]
    assert d.sent() == [("a", iso(T0))]


def test_archived_while_held_exits_on_the_wake_up_timer() -> None:
    j = two_step()
    d = Driver(j)
    d.track("Signed Up")
    rid = d.run_id(1)
    d.use(catalog(j, statuses={"j": PAUSED}))
    d.advance("1d")
    d.use(catalog(statuses={"j": ARCHIVED}, load_version=lambda jid, v: j))
    d.add_timer(f"resume:{rid}", d.now, {"kind": "resume", "run_id": rid})
    mark = d.mark()
    d.advance("1m")
    assert d.effects(mark) == [("run", "j", "exited", "w", "archived")]


# --- versions ------------------------------------------------------------------------------------


def test_a_run_stays_on_its_version_when_a_new_one_is_published() -> None:
    v1 = two_step()
    v2 = journey(
        "j",
        ON_SIGNUP,
        {"a": send("first_v2", "w"), "w": {"type": "wait", "duration": "2d", "next": "c"}, "c": send("third_v2")},
    )
    d = Driver(JourneyVersion("j", 1, v1))
    d.track("Signed Up")
    loads: list[tuple[str, int]] = []

    def load_version(journey_id: str, version: int):
        loads.append((journey_id, version))
        return v1 if (journey_id, version) == ("j", 1) else None

    d.use(catalog(JourneyVersion("j", 2, v2), load_version=load_version))
    d.advance("1d")
    assert [(m.version, m.step, m.template) for m in d.sends()] == [(1, "a", "first"), (1, "b", "second")]
    assert loads == [("j", 1)]  # loaded once, then cached
    d.track("Signed Up")  # a new run enters the new version
    d.advance("3d")
    assert [(m.version, m.step, m.template, m.at_ms) for m in d.sends()][2:] == [
        (2, "a", "first_v2", T0 + D),
        (2, "c", "third_v2", T0 + 3 * D),
    ]


def test_a_run_whose_version_is_gone_exits() -> None:
    j = two_step()
    d = Driver(j)
    d.track("Signed Up")
    d.use(catalog(JourneyVersion("j", 2, j)))  # no loader: version 1 cannot be found
    d.advance("1d")
    assert d.runs()[0]["exit_reason"] == "journey_missing"


def test_statuses_default_to_live_for_live_journeys() -> None:
    cat = catalog(two_step())
    assert cat.status("j") == LIVE and cat.status("unknown") == ARCHIVED
