"""measure/delays.py: a split whose paths differ only in waits is a delay experiment."""

from __future__ import annotations

from typing import Any

from nudgeflow.measure.delays import DelayPath, delay_experiment
from nudgeflow.model.journeys import Journey


def _journey(steps: dict[str, Any]) -> Journey:
    return Journey.model_validate(
        {"id": "j", "name": "J", "trigger": {"type": "event", "event": "Signed Up"}, "steps": steps}
    )


SEND = {"type": "send", "channel": "email", "template": "welcome"}


def test_waits_before_the_same_step_make_a_delay_experiment() -> None:
    journey = _journey(
        {
            "split": {
                "type": "split",
                "paths": [
                    {"name": "soon", "weight": 1, "next": "wait-30m"},
                    {"name": "later", "weight": 1, "next": "wait-1h"},
                    {"name": "now", "weight": 1, "next": "send"},
                ],
            },
            "wait-30m": {"type": "wait", "duration": "30m", "next": "send"},
            "wait-1h": {"type": "wait", "duration": "1h", "next": "wait-1h-more"},
            "wait-1h-more": {"type": "wait", "duration": "1h", "next": "send"},
            "send": SEND,
        }
    )
    found = delay_experiment(journey, "split")
    assert found is not None and found.step == "split"
    assert found.paths == (
        DelayPath("soon", 1.0, ("30m",), 1_800_000, "send"),
        DelayPath("later", 1.0, ("1h", "1h"), 7_200_000, "send"),
        DelayPath("now", 1.0, (), 0, "send"),
    )


def test_copies_of_one_step_count_as_the_same_step() -> None:
    journey = _journey(
        {
            "split": {
                "type": "split",
                "paths": [{"name": "a", "weight": 1, "next": "w1"}, {"name": "b", "weight": 1, "next": "w2"}],
            },
            "w1": {"type": "wait", "duration": "30m", "next": "send-a"},
            "w2": {"type": "wait", "duration": "2h", "next": "send-b"},
            "send-a": SEND,
            "send-b": SEND,
        }
    )
    found = delay_experiment(journey, "split")
    assert found is not None and [p.delay_ms for p in found.paths] == [1_800_000, 7_200_000]


def test_other_splits_are_not_delay_experiments() -> None:
    content = _journey(
        {
            "split": {
                "type": "split",
                "paths": [{"name": "a", "weight": 1, "next": "w1"}, {"name": "b", "weight": 1, "next": "w2"}],
            },
            "w1": {"type": "wait", "duration": "30m", "next": "send-a"},
            "w2": {"type": "wait", "duration": "2h", "next": "send-b"},
            "send-a": SEND,
            "send-b": {**SEND, "template": "other"},
        }
    )
    assert delay_experiment(content, "split") is None  # the messages differ too
    same_wait = _journey(
        {
            "split": {
                "type": "split",
                "paths": [{"name": "a", "weight": 1, "next": "w1"}, {"name": "b", "weight": 1, "next": "w2"}],
            },
            "w1": {"type": "wait", "duration": "1h", "next": "send"},
            "w2": {"type": "wait", "duration": "60m", "next": "send"},
            "send": SEND,
        }
    )
    assert delay_experiment(same_wait, "split") is None  # no difference in delay
    until = _journey(
        {
            "split": {
                "type": "split",
                "paths": [{"name": "a", "weight": 1, "next": "w1"}, {"name": "b", "weight": 1, "next": "send"}],
            },
            "w1": {"type": "wait", "until_time": {"at": "09:00"}, "next": "send"},
            "send": SEND,
        }
    )
    assert delay_experiment(until, "split") is None  # a wait until a time is no fixed delay
    assert delay_experiment(until, "send") is None  # not a split
    assert delay_experiment(until, "missing") is None
