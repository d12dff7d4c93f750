"""The journeys the engine runs: live versions indexed by what can trigger them.

Finding the journeys an event can start must not scan every journey, so triggers are
indexed by signal: `event:<name>` for triggers on a named event, `any` for triggers that
look at every event (inactivity on any activity, location without an event name),
`identify` for trait-driven triggers (attribute change, date-relative). Segment entry and
exit will index as `segment:<id>` the same way. Exit events and goals concern only the runs
a person has open, so they are checked on the profile's state, not looked up here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable

from nudgeflow.model.journeys import (
    AttributeChangeTrigger,
    DateRelativeTrigger,
    EventNotFollowedTrigger,
    EventTrigger,
    InactivityTrigger,
    Journey,
    LocationTrigger,
    MilestoneTrigger,
)

LIVE, PAUSED, ARCHIVED, DRAFT = "live", "paused", "archived", "draft"


@dataclass(frozen=True, slots=True)
class JourneyVersion:
    journey_id: str
    version: int
    definition: Journey


VersionLoader = Callable[[str, int], "Journey | None"]


def trigger_signals(journey: Journey) -> list[str]:
    """The index keys under which a journey's trigger listens."""
    trigger = journey.trigger
    if isinstance(trigger, (EventTrigger, MilestoneTrigger)):
        return [f"event:{trigger.event}"]
    if isinstance(trigger, EventNotFollowedTrigger):
        return [f"event:{trigger.event}", f"event:{trigger.not_followed_by.event}"]
    if isinstance(trigger, InactivityTrigger):
        return [f"event:{name}" for name in trigger.events] if trigger.events else ["any"]
    if isinstance(trigger, LocationTrigger):
        return [f"event:{trigger.event}"] if trigger.event else ["any"]
    if isinstance(trigger, (AttributeChangeTrigger, DateRelativeTrigger)):
        return ["identify"]
    raise TypeError(f"no index signal for trigger {type(trigger).__name__}")


class Catalog:
    """Live journeys by id, their trigger index, and older versions on demand."""

    def __init__(
        self,
        live: Iterable[JourneyVersion] = (),
        statuses: dict[str, str] | None = None,
        load_version: VersionLoader | None = None,
    ) -> None:
        self.live: dict[str, JourneyVersion] = {jv.journey_id: jv for jv in live}
        # Every journey the workspace knows, live or not: a run of a paused or archived
        # journey must learn that when its timer fires.
        self.statuses: dict[str, str] = dict(statuses or {})
        for journey_id in self.live:
            self.statuses.setdefault(journey_id, LIVE)
        self._load_version = load_version
        self._versions: dict[tuple[str, int], Journey | None] = {
            (jv.journey_id, jv.version): jv.definition for jv in self.live.values()
        }
        self.triggers: dict[str, list[JourneyVersion]] = defaultdict(list)
        # Higher priority first, so that when one event starts several journeys the
        # order of entries (and of their first messages) follows priority.
        for jv in sorted(self.live.values(), key=lambda jv: (-jv.definition.priority, jv.journey_id)):
            if self.statuses.get(jv.journey_id) != LIVE:
                continue
            for signal in trigger_signals(jv.definition):
                self.triggers[signal].append(jv)
        # Events whose recent occurrences the core keeps per person (for `occurrences` and
        # event-count conditions): which top-level properties, and for how long.
        self.history_keys: dict[str, set[str]] = {}
        self.history_window: dict[str, int | None] = {}
        for jv in self.live.values():
            for name, keys, window in _history_needs(jv.definition):
                self.history_keys.setdefault(name, set()).update(keys)
                if name in self.history_window:
                    old = self.history_window[name]
                    self.history_window[name] = None if old is None or window is None else max(old, window)
                else:
                    self.history_window[name] = window
        self.triggers.default_factory = None  # type: ignore[assignment]
        # candidates() merges index lists for every event: merged once per name, kept here.
        self._candidates: dict[tuple[str, bool], list[JourneyVersion]] = {}

    def status(self, journey_id: str) -> str:
        return self.statuses.get(journey_id, ARCHIVED)

    def version(self, journey_id: str, version: int) -> Journey | None:
        key = (journey_id, version)
        if key not in self._versions:
            self._versions[key] = self._load_version(journey_id, version) if self._load_version else None
        return self._versions[key]

    def candidates(self, event_name: str, is_identify: bool) -> list[JourneyVersion]:
        """Journeys whose trigger may react to this event: never a scan of all journeys."""
        key = (event_name, is_identify)
        cached = self._candidates.get(key)
        if cached is not None:
            return cached
        merged = self._merge(event_name, is_identify)
        if len(self._candidates) < 10_000:  # event names come from senders: bound what is kept
            self._candidates[key] = merged
        return merged

    def _merge(self, event_name: str, is_identify: bool) -> list[JourneyVersion]:
        found = self.triggers.get(f"event:{event_name}", [])
        extra = self.triggers.get("any", [])
        if is_identify:
            extra = extra + self.triggers.get("identify", [])
        if not extra:
            return found
        if not found:
            return extra
        return found + [jv for jv in extra if jv not in found]


def _filter_keys(filters: Iterable[object], *extra: str | None) -> set[str]:
    keys = {f.property.split(".")[0] for f in filters}  # type: ignore[attr-defined]
    keys.update(e.split(".")[0] for e in extra if e)
    return keys


def _history_needs(journey: Journey) -> Iterable[tuple[str, set[str], int | None]]:
    from nudgeflow.model.journeys import EventCountCondition, duration_ms

    trigger = journey.trigger
    if isinstance(trigger, (EventTrigger, EventNotFollowedTrigger)) and trigger.occurrences:
        occ = trigger.occurrences
        yield trigger.event, _filter_keys(trigger.where, occ.match), duration_ms(occ.within)
    for condition in _all_conditions(journey):
        if isinstance(condition, EventCountCondition):
            window = duration_ms(condition.within) if condition.within else None
            yield condition.event, _filter_keys(condition.where), window


def _all_conditions(journey: Journey) -> Iterable[object]:
    from nudgeflow.model.journeys import AllCondition, AnyCondition, BranchStep, NotCondition

    stack: list[object] = list(journey.entry.filter)
    for step in journey.steps.values():
        if isinstance(step, BranchStep):
            for case in step.cases:
                stack.extend(case.when)
    while stack:
        item = stack.pop()
        if isinstance(item, AllCondition):
            stack.extend(item.all)
        elif isinstance(item, AnyCondition):
            stack.extend(item.any)
        elif isinstance(item, NotCondition):
            stack.append(item.not_)
        else:
            yield item
