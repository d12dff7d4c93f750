"""The live segments, ordered and indexed by what can change them (built once per catalog).

Membership is decided incrementally (core/segments.py): an event re-decides only the
segments whose conditions read it. This module says which those are, so that the engine
never scans every segment for every event:

- `by_event`: event name -> segments with a `performed` or `engaged` condition on it, or a
  `reachable` condition the event bears on (Unsubscribed, Subscription Preferences Updated,
  Consent Updated, Push Subscribed, Push Unsubscribed);
- `by_trait`: top-level trait name -> segments with a trait condition on it (a reference
  `{ref: profile.x}`, in a trait condition or a `performed` condition's `where`, counts as
  reading `x`; `reachable: email` reads `email`);
- `on_group`: segments reading `group.<trait>`, re-decided on a group call;
- `on_device`: segments with `reachable: push`, re-decided the first time an event carries a
  mobile device token (context.device.token);
- `dependents`: the segments that refer to a segment, re-decided when its membership changes;
- `guards`: event name -> for the segments in `by_event`, what an occurrence of the event can
  do to each (Guard): a member of "3 orders in 30 days" is still one after another order;
  someone out of "no order in 30 days" is still out after one; a view of a bag is counted by
  no condition of "2 shoe views in 7 days". core/segments.py leaves those undecided; the
  lapse instant it keeps for them can then be too early, never too late (an occurrence
  only pushes a lapse later), so a lapse timer decides them again in time.

Segments are kept in dependency order (model.segments.segment_order: a segment comes after
those it refers to); positions in that order are what the index holds, so that one pass in
increasing position decides a segment after everything it reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from nudgeflow.model import event_names
from nudgeflow.model.engagement_signals import BOT, MACHINE
from nudgeflow.model.journeys import Filter, Ref, SegmentCondition, TraitCondition, duration_ms
from nudgeflow.model.segments import (
    AllOf,
    AnyOf,
    EngagedCondition,
    NotRule,
    PerformedCondition,
    ReachableCondition,
    Segment,
    segment_order,
)

# The engagement events each `engaged` condition counts. A click implies an open (as message
# conditions read it), so `opened` counts clicks too.
ENGAGED_EVENTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("opened", "email"): (event_names.EMAIL_OPENED, event_names.EMAIL_LINK_CLICKED),
    ("opened", "push"): (event_names.PUSH_OPENED, event_names.PUSH_CLICKED, event_names.PUSH_NOTIFICATION_TAPPED),
    ("clicked", "email"): (event_names.EMAIL_LINK_CLICKED,),
    ("clicked", "push"): (event_names.PUSH_CLICKED, event_names.PUSH_NOTIFICATION_TAPPED),
}
ENGAGED_JOURNEY = "journey_id"  # the property of Nudgeflow's engagement events naming the journey
FLAGS = (MACHINE, BOT)  # the properties of a machine's open or click (model/engagement_signals.py)
EMAIL_REACH_EVENTS = (
    event_names.UNSUBSCRIBED,
    event_names.SUBSCRIPTION_PREFERENCES_UPDATED,
    event_names.CONSENT_UPDATED,
)
PUSH_TARGET_EVENTS = (event_names.PUSH_SUBSCRIBED, event_names.PUSH_UNSUBSCRIBED)
PUSH_REACH_EVENTS = (*PUSH_TARGET_EVENTS, event_names.CONSENT_UPDATED)
EMAIL_TRAIT = "email"
GROUP_PREFIX = "group."

# Occurrences kept per event name and person (core.engine.HISTORY_CAP) suffice to tell a
# count of N apart from any other when N+1 are kept; a sum needs every occurrence in its
# window, up to this many (the newest).
SUM_HISTORY_CAP = 1000


@dataclass(frozen=True, slots=True)
class SegmentVersion:
    segment_id: str
    version: int
    definition: Segment


def engaged_names(condition: EngagedCondition) -> tuple[str, ...]:
    """The engagement events an `engaged` condition counts."""
    return _engaged_names(condition.engaged, condition.channel)


@lru_cache(maxsize=16)
def _engaged_names(engaged: str, channel: str | None) -> tuple[str, ...]:
    channels = (channel,) if channel else ("email", "push")
    names: list[str] = []
    for channel in channels:
        for name in ENGAGED_EVENTS[(engaged, channel)]:
            if name not in names:
                names.append(name)
    return tuple(names)


def leaves(rule: object) -> Iterator[object]:
    """The conditions of a segment's tree that are not all/any/not."""
    stack = [rule]
    while stack:
        item = stack.pop()
        if isinstance(item, AllOf):
            stack.extend(item.all)
        elif isinstance(item, AnyOf):
            stack.extend(item.any)
        elif isinstance(item, NotRule):
            stack.append(item.not_)
        else:
            yield item


def _top(path: str) -> str:
    return path.split(".")[0]


