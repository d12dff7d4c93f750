"""The canvas's graph of a journey (model/journey_graph.py): every step a node with its own id,
every link an edge with the slot that holds it, over every example journey and every kind of
step, trigger and condition."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from nudgeflow.model.journey_checks import check_journey, is_valid, load_documents
from nudgeflow.model.journey_graph import END, EXIT, GOAL, TRIGGER, JourneyGraph, journey_graph
from nudgeflow.model.journeys import Journey
from tests.model.journey_samples import EVERY_KIND, EXAMPLES

KINDS = {"send", "wait", "wait_for_event", "branch", "split", "update_profile", "exit"}


def _checked(doc: Any) -> Journey:
    journey, problems = check_journey(doc)
    assert journey is not None and is_valid(problems), [p.format() for p in problems]
    return journey


def _links(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(source, slot, target) of every link, read from the raw document independently of the code
    under test; an absent or null link is the run's end."""
    links = set()
    for sid, step in doc["steps"].items():
        kind = step["type"]
        if kind in ("send", "wait", "update_profile"):
            links.add((sid, "next", step.get("next") or END))
        elif kind == "wait_for_event":
            links.add((sid, "on_event", step.get("on_event") or END))
            links.add((sid, "on_timeout", step.get("on_timeout") or END))
        elif kind == "branch":
            for i, case in enumerate(step["cases"]):
                links.add((sid, f"cases.{i}", case.get("next") or END))
            links.add((sid, "default", step.get("default") or END))
        elif kind == "split":
            for i, path in enumerate(step["paths"]):
                links.add((sid, f"paths.{i}", path.get("next") or END))
    return links


def _example_docs() -> list[tuple[str, Any]]:
    docs = [(f"{path.name}#{i}", doc) for path in sorted(EXAMPLES.glob("*.yaml")) for i, doc in load_documents(path)]
    assert len(docs) >= 11
    return docs


@pytest.mark.parametrize(("name", "doc"), _example_docs(), ids=lambda value: value if isinstance(value, str) else "")
def test_every_example_journey_is_a_whole_graph(name: str, doc: Any) -> None:
    graph = journey_graph(_checked(doc))
    ids = [node.id for node in graph.nodes]
    assert len(ids) == len(set(ids)), ids
    # Every step is a node carrying the step's own id (the canvas's data-step-id) and its path.
    for sid, step in doc["steps"].items():
        node = graph.node(sid)
        assert node.path == f"steps.{sid}"
        expected = "webhook" if step.get("channel") == "webhook" else step["type"]
        assert node.kind == expected and node.kind in {*KINDS, "webhook"}
        assert node.title and node.summary
    assert graph.steps == tuple(doc["steps"])
    # Every link of the document, and nothing else, is an edge (plus the trigger's to the first step).
    edges = {(e.source, e.slot, e.target) for e in graph.edges}
    first = doc.get("start") or next(iter(doc["steps"]))
    assert edges == {*_links(doc), (TRIGGER, "start", first)}
    assert graph.start == first
    assert len({e.id for e in graph.edges}) == len(graph.edges)
    assert {e.source for e in graph.edges} | {e.target for e in graph.edges} <= set(ids)
    assert (END in ids) == any(target == END for _, _, target in edges)
    assert (GOAL in ids) == ("goal" in doc)
    assert graph.node(TRIGGER).kind == "trigger" and graph.node(TRIGGER).summary
    # JSON-ready for the page.
    as_dict = graph.as_dict()
    assert [n["id"] for n in as_dict["nodes"]] == ids
    assert all(set(e) == {"id", "source", "target", "slot", "label"} for e in as_dict["edges"])


def test_cart_abandonment_reads_as_its_story() -> None:
    ((_, doc),) = load_documents(EXAMPLES / "cart-abandonment.yaml")
    graph = journey_graph(_checked(doc))
    trigger = graph.node(TRIGGER)
    assert trigger.summary == "Product Added not followed by Order Completed (same cart_id) within 1h"
    assert ("entry filter", "email exists") in trigger.details
    assert ("holdout", "10%") in trigger.details
    assert graph.node("reminder-1h").title == "Send email"
    assert graph.node("reminder-1h").summary == "cart-1h-your-items"
    assert graph.node("reminder-1h").templates == ("cart-1h-your-items",)
    assert graph.node("wait-23h").summary == "23h"
    offer = graph.node("offer-72h")
    assert offer.summary == "2 variants"
    assert offer.templates == ("cart-72h-offer-10", "cart-72h-offer-shipping")
    assert ("variant ten-percent", "cart-72h-offer-10 (50%)") in offer.details
    assert graph.node(EXIT).summary == "Order Completed (same cart_id)"
    assert graph.node(GOAL).summary == "Order Completed within 7d"
    assert ("revenue", "revenue") in graph.node(GOAL).details
    order = [e.target for e in graph.edges]
    assert order == ["reminder-1h", "wait-23h", "objections-24h", "wait-48h", "offer-72h", END]


