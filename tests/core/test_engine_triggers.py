"""The pure core's triggers (DESIGN §5, issue 3 item 2), driven on a virtual clock."""

from __future__ import annotations

from typing import Any

import pytest

from nudgeflow.core.catalog import Catalog, JourneyVersion
from nudgeflow.model.journeys import Journey
from tests.core.engine_driver import T0, D, Driver, H, M, catalog, iso, journey, ms

SEND = {"hello": {"type": "send", "channel": "email", "template": "hello"}}


def send_j(id: str, trigger: dict[str, Any], **rest: Any):
    return journey(id, trigger, SEND, **rest)


# --- event with property filters ---------------------------------------------------------------

FILTER_CASES = [
    ({"property": "category", "value": "shoes"}, {"category": "shoes"}, {"category": "hats"}),
    ({"property": "category", "op": "ne", "value": "shoes"}, {"category": "hats"}, {"category": "shoes"}),
    ({"property": "category", "op": "in", "value": ["shoes", "bags"]}, {"category": "bags"}, {"category": "hats"}),
    ({"property": "category", "op": "not_in", "value": ["shoes", "bags"]}, {}, {"category": "shoes"}),
    ({"property": "price", "op": "gt", "value": 100}, {"price": "150.5"}, {"price": 100}),
    ({"property": "price", "op": "gte", "value": 100}, {"price": 100}, {"price": 99.99}),
    ({"property": "price", "op": "lt", "value": 100}, {"price": 5}, {"price": "cheap"}),
    ({"property": "price", "op": "lte", "value": 100}, {"price": 100.0}, {"price": None}),
    ({"property": "coupon", "op": "exists"}, {"coupon": "X"}, {"coupon": None}),
    ({"property": "coupon", "op": "not_exists"}, {"coupon": None}, {"coupon": ""}),
    (
        {"property": "products", "op": "contains", "value": {"product_id": "p1"}},
        {"products": [{"product_id": "p1", "price": 3}]},
        {"products": [{"product_id": "p2"}]},
    ),
    ({"property": "name", "op": "contains", "value": "Shoe"}, {"name": "Red Shoe"}, {"name": "red shoe"}),
    ({"property": "name", "op": "not_contains", "value": "Shoe"}, {"name": "Hat"}, {"name": "Shoe"}),
    ({"property": "product.brand", "value": "Acme"}, {"product": {"brand": "Acme"}}, {"product": "Acme"}),
    ({"property": "currency", "value": {"ref": "profile.currency"}}, {"currency": "EUR"}, {"currency": "USD"}),
]


@pytest.mark.parametrize(("flt", "matching", "other"), FILTER_CASES, ids=lambda v: str(v)[:40])
def test_event_trigger_with_each_filter_kind(flt: dict, matching: dict, other: dict) -> None:
    viewed = send_j("viewed", {"type": "event", "event": "Product Viewed", "where": [flt]}, entry={"reentry": "always"})
    d = Driver(viewed)
    d.state.traits["currency"] = "EUR"
    assert d.track("Product Viewed", other) == []
    assert d.track("Product Added", matching) == []  # another event name
    d.track("Product Viewed", matching)
    assert d.effects() == [
        ("send", "viewed", "hello", "hello", None, T0),
        ("run", "viewed", "done", None, "completed"),
    ]
    message = d.sends()[0]
    assert message.key == f"{d.run_id(1)}:hello:1"
    assert message.context["trigger"]["properties"] == matching
    assert message.context["trigger"]["event"] == "Product Viewed"


def test_occurrences_same_product_twice_within_window() -> None:
    browse = send_j(
        "browse",
        {
            "type": "event",
            "event": "Product Viewed",
            "occurrences": {"count": 2, "within": "1h", "match": "product_id"},
        },
        entry={"reentry": "always"},
    )
    d = Driver(browse)
    d.track("Product Viewed", {"product_id": "p1"})
    d.advance("10m")
    d.track("Product Viewed", {"product_id": "p2"})  # another product: not a second view of p1
    d.advance("20m")
    d.track("Product Viewed", {"name": "no id"})  # no product_id: counts for nothing
    assert d.sends() == []
    d.track("Product Viewed", {"product_id": "p1"})  # 30 min after the first p1
    assert d.sent() == [("hello", iso(T0 + 30 * M))]
    assert d.sends()[0].context["trigger"]["properties"] == {"product_id": "p1"}
    # p2 again 61 minutes after its first view: outside the window.
    d.advance("41m")
    d.track("Product Viewed", {"product_id": "p2"})
    assert len(d.sends()) == 1


