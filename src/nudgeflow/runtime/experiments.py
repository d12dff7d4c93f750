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

What the counts are: a send step's variants are judged on their message rows: recipients
(runs sent the step's message), unsubscribes, complaints, and, as the winner's metric,
conversions attributed (last touch) to the variant's message. A `split` has no message of
its own, so its paths have no counts yet and are not automated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection

from nudgeflow.core.catalog import JourneyVersion
from nudgeflow.measure.automation import decide
from nudgeflow.measure.experiments import MINIMUM_PER_ARM, Arm, arms_of
from nudgeflow.model.journeys import SendStep, SplitStep
from nudgeflow.store import experiment_decisions as decisions
from nudgeflow.store import rollups
from nudgeflow.store.journeys import live_journeys

log = logging.getLogger("nudgeflow.runtime")

DEFAULT_LOOK_SECONDS = 3600.0

ArmReader = Callable[[Connection, str, JourneyVersion, str, "SendStep | SplitStep"], "list[Arm] | None"]


def message_arms(
    conn: Connection, workspace_id: str, jv: JourneyVersion, step_id: str, step: SendStep | SplitStep
) -> list[Arm] | None:
    """A send step's variants as arms, from their message rows; None for a split (no counts)."""
    if isinstance(step, SplitStep):
        return None
    counts = rollups.variant_message_counts(conn, workspace_id, jv.journey_id, jv.version, step_id)
    out = []
    for name, weight in arms_of(step):
        row = counts.get(name, {})
        recipients = row.get("step_recipients", 0)
        out.append(
            Arm(
                name,
                weight,
                recipients,
                # Attributed conversions are counted per goal event, recipients per run: bounded
                # by the recipients so that a run converting twice cannot make a rate above 1.
                min(row.get("attributed_conversions", 0), recipients),
                min(row.get("unsubscribes", 0), recipients),
                min(row.get("complaints", 0), recipients),
            )
        )
    return out


@dataclass
class Look:
    """What one look did: the experiments it judged and the decisions it recorded."""

    judged: int = 0
    recorded: list[decisions.Decision] = field(default_factory=list)


def automates(step: object) -> bool:
    """Whether a step is an experiment whose settings automate something."""
    if isinstance(step, SendStep) and not step.variants:
        return False
    if not isinstance(step, (SendStep, SplitStep)):
        return False
    return step.on_winner == "route_to_winner" or step.guardrails == "pause"


def look_at_experiments(
    conn: Connection,
    now_ms: int,
    *,
    read_arms: ArmReader = message_arms,
    minimum_per_arm: int = MINIMUM_PER_ARM,
) -> Look:
    """Judge every live experiment that automates something; record new decisions."""
    look = Look()
    by_workspace: dict[str, list[decisions.Decision]] = {}
    for workspace_id, jv in live_journeys(conn):
        for step_id, step in jv.definition.steps.items():
            if not automates(step):
                continue
            assert isinstance(step, (SendStep, SplitStep))
            arms = read_arms(conn, workspace_id, jv, step_id, step)
            if not arms:
                continue
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
            new = decide(
                arms,
                on_winner=step.on_winner,
                guardrails=step.guardrails,
                paused={d.arm for d in active if d.action == decisions.PAUSED},
                routed=routes[-1] if routes else None,
                overridden={(d.action, d.arm) for d in mine if not d.active},
                minimum_per_arm=minimum_per_arm,
            )
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
