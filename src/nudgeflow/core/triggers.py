"""How each kind of trigger reacts to an event or to its own timer (docs/journeys.md, Triggers).

Event time (the corrected timestamp) decides windows; timers fire on processing time.
An event older than its trigger's `max_lateness` when processed still updates counters,
watches and activity, but does not start a run: a three-day-old "added to cart" from an
offline queue must not send "you left this in your cart" now.
"""

from __future__ import annotations

import math
from typing import Any

from nudgeflow.core import timecalc
from nudgeflow.core.catalog import JourneyVersion
from nudgeflow.core.conditions import COMPILED, Scope, compare, compiled_entry, get_path
from nudgeflow.core.inputs import EventInput
from nudgeflow.core.kept_history import newest_since
from nudgeflow.core.steps import enter
from nudgeflow.core.turn import Turn, timer_key
from nudgeflow.model.engagement_signals import machine_engagement
from nudgeflow.model.journeys import (
    AttributeChangeTrigger,
    DateRelativeTrigger,
    EventNotFollowedTrigger,
    EventTrigger,
    InactivityTrigger,
    LocationTrigger,
    MilestoneTrigger,
    NotFollowedBy,
    Occurrences,
    duration_ms,
)
from nudgeflow.model.numbers import as_number

_MISSING = object()


# `event` is positional-only: attribute-change and others pass `event=` in `extra` (the
# trigger's own name), which otherwise raised "got multiple values for argument 'event'".
def trigger_of(event: EventInput, /, **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "event": event.name,
        "message_id": event.message_id,
        "at": event.timestamp_ms,
        "properties": event.properties,
    }
    info.update(extra)
    return info


def _late(turn: Turn, event: EventInput, max_lateness: str | None) -> bool:
    return max_lateness is not None and turn.now_ms - event.timestamp_ms > duration_ms(max_lateness)


def _matches(turn: Turn, event: EventInput, name: str, where: list[Any]) -> bool:
    if event.name != name:
        return False
    if not where:
        return True
    # The filters' compiled matcher (conditions.compiled, its cache looked up here: this
    # runs for every candidate trigger of every event). The Scope is built only if a filter
    # refers to the profile or the trigger; most filters are constants.
    entry = COMPILED.get(id(where))
    if entry is None or entry[0] is not where:
        entry = compiled_entry(where)
    if entry[2]:
        return entry[1](event.properties, Scope(turn.state.traits, event.timestamp_ms, turn.state.history))
    return entry[1](event.properties, None)


def _occurred_enough(turn: Turn, event: EventInput, occ: Occurrences | None, where: list[Any]) -> bool:
    if occ is None:
        return True
    key: Any = None
    if occ.match is not None:
        found, key = get_path(event.properties, occ.match)
        if not found:
            return False
    # Only earlier occurrences that pass the trigger's own filters count: two views of a
    # shoe, not one shoe and one hat (the history keeps the filters' properties for this).
    matcher, needs_scope = None, False
    if where:
        _, matcher, needs_scope = compiled_entry(where)
    if needs_scope:
        scope = Scope(turn.state.traits, event.timestamp_ms, turn.state.history)
        times = _occurrence_times(turn, event, occ.match, key, matcher, scope)
    else:
        # Filters on the event alone pick the same occurrences for every journey of this
        # trigger's event and filters (a copy per market with its own count or window):
        # found once per event, each journey then counts those in its own window.
        shared = _shared(turn, event).occurred
        assert shared is not None
        cache_key = (id(where) if where else 0, occ.match)
        found_times = shared.get(cache_key)
        if found_times is None:
            found_times = shared[cache_key] = _occurrence_times(turn, event, occ.match, key, matcher, None)
        times = found_times
    until = event.timestamp_ms
    window = duration_ms(occ.within)
    since = until - window
    n = 0
    later = []
    for ts in times:
        if since < ts <= until:
            n += 1
            if n >= occ.count:
                return True
        elif until < ts < until + window:
            later.append(ts)
    # A late event (occurrences after it were decided first): the windows that end at those
    # hold it too, and may hold enough, by event time, as they would have in order.
    return any(sum(1 for ts in times if end - window < ts <= end) >= occ.count for end in later)


