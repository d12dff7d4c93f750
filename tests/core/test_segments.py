"""Segment membership in the pure core, on a virtual clock (core/segments.py).

Each test drives the engine with tests/core/engine_driver.py's Driver and reads the
SegmentChanged effects: which segment, entered or exited, at which instant, and why.
"""

from __future__ import annotations

from typing import Any

import pytest

from nudgeflow.core import segments
from nudgeflow.core.catalog import Catalog, JourneyVersion
from nudgeflow.core.effects import ScheduleTimer, SegmentChanged
from nudgeflow.core.engine import Engine
from nudgeflow.core.inputs import EventInput
from nudgeflow.core.segment_index import SegmentVersion
from nudgeflow.core.segments import CHOICES
from nudgeflow.core.state import ProfileState
from nudgeflow.model import event_names
from nudgeflow.model.events import OWN_EVENT_PREFIX
from nudgeflow.model.journey_checks import Delivery, check_journey
from nudgeflow.model.journeys import Journey
from nudgeflow.model.segments import Segment, SegmentCycleError, segment_order
from tests.core.engine_driver import T0, D, Driver, H, journey, ms

ORDER = "Order Completed"


def seg(id: str, when: dict[str, Any]) -> Segment:
    return Segment.model_validate({"id": id, "name": id, "when": when})


def cat(*items: Segment | Journey, versions: dict[str, int] | None = None) -> Catalog:
    segs = [SegmentVersion(s.id, (versions or {}).get(s.id, 1), s) for s in items if isinstance(s, Segment)]
    live = [JourneyVersion(j.id, 1, j) for j in items if isinstance(j, Journey)]
    return Catalog(live, segments=segs)


def driver(*items: Segment | Journey, roundtrip: bool = True) -> Driver:
    return Driver(cat=cat(*items), roundtrip=roundtrip)


def moves(d: Driver, since: int = 0) -> list[tuple[str, str, int, dict[str, Any]]]:
    """(segment, entered|exited, at, cause) of every SegmentChanged since a mark."""
    return [
        (e.segment_id, "entered" if e.entered else "exited", e.at_ms, e.cause)
        for _, e in d.log[since:]
        if isinstance(e, SegmentChanged)
    ]


def ev(d: Driver, name: str) -> dict[str, Any]:
    """The cause naming the last event the driver sent."""
    return {"event": name, "message_id": f"{OWN_EVENT_PREFIX}m{d._seq}" if name in CHOICES else f"m{d._seq}"}


TIMER = {"timer": "window"}


# --- traits -----------------------------------------------------------------------------------


def test_trait_condition_enters_and_exits_on_identify() -> None:
    d = driver(seg("pro", {"trait": "plan", "op": "eq", "value": "pro"}))
    d.identify({"plan": "free"})
    assert moves(d) == []
    d.now += H
    d.identify({"plan": "pro"})
    assert moves(d) == [("pro", "entered", T0 + H, ev(d, "identify"))]
    assert d.state.membership == {"pro": T0 + H}
    mark = d.mark()
    d.track("Page Viewed")  # reads no trait: the segment is not decided again
    d.now += H
    d.identify({"plan": "free"})
    assert moves(d, mark) == [("pro", "exited", T0 + 2 * H, ev(d, "identify"))]
    assert d.state.membership == {}


def test_trait_reference_and_group_trait() -> None:
    d = driver(
        seg("over", {"trait": "spent", "op": "gt", "value": {"ref": "profile.budget"}}),
        seg("enterprise", {"trait": "group.plan", "op": "eq", "value": "enterprise"}),
    )
    d.identify({"spent": 5, "budget": 10})
    assert moves(d) == []
    d.identify({"budget": 4})  # only the referenced trait changed
    assert moves(d)[-1][:2] == ("over", "entered")
    d._seq += 1
    d.event(EventInput(f"m{d._seq}", "group", None, d.now, traits={"plan": "enterprise"}, group_id="acme"))
    assert moves(d)[-1] == ("enterprise", "entered", T0, ev(d, "group"))


# --- performed --------------------------------------------------------------------------------


def test_three_orders_in_30_days_enters_and_lapses_by_timer() -> None:
    d = driver(seg("loyal", {"performed": ORDER, "within": "30d", "count": 3}))
    d.track(ORDER)
    d.now += D
    d.track(ORDER)
    assert moves(d) == []
    d.now += D
    d.track(ORDER)
    assert moves(d) == [("loyal", "entered", T0 + 2 * D, ev(d, ORDER))]
    # The first order leaves the window 30 days after it: count 2, out.
    assert d.timers["seg:*"][0] == T0 + 30 * D
    mark = d.mark()
    d.advance("40d")
    assert moves(d, mark) == [("loyal", "exited", T0 + 30 * D, TIMER)]
    assert "seg:*" not in d.timers  # nothing left that could change without an event


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "Australia/Lord_Howe", None])
def test_a_window_is_a_length_of_time_across_a_change_of_clocks_whatever_the_zone(zone: str | None) -> None:
    """`within: 1d` is 24 hours, not a calendar day of the person's: an order at 12:00 EST on
    Saturday 7 March 2026 lapses at 13:00 EDT on Sunday, the night New York's clocks sprang
    forward (as at 24 hours after it for everyone else)."""
    saturday_noon_ny = ms("2026-03-07T17:00:00Z")
    d = Driver(cat=cat(seg("today", {"performed": ORDER, "within": "1d"})), now=saturday_noon_ny)
    if zone is not None:
        d.identify({"timezone": zone})
    d.track(ORDER)
    mark = d.mark()
    d.advance("2d")
    assert moves(d, mark) == [("today", "exited", saturday_noon_ny + D, TIMER)]