def segment_history_needs(segment: Segment) -> Iterator[tuple[str, set[str], int, int | None]]:
    """(event name, top-level properties to keep, window ms, occurrences to keep or None for
    the engine's default) for each event the segment counts."""
    for leaf in leaves(segment.when):
        if isinstance(leaf, PerformedCondition):
            keys = {_top(f.property) for f in leaf.where}
            cap: int | None = leaf.count + 1
            if leaf.sum is not None:
                keys.add(_top(leaf.sum.property))
                cap = SUM_HISTORY_CAP
            yield leaf.performed, keys, duration_ms(leaf.within), cap
        elif isinstance(leaf, EngagedCondition):
            # The flags of a machine's open or click are kept (present only on those), so
            # that `engaged` can pass over them (model/engagement_signals.py).
            keys = {ENGAGED_JOURNEY, *FLAGS} if leaf.journey else set(FLAGS)
            for name in engaged_names(leaf):
                yield name, keys, duration_ms(leaf.within), None


_RISING_OPS = frozenset({"gte", "gt"})  # more occurrences can only make these true
_FALLING_OPS = frozenset({"lt", "lte"})  # ...and these false


@dataclass(slots=True)
class Guard:
    """What one more occurrence of an event can do to one segment (see SegmentIndex.guards).

    way: True when it can only bring the person in (every condition reading the event is a
    rising count, `gte`/`gt`, or an engagement, under an even number of `not`s), so a member
    stays one; False when it can only take them out, so a non-member stays out; None when it
    may do either (an `eq` count, a sum with amounts of either sign, reachability).
    wheres: the `where` filters of the conditions reading the event, when every one of them
    has one (and no reference to the person: they are tested on the event alone); an
    occurrence none of them accepts is counted by none, so it changes nothing. None: some
    condition counts every occurrence.
    filtered: some condition reading the event has a `where`. The kept history is capped
    (core.catalog.HISTORY_CAP at least): once full, any occurrence pushes the oldest out,
    which may be one a filter counted, so neither rule above holds then.
    need: the segment cannot hold while fewer occurrences of the event are kept than this
    (it requires, through `all`s only, a count of every occurrence with `gte` or `gt`: "5
    views in 7 days" needs 5 kept views at least); 0 when it requires none.
    """

    way: bool | None
    wheres: tuple[tuple[Filter, ...], ...] | None
    filtered: bool
    need: int = 0


def requires_occurrence(rule: object) -> bool:
    """The rule cannot hold for someone with no occurrence of the events it counts: it
    requires, through `all`s (or every branch of an `any`), a count of at least one, a sum
    that nothing cannot reach, or an engagement."""
    if isinstance(rule, AllOf):
        return any(requires_occurrence(item) for item in rule.all)
    if isinstance(rule, AnyOf):
        return all(requires_occurrence(item) for item in rule.any)
    if isinstance(rule, EngagedCondition):
        return True
    if isinstance(rule, PerformedCondition):
        if rule.sum is not None:
            return (rule.sum.op == "gte" and rule.sum.value > 0) or (rule.sum.op == "gt" and rule.sum.value >= 0)
        return (rule.op == "gte" and rule.count >= 1) or (rule.op == "gt" and rule.count >= 0)
    return False


def _needs(rule: object, out: dict[str, int]) -> dict[str, int]:
    """Event name -> the fewest kept occurrences the rule can hold with (see Guard.need)."""
    if isinstance(rule, AllOf):
        for item in rule.all:
            _needs(item, out)
    elif isinstance(rule, PerformedCondition) and rule.sum is None and not rule.where and rule.op in _RISING_OPS:
        need = rule.count if rule.op == "gte" else rule.count + 1
        out[rule.performed] = max(out.get(rule.performed, 0), need)
    return out


def _guards(rule: object) -> dict[str, Guard]:
    """A Guard for each event name the rule reads."""
    ways: dict[str, int] = {}
    wheres: dict[str, list[tuple[Filter, ...]] | None] = {}
    filtered: set[str] = set()

    def walk(item: object, sign: int) -> None:
        if isinstance(item, (AllOf, AnyOf)):
            for child in item.all if isinstance(item, AllOf) else item.any:
                walk(child, sign)
            return
        if isinstance(item, NotRule):
            walk(item.not_, -sign)
            return
        names: tuple[str, ...] = ()
        way = 0
        where: tuple[Filter, ...] | None = None
        if isinstance(item, PerformedCondition):
            names = (item.performed,)
            if item.sum is None:
                way = 1 if item.op in _RISING_OPS else -1 if item.op in _FALLING_OPS else 0
            if item.where:
                filtered.add(item.performed)
                if not any(isinstance(f.value, Ref) for f in item.where):
                    where = tuple(item.where)
        elif isinstance(item, EngagedCondition):
            names, way = engaged_names(item), 1
            # It may pass over some kept engagements (another journey's, with `journey`; a
            # machine's): a full history's eviction may drop the one it counted, as a
            # `where`'s may.
            filtered.update(names)
        elif isinstance(item, ReachableCondition):
            names = EMAIL_REACH_EVENTS if item.reachable in ("email", "any") else ()
            names += PUSH_REACH_EVENTS if item.reachable in ("push", "any") else ()
        for name in names:
            found = ways.get(name)
            ways[name] = way * sign if found is None or found == way * sign else 0
            kept = wheres.get(name, [])
            wheres[name] = None if where is None or kept is None else [*kept, where]

    walk(rule, 1)
    needs = _needs(rule, {})
    return {
        name: Guard(
            None if way == 0 else way > 0,
            tuple(found) if (found := wheres.get(name)) else None,
            name in filtered,
            needs.get(name, 0),
        )
        for name, way in ways.items()
    }


