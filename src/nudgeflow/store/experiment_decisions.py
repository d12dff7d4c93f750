"""Experiment decisions: arms paused and winners routed to, per workspace × journey × version × step.

The runtime's evaluator (runtime/experiments.py) records them; the engine loads the active
ones with its catalog (store/journeys.load_catalog), and core/experiments.py honours them. A
decision is never deleted: clearing one (`nudgeflow experiments resume`, the admin API) stamps
when and with what note, and the row stays as the record of what was decided, when and why.

A cleared decision is an override by a person: the evaluator does not make the same decision
(the same action on the same arm) again on that version of the journey.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, insert, select, update

from nudgeflow.core.experiments import StepDecisions
from nudgeflow.errors import StoreError
from nudgeflow.store.schema import experiment_decisions, journeys

Action = Literal["paused", "routed"]
PAUSED: Action = "paused"
ROUTED: Action = "routed"


class DecisionError(StoreError, LookupError):
    """Nothing to resume: no such journey, or no decision on the step; the message says which."""


@dataclass(frozen=True)
class Decision:
    """One row: what was decided about an experiment step, and whether it still holds."""

    id: int
    workspace_id: str
    journey_id: str
    version: int
    step: str
    arm: str
    action: str
    reason: str
    decided_at_ms: int
    cleared_at_ms: int | None
    cleared_note: str | None

    @property
    def active(self) -> bool:
        return self.cleared_at_ms is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "journey_id": self.journey_id,
            "version": self.version,
            "step": self.step,
            "arm": self.arm,
            "action": self.action,
            "reason": self.reason,
            "decided_at_ms": self.decided_at_ms,
            "cleared_at_ms": self.cleared_at_ms,
            "cleared_note": self.cleared_note,
        }


def _decision(row: Any) -> Decision:
    return Decision(
        row.id,
        row.workspace_id,
        row.journey_id,
        row.version,
        row.step,
        row.arm,
        row.action,
        row.reason,
        row.decided_at_ms,
        row.cleared_at_ms,
        row.cleared_note,
    )


def record(
    conn: Connection,
    workspace_id: str,
    journey_id: str,
    version: int,
    step: str,
    arm: str,
    action: Action,
    reason: str,
    now_ms: int,
) -> Decision:
    """Append a decision; it takes effect at the engine's next batch (the fingerprint moves)."""
    if action not in (PAUSED, ROUTED):
        raise ValueError(f"an experiment decision is {PAUSED!r} or {ROUTED!r}, not {action!r}")
    values = {
        "workspace_id": workspace_id,
        "journey_id": journey_id,
        "version": version,
        "step": step,
        "arm": arm,
        "action": action,
        "reason": reason,
        "decided_at_ms": now_ms,
    }
    new_id = conn.execute(insert(experiment_decisions).values(**values)).inserted_primary_key
    assert new_id is not None
    return Decision(new_id[0], workspace_id, journey_id, version, step, arm, action, reason, now_ms, None, None)


def listed(
    conn: Connection,
    workspace_id: str,
    journey_id: str | None = None,
    *,
    active_only: bool = False,
) -> list[Decision]:
    """The workspace's decisions (of one journey), oldest first."""
    d = experiment_decisions.c
    stmt = select(experiment_decisions).where(d.workspace_id == workspace_id)
    if journey_id is not None:
        stmt = stmt.where(d.journey_id == journey_id)
    if active_only:
        stmt = stmt.where(d.cleared_at_ms.is_(None))
    return [_decision(row) for row in conn.execute(stmt.order_by(d.id))]


def active_for(
    conn: Connection, workspace_id: str, versions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int, str], StepDecisions]:
    """The active decisions of these (journey, version) pairs, as the core takes them."""
    wanted = set(versions)
    if not wanted:
        return {}
    paused: dict[tuple[str, int, str], set[str]] = {}
    winners: dict[tuple[str, int, str], str] = {}
    for decision in listed(conn, workspace_id, active_only=True):
        if (decision.journey_id, decision.version) not in wanted:
            continue
        key = (decision.journey_id, decision.version, decision.step)
        if decision.action == PAUSED:
            paused.setdefault(key, set()).add(decision.arm)
        else:
            winners[key] = decision.arm  # oldest first: a later route (after a clear) wins
    return {
        key: StepDecisions(frozenset(paused.get(key, ())), winners.get(key))
        for key in sorted(set(paused) | set(winners))
    }


def clear(
    conn: Connection,
    workspace_id: str,
    journey_id: str,
    step: str,
    now_ms: int,
    note: str,
    *,
    version: int | None = None,
    arm: str | None = None,
) -> list[Decision]:
    """Clear the step's active decisions (of one arm, when given; of every version, unless one
    is given), keeping their rows; the cleared ones, as they are now."""
    d = experiment_decisions.c
    where = [
        d.workspace_id == workspace_id,
        d.journey_id == journey_id,
        d.step == step,
        d.cleared_at_ms.is_(None),
    ]
    if version is not None:
        where.append(d.version == version)
    if arm is not None:
        where.append(d.arm == arm)
    ids = [row.id for row in conn.execute(select(d.id).where(*where))]
    if not ids:
        return []
    conn.execute(update(experiment_decisions).where(d.id.in_(ids)).values(cleared_at_ms=now_ms, cleared_note=note))
    rows = conn.execute(select(experiment_decisions).where(d.id.in_(ids)).order_by(d.id))
    return [_decision(row) for row in rows]


def resume(
    conn: Connection,
    workspace_id: str,
    journey_id: str,
    step: str,
    now_ms: int,
    note: str,
    *,
    version: int | None = None,
    arm: str | None = None,
) -> list[Decision]:
    """`clear`, for a person (the CLI, the admin API): DecisionError when the journey does not
    exist or the step (arm, version) never had a decision; [] when its decisions were all
    cleared before."""
    exists = conn.execute(
        select(journeys.c.id).where(journeys.c.workspace_id == workspace_id, journeys.c.id == journey_id)
    ).first()
    if exists is None:
        raise DecisionError(f"no journey {journey_id!r} in this workspace")
    ever = [
        d
        for d in listed(conn, workspace_id, journey_id)
        if d.step == step and (version is None or d.version == version) and (arm is None or d.arm == arm)
    ]
    if not ever:
        which = f"step {step!r}" + (f", arm {arm!r}" if arm else "") + (f", version {version}" if version else "")
        raise DecisionError(f"journey {journey_id!r} has no experiment decision on {which}")
    return clear(conn, workspace_id, journey_id, step, now_ms, note, version=version, arm=arm)