def test_lapse_timer_waits_for_the_occurrence_that_matters() -> None:
    d = driver(seg("loyal", {"performed": ORDER, "within": "30d", "count": 2}))
    for day in range(4):  # four orders, a day apart
        d.now = T0 + day * D
        d.track(ORDER)
    # Two orders are left until the third one from the newest lapses: the 3rd order's day + 30.
    # A member of "2 orders" stays one after another order, so the later orders were not
    # decided: the lapse kept is the second order's (the first order + 30 days), too early,
    # and the timer stays there (moving it would cost a write per order).
    assert d.state.segment_facts["due"] == {"loyal": T0 + 30 * D}
    assert d.timers["seg:*"][0] == T0 + 30 * D
    mark = d.mark()
    d.advance_to(T0 + 30 * D)  # fires early: nothing is due yet, and it is armed again
    assert moves(d, mark) == []
    assert d.timers["seg:*"][0] == T0 + 32 * D
    d.advance_to(T0 + 32 * D - 1)
    assert moves(d, mark) == []
    d.advance_to(T0 + 33 * D)
    assert moves(d, mark) == [("loyal", "exited", T0 + 32 * D, TIMER)]


def test_no_order_in_30_days_becomes_true_by_timer() -> None:
    d = driver(seg("lapsed", {"not": {"performed": ORDER, "within": "30d"}}))
    d.identify({"email": "ada@example.com"})  # the first event decides every segment
    assert moves(d) == [("lapsed", "entered", T0, ev(d, "identify"))]
    d.now += D
    d.track(ORDER)
    assert moves(d)[-1] == ("lapsed", "exited", T0 + D, ev(d, ORDER))
    mark = d.mark()
    d.advance("31d")
    assert moves(d, mark) == [("lapsed", "entered", T0 + 31 * D, TIMER)]


def test_count_eq_zero_is_no_order() -> None:
    d = driver(seg("none", {"performed": ORDER, "within": "7d", "op": "eq", "count": 0}))
    d.track("Signed Up")
    assert moves(d) == [("none", "entered", T0, ev(d, "Signed Up"))]
    d.track(ORDER)
    d.advance("8d")
    assert [m[:3] for m in moves(d)[1:]] == [("none", "exited", T0), ("none", "entered", T0 + 7 * D)]


def test_sum_and_where() -> None:
    d = driver(
        seg(
            "big",
            {
                "performed": ORDER,
                "within": "7d",
                "where": [{"property": "currency", "value": "EUR"}],
                "sum": {"property": "revenue", "op": "gte", "value": 100},
            },
        )
    )
    d.track(ORDER, {"revenue": 60, "currency": "EUR"})
    d.now += H
    d.track(ORDER, {"revenue": 500, "currency": "USD"})  # filtered out
    d.now += H
    d.track(ORDER, {"revenue": "abc", "currency": "EUR"})  # not a number: left out
    assert moves(d) == []
    d.now += H
    d.track(ORDER, {"revenue": "40", "currency": "EUR"})
    assert moves(d) == [("big", "entered", T0 + 3 * H, ev(d, ORDER))]
    # 60 lapses 7 days after the first order: 40 < 100.
    assert d.timers["seg:*"][0] == T0 + 7 * D
    d.advance("8d")
    assert moves(d)[-1] == ("big", "exited", T0 + 7 * D, TIMER)


def test_a_where_filter_referring_to_a_trait_is_decided_again_when_the_trait_changes() -> None:
    d = driver(
        seg(
            "home",
            {
                "performed": ORDER,
                "within": "30d",
                "where": [{"property": "currency", "value": {"ref": "profile.currency"}}],
            },
        )
    )
    d.identify({"currency": "EUR"})
    d.track(ORDER, {"currency": "USD"})
    assert moves(d) == []
    d.now += H
    d.identify({"currency": "USD"})  # the order counts now
    assert moves(d) == [("home", "entered", T0 + H, ev(d, "identify"))]


def test_count_keeps_enough_history_past_the_default_cap() -> None:
    d = driver(seg("heavy", {"performed": "Page Viewed", "within": "1d", "count": 250}))
    for i in range(260):
        d.now = T0 + i * 1000
        d.track("Page Viewed")
    assert moves(d)[0][:2] == ("heavy", "entered")
    assert len(d.state.history["Page Viewed"]) == 251  # count + 1: enough for every comparison


# --- engaged ----------------------------------------------------------------------------------


def test_engaged_opened_counts_clicks_and_filters_by_journey() -> None:
    d = driver(
        seg("openers", {"engaged": "opened", "channel": "email", "within": "7d"}),
        seg("welcome_clickers", {"engaged": "clicked", "journey": "welcome", "within": "7d"}),
    )
    d.track(event_names.EMAIL_LINK_CLICKED, {"journey_id": "other"})
    assert moves(d) == [("openers", "entered", T0, ev(d, event_names.EMAIL_LINK_CLICKED))]
    d.now += D
    d.track(event_names.PUSH_CLICKED, {"journey_id": "welcome"})
    assert moves(d)[-1] == ("welcome_clickers", "entered", T0 + D, ev(d, event_names.PUSH_CLICKED))
    d.advance("10d")
    assert [m[:3] for m in moves(d)[2:]] == [
        ("openers", "exited", T0 + 7 * D),
        ("welcome_clickers", "exited", T0 + 8 * D),
    ]


