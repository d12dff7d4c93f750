"""The journey report's send-time section from counters (measure/send_time_report.py): how
versions, shares and arms group, what is compared, and what it says when it cannot compare."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from nudgeflow.measure.experiments import Arm, analyze_experiment
from nudgeflow.measure.send_time_report import CHOSEN, send_time_section


def row(version: int, arm: str, sent: int, opens: int = 0, clicks: int = 0, **more: int) -> dict[str, Any]:
    counts = {"opens_machine": 0, "clicks_bot": 0, "unsubscribes": 0, "complaints": 0, **more}
    return {"version": version, "step": "mail", "timed_by": "best", "arm": arm, "sent": sent, "opens": opens,
            "clicks": clicks, **counts}  # fmt: skip


def test_versions_with_the_same_share_are_summed_and_others_apart() -> None:
    rows = [
        row(1, "optimized", 800, 240, 40),
        row(1, "explore", 100, 20, 2),
        row(2, "optimized", 900, 300, 50, opens_machine=7, unsubscribes=3),
        row(2, "fallback", 100, 25, 5),
        row(2, "explore", 100, 21, 3, complaints=1),
        row(3, "explore", 50, 10, 1),
    ]
    shares = {(1, "best"): 0.1, (2, "best"): 0.1, (3, "best"): 0.5}
    first, second = send_time_section(rows, shares)
    assert (first["explore"], first["versions"], second["explore"], second["versions"]) == (0.1, [1, 2], 0.5, [3])
    arms = {a["arm"]: a for a in first["arms"]}
    assert (arms["optimized"]["sent"], arms["optimized"]["unique_opens"], arms["optimized"]["machine_opens"]) == (
        1700,
        540,
        7,
    )
    assert arms["optimized"]["open_rate"] == 540 / 1700 and arms["fallback"]["unique_clicks"] == 5
    # The experiment: optimized and fallback together against explore, at 0.9 and 0.1.
    expected = analyze_experiment(
        [Arm(CHOSEN, 0.9, 1800, 565, 3, 0), Arm("explore", 0.1, 200, 41, 0, 1)],
        control="explore",
        primary_metric="open",
    )
    assert first["open_rate"] == asdict(expected)
    assert first["open_rate"]["sample_ratio"]["expected_shares"] == (0.9, 0.1)
    assert first["click_rate"]["primary_metric"] == "click" and first["no_experiment"] is None
    # Machine opens count only when asked.
    shown = send_time_section(rows, shares, include_machine=True)[0]
    assert {a["arm"]: a for a in shown["arms"]}["optimized"]["unique_opens"] == 547
    assert shown["open_rate"]["arms"][0]["primary"]["count"] == 572


def test_no_comparison_with_one_arm_or_an_unknown_version() -> None:
    rows = [row(1, "optimized", 10, 3), row(2, "explore", 5, 1)]
    none, unknown = send_time_section(rows, {(1, "best"): 0.0})
    assert none["explore"] == 0.0 and none["open_rate"] is None and none["click_rate"] is None
    assert none["no_experiment"] == "no comparison: explore is 0: one arm only"
    assert unknown["explore"] is None and unknown["no_experiment"] == "no comparison: its version is unknown"
    assert {a["arm"]: a["sent"] for a in unknown["arms"]} == {"optimized": 0, "fallback": 0, "explore": 5}


def test_a_small_experiment_calls_nothing_yet() -> None:
    [entry] = send_time_section([row(1, "optimized", 90, 30), row(1, "explore", 10, 1)], {(1, "best"): 0.1})
    assert entry["open_rate"]["winner"]["status"] == "too_few"
    assert entry["open_rate"]["arms"][0]["versus_control"] is None
    assert send_time_section([], {}) == []


def test_opens_counted_twice_before_the_machine_count_excluded_people_do_not_fail_the_report() -> None:
    """Rollups written before a person's open took its message out of the machine count hold
    messages in both counters: with machine opens included they add up past the messages sent,
    which the experiment refused as impossible counts (the report answered 500)."""
    rows = [row(1, "optimized", 600, 550, opens_machine=100), row(1, "explore", 600, 590, opens_machine=30)]
    [entry] = send_time_section(rows, {(1, "best"): 0.5}, include_machine=True)
    arms = {a["arm"]: a for a in entry["arms"]}
    assert (arms["optimized"]["unique_opens"], arms["explore"]["unique_opens"]) == (600, 600)
    assert [a["primary"]["count"] for a in entry["open_rate"]["arms"]] == [600, 600]
    # Without machine opens, the people's as they are.
    [plain] = send_time_section(rows, {(1, "best"): 0.5})
    assert [a["primary"]["count"] for a in plain["open_rate"]["arms"]] == [550, 590]
