"""Catalog.for_event (triggers pruned by their constant eq / in filter) against the full
candidate list: the same triggers match, in the same order, and the engine enters the same."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nudgeflow.core import triggers
from nudgeflow.core.catalog import Catalog, JourneyVersion, value_key
from nudgeflow.core.conditions import compare
from nudgeflow.core.engine import Engine
from nudgeflow.core.inputs import EventInput
from nudgeflow.core.state import ProfileState
from nudgeflow.core.turn import Turn
from nudgeflow.model.journeys import Journey

NAMES = ["A", "B"]
SCALARS = ["1", 1, 1.0, True, False, 0, "0", "1.0", "01", "1e0", " 1", "a", "", None, 2.5, "2.5", -0.0, 10**20, "1e400"]
VALUES = [*SCALARS, [1], {"a": 1}, float("nan")]
PROPS = ["p", "p", "q", "r.s"]

scalar = st.sampled_from(SCALARS)
flt = st.one_of(
    st.fixed_dictionaries({"property": st.sampled_from(PROPS), "op": st.just("eq"), "value": scalar}),
    st.fixed_dictionaries(
        {"property": st.sampled_from(PROPS), "op": st.just("in"), "value": st.lists(scalar, max_size=3)}
    ),
    st.fixed_dictionaries(
        {
            "property": st.sampled_from(PROPS),
            "op": st.sampled_from(["ne", "not_in"]),
            "value": st.lists(scalar, max_size=2),
        }
    ).map(lambda f: {**f, "value": f["value"][0] if f["op"] == "ne" and f["value"] else f["value"]}),
    st.fixed_dictionaries(
        {"property": st.sampled_from(PROPS), "op": st.just("eq"), "value": st.just({"ref": "profile.x"})}
    ),
)
trigger = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("event"), "event": st.sampled_from(NAMES), "where": st.lists(flt, max_size=3)}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("milestone"),
            "event": st.sampled_from(NAMES),
            "where": st.lists(flt, max_size=2),
            "count": st.integers(1, 2),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("event_not_followed"),
            "event": st.sampled_from(NAMES),
            "where": st.lists(flt, max_size=2),
            "not_followed_by": st.fixed_dictionaries(
                {"event": st.sampled_from(NAMES), "where": st.lists(flt, max_size=2), "within": st.just("1h")}
            ),
        }
    ),
    st.just({"type": "inactivity", "window": "1d"}),
)
journeys = st.lists(st.tuples(trigger, st.integers(0, 2)), min_size=1, max_size=8)
value = st.sampled_from(VALUES)
props = st.one_of(
    st.dictionaries(st.sampled_from(["p", "q", "r"]), st.one_of(value, st.fixed_dictionaries({"s": value}))),
    st.just({"r.s": 1, "p": "1"}),
)
events = st.lists(st.tuples(st.sampled_from([*NAMES, "C"]), props), min_size=1, max_size=6)


def make_catalog(specs: list[tuple[dict[str, Any], int]]) -> Catalog:
    live = []
    for i, (trig, priority) in enumerate(specs):
        definition = Journey.model_validate(
            {
                "id": f"j{i}",
                "name": f"J {i}",
                "priority": priority,
                "trigger": trig,
                "steps": {"send": {"type": "send", "channel": "push", "template": f"t{i}"}},
            }
        )
        live.append(JourneyVersion(definition.id, 1, definition))
    return Catalog(live=live)


def _ids(jvs: list[JourneyVersion]) -> list[str]:
    return [jv.journey_id for jv in jvs]


CROSS = [
    ({"type": "event", "event": "A", "where": [{"property": "p", "op": op, "value": v}]}, 0)
    for op, v in [("eq", 1), ("eq", 1.0), ("eq", "1"), ("eq", True), ("in", [1.0, "a"]), ("in", ["1", False])]
]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(journeys, events)
@example(CROSS, [("A", {"p": v}) for v in ["1", 1, 1.0, True, "1.0", "01", 0, False, "a"]])
def test_for_event_keeps_every_matching_trigger_in_order(
    specs: list[tuple[dict[str, Any], int]], evs: list[tuple[str, dict[str, Any]]]
) -> None:
    catalog = make_catalog(specs)
    turn = Turn(ProfileState("prf"), catalog, 1_800_000_000_000)
    for n, (name, properties) in enumerate(evs):
        event = EventInput(f"m{n}", "track", name, 1_700_000_000_000 + n, properties)
        full = catalog.candidates(name, False)
        pruned = catalog.for_event(name, False, properties)
        assert set(_ids(pruned)) <= set(_ids(full))
        assert _ids(pruned) == [i for i in _ids(full) if i in set(_ids(pruned))]  # same order
        for jv in full:
            trig = jv.definition.trigger
            where = getattr(trig, "where", None)
            if (
                where is not None
                and getattr(trig, "type", "") in ("event", "milestone")
                and triggers._matches(turn, event, trig.event, where)
            ):
                assert jv in pruned, (jv.journey_id, properties)
        # Cached and uncached answers agree.
        assert _ids(catalog.for_event(name, False, copy.deepcopy(properties))) == _ids(pruned)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(journeys, events)
def test_engine_enters_the_same_journeys(
    specs: list[tuple[dict[str, Any], int]], evs: list[tuple[str, dict[str, Any]]]
) -> None:
    indexed = make_catalog(specs)
    unindexed = make_catalog(specs)
    unindexed.for_event = lambda name, is_identify, properties: unindexed.candidates(name, is_identify)  # type: ignore[method-assign]
    states = [ProfileState("prf"), ProfileState("prf")]
    for n, (name, properties) in enumerate(evs):
        effects = []
        for catalog, state in zip((indexed, unindexed), states, strict=True):
            event = EventInput(
                f"m{n}", "track", name, 1_700_000_000_000 + n * 1000, copy.deepcopy(properties), user_id="u1"
            )
            effects.append(repr(Engine(catalog).on_event(state, event, 1_700_000_000_000 + n * 1000)))
        assert effects[0] == effects[1]
    assert repr(states[0]) == repr(states[1])


@given(st.sampled_from(VALUES), st.sampled_from(SCALARS))
def test_value_key_equal_when_eq_holds(actual: Any, expected: Any) -> None:
    if compare("eq", True, actual, expected):
        assert value_key(actual) == value_key(expected)


def test_value_key_kinds() -> None:
    assert value_key(1) == value_key(1.0) == value_key("1") == value_key("1.0")
    assert value_key(True) != value_key(1)
    assert value_key(float("nan")) == value_key(None) == value_key([1])
    assert value_key("a") != value_key(1)
