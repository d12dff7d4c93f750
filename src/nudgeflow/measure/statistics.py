"""Holdout lift: what a journey (or the whole program) changed, treated against held out.

Pure arithmetic on counts and sums, so that rollups feed it without per-person rows. Every
method is named in its docstring and in docs/measurement.md, and tests/measure checks each
against statsmodels or scipy (the reference implementations) to 1e-6.

Numbers that cannot be computed from the data given (no one held out, no held-out
conversions for a relative lift, fewer than two people for a variance) are None, and the
result's `notes` say why in words a report can show. Nothing here raises on small or
extreme counts; it raises MeasureError (a ValueError) only on impossible ones (negative counts, more
conversions than people).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nudgeflow.measure.distributions import (
    normal_quantile,
    normal_two_sided_p,
    student_t_quantile,
    student_t_two_sided_p,
)
from nudgeflow.measure.errors import MeasureError

NEWCOMB = "Newcomb hybrid score interval (Newcombe 1998, method 10)"
KATZ_LOG_ADJUSTED = "Katz log interval of the risk ratio, 0.5 added to each count and size"
POOLED_Z = "two-proportion z-test, pooled variance"
WELCH = "Welch t interval (unequal variances, Welch-Satterthwaite degrees of freedom)"
WILSON = "Wilson score interval"
# Below this many held-out conversions the ratio interval covers the truth less often than it
# says (81-91 % measured where the holdout expects about one conversion); the difference's holds.
FEW_CONVERSIONS = 10


@dataclass(frozen=True)
class Estimate:
    """A number with its confidence interval.

    value: the point estimate.
    low, high: the interval's bounds, low <= high. They hold the value except where a
        small-sample adjustment moves the interval off it (the relative lift when no one
        treated converted: the value is -100 %, the adjusted interval stops just short).
    confidence: the interval's nominal coverage, e.g. 0.95.
    method: the interval's name, for the report and docs/measurement.md.
    """

    value: float
    low: float
    high: float
    confidence: float
    method: str

    def scaled(self, factor: float) -> Estimate:
        """The same estimate multiplied by a positive factor (incremental = lift × treated people)."""
        return Estimate(self.value * factor, self.low * factor, self.high * factor, self.confidence, self.method)


@dataclass(frozen=True)
class ConversionLift:
    """Conversion rate treated vs held out, and what the difference means.

    treated_people, treated_conversions: people sent the journey, and how many of them converted.
    held_out_people, held_out_conversions: the same for the holdout (sent nothing).
    treated_rate, held_out_rate: conversions / people; None when there are no people.
    absolute_lift: treated_rate - held_out_rate (a share: 0.012 is 1.2 percentage points), with
        Newcomb's hybrid score interval; None when either side has no people.
    relative_lift: treated_rate / held_out_rate - 1 (0.25 is "25 % more conversions"), with the
        Katz log interval of the ratio (0.5 added to each count and size, statsmodels'
        `log-adjusted`), minus one; None when no one held out converted (the ratio has no finite
        value) or either side has no people.
    p_value: two-sided p-value of the pooled two-proportion z-test of "no difference"; 1.0 when
        both sides convert all or none (no difference can show); None when a side has no people.
    incremental_conversions: absolute_lift × treated_people, with the interval scaled alike:
        conversions the journey caused among the people it treated.
    notes: why any of the numbers above is None, or is less sure than it looks (a relative lift
        over fewer than 10 held-out conversions), one sentence each; empty when neither.
    """

    treated_people: int
    treated_conversions: int
    held_out_people: int
    held_out_conversions: int
    treated_rate: float | None
    held_out_rate: float | None
    absolute_lift: Estimate | None
    relative_lift: Estimate | None
    p_value: float | None
    incremental_conversions: Estimate | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class RevenueSums:
    """Revenue of one group, as sums a rollup can keep.

    people: how many people (or runs: whatever unit the lift compares) the group has, buyers or not.
    total: the sum over them of each one's revenue (0 for those who bought nothing).
    sum_of_squares: the sum over them of the square of each one's revenue — of each person's
        total, not of each order, when one person buys several times.
    """

    people: int
    total: float
    sum_of_squares: float


@dataclass(frozen=True)
class RevenueLift:
    """Revenue per person treated vs held out.

    treated_mean, held_out_mean: revenue per person (total / people); None when there are no people.
    per_person_lift: treated_mean - held_out_mean with Welch's t interval; None when a side has
        fewer than two people or revenue varies on neither side (nobody bought: no spread to
        measure).
    degrees_of_freedom: Welch-Satterthwaite degrees of freedom of that interval; None with it.
    p_value: two-sided p-value of Welch's t-test of "no difference"; None with the interval.
    incremental_revenue: per_person_lift × treated people, with the interval scaled alike:
        revenue the journey caused among the people it treated.
    notes: why any of the numbers above is None, one sentence each.
    """

    treated_people: int
    held_out_people: int
    treated_mean: float | None
    held_out_mean: float | None
    per_person_lift: Estimate | None
    degrees_of_freedom: float | None
    p_value: float | None
    incremental_revenue: Estimate | None
    notes: tuple[str, ...]


def _check_counts(count: int, people: int, what: str) -> None:
    if people < 0 or count < 0:
        raise MeasureError(f"{what}: counts cannot be negative ({count} of {people})")
    if count > people:
        raise MeasureError(f"{what}: {count} conversions among {people} people is impossible")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise MeasureError(f"confidence must be between 0 and 1, not {confidence}")


def wilson_interval(count: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion count / total (total > 0), clipped to [0, 1]."""
    _check_counts(count, total, "rate")
    _check_confidence(confidence)
    if total == 0:
        raise MeasureError("a rate of nobody has no interval")
    z = normal_quantile(1.0 - (1.0 - confidence) / 2.0)
    z2 = z * z
    p = count / total
    denominator = 1.0 + z2 / total
    centre = (p + z2 / (2.0 * total)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / total + z2 / (4.0 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcomb_interval(
    count1: int, total1: int, count0: int, total0: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcomb's hybrid score interval for p1 - p0: Wilson intervals of each side, combined.

    Newcombe, R. G. (1998), "Interval estimation for the difference between independent
    proportions: comparison of eleven methods", Statistics in Medicine 17: 873-890, method 10.
    Equal to statsmodels' `confint_proportions_2indep(..., method="newcomb", compare="diff")`.
    """
    low1, high1 = wilson_interval(count1, total1, confidence)
    low0, high0 = wilson_interval(count0, total0, confidence)
    p1, p0 = count1 / total1, count0 / total0
    below = math.sqrt((p1 - low1) ** 2 + (high0 - p0) ** 2)
    above = math.sqrt((p0 - low0) ** 2 + (high1 - p1) ** 2)
    return p1 - p0 - below, p1 - p0 + above


def risk_ratio_interval(
    count1: int, total1: int, count0: int, total0: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Katz's log interval for p1 / p0 with 0.5 added to each count and each size.

    Katz, D. et al. (1978), "Obtaining confidence intervals for the risk ratio in cohort
    studies", Biometrics 34: 469-474; the 0.5 keeps it finite when a side has no conversions.
    Equal to statsmodels' `confint_proportions_2indep(..., method="log-adjusted", compare="ratio")`
    (its default for ratios).
    """
    _check_confidence(confidence)
    c1, n1, c0, n0 = count1 + 0.5, total1 + 0.5, count0 + 0.5, total0 + 0.5
    log_ratio = math.log((c1 / n1) / (c0 / n0))
    # 1/c - 1/n can round to a hair below 0 when everyone converted.
    variance = max(0.0, 1.0 / c1 - 1.0 / n1 + 1.0 / c0 - 1.0 / n0)
    half = normal_quantile(1.0 - (1.0 - confidence) / 2.0) * math.sqrt(variance)
    return math.exp(log_ratio - half), math.exp(log_ratio + half)


def pooled_z_test(count1: int, total1: int, count0: int, total0: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (= statsmodels' `proportions_ztest`).

    When both sides converted all or none, the pooled variance is 0 and no difference can show:
    the p-value is 1.0 (statsmodels returns nan there).
    """
    pooled = (count1 + count0) / (total1 + total0)
    variance = pooled * (1.0 - pooled) * (1.0 / total1 + 1.0 / total0)
    if variance <= 0.0:
        return 1.0
    return normal_two_sided_p((count1 / total1 - count0 / total0) / math.sqrt(variance))


def conversion_lift(
    treated_conversions: int,
    treated_people: int,
    held_out_conversions: int,
    held_out_people: int,
    *,
    confidence: float = 0.95,
) -> ConversionLift:
    """Conversion lift of treated over held out, with Newcomb, Katz-log and pooled-z statistics."""
    _check_counts(treated_conversions, treated_people, "treated")
    _check_counts(held_out_conversions, held_out_people, "held out")
    _check_confidence(confidence)
    notes: list[str] = []
    treated_rate = treated_conversions / treated_people if treated_people else None
    held_out_rate = held_out_conversions / held_out_people if held_out_people else None
    if treated_rate is None or held_out_rate is None:
        missing = "no one treated" if treated_rate is None else "no one held out"
        notes.append(f"not enough data: {missing}, so there is nothing to compare")
        return ConversionLift(
            treated_people,
            treated_conversions,
            held_out_people,
            held_out_conversions,
            treated_rate,
            held_out_rate,
            None,
            None,
            None,
            None,
            tuple(notes),
        )
    low, high = newcomb_interval(treated_conversions, treated_people, held_out_conversions, held_out_people, confidence)
    absolute = Estimate(treated_rate - held_out_rate, low, high, confidence, NEWCOMB)
    relative: Estimate | None = None
    if held_out_conversions == 0:
        notes.append("no one held out converted, so there is no relative lift to state: read the absolute lift")
    else:
        ratio_low, ratio_high = risk_ratio_interval(
            treated_conversions, treated_people, held_out_conversions, held_out_people, confidence
        )
        relative = Estimate(
            treated_rate / held_out_rate - 1.0, ratio_low - 1.0, ratio_high - 1.0, confidence, KATZ_LOG_ADJUSTED
        )
        if held_out_conversions < FEW_CONVERSIONS:
            notes.append(
                f"only {held_out_conversions} held-out conversions: the relative lift's interval is a rough guide "
                "until there are more; the absolute lift's holds"
            )
    p_value = pooled_z_test(treated_conversions, treated_people, held_out_conversions, held_out_people)
    return ConversionLift(
        treated_people,
        treated_conversions,
        held_out_people,
        held_out_conversions,
        treated_rate,
        held_out_rate,
        absolute,
        relative,
        p_value,
        absolute.scaled(treated_people),
        tuple(notes),
    )


def _mean_and_variance(sums: RevenueSums, what: str) -> tuple[float | None, float | None]:
    if sums.people < 0:
        raise MeasureError(f"{what}: people cannot be negative ({sums.people})")
    if not (math.isfinite(sums.total) and math.isfinite(sums.sum_of_squares)) or sums.sum_of_squares < 0:
        raise MeasureError(f"{what}: revenue sums must be finite and the sum of squares >= 0")
    if sums.people == 0:
        return None, None
    mean = sums.total / sums.people
    if sums.people < 2:
        return mean, None
    # Sums of squares lose digits to cancellation; a variance below 0 is that rounding.
    variance = max(0.0, (sums.sum_of_squares - sums.total * mean) / (sums.people - 1))
    return mean, variance


def revenue_lift(treated: RevenueSums, held_out: RevenueSums, *, confidence: float = 0.95) -> RevenueLift:
    """Revenue per person lift of treated over held out, with Welch's t interval and test.

    Welch, B. L. (1947), "The generalization of Student's problem when several different
    population variances are involved", Biometrika 34: 28-35. Equal to statsmodels'
    `CompareMeans(...).tconfint_diff(usevar="unequal")` and scipy's `ttest_ind(equal_var=False)`.
    """
    _check_confidence(confidence)
    mean1, variance1 = _mean_and_variance(treated, "treated")
    mean0, variance0 = _mean_and_variance(held_out, "held out")
    notes: list[str] = []

    def result(lift: Estimate | None, df: float | None, p: float | None) -> RevenueLift:
        incremental = lift.scaled(treated.people) if lift is not None else None
        return RevenueLift(treated.people, held_out.people, mean1, mean0, lift, df, p, incremental, tuple(notes))

    if variance1 is None or variance0 is None:
        side = "treated" if variance1 is None else "held out"
        notes.append(f"not enough data: fewer than two people {side}, so revenue has no spread to measure")
        return result(None, None, None)
    assert mean1 is not None and mean0 is not None  # a variance implies a mean
    error1, error0 = variance1 / treated.people, variance0 / held_out.people
    standard_error = math.sqrt(error1 + error0)
    if standard_error == 0.0:
        notes.append("not enough data: revenue per person is the same for everyone (often: nobody bought yet)")
        return result(None, None, None)
    df = (error1 + error0) ** 2 / (error1**2 / (treated.people - 1) + error0**2 / (held_out.people - 1))
    difference = mean1 - mean0
    half = student_t_quantile(1.0 - (1.0 - confidence) / 2.0, df) * standard_error
    lift = Estimate(difference, difference - half, difference + half, confidence, WELCH)
    return result(lift, df, student_t_two_sided_p(difference / standard_error, df))
