"""measure/report.experiments: a journey's experiment sections from the arms' counters (pure)."""

from __future__ import annotations

import dataclasses
from typing import Any

from nudgeflow.measure.experiments import Arm, analyze_experiment
from nudgeflow.measure.report import experiment_steps, experiments
from nudgeflow.model.histogram import bucket_of
from nudgeflow.model.journeys import Journey

JOURNEY = Journey.model_validate(
    {
        "id": "j",
        "name": "J",
        "trigger": {"type": "event", "event": "Signed Up"},
        "goal": {"event": "Order Completed", "within": "7d"},
        "steps": {
            "timing": {
                "type": "split",
                "paths": [{"name": "soon", "weight": 1, "next": "w1"}, {"name": "later", "weight": 1, "next": "w2"}],
            },
            "w1": {"type": "wait", "duration": "30m", "next": "mail"},
            "w2": {"type": "wait", "duration": "1h", "next": "w3"},
            "w3": {"type": "wait", "duration": "1h", "next": "mail"},
            "mail": {
                "type": "send",
                "channel": "email",
                "primary_metric": "open",
                "variants": [
                    {"name": "a", "template": "t-a", "weight": 3},
                    {"name": "b", "template": "t-b", "weight": 1},
                ],
                "next": "plain",
            },
            "plain": {"type": "send", "channel": "email", "template": "t"},
        },
    }
)


def row(step: str, arm: str, runs: int, **counts: Any) -> dict[str, Any]:
    base = {
        "version": 1,
        "step": step,
        "arm": arm,
        "runs": runs,
        "conversions": 0,
        "revenue": 0.0,
        "revenue_sq": 0.0,
        "opens": 0,
        "clicks": 0,
        "unsubscribes": 0,
        "complaints": 0,
        "time_to_convert": {},
    }
    return {**base, **counts}


def test_every_split_and_variant_step_is_a_section_in_order() -> None:
    assert [sid for sid, _ in experiment_steps(JOURNEY)] == ["timing", "mail"]
    sections = experiments({1: JOURNEY}, [])
    assert [(s["step"], s["kind"], s["primary_metric"]) for s in sections] == [
        ("timing", "split", "conversion"),
        ("mail", "variants", "open"),
    ]
    # No runs yet: every arm at zero, and no winner with the reason.
    for section in sections:
        assert [a["runs"] for a in section["arms"]] == [0, 0]
        assert section["winner"]["status"] == "too_few"
        assert section["sample_ratio"]["p_value"] is None


def test_the_primary_metric_picks_the_counter_and_the_call_is_analyze_experiments() -> None:
    rows = [
        row("mail", "a", 3000, opens=900, conversions=30, unsubscribes=3),
        row("mail", "b", 1000, opens=400, conversions=10, unsubscribes=20),
    ]
    [_, mail] = experiments({1: JOURNEY}, rows)
    want = analyze_experiment(
        [Arm("a", 3, 3000, 900, unsubscribes=3), Arm("b", 1, 1000, 400, unsubscribes=20)], primary_metric="open"
    )
    assert mail["winner"] == dataclasses.asdict(want.winner)
    assert mail["winner"]["winner"] == "b" and mail["winner"]["status"] == "winner"
    # b's unsubscribes (2 %) are credibly above a's (0.1 %): a guardrail breach with its reason.
    [breach] = mail["guardrail_breaches"]
    assert breach["arm"] == "b" and breach["metric"] == "unsubscribe" and "credibly above" in breach["reason"]
    b = mail["arms"][1]
    assert (b["primary"]["count"], b["primary"]["total"]) == (400, 1000)
    assert (b["conversion"]["count"], b["opens"], b["runs"]) == (10, 400, 1000)
    assert b["versus_control"]["arm"] == "b" and b["versus_control"]["against"] == "a"
    assert mail["arms"][0]["versus_control"] is None  # the control
    assert mail["sample_ratio"]["expected_shares"] == (0.75, 0.25)


def test_a_sample_ratio_mismatch_stops_the_call() -> None:
    rows = [row("mail", "a", 2000, opens=600), row("mail", "b", 1000, opens=400)]  # weights say 3:1
    [_, mail] = experiments({1: JOURNEY}, rows)
    assert mail["sample_ratio"]["mismatch"] is True
    assert mail["winner"]["status"] == "sample_ratio_mismatch"
    assert mail["winner"]["reason"].startswith("no winner yet: sample ratio mismatch")


def test_the_minimum_per_arm_is_the_callers() -> None:
    rows = [row("timing", "soon", 100, conversions=10), row("timing", "later", 100, conversions=12)]
    [timing, _] = experiments({1: JOURNEY}, rows)
    assert timing["winner"]["status"] == "too_few" and "each arm needs 500" in timing["winner"]["reason"]
    [timing, _] = experiments({1: JOURNEY}, rows, minimum_per_arm=50)
    assert timing["minimum_per_arm"] == 50 and timing["winner"]["status"] == "overlap"


def test_a_steps_own_minimum_per_arm_is_used_unless_the_request_names_one() -> None:
    own = JOURNEY.model_copy(deep=True)
    own.steps["timing"] = own.steps["timing"].model_copy(update={"minimum_per_arm": 150})
    rows = [row("timing", "soon", 200, conversions=20), row("timing", "later", 200, conversions=22)]
    [timing, mail] = experiments({1: own}, rows)
    assert timing["minimum_per_arm"] == 150 and timing["winner"]["status"] == "overlap"
    assert mail["minimum_per_arm"] == 500  # a step without its own: the default
    [timing, _] = experiments({1: own}, rows, minimum_per_arm=300)  # the request's wins
    assert timing["minimum_per_arm"] == 300 and timing["winner"]["status"] == "too_few"


def test_a_delay_experiment_labels_each_arm_with_its_delay_and_time_to_convert() -> None:
    rows = [
        row("timing", "soon", 10, conversions=4, revenue=40.0, time_to_convert={bucket_of(3_600_000): 4}),
        row("timing", "later", 10, conversions=2, revenue=10.0, time_to_convert={bucket_of(10_800_000): 2}),
    ]
    [timing, mail] = experiments({1: JOURNEY}, rows)
    assert timing["delay_experiment"] is True and mail["delay_experiment"] is False
    soon, later = timing["arms"]
    assert soon["delay"] == {"label": "30m", "waits": ["30m"], "seconds": 1800.0}
    assert later["delay"] == {"label": "1h + 1h", "waits": ["1h", "1h"], "seconds": 7200.0}
    assert (soon["conversion"]["value"], later["conversion"]["value"]) == (0.4, 0.2)
    assert (soon["revenue"], soon["revenue_per_run"]) == (40.0, 4.0)
    assert abs(soon["time_to_convert"]["p50_s"] - 3600) <= 0.1 * 3600
    assert abs(later["time_to_convert"]["p90_s"] - 10_800) <= 0.1 * 10_800
    assert "delay" not in mail["arms"][0]


def test_versions_are_reported_apart() -> None:
    v2 = Journey.model_validate(
        {
            **JOURNEY.model_dump(by_alias=True, exclude_none=True),
            "steps": {"plain": {"type": "send", "channel": "email", "template": "t"}},
        }
    )
    rows = [row("timing", "soon", 5), {**row("timing", "later", 7), "version": 1}]
    sections = experiments({2: v2, 1: JOURNEY}, rows)
    assert [(s["version"], s["step"]) for s in sections] == [(1, "timing"), (1, "mail")]
    assert [a["runs"] for a in sections[0]["arms"]] == [5, 7]
