"""Known truth: over a fixed set of seeds of synthetic populations with true conversion rates
p1 (treated) and p0 (held out), the 95 % intervals cover the truth 93-97 % of the time
(issue 15, item 14). With 2000 seeds a 95 % interval's hit rate has a standard error of 0.5
points, so a broken interval (a plain Wald on small counts, a one-sided slip, a wrong z)
lands outside the band, and an honest one lands well inside it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nudgeflow.measure.statistics import RevenueSums, conversion_lift, revenue_lift
from tests.measure.populations import COVERAGE_SEEDS, holdout_counts

pytestmark = pytest.mark.truth  # many seeds against known truth: CI runs them (not skipped)

# (p1, p0, people, holdout share): a typical journey, a low-rate one with a 10 % holdout,
# a high-rate small one, and a sparse one where the holdout sees a few dozen conversions.
SCENARIOS = [
    (0.12, 0.10, 4000, 0.5),
    (0.035, 0.025, 20_000, 0.1),
    (0.55, 0.45, 300, 0.3),
    (0.03, 0.02, 2000, 0.2),
]
# A holdout of 100 people converting at 1 %: about one held-out conversion per population.
SPARSE = (0.02, 0.01, 1000, 0.1)


def _hit_rates(p1: float, p0: float, people: int, holdout: float) -> tuple[float, float, float]:
    """How often Newcomb's interval, the ratio interval and a Wald interval hold the truth."""
    absolute = relative = wald = 0
    counted_relative = 0
    for seed in COVERAGE_SEEDS:
        x1, n1, x0, n0 = holdout_counts(seed, p1, p0, people, holdout)
        lift = conversion_lift(x1, n1, x0, n0)
        assert lift.absolute_lift is not None
        absolute += lift.absolute_lift.low <= p1 - p0 <= lift.absolute_lift.high
        if lift.relative_lift is not None:
            counted_relative += 1
            relative += lift.relative_lift.low <= p1 / p0 - 1 <= lift.relative_lift.high
        # The textbook Wald interval, for contrast: estimate ± 1.96 standard errors.
        r1, r0 = x1 / n1, x0 / n0
        half = 1.959964 * math.sqrt(r1 * (1 - r1) / n1 + r0 * (1 - r0) / n0)
        wald += r1 - r0 - half <= p1 - p0 <= r1 - r0 + half
    seeds = len(COVERAGE_SEEDS)
    return absolute / seeds, relative / max(1, counted_relative), wald / seeds


@pytest.mark.parametrize(("p1", "p0", "people", "holdout"), SCENARIOS)
def test_lift_intervals_cover_the_true_difference(p1: float, p0: float, people: int, holdout: float) -> None:
    absolute, relative, _ = _hit_rates(p1, p0, people, holdout)
    assert 0.93 <= absolute <= 0.97, f"Newcomb covered the true difference in {absolute:.1%} of seeds"
    assert 0.93 <= relative <= 0.97, f"the ratio interval covered the true ratio in {relative:.1%} of seeds"


def test_newcomb_holds_where_a_wald_interval_fails() -> None:
    # The check has teeth: with about one held-out conversion, the Wald interval covers the
    # truth far less than 95 % of the time; Newcomb's still does. (The relative lift's interval
    # is not held to the band here: with a handful of held-out conversions it is a rough guide,
    # and the result's notes say so.)
    absolute, _, wald = _hit_rates(*SPARSE)
    assert 0.93 <= absolute <= 0.97, f"Newcomb covered the true difference in {absolute:.1%} of seeds"
    assert wald < 0.90, f"Wald covered the true difference in {wald:.1%} of seeds"


def test_welch_interval_covers_the_true_revenue_lift() -> None:
    # Revenue per person: 5 % (treated) and 4 % (held out) buy, spending lognormal amounts with
    # means 62 and 60, so the true per-person lift is 0.05 × 62 - 0.04 × 60 = 0.70.
    sigma = 0.8
    true_lift = 0.05 * 62.0 - 0.04 * 60.0
    hits = 0
    for seed in COVERAGE_SEEDS:
        rng = np.random.default_rng(seed)
        sums = []
        for n, buy, mean in ((3000, 0.05, 62.0), (3000, 0.04, 60.0)):
            spend = np.where(rng.random(n) < buy, rng.lognormal(math.log(mean) - sigma**2 / 2, sigma, n), 0.0)
            sums.append(RevenueSums(n, float(spend.sum()), float((spend**2).sum())))
        lift = revenue_lift(sums[0], sums[1])
        assert lift.per_person_lift is not None
        hits += lift.per_person_lift.low <= true_lift <= lift.per_person_lift.high
    covered = hits / len(COVERAGE_SEEDS)
    assert 0.93 <= covered <= 0.97, f"Welch covered the true revenue lift in {covered:.1%} of seeds"