# --- reachable ----------------------------------------------------------------------------------


def test_reachable_email_follows_unsubscribe_from_all() -> None:
    d = driver(seg("mailable", {"reachable": "email"}))
    d.track("Signed Up")
    assert moves(d) == []
    d.identify({"email": "ada@example.com"})
    assert moves(d)[-1][:2] == ("mailable", "entered")
    d.track(event_names.UNSUBSCRIBED, {"topic": "news"})  # one topic: still reachable
    assert len(moves(d)) == 1
    d.track(event_names.UNSUBSCRIBED, {"topic": "*", "method": "one_click"})
    assert moves(d)[-1] == ("mailable", "exited", T0, ev(d, event_names.UNSUBSCRIBED))
    d.track(event_names.SUBSCRIPTION_PREFERENCES_UPDATED, {"subscribed": True, "frequency": "normal"})
    assert moves(d)[-1][:2] == ("mailable", "entered")
    d.identify({"email": ""})
    assert moves(d)[-1][:2] == ("mailable", "exited")


def test_the_latest_consent_by_event_time_decides_reachability_whatever_order_it_arrives_in() -> None:
    d = driver(seg("mailable", {"reachable": "email"}), seg("pushable", {"reachable": "push"}))
    d.identify({"email": "ada@example.com"})
    d.track("App Opened", context={"device": {"type": "ios", "token": "ab12"}})
    assert d.state.membership.keys() == {"mailable", "pushable"}
    d.now = T0 + 2 * H
    d.track(event_names.UNSUBSCRIBED, {"topic": "*"})
    d.track(event_names.CONSENT_UPDATED, {"channel": "push", "topic": "*", "subscribed": False})
    assert d.state.membership.keys() == set()
    # Older choices, arriving late (an offline queue): the newer ones above still decide.
    d.track(event_names.SUBSCRIPTION_PREFERENCES_UPDATED, {"subscribed": True}, ts=T0 + H)
    d.track(event_names.CONSENT_UPDATED, {"channel": "push", "topic": "*", "subscribed": True}, ts=T0 + H)
    assert d.state.membership.keys() == set()
    # The same facts as rebuilt from the stored events (an apply), which reads them in time order.
    past = [
        EventInput("nudgeflow:u", "track", event_names.UNSUBSCRIBED, T0 + 2 * H, {"topic": "*"}),
        EventInput("nudgeflow:s", "track", event_names.SUBSCRIPTION_PREFERENCES_UPDATED, T0 + H, {"subscribed": True}),
    ]
    assert not segments.compute(d.engine.catalog, d.state, "mailable", T0 + 3 * H, past).member
    d.now = T0 + 3 * H
    d.track(event_names.SUBSCRIPTION_PREFERENCES_UPDATED, {"subscribed": True})  # a newer yes
    assert d.state.membership.keys() == {"mailable"}


def test_a_push_subscription_and_its_unsubscribe_count_in_event_time_order() -> None:
    d = driver(seg("pushable", {"reachable": "push"}))
    d.now = T0 + 2 * H
    d.track(event_names.PUSH_SUBSCRIBED, {"provider": "webpush", "endpoint_hash": "h1"})
    assert d.state.membership.keys() == {"pushable"}
    # An unsubscribe of the same endpoint from before it subscribed (again), arriving late.
    d.track(event_names.PUSH_UNSUBSCRIBED, {"endpoint_hash": "h1"}, ts=T0 + H)
    assert d.state.membership.keys() == {"pushable"}
    d.track(event_names.PUSH_UNSUBSCRIBED, {"endpoint_hash": "h1"})  # a newer one
    assert d.state.membership.keys() == set()
    d.track(event_names.PUSH_SUBSCRIBED, {"provider": "webpush", "endpoint_hash": "h1"}, ts=T0 + H)  # older
    assert d.state.membership.keys() == set()


def test_reachable_push_webpush_and_device_token() -> None:
    d = driver(seg("pushable", {"reachable": "push"}))
    d.track(event_names.PUSH_SUBSCRIBED, {"provider": "webpush", "endpoint_hash": "h1"})
    assert moves(d) == [("pushable", "entered", T0, ev(d, event_names.PUSH_SUBSCRIBED))]
    d.track(event_names.PUSH_UNSUBSCRIBED, {"endpoint_hash": "other"})
    assert len(moves(d)) == 1
    d.track(event_names.PUSH_UNSUBSCRIBED, {"endpoint_hash": "h1"})
    assert moves(d)[-1][:2] == ("pushable", "exited")
    d.track("App Opened", context={"device": {"type": "ios", "token": "ab12"}})
    assert moves(d)[-1] == ("pushable", "entered", T0, ev(d, "App Opened"))
    mark = d.mark()
    d.track("App Opened", context={"device": {"type": "ios", "token": "ab12"}})
    assert moves(d, mark) == []  # a device token, once seen, stays: no event says it is gone


# --- all / any / not, segments of segments --------------------------------------------------------


def test_all_any_not() -> None:
    d = driver(
        seg(
            "target",
            {
                "all": [
                    {"any": [{"trait": "plan", "value": "pro"}, {"trait": "plan", "value": "team"}]},
                    {"not": {"trait": "country", "value": "FR"}},
                ]
            },
        )
    )
    d.identify({"plan": "team"})
    assert moves(d)[-1][:2] == ("target", "entered")
    d.identify({"country": "FR"})
    assert moves(d)[-1][:2] == ("target", "exited")
    d.identify({"country": "DE", "plan": "free"})
    assert len(moves(d)) == 2