def _referred_trait(value: object) -> str | None:
    """The trait a `{ref: profile.x}` (x) or `{ref: group.x}` (group.x) value reads, if it is one."""
    if not isinstance(value, Ref):
        return None
    source, _, path = value.ref.partition(".")
    if source == "profile":
        return path
    return GROUP_PREFIX + path if source == "group" else None


class SegmentIndex:
    """Live segments in dependency order, and which of them each kind of change concerns."""

    def __init__(self, segments: Iterable[SegmentVersion]) -> None:
        by_id = {sv.segment_id: sv for sv in segments}
        self.order: list[SegmentVersion] = [by_id[sid] for sid in segment_order(sv.definition for sv in by_id.values())]
        self.position: dict[str, int] = {sv.segment_id: i for i, sv in enumerate(self.order)}
        by_event: dict[str, set[int]] = {}
        by_trait: dict[str, set[int]] = {}
        group: set[int] = set()
        device: set[int] = set()
        dependents: dict[int, set[int]] = {}
        guards: dict[str, dict[int, Guard]] = {}
        timed: dict[int, list[PerformedCondition | EngagedCondition]] = {}
        self.email_facts = False  # some segment reads whether email is reachable
        self.push_facts = False
        for pos, sv in enumerate(self.order):
            traits: list[str] = []  # the traits the segment reads (group.<trait> for a group's)
            for leaf in leaves(sv.definition.when):
                names: tuple[str, ...] = ()
                if isinstance(leaf, PerformedCondition):
                    names = (leaf.performed,)
                    timed.setdefault(pos, []).append(leaf)
                    # A `where` comparing with a trait counts other occurrences once it changes.
                    traits.extend(trait for where in leaf.where if (trait := _referred_trait(where.value)))
                elif isinstance(leaf, EngagedCondition):
                    names = engaged_names(leaf)
                    timed.setdefault(pos, []).append(leaf)
                elif isinstance(leaf, ReachableCondition):
                    if leaf.reachable in ("email", "any"):
                        self.email_facts = True
                        names += EMAIL_REACH_EVENTS
                        by_trait.setdefault(EMAIL_TRAIT, set()).add(pos)
                    if leaf.reachable in ("push", "any"):
                        self.push_facts = True
                        names += PUSH_REACH_EVENTS
                        device.add(pos)
                elif isinstance(leaf, TraitCondition):
                    traits.append(leaf.trait)
                    if trait := _referred_trait(leaf.value):
                        traits.append(trait)
                elif isinstance(leaf, SegmentCondition) and leaf.segment in self.position:
                    dependents.setdefault(self.position[leaf.segment], set()).add(pos)
                for name in names:
                    by_event.setdefault(name, set()).add(pos)
            for trait in traits:
                if trait.startswith(GROUP_PREFIX):
                    group.add(pos)
                else:
                    by_trait.setdefault(_top(trait), set()).add(pos)
            for name, guard in _guards(sv.definition.when).items():
                if guard.way is not None or guard.wheres is not None or guard.need:
                    guards.setdefault(name, {})[pos] = guard
        self.by_event: dict[str, tuple[int, ...]] = {k: tuple(sorted(v)) for k, v in by_event.items()}
        self.by_trait: dict[str, tuple[int, ...]] = {k: tuple(sorted(v)) for k, v in by_trait.items()}
        self.on_group: tuple[int, ...] = tuple(sorted(group))
        self.on_device: tuple[int, ...] = tuple(sorted(device))
        self.dependents: dict[int, tuple[int, ...]] = {k: tuple(sorted(v)) for k, v in dependents.items()}
        # For the positions in by_event[name] that an occurrence of `name` may leave as they
        # are: what it can do to each (Guard). Absent: it is decided.
        self.guards: dict[str, dict[int, Guard]] = {
            name: {pos: guard for pos, guard in found.items() if pos in by_event.get(name, ())}
            for name, found in guards.items()
        }
        # The windowed conditions (performed, engaged) of each segment that has some: those
        # whose answer time alone can change, hence the segment's lapse timer.
        self.timed: dict[int, tuple[PerformedCondition | EngagedCondition, ...]] = {
            k: tuple(v) for k, v in timed.items()
        }

    def get(self, segment_id: str) -> SegmentVersion | None:
        pos = self.position.get(segment_id)
        return None if pos is None else self.order[pos]
