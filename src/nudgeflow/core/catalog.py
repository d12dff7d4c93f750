"""The journeys the engine runs: live versions indexed by what can trigger them.

Finding the journeys an event can start must not scan every journey, so triggers are
indexed by signal: `event:<name>` for triggers on a named event, `any` for triggers that
look at every event (inactivity on any activity, location without an event name),
`identify` for trait-driven triggers (attribute change, date-relative), and
`segment:<id>:enter` / `segment:<id>:exit` for segment triggers (core/segments.py looks them
up when a membership changes). Live segments are indexed by what can change them in
core/segment_index.py. Exit events and goals concern only the runs
a person has open, so they are checked on the profile's state, not looked up here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from nudgeflow.core import control_group
from nudgeflow.core.experiments import NO_DECISIONS, Decisions
from nudgeflow.core.policies import Plan, plan_for
from nudgeflow.core.segment_index import SegmentIndex, SegmentVersion, segment_history_needs
from nudgeflow.core.send_time import Prior
from nudgeflow.model.journeys import (
    AttributeChangeTrigger,
    CatalogPlaces,
    DateRelativeTrigger,
    EventNotFollowedTrigger,
    EventTrigger,
    InactivityTrigger,
    Journey,
    LocationTrigger,
    MilestoneTrigger,
    Place,
    SegmentTrigger,
)
from nudgeflow.model.numbers import as_number
from nudgeflow.model.policies import EMPTY, Policies

LIVE, PAUSED, ARCHIVED, DRAFT = "live", "paused", "archived", "draft"
HISTORY_CAP = 200  # occurrences kept per event name and person, unless Catalog.history_cap says more


def place_tags(attributes: Any) -> set[str]:
    """A catalog place's tags: its `tags` attribute, a list or text with commas between tags."""
    raw = attributes.get("tags") if isinstance(attributes, Mapping) else None
    if isinstance(raw, str):
        raw = raw.split(",")
    if not isinstance(raw, (list, tuple)):
        return set()
    return {t.strip() for t in raw if isinstance(t, str) and t.strip()}


def select_places(places: Iterable[Mapping[str, Any]], wanted: CatalogPlaces | None) -> list[Place]:
    """The catalog places with one of the wanted ids or tags, in catalog order, as Places
    (carrying the catalog id). A row without usable coordinates is left out."""
    if wanted is None:
        return []
    ids, tags = set(wanted.ids), set(wanted.tags)
    out: list[Place] = []
    for item in places:
        if item.get("id") not in ids and not (tags and place_tags(item.get("attributes")) & tags):
            continue
        try:
            out.append(
                Place(
                    id=str(item["id"]),
                    name=str(item.get("name") or item["id"]),
                    latitude=item["latitude"],
                    longitude=item["longitude"],
                )
            )
        except (KeyError, ValueError, TypeError):
            continue  # the catalog import checks rows; one that is not a place still must not stop the engine
    return out


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
    if isinstance(trigger, SegmentTrigger):
        return [f"segment:{trigger.segment}:{trigger.on}"]
    raise TypeError(f"no index signal for trigger {type(trigger).__name__}")