def test_occurrences_counts_a_late_occurrence_before_the_one_already_decided() -> None:
    # Two views of p1 ten minutes apart; the earlier one reaches the engine late (an app's
    # offline queue). When it is decided the person has viewed p1 twice within the hour,
    # by event time: the journey starts then, as it would have had the views come in order.
    browse = send_j(
        "browse",
        {
            "type": "event",
            "event": "Product Viewed",
            "occurrences": {"count": 2, "within": "1h", "match": "product_id"},
        },
    )
    d = Driver(browse)
    d.track("Product Viewed", {"product_id": "p1"})
    d.track("Product Viewed", {"product_id": "p2"}, ts=T0 - 10 * M)  # another product
    assert d.sends() == []
    d.advance("5m")
    d.track("Product Viewed", {"product_id": "p1"}, ts=T0 - 10 * M)
    assert d.sent() == [("hello", iso(T0 + 5 * M))]
    # An occurrence an hour or more before the later one does not make a pair with it.
    d = Driver(browse)
    d.track("Product Viewed", {"product_id": "p1"})
    d.track("Product Viewed", {"product_id": "p1"}, ts=T0 - H)
    assert d.sends() == []


def test_occurrences_count_only_events_that_pass_the_filter() -> None:
    shoes = send_j(
        "shoes",
        {
            "type": "event",
            "event": "Product Viewed",
            "where": [{"property": "category", "value": "shoes"}],
            "occurrences": {"count": 2, "within": "1h"},
        },
    )
    d = Driver(shoes)
    d.track("Product Viewed", {"category": "hats"})
    d.track("Product Viewed", {"category": "shoes"})  # one shoe view, one hat view
    assert d.sends() == []
    d.track("Product Viewed", {"category": "shoes"})
    assert len(d.sends()) == 1


# --- event not followed by another -------------------------------------------------------------

CART = {
    "type": "event_not_followed",
    "event": "Product Added",
    "not_followed_by": {"event": "Order Completed", "within": "1h", "match": "cart_id"},
}


def cart_journey(**rest: Any):
    return journey("cart", CART, {"remind": {"type": "send", "channel": "email", "template": "cart_reminder"}}, **rest)


def test_not_followed_fires_an_hour_after_the_add() -> None:
    d = Driver(cart_journey())
    assert d.effects() == []
    d.track("Product Added", {"cart_id": "c1", "sku": "A"})
    assert d.effects() == [("schedule", "nf:cart:c1", T0 + H)]
    d.advance(H - 1)
    assert d.sends() == []
    mark = d.mark()
    d.advance(1)
    assert d.effects(mark) == [
        ("send", "cart", "remind", "cart_reminder", None, T0 + H),
        ("run", "cart", "done", None, "completed"),
    ]
    run = d.runs()[0]
    assert run["entered_at_ms"] == T0 + H
    trigger = d.sends()[0].context["trigger"]
    assert trigger["properties"] == {"cart_id": "c1", "sku": "A"} and trigger["at"] == T0
    assert d.state.pending == {} and d.timers == {}


def test_not_followed_cancelled_by_the_same_cart_only() -> None:
    d = Driver(cart_journey())
    d.track("Product Added", {"cart_id": "c1"})
    d.track("Product Added", {"cart_id": "c2"})
    d.advance("30m")
    mark = d.mark()
    d.track("Order Completed", {"cart_id": "c1"})
    assert d.effects(mark) == [("cancel", "nf:cart:c1")]
    assert set(d.state.pending) == {"nf:cart:c2"}  # the cancelled watch is gone from the state
    mark = d.mark()
    d.track("Order Completed", {"cart_id": "c3"})  # another cart
    d.track("Order Completed", {})  # no cart at all
    assert d.effects(mark) == []
    d.advance("2h")
    assert d.sent() == [("remind", iso(T0 + H))]
    assert d.sends()[0].context["trigger"]["properties"] == {"cart_id": "c2"}


def test_not_followed_latest_add_restarts_the_window() -> None:
    d = Driver(cart_journey())
    d.track("Product Added", {"cart_id": "c1", "sku": "A"})
    d.advance("40m")
    d.track("Product Added", {"cart_id": "c1", "sku": "B"})
    assert d.schedules("nf:cart:c1") == [T0 + H, T0 + 100 * M]  # the same key: replaced
    assert d.timers["nf:cart:c1"][0] == T0 + 100 * M
    d.advance("30m")  # T0 + 70 min: the first window is over, but the second is not
    assert d.sends() == []
    d.advance("30m")
    assert d.sent() == [("remind", iso(T0 + 100 * M))]
    assert d.sends()[0].context["trigger"]["properties"]["sku"] == "B"


