"""The simulator with send policies: withheld messages are recorded with their reasons, and a
deferred message appears among the planned ones at its new time."""

from __future__ import annotations

from typing import Any

from nudgeflow.model.iso_time import iso
from nudgeflow.model.journeys import Journey
from nudgeflow.model.policies import Policies
from nudgeflow.runtime.simulation import Simulation

M = 60_000
T0_MS = 1772442000000  # 2026-03-02T09:00:00Z, a Monday


def pinger(id: str, priority: int) -> Journey:
    return Journey.model_validate(
        {
            "id": id,
            "name": id,
            "priority": priority,
            "trigger": {"type": "event", "event": "Signed Up"},
            "steps": {"hello": {"type": "send", "channel": "email", "template": f"{id}-t"}},
        }
    )


POLICIES = Policies.model_validate(
    {
        "collision": {"window": "10m"},
        "quiet_hours": [{"channel": "email", "start": "22:00", "end": "08:00", "action": "drop"}],
    }
)


def signed_up(user: str, at_ms: int) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": "Signed Up", "timestamp": iso(at_ms)}


def test_collisions_defer_to_a_new_time_and_quiet_hours_drop() -> None:
    sim = Simulation([pinger("a", 1), pinger("b", 5), pinger("c", 3)], policies=POLICIES)
    sim.feed(signed_up("ada", T0_MS))
    sim.feed(signed_up("bob", T0_MS + 14 * 60 * M))  # 23:00 UTC: quiet, dropped
    sim.advance("1h")
    planned = [(m.journey, m.at_ms, m.deferred_from_ms) for m in sim.messages_for("ada")]
    assert planned == [("b", T0_MS, None), ("c", T0_MS + 10 * M, T0_MS), ("a", T0_MS + 20 * M, T0_MS)]
    assert sim.messages_for("ada")[1].as_json()["deferred_from"] == iso(T0_MS)
    assert "deferred_from" not in sim.messages_for("ada")[0].as_json()
    held = [(w.journey, w.status, w.reason) for w in sim.withheld if w.profile == "ada"]
    assert held == [
        ("c", "deferred", "collision:b"),
        ("a", "deferred", "collision:b"),
        ("a", "deferred", "collision:c"),
    ]
    assert sorted((w.journey, w.reason) for w in sim.withheld if w.profile == "bob") == [
        ("a", "quiet_hours"),
        ("b", "quiet_hours"),
        ("c", "quiet_hours"),
    ]
    assert not sim.messages_for("bob")
    assert sim.summary()["withheld"] == {
        "deferred": {"count": 3, "reasons": {"collision:b": 2, "collision:c": 1}},
        "dropped": {"count": 3, "reasons": {"quiet_hours": 3}},
    }
    assert sim.pending_timers == 0


def test_without_policies_nothing_is_withheld() -> None:
    sim = Simulation([pinger("a", 1), pinger("b", 5)])
    sim.feed(signed_up("ada", T0_MS))
    assert [m.journey for m in sim.messages] == ["b", "a"] and not sim.withheld
    assert sim.summary()["withheld"] == {
        "deferred": {"count": 0, "reasons": {}},
        "dropped": {"count": 0, "reasons": {}},
    }
