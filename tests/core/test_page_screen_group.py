"""Page, screen and group calls in the pure core (driven through the simulator)."""

from __future__ import annotations

from typing import Any

from nudgeflow.model.journeys import Journey
from nudgeflow.runtime.simulation import Simulation

T0 = 1772442000000  # 2026-03-02T09:00:00Z


def journey(trigger: dict[str, Any], **extra: Any) -> Journey:
    return Journey.model_validate(
        {
            "id": "j",
            "name": "J",
            "trigger": trigger,
            "steps": {"send": {"type": "send", "channel": "email", "template": "t"}},
            **extra,
        }
    )


def call(type_: str, user: str, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "userId": user, "timestamp": "2026-03-02T09:00:00Z", **fields}


def test_a_page_trigger_filters_on_the_page_name_and_its_properties() -> None:
    s = Simulation(
        [
            journey(
                {
                    "type": "event",
                    "event": "page",
                    "where": [
                        {"property": "name", "op": "eq", "value": "Pricing"},
                        {"property": "path", "op": "eq", "value": "/pricing"},
                    ],
                }
            )
        ],
        start_ms=T0,
    )
    # `name` at the top level, as the Segment spec puts it, and in properties (analytics.js).
    assert len(s.feed(call("page", "ada", name="Pricing", properties={"path": "/pricing"}))) == 1
    assert len(s.feed(call("page", "ben", properties={"name": "Pricing", "path": "/pricing"}))) == 1
    assert s.feed(call("page", "cy", name="Home", properties={"path": "/pricing"})) == []
    assert s.feed(call("page", "dee", name="Pricing", properties={"path": "/"})) == []
    # A screen call is not a page call, and a track event is neither.
    assert s.feed(call("screen", "eve", name="Pricing", properties={"path": "/pricing"})) == []
    assert s.feed(call("track", "fay", event="Pricing", properties={"path": "/pricing"})) == []


def test_a_screen_trigger_filters_on_the_screen_name_and_category() -> None:
    s = Simulation(
        [
            journey(
                {
                    "type": "event",
                    "event": "screen",
                    "where": [
                        {"property": "name", "op": "eq", "value": "Checkout"},
                        {"property": "category", "op": "eq", "value": "Shop"},
                    ],
                }
            )
        ],
        start_ms=T0,
    )
    assert len(s.feed(call("screen", "ada", name="Checkout", category="Shop"))) == 1
    assert s.feed(call("screen", "ben", name="Checkout", category="Blog")) == []
    # properties given by the client win over the top-level fields
    assert s.feed(call("screen", "cy", name="Checkout", category="Shop", properties={"name": "Cart"})) == []


def test_group_traits_in_entry_filters_and_references() -> None:
    j = Journey.model_validate(
        {
            "id": "j",
            "name": "J",
            "trigger": {"type": "event", "event": "Trial Started"},
            "entry": {"filter": [{"trait": "group.plan", "op": "eq", "value": "enterprise"}]},
            "steps": {
                "note": {"type": "update_profile", "set": {"account": {"ref": "group.id"}}, "next": "send"},
                "send": {"type": "send", "channel": "email", "template": "t"},
            },
        }
    )
    s = Simulation([j], start_ms=T0)
    s.feed(call("group", "ada", groupId="acme", traits={"plan": "free"}))
    assert s.feed(call("track", "ada", event="Trial Started")) == []
    s.feed(call("group", "ada", groupId="acme", traits={"seats": 4}, timestamp="2026-03-02T09:00:01Z"))
    s.feed(call("group", "ada", groupId="acme", traits={"plan": "enterprise"}, timestamp="2026-03-02T09:00:02Z"))
    state = s.state_of("ada")
    assert state is not None and state.group_traits == {"id": "acme", "plan": "enterprise", "seats": 4}
    assert len(s.feed(call("track", "ada", event="Trial Started", timestamp="2026-03-02T09:00:03Z"))) == 1
    assert s.state_of("ada").traits["account"] == "acme"  # type: ignore[union-attr]
    # A trait named like a group trait on the person is not the group's.
    s.feed(call("identify", "ben", traits={"group": {"plan": "enterprise"}}))
    assert s.feed(call("track", "ben", event="Trial Started")) == []


def test_the_latest_group_call_decides_the_group_and_late_calls_do_not_undo_it() -> None:
    s = Simulation([], start_ms=T0)
    s.feed(call("group", "ada", groupId="acme", traits={"plan": "pro"}, timestamp="2026-03-02T09:00:05Z"))
    s.feed(call("group", "ada", groupId="globex", traits={"plan": "free"}, timestamp="2026-03-02T09:00:01Z"))
    s.feed(call("group", "ada", groupId="acme", traits={"plan": "free", "seats": 2}, timestamp="2026-03-02T09:00:02Z"))
    state = s.state_of("ada")
    assert state is not None
    assert state.group_traits == {"id": "acme", "plan": "pro", "seats": 2}
    s.feed(call("group", "ada", groupId="globex", timestamp="2026-03-02T09:00:09Z"))
    assert s.state_of("ada").group_traits == {"id": "globex"}  # type: ignore[union-attr]


def test_the_page_and_screen_examples_of_the_docs_run() -> None:
    """docs/journeys.md shows a page and a screen trigger: each, as written there, starts a
    run for the call it describes and not for another page or screen."""
    import re
    from pathlib import Path

    import yaml

    docs = (Path(__file__).resolve().parents[2] / "docs" / "journeys.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", docs, re.S)]
    found = {
        b["trigger"]["event"]: b["trigger"]
        for b in blocks
        if isinstance(b, dict)
        and isinstance(b.get("trigger"), dict)
        and b["trigger"].get("event") in ("page", "screen")
    }
    assert set(found) == {"page", "screen"}
    page = Simulation([journey(found["page"])], start_ms=T0)
    assert len(page.feed(call("page", "ada", name="Pricing", properties={"path": "/pricing/teams"}))) == 1
    assert page.feed(call("page", "ben", name="Blog", properties={"path": "/pricing/teams"})) == []
    screen = Simulation([journey(found["screen"])], start_ms=T0)
    assert len(screen.feed(call("screen", "ada", name="Checkout", category="Shop"))) == 1
    assert screen.feed(call("screen", "ben", name="Checkout", category="Settings")) == []