def test_not_followed_cancelled_by_a_follow_up_in_the_same_millisecond() -> None:
    # A checkout that posts "Product Added" and "Order Completed" with one timestamp: the
    # order counts as following the add, so nothing is sent and no watch is left behind.
    d = Driver(cart_journey())
    d.track("Product Added", {"cart_id": "c1"}, ts=T0)
    mark = d.mark()
    d.track("Order Completed", {"cart_id": "c1"}, ts=T0)
    assert d.effects(mark) == [("cancel", "nf:cart:c1")]
    assert d.state.pending == {} and d.timers == {}
    d.advance("2h")
    assert d.sends() == []


def test_not_followed_ignores_a_follow_up_that_happened_before_the_add() -> None:
    d = Driver(cart_journey())
    d.track("Product Added", {"cart_id": "c1"})
    # An order for the cart stamped before the add (a late event) does not cancel the watch.
    d.track("Order Completed", {"cart_id": "c1"}, ts=T0 - M)
    d.advance("1h")
    assert len(d.sends()) == 1


def test_not_followed_late_add_does_not_replace_a_newer_watch() -> None:
    # The window runs from the latest add. An older add flushed late from an offline queue
    # must not take the newer add's place: the reminder went out a minute after the newer
    # add, about the older item.
    d = Driver(cart_journey())
    d.track("Product Added", {"cart_id": "c1", "sku": "B"})
    d.advance("1m")
    d.track("Product Added", {"cart_id": "c1", "sku": "A"}, ts=T0 - H)
    d.advance("2h")
    assert d.sent() == [("remind", iso(T0 + H))]
    assert d.sends()[0].context["trigger"]["properties"]["sku"] == "B"


def test_not_followed_late_add_already_followed_by_an_order_starts_nothing() -> None:
    # The order (stamped 10 minutes after the add) reaches the engine before the add, which
    # an app's offline queue delivers 15 minutes late: the add was followed within the hour.
    d = Driver(cart_journey())
    d.advance("15m")
    d.track("Order Completed", {"cart_id": "c1"}, ts=T0 + 10 * M)
    d.track("Product Added", {"cart_id": "c1"}, ts=T0)
    d.advance("2h")
    assert d.sends() == [] and d.state.pending == {}


def test_not_followed_order_decided_first_counts_only_for_its_cart_and_window() -> None:
    d = Driver(cart_journey())
    d.advance("3h")
    d.track("Order Completed", {"cart_id": "c2"}, ts=T0 + 10 * M)  # another cart
    d.track("Order Completed", {"cart_id": "c1"}, ts=T0 + 2 * H)  # after the hour
    d.track("Order Completed", {"cart_id": "c1"}, ts=T0 - M)  # before the add
    d.track("Product Added", {"cart_id": "c1"}, ts=T0)
    d.advance("1m")
    assert d.sent() == [("remind", iso(T0 + 3 * H))]


def test_not_followed_order_decided_first_with_a_filter_on_the_order() -> None:
    paid = [{"property": "total", "op": "gt", "value": 0}]
    trigger = {**CART, "not_followed_by": {**CART["not_followed_by"], "where": paid}}
    d = Driver(journey("cart", trigger, {"remind": {"type": "send", "channel": "email", "template": "r"}}))
    d.advance("15m")
    d.track("Order Completed", {"cart_id": "c1", "total": 0}, ts=T0 + 5 * M)  # does not pass `where`
    d.track("Product Added", {"cart_id": "c1"}, ts=T0)
    d.advance("2h")
    assert len(d.sends()) == 1
    d.track("Order Completed", {"cart_id": "c9", "total": 12}, ts=d.now)
    d.track("Product Added", {"cart_id": "c9"}, ts=d.now - M)
    d.advance("2h")
    assert len(d.sends()) == 1


def test_not_followed_by_the_same_event_fires_after_the_last_one() -> None:
    quiet = journey(
        "quiet",
        {
            "type": "event_not_followed",
            "event": "Session Started",
            "not_followed_by": {"event": "Session Started", "within": "7d"},
        },
        {"s": {"type": "send", "channel": "email", "template": "t"}},
    )
    d = Driver(quiet)
    d.track("Session Started")
    d.advance("1d")
    d.track("Session Started")
    d.advance("8d")
    assert d.sent() == [("s", iso(T0 + 8 * D))]
    # A late session from before the last one, and decided after it, starts no watch of its own.
    d.track("Session Started")
    d.advance("1m")
    d.track("Session Started", ts=d.now - 2 * D)
    d.advance("7d")
    assert d.sent() == [("s", iso(T0 + 8 * D)), ("s", iso(T0 + 16 * D))]