def test_a_single_case_branch_is_yes_and_no() -> None:
    ((_, doc),) = load_documents(EXAMPLES / "plan-downgrade-save.yaml")
    graph = journey_graph(_checked(doc))
    assert graph.node("still-free").summary == "plan in [free, cancelled]"
    out = {e.slot: (e.target, e.label) for e in graph.edges if e.source == "still-free"}
    assert out == {"cases.0": ("offer", "yes"), "default": (END, "no")}
    assert graph.node(TRIGGER).summary == "plan changes from [pro, business] to [free, cancelled]"
    assert ("re-entry", "once_per_period (30d)") in graph.node(TRIGGER).details
    # The goal ends the run: an exit rule too.
    assert graph.node(EXIT).summary == "converts (Subscription Upgraded)"


def test_wait_for_event_has_two_labelled_ways_out() -> None:
    ((_, doc),) = load_documents(EXAMPLES / "post-purchase.yaml")
    graph = journey_graph(_checked(doc))
    out = {e.slot: (e.target, e.label) for e in graph.edges if e.source == "delivered"}
    assert out == {
        "on_event": ("wait-2d", "Order Delivered (same order_id)"),
        "on_timeout": ("review", "no event in 10d"),
    }
    assert graph.node("delivered").summary == "Order Delivered (same order_id), up to 10d"


def test_every_kind_of_step_and_label() -> None:
    doc = yaml.safe_load(EVERY_KIND)
    graph = journey_graph(_checked(doc))
    kinds = {sid: graph.node(sid).kind for sid in doc["steps"]}
    assert kinds == {
        "hello": "send",
        "wait-open": "wait_for_event",
        "choose": "branch",
        "split": "split",
        "morning": "wait",
        "tag": "update_profile",
        "hook": "webhook",
        "stop": "exit",
    }
    labels = {e.id: (e.target, e.label) for e in graph.edges}
    assert labels["@trigger:start"] == ("split", "")
    assert labels["split:paths.0"] == ("hello", "control 25%")
    assert labels["split:paths.1"] == ("morning", "test 75%")
    assert labels["choose:cases.0"] == ("tag", "hello clicked")
    assert labels["choose:cases.1"] == (
        "hook",
        "(plan exists or not in segment vip) and did Order Completed within 30d",
    )
    assert labels["choose:default"] == ("stop", "otherwise")
    assert labels["wait-open:on_timeout"] == (END, "no event in 2d")
    assert not [e for e in graph.edges if e.source == "stop"]  # an exit step ends the run itself
    assert graph.node("morning").summary == "until 09:00 on mon, tue"
    assert graph.node("tag").summary == "set greeted, set plan_seen, unset old"
    assert ("set plan_seen", "profile.plan") in graph.node("tag").details
    assert graph.node("hook").summary == "https://hooks.example.com/x"
    assert ("marketing", "no (transactional)") in graph.node("hello").details
    assert graph.node(TRIGGER).summary == "Signed Up where plan ≠ free"
    assert graph.node(EXIT).summary == "leaves segment churned"
    assert GOAL not in {n.id for n in graph.nodes}


@pytest.mark.parametrize(
    ("trigger", "summary"),
    [
        ({"type": "inactivity", "window": "3d"}, "no any event for 3d"),
        ({"type": "inactivity", "events": ["App Opened"], "window": "3d"}, "no App Opened for 3d"),
        ({"type": "date_relative", "trait": "trial_ends_at", "offset": "-3d"}, "trial_ends_at -3d at 09:00"),
        ({"type": "date_relative", "trait": "birthday", "yearly": True}, "birthday at 09:00, every year"),
        ({"type": "milestone", "event": "Level Completed", "count": 10}, "Level Completed for the 10th time"),
        ({"type": "milestone", "event": "Workout", "streak": {"days": 7}}, "Workout on 7 days in a row"),
        (
            {"type": "milestone", "event": "Order Completed", "sum": {"property": "revenue", "reaches": 500}},
            "sum of Order Completed revenue reaches 500",
        ),
        (
            {"type": "location", "places": [{"name": "Flagship", "latitude": 1, "longitude": 2}], "radius_m": 200},
            "within 200 m of Flagship",
        ),
        ({"type": "segment", "segment": "vip", "on": "exit"}, "leaves segment vip"),
        (
            {"type": "event", "event": "Viewed", "occurrences": {"count": 3, "within": "1d"}},
            "Viewed 3 times within 1d",
        ),
    ],
)
def test_every_trigger_reads_in_words(trigger: dict[str, Any], summary: str) -> None:
    doc = {"id": "t", "name": "T", "trigger": trigger, "steps": {"bye": {"type": "exit"}}}
    graph = journey_graph(_checked(doc))
    assert graph.node(TRIGGER).summary == summary
    assert graph.node(TRIGGER).details[0] == ("type", trigger["type"])


def test_a_link_to_no_step_is_drawn_as_missing() -> None:
    # The checks refuse it, but a draft mid-edit can hold one: the canvas still draws it.
    journey = Journey.model_validate(
        {
            "id": "t",
            "name": "T",
            "trigger": {"type": "event", "event": "E"},
            "steps": {"a": {"type": "wait", "duration": "1h", "next": "nowhere"}},
        }
    )
    graph: JourneyGraph = journey_graph(journey)
    missing = graph.node("nowhere")
    assert (missing.kind, missing.path) == ("missing", "steps.a.next")
    assert END not in {n.id for n in graph.nodes}