def _occurrence_times(
    turn: Turn, event: EventInput, match: str | None, key: Any, matcher: Any, scope: Scope | None
) -> list[Any]:
    """The times of the kept occurrences of the event that pass the trigger's filters and,
    with `match`, hold the same value as this event (`key`)."""
    # A string key (a product id) equals only the same string, or a number it spells (as
    # compare's "eq" has it): a stored string is compared directly, anything else by compare.
    str_key = type(key) is str
    times = []
    for entry in turn.state.history.get(event.name, []):
        ts, props = entry[0], entry[1]  # a goal event's entry has its messageId after them
        if matcher is not None and not matcher(props, scope):
            continue
        if match is not None:
            found, value = get_path(props, match)
            if not (value == key if str_key and found and type(value) is str else compare("eq", found, value, key)):
                continue
        times.append(ts)
    return times


def _shared(turn: Turn, event: EventInput) -> Turn:
    """The turn, its per-event shared findings (Turn.nearest, Turn.occurred) for `event`."""
    if turn.shared_of is not event:
        turn.shared_of, turn.nearest, turn.occurred = event, {}, {}
    return turn


def on_event(turn: Turn, jv: JourneyVersion, event: EventInput, changes: dict[str, tuple[Any, Any]]) -> None:
    trigger = jv.definition.trigger
    # By the trigger's class, looked up once: this runs for every candidate journey of every
    # event, and a chain of isinstance tests cost up to seven calls each time.
    react = _BY_KIND.get(type(trigger))
    if react is None:
        react = next((fn for kind, fn in _BY_KIND.items() if isinstance(trigger, kind)), None)
        if react is None:
            return  # a segment trigger: it reacts to membership changes (core/segments.py)
    react(turn, jv, trigger, event, changes)


def on_candidates(
    turn: Turn, candidates: list[JourneyVersion], event: EventInput, changes: dict[str, tuple[Any, Any]]
) -> None:
    """on_event for each candidate journey of the event, in order: the engine's loop, here so
    that a journey costs one call (with 100 journeys, ~21 candidates meet each event)."""
    by_kind = _BY_KIND
    for jv in candidates:
        trigger: Any = jv.definition.trigger
        react = by_kind.get(type(trigger))
        if react is _location:
            # Most events carry no position, and a location trigger without an event name
            # is a candidate for every event: skipped here, as _location would return.
            if trigger.event is not None and event.name != trigger.event:
                continue
            if turn.coords_of is not event:
                turn.coords_of, turn.coords = event, timecalc.event_coordinates(event)
            if turn.coords is None:
                continue
        elif react is None:
            on_event(turn, jv, event, changes)  # a subclass, or a segment trigger
            continue
        react(turn, jv, trigger, event, changes)


def _event(turn: Turn, jv: JourneyVersion, trigger: Any, event: EventInput, _changes: Any) -> None:
    if (
        _matches(turn, event, trigger.event, trigger.where)
        and _occurred_enough(turn, event, trigger.occurrences, trigger.where)
        and not _late(turn, event, trigger.max_lateness)
    ):
        enter(turn, jv, trigger_of(event), event.timestamp_ms)


def _attribute_change(
    turn: Turn, jv: JourneyVersion, trigger: Any, event: EventInput, changes: dict[str, tuple[Any, Any]]
) -> None:
    if trigger.trait in changes and not _late(turn, event, trigger.max_lateness):
        before, after = changes[trigger.trait]
        given = trigger.model_fields_set
        if ("from_" not in given or _is(before, trigger.from_)) and ("to" not in given or _is(after, trigger.to)):
            props = {"trait": trigger.trait, "from": before, "to": after}
            enter(turn, jv, trigger_of(event, event="attribute_change", properties=props), event.timestamp_ms)


def _date_relative(
    turn: Turn, jv: JourneyVersion, trigger: Any, _event: EventInput, changes: dict[str, tuple[Any, Any]]
) -> None:
    if trigger.trait in changes or "timezone" in changes:
        arm_date(turn, jv, trigger)


def _is(value: Any, expected: Any) -> bool:
    if isinstance(expected, list):
        # Item by item with these same rules, so a null in the list means "was unset" as a
        # bare null does (compare("eq") never matches a missing value).
        return any(_is(value, e) for e in expected)
    if expected is None:
        return value is None
    return compare("eq", value is not None, value, expected)