# --- inactivity (lazy) ---------------------------------------------------------------------------


def winback():
    return journey(
        "winback",
        {"type": "inactivity", "events": ["Session Started"], "window": "7d"},
        {"miss": {"type": "send", "channel": "email", "template": "we_miss_you"}},
        entry={"reentry": "always"},
    )


def test_inactivity_fires_after_a_window_of_silence_and_re_arms_lazily() -> None:
    d = Driver(winback())
    d.track("Session Started")
    assert d.effects() == [("schedule", "idle:winback", T0 + 7 * D)]
    mark = d.mark()
    for day in (1, 2, 3):
        d.advance_to(T0 + day * D)
        d.track("Session Started")
    d.track("Product Viewed")  # not in the set: no activity, and not even looked at
    assert d.effects(mark) == []  # activity does not rewrite the timer
    mark = d.mark()
    d.advance_to(T0 + 7 * D)  # the timer fires, sees activity on day 3, looks again later
    assert d.effects(mark) == [("schedule", "idle:winback", T0 + 10 * D)]
    d.advance_to(T0 + 10 * D - 1)
    assert d.sends() == []
    mark = d.mark()
    d.advance_to(T0 + 10 * D)
    assert d.effects(mark) == [
        ("send", "winback", "miss", "we_miss_you", None, T0 + 10 * D),
        ("run", "winback", "done", None, "completed"),
    ]
    trigger = d.sends()[0].context["trigger"]
    assert trigger["properties"] == {"last_active_at": T0 + 3 * D, "inactive_ms": 7 * D}
    # One silence, one message: nothing more however long the silence lasts.
    d.advance_to(T0 + 60 * D)
    assert len(d.sends()) == 1 and d.timers == {}
    # Back, then silent again: armed once more, fires once more.
    d.track("Session Started")
    d.advance("1d")
    d.track("Session Started")
    d.advance("30d")
    assert d.sent() == [("miss", iso(T0 + 10 * D)), ("miss", iso(T0 + 68 * D))]
    assert d.schedules("idle:winback") == [T0 + 7 * D, T0 + 10 * D, T0 + 67 * D, T0 + 68 * D]


def test_inactivity_a_late_event_from_before_the_silence_does_not_enter_again() -> None:
    # Entered after a week of silence; then a session stamped before that silence arrives
    # (an app's offline queue): it is not new activity, so it must not arm a timer that
    # fires at once and enters the person a second time for the same silence.
    d = Driver(winback())
    d.track("Session Started")
    d.advance("7d")
    assert len(d.sends()) == 1
    d.advance("1h")
    d.track("Session Started", ts=T0 - H)
    d.advance("1d")
    assert len(d.sends()) == 1
    # New activity afterwards still re-arms it.
    d.track("Session Started")
    d.advance("7d")
    assert d.sent() == [("miss", iso(T0 + 7 * D)), ("miss", iso(T0 + 15 * D + H))]


def test_inactivity_on_any_event() -> None:
    anyidle = journey(
        "anyidle",
        {"type": "inactivity", "window": "3d"},
        {"miss": {"type": "send", "channel": "push", "template": "come_back"}},
    )
    d = Driver(anyidle)
    d.track("Level Completed")
    d.advance("2d")
    d.identify({"name": "Ada"})  # any call counts as activity
    d.advance("10d")
    assert d.sent() == [("miss", iso(T0 + 5 * D))]


# --- attribute change ----------------------------------------------------------------------------


def change(trigger: dict[str, Any]) -> Driver:
    return Driver(send_j("change", {"type": "attribute_change", **trigger}, entry={"reentry": "always"}))


def entries_after(d: Driver, *values: Any, trait: str = "plan") -> list[dict[str, Any]]:
    """Identify each value in turn (None: unset it to null); the trigger properties of each entry."""
    for value in values:
        d.advance("1m")
        d.identify({trait: value})
    return [m.context["trigger"]["properties"] for m in d.sends()]


def test_attribute_change_from_to() -> None:
    d = change({"trait": "plan", "from": "pro", "to": "free"})
    got = entries_after(d, "pro", "pro", "free", "free", "trial", "free", "pro", "free")
    assert got == [{"trait": "plan", "from": "pro", "to": "free"}] * 2
    assert d.sends()[0].context["trigger"]["event"] == "attribute_change"


