"""measure/report.py's lifts from rollup counters: the program's (the global control group
against everyone else) against a case worked by hand and against statsmodels on the people's
own numbers, and a journey's, which leaves the group's runs out."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from nudgeflow.measure import report
from nudgeflow.store.schema import ROLLUP_COUNTERS, ROLLUP_SUMS

ZERO = {**dict.fromkeys(ROLLUP_COUNTERS, 0), **dict.fromkeys(ROLLUP_SUMS, 0.0)}


def _people(converted: int, people: int, revenue_of: float) -> np.ndarray:
    """Each person's revenue: the converted ones `revenue_of` times their rank (so revenue varies)."""
    out = np.zeros(people)
    out[:converted] = revenue_of * np.arange(1, converted + 1)
    return out


def _program(treated: np.ndarray, control: np.ndarray) -> dict[str, float]:
    return {
        "program_people": len(treated),
        "program_conversions": int((treated > 0).sum()),
        "program_revenue": float(treated.sum()),
        "program_revenue_sq": float((treated**2).sum()),
        "program_people_control": len(control),
        "program_conversions_control": int((control > 0).sum()),
        "program_revenue_control": float(control.sum()),
        "program_revenue_sq_control": float((control**2).sum()),
    }


def test_program_lift_by_hand() -> None:
    """1,000 people outside the group, 120 converted; 100 in it, 5 converted."""
    lift = report.program_lift(_program(_people(120, 1000, 1.0), _people(5, 100, 1.0)))
    assert lift is not None
    c = lift["conversion"]
    assert (c["treated_rate"], c["held_out_rate"]) == (0.12, 0.05)
    assert math.isclose(c["absolute_lift"]["value"], 0.07)
    # Pooled: 125 / 1100; z = 0.07 / sqrt(p (1 - p) (1/1000 + 1/100)) = 2.1030...; p = 2 (1 - Φ(z)).
    pooled = 125 / 1100
    z = 0.07 / math.sqrt(pooled * (1 - pooled) * (1 / 1000 + 1 / 100))
    assert math.isclose(z, 2.10297, rel_tol=1e-5)
    assert math.isclose(c["p_value"], math.erfc(z / math.sqrt(2)), rel_tol=1e-9)
    assert math.isclose(c["relative_lift"]["value"], 0.12 / 0.05 - 1)
    assert math.isclose(c["incremental_conversions"]["value"], 70.0)
    assert (lift["people"], lift["control_people"]) == (1000, 100)
    assert "control group" in lift["basis"] and "causal" in lift["basis"]
    assert "person" in lift["unit"]


def test_program_lift_matches_statsmodels_on_the_peoples_numbers() -> None:
    treated, control = _people(133, 2400, 3.5), _people(9, 260, 2.0)
    lift = report.program_lift(_program(treated, control))
    assert lift is not None
    c = lift["conversion"]
    low, high = confint_proportions_2indep(133, 2400, 9, 260, method="newcomb", compare="diff")
    assert abs(c["absolute_lift"]["low"] - low) < 1e-6 and abs(c["absolute_lift"]["high"] - high) < 1e-6
    _, p = proportions_ztest([133, 9], [2400, 260])
    assert abs(c["p_value"] - p) < 1e-6
    r = lift["revenue_per_person"]
    compare = CompareMeans(DescrStatsW(treated), DescrStatsW(control))
    low, high = compare.tconfint_diff(usevar="unequal")
    assert abs(r["per_person_lift"]["low"] - low) < 1e-6 and abs(r["per_person_lift"]["high"] - high) < 1e-6
    assert abs(r["p_value"] - compare.ttest_ind(usevar="unequal")[1]) < 1e-6


def test_no_program_lift_without_anyone_in_the_group() -> None:
    assert report.program_lift(_program(_people(5, 50, 1.0), np.zeros(0))) is None


def test_a_journeys_lift_leaves_its_control_runs_out() -> None:
    """Treated 200 (30 converted), held out 50 (4), and 40 runs in the group (2): the journey's
    lift is 30/200 against 4/50, whatever the group's runs did."""
    counters = {**ZERO, "entered": 200, "conversions": 30, "held_out": 50, "conversions_held_out": 4}
    with_group = {**counters, "entered_control": 40, "conversions_control": 2, "revenue_control": 9.0}
    alone, beside = report.lift(counters), report.lift(with_group)
    assert alone is not None and alone == beside
    assert (alone["conversion"]["treated_people"], alone["conversion"]["held_out_people"]) == (200, 50)
    shown = report.metrics(with_group, {})
    assert (shown["control"], shown["control_conversions"], shown["control_conversion_rate"]) == (40, 2, 0.05)
    assert shown["conversion_rate"] == 30 / 200


def test_the_overview_has_the_program_lift_and_its_csv_line() -> None:
    row = {**ZERO, "journey_id": "promo", "entered": 10, "conversions": 1}
    program = _program(_people(120, 1000, 1.0), _people(5, 100, 1.0))
    found = report.overview_report([row], [], {"promo": "event"}, list(ZERO), program=program)
    assert found["lift"] == report.program_lift(program)
    lines = list(csv.DictReader(io.StringIO(report.overview_csv(found))))
    assert [line["row"] for line in lines] == ["journey", "program"]
    program_line = lines[1]
    assert (program_line["entered"], program_line["control"], program_line["conversions"]) == ("1000", "100", "120")
    assert math.isclose(float(program_line["lift_absolute"]), 0.07)
    assert program_line["sent"] == ""
    assert report.overview_report([row], [], {}, list(ZERO))["lift"] is None


def test_the_program_lifts_notes_speak_of_the_control_group() -> None:
    lift = report.program_lift(_program(_people(40, 400, 1.0), np.zeros(30)))
    assert lift is not None
    assert lift["conversion"]["notes"] == [
        "no one in the control group converted, so there is no relative lift to state: read the absolute lift"
    ]
    assert lift["revenue_per_person"]["notes"] == []
    one = report.program_lift(_program(_people(40, 400, 1.0), np.zeros(1)))
    assert one is not None
    assert one["revenue_per_person"]["notes"] == [
        "not enough data: fewer than two people in the control group, so revenue has no spread to measure"
    ]
