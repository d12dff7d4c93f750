"""Send-time optimization: each person's best local hour, and when a step's message goes out.

What is counted. The engine adds one to the person's 24-bucket histogram (`ProfileState.hours`,
index = local hour in their `timezone` trait, UTC without one, at the event's time) for every
open, click and app open that reaches it (COUNTED), except those flagged `machine: true` or
`bot: true` (a mail privacy proxy's fetch, a link scanner's click: not a person). When the total passes
HOURS_CAP every bucket is halved (rounded down), so old habits fade and the document stays a
few dozen bytes.

How the best hour is chosen (empirical Bayes). The workspace's pattern is a Dirichlet prior:
its shape is the workspace's own histogram of those events, its strength (in pseudo-events)
is estimated from how much people differ from that shape (`workspace_prior`, a method-of-
moments estimate for a Dirichlet-multinomial). A person's score for hour h is the posterior
mean (n_h + s·w_h) / (n + s): with little history the workspace's pattern dominates, with a
lot their own does. Without a prior (no runtime supplied one, too few events) the shape is
uniform, so a person with no history gets the step's fallback hour.

Arms, recorded on the message (`context.send_time.arm`) so that a report can split on them:
- `optimized`: the best-scoring hour that starts within the window (ties: the one nearest the
  fallback hour, then the earliest);
- `explore`: a share of people (the step's `explore`, deterministic by person, journey and step)
  gets a uniformly random hour of the window instead: optimized vs explore is the feature's lift
  against a time chosen without it;
- `fallback`: nothing known of the person nor of the workspace: the fallback hour.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nudgeflow.core import timecalc
from nudgeflow.core.turn import unit_hash
from nudgeflow.model import event_names
from nudgeflow.model.engagement_signals import is_flagged
from nudgeflow.model.journeys import SendTime, duration_ms

HOURS = 24
HOURS_CAP = 1000  # events in a person's histogram before it is halved
_HOUR_MS = 3_600_000

# The events that say when a person pays attention: opens, clicks, app opens (Segment's mobile
# lifecycle "Application Opened"; there is no session event in Segment's spec, and page views
# are left out: they say when someone browses, not when they read their messages).
COUNTED: frozenset[str] = frozenset(
    {
        event_names.EMAIL_OPENED,
        event_names.EMAIL_LINK_CLICKED,
        event_names.PUSH_OPENED,
        event_names.PUSH_CLICKED,
        event_names.PUSH_NOTIFICATION_TAPPED,
        event_names.APPLICATION_OPENED,
    }
)

# Without a workspace histogram, or with too few people to measure how they differ.
DEFAULT_STRENGTH = 5.0
MIN_STRENGTH, MAX_STRENGTH = 1.0, 100.0
MIN_EVENTS = 50  # fewer events in the workspace: no pattern (the fallback hour decides)
MIN_PEOPLE = 20  # fewer people with 2+ events: DEFAULT_STRENGTH rather than an estimate

OPTIMIZED, EXPLORE, FALLBACK = "optimized", "explore", "fallback"


@dataclass(frozen=True, slots=True)
class Prior:
    """The workspace's pattern: `shape` sums to 1 over the 24 local hours, `strength` is in
    pseudo-events; `events` and `people` say what it was estimated from."""

    shape: tuple[float, ...]
    strength: float
    events: int = 0
    people: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "shape": [round(w, 6) for w in self.shape],
            "strength": round(self.strength, 3),
            "events": self.events,
            "people": self.people,
        }


UNIFORM = Prior(tuple(1.0 / HOURS for _ in range(HOURS)), DEFAULT_STRENGTH)


def counts(event_name: str | None, properties: dict[str, Any]) -> bool:
    """Whether this event goes into the person's histogram."""
    # A machine's open or click (machine / bot: Apple's MPP prefetch, a link scanner) is no
    # person's attention (model/engagement_signals.py).
    return event_name in COUNTED and not is_flagged(properties)