# --- event not followed by another ---------------------------------------------------------


def _watch_key(jv: JourneyVersion, props: dict[str, Any], match: str | None) -> str | None:
    if match is None:
        return timer_key("nf", jv.journey_id)
    found, value = get_path(props, match)
    if not found or value is None:
        return None
    return timer_key("nf", jv.journey_id, value)


def _not_followed(
    turn: Turn, jv: JourneyVersion, trigger: EventNotFollowedTrigger, event: EventInput, _changes: Any = None
) -> None:
    follow = trigger.not_followed_by
    name = event.name
    # The names first: a candidate journey is here for one of its two events, rarely both.
    if name == follow.event and _matches(turn, event, follow.event, follow.where):
        key = _watch_key(jv, event.properties, follow.match)
        watch = turn.state.pending.get(key) if key else None
        if watch is not None and event.timestamp_ms >= watch["at"]:
            del turn.state.pending[key]  # type: ignore[arg-type]
            turn.cancel(key)  # type: ignore[arg-type]
    if (
        name == trigger.event
        and _matches(turn, event, trigger.event, trigger.where)
        and _occurred_enough(turn, event, trigger.occurrences, trigger.where)
    ):
        if _late(turn, event, trigger.max_lateness):
            return
        key = _watch_key(jv, event.properties, follow.match)
        if key is None:
            return
        known = turn.state.pending.get(key)
        if known is not None and known["at"] > event.timestamp_ms:
            return  # an older occurrence, late: the window runs from the newer one
        if _followed_already(turn, follow, event):
            return  # the follow-up was decided first (this event came late): nothing to watch
        # The latest occurrence restarts the window: an hour after the last item added.
        # The watch is the journey and the trigger (trigger_of's keys, in its order).
        turn.state.pending[key] = {
            "journey": jv.journey_id,
            "event": name,
            "message_id": event.message_id,
            "at": event.timestamp_ms,
            "properties": event.properties,
        }
        due = max(event.timestamp_ms + duration_ms(follow.within), turn.now_ms)
        turn.schedule(key, due, {"kind": "not_followed", "journey": jv.journey_id})


def _followed_already(turn: Turn, follow: NotFollowedBy, event: EventInput) -> bool:
    """Whether a follow-up the engine already decided happened within the window after
    `event` (kept in the history for this: catalog.follow_up_needs)."""
    entries = turn.state.history.get(follow.event)
    if not entries:
        return False
    key: Any = None
    if follow.match is not None:
        _, key = get_path(event.properties, follow.match)  # found: _watch_key gave a key
    matcher, scope = None, None
    if follow.where:
        _, matcher, needs_scope = compiled_entry(follow.where)
        if needs_scope:
            scope = Scope(turn.state.traits, event.timestamp_ms, turn.state.history)
    since = event.timestamp_ms
    until = since + duration_ms(follow.within)
    # "Session Started not followed by Session Started": the event itself is kept in that
    # history too, and does not follow itself; only a later one does.
    after = since + 1 if follow.event == event.name else since
    for entry in newest_since(entries, after, until):
        props = entry[1]
        if matcher is not None and not matcher(props, scope):
            continue
        if follow.match is not None:
            found, value = get_path(props, follow.match)
            if not compare("eq", found, value, key):
                continue
        return True
    return False


def on_not_followed_timer(turn: Turn, key: str, payload: dict[str, Any]) -> None:
    watch = turn.state.pending.pop(key, None)
    jv = turn.catalog.live.get(payload.get("journey", ""))
    if watch is None or jv is None or not isinstance(jv.definition.trigger, EventNotFollowedTrigger):
        return
    watch.pop("journey", None)
    enter(turn, jv, watch, turn.now_ms)


# --- inactivity (lazy: one timer per profile and journey, re-armed when it fires) ----------