def test_attribute_change_from_omitted_means_any() -> None:
    d = change({"trait": "plan", "to": "free"})
    assert [p["from"] for p in entries_after(d, "free", "pro", "free", "trial", "free")] == [None, "pro", "trial"]


def test_attribute_change_to_omitted_means_any_change() -> None:
    d = change({"trait": "plan", "from": "pro"})
    assert [p["to"] for p in entries_after(d, "pro", "free", "pro", "team")] == ["free", "team"]


def test_attribute_change_from_null_means_was_unset() -> None:
    d = change({"trait": "plan", "from": None, "to": "trial"})
    assert [p["from"] for p in entries_after(d, "trial", "pro", "trial")] == [None]


def test_attribute_change_list_values() -> None:
    d = change({"trait": "subscription", "from": ["active", "trialing"], "to": ["cancelled", "expired"]})
    got = entries_after(d, "active", "cancelled", "trialing", "expired", "paused", "cancelled", trait="subscription")
    assert [(p["from"], p["to"]) for p in got] == [("active", "cancelled"), ("trialing", "expired")]


def test_attribute_change_list_with_null_includes_unset() -> None:
    d = change({"trait": "plan", "from": [None, "trial"], "to": "pro"})
    assert [p["from"] for p in entries_after(d, "pro", "trial", "pro", "free", "pro")] == [None, "trial"]


def test_attribute_change_ignores_track_events_and_late_identifies() -> None:
    d = change({"trait": "plan", "to": "free"})
    d.track("Plan Changed", {"plan": "free"})
    d.identify({"plan": "free"}, ts=T0 - 3 * D)  # older than max_lateness (24h)
    assert d.sends() == [] and d.state.traits == {"plan": "free"}


# --- date-relative ------------------------------------------------------------------------------


def trial():
    return journey(
        "trial",
        {"type": "date_relative", "trait": "trial_ends_at", "offset": "-3d", "at": "10:00"},
        {"remind": {"type": "send", "channel": "email", "template": "trial_ending"}},
    )


@pytest.mark.parametrize(
    ("ends", "due"),
    [
        # DST starts 8 March 2026 in New York: ends at 10:00 EDT, reminded at 10:00 EST.
        ("2026-03-10T14:00:00Z", "2026-03-07T15:00:00Z"),
        # DST ends 1 November 2026: ends at 10:00 EST, reminded at 10:00 EDT.
        ("2026-11-03T15:00:00Z", "2026-10-31T14:00:00Z"),
        # A date alone: local midnight of that day, so the same local calendar date.
        ("2026-03-10", "2026-03-07T15:00:00Z"),
    ],
)
def test_date_relative_three_days_before_across_dst(ends: str, due: str) -> None:
    d = Driver(trial())
    d.identify({"timezone": "America/New_York", "trial_ends_at": ends})
    assert d.effects() == [("schedule", "date:trial", ms(due))]
    d.advance_to(ms(due) - 1)
    assert d.sends() == []
    d.advance_to(ms(due) + 30 * D)
    assert d.sent() == [("remind", due)]
    assert d.timers == {}


def test_date_relative_follows_trait_and_timezone_changes() -> None:
    d = Driver(trial())
    d.identify({"trial_ends_at": "2026-03-20"})  # UTC: 17 March 10:00 UTC
    d.identify({"timezone": "Europe/Berlin"})  # 10:00 CET
    d.identify({"trial_ends_at": "2026-04-20"})  # 10:00 CEST
    assert d.schedules("date:trial") == [
        ms("2026-03-17T10:00:00Z"),
        ms("2026-03-17T09:00:00Z"),
        ms("2026-04-17T08:00:00Z"),
    ]
    mark = d.mark()
    d.identify({"trial_ends_at": None})  # the date is gone: so is the timer
    assert d.effects(mark) == [("cancel", "date:trial")]
    d.identify({"trial_ends_at": "2026-03-01"})  # already past: nothing to arm
    assert d.effects()[-1] == ("cancel", "date:trial")
    d.advance("365d")
    assert d.sends() == []


