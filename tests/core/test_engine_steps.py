"""The pure core's steps (issue 3 item 3), driven on a virtual clock."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.core.engine_driver import T0, D, Driver, H, M, catalog, iso, journey, ms

ON_SIGNUP = {"type": "event", "event": "Signed Up"}
CART_ADDED = {"type": "event", "event": "Product Added"}


def send(template: str, next: str | None = None, **rest: Any) -> dict[str, Any]:
    return {"type": "send", "channel": "email", "template": template, "next": next, **rest}


# --- send with variants --------------------------------------------------------------------------


def variants_journey():
    return journey(
        "promo",
        ON_SIGNUP,
        {
            "offer": {
                "type": "send",
                "channel": "email",
                "variants": [
                    {"name": "control", "template": "offer_a", "weight": 1},
                    {"name": "discount", "template": "offer_b", "weight": 3},
                ],
            }
        },
        entry={"reentry": "always"},
    )


def test_send_variant_is_deterministic_by_profile() -> None:
    promo = variants_journey()
    for profile in ("ada", "bob", "cy"):
        picks = set()
        for _ in range(2):
            d = Driver(promo, profile=profile)
            d.track("Signed Up")
            d.advance("1d")
            d.track("Signed Up")  # a second run of the same person gets the same variant
            picks.update((m.variant, m.template) for m in d.sends())
        assert len(picks) == 1, profile
        ((variant, template),) = picks
        assert template == {"control": "offer_a", "discount": "offer_b"}[variant]


def test_send_variant_distribution_follows_weights() -> None:
    promo = catalog(variants_journey())
    counts: Counter[str] = Counter()
    for i in range(2000):
        d = Driver(cat=promo, profile=f"user-{i}")
        d.track("Signed Up")
        (message,) = d.sends()
        counts[message.variant] += 1
        assert d.state.runs[d.run_id(1)].paths == {"offer": message.variant}
    # Expected 500 / 1500; 4.5 standard deviations (~87) either way.
    assert abs(counts["control"] - 500) < 90, counts


# --- waits ---------------------------------------------------------------------------------------


def test_wait_duration() -> None:
    series = journey(
        "series",
        ON_SIGNUP,
        {"a": send("day0", "w"), "w": {"type": "wait", "duration": "1d", "next": "b"}, "b": send("day1")},
    )
    d = Driver(series)
    d.track("Signed Up")
    rid = d.run_id(1)
    assert d.effects() == [
        ("send", "series", "a", "day0", None, T0),
        ("schedule", f"run:{rid}", T0 + D),
        ("run", "series", "active", "w", None),
    ]
    assert d.timers[f"run:{rid}"][1] == {"kind": "step", "run_id": rid, "step": "w", "visit": 1}
    mark = d.mark()
    d.advance(D - 1)
    assert d.effects(mark) == []
    d.advance(1)
    assert d.effects(mark) == [
        ("send", "series", "b", "day1", None, T0 + D),
        ("run", "series", "done", None, "completed"),
    ]


def until_time_journey(weekdays: list[str] | None):
    return journey(
        "digest",
        ON_SIGNUP,
        {"w": {"type": "wait", "until_time": {"at": "09:00", "weekdays": weekdays}, "next": "a"}, "a": send("digest")},
    )


def test_wait_until_time_with_weekdays_in_profile_timezone() -> None:
    weekdays = ["mon", "tue", "wed", "thu", "fri"]
    # Friday 6 March 2026, 11:00 in Tokyo (02:00 UTC): past 09:00, and the weekend is not
    # allowed, so Monday 9 March 09:00 JST = 00:00 UTC.
    d = Driver(until_time_journey(weekdays), now=ms("2026-03-06T02:00:00Z"))
    d.identify({"timezone": "Asia/Tokyo"})
    d.track("Signed Up")
    assert d.effects()[0] == ("schedule", f"run:{d.run_id(1)}", ms("2026-03-09T00:00:00Z"))
    d.advance("7d")
    assert d.sent() == [("a", "2026-03-09T00:00:00Z")]
    # Thursday 23:00 UTC is Friday 08:00 in Tokyo: the same morning, 09:00 JST.
    d = Driver(until_time_journey(weekdays), now=ms("2026-03-05T23:00:00Z"))
    d.identify({"timezone": "Asia/Tokyo"})
    d.track("Signed Up")
    d.advance("7d")
    assert d.sent() == [("a", "2026-03-06T00:00:00Z")]
    # No timezone: UTC; no weekdays: the next 09:00.
    d = Driver(until_time_journey(None), now=ms("2026-03-07T10:00:00Z"))
    d.track("Signed Up")
    d.advance("7d")
    assert d.sent() == [("a", "2026-03-08T09:00:00Z")]


def until_date_journey():
    return journey(
        "appt",
        ON_SIGNUP,
        {
            "w": {
                "type": "wait",
                "until_date": {"trait": "appointment_at", "offset": "-1d", "at": "18:00"},
                "next": "a",
            },
            "a": send("see_you_tomorrow"),
        },
    )


def test_wait_until_date_trait_with_offset() -> None:
    d = Driver(until_date_journey())
    d.identify({"timezone": "Europe/London", "appointment_at": "2026-04-10T09:30:00+01:00"})
    d.track("Signed Up")
    # The day before, 18:00 London summer time.
    assert d.effects()[0] == ("schedule", f"run:{d.run_id(1)}", ms("2026-04-09T17:00:00Z"))
    d.advance("60d")
    assert d.sent() == [("a", "2026-04-09T17:00:00Z")]


def test_wait_until_date_already_past_goes_on_at_once() -> None:
    d = Driver(until_date_journey())
    d.identify({"appointment_at": "2026-03-01"})
    d.track("Signed Up")
    assert d.sent() == [("a", iso(T0))]


def test_wait_until_date_missing_trait_ends_the_run_with_reason() -> None:
    d = Driver(until_date_journey())
    d.identify({"appointment_at": "not a date"})
    d.track("Signed Up")
    rid = d.run_id(1)
    assert d.effects() == [
        ("cancel", f"run:{rid}"),  # harmless: no timer was armed
        ("run", "appt", "exited", "w", "no date in trait appointment_at"),
    ]
    assert d.timers == {}


# --- wait for an event --------------------------------------------------------------------------


def checkout_journey(where_ref: bool = False):
    wait: dict[str, Any] = {
        "type": "wait_for_event",
        "event": "Checkout Started",
        "timeout": "1d",
        "on_event": "thanks",
        "on_timeout": "nudge",
    }
    if where_ref:
        wait["where"] = [{"property": "cart_id", "value": {"ref": "trigger.cart_id"}}]
    else:
        wait["match"] = "cart_id"
    return journey(
        "checkout",
        CART_ADDED,
        {"wait": wait, "thanks": send("thanks"), "nudge": send("nudge")},
    )


def test_wait_for_event_same_cart_takes_the_event_branch() -> None:
    for where_ref in (False, True):
        d = Driver(checkout_journey(where_ref))
        d.track("Product Added", {"cart_id": "c1"})
        rid = d.run_id(1)
        assert d.effects() == [
            ("schedule", f"run:{rid}", T0 + D),
            ("run", "checkout", "active", "wait", None),
        ]
        d.advance("1h")
        mark = d.mark()
        d.track("Checkout Started", {"cart_id": "c2"})  # another cart
        d.track("Checkout Started", {})
        d.track("Order Completed", {"cart_id": "c1"})  # another event
        assert d.effects(mark) == []
        d.advance("1h")
        d.track("Checkout Started", {"cart_id": "c1"})
        assert d.effects(mark) == [
            ("cancel", f"run:{rid}"),
            ("send", "checkout", "thanks", "thanks", None, T0 + 2 * H),
            ("run", "checkout", "done", None, "completed"),
        ]
        d.advance("3d")
        assert d.sent() == [("thanks", iso(T0 + 2 * H))]


def test_wait_for_event_timeout_branch() -> None:
    d = Driver(checkout_journey())
    d.track("Product Added", {"cart_id": "c1"})
    d.advance("2h")
    d.track("Checkout Started", {"cart_id": "c9"})
    mark = d.mark()
    d.advance("1d")
    assert d.effects(mark) == [
        ("send", "checkout", "nudge", "nudge", None, T0 + D),
        ("run", "checkout", "done", None, "completed"),
    ]
    d.track("Checkout Started", {"cart_id": "c1"})  # too late: the run has moved on
    assert d.sent() == [("nudge", iso(T0 + D))]


def test_wait_for_event_sees_a_follow_up_decided_in_the_same_batch() -> None:
    # The runtime decides a batch of events at one processing time, after they happened:
    # the wait starts at the trigger's event time, so a checkout two seconds after the add
    # counts even when both are decided ten seconds later.
    d = Driver(checkout_journey(), now=T0 + 10_000)
    d.track("Product Added", {"cart_id": "c1"}, ts=T0)
    d.track("Checkout Started", {"cart_id": "c1"}, ts=T0 + 2_000)
    assert d.sent() == [("thanks", iso(T0 + 10_000))]
    # Nothing from before the trigger counts, though.
    d = Driver(checkout_journey(), now=T0 + 10_000)
    d.track("Product Added", {"cart_id": "c1"}, ts=T0)
    d.track("Checkout Started", {"cart_id": "c1"}, ts=T0 - 1)
    assert d.sends() == []


def test_wait_for_event_ignores_an_event_after_the_timeout_decided_before_the_timer() -> None:
    # The timeout's timer is due at T0 + 1d but the runtime gets to it a little late; a
    # checkout stamped after the timeout, decided first, did not come in time: the run
    # takes the timeout branch, as it would had the timer fired on time.
    d = Driver(checkout_journey())
    d.track("Product Added", {"cart_id": "c1"})
    d.now = T0 + D + 5 * M
    d.track("Checkout Started", {"cart_id": "c1"}, ts=T0 + D + M)
    assert d.sends() == []
    d.advance(0)
    assert d.sent() == [("nudge", iso(T0 + D + 5 * M))]
    # At the very millisecond of the timeout it still counts.
    d = Driver(checkout_journey())
    d.track("Product Added", {"cart_id": "c1"})
    d.now = T0 + D + 5 * M
    d.track("Checkout Started", {"cart_id": "c1"}, ts=T0 + D)
    assert d.sent() == [("thanks", iso(T0 + D + 5 * M))]


def test_wait_for_event_does_not_react_to_the_trigger_itself() -> None:
    again = journey(
        "again",
        {"type": "event", "event": "Level Completed"},
        {
            "wait": {
                "type": "wait_for_event",
                "event": "Level Completed",
                "timeout": "1h",
                "on_event": "yes",
                "on_timeout": "no",
            },
            "yes": send("two_levels"),
            "no": send("one_level"),
        },
    )
    d = Driver(again)
    d.track("Level Completed")
    assert d.sends() == []
    d.advance("30m")
    d.track("Level Completed")
    assert d.sent() == [("yes", iso(T0 + 30 * M))]


# --- branches -------------------------------------------------------------------------------------


def test_branch_on_traits() -> None:
    plan = journey(
        "plan",
        ON_SIGNUP,
        {
            "b": {
                "type": "branch",
                "cases": [
                    {"when": [{"trait": "plan", "value": "pro"}], "next": "pro"},
                    {
                        "when": [
                            {
                                "any": [
                                    {"trait": "age", "op": "lt", "value": 18},
                                    {"not": {"trait": "email", "op": "exists"}},
                                ]
                            }
                        ],
                        "next": None,
                    },
                ],
                "default": "std",
            },
            "pro": send("pro_welcome"),
            "std": send("welcome"),
        },
        entry={"reentry": "always"},
    )
    d = Driver(plan)
    d.identify({"plan": "pro", "email": "a@x"})
    d.track("Signed Up")
    d.identify({"plan": "free"})
    d.track("Signed Up")
    d.identify({"age": 16})
    d.track("Signed Up")  # the second case: no next, the run completes
    assert [s for s, _ in d.sent()] == ["pro", "std"]
    assert [r["exit_reason"] for r in d.runs()] == ["completed"] * 3


def test_branch_on_event_counts_within_a_window() -> None:
    browsy = journey(
        "browsy",
        ON_SIGNUP,
        {
            "w": {"type": "wait", "duration": "2d", "next": "b"},
            "b": {
                "type": "branch",
                "cases": [
                    {
                        "when": [
                            {
                                "event": "Product Viewed",
                                "where": [{"property": "category", "value": "shoes"}],
                                "within": "1d",
                                "op": "gte",
                                "value": 3,
                            }
                        ],
                        "next": "shoes",
                    }
                ],
                "default": "generic",
            },
            "shoes": send("shoe_picks"),
            "generic": send("generic_picks"),
        },
    )

    def scenario(view_days: list[float], categories: list[str]) -> list[str]:
        d = Driver(browsy)
        d.track("Signed Up")
        for day, category in zip(view_days, categories, strict=True):
            d.advance_to(T0 + int(day * D))
            d.track("Product Viewed", {"category": category})
        d.advance_to(T0 + 3 * D)
        return [s for s, _ in d.sent()]

    assert scenario([1.1, 1.5, 1.9], ["shoes"] * 3) == ["shoes"]
    assert scenario([0.5, 1.5, 1.9], ["shoes"] * 3) == ["generic"]  # the first is older than a day
    assert scenario([1.1, 1.5, 1.9], ["shoes", "hats", "shoes"]) == ["generic"]
    assert scenario([1.1, 1.2, 1.5, 1.9], ["shoes", "hats", "shoes", "shoes"]) == ["shoes"]


def engagement_journey():
    return journey(
        "onboard",
        ON_SIGNUP,
        {
            "first": send("welcome", "w"),
            "w": {"type": "wait", "duration": "2d", "next": "b"},
            "b": {
                "type": "branch",
                "cases": [{"when": [{"message": "first", "status": "opened"}], "next": "opened"}],
                "default": "unopened",
            },
            "opened": send("tips"),
            "unopened": send("resend_welcome"),
        },
    )


def test_branch_on_engagement_with_an_earlier_message() -> None:
    d = Driver(engagement_journey())
    d.track("Signed Up")
    key = d.sends()[0].key
    assert key == f"{d.run_id(1)}:first:1"
    d.advance("1h")
    d.track("Email Delivered", {"message_key": key})
    d.track("Email Opened", {"message_key": "run_unknown:first:1"})  # someone else's message
    d.track("Email Opened", {"message_key": key})
    assert d.state.runs[d.run_id(1)].messages["first"]["statuses"] == ["sent", "delivered", "opened"]
    d.advance("2d")
    assert d.sent() == [("first", iso(T0)), ("opened", iso(T0 + 2 * D))]


def test_branch_on_engagement_not_opened() -> None:
    d = Driver(engagement_journey())
    d.track("Signed Up")
    d.track("Email Delivered", {"message_key": d.sends()[0].key})
    d.track("Email Opened", {"message_key": 42})  # not a key: ignored
    d.track("Email Opened", {})
    d.advance("2d")
    assert d.sent() == [("first", iso(T0)), ("unopened", iso(T0 + 2 * D))]


# --- random split ---------------------------------------------------------------------------------


def split_journey(id: str):
    return journey(
        id,
        ON_SIGNUP,
        {
            "s": {
                "type": "split",
                "paths": [
                    {"name": "a", "weight": 70, "next": "to_a"},
                    {"name": "b", "weight": 30, "next": "to_b"},
                ],
            },
            "to_a": send("a"),
            "to_b": send("b"),
        },
        entry={"reentry": "always"},
    )


def test_split_is_deterministic_by_profile_and_journey() -> None:
    one, two = split_journey("one"), split_journey("two")
    both = catalog(one, two)
    counts: Counter[str] = Counter()
    differs = 0
    for i in range(2000):
        d = Driver(cat=both, profile=f"user-{i}")
        d.track("Signed Up")
        d.advance("1h")
        d.track("Signed Up")
        by_journey: dict[str, set[str]] = {"one": set(), "two": set()}
        for m in d.sends():
            by_journey[m.journey_id].add(m.template)
        # The same person takes the same path in every run of a journey...
        assert len(by_journey["one"]) == 1 and len(by_journey["two"]) == 1
        counts[next(iter(by_journey["one"]))] += 1
        # ...but the assignment of two journeys is independent.
        differs += by_journey["one"] != by_journey["two"]
        assert {r["id"]: r for r in d.runs()}.keys() == {d.run_id(n) for n in range(1, 5)}
    assert abs(counts["a"] - 1400) < 95, counts  # 4.5 standard deviations
    assert abs(differs - 2000 * 2 * 0.7 * 0.3) < 100, differs
    d = Driver(one)
    d.track("Signed Up")
    assert d.state.runs[d.run_id(1)].paths["s"] in ("a", "b")


# --- update profile, exit ---------------------------------------------------------------------------


def test_update_profile_with_references() -> None:
    tag = journey(
        "tag",
        CART_ADDED,
        {
            "u": {
                "type": "update_profile",
                "set": {
                    "last_cart": {"ref": "trigger.cart_id"},
                    "first_item": {"ref": "trigger.products.0.sku"},
                    "plan_was": {"ref": "profile.plan"},
                    "missing": {"ref": "trigger.nope"},
                    "tier": "gold",
                },
                "unset": ["temp"],
                "next": "b",
            },
            "b": {"type": "branch", "cases": [{"when": [{"trait": "tier", "value": "gold"}], "next": "gold"}]},
            "gold": send("gold_welcome"),
        },
    )
    d = Driver(tag)
    d.identify({"plan": "pro", "temp": 1})
    d.track("Product Added", {"cart_id": "c7", "products": [{"sku": "S1"}, {"sku": "S2"}]})
    values = {"last_cart": "c7", "first_item": "S1", "plan_was": "pro", "missing": None, "tier": "gold"}
    assert d.effects() == [
        ("update", values, ["temp"]),
        ("send", "tag", "gold", "gold_welcome", None, T0),
        ("run", "tag", "done", None, "completed"),
    ]
    assert d.state.traits == {"plan": "pro", **values}


def test_update_profile_drives_trait_triggers_of_other_journeys_once() -> None:
    # A journey that marks people VIP starts the VIP journey, whose trigger is the trait
    # change, exactly as an identify would; the VIP journey setting the trait back does
    # not loop.
    promote = journey(
        "promote",
        {"type": "event", "event": "Order Completed"},
        {"u": {"type": "update_profile", "set": {"tier": "vip"}}},
        entry={"reentry": "always"},
    )
    vip = journey(
        "vip",
        {"type": "attribute_change", "trait": "tier", "to": "vip"},
        {"hi": send("vip_welcome", next="reset"), "reset": {"type": "update_profile", "set": {"tier": "basic"}}},
        entry={"reentry": "always"},
    )
    d = Driver(promote, vip)
    d.track("Order Completed")
    assert [(m.journey_id, m.template) for m in d.sends()] == [("vip", "vip_welcome")]
    assert d.state.traits["tier"] == "basic"
    d.track("Order Completed")
    assert len(d.sends()) == 2


def test_exit_step() -> None:
    short = journey(
        "short",
        ON_SIGNUP,
        {"a": send("one", "x"), "x": {"type": "exit"}, "never": send("never")},
    )
    d = Driver(short)
    d.track("Signed Up")
    assert d.effects() == [
        ("send", "short", "a", "one", None, T0),
        ("cancel", f"run:{d.run_id(1)}"),  # harmless: no timer was armed
        ("run", "short", "exited", "x", "exit_step"),
    ]
    d.advance("30d")
    assert d.sent() == [("a", iso(T0))]


# --- idempotency keys -----------------------------------------------------------------------------


def test_idempotency_keys_are_unique_per_visit() -> None:
    loop = journey(
        "loop",
        ON_SIGNUP,
        {
            "ping": send("ping", "w"),
            "w": {"type": "wait", "duration": "1d", "next": "check"},
            "check": {
                "type": "branch",
                "cases": [{"when": [{"trait": "done", "value": True}], "next": "bye"}],
                "default": "ping",
            },
            "bye": send("bye"),
        },
        entry={"reentry": "always"},
    )
    d = Driver(loop)
    d.track("Signed Up")
    d.advance("2d")
    d.identify({"done": True})
    d.advance("1d")
    rid1 = d.run_id(1)
    assert d.state.runs[rid1].visits == {"ping": 3, "w": 3, "check": 3, "bye": 1}
    d.track("Signed Up")  # a second run visits the same steps
    rid2 = d.run_id(2)
    assert rid1 not in d.state.runs  # done, no goal to wait for: forgotten
    keys = [m.key for m in d.sends()]
    assert keys == [f"{rid1}:ping:1", f"{rid1}:ping:2", f"{rid1}:ping:3", f"{rid1}:bye:1", f"{rid2}:ping:1"]
    assert len(set(keys)) == len(keys)
    # Timers carry the visit, so a stale one for an earlier visit of a step is ignored.
    assert d.timers[f"run:{rid2}"][1]["visit"] == 1


def test_a_stale_step_timer_is_ignored() -> None:
    series = journey(
        "series",
        ON_SIGNUP,
        {"w": {"type": "wait", "duration": "1d", "next": "a"}, "a": send("a")},
    )
    d = Driver(series)
    d.track("Signed Up")
    key = f"run:{d.run_id(1)}"
    _, payload = d.timers[key]
    d.advance("1d")
    mark = d.mark()
    d.add_timer(key, d.now, {**payload})  # fired again (a replay): the run has moved on
    d.add_timer("run:run_nobody", d.now, {"kind": "step", "run_id": "run_nobody", "step": "w", "visit": 1})
    d.advance("1m")
    assert d.effects(mark) == []
    assert len(d.sends()) == 1


def test_a_send_steps_topic_travels_with_its_message() -> None:
    """The consent check at dispatch reads the message's topic (store/consent.topic_for)."""
    j = journey("topics", ON_SIGNUP, {"offer": send("offer", "note", topic="offers"), "note": send("note")})
    d = Driver(j)
    d.track("Signed Up")
    offer, note = d.sends()
    assert offer.context["topic"] == "offers"
    assert "topic" not in note.context