def _activity(
    turn: Turn, jv: JourneyVersion, trigger: InactivityTrigger, event: EventInput, _changes: Any = None
) -> None:
    if trigger.events is not None and event.name not in trigger.events:
        return
    if machine_engagement(event.name, event.properties):
        return  # a machine's open or click (Apple's MPP prefetch, a link scanner) is not the person's activity
    # Without a dict made and dropped for every journey that has a record already.
    activity = turn.state.activity
    record = activity.get(jv.journey_id)
    if record is None:
        record = activity[jv.journey_id] = {"last": event.timestamp_ms, "armed": False}
    elif event.timestamp_ms > record["last"]:
        record["last"] = event.timestamp_ms
    elif not record["armed"]:
        # A late event from before the latest activity is not new activity: arming for it
        # would fire at once and enter the person again for a silence they entered for.
        return
    if not record["armed"]:
        record["armed"] = True
        due = max(record["last"] + duration_ms(trigger.window), turn.now_ms)
        turn.schedule(timer_key("idle", jv.journey_id), due, {"kind": "inactivity", "journey": jv.journey_id})


def on_inactivity_timer(turn: Turn, payload: dict[str, Any]) -> None:
    journey_id = payload.get("journey", "")
    record = turn.state.activity.get(journey_id)
    jv = turn.catalog.live.get(journey_id)
    if record is None:
        return
    if jv is None or not isinstance(jv.definition.trigger, InactivityTrigger):
        record["armed"] = False
        return
    due = record["last"] + duration_ms(jv.definition.trigger.window)
    if due > turn.now_ms:
        # Active since the timer was armed: look again when the window from then ends.
        turn.schedule(timer_key("idle", journey_id), due, {"kind": "inactivity", "journey": journey_id})
        return
    record["armed"] = False  # re-armed by the next activity, so one entry per silence
    props = {"last_active_at": record["last"], "inactive_ms": turn.now_ms - record["last"]}
    enter(turn, jv, {"event": "inactivity", "message_id": None, "at": turn.now_ms, "properties": props}, turn.now_ms)


# --- date-relative ---------------------------------------------------------------------------

_SAME_DATE_MS = 27 * 3_600_000  # local times a day apart in zones UTC-12 and UTC+14, and a margin


def arm_date(turn: Turn, jv: JourneyVersion, trigger: DateRelativeTrigger, after_ms: int | None = None) -> None:
    """Arm the journey's one date timer for this person (or drop it when the date is gone)."""
    key = timer_key("date", jv.journey_id)
    traits = turn.state.traits
    not_before = turn.now_ms if after_ms is None else after_ms
    # A new timezone after the message went out moves the same date to another instant:
    # that is not another date (sent twice). The same trait value is the same date; for a
    # yearly one, the same anniversary is within 26 h in any zone, the next a year away.
    fired = turn.state.counters.get(f"{jv.journey_id}:date")
    if (
        isinstance(fired, dict)
        and isinstance(fired.get("due"), int)
        and fired.get("value") == traits.get(trigger.trait)
    ):
        if not trigger.yearly:
            turn.cancel(key)
            return
        not_before = max(not_before, fired["due"] + _SAME_DATE_MS)
    due = timecalc.date_relative_due(
        traits.get(trigger.trait),
        duration_ms(trigger.offset),
        trigger.at,
        timecalc.zone_of(traits),
        trigger.yearly,
        not_before,
    )
    if due is None or (not trigger.yearly and due < turn.now_ms):
        turn.cancel(key)
        return
    turn.schedule(key, due, {"kind": "date", "journey": jv.journey_id, "due": due})


def on_date_timer(turn: Turn, payload: dict[str, Any]) -> None:
    jv = turn.catalog.live.get(payload.get("journey", ""))
    if jv is None or not isinstance(jv.definition.trigger, DateRelativeTrigger):
        return
    trigger = jv.definition.trigger
    value = turn.state.traits.get(trigger.trait)
    props = {"trait": trigger.trait, "value": value, "due": payload.get("due")}
    enter(turn, jv, {"event": "date_relative", "message_id": None, "at": turn.now_ms, "properties": props}, turn.now_ms)
    if isinstance(payload.get("due"), int):
        turn.state.counters[f"{jv.journey_id}:date"] = {"value": value, "due": payload["due"]}
    if trigger.yearly:
        # Next year's: looked for after this one's due time, so it cannot fire twice.
        arm_date(turn, jv, trigger, after_ms=max(turn.now_ms, payload.get("due") or 0) + 1)


