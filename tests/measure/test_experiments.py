"""measure/experiments.py: rates, the sample-ratio check (against scipy), winner calls and
guardrails with their reasons, and the report's shape."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from nudgeflow.measure.errors import MeasureError
from nudgeflow.measure.experiments import (
    Arm,
    analyze_experiment,
    arms_of,
    call_winner,
    guardrail_breaches,
    rate,
    sample_ratio_check,
)
from nudgeflow.measure.sequential import difference_sequence, mixture_precision
from nudgeflow.model.journeys import SendStep, SplitStep


def test_rate_is_wilson_and_nobody_is_none() -> None:
    r = rate(12, 340)
    low, high = proportion_confint(12, 340, method="wilson")
    assert r.value == 12 / 340 and math.isclose(r.low or 0, low) and math.isclose(r.high or 0, high)
    assert r.method == "Wilson score interval"
    empty = rate(0, 0)
    assert (empty.value, empty.low, empty.high) == (None, None, None)


@pytest.mark.parametrize(
    ("recipients", "weights"),
    [
        ([500, 500], [1, 1]),
        ([520, 480], [1, 1]),
        ([5200, 4800], [50, 50]),
        ([1000, 300], [3, 1]),
        ([10, 0, 3], [1, 1, 1]),
        ([700, 250, 260], [0.6, 0.2, 0.2]),
        ([1, 1], [1, 99]),
    ],
)
def test_sample_ratio_matches_scipy_chisquare(recipients: list[int], weights: list[float]) -> None:
    check = sample_ratio_check(recipients, weights)
    expected = [sum(recipients) * w / sum(weights) for w in weights]
    reference = stats.chisquare(recipients, f_exp=expected)
    assert math.isclose(check.chi_square or 0, float(reference.statistic), rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(check.p_value or 0, float(reference.pvalue), rel_tol=1e-7, abs_tol=1e-12)
    assert check.degrees_of_freedom == len(weights) - 1
    assert check.mismatch == (float(reference.pvalue) < 0.001)


def test_sample_ratio_mismatch_warns_in_words() -> None:
    check = sample_ratio_check([5200, 4800], [1, 1])
    assert check.mismatch and check.p_value is not None and check.p_value < 0.001
    assert check.reason is not None and check.reason.startswith("sample ratio mismatch: recipients split 52.00 %")
    assert check.observed_shares == (0.52, 0.48) and check.expected_shares == (0.5, 0.5)
    fine = sample_ratio_check([5050, 4950], [1, 1])
    assert not fine.mismatch and fine.reason is None
    nobody = sample_ratio_check([0, 0], [1, 3])
    assert nobody.p_value is None and not nobody.mismatch and nobody.expected_shares == (0.25, 0.75)


def test_the_confidence_sequence_is_the_normal_mixture_boundary() -> None:
    # Waudby-Smith et al. (2024), Theorem 2.2, written out independently of the module.
    bounds = difference_sequence(60, 1000, 40, 1000, alpha=0.05, tuned_for=10_000)
    rho2 = (2 * math.log(20) + math.log(2 * math.log(20) + 1)) / 10_000
    assert math.isclose(mixture_precision(0.05, 10_000), rho2)
    v = (61 / 1002) * (941 / 1002) / 1000 + (41 / 1002) * (961 / 1002) / 1000
    t = 2000
    sigma2 = v * t
    half = math.sqrt(sigma2) * math.sqrt(2 * (t * rho2 + 1) / (t**2 * rho2) * math.log(math.sqrt(t * rho2 + 1) / 0.05))
    assert math.isclose(bounds.high - bounds.difference, half) and math.isclose(bounds.difference - bounds.low, half)
    # Wider than the fixed-horizon interval at the same counts: the price of looking every day.
    assert half > 1.96 * math.sqrt(v)


def test_no_call_before_the_minimum_per_arm_however_clear() -> None:
    arms = [Arm("A", 1, 499, 10), Arm("B", 1, 499, 300)]
    call = call_winner(arms)
    assert call.winner is None and call.status == "too_few" and call.comparisons == ()
    assert call.reason == (
        "no winner yet: too few recipients to call one ('A' has 499, 'B' has 499; each arm needs 500)"
    )
    assert call_winner([Arm("A", 1, 100, 10), Arm("B", 1, 100, 60)], minimum_per_arm=100).winner == "B"


def test_a_clear_winner_and_an_overlap() -> None:
    clear = call_winner([Arm("A", 1, 5000, 250), Arm("B", 1, 5000, 400)])
    assert clear.winner == "B" and clear.status == "winner"
    assert clear.reason.startswith("'B' wins on conversion: its rate 8.00 % is credibly above every other arm's")
    (comparison,) = clear.comparisons
    assert (comparison.arm, comparison.against) == ("A", "B") and comparison.high < 0
    close = call_winner([Arm("A", 1, 5000, 250), Arm("B", 1, 5000, 265)])
    assert close.winner is None and close.status == "overlap"
    assert close.reason.startswith("no winner yet: the arms overlap — the best so far, 'B' (5.30 %), is between -")
    assert "against 'A', which still includes no difference" in close.reason


def test_a_winner_must_beat_every_other_arm() -> None:
    # C beats A clearly but not B: no winner; with B as bad as A, C wins.
    arms = [Arm("A", 1, 5000, 250), Arm("B", 1, 5000, 390), Arm("C", 1, 5000, 400)]
    call = call_winner(arms)
    assert call.winner is None and call.status == "overlap" and len(call.comparisons) == 3
    assert call_winner([arms[0], Arm("B", 1, 5000, 255), arms[2]]).winner == "C"


def test_sample_ratio_mismatch_stops_the_call() -> None:
    arms = [Arm("A", 1, 5200, 250), Arm("B", 1, 4800, 400)]
    report = analyze_experiment(arms)
    assert report.sample_ratio.mismatch
    assert report.winner.winner is None and report.winner.status == "sample_ratio_mismatch"
    assert report.winner.reason.startswith("no winner yet: sample ratio mismatch")


def test_single_arm_is_no_experiment() -> None:
    call = call_winner([Arm("only", 1, 1000, 50)])
    assert call.status == "single_arm" and call.winner is None


def test_guardrail_breach_names_the_variant_and_why() -> None:
    arms = [Arm("A", 1, 4000, 200, unsubscribes=8, complaints=1), Arm("B", 1, 4000, 210, unsubscribes=48)]
    (breach,) = guardrail_breaches(arms)
    assert (breach.arm, breach.metric, breach.comparison.against) == ("B", "unsubscribe", "A")
    assert breach.comparison.low > 0
    assert breach.reason.startswith("'B' unsubscribe rate 1.20 % is credibly above control 'A''s 0.20 %: +")
    # The control can be named; the check then runs the other way round.
    assert guardrail_breaches(arms, control="B") == ()
    # Below the minimum nothing is judged.
    assert guardrail_breaches(arms, minimum_per_arm=5000) == ()
    with pytest.raises(ValueError, match="control arm 'Z'"):
        guardrail_breaches(arms, control="Z")


def test_report_has_every_part_and_serializes() -> None:
    arms = [
        Arm("A", 2, 6000, 300, unsubscribes=10, complaints=2),
        Arm("B", 1, 3000, 240, unsubscribes=6),
        Arm("C", 1, 3000, 160, unsubscribes=40),
    ]
    report = analyze_experiment(arms, primary_metric="click")
    assert report.control == "A" and report.primary_metric == "click" and report.minimum_per_arm == 500
    assert [a.name for a in report.arms] == ["A", "B", "C"]
    assert report.arms[0].versus_control is None
    versus = report.arms[1].versus_control
    assert versus is not None and versus.metric == "click" and versus.confidence == pytest.approx(0.975)
    assert report.arms[1].primary.value == 0.08 and report.arms[2].unsubscribe.count == 40
    assert not report.sample_ratio.mismatch and report.sample_ratio.expected_shares == (0.5, 0.25, 0.25)
    assert report.winner.winner == "B"
    assert [(b.arm, b.metric) for b in report.guardrail_breaches] == [("C", "unsubscribe")]
    assert json.loads(json.dumps(dataclasses.asdict(report)))["winner"]["winner"] == "B"


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="impossible"):
        call_winner([Arm("A", 1, 10, 11), Arm("B", 1, 10, 1)])
    with pytest.raises(ValueError, match="distinct"):
        call_winner([Arm("A", 1, 10, 1), Arm("A", 1, 10, 1)])
    with pytest.raises(ValueError, match="one weight per arm"):
        sample_ratio_check([1, 2, 3], [1, 1])


def test_arms_of_a_variant_send_step_and_a_split() -> None:
    send = SendStep.model_validate(
        {
            "type": "send",
            "channel": "email",
            "variants": [
                {"name": "short", "template": "t1", "weight": 1},
                {"name": "long", "template": "t2", "weight": 3},
            ],
        }
    )
    assert arms_of(send) == (("short", 1.0), ("long", 3.0))
    assert arms_of(SendStep.model_validate({"type": "send", "channel": "email", "template": "t"})) == ()
    split = SplitStep.model_validate(
        {"type": "split", "paths": [{"name": "a", "weight": 50, "next": "x"}, {"name": "b", "weight": 50}]}
    )
    assert arms_of(split) == (("a", 50.0), ("b", 50.0))


@pytest.mark.parametrize(
    ("count1", "total1", "count0", "total0"),
    [(5, 5, 0, 5), (0, 5, 5, 5), (500, 500, 0, 500), (0, 500, 500, 500), (3, 3, 3, 3), (1, 2, 0, 1)],
)
def test_the_confidence_sequence_never_leaves_the_possible_differences(
    count1: int, total1: int, count0: int, total0: int
) -> None:
    # A difference of two rates lies between -1 and +1 (-100 and +100 points): a bound beyond
    # that says nothing true, and at small counts the unclipped boundary reached -511 points.
    bounds = difference_sequence(count1, total1, count0, total0)
    assert -1.0 <= bounds.low <= bounds.difference <= bounds.high <= 1.0
    arms = [Arm("A", 1, total1, count1), Arm("B", 1, total0, count0)]
    call = call_winner(arms, minimum_per_arm=1)
    for comparison in call.comparisons:
        assert -1.0 <= comparison.low <= comparison.high <= 1.0


def test_the_sample_ratio_check_tests_the_recipients_it_is_given_and_the_split_never_shrinks() -> None:
    # 700 / 700 assigned while the weights held, then 2000 more to B after routing to it.
    arms = [Arm("A", 1, 700, 35), Arm("B", 1, 2700, 675)]
    assert analyze_experiment(arms).winner.status == "sample_ratio_mismatch"
    report = analyze_experiment(arms, sample_ratio_recipients=[700, 700])
    assert not report.sample_ratio.mismatch and report.winner.winner == "B"
    with pytest.raises(MeasureError, match="not a part of each arm's"):
        analyze_experiment(arms, sample_ratio_recipients=[701, 700])
    with pytest.raises(MeasureError, match="cannot be split over 0 comparisons"):
        call_winner(arms, split_over=0)
    three = call_winner(arms, split_over=3)
    assert {c.confidence for c in three.comparisons} == {1 - 0.05 / 3}
