"""What `nudgeflow simulate` reports when it is given send policies or segments.

Plain data from a finished `Simulation` (runtime/replay.py prints it as tables or JSON):

- `message_lines`: every message a journey wanted, with its status: `planned` (it would be
  sent, at its final time; `deferred_from` when a policy first moved it), `dropped` (with the
  policy's reason, at the time it was dropped) or `deferred` (still held when the replay
  ended, at the time it would be decided again). The simulator runs the core, not dispatch:
  consent and address suppression are decided when a message is sent, so no message here is
  `suppressed`.
- `pressure`: how many messages each person would get per channel per ISO week, and what the
  policies held back: cap hits by rule, collisions by pair of journeys, quiet hours by channel.
- `segment_report`: each segment's members when the replay ended, and its entries and exits.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from nudgeflow.core.clock import from_ms
from nudgeflow.core.effects import DEFERRED, DROPPED
from nudgeflow.model.iso_time import iso
from nudgeflow.runtime.simulation import PlannedMessage, Simulation, WithheldMessage

__all__ = ["PLANNED", "WEEK_BASIS", "message_lines", "percentile", "pressure", "segment_report"]

PLANNED = "planned"
WEEK_BASIS = (
    "messages one person would get on one channel in one ISO week (Monday 00:00 UTC to the next), "
    "over the person-weeks with at least one message on that channel"
)
_CAP, _COLLISION, _QUIET = "frequency_cap:", "collision:", "quiet_hours"


def percentile(ordered: list[int], p: float) -> int:
    """The nearest-rank percentile of sorted values: the smallest value with at least p% of
    the values at or below it (p50 of 1, 2, 3, 4 is 2; p90 of ten values is the ninth)."""
    if not ordered:
        return 0
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _anonymous_id(profile: str, user_id: str | None) -> str | None:
    # The simulator keys an anonymous person by their anonymousId (linked to a user or not).
    return None if user_id == profile else profile


def _final_outcomes(sim: Simulation) -> dict[str, WithheldMessage]:
    """Per message key, its last withholding decision, for the keys never sent."""
    sent = {m.key for m in sim.messages}
    last: dict[str, WithheldMessage] = {}
    for held in sim.withheld:
        if held.key not in sent:
            last[held.key] = held
    return last


def message_lines(sim: Simulation) -> list[dict[str, Any]]:
    """Every message wanted, one JSON object each, by time (planned ones first in a tie).

    A planned message's object is the one `simulate --json` always wrote, plus `status`; a
    dropped or still-deferred one has the same keys, plus `status`, `reason` and, when a
    policy deferred it first, `deferred_from`."""
    first_deferred: dict[str, int] = {}
    for held in sim.withheld:
        if held.status == DEFERRED:
            first_deferred.setdefault(held.key, held.at_ms)
    timed: list[tuple[int, int, dict[str, Any]]] = []
    for message in sim.messages:
        timed.append((message.at_ms, 0, {**message.as_json(), "status": PLANNED}))
    for held in _final_outcomes(sim).values():
        at = held.until_ms if held.status == DEFERRED and held.until_ms is not None else held.at_ms
        line: dict[str, Any] = {
            "at": iso(at),
            "user_id": held.user_id,
            "anonymous_id": _anonymous_id(held.profile, held.user_id),
            "journey": held.journey,
            "version": held.version,
            "step": held.step,
            "channel": held.channel,
            "template": held.template,
            "variant": held.variant,
            "run_id": held.run_id,
            "status": held.status,
            "reason": held.reason,
        }
        if held.key in first_deferred:
            line["deferred_from"] = iso(first_deferred[held.key])
        timed.append((at, 1, line))
    timed.sort(key=lambda item: (item[0], item[1]))
    return [line for _at, _kind, line in timed]


def _week(at_ms: int) -> tuple[int, int]:
    year, week, _day = from_ms(at_ms).isocalendar()
    return year, week


def _per_person_week(messages: list[PlannedMessage]) -> dict[str, dict[str, int]]:
    cells: dict[str, Counter[tuple[str, tuple[int, int]]]] = defaultdict(Counter)
    for message in messages:
        cells[message.channel][(message.profile, _week(message.at_ms))] += 1
    out: dict[str, dict[str, int]] = {}
    for channel in sorted(cells):
        counts = sorted(cells[channel].values())
        out[channel] = {
            "people": len({profile for profile, _week in cells[channel]}),
            "person_weeks": len(counts),
            "messages": sum(counts),
            "p50": percentile(counts, 50),
            "p90": percentile(counts, 90),
            "max": counts[-1],
        }
    return out


def pressure(sim: Simulation) -> dict[str, Any]:
    """Messages per person per channel per ISO week (p50, p90, max) and what the policies
    held back. A message counts once per reason that held it, whatever the number of times
    that reason deferred it: as `dropped` when it ended dropped with that reason, else as
    `deferred` (it was sent later, or was still held when the replay ended)."""
    outcome: dict[tuple[str, str], WithheldMessage] = {}
    for held in sim.withheld:
        known = outcome.get((held.key, held.reason))
        if known is None or known.status != DROPPED:
            outcome[(held.key, held.reason)] = held
    caps: dict[str, Counter[str]] = defaultdict(Counter)
    collisions: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    quiet: dict[str, Counter[str]] = defaultdict(Counter)
    for (_key, reason), held in outcome.items():
        if reason.startswith(_CAP):
            caps[reason.removeprefix(_CAP)][held.status] += 1
        elif reason.startswith(_COLLISION):
            collisions[(reason.removeprefix(_COLLISION), held.journey)][held.status] += 1
        elif reason == _QUIET:
            quiet[held.channel][held.status] += 1

    def both(counts: Counter[str]) -> dict[str, int]:
        return {DEFERRED: counts[DEFERRED], DROPPED: counts[DROPPED]}

    return {
        "per_person_week": {"basis": WEEK_BASIS, "channels": _per_person_week(sim.messages)},
        "cap_hits": {rule: both(caps[rule]) for rule in sorted(caps)},
        "collisions": [
            {"winner": winner, "loser": loser, **both(collisions[(winner, loser)])}
            for winner, loser in sorted(collisions)
        ],
        "quiet_hours": {channel: both(quiet[channel]) for channel in sorted(quiet)},
    }


def segment_report(sim: Simulation) -> dict[str, dict[str, int]]:
    """Per segment (in the order given): members when the replay ended, entries and exits."""
    entered: Counter[str] = Counter()
    exited: Counter[str] = Counter()
    for move in sim.segment_moves:
        (entered if move.entered else exited)[move.segment] += 1
    return {
        segment_id: {"members": size, "entered": entered[segment_id], "exited": exited[segment_id]}
        for segment_id, size in sim.segment_sizes().items()
    }