class Catalog:
    """Live journeys by id, their trigger index, and older versions on demand."""

    def __init__(
        self,
        live: Iterable[JourneyVersion] = (),
        statuses: dict[str, str] | None = None,
        load_version: VersionLoader | None = None,
        places: Iterable[Mapping[str, Any]] = (),
        segments: Iterable[SegmentVersion] = (),
        policies: Policies = EMPTY,
        send_time_prior: Prior | None = None,
        experiment_decisions: Decisions = NO_DECISIONS,
    ) -> None:
        self.live: dict[str, JourneyVersion] = {jv.journey_id: jv for jv in live}
        # The workspace's send policies; `send_plan` is None when they hold no rule, and
        # then sends go out at once, as they always did (core/policies.py).
        self.policies = policies
        self.send_plan: Plan | None = plan_for(policies)
        # The workspace's pattern of attention by local hour (core/send_time.py), computed by
        # the runtime from stored events when a live journey uses send_time; None: uniform.
        self.send_time_prior = send_time_prior
        # The global control group (core/control_group.py), None when there is none. Apart from
        # send_plan: withholding a control member's marketing needs no ledger nor deferral.
        self.control_plan: control_group.ControlPlan | None = control_group.plan_for(policies)
        # Arms paused and winners routed to, per (journey, version, step) (core/experiments.py),
        # as the runtime's evaluator recorded them; empty in the simulator.
        self.experiment_decisions: Decisions = experiment_decisions
        # The workspace's places catalog, as data (id, name, latitude, longitude,
        # attributes): location triggers with `catalog_places` pick theirs from it.
        self.places: list[Mapping[str, Any]] = list(places)
        self._location_places: dict[tuple[str, int], list[Place]] = {}
        # Equal place lists, one list: journeys of the same places (a geofence per market
        # over the same stores) then share the nearest-place search of one event
        # (core/triggers.py keeps it in the Turn by the list's identity).
        self._place_lists: dict[tuple[tuple[str | None, str, float, float], ...], list[Place]] = {}
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
        # Occurrences kept per name where segments need more than the engine's HISTORY_CAP.
        self.history_cap: dict[str, int] = {}
        # Live segments in dependency order (SegmentCycleError when they refer to each other
        # in a circle); None when there are none, which costs the engine nothing per event.
        live_segments = list(segments)
        self.segment_index = SegmentIndex(live_segments) if live_segments else None
        needs = [need for jv in self.live.values() for need in history_needs(jv.definition)]
        needs.extend(need for jv in self.live.values() for need in follow_up_needs(jv.definition))
        needs.extend(need for jv in self.live.values() for need in exit_needs(jv.definition))
        needs.extend(need for jv in self.live.values() for need in goal_needs(jv.definition))
        for sv in self.segment_index.order if self.segment_index else ():
            for name, keys, seg_window, cap in segment_history_needs(sv.definition):
                needs.append((name, keys, seg_window))
                if cap is not None and cap > max(HISTORY_CAP, self.history_cap.get(name, 0)):
                    self.history_cap[name] = cap
        # The goal events a late trigger event may find already decided (steps.goal_seen): their
        # kept occurrences carry the event's messageId as a third item, so that such a
        # conversion names its goal event as one decided on time does (measure/ counts each
        # goal event once, by it).
        self.history_ids = frozenset(name for jv in self.live.values() for name, _k, _w in goal_needs(jv.definition))
        for name, keys, window in needs:
            self.history_keys.setdefault(name, set()).update(keys)
            if name in self.history_window:
                old = self.history_window[name]
                self.history_window[name] = None if old is None or window is None else max(old, window)
            else:
                self.history_window[name] = window
        self.triggers.default_factory = None
        # candidates() merges index lists for every event: merged once per name, kept here.
        self._candidates: dict[tuple[str, bool], list[JourneyVersion]] = {}
        # Event and milestone triggers with a constant `eq` / `in` filter on a top-level
        # property, by that filter's values (see value_key): for_event() leaves out those
        # whose filter cannot hold for the event's value of the property.
        self._keyed: dict[str, tuple[str, frozenset[Any]]] = {}
        for jv in self.live.values():
            keyed = _keyed_filter(jv.definition)
            if keyed is not None:
                self._keyed[jv.journey_id] = keyed
        self._plans: dict[tuple[str, bool], _Plan] = {}

    def location_places(self, journey_id: str, version: int, trigger: LocationTrigger) -> list[Place]:
        """The trigger's places: those written in it, and those of the places catalog it
        selects by id or tag (resolved once per catalog)."""
        key = (journey_id, version)
        found = self._location_places.get(key)
        if found is None:
            found = list(trigger.places) + select_places(self.places, trigger.catalog_places)
            # Every field of a Place: lists equal in these are equal for every reader.
            same = tuple((p.id, p.name, p.latitude, p.longitude) for p in found)
            found = self._place_lists.setdefault(same, found)
            self._location_places[key] = found
        return found

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

    def for_event(self, event_name: str, is_identify: bool, properties: Any) -> list[JourneyVersion]:
        """candidates(), less the triggers whose constant `eq` / `in` filter on a property
        cannot hold for this event's value of it; the order is candidates()'. A superset of
        the triggers that match: each one left is still tested whole."""
        plan = self._plans.get((event_name, is_identify))
        if plan is None:
            plan = self._plan(event_name, is_identify)
        props = plan.props
        if props is None or type(properties) is not dict:
            return plan.all
        if len(props) == 1:
            value = properties.get(props[0], _MISSING)
            key = (type(value) is str and _STR_KEYS.get(value)) or value_key(value)
            if key is _UNKNOWN:
                return plan.all
            cache_key: tuple[Any, ...] = (key,)
        else:
            keys = []
            for prop in props:
                key = value_key(properties.get(prop, _MISSING))
                if key is _UNKNOWN:
                    return plan.all
                keys.append(key)
            cache_key = tuple(keys)
        found = plan.cache.get(cache_key)
        if found is None:
            found = [jv for jv, i, accepted in plan.entries if i < 0 or cache_key[i] in accepted]
            if len(plan.cache) < 1_000:  # values come from senders: bound what is kept
                plan.cache[cache_key] = found
        return found

    def _plan(self, event_name: str, is_identify: bool) -> _Plan:
        merged = self.candidates(event_name, is_identify)
        props: list[str] = []
        entries: list[tuple[JourneyVersion, int, frozenset[Any]]] = []
        for jv in merged:
            keyed = self._keyed.get(jv.journey_id)
            if keyed is None or not _listens(jv, event_name):
                entries.append((jv, -1, frozenset()))
                continue
            prop, accepted = keyed
            if prop not in props:
                props.append(prop)
            entries.append((jv, props.index(prop), accepted))
        plan = _Plan(merged, tuple(props) if props else None, entries)
        if len(self._plans) < 10_000:  # event names come from senders: bound what is kept
            self._plans[(event_name, is_identify)] = plan
        return plan

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


