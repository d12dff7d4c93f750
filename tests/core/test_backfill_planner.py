"""The backfill planner, pure: what a journey published now does for a person already known."""

from __future__ import annotations

from typing import Any

from nudgeflow.core.backfill import DAY_MS, HISTORY_CAP, MAX_LOOKBACK_MS, Past, needs
from nudgeflow.core.engine import Engine
from nudgeflow.core.state import ProfileState
from tests.core.engine_driver import T0, catalog, journey, summarize

MARK = {"mark": {"type": "update_profile", "set": {"x": 1}}}


def winback(**rest: Any) -> Any:
    return journey("winback", {"type": "inactivity", "window": "7d", "events": ["Session Started"]}, MARK, **rest)


def backfill(j: Any, state: ProfileState, past: Past, now: int = T0) -> list[tuple[Any, ...]]:
    return [summarize(e) for e in Engine(catalog(j)).on_backfill(state, j.id, past, now)]


def test_the_already_quiet_enter_now_and_the_others_get_their_timer() -> None:
    quiet, recent = ProfileState("a"), ProfileState("b")
    assert ("run", "winback", "done", None, "completed") in backfill(winback(), quiet, Past(0, T0 - 8 * DAY_MS))
    assert quiet.activity["winback"] == {"last": T0 - 8 * DAY_MS, "armed": False}
    assert backfill(winback(), recent, Past(0, T0 - 2 * DAY_MS)) == [("schedule", "idle:winback", T0 + 5 * DAY_MS)]
    assert recent.activity["winback"] == {"last": T0 - 2 * DAY_MS, "armed": True}


def test_with_no_activity_stored_the_profile_creation_counts() -> None:
    state = ProfileState("a")
    assert backfill(winback(), state, Past(T0 - DAY_MS, None)) == [("schedule", "idle:winback", T0 + 6 * DAY_MS)]


def test_a_person_the_engine_already_tracks_is_left_as_it_is() -> None:
    # Entered for this silence already (not armed): a republish must not enter them again.
    state = ProfileState("a", activity={"winback": {"last": T0 - 30 * DAY_MS, "armed": False}})
    assert backfill(winback(), state, Past(0, T0 - 30 * DAY_MS)) == []
    assert state.entries == {}
    # Armed: a later stored activity than the record moves it (the timer re-checks).
    state = ProfileState("b", activity={"winback": {"last": T0 - 9 * DAY_MS, "armed": True}})
    assert backfill(winback(), state, Past(0, T0 - 3 * DAY_MS)) == []
    assert state.activity["winback"] == {"last": T0 - 3 * DAY_MS, "armed": True}


def test_history_is_rebuilt_from_the_stored_events_with_the_kept_properties_and_cap() -> None:
    j = winback(
        entry={
            "filter": [
                {
                    "event": "Order Completed",
                    "where": [{"property": "total", "op": "gt", "value": 10}],
                    "within": "90d",
                    "op": "eq",
                    "value": 0,
                }
            ]
        }
    )
    orders = (
        [(T0 - 100 * DAY_MS, {"total": 50, "sku": "old"})]
        + [(T0 - DAY_MS * 80 + i, {"total": 5, "sku": "s"}) for i in range(HISTORY_CAP + 5)]
        + [(T0 - DAY_MS, {"total": 20, "sku": "new"})]
    )
    state = ProfileState("a", history={"Order Completed": [[T0 - 5, {"total": 99}]]})
    effects = backfill(j, state, Past(0, T0 - 8 * DAY_MS, {"Order Completed": orders}))
    kept = state.history["Order Completed"]
    assert len(kept) == HISTORY_CAP and kept[-1] == [T0 - DAY_MS, {"total": 20}]  # only the filter's property
    assert all(ts > T0 - 90 * DAY_MS for ts, _ in kept)  # the window's cut, from the newest
    # An order over 10 within 90 days: quiet, but the entry filter keeps them out.
    assert not any(e[0] == "run" for e in effects)
    assert state.activity["winback"]["armed"] is False


def test_milestone_counts_and_sums_start_from_the_stored_events() -> None:
    count = journey("third", {"type": "milestone", "event": "Order Completed", "count": 3}, MARK)
    state = ProfileState("a", counters={"third:count": 1})
    past = Past(0, None, {"Order Completed": [(T0 - 3 * DAY_MS, {}), (T0 - 2 * DAY_MS, {})]})
    assert backfill(count, state, past) == []  # reaching it needs a new order: nobody enters at publish
    assert state.counters["third:count"] == 2
    total = journey(
        "big", {"type": "milestone", "event": "Order Completed", "sum": {"property": "revenue", "reaches": 500}}, MARK
    )
    state = ProfileState("b")
    past = Past(0, None, {"Order Completed": [(1, {"revenue": 300}), (2, {"revenue": "150.5"}), (3, {"revenue": "x"})]})
    assert backfill(total, state, past) == []
    assert state.counters["big:sum"] == 450.5


def test_a_date_trait_already_held_arms_its_timer_and_other_triggers_do_nothing() -> None:
    trial = journey("trial", {"type": "date_relative", "trait": "trial_ends_at", "offset": "-1d", "at": "09:00"}, MARK)
    state = ProfileState("a", traits={"trial_ends_at": "2026-03-10", "timezone": "UTC"})
    [(kind, key, due)] = backfill(trial, state, Past(0))
    assert (kind, key) == ("schedule", "date:trial") and due == T0 + 7 * DAY_MS - 3 * 3_600_000
    assert backfill(trial, ProfileState("b"), Past(0)) == []
    cart = journey("cart", {"type": "event", "event": "Product Added"}, MARK)
    assert backfill(cart, ProfileState("c"), Past(0, T0 - 100 * DAY_MS)) == []


def test_needs_reads_only_what_the_journey_looks_at() -> None:
    j = winback(entry={"filter": [{"event": "Order Completed", "within": "90d"}]})
    got = needs(catalog(j), catalog(j).live["winback"])
    assert (got.activity, got.activity_names, got.names, got.lookback_ms) == (
        True,
        ("Session Started",),
        frozenset({"Order Completed"}),
        90 * DAY_MS,
    )
    forever = journey("f", {"type": "event", "event": "x"}, MARK, entry={"filter": [{"event": "Order Completed"}]})
    got = needs(catalog(forever), catalog(forever).live["f"])
    assert (got.activity, got.names, got.lookback_ms) == (False, frozenset({"Order Completed"}), MAX_LOOKBACK_MS)


def test_a_paused_or_unknown_journey_plans_nothing() -> None:
    j = winback()
    engine = Engine(catalog(j, statuses={"winback": "paused"}))
    assert engine.on_backfill(ProfileState("a"), "winback", Past(0, 0), T0) == []
    assert Engine(catalog(j)).on_backfill(ProfileState("a"), "ghost", Past(0, 0), T0) == []