def test_date_relative_yearly_birthday_re_arms_and_fires_once_a_year() -> None:
    bday = journey(
        "bday",
        {"type": "date_relative", "trait": "birthday", "at": "09:00", "yearly": True},
        {"wish": {"type": "send", "channel": "email", "template": "birthday"}},
    )
    d = Driver(bday)
    d.identify({"birthday": "1990-06-15", "timezone": "Europe/Paris"})
    assert d.effects() == [("schedule", "date:bday", ms("2026-06-15T07:00:00Z"))]
    d.advance_to(ms("2026-06-15T07:00:00Z"))
    assert d.sent() == [("wish", "2026-06-15T07:00:00Z")]
    assert d.schedules("date:bday")[-1] == ms("2027-06-15T07:00:00Z")
    # The same birthday sent again, or other traits, change nothing.
    mark = d.mark()
    d.identify({"birthday": "1990-06-15", "name": "Ada"})
    assert d.effects(mark) == []
    d.advance_to(ms("2027-06-15T06:59:59Z"))
    assert len(d.sends()) == 1
    d.advance_to(ms("2028-06-16T00:00:00Z"))
    assert d.sent() == [
        ("wish", "2026-06-15T07:00:00Z"),
        ("wish", "2027-06-15T07:00:00Z"),
        ("wish", "2028-06-15T07:00:00Z"),
    ]


def test_date_relative_does_not_fire_again_when_the_timezone_changes_after_it_fired() -> None:
    d = Driver(trial())
    d.identify({"timezone": "America/New_York", "trial_ends_at": "2026-03-10"})
    d.advance_to(ms("2026-03-07T15:30:00Z"))  # reminded at 15:00 UTC, 10:00 in New York
    d.identify({"timezone": "America/Los_Angeles"})  # where it is 10:00 only at 18:00 UTC
    d.advance("2d")
    assert d.sent() == [("remind", "2026-03-07T15:00:00Z")]
    # A new date is another reminder.
    d.identify({"trial_ends_at": "2026-03-20"})
    d.advance("30d")
    assert d.sent() == [("remind", "2026-03-07T15:00:00Z"), ("remind", "2026-03-17T17:00:00Z")]


def test_yearly_date_does_not_fire_twice_in_a_year_when_the_timezone_changes() -> None:
    bday = journey(
        "bday",
        {"type": "date_relative", "trait": "birthday", "at": "09:00", "yearly": True},
        {"wish": {"type": "send", "channel": "email", "template": "birthday"}},
    )
    d = Driver(bday)
    d.identify({"birthday": "1990-06-15", "timezone": "Pacific/Kiritimati"})  # UTC+14
    d.advance_to(ms("2026-06-14T20:00:00Z"))  # 09:00 on the 15th in Kiritimati
    d.identify({"timezone": "Pacific/Pago_Pago"})  # UTC-11: the 15th there is a day later
    d.advance_to(ms("2027-06-14T00:00:00Z"))
    assert d.sent() == [("wish", "2026-06-14T19:00:00Z")]
    assert d.timers["date:bday"][0] == ms("2027-06-15T20:00:00Z")  # next year, in the new zone
    d.identify({"birthday": "1990-06-16"})  # corrected: a different date
    d.advance_to(ms("2027-06-17T00:00:00Z"))
    assert [at for _, at in d.sent()] == ["2026-06-14T19:00:00Z", "2027-06-16T20:00:00Z"]


# --- milestones -----------------------------------------------------------------------------------


def test_milestone_tenth_occurrence_fires_once() -> None:
    tenth = send_j("tenth", {"type": "milestone", "event": "Session Started", "count": 10}, entry={"reentry": "always"})
    d = Driver(tenth)
    for i in range(1, 16):
        d.advance("1h")
        d.track("Session Started")
        assert len(d.sends()) == (1 if i >= 10 else 0)
    assert d.sends()[0].at_ms == T0 + 10 * H


def test_milestone_sum_of_revenue_crossing_500_fires_once() -> None:
    spend = send_j(
        "spend",
        {"type": "milestone", "event": "Order Completed", "sum": {"property": "revenue", "reaches": 500}},
        entry={"reentry": "always"},
    )
    d = Driver(spend)
    for revenue in (200, "250.5", None, "n/a", True, 40):
        d.track("Order Completed", {"revenue": revenue})
    d.track("Order Completed", {})
    assert d.sends() == []
    d.advance("1d")
    d.track("Order Completed", {"revenue": 9.5})  # 500 exactly
    assert d.sent() == [("hello", iso(T0 + D))]
    d.track("Order Completed", {"revenue": 1000})
    assert len(d.sends()) == 1


