"""A 50-step journey and the time its canvas may take to lay out: the canvas's own page
(test_journey_canvas) and the console's journey page (tests/console) both hold it to it."""

from __future__ import annotations

from typing import Any

LAYOUT_BUDGET_MS = 200.0


def fifty_steps() -> dict[str, Any]:
    """A 50-step journey with every kind of step: sends and waits in a line, a branch every
    tenth step that may skip ahead, a split, a wait for an event, a profile update and an exit."""
    steps: dict[str, Any] = {}
    for i in range(50):
        sid, after = f"s{i:02d}", f"s{i + 1:02d}" if i < 49 else None
        if i == 49:
            steps[sid] = {"type": "exit"}
        elif i % 10 == 4:
            skip = f"s{min(i + 3, 49):02d}"
            steps[sid] = {
                "type": "branch",
                "cases": [{"when": [{"trait": "plan", "op": "eq", "value": "pro"}], "next": after}],
                "default": skip,
            }
        elif i == 25:
            steps[sid] = {
                "type": "split",
                "paths": [{"name": "a", "weight": 1, "next": after}, {"name": "b", "weight": 1, "next": "s30"}],
            }
        elif i == 33:
            steps[sid] = {
                "type": "wait_for_event",
                "event": "Email Opened",
                "timeout": "2d",
                "on_event": after,
                "on_timeout": "s36",
            }
        elif i == 40:
            steps[sid] = {"type": "update_profile", "set": {"nudged": True}, "next": after}
        elif i % 2:
            steps[sid] = {"type": "wait", "duration": "1d", "next": after}
        else:
            steps[sid] = {"type": "send", "channel": "email", "template": f"mail-{i}", "next": after}
    return {
        "id": "fifty",
        "name": "Fifty steps",
        "trigger": {"type": "event", "event": "Signed Up"},
        "goal": {"event": "Order Completed", "within": "7d"},
        "steps": steps,
    }
