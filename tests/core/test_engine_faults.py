"""Faults (issue 3 item 8) and state round trips: failed messages end a run only when the
step says so; no event, however malformed, makes the core raise; and a profile's state
written to JSON and read back between every call gives the very same decisions."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nudgeflow.core.state import ProfileState
from tests.core.engine_driver import T0, D, Driver, H, M, catalog, iso, journey

ON_SIGNUP = {"type": "event", "event": "Signed Up"}


def send(template: str, next: str | None = None, **rest: Any) -> dict[str, Any]:
    return {"type": "send", "channel": "email", "template": template, "next": next, **rest}


# --- a message that failed ----------------------------------------------------------------------


def failing(on_failure: str):
    return journey(
        "j",
        ON_SIGNUP,
        {
            "a": send("first", "w", on_failure=on_failure),
            "w": {"type": "wait", "duration": "2d", "next": "b"},
            "b": send("second"),
        },
    )


def test_message_failed_ends_the_run_when_the_step_says_exit() -> None:
    d = Driver(failing("exit"))
    d.track("Signed Up")
    key = d.sends()[0].key
    d.advance("1m")
    mark = d.mark()
    d.track("Message Failed", {"message_key": key, "reason": "no template"})
    assert d.effects(mark) == [("cancel", f"run:{d.run_id(1)}"), ("run", "j", "exited", "w", "message_failed")]
    d.advance("3d")
    assert d.sent() == [("a", iso(T0))]


def test_message_failed_does_not_end_the_run_otherwise() -> None:
    d = Driver(failing("continue"))
    d.track("Signed Up")
    key = d.sends()[0].key
    d.advance("1m")
    mark = d.mark()
    d.track("Message Failed", {"message_key": key})
    assert d.effects(mark) == []
    assert d.state.runs[d.run_id(1)].messages["a"]["statuses"] == ["sent", "failed"]
    d.advance("3d")
    assert d.sent() == [("a", iso(T0)), ("b", iso(T0 + 2 * D))]


def test_message_failed_for_another_or_an_unknown_message_changes_nothing() -> None:
    d = Driver(failing("exit"))
    d.track("Signed Up")
    key = d.sends()[0].key
    mark = d.mark()
    for props in (
        {"message_key": key.replace(":a:", ":b:")},  # a step that sent nothing
        {"message_key": key[:-1] + "2"},  # another visit
        {"message_key": "run_nobody:a:1"},
        {"message_key": ":::"},
        {"message_key": ""},
        {"message_key": None},
        {"message_key": ["x"]},
        {},
    ):
        d.track("Message Failed", props)
    assert d.effects(mark) == []
    d.advance("3d")
    assert len(d.sends()) == 2


def test_message_failed_after_the_last_step_is_only_recorded() -> None:
    d = Driver(journey("one", ON_SIGNUP, {"a": send("only", on_failure="exit")}, goal={"event": "Order Completed"}))
    d.track("Signed Up")
    mark = d.mark()
    d.track("Message Failed", {"message_key": d.sends()[0].key})
    assert d.effects(mark) == []
    assert d.state.runs[d.run_id(1)].status == "done"


# --- a catalog with every trigger kind, and bad input -----------------------------------------------

FILTERS = [
    {"property": "category", "value": "shoes"},
    {"property": "price", "op": "gt", "value": 10},
    {"property": "price", "op": "lte", "value": "2026-01-01"},
    {"property": "tags", "op": "contains", "value": "sale"},
    {"property": "products", "op": "contains", "value": {"product_id": "p1"}},
    {"property": "coupon", "op": "not_exists"},
    {"property": "products.0.sku", "op": "in", "value": ["A", 1, None]},
    {"property": "currency", "op": "ne", "value": {"ref": "profile.currency"}},
]
STEPS = {
    "u": {
        "type": "update_profile",
        "set": {"last_cart": {"ref": "trigger.cart_id"}, "first": {"ref": "trigger.products.0"}},
        "unset": ["temp"],
        "next": "s",
    },
    "s": {
        "type": "send",
        "channel": "email",
        "variants": [{"name": "x", "template": "tx", "weight": 1}, {"name": "y", "template": "ty", "weight": 2}],
        "on_failure": "exit",
        "next": "wfe",
    },
    "wfe": {
        "type": "wait_for_event",
        "event": "Checkout Started",
        "match": "cart_id",
        "where": [{"property": "total", "op": "gte", "value": {"ref": "trigger.price"}}],
        "timeout": "1d",
        "on_event": "b",
        "on_timeout": "wd",
    },
    "wd": {"type": "wait", "until_date": {"trait": "trial_ends_at", "offset": "-1d"}, "next": "wt"},
    "wt": {"type": "wait", "until_time": {"at": "09:30", "weekdays": ["mon", "sat"]}, "next": "b"},
    "b": {
        "type": "branch",
        "cases": [
            {"when": [{"trait": "age", "op": "gte", "value": 18}, {"message": "s", "status": "clicked"}], "next": "sp"},
            {
                "when": [
                    {
                        "any": [
                            {"event": "Product Viewed", "where": FILTERS[:3], "within": "2d", "op": "gte", "value": 2}
                        ]
                    },
                    {"not": {"trait": "plan", "op": "in", "value": ["free", None]}},
                ],
                "next": None,
            },
        ],
        "default": "sp",
    },
    "sp": {
        "type": "split",
        "paths": [{"name": "l", "weight": 1, "next": "w"}, {"name": "r", "weight": 1, "next": "x"}],
    },
    "w": {"type": "wait", "duration": "6h", "next": "last"},
    "last": {"type": "send", "channel": "push", "template": "last"},
    "x": {"type": "exit"},
}
RULES = {
    "entry": {"filter": [{"not": {"trait": "blocked", "value": True}}], "reentry": "always"},
    "exit": {
        "events": [
            {"event": "Order Completed", "match": "cart_id"},
            {"event": "Unsubscribed", "where": FILTERS[3:5] + FILTERS[6:]},
        ]
    },
    "goal": {"event": "Order Completed", "where": FILTERS[5:6], "within": "2d", "revenue": "revenue"},
    "holdout": 0.1,
}
TRIGGERS = {
    "ev": {"type": "event", "event": "Product Viewed", "where": FILTERS[:2]},
    "occ": {
        "type": "event",
        "event": "Product Viewed",
        "occurrences": {"count": 2, "within": "1h", "match": "product_id"},
    },
    "nf": {
        "type": "event_not_followed",
        "event": "Product Added",
        "where": [{"property": "price", "op": "exists"}],
        "occurrences": {"count": 2, "within": "1d"},
        "not_followed_by": {"event": "Order Completed", "within": "1h", "match": "cart_id"},
    },
    "nf-nomatch": {
        "type": "event_not_followed",
        "event": "Product Added",
        "not_followed_by": {"event": "Checkout Started", "where": FILTERS[2:4], "within": "30m"},
    },
    "idle": {"type": "inactivity", "events": ["Session Started", "App Opened"], "window": "2d"},
    "idle-any": {"type": "inactivity", "window": "3d"},
    "attr": {"type": "attribute_change", "trait": "plan", "from": ["pro", None], "to": "free"},
    "attr-any": {"type": "attribute_change", "trait": "email"},
    "date": {"type": "date_relative", "trait": "trial_ends_at", "offset": "-3d", "at": "10:00"},
    "bday": {"type": "date_relative", "trait": "birthday", "yearly": True, "offset": "-36h"},
    "tenth": {"type": "milestone", "event": "Session Started", "count": 3},
    "spend": {"type": "milestone", "event": "Order Completed", "sum": {"property": "revenue", "reaches": 500}},
    "streak": {"type": "milestone", "event": "App Opened", "streak": {"days": 2}},
    "geo": {
        "type": "location",
        "places": [{"name": "a", "latitude": 0, "longitude": 0}, {"name": "b", "latitude": 89.9, "longitude": 179.9}],
        "radius_m": 100_000,
    },
    "geo-ev": {
        "type": "location",
        "event": "Location Updated",
        "places": [{"name": "c", "latitude": -90, "longitude": -180}],
        "radius_m": 50,
        "max_lateness": None,
    },
}
EVERYTHING = catalog(
    *[journey(id, trigger, STEPS, priority=i, **RULES) for i, (id, trigger) in enumerate(TRIGGERS.items())]
)

EVENT_NAMES = [
    "Product Viewed",
    "Product Added",
    "Order Completed",
    "Checkout Started",
    "Session Started",
    "App Opened",
    "Location Updated",
    "Unsubscribed",
    "Signed Up",
    "Email Opened",
    "Push Clicked",
    "Message Failed",
]
PROPERTY_KEYS = [
    "category",
    "price",
    "tags",
    "products",
    "coupon",
    "currency",
    "cart_id",
    "product_id",
    "total",
    "revenue",
    "latitude",
    "longitude",
    "message_key",
]
TRAIT_KEYS = ["plan", "email", "timezone", "trial_ends_at", "birthday", "age", "currency", "blocked", "temp"]
ODD_STRINGS = [
    "",
    "0",
    "-1",
    "1e400",
    "-1e400",
    "nan",
    "inf",
    "Infinity",
    " 12 ",
    "1_000",
    "2026-03-10",
    "2026-03-10T14:00:00Z",
    "9999-12-31T23:59:59+14:00",
    "0001-01-01",
    "America/New_York",
    "america/new_york",
    "Not/AZone",
    "../../etc/passwd",
    "UTC\x00",
    "shoes",
    "sale",
    "p1",
    "c1",
    "free",
    "pro",
    "x" * 300,
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e308, -1e308, 5e-324, 2**53 + 1, 90, -180, 0.0])
    | st.text(max_size=12)
    | st.sampled_from(ODD_STRINGS)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(PROPERTY_KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
# Values that make triggers fire and runs move, mixed half and half with arbitrary JSON, so
# that bad values reach code that only runs once a journey is under way.
GOOD: dict[str, list[Any]] = {
    "category": ["shoes", "hats"],
    "price": [5, 20, "15"],
    "tags": [["sale"], "sale"],
    "products": [[{"product_id": "p1", "sku": "A"}], []],
    "coupon": [None, "X"],
    "currency": ["EUR", "USD"],
    "cart_id": ["c1", "c2"],
    "product_id": ["p1", "p2"],
    "total": [30, 10],
    "revenue": [100, 300, "250"],
    "latitude": [0.1, -90, 89.9],
    "longitude": [0.1, -180, 179.9],
    "message_key": ["run_x:s:1"],
    "plan": ["pro", "free", None],
    "email": ["a@example.com", "b@example.com"],
    "timezone": ["America/New_York", "Asia/Tokyo", "Pacific/Chatham"],
    "trial_ends_at": ["2026-03-06", "2026-03-08T12:00:00Z", "2026-04-01", (T0 + 5 * D) // 1000],
    "birthday": ["1990-03-05", "2000-02-29"],
    "age": [30, 10],
    "blocked": [False, True],
    "temp": [1],
}


def record(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    known = st.fixed_dictionaries({}, optional={k: st.sampled_from(GOOD[k]) | json_values for k in keys})
    extra = st.dictionaries(st.text(max_size=8), json_values, max_size=2)
    return st.builds(lambda a, b: {**b, **a}, known, extra)


properties = record(PROPERTY_KEYS)
traits = record(TRAIT_KEYS)
# Event time minus processing time: mostly on time, sometimes late (older than max_lateness)
# or from a device clock in the future.
skews = st.sampled_from([0, -M]) | st.integers(-4 * D, H)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("track"), st.sampled_from(EVENT_NAMES), properties, skews),
        st.tuples(st.just("track"), st.sampled_from(EVENT_NAMES[:4]), properties, st.just(0)),
        st.tuples(st.just("identify"), traits, skews),
        st.tuples(
            st.just("engage"),
            st.sampled_from(["Email Opened", "Push Clicked", "Message Failed", "Email Delivered"]),
            st.integers(0, 50),
        ),
        st.tuples(st.just("advance"), st.integers(0, 4 * D)),
        st.tuples(st.just("context"), st.sampled_from(EVENT_NAMES), json_values),
    ),
    max_size=40,
)


def replay(ops: list[tuple[Any, ...]], roundtrip: bool) -> Driver:
    d = Driver(cat=EVERYTHING, roundtrip=roundtrip)
    for op in ops:
        kind = op[0]
        if kind == "track":
            _, name, props, skew = op
            d.track(name, props, ts=d.now + skew)
        elif kind == "identify":
            _, values, skew = op
            d.identify(values, ts=d.now + skew)
        elif kind == "engage":
            _, name, index = op
            sends = d.sends()
            if sends:
                d.track(name, {"message_key": sends[index % len(sends)].key})
        elif kind == "advance":
            d.advance(op[1])
        else:
            _, name, location = op
            d.track(name, {}, context={"location": location})
    d.advance("30d")
    return d


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(operations)
def test_no_event_makes_the_core_raise_and_state_round_trips(ops: list[tuple[Any, ...]]) -> None:
    plain = replay(ops, roundtrip=False)
    through_json = replay(ops, roundtrip=True)
    assert [e for _, e in through_json.log] == [e for _, e in plain.log]
    assert through_json.state.to_json() == plain.state.to_json()


def test_every_trigger_kind_is_in_the_fault_catalog() -> None:
    kinds = {jv.definition.trigger.type for jv in EVERYTHING.live.values()}
    assert kinds == {
        "event",
        "event_not_followed",
        "inactivity",
        "attribute_change",
        "date_relative",
        "milestone",
        "location",
    }


def test_hand_picked_bad_input_does_not_raise() -> None:
    ops: list[tuple[Any, ...]] = [
        ("identify", {"timezone": "Not/AZone", "trial_ends_at": "1e400", "birthday": 1e308, "plan": "pro"}, 0),
        ("identify", {"timezone": ["x"], "trial_ends_at": {"a": 1}, "birthday": "0001-01-01", "plan": None}, 0),
        ("identify", {"plan": "free", "birthday": "2024-02-29", "trial_ends_at": -1e300}, 0),
        ("track", "Order Completed", {"revenue": "1e400", "cart_id": {"a": [1]}}, 0),
        ("track", "Order Completed", {"revenue": "nan"}, 0),
        ("track", "Order Completed", {"revenue": 1e308}, 0),
        ("track", "Order Completed", {"revenue": 1e308}, 0),
        ("track", "Product Added", {"price": None, "cart_id": ["c"] * 100}, 0),
        ("track", "Product Added", {"price": "x", "cart_id": "c" * 500}, 0),
        ("track", "Product Viewed", {"category": "shoes", "price": "11", "product_id": None}, 0),
        ("track", "Location Updated", {"latitude": "91", "longitude": 0}, 0),
        ("track", "Location Updated", {"latitude": 0.0001, "longitude": "0"}, 0),
        ("context", "App Opened", {"latitude": True, "longitude": 1}),
        ("context", "App Opened", 7),
        ("track", "Checkout Started", {"cart_id": ["c"] * 100, "total": "2026-01-01"}, 0),
        ("engage", "Message Failed", 0),
        ("advance", 3 * D),
        ("track", "Session Started", {}, -(10**12)),
        ("track", "App Opened", {}, 10**12),
    ]
    plain = replay(ops, roundtrip=False)
    through_json = replay(ops, roundtrip=True)
    assert [e for _, e in through_json.log] == [e for _, e in plain.log]
    assert plain.sends()


# --- the same scenario with and without a JSON round trip between calls ----------------------------


def scenario(roundtrip: bool) -> Driver:
    js = [
        journey("cart", TRIGGERS["nf"] | {"occurrences": None}, STEPS, **(RULES | {"holdout": 0.0})),
        journey("idle", TRIGGERS["idle"], {"m": send("miss")}),
        journey("streak", {"type": "milestone", "event": "App Opened", "streak": {"days": 3}}, {"m": send("streak")}),
        journey(
            "views", TRIGGERS["occ"], {"m": send("views")}, goal={"event": "Order Completed", "revenue": "revenue"}
        ),
        journey("trial", TRIGGERS["date"], {"m": send("trial")}),
        journey("bday", {"type": "date_relative", "trait": "birthday", "yearly": True}, {"m": send("bday")}),
        journey("spend", TRIGGERS["spend"], {"m": send("spend")}),
        journey("downgrade", TRIGGERS["attr"], {"m": send("save")}),
        journey(
            "geo", TRIGGERS["geo-ev"] | {"places": [{"name": "s", "latitude": 1, "longitude": 1}]}, {"m": send("near")}
        ),
    ]
    d = Driver(*js, roundtrip=roundtrip)
    d.identify(
        {
            "timezone": "America/New_York",
            "plan": "pro",
            "trial_ends_at": "2026-03-12",
            "birthday": "1990-03-05",
            "age": 30,
        }
    )
    for day in range(4):
        d.advance_to(T0 + day * D + 2 * H)
        d.track("App Opened")
        d.track("Session Started")
    d.track("Product Viewed", {"product_id": "p1", "category": "shoes", "price": 20})
    d.advance("10m")
    d.track("Product Viewed", {"product_id": "p1", "category": "shoes", "price": 20})
    d.track("Product Added", {"cart_id": "c1", "price": 20, "products": [{"sku": "A"}]})
    d.advance("2h")
    d.track("Email Opened", {"message_key": d.sends()[-1].key})
    d.track("Push Clicked", {"message_key": d.sends()[-1].key})
    d.track("Checkout Started", {"cart_id": "c1", "total": 25})
    d.identify({"plan": "free"})
    d.track("Location Updated", {"latitude": 1.0001, "longitude": 1})
    d.advance("1d")
    d.track("Order Completed", {"cart_id": "c1", "revenue": 320})
    d.track("Order Completed", {"cart_id": "c2", "revenue": "200"})
    d.advance("400d")
    return d


def test_state_round_trip_between_every_call_gives_equal_behaviour() -> None:
    plain, through_json = scenario(False), scenario(True)
    assert len(plain.sends()) >= 10
    assert {m.journey_id for m in plain.sends()} == {
        "cart",
        "idle",
        "streak",
        "views",
        "trial",
        "bday",
        "spend",
        "downgrade",
        "geo",
    }
    assert [e for _, e in through_json.log] == [e for _, e in plain.log]
    assert through_json.state.to_json() == plain.state.to_json()
    assert through_json.timers == plain.timers


def test_state_from_json_of_nothing_is_a_fresh_profile() -> None:
    assert ProfileState.from_json("p", None) == ProfileState("p")
    assert ProfileState.from_json("p", b"") == ProfileState("p")
    state = ProfileState.from_json("p", ProfileState("p", traits={"a": 1}, run_seq=3).to_json())
    assert (state.traits, state.run_seq) == ({"a": 1}, 3)
