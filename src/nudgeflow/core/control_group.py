"""The workspace's global control group, decided in the pure core (policies' `control_group`).

A set share of people gets no marketing message from any journey, so that what the whole
program of journeys changes (conversions, revenue) can be measured against them, as a journey's
own holdout does for one journey. docs/policies.md is written from this.

Who is in it
    unit_hash("global_control", salt, epoch, person) < share, where the person is the stable
    identity holdouts and splits hash (userId, else the first anonymousId) and the epoch is the
    calendar period that contains the run's entry time (its event time): "" for `reset: never`,
    "2026" yearly, "2026Q1" quarterly, "2026-03" monthly, in the policies' time zone (UTC when it
    names none). Nothing random and nothing of the store: the simulator and production put the
    same person in the same group, and a new period (or a new `salt`) draws a new group, as
    independent of the last one as two hashes are.

When it is decided
    Once per run, when it enters, and kept on the run (`Run.control`, and `Run.control_cohort`:
    the draw it was decided in, None for a journey that excludes the group): a run is in the
    group or not for its whole life, so a run that crosses a reset, or a change of the policies, keeps its
    side and the comparison stays clean. Runs that entered before the group was set are not in it.
    A journey with `control_group: exclude` has no run in the group.

What it does to a run
    Nothing to its walk: a run in the group takes the same steps (waits, branches, exits, the goal
    window) as a treated one and converts over the same time. Each of its marketing send steps
    is withheld (core/steps.py): a MessageWithheld, status dropped, reason `global_control`,
    before any send policy looks at it (so it takes no place in caps or collision windows).
    Transactional send steps (`marketing: false`) are sent. A run that is also in its journey's
    own holdout is a holdout run first: it is sent nothing, not even transactional messages.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from nudgeflow.core import timecalc
from nudgeflow.core.turn import unit_hash
from nudgeflow.model.policies import Policies
from nudgeflow.model.reasons import GLOBAL_CONTROL

REASON = GLOBAL_CONTROL  # the withheld message's reason


@dataclass(frozen=True, slots=True)
class ControlPlan:
    """A workspace's control group, made ready once per catalog."""

    share: float
    reset: str  # never | yearly | quarterly | monthly
    salt: str
    zone: ZoneInfo  # where a period starts: the policies' time zone


def plan_for(policies: Policies) -> ControlPlan | None:
    """The plan, or None when nobody can be in the group (none set, or a share of 0)."""
    group = policies.control_group
    if group is None or group.share <= 0:
        return None
    zone = timecalc.named_zone(policies.timezone) if policies.timezone else timecalc.UTC_ZONE
    return ControlPlan(group.share, group.reset, group.salt, zone)


def epoch(plan: ControlPlan, at_ms: int) -> str:
    """The name of the reset period that contains `at_ms`."""
    if plan.reset == "never":
        return ""
    day = timecalc.local_moment(at_ms, plan.zone).date()
    if plan.reset == "yearly":
        return f"{day.year}"
    if plan.reset == "quarterly":
        return f"{day.year}Q{(day.month - 1) // 3 + 1}"
    return f"{day.year}-{day.month:02d}"


def cohort(plan: ControlPlan, at_ms: int) -> str:
    """The draw of the group a run entering at `at_ms` belongs to: its period, and a short hash
    of the salt when one is set (a new salt draws a new group within the period). The program's
    lift counts a person once per cohort (store/rollups.py, docs/measurement.md)."""
    name = epoch(plan, at_ms)
    if not plan.salt:
        return name
    return f"{name}~{hashlib.blake2b(plan.salt.encode(), digest_size=4).hexdigest()}"


def member(plan: ControlPlan, person: str, at_ms: int) -> bool:
    """Whether `person` (the stable assignment key) is in the group at `at_ms`."""
    return unit_hash(REASON, plan.salt, epoch(plan, at_ms), person) < plan.share