# --- milestones --------------------------------------------------------------------------------


def _milestone(
    turn: Turn, jv: JourneyVersion, trigger: MilestoneTrigger, event: EventInput, _changes: Any = None
) -> None:
    if not _matches(turn, event, trigger.event, trigger.where):
        return
    counters = turn.state.counters
    reached = False
    # One counter per journey and kind: a journey republished from a count to a streak (or
    # a sum) must not read the old int as a dict, which raised on every such event.
    if trigger.count is not None:
        ckey = f"{jv.journey_id}:count"
        count = counters.get(ckey, 0) + 1
        counters[ckey] = count
        reached = count == trigger.count
    elif trigger.sum is not None:
        found, value = get_path(event.properties, trigger.sum.property)
        amount = as_number(value) if found else None
        if amount is None:
            return
        ckey = f"{jv.journey_id}:sum"
        before = counters.get(ckey, 0.0)
        after = before + amount
        if not math.isfinite(after):
            return  # two 1e308 orders: keep the sum JSON can hold
        counters[ckey] = after
        reached = before < trigger.sum.reaches <= after
    elif trigger.streak is not None:
        day = timecalc.local_day(event.timestamp_ms, timecalc.zone_of(turn.state.traits))
        ckey = f"{jv.journey_id}:streak"
        streak = counters.get(ckey) or {"day": None, "len": 0}
        if streak["day"] is not None and day <= streak["day"]:
            return  # same day, or a late event from an earlier day
        streak = {"day": day, "len": streak["len"] + 1 if streak["day"] == day - 1 else 1}
        counters[ckey] = streak
        reached = streak["len"] == trigger.streak.days
    if reached and not _late(turn, event, trigger.max_lateness):
        enter(turn, jv, trigger_of(event), event.timestamp_ms)


# --- location ----------------------------------------------------------------------------------


def _location(
    turn: Turn, jv: JourneyVersion, trigger: LocationTrigger, event: EventInput, _changes: Any = None
) -> None:
    if trigger.event is not None and event.name != trigger.event:
        return
    if turn.coords_of is not event:
        turn.coords_of, turn.coords = event, timecalc.event_coordinates(event)
    coords = turn.coords
    if coords is None or _late(turn, event, trigger.max_lateness):
        return
    places = turn.catalog.location_places(jv.journey_id, jv.version, trigger)
    if not places:
        return  # catalog_places that select nothing (yet): no geofence to be in
    # The same places (the catalog gives equal lists as one) are searched once per event.
    shared = _shared(turn, event).nearest
    assert shared is not None
    nearest = shared.get(id(places))
    if nearest is None:
        lat, lon = coords
        nearest = shared[id(places)] = min(
            ((timecalc.haversine_m(lat, lon, p.latitude, p.longitude), p) for p in places), key=lambda dp: dp[0]
        )
    distance, place = nearest
    # A geofence fires on the way in, not on every ping inside it: an app that reports its
    # position each minute must not start a run each minute. Leaving (or a ping nearer to
    # another place) resets it.
    key = f"{jv.journey_id}:inside"
    inside = (place.id or place.name) if distance <= trigger.radius_m else None
    before = turn.state.counters.get(key)
    if inside is None:
        turn.state.counters.pop(key, None)
        return
    turn.state.counters[key] = inside
    if before != inside:
        where = {
            "name": place.name,
            "latitude": place.latitude,
            "longitude": place.longitude,
            "distance_m": round(distance, 1),
        }
        if place.id is not None:
            where["id"] = place.id
        enter(turn, jv, trigger_of(event, place=where), event.timestamp_ms)


# Each trigger class (they are siblings, none a subclass of another) and how it reacts to an
# event; SegmentTrigger is not here: it reacts to membership changes (core/segments.py).
_BY_KIND: dict[type, Any] = {
    EventTrigger: _event,
    EventNotFollowedTrigger: _not_followed,
    InactivityTrigger: _activity,
    AttributeChangeTrigger: _attribute_change,
    DateRelativeTrigger: _date_relative,
    MilestoneTrigger: _milestone,
    LocationTrigger: _location,
}
