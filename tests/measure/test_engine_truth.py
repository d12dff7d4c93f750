"""Known truth through the engine (issue 15, item 14): synthetic populations whose true
conversion rates are known, driven through the production core on a virtual clock (the
simulator: no HTTP, no database), and reported by `simulate --report`'s builder
(runtime/simulation_rollups.py) and measure/report.py.

Each seed is one population: people sign up a minute apart and enter a journey with a 30 %
holdout. Holdout assignment is the core's deterministic hash of the person, so the test knows
each person's arm before feeding anything, and draws (numpy, vectorized) whether they convert:
with probability P1 if they were sent the welcome message, P0 if held out, at a random time
within the goal window. Some who did not convert order after the window closes, which must
not count. The counts the engine produces are the ones checked: an engine that lost holdout
conversions, assigned arms other than by its hash, or counted a late order would fail here,
where the statistics tests (test_coverage.py) feed counts straight to the statistics.

- every seed: the report's counts equal the truth exactly, revenue to 1e-6;
- over 600 seeds: the 95 % interval of the absolute lift covers P1 - P0 in 93-97 % of them;
- a few seeds: the interval and p-value match statsmodels within 1e-6.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from nudgeflow.core.effects import Effect, RunChanged
from nudgeflow.core.engine import Engine
from nudgeflow.core.inputs import EventInput
from nudgeflow.core.state import ProfileState
from nudgeflow.core.turn import unit_hash
from nudgeflow.measure import report
from nudgeflow.model.journeys import Journey
from nudgeflow.runtime.simulation import Simulation
from nudgeflow.runtime.simulation_rollups import build, read
from nudgeflow.store.rollups import VALUES
from tests.measure.populations import SEEDS

pytestmark = pytest.mark.truth  # many seeds against known truth: CI runs them (not skipped)

P1, P0 = 0.15, 0.10
PEOPLE = 300
HOLDOUT = 0.3
LATE_ORDERS = 0.05  # of those who did not convert: an order after the window, counted nowhere
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
T0 = 1_772_442_000_000  # 2026-03-02T09:00:00Z
WINDOW = 7 * DAY

WELCOME = Journey.model_validate(
    {
        "id": "welcome",
        "name": "Welcome",
        "trigger": {"type": "event", "event": "Signed Up"},
        "holdout": HOLDOUT,
        "goal": {"event": "Order Completed", "within": "7d", "revenue": "revenue"},
        "steps": {"hello": {"type": "send", "channel": "email", "template": "welcome-1"}},
    }
)


@dataclass(frozen=True)
class Truth:
    """What the test made happen: people per arm, conversions per arm and their revenue."""

    treated: int
    held_out: int
    conversions: int
    held_out_conversions: int
    revenue: float
    held_out_revenue: float


def population(seed: int) -> tuple[list[tuple[int, dict[str, Any]]], Truth]:
    """One seed's events, in time order, and the truth they hold."""
    rng = np.random.default_rng(seed)
    users = [f"s{seed}-p{i}" for i in range(PEOPLE)]
    # The core's own assignment (core/steps.py): known before anything is fed.
    held = np.array([unit_hash("holdout", WELCOME.id, user) < HOLDOUT for user in users])
    signed_up = T0 + np.arange(PEOPLE, dtype=np.int64) * MINUTE
    converts = rng.random(PEOPLE) < np.where(held, P0, P1)
    # Within the window (entry .. entry + 7 d, inclusive): from a second to the last minute.
    ordered = signed_up + rng.integers(1_000, WINDOW - MINUTE, PEOPLE)
    late = ~converts & (rng.random(PEOPLE) < LATE_ORDERS)
    late_at = signed_up + WINDOW + rng.integers(MINUTE, DAY, PEOPLE)
    revenue = np.round(rng.lognormal(math.log(40.0), 0.6, PEOPLE), 2)
    events: list[tuple[int, dict[str, Any]]] = []
    for i, user in enumerate(users):
        events.append((int(signed_up[i]), {"type": "track", "userId": user, "event": "Signed Up"}))
        if converts[i] or late[i]:
            properties = {"revenue": float(revenue[i])}
            order = {"type": "track", "userId": user, "event": "Order Completed", "properties": properties}
            events.append((int(ordered[i] if converts[i] else late_at[i]), order))
    events.sort(key=lambda e: e[0])
    for n, (_at, message) in enumerate(events):
        message["messageId"] = f"m{n}"
    truth = Truth(
        treated=int((~held).sum()),
        held_out=int(held.sum()),
        conversions=int((converts & ~held).sum()),
        held_out_conversions=int((converts & held).sum()),
        revenue=float(revenue[converts & ~held].sum()),
        held_out_revenue=float(revenue[converts & held].sum()),
    )
    return events, truth