def test_segment_of_segment_follows_in_the_same_turn() -> None:
    d = driver(
        seg("vip_lapsed", {"all": [{"segment": "vip"}, {"segment": "active", "negate": True}]}),
        seg("active", {"performed": "Session Started", "within": "7d"}),
        seg("vip", {"trait": "tier", "value": "gold"}),
    )
    d.identify({"tier": "gold"})
    assert [m[:2] for m in moves(d)] == [("vip", "entered"), ("vip_lapsed", "entered")]
    d.track("Session Started")
    assert [m[:2] for m in moves(d)[2:]] == [("active", "entered"), ("vip_lapsed", "exited")]
    mark = d.mark()
    d.advance("8d")
    assert moves(d, mark) == [
        ("active", "exited", T0 + 7 * D, TIMER),
        ("vip_lapsed", "entered", T0 + 7 * D, TIMER),
    ]


def test_a_segment_that_is_not_live_holds_no_one() -> None:
    d = driver(seg("a", {"segment": "ghost", "negate": True}))
    d.identify({"plan": "pro"})
    assert moves(d) == []


def test_cycles_are_refused_and_the_order_is_by_dependency() -> None:
    a = seg("a", {"segment": "b"})
    b = seg("b", {"any": [{"segment": "c"}, {"trait": "x"}]})
    c = seg("c", {"not": {"segment": "a"}})
    with pytest.raises(SegmentCycleError, match="a -> b -> c -> a"):
        cat(a, b, c)
    with pytest.raises(ValueError, match="refers to itself"):
        seg("self", {"segment": "self"})
    d = seg("d", {"trait": "x"})
    assert segment_order([a, seg("b", {"segment": "d"}), d]) == ["d", "b", "a"]


# --- journeys ---------------------------------------------------------------------------------

SEND = {"hi": {"type": "send", "channel": "email", "template": "hi"}}
WAIT = {
    "wait": {"type": "wait", "duration": "3d", "next": "hi"},
    "hi": {"type": "send", "channel": "email", "template": "hi"},
}


def test_segment_trigger_enters_in_the_same_turn_on_enter_and_on_exit() -> None:
    welcome = journey("vip_welcome", {"type": "segment", "segment": "vip"}, SEND)
    goodbye = journey("vip_goodbye", {"type": "segment", "segment": "vip", "on": "exit"}, SEND)
    d = driver(seg("vip", {"trait": "tier", "value": "gold"}), welcome, goodbye)
    effects = d.identify({"tier": "gold"})
    assert [type(e).__name__ for e in effects][:2] == ["SegmentChanged", "SendMessage"]
    assert d.runs("vip_welcome")[0]["status"] == "done"
    d.identify({"tier": "silver"})
    assert [s.journey_id for s in d.sends()] == ["vip_welcome", "vip_goodbye"]


def test_segment_trigger_for_a_segment_that_is_not_live_never_fires() -> None:
    j = journey("j", {"type": "segment", "segment": "ghost"}, SEND)
    d = driver(seg("vip", {"trait": "tier", "value": "gold"}), j)
    d.identify({"tier": "gold"})
    assert d.sends() == []


def test_entry_filter_and_branch_read_membership() -> None:
    vip = seg("vip", {"trait": "tier", "value": "gold"})
    filtered = journey(
        "filtered", {"type": "event", "event": "Signed Up"}, SEND, entry={"filter": [{"segment": "vip"}]}
    )
    ghost = journey(
        "ghost", {"type": "event", "event": "Signed Up"}, SEND, entry={"filter": [{"segment": "nope", "negate": True}]}
    )
    branch = journey(
        "branchy",
        {"type": "event", "event": "Signed Up"},
        {
            "b": {
                "type": "branch",
                "cases": [{"when": [{"segment": "vip", "negate": True}], "next": "plain"}],
                "default": "gold",
            },
            "gold": {"type": "send", "channel": "email", "template": "gold"},
            "plain": {"type": "send", "channel": "email", "template": "plain"},
        },
        start="b",
        entry={"reentry": "always"},
    )
    d = driver(vip, filtered, ghost, branch)
    d.track("Signed Up")
    assert sorted((s.journey_id, s.template) for s in d.sends()) == [("branchy", "plain")]
    d.identify({"tier": "gold"})
    d.track("Signed Up")
    assert sorted((s.journey_id, s.template) for s in d.sends()) == [
        ("branchy", "gold"),
        ("branchy", "plain"),
        ("filtered", "hi"),
    ]


def test_exit_segment_ends_runs_after_goals() -> None:
    j = journey(
        "nurture",
        {"type": "event", "event": "Signed Up"},
        WAIT,
        exit={"segment": "trial"},
        goal={"event": ORDER, "within": "7d"},
    )
    d = driver(seg("trial", {"not": {"performed": ORDER, "within": "30d"}}), j)
    d.track("Signed Up")
    assert d.state.membership.keys() == {"trial"}
    d.now += H
    d.track(ORDER)
    (run,) = d.runs("nurture")
    assert (run["status"], run["exit_reason"]) == ("exited", "segment_exit")
    assert run["converted_at_ms"] == T0 + H  # the goal was counted before the exit
    assert "run:" + run["id"] not in d.timers
    d.advance("5d")
    assert d.sends() == []


# --- time: late events, batching ----------------------------------------------------------------


