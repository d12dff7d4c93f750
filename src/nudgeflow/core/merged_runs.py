"""Runs that a profile merge brought together, settled by the journeys' entry rules.

Two profiles of one person (an anonymous visitor and their account, joined by `identify` or
`alias`) may each have entered a journey that lets a person have one run at a time. Once
merged, the person would go on with both runs: two welcome series. The merge itself
(runtime/merges.merge_state) cannot tell, as it does not know the journeys; it marks the state
`merged`, and the engine's next call for the person comes here first.

For each journey with two runs or more in progress (active or held), sorted by entry time
(then id), the earliest stays; a later one ends, status `exited` and reason `merged`, when it
could not have started had the two profiles been one person all along: always for
`one_active` and `once`, and for `once_per_period` when it entered within `period` of the run
that stays. `always` keeps every run. An ended run's timer is cancelled and its deferred
messages dropped (reason run_ended, at the end of the call: sending.finish), and it converts
no more: the run that stays converts for the person, so one order is not counted twice.

Entry time, not the order of the merges, decides: folding A into B or B into A, or several
visitors into one account in any order, leaves the same run going.
"""

from __future__ import annotations

from nudgeflow.core.state import ACTIVE, EXITED, HELD, Run
from nudgeflow.core.steps import end
from nudgeflow.core.turn import Turn
from nudgeflow.model.journeys import duration_ms

MERGED = "merged"  # the exit reason of a run ended here


def settle(turn: Turn) -> None:
    """End the runs in progress that the person, as one, could not have had (see above)."""
    state = turn.state
    state.merged = False
    in_progress: dict[str, list[Run]] = {}
    for run in state.runs.values():
        if run.status in (ACTIVE, HELD):
            in_progress.setdefault(run.journey_id, []).append(run)
    for runs in in_progress.values():
        if len(runs) > 1:
            _settle_journey(turn, sorted(runs, key=lambda r: (r.entered_at, r.id)))


def _settle_journey(turn: Turn, runs: list[Run]) -> None:
    kept = runs[0]
    journey = turn.catalog.version(kept.journey_id, kept.version)
    if journey is None:
        return  # a version no longer known: nothing says what its rules were
    mode = journey.entry.reentry
    if mode == "always":
        return
    period = duration_ms(journey.entry.period or "0s") if mode == "once_per_period" else None
    for run in runs[1:]:
        if period is not None and run.entered_at >= kept.entered_at + period:
            kept = run  # a period later: it could have started, and counts from here
            continue
        end(turn, run, EXITED, MERGED)
        run.goal_until = None
