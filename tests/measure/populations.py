"""Synthetic populations with known truth, for the many-seed tests of measure/.

Each seed is one population: people arrive, are assigned an arm (or treated / held out) at
random with the configured shares, and convert with their arm's true probability. numpy
draws the counts (a binomial count is exactly "each of n people converts with probability p"),
so a seed costs microseconds and hundreds of them run in CI.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from nudgeflow.measure.experiments import Arm

SEEDS = range(1000, 1600)  # the fixed set for experiments looked at daily: 600 seeds
# Coverage is a hit rate: 2000 seeds give it a standard error of 0.5 points, so an honest 95 %
# interval lands inside 93-97 % by a wide margin, and a wrong one does not.
COVERAGE_SEEDS = range(1000, 3000)


@dataclass(frozen=True)
class DailyArm:
    """One arm's truth: its name, configured weight and true rates."""

    name: str
    weight: float
    conversion: float
    unsubscribe: float = 0.002
    complaint: float = 0.0005


def daily_looks(seed: int, arms: Sequence[DailyArm], people_per_day: int, days: int) -> Iterator[tuple[Arm, ...]]:
    """The cumulative counts of each arm at the end of each day, as a report would see them."""
    rng = np.random.default_rng(seed)
    weights = np.array([a.weight for a in arms]) / sum(a.weight for a in arms)
    totals = np.zeros((len(arms), 4), dtype=np.int64)  # recipients, successes, unsubscribes, complaints
    for _ in range(days):
        arrived = rng.multinomial(people_per_day, weights)
        for i, arm in enumerate(arms):
            n = int(arrived[i])
            totals[i] += (
                n,
                rng.binomial(n, arm.conversion),
                rng.binomial(n, arm.unsubscribe),
                rng.binomial(n, arm.complaint),
            )
        yield tuple(
            Arm(arm.name, arm.weight, int(t[0]), int(t[1]), int(t[2]), int(t[3]))
            for arm, t in zip(arms, totals, strict=True)
        )


def holdout_counts(seed: int, p1: float, p0: float, people: int, holdout: float) -> tuple[int, int, int, int]:
    """(treated conversions, treated, held-out conversions, held out) of one population."""
    rng = np.random.default_rng(seed)
    held_out = int(rng.binomial(people, holdout))
    treated = people - held_out
    return int(rng.binomial(treated, p1)), treated, int(rng.binomial(held_out, p0)), held_out