def test_a_late_event_is_decided_at_the_latest_instant_decided() -> None:
    d = driver(seg("recent", {"performed": "Session Started", "within": "1h"}), roundtrip=False)
    d.track("Page Viewed")  # the first event: every segment decided at T0
    d.now = T0 + 3 * H
    d.track("Session Started", ts=T0 + 30 * 60_000)  # from an offline queue, decided at its own time
    assert moves(d) == [("recent", "entered", T0 + 30 * 60_000, ev(d, "Session Started"))]
    assert d.timers["seg:*"][0] == T0 + 90 * 60_000  # already due: the runtime fires it at once
    d.advance_to(d.now)
    assert moves(d)[-1] == ("recent", "exited", T0 + 90 * 60_000, TIMER)
    d.track("Session Started")  # decided at T0 + 3h
    d.track("Session Started", ts=T0 + 30 * 60_000)  # earlier than that: never back in time
    d.advance("2h")
    assert [m[1:3] for m in moves(d)[2:]] == [("entered", T0 + 3 * H), ("exited", T0 + 4 * H)]


SEGMENTS = (
    seg("loyal", {"performed": ORDER, "within": "2d", "count": 2}),
    seg("lapsed", {"not": {"performed": ORDER, "within": "3d"}}),
    seg("rich", {"performed": ORDER, "within": "5d", "sum": {"property": "revenue", "value": 100}}),
    seg("loyal_gold", {"all": [{"segment": "loyal"}, {"trait": "tier", "value": "gold"}]}),
)


def _script() -> list[EventInput]:
    out = []
    times = [0, 5 * H, 20 * H, 3 * D, 3 * D + 1, 9 * D, 9 * D + 2 * H, 15 * D]
    for i, t in enumerate(times):
        if i == 2:
            out.append(EventInput(f"id{i}", "identify", None, T0 + t, {}, {"tier": "gold"}))
        else:
            out.append(EventInput(f"e{i}", "track", ORDER, T0 + t, {"revenue": 30 + i}))
    return out


def _run_batched(batches: list[list[EventInput]], delay: int) -> list[tuple[Any, ...]]:
    d = Driver(cat=cat(*SEGMENTS), roundtrip=True)
    for batch in batches:
        # Timers due before the batch's first event fire first, as the runtime and the
        # simulator do; then the whole batch is decided at one processing time, later.
        d.advance_to(max(d.now, batch[0].timestamp_ms))
        d.now = max(d.now, batch[-1].timestamp_ms + delay)
        for event in batch:
            d.event(event)
    d.advance_to(T0 + 30 * D)
    return [m for m in moves(d)]


def test_the_same_events_in_any_batching_give_the_same_changes() -> None:
    events = _script()
    one_by_one = _run_batched([[e] for e in events], 0)
    assert one_by_one  # the script moves every segment
    assert {m[0] for m in one_by_one} == {"loyal", "lapsed", "rich", "loyal_gold"}
    pairs = [events[i : i + 2] for i in range(0, len(events), 2)]
    assert _run_batched(pairs, 90_000) == one_by_one
    assert _run_batched([[e] for e in events], 45_000) == one_by_one
    assert _run_batched([events[:3], events[3:]], D) == one_by_one
    assert _run_batched([events], 10 * D) == one_by_one  # every lapse between them decided in turn
    assert ("loyal", "exited", T0 + 2 * D, TIMER) in one_by_one  # a lapse between two events


# --- the apply path -------------------------------------------------------------------------------


def test_compute_is_pure_and_reads_past_events() -> None:
    c = cat(seg("loyal", {"performed": ORDER, "within": "30d", "count": 2}), seg("mail", {"reachable": "email"}))
    state = ProfileState("p1", traits={"email": "a@example.com"})
    before = state.to_json()
    past = [
        EventInput("a", "track", ORDER, T0 - 10 * D),
        EventInput("b", "track", ORDER, T0 - 2 * D),
        EventInput("nudgeflow:c", "track", event_names.UNSUBSCRIBED, T0 - D, {"topic": "*"}),
    ]
    assert segments.compute(c, state, "loyal", T0, past) == segments.Membership(True, T0 + 20 * D)
    assert segments.compute(c, state, "loyal", T0) == segments.Membership(False, None)  # no kept history
    assert segments.compute(c, state, "mail", T0) == segments.Membership(True, None)
    assert segments.compute(c, state, "mail", T0, past) == segments.Membership(False, None)
    assert segments.compute(c, state, "ghost", T0, past) == segments.Membership(False, None)
    assert state.to_json() == before
    wanted = segments.needs(c, "loyal")
    assert wanted.names == {ORDER} and wanted.lookback_ms == 30 * D and not wanted.device_token
    assert wanted.required  # two orders: no one without an order stored can be in it
    assert not segments.needs(c, "mail").required
    assert segments.needs(c, "mail").names == {
        event_names.UNSUBSCRIBED,
        event_names.SUBSCRIPTION_PREFERENCES_UPDATED,
        event_names.CONSENT_UPDATED,
    }


def test_on_segment_apply_records_membership_and_arms_the_timer_without_starting_journeys() -> None:
    loyal = seg("loyal", {"performed": ORDER, "within": "30d", "count": 2})
    j = journey("welcome_loyal", {"type": "segment", "segment": "loyal"}, SEND)
    c = cat(loyal, j, versions={"loyal": 3})
    state = ProfileState("p1")
    past = [EventInput("a", "track", ORDER, T0 - 10 * D), EventInput("b", "track", ORDER, T0 - 2 * D)]
    effects = Engine(c).on_segment_apply(state, "loyal", past, T0)
    assert effects == [
        SegmentChanged("loyal", 3, True, T0, {"apply": 3}),
        ScheduleTimer("seg:*", T0 + 20 * D, {"kind": "segment"}),
    ]
    assert state.membership == {"loyal": T0}
    assert [e[0] for e in state.history[ORDER]] == [T0 - 10 * D, T0 - 2 * D]
    assert Engine(c).on_segment_apply(state, "loyal", past, T0 + H) == []  # the same answer: nothing


