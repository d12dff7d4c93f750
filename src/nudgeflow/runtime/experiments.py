"""The experiment evaluator: looks at every live experiment now and then and records what to automate.

Every send step with `variants` and every `split` step of a live journey's live version is an
experiment. At each look the evaluator reads each one's counts per arm from the report rollups
(never the event log), and measure/automation.py says what to decide: pause a variant that
breaches a guardrail (`guardrails: pause`, the default), route every new run to a called
winner (`on_winner: route_to_winner`). Decisions are recorded with their reasons
(store/experiment_decisions.py) and reach the engine at its next batch (the catalog's
fingerprint moves).

The always-valid tests make looks safe at any frequency; the embedded runtime looks once an
hour by default (`NUDGEFLOW_EXPERIMENT_LOOK_SECONDS`), on its injected clock. Steps whose
settings automate nothing (`keep_all` and `report`) are not read at all.

What the counts are: the arms' run counters (store/rollups.experiment_arms), the very counts
the journey report's experiments section shows: runs assigned each arm (the denominator),
those that did the step's primary metric (conversion by default), unsubscribed, complained.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from nudgeflow.measure.automation import decide
from nudgeflow.measure.errors import MeasureError
from nudgeflow.measure.experiments import CONVERSION, MINIMUM_PER_ARM, Arm, arms_of
from nudgeflow.measure.report import PRIMARY_COUNTER
from nudgeflow.model.journeys import SendStep, SplitStep
from nudgeflow.store import experiment_decisions as decisions
from nudgeflow.store import rollups
from nudgeflow.store.journeys import live_journeys

log = logging.getLogger("nudgeflow.runtime")

ArmCounts = Mapping[tuple[int, str, str], Mapping[str, Any]]  # (version, step, arm) -> run counters
NO_RUNS: Mapping[str, Any] = {"runs": 0, "conversions": 0, "opens": 0, "clicks": 0, "unsubscribes": 0, "complaints": 0}


def arm_counts(conn: Connection, workspace_id: str, journey_id: str) -> ArmCounts:
    """Every experiment arm's run counters of the journey, over all its days."""
    return {(r["version"], r["step"], r["arm"]): r for r in rollups.experiment_arms(conn, workspace_id, journey_id)}


def arms(counts: ArmCounts, version: int, step_id: str, step: SendStep | SplitStep) -> list[Arm]:
    """The step's arms as measure/ takes them, the control first; an arm without a row has
    had no run yet."""
    counter = PRIMARY_COUNTER[step.primary_metric or CONVERSION]
    out = []
    for name, weight in arms_of(step):
        c = counts.get((version, step_id, name), NO_RUNS)
        out.append(Arm(name, weight, c["runs"], c[counter], c["unsubscribes"], c["complaints"]))
    return out


@dataclass
class Look:
    """What one look did: the experiments it judged and the decisions it recorded."""

    judged: int = 0
    recorded: list[decisions.Decision] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # experiments whose counts could not be judged, and why


def automates(step: object) -> bool:
    """Whether a step is an experiment whose settings automate something."""
    if isinstance(step, SendStep) and not step.variants:
        return False
    if not isinstance(step, (SendStep, SplitStep)):
        return False
    return step.on_winner == "route_to_winner" or step.guardrails == "pause"


def look_at_experiments(conn: Connection, now_ms: int, *, minimum_per_arm: int = MINIMUM_PER_ARM) -> Look:
    """Judge every live experiment that automates something; record new decisions."""
    look = Look()
    by_workspace: dict[str, list[decisions.Decision]] = {}
    for workspace_id, jv in live_journeys(conn):
        counts: ArmCounts | None = None  # read once per journey, when a step needs them
        for step_id, step in jv.definition.steps.items():
            if not automates(step):
                continue
            assert isinstance(step, (SendStep, SplitStep))
            if counts is None:
                counts = arm_counts(conn, workspace_id, jv.journey_id)
            step_arms = arms(counts, jv.version, step_id, step)
            look.judged += 1
            if workspace_id not in by_workspace:
                by_workspace[workspace_id] = decisions.listed(conn, workspace_id)
            mine = [
                d
                for d in by_workspace[workspace_id]
                if (d.journey_id, d.version, d.step) == (jv.journey_id, jv.version, step_id)
            ]
            active = [d for d in mine if d.active]
            routes = [d.arm for d in active if d.action == decisions.ROUTED]
            try:
                new = decide(
                    step_arms,
                    on_winner=step.on_winner,
                    guardrails=step.guardrails,
                    paused={d.arm for d in active if d.action == decisions.PAUSED},
                    routed=routes[-1] if routes else None,
                    overridden={(d.action, d.arm) for d in mine if not d.active},
                    metric=step.primary_metric or CONVERSION,
                    minimum_per_arm=step.minimum_per_arm or minimum_per_arm,
                )
            except MeasureError as exc:
                # Counts that cannot be (more unsubscribes than runs): judge nothing on them,
                # and let the other experiments be judged; the log says which and why.
                look.refused.append(f"{workspace_id}/{jv.journey_id}/{jv.version}/{step_id}: {exc}")
                log.warning(
                    "experiment not judged: its counts are impossible",
                    extra={"workspace_id": workspace_id, "journey_id": jv.journey_id, "step": step_id},
                )
                continue
            for d in new:
                recorded = decisions.record(
                    conn, workspace_id, jv.journey_id, jv.version, step_id, d.arm, d.action, d.reason, now_ms
                )
                look.recorded.append(recorded)
                log.info(
                    "experiment decision",
                    extra={
                        "workspace_id": workspace_id,
                        "journey_id": jv.journey_id,
                        "version": jv.version,
                        "step": step_id,
                        "arm": d.arm,
                        "action": d.action,
                    },
                )
    return look


class ExperimentLooks:
    """When the embedded runtime looks next: at once, then every `interval_ms` of its clock
    (0: never). The time is kept in memory: a restart looks at once, which is safe."""

    def __init__(self, interval_ms: float) -> None:
        self.interval_ms = interval_ms
        self.next_ms: int | None = None

    def due(self, now_ms: int) -> bool:
        return self.interval_ms > 0 and (self.next_ms is None or now_ms >= self.next_ms)

    def done(self, now_ms: int) -> None:
        self.next_ms = now_ms + int(self.interval_ms)