_MISSING = object()
_UNKNOWN = object()  # a value whose equality to the constants is not decided by value_key
_NONE = ("-",)  # a value no indexed constant can equal (missing, null, NaN, a list or a dict)
_STR_KEYS: dict[str, tuple[str, Any]] = {}  # value_key of strings seen, as the regex test is the dearer part


def value_key(value: Any) -> Any:
    """A key such that conditions.compare("eq", True, a, b) implies value_key(a) == value_key(b).

    Booleans are their own kind (true is not 1); numbers and numeric strings are keyed by
    their number (1, 1.0 and "1" by 1; two strings "1" and "1.0" then share a key without
    being equal, which only keeps a trigger that its filter test then refuses). Values no
    indexed constant can equal get _NONE; anything unforeseen _UNKNOWN (no pruning)."""
    t = type(value)
    if t is str:
        key = _STR_KEYS.get(value)
        if key is None:
            number = as_number(value, exact=True)
            key = ("s", value) if number is None else ("n", number)
            if len(_STR_KEYS) >= 10_000:  # values come from senders: bound what is kept
                _STR_KEYS.clear()
            _STR_KEYS[value] = key
        return key
    if t is bool:
        return ("b", value)
    if t is int:
        return ("n", value)
    if t is float:
        return ("n", value) if value == value else _NONE
    if value is _MISSING or value is None or t is list or t is dict:
        return _NONE
    return _UNKNOWN


def _constant_key(value: Any) -> Any:
    """value_key for a filter's constant, or None when the constant is not indexed."""
    if type(value) not in (str, bool, int, float):
        return None
    key = value_key(value)
    return None if key is _NONE or key is _UNKNOWN else key


def _keyed_filter(journey: Journey) -> tuple[str, frozenset[Any]] | None:
    """The first constant `eq` / `in` filter of an event or milestone trigger on a top-level
    property: the property and the keys of the values it accepts."""
    trigger = journey.trigger
    if type(trigger) not in (EventTrigger, MilestoneTrigger):
        return None
    for flt in cast("EventTrigger | MilestoneTrigger", trigger).where:  # the test above, which mypy cannot read
        if "." in flt.property:
            continue
        if flt.op == "eq":
            key = _constant_key(flt.value)
            if key is not None:
                return flt.property, frozenset((key,))
        elif flt.op == "in" and type(flt.value) is list:
            keys = [_constant_key(v) for v in flt.value]
            if all(k is not None for k in keys):
                return flt.property, frozenset(keys)
    return None