def test_on_segment_apply_decides_overdue_lapses_first_at_their_due_times_but_not_the_applied_segment() -> None:
    """The person's lapse timer is overdue (the engine behind): the apply decides the lapse
    first, at its due time, as the timer would have; the segment applied, which refers to the
    lapsed one, is decided by the apply alone, at the apply's time."""
    recent = seg("recent", {"performed": ORDER, "within": "30d"})
    bought_before = seg(
        "bought_before", {"all": [{"performed": ORDER, "within": "365d"}, {"segment": "recent", "negate": True}]}
    )
    d = driver(recent, bought_before)
    d.track(ORDER)
    assert d.state.membership.keys() == {"recent"} and d.timers["seg:*"][0] == T0 + 30 * D
    effects = d.engine.on_segment_apply(d.state, "bought_before", [EventInput("o", "track", ORDER, T0)], T0 + 40 * D)
    assert [e for e in effects if isinstance(e, SegmentChanged)] == [
        SegmentChanged("recent", 1, False, T0 + 30 * D, TIMER),
        SegmentChanged("bought_before", 1, True, T0 + 40 * D, {"apply": 1}),
    ]
    assert d.state.membership == {"bought_before": T0 + 40 * D}


def test_a_segment_apply_keeps_a_goal_events_message_id_in_the_history_it_rebuilds() -> None:
    # A journey's goal event is kept with its messageId (a late trigger's conversion names it,
    # steps.goal_seen); the history an apply rebuilds from stored events keeps it too.
    loyal = seg("loyal", {"performed": ORDER, "within": "30d", "count": 2})
    goal = {"event": ORDER, "within": "7d"}
    c = cat(loyal, journey("welcome", {"type": "event", "event": "Signed Up"}, SEND, goal=goal))
    state = ProfileState("p1")
    past = [EventInput("a", "track", ORDER, T0 - 10 * D), EventInput("b", "track", ORDER, T0 - 2 * D)]
    Engine(c).on_segment_apply(state, "loyal", past, T0)
    assert state.history[ORDER] == [[T0 - 10 * D, {}, "a"], [T0 - 2 * D, {}, "b"]]


def test_applying_a_segment_that_reads_no_reachability_keeps_the_persons_reachability() -> None:
    mailable = seg("mailable", {"reachable": "email"})
    pushable = seg("pushable", {"reachable": "push"})
    recent = seg("recent", {"performed": ORDER, "within": "30d"})
    d = driver(mailable, pushable, recent)
    d.identify({"email": "ada@example.com"})
    d.track(event_names.UNSUBSCRIBED, {"topic": "*"})
    d.track("App Opened", context={"device": {"type": "ios", "token": "ab12"}})
    d.track(ORDER)
    assert d.state.membership.keys() == {"pushable", "recent"}
    # "recent" applied: what it read of the past is the person's orders, which say nothing of
    # how they can be reached; the facts "mailable" and "pushable" read stay as they are.
    past = [EventInput("o", "track", ORDER, T0)]
    d.engine.on_segment_apply(d.state, "recent", past, T0 + H)
    d.now += H
    d.identify({"email": "ada@example.org"})  # decides "mailable": still unsubscribed
    d.track(event_names.CONSENT_UPDATED, {"channel": "push", "topic": "news", "subscribed": True})
    assert d.state.membership.keys() == {"pushable", "recent"}


# --- no segments ----------------------------------------------------------------------------------


def test_without_segments_nothing_changes() -> None:
    c = cat(journey("j", {"type": "event", "event": "Signed Up"}, SEND))
    assert c.segment_index is None and c.history_cap == {}
    d = Driver(cat=c)
    d.identify({"email": "a@example.com"})
    d.track("Signed Up")
    assert b"membership" not in d.state.to_json() and b"segment_facts" not in d.state.to_json()


def test_a_lapse_timer_firing_after_every_segment_was_archived_is_not_armed_again() -> None:
    d = driver(seg("recent", {"performed": ORDER, "within": "30d"}))
    d.track(ORDER)
    assert d.timers["seg:*"][0] == T0 + 30 * D
    d.use(cat())  # the last live segment archived: the workspace has none
    d.now = T0 + 30 * D
    d.fire("seg:*")
    # Nothing is left to decide: a timer armed again at its own due time would fire at once,
    # for ever.
    assert "seg:*" not in d.timers


# --- checking journeys against the live segments ----------------------------------------------------


def test_journey_checks_warn_of_segments_that_are_not_live() -> None:
    doc = {
        "id": "j",
        "name": "j",
        "trigger": {"type": "segment", "segment": "vips"},
        "entry": {"filter": [{"not": {"segment": "lapsed"}}]},
        "exit": {"segment": "vip"},
        "steps": {
            "b": {"type": "branch", "cases": [{"when": [{"segment": "vip"}], "next": "hi"}]},
            "hi": {"type": "send", "channel": "log", "template": "x", "next": None},
        },
    }
    journey_, problems = check_journey(doc, Delivery(segments={"vip"}))
    assert journey_ is not None  # warnings only: the segment may be applied later
    found = {p.path: p for p in problems}
    assert sorted(found) == ["entry.filter.0.not.segment", "trigger.segment"]
    assert {p.severity for p in problems} == {"warning"}
    assert "did you mean 'vip'?" in found["trigger.segment"].message
    assert check_journey(doc, Delivery())[1] == []  # segments not given: not checked
    refs = {
        **doc,
        "trigger": {"type": "segment", "segment": "vip"},
        "steps": {"hi": {"type": "send", "channel": "log", "template": "x"}},
    }
    assert check_journey(refs, Delivery(segments={"vip", "lapsed"}))[1] == []


