"""The backfill planner: what a journey published today does for a person already known.

A journey's triggers and conditions otherwise see only what happens after it goes live.
At publish, the runtime walks the people already in the database and gives this module,
for each one, what the store holds of their past (`Past`); the decision is made here, as
a pure function of (state, journey, past, now), inside an ordinary engine turn, so its
effects (runs, messages, timers) are written like any other:

- inactivity: the person's latest activity (of the trigger's events; with none stored,
  the time the profile was created) arms the journey's lazy timer at last + window. Whoever
  is already quiet for the window enters now; the others when their window ends. A person
  the engine already tracks for this journey is left to it (a republish enters no one twice).
- date-relative: a date trait the person already has arms its timer now.
- history: the kept history of each event name the journey's conditions count (and its
  `occurrences`) is rebuilt from the stored events, so `entry.filter` and branches read the
  past: at most MAX_LOOKBACK_MS back and the HISTORY_CAP newest occurrences per name. So
  is its goal event's (catalog.goal_needs), with each occurrence's messageId: a late trigger
  event then finds the conversions decided before the publish (steps.goal_seen), and names
  them as a conversion decided on time does.
- milestones (count, sum): the running total starts from the stored events, so "the 10th
  order" counts orders placed before the publish; someone already past it does not enter.

Events the engine has not yet decided are not part of `Past`: they reach the journey
through the normal path once it is live.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nudgeflow.core import triggers
from nudgeflow.core.catalog import HISTORY_CAP, Catalog, JourneyVersion, goal_needs, history_needs
from nudgeflow.core.conditions import Scope, filters_match, get_path
from nudgeflow.core.turn import Turn, timer_key
from nudgeflow.model.journeys import DateRelativeTrigger, InactivityTrigger, MilestoneTrigger, duration_ms
from nudgeflow.model.numbers import as_number

DAY_MS = 86_400_000
MAX_LOOKBACK_MS = 365 * DAY_MS  # the furthest back a backfill reads stored events


@dataclass(frozen=True, slots=True)
class Needs:
    """What the store must read for a journey's backfill."""

    activity: bool  # the latest activity per person
    activity_names: tuple[str, ...] | None  # of these event names; None: any event
    names: frozenset[str]  # stored events of these names (history, milestones)
    lookback_ms: int  # how far back those are read


StoredEvent = tuple[int, dict[str, Any]] | tuple[int, dict[str, Any], str]


@dataclass(slots=True)
class Past:
    """What the store holds of one person from before the backfill reached them."""

    created_at_ms: int
    last_active_ms: int | None = None
    # name -> [(ts, properties[, message_id]), …] oldest first; the messageId is kept with a
    # goal event's occurrence (Catalog.history_ids), as the engine keeps it (engine._remember).
    events: Mapping[str, Sequence[StoredEvent]] = field(default_factory=dict)


def needs(catalog: Catalog, jv: JourneyVersion) -> Needs:
    trigger = jv.definition.trigger
    names: set[str] = set()
    lookback = 0
    for name, _keys, _window in (*history_needs(jv.definition), *goal_needs(jv.definition)):
        names.add(name)
        window = catalog.history_window.get(name)
        lookback = max(lookback, MAX_LOOKBACK_MS if window is None else min(window, MAX_LOOKBACK_MS))
    if isinstance(trigger, MilestoneTrigger) and (trigger.count is not None or trigger.sum is not None):
        names.add(trigger.event)
        lookback = MAX_LOOKBACK_MS
    if isinstance(trigger, InactivityTrigger):
        return Needs(True, tuple(trigger.events) if trigger.events is not None else None, frozenset(names), lookback)
    return Needs(False, None, frozenset(names), lookback)