def _listens(jv: JourneyVersion, event_name: str) -> bool:
    trigger = jv.definition.trigger
    return isinstance(trigger, (EventTrigger, MilestoneTrigger)) and trigger.event == event_name


@dataclass(slots=True)
class _Plan:
    all: list[JourneyVersion]
    props: tuple[str, ...] | None  # the keyed properties among these triggers; None: no pruning
    entries: list[tuple[JourneyVersion, int, frozenset[Any]]]  # each with its property's index in props (-1: kept)
    cache: dict[tuple[Any, ...], list[JourneyVersion]] = field(default_factory=dict)


def _filter_keys(filters: Iterable[object], *extra: str | None) -> set[str]:
    keys = {f.property.split(".")[0] for f in filters}  # type: ignore[attr-defined]
    keys.update(e.split(".")[0] for e in extra if e)
    return keys


def history_needs(journey: Journey) -> Iterable[tuple[str, set[str], int | None]]:
    from nudgeflow.model.journeys import EventCountCondition, duration_ms

    trigger = journey.trigger
    if isinstance(trigger, (EventTrigger, EventNotFollowedTrigger)) and trigger.occurrences:
        occ = trigger.occurrences
        yield trigger.event, _filter_keys(trigger.where, occ.match), duration_ms(occ.within)
    for condition in _all_conditions(journey):
        if isinstance(condition, EventCountCondition):
            window = duration_ms(condition.within) if condition.within else None
            yield condition.event, _filter_keys(condition.where), window


def follow_up_needs(journey: Journey) -> Iterable[tuple[str, set[str], int | None]]:
    """The follow-up of an `event_not_followed` trigger, kept so that an occurrence of the
    trigger's event decided after it (a late event, within `max_lateness`) sees that it was
    followed. Kept for the window plus the lateness: no later occurrence can look further."""
    from nudgeflow.model.journeys import duration_ms

    trigger = journey.trigger
    if isinstance(trigger, EventNotFollowedTrigger):
        follow = trigger.not_followed_by
        lateness = trigger.max_lateness
        window = None if lateness is None else duration_ms(follow.within) + duration_ms(lateness)
        yield follow.event, _filter_keys(follow.where, follow.match), window


# Triggers whose run starts from an event (its time is the run's trigger `at`), which may be
# decided after events that came later: their exit events are kept for that.
EVENT_STARTED = (EventTrigger, EventNotFollowedTrigger, MilestoneTrigger, LocationTrigger)


def exit_needs(journey: Journey) -> Iterable[tuple[str, set[str], int | None]]:
    """The exit events of a journey whose run starts from an event, kept so that a run does not
    begin on an event that an exit event already decided came after (steps.exit_seen): a late
    trigger event (within `max_lateness`), or, for `event_not_followed`, one in the window."""
    from nudgeflow.model.journeys import duration_ms

    trigger = journey.trigger
    if not journey.exit.events or not isinstance(trigger, EVENT_STARTED):
        return
    lateness = trigger.max_lateness
    window = None if lateness is None else duration_ms(lateness)
    if window is not None and isinstance(trigger, EventNotFollowedTrigger):
        window += duration_ms(trigger.not_followed_by.within)
    for spec in journey.exit.events:
        yield spec.event, _filter_keys(spec.where, spec.match), window


def goal_needs(journey: Journey) -> Iterable[tuple[str, set[str], int | None]]:
    """The goal event of a journey whose run enters at its trigger event's time, kept for the
    trigger's `max_lateness` so that a late trigger event sees the conversions already decided
    after it (steps.goal_seen). An `event_not_followed` run enters when its window ends: its
    goal window starts then, so nothing decided before can count."""
    from nudgeflow.model.journeys import duration_ms

    trigger = journey.trigger
    goal = journey.goal
    if goal is None or not isinstance(trigger, EVENT_STARTED) or isinstance(trigger, EventNotFollowedTrigger):
        return
    window = None if trigger.max_lateness is None else duration_ms(trigger.max_lateness)
    yield goal.event, _filter_keys(goal.where, goal.revenue), window


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