def test_a_journeys_profile_update_moves_segments() -> None:
    upgrade = journey(
        "upgrade",
        {"type": "event", "event": "Paid"},
        {"set": {"type": "update_profile", "set": {"tier": "gold"}}},
    )
    d = driver(seg("vip", {"trait": "tier", "value": "gold"}), upgrade)
    d.track("Paid")
    assert moves(d) == [("vip", "entered", T0, {"event": "update_profile", "message_id": None})]


def test_a_profile_update_after_a_wait_is_decided_at_the_timers_due_time_however_late_it_fires() -> None:
    upgrade = journey(
        "upgrade",
        {"type": "event", "event": "Paid"},
        {
            "wait": {"type": "wait", "duration": "1h", "next": "set"},
            "set": {"type": "update_profile", "set": {"tier": "gold"}},
        },
    )
    d = driver(seg("vip", {"trait": "tier", "value": "gold"}), upgrade)
    d.track("Paid")
    [key] = [k for k in d.timers if not k.startswith("seg:")]
    d.now = T0 + 5 * H  # the engine fires the step's timer four hours late (a backlog)
    d.fire(key)
    assert moves(d) == [("vip", "entered", T0 + H, {"event": "update_profile", "message_id": None})]


def test_a_person_is_decided_in_full_again_after_redecide_all() -> None:
    d = driver(
        seg("vip", {"trait": "tier", "value": "gold"}), seg("nobody", {"not": {"trait": "tier", "op": "exists"}})
    )
    d.track("Hello")
    assert moves(d) == [("nobody", "entered", T0, ev(d, "Hello"))]
    d.state.traits["tier"] = "gold"  # as a merge brings another person's traits
    segments.redecide_all(d.state)
    d.track("Hello")
    assert [m[:2] for m in moves(d)[1:]] == [("nobody", "exited"), ("vip", "entered")]


def test_redecide_all_holds_when_a_lapse_is_decided_before_the_next_event() -> None:
    d = driver(seg("recent", {"performed": ORDER, "within": "30d"}), seg("vip", {"trait": "tier", "value": "gold"}))
    d.track(ORDER)
    assert moves(d) == [("recent", "entered", T0, ev(d, ORDER))]
    d.state.traits["tier"] = "gold"  # as a merge brings another person's traits
    segments.redecide_all(d.state)
    # The next event comes after the lapse, its timer not fired yet: the lapse is decided
    # first, and then every segment still is.
    d.now = T0 + 31 * D
    d.track("Hello")
    assert moves(d)[1:] == [("recent", "exited", T0 + 30 * D, TIMER), ("vip", "entered", T0 + 31 * D, ev(d, "Hello"))]


def test_redecide_all_does_not_move_decisions_back_in_time() -> None:
    d = driver(seg("vip", {"trait": "tier", "value": "gold"}))
    d.now = T0 + 2 * D
    d.identify({"tier": "silver"})  # decided at T0 + 2d
    d.state.traits["tier"] = "gold"
    segments.redecide_all(d.state)
    d.track("Hello", ts=T0)  # a late event: decided at the latest instant decided, as always
    assert moves(d) == [("vip", "entered", T0 + 2 * D, ev(d, "Hello"))]


def test_consent_updated_for_all_of_a_channel_decides_its_reachability() -> None:
    d = driver(seg("mailable", {"reachable": "email"}), seg("pushable", {"reachable": "push"}))
    d.identify({"email": "ada@example.com"})
    d.track(event_names.PUSH_SUBSCRIBED, {"endpoint_hash": "h1"})
    assert d.state.membership.keys() == {"mailable", "pushable"}
    consent = event_names.CONSENT_UPDATED
    d.track(consent, {"channel": "email", "topic": "news", "subscribed": False, "source": "api"})
    d.track(consent, {"channel": "push", "topic": "*", "subscribed": False, "source": "api"})
    assert d.state.membership.keys() == {"mailable"}
    d.track(consent, {"channel": "email", "topic": "*", "subscribed": False, "source": "api"})
    assert d.state.membership == {}
    d.track(consent, {"channel": "push", "topic": "*", "subscribed": True, "source": "api"})
    assert d.state.membership.keys() == {"pushable"}


@pytest.mark.parametrize(
    "when, required",
    [
        ({"performed": ORDER, "within": "30d"}, True),
        ({"performed": ORDER, "within": "30d", "count": 0, "op": "eq"}, False),
        ({"performed": ORDER, "within": "30d", "sum": {"property": "revenue", "value": 100}}, True),
        ({"performed": ORDER, "within": "30d", "sum": {"property": "revenue", "value": 0, "op": "lt"}}, False),
        ({"engaged": "opened", "within": "7d"}, True),
        ({"all": [{"trait": "plan", "value": "pro"}, {"performed": ORDER, "within": "30d"}]}, True),
        ({"any": [{"trait": "plan", "value": "pro"}, {"performed": ORDER, "within": "30d"}]}, False),
        ({"any": [{"engaged": "clicked", "within": "7d"}, {"performed": ORDER, "within": "30d"}]}, True),
        ({"not": {"performed": ORDER, "within": "30d"}}, False),
        ({"reachable": "email"}, False),
    ],
)
def test_which_segments_require_an_occurrence(when: dict[str, Any], required: bool) -> None:
    c = cat(seg("s", when))
    assert segments.needs(c, "s").required is required


