"""The simulator decides segments as the engine does, and keeps who entered and left."""

from __future__ import annotations

from nudgeflow.model.journeys import Journey
from nudgeflow.model.segments import Segment
from nudgeflow.runtime.simulation import Simulation


def test_the_simulator_applies_segment_changes_and_their_journeys() -> None:
    loyal = Segment.model_validate(
        {"id": "loyal", "name": "Loyal", "when": {"performed": "Order Completed", "within": "30d", "count": 2}}
    )
    thanks = Journey.model_validate(
        {
            "id": "thanks",
            "name": "Thanks",
            "trigger": {"type": "segment", "segment": "loyal"},
            "steps": {"hi": {"type": "send", "channel": "email", "template": "thanks"}},
        }
    )
    sim = Simulation([thanks], segments=[loyal])
    sim.track("ada", "Order Completed", at="2026-03-01T10:00:00Z")
    sim.track("bob", "Order Completed", at="2026-03-01T11:00:00Z")
    sim.track("ada", "Order Completed", at="2026-03-05T10:00:00Z")
    assert sim.segment_sizes() == {"loyal": 1}
    assert sim.segments_of("ada") == ["loyal"]
    assert [(m.profile, m.journey) for m in sim.messages] == [("ada", "thanks")]
    sim.advance("40d")
    assert sim.segment_sizes() == {"loyal": 0}
    assert [(m.profile, m.segment, m.entered, m.cause.get("timer")) for m in sim.segment_moves] == [
        ("ada", "loyal", True, None),
        ("ada", "loyal", False, "window"),
    ]
    assert sim.segment_moves[1].at_ms == sim.segment_moves[0].at_ms - 4 * 86_400_000 + 30 * 86_400_000


def test_a_merge_carries_reachability_and_decides_every_segment_again() -> None:
    pushable = Segment.model_validate({"id": "pushable", "name": "Pushable", "when": {"reachable": "push"}})
    sim = Simulation([], segments=[pushable])
    sim.track(None, "Push Subscribed", {"endpoint_hash": "h1"}, anonymous_id="anon-1", at="2026-03-01T10:00:00Z")
    assert sim.segments_of("anon-1") == ["pushable"]
    sim.identify("ada", {"plan": "pro"}, at="2026-03-01T10:05:00Z")  # ada's own profile first
    assert sim.segments_of("ada") == []
    sim.identify("ada", {}, anonymous_id="anon-1", at="2026-03-01T10:10:00Z")  # the visitor was ada
    sim.track("ada", "Page Viewed", at="2026-03-01T10:11:00Z")
    assert sim.segments_of("ada") == ["pushable"]
