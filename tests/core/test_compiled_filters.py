"""Compiled filters (conditions.compile_filters) answer exactly what the reference does.

Trigger matching runs each filter through a test specialised for its operator and value
(benchmarks/engine.py measures why); these tests hold those tests to the reference meaning,
`reference_filters_match`, one `compare` per filter, on every kind of value.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudgeflow.core.conditions import Scope, compile_filters, compiled, filters_match, reference_filters_match
from nudgeflow.model.journeys import OPERATORS, Filter, Ref

NOW = 1_780_000_000_000

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(
        ["19.99", "20", "1e3", "-0", " 12", "nan", "Shoes", "shoes", "2026-01-05", "2026-01-05T10:00:00Z", ""]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["a", "b", "sku"]), inner, max_size=3),
    max_leaves=8,
)
keys = st.sampled_from(["category", "price", "tags", "a", "a.b", "products.0.sku", "missing"])


class Odd:
    """A value no JSON document holds, with an equality of its own."""

    def __eq__(self, other: object) -> bool:
        return other is None or other == "Shoes"

    __hash__ = object.__hash__


@st.composite
def filters(draw: st.DrawFn) -> Filter:
    op = draw(st.sampled_from(OPERATORS))
    if draw(st.integers(0, 9)) == 0:
        value: Any = Ref(ref=draw(st.sampled_from(["profile.plan", "trigger.category", "trigger.price"])))
    elif op in ("in", "not_in"):
        value = draw(
            st.lists(scalars, max_size=4) | st.lists(st.sampled_from(["Shoes", "19.99", "20", "x"]), max_size=4)
        )
    elif op in ("gt", "gte", "lt", "lte"):
        value = draw(st.integers(-50, 50) | st.floats(allow_nan=True) | st.sampled_from(["10", "2026-01-05", "m"]))
    else:
        value = draw(json_values)
    try:
        return Filter(property=draw(keys), op=op, value=value)
    except ValueError:
        return Filter(property=draw(keys), op="exists")


def scope() -> Scope:
    return Scope({"plan": "pro"}, NOW, trigger={"category": "Shoes", "price": 20})


properties = st.dictionaries(keys, json_values, max_size=5) | st.dictionaries(
    st.sampled_from(["category", "price", "tags"]),
    st.sampled_from([Odd(), math.nan, 19.99, "19.99", ["Shoes"], True]),
    max_size=3,
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(filters(), min_size=0, max_size=3), properties)
def test_compiled_filters_agree_with_the_reference(flts: list[Filter], props: dict[str, Any]) -> None:
    expected = reference_filters_match(flts, props, scope())
    assert compile_filters(flts)(props, scope()) == expected
    assert compile_filters(flts)(props, scope) == expected  # a scope factory, called only if needed
    assert filters_match(flts, props, scope()) == expected


@given(st.lists(filters(), min_size=1, max_size=3), json_values)
def test_properties_that_are_not_an_object_match_as_the_reference_says(flts: list[Filter], props: Any) -> None:
    assert compile_filters(flts)(props, scope()) == reference_filters_match(flts, props, scope())


def test_a_scope_is_built_only_for_a_filter_that_refers_to_something() -> None:
    built = []

    def factory() -> Scope:
        built.append(1)
        return scope()

    constant = [Filter(property="category", op="eq", value="Shoes")]
    assert compiled(constant)({"category": "Shoes"}, factory)
    assert built == []
    referring = [Filter(property="category", op="eq", value=Ref(ref="trigger.category"))]
    assert compiled(referring)({"category": "Shoes"}, factory)
    assert built == [1]


def test_the_cache_returns_one_matcher_per_filter_list_and_never_another_lists() -> None:
    a = [Filter(property="price", op="gt", value=10)]
    b = [Filter(property="price", op="gt", value=10)]
    assert compiled(a) is compiled(a)
    assert compiled(a) is not compiled(b)
    assert compiled(a)({"price": 11}, scope()) and not compiled(b)({"price": 9}, scope())


@pytest.mark.parametrize(
    ("flt", "props", "holds"),
    [
        (Filter(property="price", op="eq", value=19.99), {"price": "19.99"}, True),
        (Filter(property="price", op="eq", value="19.99"), {"price": 19.99}, True),
        (Filter(property="price", op="eq", value="1.0"), {"price": "1"}, False),
        (Filter(property="flag", op="eq", value=True), {"flag": 1}, False),
        (Filter(property="category", op="in", value=["Shoes", "20"]), {"category": 20.0}, True),
        (Filter(property="category", op="not_in", value=["Shoes"]), {}, True),
        (Filter(property="price", op="gte", value=10), {"price": "10"}, True),
        (Filter(property="price", op="lt", value=10), {"price": math.nan}, False),
        (Filter(property="price", op="lt", value=10), {"price": True}, False),
        (Filter(property="tags", op="contains", value="sale"), {"tags": ["new", "sale"]}, True),
        (Filter(property="title", op="not_contains", value="Used"), {"title": "Used Bike"}, False),
        (Filter(property="coupon", op="exists"), {"coupon": None}, False),
        (Filter(property="coupon", op="not_exists"), {}, True),
        (Filter(property="category", op="eq", value="Shoes"), {"category": Odd()}, True),
    ],
)
def test_examples(flt: Filter, props: dict[str, Any], holds: bool) -> None:
    assert compile_filters([flt])(props, scope()) is holds
    assert reference_filters_match([flt], props, scope()) is holds