def simulate(events: list[tuple[int, dict[str, Any]]], engine: Any = None) -> dict[str, Any]:
    """The events through the core on a virtual clock, then the journey's simulated report."""
    sim = Simulation([WELCOME], engine=engine)
    for at, message in events:
        sim.feed_checked(message, at)
    sim.advance_to(events[-1][0] + DAY)
    # simulate --report's journey report (simulated_report), without the overview it adds.
    rollups = build(sim)
    counters, latencies = read(rollups, journey_id=WELCOME.id)
    return report.journey_report(WELCOME.id, counters, latencies, (), VALUES, not_known=rollups.not_known)


def mismatches(found: dict[str, Any], truth: Truth) -> list[str]:
    """Where the report's counts differ from the truth (empty: they agree)."""
    totals = found["totals"]
    expected = {
        "entered": truth.treated,
        "held_out": truth.held_out,
        "recipients": truth.treated,
        "sent": truth.treated,
        "conversions": truth.conversions,
        "held_out_conversions": truth.held_out_conversions,
    }
    wrong = [f"{name}: {totals[name]} != {value}" for name, value in expected.items() if totals[name] != value]
    for name, value in (("revenue", truth.revenue), ("held_out_revenue", truth.held_out_revenue)):
        if abs(totals[name] - value) > 1e-6:
            wrong.append(f"{name}: {totals[name]} != {value}")
    conversion = found["lift"]["conversion"]
    people = (conversion["treated_people"], conversion["treated_conversions"])
    held = (conversion["held_out_people"], conversion["held_out_conversions"])
    if people != (truth.treated, truth.conversions) or held != (truth.held_out, truth.held_out_conversions):
        wrong.append(f"lift counts: {people} {held}")
    return wrong


def test_engine_counts_equal_the_truth_and_intervals_cover_it() -> None:
    started = time.perf_counter()
    covered = 0
    for seed in SEEDS:
        events, truth = population(seed)
        found = simulate(events)
        assert not mismatches(found, truth), (seed, mismatches(found, truth))
        absolute = found["lift"]["conversion"]["absolute_lift"]
        covered += absolute["low"] <= P1 - P0 <= absolute["high"]
    rate = covered / len(SEEDS)
    assert 0.93 <= rate <= 0.97, f"Newcomb covered the true difference in {rate:.1%} of {len(SEEDS)} seeds"
    # Not a limit on a shared machine, a record: `pytest -rP` shows it.
    print(f"{len(SEEDS)} populations of {PEOPLE} through the core in {time.perf_counter() - started:.1f} s")


def test_engine_produced_counts_match_statsmodels() -> None:
    for seed in SEEDS[:5]:
        events, _truth = population(seed)
        conversion = simulate(events)["lift"]["conversion"]
        x1, n1 = conversion["treated_conversions"], conversion["treated_people"]
        x0, n0 = conversion["held_out_conversions"], conversion["held_out_people"]
        low, high = confint_proportions_2indep(x1, n1, x0, n0, method="newcomb", compare="diff")
        _, p_value = proportions_ztest([x1, x0], [n1, n0])
        absolute = conversion["absolute_lift"]
        assert abs(absolute["low"] - low) <= 1e-6 and abs(absolute["high"] - high) <= 1e-6, (seed, absolute, low, high)
        assert abs(conversion["p_value"] - p_value) <= 1e-6, (seed, conversion["p_value"], p_value)


class LosingHeldOutConversions(Engine):
    """The real core, with a bug planted: a held-out run's conversion never reaches its row."""

    def on_event(self, state: ProfileState, event: EventInput, now_ms: int) -> list[Effect]:
        effects = super().on_event(state, event, now_ms)
        return [
            RunChanged({**e.run, "converted_at_ms": None})
            if isinstance(e, RunChanged) and e.run.get("holdout") and e.run.get("converted_at_ms") is not None
            else e
            for e in effects
        ]


def test_the_check_catches_an_engine_that_loses_held_out_conversions() -> None:
    events, truth = population(SEEDS[0])
    assert truth.held_out_conversions > 0
    sim_engine = LosingHeldOutConversions(Simulation([WELCOME]).catalog)
    wrong = mismatches(simulate(events, engine=sim_engine), truth)
    assert any(w.startswith("held_out_conversions: 0 != ") for w in wrong), wrong


def test_populations_hold_orders_after_the_window() -> None:
    # What makes "counts equal the truth" check the goal window too: orders the engine must
    # not count, in every population.
    for seed in SEEDS[:20]:
        events, truth = population(seed)
        orders = sum(message["event"] == "Order Completed" for _at, message in events)
        assert orders > truth.conversions + truth.held_out_conversions