# --- explain: the answer condition by condition -----------------------------------------------------


def test_explain_evaluates_every_condition_with_what_it_read() -> None:
    big = seg(
        "big",
        {
            "all": [
                {"any": [{"trait": "plan", "value": "pro"}, {"trait": "plan", "value": "team"}]},
                {"not": {"trait": "country", "value": "FR"}},
                {
                    "performed": ORDER,
                    "within": "7d",
                    "where": [{"property": "currency", "value": "EUR"}],
                    "sum": {"property": "revenue", "op": "gte", "value": 100},
                },
                {"reachable": "email"},
                {"segment": "openers", "negate": True},
            ]
        },
    )
    openers = seg("openers", {"engaged": "opened", "within": "7d"})
    c = cat(openers, big)
    state = ProfileState("p1", traits={"plan": "team", "country": "DE", "email": "a@example.com"})
    past = [
        EventInput("a", "track", ORDER, T0 - 10 * D, {"revenue": 500, "currency": "EUR"}),  # outside the window
        EventInput("b", "track", ORDER, T0 - 2 * D, {"revenue": 60, "currency": "EUR"}),
        EventInput("c", "track", ORDER, T0 - D, {"revenue": 90, "currency": "USD"}),  # filtered out
        EventInput("d", "track", ORDER, T0 - H, {"revenue": "50", "currency": "EUR"}),
    ]
    before = state.to_json()
    found = segments.explain(c, state, "big", T0, past)
    assert found is not None and found.member and found.version == 1 and found.at_ms == T0
    top = found.check
    assert (top.path, top.kind, top.holds) == ("when", "all", True)
    plan, country, orders, reach, other = top.children
    assert [k.holds for k in plan.children] == [False, True] and plan.holds
    assert plan.children[1].seen == {"found": True, "value": "team"} and plan.children[1].path == "when.all[0].any[1]"
    assert country.kind == "not" and country.holds and not country.children[0].holds
    assert orders.seen == {"count": 2, "sum": 110.0, "since_ms": T0 - 7 * D} and orders.holds
    assert reach.seen["email"] and not reach.seen["email_unsubscribed"] and reach.holds
    assert other.seen == {"live": True, "member": False} and other.holds
    assert found.member == segments.compute(c, state, "big", T0, past).member
    assert state.to_json() == before

    # Out: a member of `openers` now, and the orders lapse by T0 + 5d; the answer says which.
    state.membership["openers"] = T0
    later = segments.explain(c, state, "big", T0 + 6 * D, past)
    assert later is not None and not later.member
    assert [k.holds for k in later.check.children] == [True, True, False, True, False]
    assert later.check.children[2].seen["count"] == 1  # the one of T0 - 1h is still in the window
    assert later.member == segments.compute(c, state, "big", T0 + 6 * D, past).member
    assert segments.explain(c, state, "ghost", T0) is None


def test_explain_engaged_and_group_traits_from_the_kept_state() -> None:
    c = cat(
        seg(
            "eng",
            {
                "all": [
                    {"engaged": "clicked", "journey": "welcome", "within": "7d"},
                    {"trait": "group.tier", "value": "gold"},
                ]
            },
        )
    )
    state = ProfileState(
        "p1",
        history={
            event_names.EMAIL_LINK_CLICKED: [[T0 - D, {"journey_id": "welcome"}], [T0 - H, {"journey_id": "other"}]]
        },
        group={"id": "g1", "at": T0, "traits": {"tier": "gold"}},
    )
    found = segments.explain(c, state, "eng", T0)
    assert found is not None and found.member
    engaged, tier = found.check.children
    assert engaged.seen == {"latest_at": T0 - D} and engaged.holds
    assert tier.seen == {"found": True, "value": "gold"} and tier.holds
    assert found.member == segments.compute(c, state, "eng", T0).member


def test_a_senders_event_named_as_a_choice_changes_no_reachability() -> None:
    """Only Nudgeflow records a person's choices (consent records, the preference center,
    unsubscribe links: messageIds of its own). Anyone holding the public write key can send a
    track of the same name for any userId: it is an ordinary event, and the person stays
    reachable (or not) as their recorded choices say, on the event and in an apply alike."""
    d = driver(seg("mailable", {"reachable": "email"}), seg("pushable", {"reachable": "push"}))
    d.identify({"email": "ada@example.com"})
    d.track(event_names.PUSH_SUBSCRIBED, {"provider": "webpush", "endpoint_hash": "h1"})
    assert d.state.membership.keys() == {"mailable", "pushable"}
    for name, props in (
        (event_names.UNSUBSCRIBED, {"topic": "*"}),
        (event_names.SUBSCRIPTION_PREFERENCES_UPDATED, {"subscribed": False}),
        (event_names.CONSENT_UPDATED, {"channel": "push", "topic": "*", "subscribed": False}),
    ):
        d.track(name, props, message_id=f"forged-{name}")
    assert d.state.membership.keys() == {"mailable", "pushable"}
    forged = [EventInput("forged", "track", event_names.UNSUBSCRIBED, T0, {"topic": "*"})]
    assert segments.compute(d.engine.catalog, d.state, "mailable", T0 + H, forged).member
    d.track(event_names.UNSUBSCRIBED, {"topic": "*"})  # the person's own, through a link
    assert d.state.membership.keys() == {"pushable"}
