"""Experiments: every send step with `variants` and every `split` step, arm by arm.

From each arm's counts (recipients, the primary metric's successes, unsubscribes, complaints)
this gives what an experiment report shows:

- each arm's rates with Wilson score intervals (`Rate`);
- a sample-ratio-mismatch check of the recipients against the configured weights
  (`sample_ratio_check`: Pearson's chi-square, warn at p < 0.001), over the recipients the
  weights split (the caller's, after a pause or a route: those assigned before it);
- a winner call that may be looked at every day (`call_winner`): always-valid confidence
  sequences (sequential.py), no call before a minimum of recipients per arm, and otherwise
  "no winner yet" with the reason;
- guardrails (`guardrail_breaches`): a variant whose unsubscribe or complaint rate is credibly
  above the control arm's, by the same always-valid test, with the reason in words.

The control arm is the one named, or else the first the step lists. Several arms mean several
comparisons: the error allowed is split between them (Bonferroni), so the chance of any false
winner, or of any false guardrail breach, stays within 1 - confidence over all looks.

Everything returned is a frozen dataclass of numbers, strings and tuples, so a report can
serialize it as it is (`dataclasses.asdict`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from nudgeflow.measure.distributions import chi_square_survival
from nudgeflow.measure.errors import MeasureError
from nudgeflow.measure.sequential import NORMAL_MIXTURE, TUNED_FOR, difference_sequence
from nudgeflow.measure.statistics import WILSON, wilson_interval
from nudgeflow.model.journeys import SendStep, SplitStep

MINIMUM_PER_ARM = 500
SRM_THRESHOLD = 0.001
CONVERSION = "conversion"

WinnerStatus = Literal["winner", "too_few", "sample_ratio_mismatch", "overlap", "single_arm"]
Guardrail = Literal["unsubscribe", "complaint"]


@dataclass(frozen=True)
class Arm:
    """What one arm of an experiment counted (the input).

    name: the variant's or the split path's name.
    weight: its configured weight (any positive scale; only the ratios count).
    recipients: the people assigned to it (the denominator of its rates).
    successes: recipients who did the primary metric (converted, by default).
    unsubscribes, complaints: recipients who unsubscribed, or complained (marked as spam).
    """

    name: str
    weight: float
    recipients: int
    successes: int
    unsubscribes: int = 0
    complaints: int = 0


@dataclass(frozen=True)
class Rate:
    """A rate with its Wilson score interval.

    count, total: the rate is count / total.
    value, low, high: the rate and its interval; None when total is 0.
    confidence: the interval's nominal coverage.
    method: the interval's name.
    """

    count: int
    total: int
    value: float | None
    low: float | None
    high: float | None
    confidence: float
    method: str = WILSON


@dataclass(frozen=True)
class Comparison:
    """An always-valid comparison of two arms on one metric: rate(arm) - rate(against).

    arm, against: the arms compared.
    metric: the metric compared (the primary metric's name, "unsubscribe" or "complaint").
    difference: the observed difference of the two rates (a share: 0.01 is one point).
    low, high: the confidence sequence's bounds at these counts; valid at every look at once.
    confidence: the level of this one sequence, after the error was split between comparisons.
    method: the sequence's name.
    """

    arm: str
    against: str
    metric: str
    difference: float
    low: float
    high: float
    confidence: float
    method: str = NORMAL_MIXTURE


@dataclass(frozen=True)
class SampleRatio:
    """The sample-ratio-mismatch check: do the recipients split as the weights say?

    expected_shares: each arm's configured share (weight / sum of weights), in arm order.
    observed_shares: each arm's share of the recipients; empty when there are none.
    chi_square, p_value: Pearson's chi-square of the recipients against the expected counts,
        and its p-value (k - 1 degrees of freedom); None when there are no recipients.
    degrees_of_freedom: arms - 1.
    threshold: the p-value under which the split is a mismatch (0.001 by default).
    mismatch: p_value < threshold. A mismatch means recipients are lost or assigned unevenly
        somewhere (a bug, a filter on one arm): the arms are no longer comparable.
    reason: the warning in words when mismatch, else None.
    """

    expected_shares: tuple[float, ...]
    observed_shares: tuple[float, ...]
    chi_square: float | None
    p_value: float | None
    degrees_of_freedom: int
    threshold: float
    mismatch: bool
    reason: str | None


@dataclass(frozen=True)
class WinnerCall:
    """The winner of the primary metric, or why there is none yet.

    winner: the arm's name, or None.
    status: "winner"; or why not: "too_few" (an arm has fewer recipients than the minimum),
        "sample_ratio_mismatch" (the split is off: no call is trusted), "overlap" (no arm's
        rate is credibly above every other arm's yet), "single_arm" (nothing to compare).
    reason: one sentence for the report: "no winner yet: …", or what was called and on what.
    comparisons: every pair of arms (each against each, first listed first), always-valid;
        empty while too few.
    """

    winner: str | None
    status: WinnerStatus
    reason: str
    comparisons: tuple[Comparison, ...]


@dataclass(frozen=True)
class GuardrailBreach:
    """A variant whose unsubscribe or complaint rate is credibly above the control arm's.

    arm: the variant (the one to pause).
    metric: "unsubscribe" or "complaint".
    comparison: rate(arm) - rate(control) on that metric; its low bound is above 0.
    reason: the breach in words, for the report and the record of why the variant was paused.
    """

    arm: str
    metric: Guardrail
    comparison: Comparison
    reason: str


@dataclass(frozen=True)
class ArmReport:
    """One arm in an experiment report.

    name, weight, recipients: as given.
    primary, unsubscribe, complaint: its rates with Wilson intervals.
    versus_control: the primary metric against the control arm, always-valid; None for the
        control itself and while either arm has fewer recipients than the minimum.
    """

    name: str
    weight: float
    recipients: int
    primary: Rate
    unsubscribe: Rate
    complaint: Rate
    versus_control: Comparison | None


@dataclass(frozen=True)
class ExperimentReport:
    """Everything an experiment report shows.

    primary_metric: the name of the metric arms are compared on ("conversion" by default).
    control: the control arm's name.
    confidence: the family's confidence (0.95: at most 5 % chance of any false call, ever).
    minimum_per_arm: no call, nor guardrail breach, before every arm compared has this many recipients.
    arms: one report per arm, in the step's order.
    sample_ratio: the sample-ratio-mismatch check.
    winner: the winner call.
    guardrail_breaches: the variants to pause, with why; empty when none.
    """

    primary_metric: str
    control: str
    confidence: float
    minimum_per_arm: int
    arms: tuple[ArmReport, ...]
    sample_ratio: SampleRatio
    winner: WinnerCall
    guardrail_breaches: tuple[GuardrailBreach, ...]


def arms_of(step: SendStep | SplitStep) -> tuple[tuple[str, float], ...]:
    """(name, weight) of each arm of an experiment step, in the order the step lists them.

    A send step without variants is no experiment: it has no arms (an empty tuple).
    """
    if isinstance(step, SplitStep):
        return tuple((path.name, path.weight) for path in step.paths)
    return tuple((variant.name, variant.weight) for variant in step.variants or ())


def _percent(share: float) -> str:
    return f"{share * 100:.2f} %"


def _points(share: float) -> str:
    return f"{share * 100:+.2f}"


def rate(count: int, total: int, confidence: float = 0.95) -> Rate:
    """count / total with its Wilson score interval (None for all three when total is 0)."""
    if total == 0:
        if count:
            raise MeasureError(f"{count} of nobody is impossible")
        return Rate(count, total, None, None, None, confidence)
    low, high = wilson_interval(count, total, confidence)
    return Rate(count, total, count / total, low, high, confidence)


def sample_ratio_check(
    recipients: Sequence[int], weights: Sequence[float], *, threshold: float = SRM_THRESHOLD
) -> SampleRatio:
    """Pearson's chi-square of the recipients per arm against the weights (= scipy.stats.chisquare)."""
    if len(recipients) != len(weights) or len(weights) < 2:
        raise MeasureError("a sample-ratio check needs one weight per arm, and at least two arms")
    if any(w <= 0 or not math.isfinite(w) for w in weights) or any(n < 0 for n in recipients):
        raise MeasureError("weights must be positive and recipients not negative")
    expected_shares = tuple(w / sum(weights) for w in weights)
    total = sum(recipients)
    df = len(weights) - 1
    if total == 0:
        return SampleRatio(expected_shares, (), None, None, df, threshold, False, None)
    chi_square = sum((n - total * s) ** 2 / (total * s) for n, s in zip(recipients, expected_shares, strict=True))
    p_value = chi_square_survival(chi_square, df)
    observed = tuple(n / total for n in recipients)
    mismatch = p_value < threshold
    reason = None
    if mismatch:
        pairs = zip(observed, expected_shares, strict=True)
        split = ", ".join(f"{_percent(o)} (configured {_percent(e)})" for o, e in pairs)
        reason = (
            f"sample ratio mismatch: recipients split {split}; chi-square p = {p_value:.2g} < {threshold:g}. "
            "Recipients are lost or assigned unevenly somewhere, so the arms are not comparable."
        )
    return SampleRatio(expected_shares, observed, chi_square, p_value, df, threshold, mismatch, reason)


def compare(
    arm: Arm,
    against: Arm,
    metric: str,
    count: int,
    against_count: int,
    *,
    alpha: float,
    tuned_for: float = TUNED_FOR,
) -> Comparison:
    """The always-valid comparison of count / arm.recipients with against_count / against.recipients."""
    bounds = difference_sequence(
        count, arm.recipients, against_count, against.recipients, alpha=alpha, tuned_for=tuned_for
    )
    return Comparison(arm.name, against.name, metric, bounds.difference, bounds.low, bounds.high, 1.0 - alpha)


def _check_arms(arms: Sequence[Arm]) -> None:
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise MeasureError(f"arm names must be distinct: {names}")
    for a in arms:
        for what, count in (("successes", a.successes), ("unsubscribes", a.unsubscribes), ("complaints", a.complaints)):
            if count < 0 or count > a.recipients:
                raise MeasureError(f"arm {a.name!r}: {count} {what} among {a.recipients} recipients is impossible")


def _too_few(arms: Sequence[Arm], minimum: int) -> list[Arm]:
    return [a for a in arms if a.recipients < minimum]


def call_winner(
    arms: Sequence[Arm],
    *,
    metric: str = CONVERSION,
    minimum_per_arm: int = MINIMUM_PER_ARM,
    confidence: float = 0.95,
    sample_ratio: SampleRatio | None = None,
    tuned_for: float = TUNED_FOR,
    split_over: int | None = None,
) -> WinnerCall:
    """The arm whose primary-metric rate is credibly above every other arm's, or why none is.

    Every pair of arms gets an always-valid confidence sequence at alpha / (number of pairs);
    a winner's sequences against all the others lie above zero. The call is safe to look at
    after every day's data: over all looks, the chance of ever naming an arm that is not truly
    better stays within 1 - confidence.

    split_over: the number of comparisons alpha is split between, when more than the pairs of
    `arms` (automation passes the pairs of every arm of the step, paused ones too: a pause
    must not raise what each comparison may spend, or the chance of a false winner over the
    whole experiment could pass 1 - confidence). None: the pairs of `arms`.
    """
    _check_arms(arms)
    if len(arms) < 2:
        return WinnerCall(None, "single_arm", "no winner yet: the experiment has fewer than two arms", ())
    if sample_ratio is not None and sample_ratio.mismatch:
        return WinnerCall(None, "sample_ratio_mismatch", f"no winner yet: {sample_ratio.reason}", ())
    few = _too_few(arms, minimum_per_arm)
    if few:
        listed = ", ".join(f"{a.name!r} has {a.recipients}" for a in few)
        return WinnerCall(
            None,
            "too_few",
            f"no winner yet: too few recipients to call one ({listed}; each arm needs {minimum_per_arm})",
            (),
        )
    pairs = len(arms) * (len(arms) - 1) // 2
    if split_over is not None and split_over < pairs:
        raise MeasureError(f"the error cannot be split over {split_over} comparisons: {len(arms)} arms make {pairs}")
    alpha = (1.0 - confidence) / (split_over or pairs)
    comparisons = tuple(
        compare(arms[i], arms[j], metric, arms[i].successes, arms[j].successes, alpha=alpha, tuned_for=tuned_for)
        for i in range(len(arms))
        for j in range(i + 1, len(arms))
    )
    for candidate in arms:
        ahead = all(
            (c.low > 0 if c.arm == candidate.name else c.high < 0)
            for c in comparisons
            if candidate.name in (c.arm, c.against)
        )
        if ahead:
            return WinnerCall(
                candidate.name,
                "winner",
                f"{candidate.name!r} wins on {metric}: its rate "
                f"{_percent(candidate.successes / candidate.recipients)} is credibly above every other arm's "
                f"(always-valid, {confidence * 100:g} % over all looks)",
                comparisons,
            )
    best = max(arms, key=lambda a: a.successes / a.recipients)
    closest = min(
        (c for c in comparisons if best.name in (c.arm, c.against)),
        key=lambda c: c.low if c.arm == best.name else -c.high,
    )
    other = closest.against if closest.arm == best.name else closest.arm
    low, high = (closest.low, closest.high) if closest.arm == best.name else (-closest.high, -closest.low)
    return WinnerCall(
        None,
        "overlap",
        f"no winner yet: the arms overlap — the best so far, {best.name!r} "
        f"({_percent(best.successes / best.recipients)}), is between {_points(low)} and {_points(high)} points "
        f"against {other!r}, which still includes no difference",
        comparisons,
    )


def _control(arms: Sequence[Arm], control: str | None) -> Arm:
    if not arms:
        raise MeasureError("an experiment needs arms")
    if control is None:
        return arms[0]
    for a in arms:
        if a.name == control:
            return a
    raise MeasureError(f"control arm {control!r} is not one of {[a.name for a in arms]}")


def guardrail_breaches(
    arms: Sequence[Arm],
    *,
    control: str | None = None,
    minimum_per_arm: int = MINIMUM_PER_ARM,
    confidence: float = 0.95,
    tuned_for: float = TUNED_FOR,
) -> tuple[GuardrailBreach, ...]:
    """The variants whose unsubscribe or complaint rate is credibly above the control arm's.

    Each variant and guardrail is one always-valid comparison with the control at
    alpha / (2 × variants); a breach is one whose lower bound is above zero. A variant and the
    control both need `minimum_per_arm` recipients before either can be judged.
    """
    _check_arms(arms)
    base = _control(arms, control)
    variants = [a for a in arms if a.name != base.name]
    if not variants or base.recipients < minimum_per_arm:
        return ()
    alpha = (1.0 - confidence) / (2 * len(variants))
    breaches: list[GuardrailBreach] = []
    for variant in variants:
        if variant.recipients < minimum_per_arm:
            continue
        guardrails: tuple[tuple[Guardrail, int, int], ...] = (
            ("unsubscribe", variant.unsubscribes, base.unsubscribes),
            ("complaint", variant.complaints, base.complaints),
        )
        for metric, count, base_count in guardrails:
            comparison = compare(variant, base, metric, count, base_count, alpha=alpha, tuned_for=tuned_for)
            if comparison.low > 0:
                reason = (
                    f"{variant.name!r} {metric} rate {_percent(count / variant.recipients)} is credibly above "
                    f"control {base.name!r}'s {_percent(base_count / base.recipients)}: "
                    f"{_points(comparison.low)} to {_points(comparison.high)} points "
                    f"(always-valid, {confidence * 100:g} % over all looks and guardrails)"
                )
                breaches.append(GuardrailBreach(variant.name, metric, comparison, reason))
    return tuple(breaches)


def analyze_experiment(
    arms: Sequence[Arm],
    *,
    control: str | None = None,
    primary_metric: str = CONVERSION,
    minimum_per_arm: int = MINIMUM_PER_ARM,
    confidence: float = 0.95,
    srm_threshold: float = SRM_THRESHOLD,
    tuned_for: float = TUNED_FOR,
    sample_ratio_recipients: Sequence[int] | None = None,
) -> ExperimentReport:
    """The whole experiment report: rates per arm, the sample-ratio check, the winner, guardrails.

    sample_ratio_recipients: the recipients per arm (in arm order) the sample-ratio check
    tests against the weights, when not every arm's recipients were split by them: after a
    pause or a route, the ones assigned before it (docs/measurement.md). None: the arms'.
    """
    if not 0.0 < confidence < 1.0:
        raise MeasureError(f"confidence must be between 0 and 1, not {confidence}")
    if minimum_per_arm < 1:
        raise MeasureError(f"the minimum per arm must be at least 1, not {minimum_per_arm}")
    _check_arms(arms)
    base = _control(arms, control)
    if len(arms) >= 2:
        recipients = [a.recipients for a in arms] if sample_ratio_recipients is None else sample_ratio_recipients
        if len(recipients) != len(arms) or any(n > a.recipients for n, a in zip(recipients, arms, strict=False)):
            raise MeasureError(f"the sample-ratio check's recipients {list(recipients)} are not a part of each arm's")
        sample_ratio = sample_ratio_check(recipients, [a.weight for a in arms], threshold=srm_threshold)
    else:
        sample_ratio = SampleRatio((1.0,), (), None, None, 0, srm_threshold, False, None)
    winner = call_winner(
        arms,
        metric=primary_metric,
        minimum_per_arm=minimum_per_arm,
        confidence=confidence,
        sample_ratio=sample_ratio,
        tuned_for=tuned_for,
    )
    variants = len(arms) - 1
    reports = []
    for a in arms:
        versus: Comparison | None = None
        if a.name != base.name and min(a.recipients, base.recipients) >= minimum_per_arm:
            # One sequence per variant against the control, the error split between variants.
            alpha = (1.0 - confidence) / variants
            versus = compare(a, base, primary_metric, a.successes, base.successes, alpha=alpha, tuned_for=tuned_for)
        reports.append(
            ArmReport(
                a.name,
                a.weight,
                a.recipients,
                rate(a.successes, a.recipients, confidence),
                rate(a.unsubscribes, a.recipients, confidence),
                rate(a.complaints, a.recipients, confidence),
                versus,
            )
        )
    breaches = guardrail_breaches(
        arms, control=base.name, minimum_per_arm=minimum_per_arm, confidence=confidence, tuned_for=tuned_for
    )
    return ExperimentReport(
        primary_metric, base.name, confidence, minimum_per_arm, tuple(reports), sample_ratio, winner, breaches
    )