def test_milestone_streak_in_profile_timezone() -> None:
    streak = send_j(
        "streak", {"type": "milestone", "event": "App Opened", "streak": {"days": 7}}, entry={"reentry": "always"}
    )
    d = Driver(streak, now=ms("2026-03-02T00:00:00Z"))
    d.identify({"timezone": "Asia/Tokyo"})
    # 23:30 JST on 2 March, then 00:30 JST on 3..8 March: seven local days, six UTC days.
    times = ["2026-03-02T14:30:00Z"] + [f"2026-03-0{day}T15:30:00Z" for day in range(2, 8)]
    for n, at in enumerate(times, 1):
        d.advance_to(ms(at))
        d.track("App Opened")
        d.track("App Opened")  # twice the same day counts once
        assert len(d.sends()) == (1 if n == 7 else 0), at
    d.advance("1d")
    d.track("App Opened")  # day 8: the streak goes on, but the milestone was reached
    assert len(d.sends()) == 1


def test_milestone_broken_streak_resets() -> None:
    streak = send_j(
        "streak", {"type": "milestone", "event": "App Opened", "streak": {"days": 7}}, entry={"reentry": "always"}
    )
    d = Driver(streak)
    for day in list(range(0, 6)) + list(range(7, 14)):  # six days, a gap, then seven
        d.advance_to(T0 + day * D)
        d.track("App Opened")
        assert len(d.sends()) == (1 if day == 13 else 0), day


def test_milestone_republished_with_another_kind_starts_afresh() -> None:
    v1 = send_j("m", {"type": "milestone", "event": "App Opened", "count": 5})
    v2 = send_j("m", {"type": "milestone", "event": "App Opened", "streak": {"days": 2}})
    v3 = send_j("m", {"type": "milestone", "event": "App Opened", "sum": {"property": "n", "reaches": 2}})
    d = Driver(v1)
    for _ in range(3):
        d.track("App Opened", {"n": 1})
    d.use(catalog(JourneyVersion("m", 2, v2)))
    d.track("App Opened", {"n": 1})
    d.advance("1d")
    d.track("App Opened", {"n": 1})  # the second day of a streak
    d.use(catalog(JourneyVersion("m", 3, v3)))
    d.track("App Opened", {"n": 1})
    d.track("App Opened", {"n": 1})  # a sum of 2
    assert [(m.version, m.at_ms) for m in d.sends()] == [(2, T0 + D), (3, T0 + D)]


# --- location -------------------------------------------------------------------------------------

STORES = [
    {"name": "Opera", "latitude": 48.8720, "longitude": 2.3316},
    {"name": "Louvre", "latitude": 48.8606, "longitude": 2.3376},
]


def near_store(radius: float):
    return send_j(
        "near",
        {"type": "location", "event": "Location Updated", "places": STORES, "radius_m": radius},
        entry={"reentry": "always"},
    )


def test_location_inside_radius_enters_with_the_place() -> None:
    d = Driver(near_store(300))
    d.track("Location Updated", {"latitude": 48.8600, "longitude": 2.3400})  # ~190 m from the Louvre
    assert len(d.sends()) == 1
    place = d.sends()[0].context["trigger"]["place"]
    assert place["name"] == "Louvre" and 150 < place["distance_m"] < 250
    d.track("Location Updated", {"latitude": 48.8500, "longitude": 2.3400})  # ~1.2 km away
    d.track("Location Updated", {"latitude": "x", "longitude": 2.3})
    d.track("Location Updated", {})
    d.track("Product Viewed", {"latitude": 48.8606, "longitude": 2.3376})  # another event
    assert len(d.sends()) == 1
    # Segment's context.location counts too.
    d.track("Location Updated", {}, context={"location": {"latitude": 48.8720, "longitude": 2.3316}})
    assert [m.context["trigger"]["place"]["name"] for m in d.sends()] == ["Louvre", "Opera"]


def test_location_nearest_place_is_chosen() -> None:
    d = Driver(near_store(5000))  # both stores are inside the radius
    d.track("Location Updated", {"latitude": 48.8700, "longitude": 2.3330})  # nearer the Opera
    d.track("Location Updated", {"latitude": 48.8620, "longitude": 2.3370})  # nearer the Louvre
    assert [m.context["trigger"]["place"]["name"] for m in d.sends()] == ["Opera", "Louvre"]


def test_last_known_location_is_kept_for_templates() -> None:
    d = Driver(near_store(300))
    assert d.state.last_location is None
    d.track("Product Viewed", {"latitude": 48.85, "longitude": 2.35})
    d.track("Location Updated", {}, context={"location": {"latitude": 48.86, "longitude": 2.34}})
    assert (d.state.last_location["latitude"], d.state.last_location["longitude"]) == (48.86, 2.34)
    d.track("Location Updated", {"latitude": 1.0, "longitude": 1.0}, ts=d.now - 10 * M)  # an older report
    assert d.state.last_location["latitude"] == 48.86


