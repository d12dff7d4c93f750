"""Delay experiments: a split whose paths differ only in how long they wait.

"Test delays (e.g. 30 min vs 2 h)": a journey says it by splitting, then waiting a different
time on each path before the same next step. Such a split is reported as a delay experiment,
each path named with its delay, so the report can set the conversion rate and time to convert
beside the delay that produced them. This module only recognizes the shape, from the journey
definition; the numbers per path come from the experiment's arms (experiments.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from nudgeflow.model.journeys import Journey, SplitStep, WaitStep, duration_ms


@dataclass(frozen=True)
class DelayPath:
    """One path of a delay experiment.

    name, weight: the split path's.
    waits: the durations it waits, as written ("30m", "2h"), in order; empty for no wait.
    delay_ms: their sum, in milliseconds.
    then: the step the path reaches after its waits (None: the run ends there).
    """

    name: str
    weight: float
    waits: tuple[str, ...]
    delay_ms: int
    then: str | None


@dataclass(frozen=True)
class DelayExperiment:
    """A split step whose paths differ only in waits.

    step: the split step's id.
    paths: one per split path, in the step's order.
    """

    step: str
    paths: tuple[DelayPath, ...]


def _follow_waits(journey: Journey, start: str | None) -> tuple[tuple[str, ...], str | None] | None:
    """The duration waits from `start` on, and the first step that is not one; None for other waits."""
    waits: list[str] = []
    seen: set[str] = set()
    step_id = start
    while step_id is not None:
        step = journey.steps.get(step_id)
        if not isinstance(step, WaitStep):
            break
        if step.duration is None or step_id in seen:
            return None  # a wait until a time or a date is no fixed delay
        seen.add(step_id)
        waits.append(step.duration)
        step_id = step.next
    return tuple(waits), step_id


def _same_step(journey: Journey, first: str | None, other: str | None) -> bool:
    if first == other:
        return True
    if first is None or other is None or first not in journey.steps or other not in journey.steps:
        return False
    # Two copies of one step (same content, same next step) are the same step for the experiment.
    return journey.steps[first].model_dump() == journey.steps[other].model_dump()


def delay_experiment(journey: Journey, step_id: str) -> DelayExperiment | None:
    """The delay experiment a split step is, or None when it is something else.

    It is one when every path waits only fixed durations (`wait` steps with `duration`, or no
    wait at all) and then reaches the same step — the same id, or identical copies — and at
    least two paths wait different times in total.
    """
    step = journey.steps.get(step_id)
    if not isinstance(step, SplitStep):
        return None
    paths: list[DelayPath] = []
    for path in step.paths:
        followed = _follow_waits(journey, path.next)
        if followed is None:
            return None
        waits, then = followed
        paths.append(DelayPath(path.name, path.weight, waits, sum(duration_ms(w) for w in waits), then))
    if not all(_same_step(journey, paths[0].then, p.then) for p in paths[1:]):
        return None
    if len({p.delay_ms for p in paths}) < 2:
        return None
    return DelayExperiment(step_id, tuple(paths))
