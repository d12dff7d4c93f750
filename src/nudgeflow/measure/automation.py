"""Experiment automation: from an experiment's counts and what was decided so far, what to decide now.

A step's settings say what may be automated (model/journeys.py): `guardrails: pause` pauses a
variant whose unsubscribe or complaint rate is credibly above the control's (the first arm);
`on_winner: route_to_winner` sends every new run to the winner once one is called. Both rest
on the always-valid tests of experiments.py, so the evaluator may look as often as it likes
without raising the chance of a false pause or a false winner above 1 - confidence.

Rules, in order:
- Guardrails first: a breaching variant not yet paused is paused (its reasons in words).
- A winner is called among the arms still open (paused arms take no new runs, so they are no
  longer in the running) and is routed to when none is yet, or when the one routed to was
  paused since. The error stays split over the pairs of all the step's arms, as before any
  pause: a pause never raises what each comparison may spend. While no arm is paused the
  call includes the sample-ratio check against the weights; once one is, the split no
  longer follows the weights by design, so that check is left out.
- A decision a person cleared (`overridden`) is not made again: clearing is an override.

Pure arithmetic over counts: the runtime (runtime/experiments.py) reads the counts and records
what this returns.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from nudgeflow.measure.experiments import (
    CONVERSION,
    MINIMUM_PER_ARM,
    Arm,
    WinnerCall,
    call_winner,
    guardrail_breaches,
    sample_ratio_check,
)

Action = Literal["paused", "routed"]
PAUSED: Action = "paused"
ROUTED: Action = "routed"


@dataclass(frozen=True)
class Decided:
    """A decision to record: `arm` paused, or `arm` routed to (every new run takes it), and why."""

    arm: str
    action: Action
    reason: str


def decide(
    arms: Sequence[Arm],
    *,
    on_winner: str,
    guardrails: str,
    paused: Collection[str] = (),
    routed: str | None = None,
    overridden: Collection[tuple[str, str]] = (),
    metric: str = CONVERSION,
    minimum_per_arm: int = MINIMUM_PER_ARM,
    confidence: float = 0.95,
) -> tuple[Decided, ...]:
    """The new decisions for one experiment step (none, most looks).

    arms: every arm's counts, the control (first arm) first, paused arms included.
    on_winner, guardrails: the step's settings.
    paused, routed: its active decisions.
    overridden: (action, arm) of decisions made before and cleared by a person.
    """
    decided: list[Decided] = []
    now_paused = set(paused)
    if guardrails == "pause" and len(arms) >= 2:
        reasons: dict[str, list[str]] = {}
        for breach in guardrail_breaches(
            arms, control=arms[0].name, minimum_per_arm=minimum_per_arm, confidence=confidence
        ):
            if breach.arm not in now_paused and (PAUSED, breach.arm) not in overridden:
                reasons.setdefault(breach.arm, []).append(breach.reason)
        for arm, why in reasons.items():
            decided.append(Decided(arm, PAUSED, "; ".join(why)))
            now_paused.add(arm)
    if on_winner == "route_to_winner" and (routed is None or routed in now_paused):
        call = winner_among_open(
            arms, now_paused, metric=metric, minimum_per_arm=minimum_per_arm, confidence=confidence
        )
        if call is not None and call.winner is not None and (ROUTED, call.winner) not in overridden:
            decided.append(Decided(call.winner, ROUTED, call.reason))
    return tuple(decided)


def winner_among_open(
    arms: Sequence[Arm],
    paused: Collection[str],
    *,
    metric: str = CONVERSION,
    minimum_per_arm: int = MINIMUM_PER_ARM,
    confidence: float = 0.95,
) -> WinnerCall | None:
    """The winner call among the arms not paused; None when fewer than two are open."""
    open_arms = [a for a in arms if a.name not in paused]
    if len(open_arms) < 2:
        return None
    sample_ratio = None
    if not paused:
        sample_ratio = sample_ratio_check([a.recipients for a in arms], [a.weight for a in arms])
    # The error stays split over every pair of the step's arms, paused ones too: split over the
    # open pairs alone, each comparison would spend more after a pause than before it, and the
    # chance of a false winner across the pause could pass 1 - confidence.
    return call_winner(
        open_arms,
        metric=metric,
        minimum_per_arm=minimum_per_arm,
        confidence=confidence,
        sample_ratio=sample_ratio,
        split_over=len(arms) * (len(arms) - 1) // 2,
    )
