"""Filters and conditions: every operator, references, windows, engagement, nesting."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from nudgeflow.core.conditions import (
    Scope,
    compare,
    count_events,
    evaluate,
    evaluate_one,
    event_matches,
    filters_match,
    get_path,
    resolve,
)
from nudgeflow.core.inputs import EventInput
from nudgeflow.core.state import Run
from nudgeflow.model.journeys import (
    OPERATORS,
    Condition,
    EventMatch,
    Filter,
    Goal,
    NotFollowedBy,
    Ref,
    WaitForEventStep,
)

NOW = 1_780_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR
_conditions = TypeAdapter(list[Condition])


def conditions(*docs: dict[str, Any]) -> list[Any]:
    """Conditions built the way a YAML file builds them."""
    return _conditions.validate_python(list(docs))


def scope(**kwargs: Any) -> Scope:
    kwargs.setdefault("traits", {})
    kwargs.setdefault("now_ms", NOW)
    return Scope(**kwargs)


def event(name: str, props: dict[str, Any] | None = None, ts: int = NOW) -> EventInput:
    return EventInput(message_id="m1", type="track", event=name, timestamp_ms=ts, properties=props or {})


def run_with(messages: dict[str, dict[str, Any]]) -> Run:
    return Run(id="r1", journey_id="j", version=1, entered_at=NOW, trigger={"event": "x", "at": NOW}, messages=messages)


# --- get_path --------------------------------------------------------------------------------

ORDER = {
    "order_id": "o1",
    "revenue": 42.5,
    "products": [{"product_id": "p1", "sku": "S-1", "price": 10}, {"product_id": "p2", "sku": "S-2"}],
    "shipping": {"address": {"city": "Lyon"}, "method": None},
    "utm.source": "newsletter",
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("order_id", (True, "o1")),
        ("shipping.address.city", (True, "Lyon")),
        ("products.0.sku", (True, "S-1")),
        ("products.1.product_id", (True, "p2")),
        ("products.2.sku", (False, None)),  # past the end
        ("products.-1.sku", (False, None)),  # no negative indexing: "-1" is not a position
        ("products.first", (False, None)),
        ("shipping.method", (True, None)),  # present with null is not missing
        ("shipping.method.name", (False, None)),
        ("order_id.x", (False, None)),  # a string has no members
        ("nope", (False, None)),
        ("utm.source", (True, "newsletter")),  # a key that itself holds a dot
    ],
)
def test_get_path(path: str, expected: tuple[bool, Any]) -> None:
    assert get_path(ORDER, path) == expected


def test_get_path_on_non_containers() -> None:
    assert get_path(None, "a") == (False, None)
    assert get_path("text", "0") == (False, None)
    assert get_path([10, 20], "1") == (True, 20)
    assert get_path([10, 20], "١") == (False, None)  # a non-ASCII digit is not an index


# --- resolve ---------------------------------------------------------------------------------


def test_resolve_refs_and_plain_values() -> None:
    s = scope(traits={"plan": "pro", "address": {"country": "FR"}}, trigger={"cart_id": "c9", "items": [{"sku": "a"}]})
    assert resolve(Ref(ref="trigger.cart_id"), s) == "c9"
    assert resolve(Ref(ref="trigger.items.0.sku"), s) == "a"
    assert resolve(Ref(ref="profile.plan"), s) == "pro"
    assert resolve(Ref(ref="profile.address.country"), s) == "FR"
    assert resolve(Ref(ref="trigger.missing"), s) is None
    assert resolve(Ref(ref="profile.missing"), s) is None
    assert resolve("trigger.cart_id", s) == "trigger.cart_id"  # a plain string is not a reference
    assert resolve([1, 2], s) == [1, 2]
    assert resolve(None, s) is None


def test_resolve_trigger_ref_without_a_trigger_is_none() -> None:
    assert resolve(Ref(ref="trigger.cart_id"), scope()) is None


def test_a_filter_value_written_as_ref_in_yaml_resolves() -> None:
    flt = Filter.model_validate({"property": "cart_id", "value": {"ref": "trigger.cart_id"}})
    assert isinstance(flt.value, Ref)
    assert filters_match([flt], {"cart_id": "c1"}, scope(trigger={"cart_id": "c1"}))
    assert not filters_match([flt], {"cart_id": "c2"}, scope(trigger={"cart_id": "c1"}))


# --- compare: eq / ne ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "expected", "equal"),
    [
        (1, 1.0, True),
        (1, 1, True),
        ("19.99", 19.99, True),  # one SDK sends strings, another numbers
        (19.99, "19.99", True),
        ("1e3", 1000, True),
        ("12345678901234567890", 12345678901234567890, True),  # integers stay exact
        ("12345678901234567891", 12345678901234567890, False),
        ("1.0", "1", False),  # two strings compare as text
        ("abc", "abc", True),
        ("abc", "ABC", False),
        (True, True, True),
        (True, 1, False),  # bool is not a number
        (1, True, False),
        (False, 0, False),
        ("true", True, False),
        (None, None, True),  # present with null equals null
        (None, 0, False),
        ("", None, False),
        ([1, 2], [1.0, 2], True),
        ([1, 2], [2, 1], False),
        ([True], [1], False),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ([1], 1, False),
        ({"a": 1}, "a", False),
        (" 12", 12, False),  # only clean numeric strings are numbers
        ("1_000", 1000, False),
        ("nan", float("nan"), False),
        ("inf", float("inf"), False),
    ],
)
def test_eq_and_ne(actual: Any, expected: Any, equal: bool) -> None:
    assert compare("eq", True, actual, expected) is equal
    assert compare("ne", True, actual, expected) is (not equal)


def test_missing_is_not_equal_to_anything_even_null() -> None:
    for expected in (None, 0, "", "x", [], {}):
        assert compare("eq", False, None, expected) is False
        assert compare("ne", False, None, expected) is True


# --- compare: in / not_in --------------------------------------------------------------------


def test_in_and_not_in() -> None:
    assert compare("in", True, "pro", ["free", "pro"])
    assert compare("in", True, "10", [5, 10])  # eq semantics: a numeric string is the number
    assert compare("in", True, 10, ["10"])
    assert not compare("in", True, 1, [True])
    assert not compare("in", True, "team", ["free", "pro"])
    assert compare("not_in", True, "team", ["free", "pro"])
    assert not compare("not_in", True, "pro", ["free", "pro"])
    assert not compare("in", True, None, [])
    assert compare("in", True, None, [None])


def test_in_with_missing_property_or_non_list_value() -> None:
    assert not compare("in", False, None, [None, "x"])
    assert compare("not_in", False, None, ["x"])
    # Only a list is a list of choices: a string is not a set of characters.
    assert not compare("in", True, "p", "pro")
    assert not compare("in", True, "pro", "pro")
    assert not compare("in", True, "pro", None)
    assert compare("not_in", True, "pro", "pro")


# --- compare: ordering -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "expected", "order"),
    [
        (5, 3, 1),
        (3, 5, -1),
        (3, 3.0, 0),
        ("5", 3, 1),  # numeric string against a number
        (5, "30", -1),
        ("10", "9", 1),  # two numeric strings are numbers, not text
        ("-1.5", -2, 1),
        ("2026-03-01", "2026-02-28", 1),
        ("2026-03-01T00:00:00Z", "2026-03-01", 0),  # a date alone is midnight UTC
        ("2026-03-01T00:00:00", "2026-03-01T00:00:00Z", 0),  # naive is UTC
        ("2026-03-01T01:00:00+02:00", "2026-03-01", -1),  # 23:00 UTC the day before
        ("2026-03-01T10:00:00.5Z", "2026-03-01T10:00:00.250Z", 1),
        ("2026-03-01t10:00:00z", "2026-03-01T09:59:59Z", 1),  # RFC 3339 allows lowercase
        ("2026-03-01t10:00:00z", "2026-03-01T11:00:00+02:00", 1),
        ("2026-03-01T10:00:00,5Z", "2026-03-01T10:00:00.6Z", -1),
        ("banana", "apple", 1),
        ("Banana", "apple", -1),  # code point order
        ("2026-03-01", "soon", -1),  # only one is a date: text order
    ],
)
def test_ordering(actual: Any, expected: Any, order: int) -> None:
    results = {op: compare(op, True, actual, expected) for op in ("gt", "gte", "lt", "lte")}
    assert results == {"gt": order > 0, "gte": order >= 0, "lt": order < 0, "lte": order <= 0}


def test_iso_instants_compare_across_offsets_not_as_text() -> None:
    # As text "2026-03-01T09:00:00+05:00" > "2026-03-01T08:00:00Z"; as instants it is earlier.
    assert compare("lt", True, "2026-03-01T09:00:00+05:00", "2026-03-01T08:00:00Z")
    assert compare("gt", True, "2026-03-01T10:00:00-05:00", "2026-03-01T14:59:59Z")


@pytest.mark.parametrize(
    ("found", "actual", "expected"),
    [
        (False, None, 3),
        (True, None, 3),
        (True, True, 0),
        (True, 1, True),
        (True, "abc", 3),
        (True, 3, "abc"),
        (True, [5], 3),
        (True, {"a": 1}, 3),
        (True, "2026-01-01", 20260101),
        (True, float("nan"), 1),
        (True, 1, float("nan")),
        (True, "2026-02-30", 3),  # not a real date and not a number
    ],
)
def test_ordering_of_incomparable_values_is_false(found: bool, actual: Any, expected: Any) -> None:
    for op in ("gt", "gte", "lt", "lte"):
        assert compare(op, found, actual, expected) is False


def test_invalid_calendar_dates_fall_back_to_text_order() -> None:
    assert compare("gt", True, "2026-02-30", "2026-02-28")  # text order, not an error


# --- compare: exists -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("found", "actual", "exists"),
    [
        (True, "x", True),
        (True, "", True),
        (True, 0, True),
        (True, False, True),
        (True, [], True),
        (True, None, False),
        (False, None, False),
    ],
)
def test_exists_and_not_exists(found: bool, actual: Any, exists: bool) -> None:
    assert compare("exists", found, actual, None) is exists
    assert compare("not_exists", found, actual, None) is (not exists)


# --- compare: contains -----------------------------------------------------------------------

PRODUCTS = [
    {"product_id": "p1", "sku": "S-1", "category": "shoes", "price": 50},
    {"product_id": "p2", "sku": "S-2", "category": "socks", "price": "5"},
]


@pytest.mark.parametrize(
    ("actual", "expected", "contains"),
    [
        ("summer sale", "sale", True),
        ("summer sale", "Sale", False),  # case-sensitive
        ("summer sale", "", True),
        ("12345", 3, False),  # a number is not a substring
        (["a", "b"], "a", True),
        (["a", "b"], "c", False),
        ([1, 2, 3], "2", True),  # eq semantics for list items
        ([1, 2, 3], True, False),
        ([[1, 2]], [1, 2], True),
        (PRODUCTS, {"product_id": "p1"}, True),  # subset match on an item's keys
        (PRODUCTS, {"product_id": "p1", "category": "shoes"}, True),
        (PRODUCTS, {"product_id": "p1", "category": "socks"}, False),  # keys must hold on one item
        (PRODUCTS, {"price": 5}, True),  # "5" equals 5
        (PRODUCTS, {"color": None}, False),  # a key the items lack
        (PRODUCTS, {}, True),  # every object has the empty set of keys
        (["p1"], {"product_id": "p1"}, False),
        ({"product_id": "p1"}, "p1", False),  # an object is not a list
        ({"product_id": "p1"}, {"product_id": "p1"}, False),
        (None, "x", False),
        (42, 4, False),
    ],
)
def test_contains_and_not_contains(actual: Any, expected: Any, contains: bool) -> None:
    assert compare("contains", True, actual, expected) is contains
    assert compare("not_contains", True, actual, expected) is (not contains)


def test_contains_on_missing_property() -> None:
    assert compare("contains", False, None, "x") is False
    assert compare("not_contains", False, None, "x") is True


def test_unknown_operator_matches_nothing() -> None:
    assert compare("startswith", True, "abc", "a") is False
    assert compare("", True, 1, 1) is False


def test_absurdly_deep_values_do_not_raise() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    assert compare("eq", True, deep, deep) is False
    assert compare("ne", True, deep, deep) is True


# --- compare never raises on arbitrary JSON ----------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "19.99",
            "1e400",
            "-0",
            "2026-03-29T02:30:00",
            "2026-02-29",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
            ".5",
            "1" * 5000,
        ]
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    op=st.sampled_from(OPERATORS) | st.text(max_size=6),
    found=st.booleans(),
    actual=json_values,
    expected=json_values,
)
def test_compare_never_raises(op: str, found: bool, actual: Any, expected: Any) -> None:
    result = compare(op, found, actual, expected)
    assert isinstance(result, bool)
    negations = {"eq": "ne", "in": "not_in", "exists": "not_exists", "contains": "not_contains"}
    if op in negations:  # a negated operator is exactly the opposite of its positive form
        assert compare(negations[op], found, actual, expected) is (not result)


# --- filters and events ------------------------------------------------------------------------


def test_filters_match_requires_all() -> None:
    props = {"category": "shoes", "price": "89.90", "products": PRODUCTS}
    s = scope()
    assert filters_match([], props, s)
    assert filters_match(
        [
            Filter(property="category", value="shoes"),
            Filter(property="price", op="gte", value=50),
            Filter(property="products", op="contains", value={"product_id": "p2"}),
        ],
        props,
        s,
    )
    assert not filters_match(
        [Filter(property="category", value="shoes"), Filter(property="price", op="lt", value=50)], props, s
    )


def test_filters_resolve_profile_refs() -> None:
    flt = Filter(property="price", op="lte", value=Ref(ref="profile.max_budget"))
    assert filters_match([flt], {"price": 80}, scope(traits={"max_budget": 100}))
    assert not filters_match([flt], {"price": 120}, scope(traits={"max_budget": 100}))
    assert not filters_match([flt], {"price": 80}, scope())  # missing ref -> None -> incomparable


def test_filters_on_non_dict_properties_do_not_raise() -> None:
    assert not filters_match([Filter(property="a", value=1)], None, scope())  # type: ignore[arg-type]
    assert filters_match([Filter(property="a", op="not_exists")], [], scope())  # type: ignore[arg-type]


def test_event_matches_name_filters_and_match_key() -> None:
    spec = EventMatch(event="Order Completed", where=[Filter(property="revenue", op="gt", value=0)], match="cart_id")
    s = scope(trigger={"cart_id": "c1", "products": PRODUCTS})
    assert event_matches(spec, event("Order Completed", {"cart_id": "c1", "revenue": 10}), s)
    assert not event_matches(spec, event("Order Completed", {"cart_id": "c2", "revenue": 10}), s)
    assert not event_matches(spec, event("Order Completed", {"cart_id": "c1", "revenue": 0}), s)
    assert not event_matches(spec, event("Product Added", {"cart_id": "c1", "revenue": 10}), s)
    assert not event_matches(spec, event("order completed", {"cart_id": "c1", "revenue": 10}), s)


def test_event_match_key_needs_both_sides_present() -> None:
    spec = EventMatch(event="Order Completed", match="cart_id")
    assert not event_matches(spec, event("Order Completed", {}), scope(trigger={}))
    assert not event_matches(spec, event("Order Completed", {"cart_id": None}), scope(trigger={"cart_id": None}))
    assert not event_matches(spec, event("Order Completed", {"cart_id": "c1"}), scope(trigger=None))
    assert not event_matches(spec, event("Order Completed", {}), scope(trigger={"cart_id": "c1"}))
    # eq semantics: an id sent as a number by one SDK and a string by another is the same id.
    assert event_matches(spec, event("Order Completed", {"cart_id": 17}), scope(trigger={"cart_id": "17"}))


def test_event_matches_accepts_every_spec_shape() -> None:
    s = scope(trigger={"cart_id": "c1"})
    order = event("Order Completed", {"cart_id": "c1", "revenue": 30})
    assert event_matches(NotFollowedBy(event="Order Completed", within="1h", match="cart_id"), order, s)
    assert event_matches(
        WaitForEventStep(type="wait_for_event", event="Order Completed", match="cart_id", timeout="1d"), order, s
    )
    assert event_matches(
        Goal(event="Order Completed", where=[Filter(property="revenue", op="gte", value=30)]), order, s
    )


def test_event_matches_uses_the_call_type_for_non_track_events() -> None:
    identify = EventInput(message_id="m", type="identify", event=None, timestamp_ms=NOW)
    assert event_matches(EventMatch(event="identify"), identify, scope())


def test_wait_for_event_filter_referring_to_the_trigger() -> None:
    spec = EventMatch(event="Product Added", where=[Filter(property="product_id", value=Ref(ref="trigger.product_id"))])
    s = scope(trigger={"product_id": "p1"})
    assert event_matches(spec, event("Product Added", {"product_id": "p1"}), s)
    assert not event_matches(spec, event("Product Added", {"product_id": "p2"}), s)


# --- counting events ---------------------------------------------------------------------------

HISTORY: dict[str, list[list[Any]]] = {
    "Product Viewed": [
        [NOW - 10 * DAY, {"product_id": "p1"}],
        [NOW - 2 * HOUR, {"product_id": "p1"}],
        [NOW - HOUR, {"product_id": "p2"}],
        [NOW - 1, {"product_id": "p1"}],
        [NOW, {"product_id": "p1"}],
        [NOW + 1, {"product_id": "p1"}],  # stamped after now: not happened yet
    ],
    "Order Completed": [[NOW - DAY, {"revenue": 10}]],
}


def test_count_events_windows() -> None:
    s = scope(history=HISTORY)
    assert count_events(HISTORY, "Product Viewed", [], None, NOW, s) == 5
    assert count_events(HISTORY, "Product Viewed", [], 2 * HOUR, NOW, s) == 3  # start is exclusive
    assert count_events(HISTORY, "Product Viewed", [], 2 * HOUR + 1, NOW, s) == 4
    assert count_events(HISTORY, "Product Viewed", [], 0, NOW, s) == 0
    assert count_events(HISTORY, "Product Viewed", [], None, NOW - HOUR, s) == 3
    assert count_events(HISTORY, "Nothing", [], None, NOW, s) == 0
    assert count_events({}, "Product Viewed", [], None, NOW, s) == 0


def test_count_events_with_filters_and_refs() -> None:
    s = scope(history=HISTORY, trigger={"product_id": "p1"})
    same_product = [Filter(property="product_id", value=Ref(ref="trigger.product_id"))]
    assert count_events(HISTORY, "Product Viewed", same_product, None, NOW, s) == 4
    assert count_events(HISTORY, "Product Viewed", same_product, 3 * HOUR, NOW, s) == 3
    assert count_events(HISTORY, "Product Viewed", [Filter(property="product_id", value="p2")], None, NOW, s) == 1


def test_count_events_skips_malformed_entries() -> None:
    history: dict[str, list[Any]] = {
        "E": [[NOW], [], None, ["yesterday", {}], [NOW - 1, "not a dict"], [NOW - 2, {"a": 1}]]
    }
    s = scope()
    assert count_events(history, "E", [], None, NOW, s) == 3
    assert count_events(history, "E", [Filter(property="a", value=1)], None, NOW, s) == 1


# --- conditions --------------------------------------------------------------------------------


def test_trait_conditions() -> None:
    s = scope(traits={"plan": "pro", "seats": "12", "address": {"country": "FR"}, "home_country": "FR"})
    assert evaluate(conditions({"trait": "plan", "value": "pro"}), s)
    assert evaluate(conditions({"trait": "seats", "op": "gt", "value": 10}), s)
    assert evaluate(conditions({"trait": "address.country", "op": "in", "value": ["FR", "DE"]}), s)
    assert evaluate(conditions({"trait": "address.country", "value": {"ref": "profile.home_country"}}), s)
    assert evaluate(conditions({"trait": "email", "op": "not_exists"}), s)
    assert not evaluate(conditions({"trait": "email", "op": "exists"}), s)
    assert not evaluate(conditions({"trait": "plan", "value": "pro"}, {"trait": "seats", "op": "lt", "value": 5}), s)


def test_trait_condition_against_the_trigger() -> None:
    s = scope(traits={"favorite_category": "shoes"}, trigger={"category": "shoes"})
    assert evaluate(conditions({"trait": "favorite_category", "value": {"ref": "trigger.category"}}), s)


def test_empty_conditions_hold() -> None:
    assert evaluate([], scope())


def test_event_count_conditions() -> None:
    s = scope(history=HISTORY)
    assert evaluate(conditions({"event": "Order Completed"}), s)  # default: at least one, ever
    assert not evaluate(conditions({"event": "Order Completed", "within": "1h"}), s)
    assert evaluate(conditions({"event": "Order Completed", "within": "2d"}), s)
    assert evaluate(conditions({"event": "Order Completed", "within": "1h", "op": "eq", "value": 0}), s)
    assert evaluate(conditions({"event": "Product Viewed", "within": "3h", "op": "gte", "value": 4}), s)
    assert not evaluate(conditions({"event": "Product Viewed", "within": "3h", "op": "gt", "value": 4}), s)
    assert evaluate(
        conditions(
            {"event": "Product Viewed", "where": [{"property": "product_id", "value": "p1"}], "op": "eq", "value": 4}
        ),
        s,
    )
    assert evaluate(conditions({"event": "Never", "op": "lt", "value": 1}), s)


def test_event_count_uses_the_scope_clock_not_the_wall_clock() -> None:
    later = scope(history=HISTORY, now_ms=NOW + 2 * DAY)
    assert not evaluate(conditions({"event": "Order Completed", "within": "1d"}), later)
    assert evaluate(conditions({"event": "Order Completed", "within": "7d"}), later)


@pytest.mark.parametrize(
    ("reached", "asked", "holds"),
    [
        (["sent"], "sent", True),
        (["sent"], "delivered", False),
        (["sent", "delivered"], "delivered", True),
        (["sent", "delivered", "opened"], "opened", True),
        (["opened"], "delivered", True),  # an open proves delivery even if its event was lost
        (["opened"], "sent", True),
        (["opened"], "clicked", False),
        (["clicked"], "opened", True),  # a click without a recorded open (images blocked)
        (["clicked"], "delivered", True),
        (["clicked"], "sent", True),
        (["clicked"], "clicked", True),
        (["delivered"], "sent", True),
        (["bounced"], "sent", True),
        (["bounced"], "delivered", False),
        (["failed"], "sent", False),
        ([], "sent", False),
    ],
)
def test_message_engagement_implications(reached: list[str], asked: str, holds: bool) -> None:
    s = scope(run=run_with({"email_1": {"key": "k", "statuses": reached}}))
    assert evaluate_one(conditions({"message": "email_1", "status": asked})[0], s) is holds
    assert evaluate_one(conditions({"message": "email_1", "status": asked, "negate": True})[0], s) is (not holds)


def test_message_condition_on_a_message_never_sent_or_outside_a_run() -> None:
    in_run = scope(run=run_with({}))
    assert not evaluate(conditions({"message": "email_1", "status": "sent"}), in_run)
    assert evaluate(conditions({"message": "email_1", "status": "opened", "negate": True}), in_run)
    no_run = scope()
    assert not evaluate(conditions({"message": "email_1", "status": "sent"}), no_run)
    assert evaluate(conditions({"message": "email_1", "negate": True}), no_run)


def test_message_condition_with_malformed_record() -> None:
    s = scope(run=run_with({"a": {"key": "k"}, "b": {"statuses": "opened"}, "c": "junk"}))  # type: ignore[dict-item]
    for step in ("a", "b", "c"):
        assert not evaluate(conditions({"message": step, "status": "sent"}), s)


def test_nested_all_any_not() -> None:
    s = scope(
        traits={"plan": "free", "country": "FR"},
        history=HISTORY,
        run=run_with({"email_1": {"key": "k", "statuses": ["sent", "delivered"]}}),
    )
    # (plan is free AND (country DE OR viewed >= 3 in 3 h)) AND NOT opened email_1
    nested = conditions(
        {
            "all": [
                {"trait": "plan", "value": "free"},
                {"any": [{"trait": "country", "value": "DE"}, {"event": "Product Viewed", "within": "3h", "value": 3}]},
            ]
        },
        {"not": {"message": "email_1", "status": "opened"}},
    )
    assert evaluate(nested, s)
    s.run = run_with({"email_1": {"key": "k", "statuses": ["clicked"]}})
    assert not evaluate(nested, s)
    assert evaluate(conditions({"all": []}), s)  # vacuously true
    assert not evaluate(conditions({"any": []}), s)  # nothing holds
    assert evaluate(conditions({"not": {"any": []}}), s)
    assert evaluate(conditions({"not": {"not": {"trait": "plan", "value": "free"}}}), s)
    assert not evaluate(
        conditions({"any": [{"trait": "plan", "value": "pro"}, {"trait": "country", "value": "US"}]}), s
    )


def test_an_object_that_is_not_a_condition_matches_nothing() -> None:
    assert evaluate_one({"trait": "plan"}, scope(traits={"plan": "x"})) is False  # type: ignore[arg-type]