def test_location_fires_on_the_way_in_not_on_every_ping_inside() -> None:
    d = Driver(near_store(300))  # reentry: always, so only the geofence logic limits entries
    for _ in range(5):
        d.track("Location Updated", {"latitude": 48.8600, "longitude": 2.3400})  # inside, Louvre
    assert len(d.sends()) == 1
    d.track("Location Updated", {"latitude": 48.8500, "longitude": 2.3400})  # left
    d.track("Location Updated", {"latitude": 48.8601, "longitude": 2.3399})  # back in
    assert len(d.sends()) == 2


# --- max lateness ---------------------------------------------------------------------------------


def test_max_lateness_old_event_does_not_start_a_run() -> None:
    added = send_j("added", {"type": "event", "event": "Product Added"})
    d = Driver(added, cart_journey())
    d.track("Product Added", {"cart_id": "c1"}, ts=T0 - 3 * D)  # from an offline queue
    assert d.effects() == []
    d.advance("2h")
    assert d.sends() == []
    d.track("Product Added", {"cart_id": "c2"}, ts=d.now - 5 * M)
    d.advance("2h")
    assert [(m.journey_id, m.context["trigger"]["properties"]["cart_id"]) for m in d.sends()] == [
        ("added", "c2"),
        ("cart", "c2"),
    ]
    # The cart window runs from the add's event time, not from when it was processed.
    assert d.sends()[1].at_ms == T0 + 2 * H - 5 * M + H


def test_max_lateness_is_configurable() -> None:
    strict = send_j("strict", {"type": "event", "event": "Product Added", "max_lateness": "10m"})
    lax = send_j("lax", {"type": "event", "event": "Product Added", "max_lateness": None})
    d = Driver(strict, lax)
    d.track("Product Added", {}, ts=T0 - 11 * M)
    d.track("Product Added", {}, ts=T0 - 300 * D)
    assert [m.journey_id for m in d.sends()] == ["lax", "lax"]


# --- location: places from the places catalog ------------------------------------------------------

CATALOG_PLACES = [
    {"id": "opera", "name": "Opera", "latitude": 48.8720, "longitude": 2.3316, "attributes": {"tags": ["store"]}},
    {
        "id": "louvre",
        "name": "Louvre",
        "latitude": 48.8606,
        "longitude": 2.3376,
        "attributes": {"tags": "store, flagship"},
    },
    {"id": "depot", "name": "Depot", "latitude": 48.8400, "longitude": 2.3700, "attributes": {}},
]


def catalog_store_journey(selector: dict[str, Any]) -> Journey:
    return send_j(
        "near",
        {"type": "location", "event": "Location Updated", "catalog_places": selector, "radius_m": 300},
        entry={"reentry": "always"},
    )


def test_location_places_from_the_catalog_by_tag_and_by_id() -> None:
    d = Driver(
        cat=Catalog([JourneyVersion("near", 1, catalog_store_journey({"tags": ["store"]}))], places=CATALOG_PLACES)
    )
    d.track("Location Updated", {"latitude": 48.8600, "longitude": 2.3400})  # ~190 m from the Louvre
    d.track("Location Updated", {"latitude": 48.8401, "longitude": 2.3701})  # at the depot: no tag
    d.track("Location Updated", {"latitude": 48.8720, "longitude": 2.3316})  # the Opera
    assert [(p["id"], p["name"]) for p in (m.context["trigger"]["place"] for m in d.sends())] == [
        ("louvre", "Louvre"),
        ("opera", "Opera"),
    ]

    by_id = Driver(
        cat=Catalog(
            [JourneyVersion("near", 1, catalog_store_journey({"ids": ["depot"], "tags": ["flagship"]}))],
            places=CATALOG_PLACES,
        )
    )
    for lat, lon in ((48.8720, 2.3316), (48.8606, 2.3376), (48.8400, 2.3700)):
        by_id.track("Location Updated", {"latitude": lat, "longitude": lon})
    assert [m.context["trigger"]["place"]["id"] for m in by_id.sends()] == ["louvre", "depot"]


def test_catalog_places_that_select_nothing_fire_nowhere() -> None:
    d = Driver(
        cat=Catalog([JourneyVersion("near", 1, catalog_store_journey({"tags": ["kiosk"]}))], places=CATALOG_PLACES)
    )
    d.track("Location Updated", {"latitude": 48.8720, "longitude": 2.3316})
    assert d.sends() == []
