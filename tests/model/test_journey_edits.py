"""The canvas's structural edits (model/journey_edits.py): a step added on any link, removed, moved
up and down a chain — the links stay whole and the result is still a journey the checks accept."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from nudgeflow.model.journey_checks import check_journey, is_valid, load_documents
from nudgeflow.model.journey_edits import STEP_KINDS, EditError, add_step, move_step, remove_step
from nudgeflow.model.journey_graph import journey_graph
from tests.model.journey_samples import EVERY_KIND, EXAMPLES


def _valid(doc: dict[str, Any]) -> dict[str, Any]:
    journey, problems = check_journey(doc)
    assert journey is not None and is_valid(problems), [p.format() for p in problems]
    return doc


def _chain(doc: dict[str, Any]) -> list[str]:
    """The steps from the start along `next`."""
    graph = journey_graph(check_journey(doc)[0])  # type: ignore[arg-type]
    out, node = [], graph.start
    links = {(e.source, e.slot): e.target for e in graph.edges}
    while node in doc["steps"] and node not in out:
        out.append(node)
        node = links.get((node, "next"))
    return out


CART = load_documents(EXAMPLES / "cart-abandonment.yaml")[0][1]


@pytest.mark.parametrize("kind", STEP_KINDS)
def test_a_step_of_every_kind_on_the_trigger_link_and_after_a_step(kind: str) -> None:
    doc = dict(CART)
    first, step_id = add_step(doc, "@trigger", "start", kind)
    assert first["start"] == step_id and step_id == f"{kind.replace('_', '-')}-1"
    _valid(first)
    second, other = add_step(first, "reminder-1h", "next", kind)
    assert other == f"{kind.replace('_', '-')}-2"
    assert second["steps"]["reminder-1h"]["next"] == other
    _valid(second)
    if kind in ("send", "wait", "update_profile"):
        assert second["steps"][other]["next"] == "wait-23h"
    assert doc == CART  # the given document is left alone


def test_steps_on_branch_split_and_wait_for_event_links() -> None:
    doc = yaml.safe_load(EVERY_KIND)
    for source, slot in (
        ("choose", "cases.1"),
        ("choose", "default"),
        ("split", "paths.0"),
        ("wait-open", "on_timeout"),
    ):
        doc, new = add_step(doc, source, slot, "wait")
        _valid(doc)
    assert doc["steps"]["choose"]["cases"][1]["next"].startswith("wait-")
    assert doc["steps"]["wait-open"]["on_timeout"] == new
    assert "next" not in doc["steps"][new]  # the timeout ended the run: so does the new wait
    with pytest.raises(EditError, match=r"has no cases\.7"):
        add_step(doc, "choose", "cases.7", "wait")
    with pytest.raises(EditError, match="has no link 'next'"):
        add_step(doc, "choose", "next", "wait")
    with pytest.raises(EditError, match="no kind of step 'teleport'"):
        add_step(doc, "hello", "next", "teleport")


def test_remove_relinks_and_keeps_the_start() -> None:
    doc = remove_step(CART, "wait-23h")
    assert doc["steps"]["reminder-1h"]["next"] == "objections-24h"
    _valid(doc)
    first = remove_step(CART, "reminder-1h")  # the first step: the run starts where it led
    assert _chain(_valid(first))[0] == "wait-23h"
    again = remove_step(yaml.safe_load(EVERY_KIND), "stop")  # a branch's default: now the run's end
    assert "default" not in again["steps"]["choose"]
    _valid(again)
    with pytest.raises(EditError, match="no step 'ghost'"):
        remove_step(CART, "ghost")
    with pytest.raises(EditError, match="at least one step"):
        remove_step({"steps": {"only": {"type": "exit"}}}, "only")


def test_move_up_and_down_a_chain() -> None:
    assert _chain(CART)[:3] == ["reminder-1h", "wait-23h", "objections-24h"]
    down = move_step(CART, "reminder-1h", "down")
    assert _chain(_valid(down))[:3] == ["wait-23h", "reminder-1h", "objections-24h"]
    up = move_step(down, "reminder-1h", "up")
    assert _chain(_valid(up)) == _chain(CART)
    middle = move_step(CART, "objections-24h", "up")
    assert _chain(_valid(middle)) == ["reminder-1h", "objections-24h", "wait-23h", "wait-48h", "offer-72h"]
    with pytest.raises(EditError, match="cannot move up"):
        move_step(CART, "reminder-1h", "up")
    with pytest.raises(EditError, match="no single next step"):
        move_step(CART, "offer-72h", "down")
    with pytest.raises(EditError, match="cannot move up"):  # it follows a wait for an event
        move_step(yaml.safe_load(EVERY_KIND), "choose", "up")
    forked = {
        "steps": {
            "a": {"type": "wait", "duration": "1h", "next": "b"},
            "b": {"type": "branch", "cases": [{"when": [{"trait": "x", "op": "exists"}]}]},
        }
    }
    with pytest.raises(EditError, match="several ways out"):
        move_step(forked, "b", "up")


def test_a_nodes_own_settings_read_and_replaced() -> None:
    from nudgeflow.model.journey_edits import part_of, replace_part

    assert part_of(CART, "@trigger")["event"] == "Product Added"
    assert part_of(CART, "wait-23h") == {"type": "wait", "duration": "23h", "next": "objections-24h"}
    assert part_of(CART, "@goal")["within"] == "7d"
    trigger = {**part_of(CART, "@trigger"), "event": "Checkout Started"}
    doc = replace_part(CART, "@trigger", trigger)
    assert _valid(doc)["trigger"]["event"] == "Checkout Started" and CART["trigger"]["event"] == "Product Added"
    variants = {**part_of(CART, "offer-72h")}
    variants["variants"] = [*variants["variants"], {"name": "none", "template": "cart-72h-plain", "weight": 2}]
    assert len(_valid(replace_part(CART, "offer-72h", variants))["steps"]["offer-72h"]["variants"]) == 3
    with pytest.raises(EditError, match="a mapping"):
        replace_part(CART, "wait-23h", "23h")
    with pytest.raises(EditError, match="`type` is one of"):
        replace_part(CART, "wait-23h", {"duration": "1h"})
    with pytest.raises(EditError, match="no step 'ghost'"):
        part_of(CART, "ghost")


def test_the_entry_rules_read_and_replaced() -> None:
    from nudgeflow.model.journey_edits import ENTRY, PARTS, part_of, replace_part

    assert PARTS[ENTRY] == "entry"
    without = {key: value for key, value in CART.items() if key != "entry"}
    assert part_of(without, ENTRY) == {}  # the defaults, to fill in
    rules = {
        "filter": [{"trait": "plan", "value": "free"}],
        "reentry": "once_per_period",
        "period": "30d",
    }
    doc = _valid(replace_part(without, ENTRY, rules))
    assert doc["entry"] == rules and "entry" not in without
    assert part_of(doc, ENTRY) == rules
    journey = check_journey(doc)[0]
    assert journey is not None
    details = dict(journey_graph(journey).node("@trigger").details)
    assert details["re-entry"] == "once_per_period (30d)" and "plan" in details["entry filter"]
    # The checks, not the edit, refuse entry rules that do not hold together.
    broken = replace_part(without, ENTRY, {"reentry": "once_per_period"})
    assert not is_valid(check_journey(broken)[1])
    with pytest.raises(EditError, match="a mapping"):
        replace_part(without, ENTRY, "once")
