"""Experiment decisions, as the core honours them: which arm a run reaching an experiment step takes.

Every send step with `variants` and every `split` step is an experiment; its arms are the
variants or the paths, drawn by weight from a hash of the person, journey and step (so the
same person always draws the same point). The runtime's evaluator (runtime/experiments.py)
may record decisions about a step: arms paused (a guardrail breach) and a winner routed to
(`on_winner: route_to_winner`). They reach the core as plain data in the catalog, keyed by
(journey, version, step), loaded by the engine at its next batch like the send policies.

Given the decisions, the draw stays deterministic: a person whose hash point falls on an open
arm keeps it, and the points of a paused arm are spread over the open arms by weight (their
weights renormalized, `choose`). A routed winner that is not paused takes every run;
when every arm is paused the control (the first arm) takes them all, so a run always has
somewhere to go. Deciding only affects runs that reach the step afterwards: a run already
assigned there keeps its arm (steps.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar


class WeightedArm(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> float: ...


A = TypeVar("A", bound=WeightedArm)


@dataclass(frozen=True, slots=True)
class StepDecisions:
    """What has been decided about one experiment step (the active decisions only).

    paused: arms that take no new runs.
    winner: the arm every new run takes, or None.
    """

    paused: frozenset[str] = frozenset()
    winner: str | None = None


# (journey id, version, step id) -> its decisions; a step without decisions is absent.
Decisions = Mapping[tuple[str, int, str], StepDecisions]
NO_DECISIONS: Decisions = {}


def _locate(options: Sequence[A], u: float) -> tuple[A, float]:
    """The option a point u in [0, 1) falls on, the options laid end to end by weight, and
    where in that option's stretch it falls (0 at its start, towards 1 at its end)."""
    total = sum(o.weight for o in options)
    point = u * total
    for option in options:
        if point < option.weight:
            return option, max(0.0, point / option.weight)
        point -= option.weight
    return options[-1], 0.0  # u * total rounded up to the very end


def weighted(options: Sequence[A], u: float) -> A:
    """The option a point u in [0, 1) falls on, the options laid end to end by weight."""
    return _locate(options, u)[0]


def choose(options: Sequence[A], u: float, decided: StepDecisions | None) -> A:
    """The arm for hash point u, honouring the step's decisions (none: the plain weighted draw).

    A point on an open arm keeps that arm; a point on a paused arm is spread over the open
    arms by where in the paused arm's stretch it fell. So only the paused arm's people move,
    and the open arms share them by weight: each open arm's share is its weight over the open
    arms' weights, exactly, and the draw stays a function of the person alone.
    """
    if decided is None:
        return weighted(options, u)
    if decided.winner is not None and decided.winner not in decided.paused:
        for option in options:
            if option.name == decided.winner:
                return option
    # A winner that is no longer an arm cannot be honoured (only a definition edited in
    # place could do that): the draw falls back to the open arms.
    open_arms = [o for o in options if o.name not in decided.paused]
    if not open_arms:
        return options[0]
    arm, within = _locate(options, u)
    if arm.name not in decided.paused:
        return arm
    return weighted(open_arms, within)