def plan(turn: Turn, jv: JourneyVersion, past: Past) -> None:
    """Bring one person's state up to what the journey would know had it always been live."""
    _seed_history(turn, jv, past)
    trigger = jv.definition.trigger
    if isinstance(trigger, InactivityTrigger):
        _inactivity(turn, jv, trigger, past)
    elif isinstance(trigger, DateRelativeTrigger):
        if turn.state.traits.get(trigger.trait) is not None:
            triggers.arm_date(turn, jv, trigger)
    elif isinstance(trigger, MilestoneTrigger):
        _milestone(turn, jv, trigger, past)


_NAMES: dict[int, tuple[object, frozenset[str]]] = {}  # id(journey) -> (journey, history names)


def _history_names(journey: object) -> frozenset[str]:
    # Asked once per person; the journey definitions are few and never change.
    cached = _NAMES.get(id(journey))
    if cached is None or cached[0] is not journey:
        if len(_NAMES) > 1000:
            _NAMES.clear()
        kept = (*history_needs(journey), *goal_needs(journey))  # type: ignore[arg-type]
        cached = _NAMES[id(journey)] = (journey, frozenset(n for n, _k, _w in kept))
    return cached[1]


def _seed_history(turn: Turn, jv: JourneyVersion, past: Past) -> None:
    catalog = turn.catalog
    for name in _history_names(jv.definition):
        keys = catalog.history_keys.get(name, set())
        stored = past.events.get(name, [])
        entries: list[list[Any]] = [[item[0], {k: item[1][k] for k in keys if k in item[1]}] for item in stored]
        if name in catalog.history_ids:
            # A goal event's occurrence keeps its messageId, as engine._remember keeps it: a
            # conversion found at a late trigger event (steps.goal_seen) names it as one
            # decided on time does, and measure/ counts the goal event once.
            for entry, item in zip(entries, stored, strict=True):
                if len(item) > 2 and item[2]:
                    entry.append(item[2])
        # Every occurrence the engine kept came from an event it decided, and those are all
        # in the store: the stored list replaces the kept one rather than adding to it.
        window = catalog.history_window.get(name)
        if window is not None and entries:
            horizon = entries[-1][0] - window
            entries = [e for e in entries if e[0] > horizon]
        cap = catalog.history_cap.get(name, HISTORY_CAP)
        if len(entries) > cap:
            entries = entries[-cap:]
        if entries:
            turn.state.history[name] = entries
        else:
            turn.state.history.pop(name, None)


def _inactivity(turn: Turn, jv: JourneyVersion, trigger: InactivityTrigger, past: Past) -> None:
    last = past.last_active_ms if past.last_active_ms is not None else past.created_at_ms
    record = turn.state.activity.get(jv.journey_id)
    if record is not None:
        # Tracked since the journey went live (or by an earlier version): the engine's own
        # record stands; a stored event it has not counted can only make the person active later.
        if record.get("armed") and last > record.get("last", 0):
            record["last"] = last
        return
    turn.state.activity[jv.journey_id] = {"last": last, "armed": True}
    due = last + duration_ms(trigger.window)
    payload = {"kind": "inactivity", "journey": jv.journey_id}
    if due <= turn.now_ms:
        triggers.on_inactivity_timer(turn, payload)  # quiet for the window already: enters now
    else:
        turn.schedule(timer_key("idle", jv.journey_id), due, payload)


def _milestone(turn: Turn, jv: JourneyVersion, trigger: MilestoneTrigger, past: Past) -> None:
    scope = Scope(turn.state.traits, turn.now_ms, turn.state.history, group=turn.state.group_traits)
    matching = [item[1] for item in past.events.get(trigger.event, []) if filters_match(trigger.where, item[1], scope)]
    counters = turn.state.counters
    if trigger.count is not None:
        ckey = f"{jv.journey_id}:count"
        counters[ckey] = max(counters.get(ckey, 0), len(matching))
    elif trigger.sum is not None:
        total = 0.0
        for props in matching:
            found, value = get_path(props, trigger.sum.property)
            amount = as_number(value) if found else None
            if amount is not None and math.isfinite(total + amount):
                total += amount
        ckey = f"{jv.journey_id}:sum"
        counters[ckey] = max(counters.get(ckey, 0.0), total)