def record(hours: list[int], timestamp_ms: int, traits: dict[str, Any]) -> list[int]:
    """Add one event at `timestamp_ms` (local hour in the person's time zone); returns the
    histogram (a new one when `hours` was empty)."""
    if len(hours) != HOURS:
        hours = [0] * HOURS
    hour = timecalc.local_moment(timestamp_ms, timecalc.zone_of(traits)).hour
    hours[hour] += 1
    if sum(hours) > HOURS_CAP:
        hours[:] = [n // 2 for n in hours]
    return hours


def merged(ours: Sequence[int], theirs: Sequence[int]) -> list[int]:
    """Two people's histograms as one (a profile merge): the counts add up, then the cap."""
    if len(theirs) != HOURS:
        return list(ours)
    if len(ours) != HOURS:
        return list(theirs)
    hours = [a + b for a, b in zip(ours, theirs, strict=True)]
    while sum(hours) > HOURS_CAP:
        hours = [n // 2 for n in hours]
    return hours


def workspace_prior(histograms: Iterable[Sequence[int]]) -> Prior | None:
    """The Dirichlet prior from people's histograms (each 24 counts); None with too few events.

    Shape: the pooled histogram with half a pseudo-event per hour (no hour is impossible).
    Strength s: for a Dirichlet-multinomial, a person's chi-square distance from the shape,
    C_i = sum_h (x_ih - n_i w_h)^2 / (n_i w_h), has expectation (K-1)(1 + (n_i-1)r) with
    r = 1/(1+s); solving the sum over people with 2+ events for r gives s = 1/r - 1, clipped
    to [MIN_STRENGTH, MAX_STRENGTH] (people who all look alike: a strong prior; people who
    each keep their own hours: a weak one).
    """
    people = [list(h) for h in histograms if len(h) == HOURS and sum(h) > 0]
    pooled = [sum(h[k] for h in people) for k in range(HOURS)]
    total = sum(pooled)
    if total < MIN_EVENTS:
        return None
    shape = tuple((pooled[k] + 0.5) / (total + 0.5 * HOURS) for k in range(HOURS))
    several = [h for h in people if sum(h) >= 2]
    if len(several) < MIN_PEOPLE:
        return Prior(shape, DEFAULT_STRENGTH, total, len(people))
    chi = 0.0
    extra = 0
    for h in several:
        n = sum(h)
        chi += sum((h[k] - n * shape[k]) ** 2 / (n * shape[k]) for k in range(HOURS))
        extra += n - 1
    rho = (chi - (HOURS - 1) * len(several)) / ((HOURS - 1) * extra)
    strength = MAX_STRENGTH if rho <= 0 else 1.0 / rho - 1.0
    return Prior(shape, min(MAX_STRENGTH, max(MIN_STRENGTH, strength)), total, len(people))


def scores(hours: Sequence[int], prior: Prior | None) -> list[float]:
    """The posterior mean share of the person's attention in each local hour."""
    p = prior or UNIFORM
    own = list(hours) if len(hours) == HOURS else [0] * HOURS
    n = sum(own)
    return [(own[k] + p.strength * p.shape[k]) / (n + p.strength) for k in range(HOURS)]


@dataclass(frozen=True, slots=True)
class Choice:
    """When the message goes, and why: `at_ms`, its local `hour`, the arm and what it rests on
    (`basis`: person, workspace or none)."""

    at_ms: int
    hour: int
    arm: str
    basis: str

    def record(self) -> dict[str, Any]:
        return {"arm": self.arm, "hour": self.hour, "at": self.at_ms, "basis": self.basis}


def candidates(now_ms: int, within_ms: int, traits: dict[str, Any]) -> list[tuple[int, int]]:
    """(instant, local hour) of now and of every local hour's start in (now, now + within]."""
    tz = timecalc.zone_of(traits)
    local = timecalc.local_moment(now_ms, tz)
    out = [(now_ms, local.hour)]
    into_hour = (local.minute * 60 + local.second) * 1000 + local.microsecond // 1000
    t = now_ms - into_hour + _HOUR_MS
    while t <= now_ms + within_ms:
        out.append((t, timecalc.local_moment(t, tz).hour))
        t += _HOUR_MS
    return out


def choose(
    spec: SendTime,
    hours: Sequence[int],
    prior: Prior | None,
    traits: dict[str, Any],
    now_ms: int,
    assignment: tuple[str, str, str],
) -> Choice:
    """The instant a step with `spec` sends at, decided at `now_ms`; `assignment` is (person's
    assignment key, journey, step): the exploration draw hashes it."""
    options = candidates(now_ms, duration_ms(spec.within), traits)
    fallback = timecalc.local_time(spec.fallback).hour
    if spec.explore > 0 and unit_hash("send_time", *assignment) < spec.explore:
        distinct = sorted({hour for _, hour in options})
        hour = distinct[int(unit_hash("send_time_hour", *assignment) * len(distinct))]
        at = next(t for t, h in options if h == hour)
        return Choice(at, hour, EXPLORE, "none")
    known = len(hours) == HOURS and sum(hours) > 0
    if not known and prior is None:
        at, hour = _best(options, [(0.0, -_distance(h, fallback)) for h in range(HOURS)])
        return Choice(at, hour, FALLBACK, "none")
    score = scores(hours, prior)
    # Equal scores go to the hour nearest the fallback.
    at, hour = _best(options, [(score[h], -_distance(h, fallback)) for h in range(HOURS)])
    return Choice(at, hour, OPTIMIZED, "person" if known else "workspace")


def _best(options: list[tuple[int, int]], score: list[tuple[float, int]]) -> tuple[int, int]:
    """The earliest option with the highest score of its hour."""
    best = options[0]
    for option in options[1:]:
        if score[option[1]] > score[best[1]]:
            best = option
    return best


def _distance(a: int, b: int) -> int:
    d = abs(a - b) % HOURS
    return min(d, HOURS - d)
