"""Segment membership, decided incrementally by the engine (pure: no I/O, no wall clock).

Public entry points for the apply path (computing a segment for people already stored):
- `compute(catalog, state, segment_id, at_ms, past=None) -> Membership`: whether the person
  is in one live segment at `at_ms`, and when the answer could next change with no new
  event (the lapse timer to arm). Pure: `state` is not changed; `past` (the person's stored
  events as EventInputs) stands in for the kept history and reachability facts when given.
- `needs(catalog, segment_id) -> SegmentNeeds`: what `past` must hold for one segment.
- `explain(catalog, state, segment_id, at_ms, past=None) -> Explanation`: the same answer,
  condition by condition, with what each read (the console's "why is this person in or out").
- `Engine.on_segment_apply(state, segment_id, past, now_ms)` (core/engine.py, calling
  `apply` here) is the same computation inside an engine turn: it rebuilds the kept history
  from `past`, records membership, and returns SegmentChanged (cause {"apply": version})
  when it differs from the state's, and the lapse timer. It starts and ends no journey run:
  applying a segment is not the person doing something (a journey triggered on entering it
  would otherwise message everyone who already was in it). Lapses already due by then (a
  timer not fired yet) are decided first, by catch_up, as their timer would have; all but the
  applied segment's, which the apply decides.

What the engine does (core/engine.py calls catch_up, on_event, on_traits, on_timer,
end_runs, start):
- The first event of a person segments have not seen yet (no apply reached them: they are
  new) decides every live segment. After that, only the segments an event can change are
  decided (core/segment_index.py): those that
  count the event (`performed`, `engaged`), read a trait it changed (identify, or a journey's
  update_profile), a group trait (group call), or reachability (Unsubscribed, Subscription
  Preferences Updated, Push Subscribed / Unsubscribed, the first device token seen); then,
  in dependency order, the segments that refer to one whose membership changed.
- A change is recorded in `state.membership` (id -> since) and emitted as SegmentChanged
  with its cause: {"event": name, "message_id": id}; {"timer": "window"} for a window that
  lapsed; {"event": "update_profile", "message_id": None} for a journey's profile update.
- Windows lapse by timer, never by polling: for a segment with `performed` or `engaged`
  conditions, the earliest instant at which one of them could change its answer without a
  new event (an occurrence it counts leaving its window) is kept per segment in
  `segment_facts["due"]`, updated whenever the segment is decided. The person has one lapse
  timer for all their segments (key `seg:*`), armed at the earliest of those instants and
  moved only when one comes earlier than it: a new occurrence that pushes a lapse later
  (every order of a regular buyer) writes no timer. A timer that fires before anything is
  due finds nothing to decide and is armed again at the earliest instant then; it is never
  late. "No order in 30 days" becomes true, and "3 orders in 30 days" false, when it fires.
  Before an event is looked at, every lapse due at or before its time is decided first (at
  its due time, as if its timer had fired): when the runtime fires a timer, relative to the
  events of a batch, then changes nothing.

Time. Windows are measured on event time, as event-count conditions are, but never
backwards: a person's segments are decided at max(the event's time, the latest instant they
were decided at), kept in `state.segment_facts["at"]`. A late event (an offline queue) thus
counts if it is still inside the window at that instant, and cannot make a membership
flip back in time. A lapse timer decides at its due time. The same events in any batching
give the same changes, at the same instants.

Conditions (docs/segments.md):
- trait: the journey filter operators on the person's traits (`group.<trait>` for their
  group's); a `{ref: trigger.…}` has no trigger here and is null.
- performed: occurrences of the event passing `where` with event time in (at - within, at],
  counted (compared with `count` by `op`) or their `sum.property` summed (non-numbers left
  out). The engine keeps at least the newest count+1 occurrences (SUM_HISTORY_CAP for a sum);
  with `where`, the non-matching ones take room too.
- engaged: at least one open (a click counts as an open) or click of an email or push in
  the window; with `journey`, of that journey's messages, as named by the engagement event's
  `journey_id` property (Nudgeflow's own tracking and push reports carry it; an SDK's event
  without it counts only for conditions without `journey`). An open or click flagged as a
  machine's (`machine: true` or `bot: true`, model/engagement_signals.py) does not count.
- reachable email: an `email` trait (a non-empty text) and not unsubscribed from all
  marketing email: the latest of `Unsubscribed` with topic "*" (store.consent's ALL),
  `Subscription Preferences Updated` with `subscribed`, and `Consent Updated` for channel
  email and topic "*" decides, by event time (one arriving late, older than the choice
  that decided, changes nothing: _choose). A topic's unsubscribe does not count, and neither does
  suppression of the address (bounces, complaints) nor an opt_in workspace's want of a
  recorded yes: those are the dispatcher's to apply.
- reachable push: a Web Push subscription the engine saw (`Push Subscribed`, less `Push
  Unsubscribed` of the same endpoint hash), or a mobile device token seen on any event
  (context.device.token, as Segment's SDKs send it), and no `Consent Updated` no for
  channel push and topic "*" since. The engine sees no event for a device registered only
  through the admin API, for a token removed there, nor for a subscription or token the
  push service reported gone: `reachable: push` does not follow those.
- segment: membership of another live segment now. A condition on a segment that is not
  live (not applied, archived, misspelled) is false, negated or not.

Journeys: `entry.filter` and branch conditions `{segment: ID, negate}` read membership as it
is when they are evaluated (after this event's changes). A segment trigger
(`segment:<id>:enter|exit` in the catalog) enters its journey in the same turn as the
change, after the event's own triggers, and `exit.segment` ends a journey's active or held
runs when the person leaves that segment (reason `segment_exit`), after the event's goals
and exit events. A journey that refers to a segment that is not live is never triggered by
it, and its filters on it are false.
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nudgeflow.core import sending
from nudgeflow.core.catalog import HISTORY_CAP, Catalog
from nudgeflow.core.conditions import Scope, compile_filter, compiled, compiled_entry, evaluate_one, get_path
from nudgeflow.core.effects import SegmentChanged
from nudgeflow.core.inputs import EventInput, TimerInput
from nudgeflow.core.segment_index import (
    EMAIL_REACH_EVENTS,
    EMAIL_TRAIT,
    ENGAGED_JOURNEY,
    GROUP_PREFIX,
    PUSH_REACH_EVENTS,
    PUSH_TARGET_EVENTS,
    Guard,
    SegmentIndex,
    SegmentVersion,
    engaged_names,
    leaves,
    requires_occurrence,
    segment_history_needs,
)
from nudgeflow.core.state import ACTIVE, DONE, EXITED, HELD, ProfileState
from nudgeflow.core.steps import end, enter
from nudgeflow.core.turn import Turn, timer_key
from nudgeflow.model import event_names
from nudgeflow.model.engagement_signals import BOT, MACHINE
from nudgeflow.model.events import is_own_event
from nudgeflow.model.journeys import Filter, Ref, SegmentCondition, SegmentTrigger, TraitCondition, duration_ms
from nudgeflow.model.numbers import as_number
from nudgeflow.model.segments import (
    AllOf,
    AnyOf,
    EngagedCondition,
    NotRule,
    PerformedCondition,
    ReachableCondition,
)

SEGMENT_TIMER = "segment"  # a lapse timer's payload kind
ALL_TOPICS = "*"  # store.consent.ALL: the topic of an unsubscribe from all marketing email
MAX_LOOKBACK_MS = 365 * 86_400_000  # as core.backfill reads the past, for an unbounded window
MAX_WEBPUSH = 20  # endpoint hashes kept per person (one is enough to be reachable)
SEGMENT_EXIT = "segment_exit"  # a run's exit reason when its journey's exit.segment is left
CAUSE_TIMER: dict[str, Any] = {"timer": "window"}
CAUSE_UPDATE: dict[str, Any] = {"event": "update_profile", "message_id": None}


@dataclass(frozen=True, slots=True)
class Membership:
    """One person and one segment at one instant."""

    member: bool
    # The next instant the answer could change with no new event (a counted occurrence
    # leaving its window, or one stamped later coming into it); None: not without an event.
    next_due_ms: int | None


@dataclass(frozen=True, slots=True)
class SegmentNeeds:
    """What the store must read of a person's past to compute a segment (see compute)."""

    names: frozenset[str]  # stored events of these names...
    lookback_ms: int  # ...at most this far back from now
    # Also one stored event whose context carries a mobile device token
    # (context.device.token), for `reachable: push`.
    device_token: bool
    # No one without a stored event of `names` in the lookback can be in the segment (it
    # requires an occurrence: segment_index.requires_occurrence). An apply need not decide
    # such a person unless they are a member now.
    required: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """A membership change decided in this turn (what end_runs and start react to)."""

    segment: SegmentVersion
    entered: bool
    at_ms: int
    cause: dict[str, Any]


# --- the public, pure computation ------------------------------------------------------------


def needs(catalog: Catalog, segment_id: str) -> SegmentNeeds:
    """What compute() needs in `past` for this live segment (not those it refers to: their
    membership is read from the state). Nothing for a segment that is not live."""
    index = catalog.segment_index
    sv = index.get(segment_id) if index is not None else None
    if sv is None:
        return SegmentNeeds(frozenset(), 0, False)
    names: set[str] = set()
    lookback = 0
    for name, _keys, _window, _cap in segment_history_needs(sv.definition):
        names.add(name)
        # The kept history of a name is rebuilt whole, so it must reach as far back as the
        # longest window anything live reads it with (a journey's count without `within`: a year).
        window = catalog.history_window.get(name)
        lookback = max(lookback, MAX_LOOKBACK_MS if window is None else min(window, MAX_LOOKBACK_MS))
    email, push = _reach_kinds(sv)
    if email:
        names.update(EMAIL_REACH_EVENTS)
    if push:
        names.update(PUSH_REACH_EVENTS)
    if email or push:
        lookback = MAX_LOOKBACK_MS  # an unsubscribe a year ago still holds
    return SegmentNeeds(frozenset(names), lookback, push, requires_occurrence(sv.definition.when))


def compute(
    catalog: Catalog, state: ProfileState, segment_id: str, at_ms: int, past: Sequence[EventInput] | None = None
) -> Membership:
    """Whether the person is in the live segment `segment_id` at `at_ms`, and when to look again.

    Membership of the segments it refers to is read from `state.membership` (compute those
    first: Catalog.segment_index.order is dependency order). A segment that is not live is
    no one's. `past` (any order) replaces the kept history of the names needs() lists, and
    the reachability facts; without it, the state's are read."""
    index = catalog.segment_index
    sv = index.get(segment_id) if index is not None else None
    if index is None or sv is None:
        return Membership(False, None)
    history, facts = state.history, state.segment_facts
    if past is not None:
        wanted = needs(catalog, segment_id)
        history = {**history, **_history_from(catalog, wanted.names, past)}
        facts = dict(facts)
        _set_reach(facts, _facts_from(index, past), sv)
    ctx = _Ctx(state, at_ms, index, history, facts)
    pos = index.position[segment_id]
    plan = _plan(index)
    return Membership(plan.tests[pos](ctx), _next_change(plan.timed.get(pos, ()), ctx))


@dataclass(frozen=True, slots=True)
class ConditionCheck:
    """One condition of a segment's tree, evaluated for one person (explain())."""

    path: str  # where it is in the definition: "when", "when.all[0]", "when.all[1].not"
    kind: str  # trait | performed | engaged | reachable | segment | all | any | not
    rule: object  # the condition as defined (a model of nudgeflow.model.segments)
    holds: bool
    # What the answer was read from: a trait's value, the occurrences counted in the window,
    # the latest counted engagement, the reachability facts, another segment's membership.
    seen: dict[str, Any]
    children: tuple[ConditionCheck, ...] = ()


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a person is in a live segment or not at one instant: its conditions, each evaluated."""

    segment_id: str
    version: int
    at_ms: int
    member: bool  # the whole tree's answer (compute()'s)
    check: ConditionCheck


def explain(
    catalog: Catalog, state: ProfileState, segment_id: str, at_ms: int, past: Sequence[EventInput] | None = None
) -> Explanation | None:
    """Each condition of the live segment evaluated for the person at `at_ms`, with what it
    read (the console's "why is this person in or out"); None for a segment that is not live.

    Pure, and the same tests as compute() (the engine's own, node by node), read from the
    same context: `past` as in compute(). Every node is evaluated, also those an all/any
    would not have reached, so the reader sees each one's answer."""
    index = catalog.segment_index
    sv = index.get(segment_id) if index is not None else None
    if index is None or sv is None:
        return None
    history, facts = state.history, state.segment_facts
    if past is not None:
        history = {**history, **_history_from(catalog, needs(catalog, segment_id).names, past)}
        facts = dict(facts)
        _set_reach(facts, _facts_from(index, past), sv)
    ctx = _Ctx(state, at_ms, index, history, facts)
    check = _check(sv.definition.when, "when", ctx)
    return Explanation(segment_id, sv.version, at_ms, check.holds, check)


def _check(rule: object, path: str, ctx: _Ctx) -> ConditionCheck:
    live = ctx.index.position
    if isinstance(rule, (AllOf, AnyOf)):
        kind, items = ("all", rule.all) if isinstance(rule, AllOf) else ("any", rule.any)
        children = tuple(_check(item, f"{path}.{kind}[{i}]", ctx) for i, item in enumerate(items))
        holds = all(c.holds for c in children) if kind == "all" else any(c.holds for c in children)
        return ConditionCheck(path, kind, rule, holds, {}, children)
    if isinstance(rule, NotRule):
        inner = _check(rule.not_, f"{path}.not", ctx)
        return ConditionCheck(path, "not", rule, not inner.holds, {}, (inner,))
    holds = _compile(rule, live)(ctx)
    if isinstance(rule, TraitCondition):
        if rule.trait.startswith(GROUP_PREFIX):
            found, value = get_path(ctx.state.group_traits or {}, rule.trait[len(GROUP_PREFIX) :])
        else:
            found, value = get_path(ctx.state.traits, rule.trait)
        return ConditionCheck(path, "trait", rule, holds, {"found": found, "value": value})
    if isinstance(rule, PerformedCondition):
        return ConditionCheck(path, "performed", rule, holds, _tally(rule, ctx))
    if isinstance(rule, EngagedCondition):
        return ConditionCheck(path, "engaged", rule, holds, {"latest_at": _latest_engagement(rule, ctx)})
    if isinstance(rule, ReachableCondition):
        email = ctx.state.traits.get(EMAIL_TRAIT)
        seen = {
            "email": isinstance(email, str) and bool(email.strip()),
            "email_unsubscribed": bool(ctx.facts.get("email_off")),
            "push_target": bool(ctx.facts.get("webpush")) or bool(ctx.facts.get("device")),
            "push_refused": bool(ctx.facts.get("push_off")),
        }
        return ConditionCheck(path, "reachable", rule, holds, seen)
    if isinstance(rule, SegmentCondition):
        seen = {"live": rule.segment in live, "member": rule.segment in ctx.state.membership}
        return ConditionCheck(path, "segment", rule, holds, seen)
    return ConditionCheck(path, "unknown", rule, holds, {})


def _tally(rule: PerformedCondition, ctx: _Ctx) -> dict[str, Any]:
    """The occurrences a `performed` condition counts in its window (passing `where`), and
    their sum of `sum.property` when it sums."""
    within = duration_ms(rule.within)
    entries, lo, hi = _span(ctx.history.get(rule.performed) or [], ctx.at - within, ctx.at)
    matcher = None
    scope = None
    if rule.where:
        _, matcher, needs_scope = compiled_entry(rule.where)
        scope = ctx.scope() if needs_scope else None
    count, total = 0, 0.0
    for entry in entries[lo:hi]:
        props = entry[1] if len(entry) > 1 and type(entry[1]) is dict else {}
        if matcher is not None and not matcher(props, scope):
            continue
        count += 1
        if rule.sum is not None:
            found, value = get_path(props, rule.sum.property)
            number = as_number(value) if found else None
            if number is not None:
                total += float(number)
    out: dict[str, Any] = {"count": count, "since_ms": ctx.at - within}
    if rule.sum is not None:
        out["sum"] = total
    return out


def _latest_engagement(rule: EngagedCondition, ctx: _Ctx) -> int | None:
    """The newest open or click in the window that counts for the condition, if any."""
    within = duration_ms(rule.within)
    newest: int | None = None
    for name in engaged_names(rule):
        entries, lo, hi = _span(ctx.history.get(name) or [], ctx.at - within, ctx.at)
        last = next((entries[i][0] for i in range(hi - 1, lo - 1, -1) if _counts(entries[i], rule.journey)), None)
        if last is not None and (newest is None or last > newest):
            newest = last
    return newest


def apply(turn: Turn, segment_id: str, past: Sequence[EventInput]) -> None:
    """Engine.on_segment_apply's turn: see the module docstring."""
    index = turn.catalog.segment_index
    pos = index.position.get(segment_id) if index is not None else None
    if index is None or pos is None:
        return
    state = turn.state
    # Every occurrence the engine kept came from an event it decided, and those are all in
    # the store: the stored ones replace the kept ones rather than adding to them.
    for name, entries in _history_from(turn.catalog, needs(turn.catalog, segment_id).names, past).items():
        if entries:
            state.history[name] = entries
        else:
            state.history.pop(name, None)
    _set_reach(state.segment_facts, _facts_from(index, past), index.order[pos])
    _decide(turn, index, {pos}, _clock(state, turn.now_ms), {"apply": index.order[pos].version})
    arm_lapse_timer(turn)


# --- the engine's side -------------------------------------------------------------------------


def on_event(turn: Turn, event: EventInput, changes: dict[str, tuple[Any, Any]]) -> list[Change]:
    """Decide the segments this event may change (see the module docstring)."""
    index = turn.catalog.segment_index
    assert index is not None  # the engine calls this only when there are live segments
    todo: set[int] = set()
    facts = turn.state.segment_facts
    if "at" not in facts or REDECIDE in facts:
        # The first time segments see this person (apply has not reached them: they are
        # new), or again after a merge (redecide_all; its mark, not a missing "at", says so:
        # "at" stays, and a lapse catch_up decided before this event sets it anyway): "no
        # order in 30 days" must not wait for an order. A new person is someone of whom the
        # engine knows only this event, so the segments it does not touch answer as for no
        # one at all: only those that hold for no one at all need deciding besides. A merged
        # person: every segment.
        todo.update(range(len(index.order)) if facts.pop(REDECIDE, None) else _empty_true(index))
    hit = index.by_event.get(event.name)
    if hit:
        entries = _plan(index).hits.get(event.name)
        if entries is not None:
            _unguarded(turn, event, entries, todo)
        else:
            todo.update(hit)
    if changes and index.by_trait:
        for name in changes:
            found = index.by_trait.get(name)
            if found:
                todo.update(found)
    if event.group_id is not None and index.on_group:
        todo.update(index.on_group)
    if (index.email_facts or index.push_facts) and _observe(index, turn.state.segment_facts, event):
        todo.update(index.on_device)
    if not todo:
        if hit:
            _clock(turn.state, event.timestamp_ms)  # as if they had been decided (segment_index)
        return []
    at = _clock(turn.state, event.timestamp_ms)
    return _decide(turn, index, todo, at, {"event": event.name, "message_id": event.message_id})


def _unguarded(turn: Turn, event: EventInput, entries: Sequence[_Hit], todo: set[int]) -> None:
    """Add to `todo` the segments an occurrence of the event may change (`entries`: the
    plan's for its name, each with its Guard): not those the Guard says it cannot
    (core/segment_index.py)."""
    state, name = turn.state, event.name
    # core/engine.py's _remember has kept this occurrence already. A full kept history pushed
    # its oldest one out for it, which a `where` may have counted.
    kept = len(state.history.get(name) or ())
    full = kept >= turn.catalog.history_cap.get(name, HISTORY_CAP)
    membership = state.membership
    props = event.properties
    accepted: dict[int, bool] = {}  # where filters tested on this event, by their place in the plan
    for pos, sid, guard, wheres in entries:
        if guard is None or (full and guard.filtered):
            todo.add(pos)
            continue
        if wheres is not None:
            counted = False
            for key, matcher in wheres:
                found = accepted.get(key)
                if found is None:
                    found = accepted[key] = matcher(props, None)
                if found:
                    counted = True
                    break
            if not counted:
                continue  # counted by no condition of the segment
        member = sid in membership
        if guard.way is not None and member == guard.way:
            continue
        if not member and kept < guard.need:
            continue  # too few occurrences kept for it to hold
        todo.add(pos)


def on_traits(turn: Turn, changes: dict[str, tuple[Any, Any]]) -> None:
    """Traits a journey's update_profile step changed: decide the segments that read them,
    and let runs and triggers react."""
    index = turn.catalog.segment_index
    if index is None or not index.by_trait:
        return
    todo: set[int] = set()
    for name in changes:
        found = index.by_trait.get(name)
        if found:
            todo.update(found)
    if todo:
        # At the event's time, or the timer's due time: never the time the batch is processed,
        # which would move the person's clock (and every window after it) to whenever it ran.
        done = _decide(turn, index, todo, _clock(turn.state, turn.message_ms), CAUSE_UPDATE)
        end_runs(turn, done)
        start(turn, done)


def on_timer(turn: Turn, timer: TimerInput) -> None:
    """The person's lapse timer fell due: decide every lapse due by then, each at its own due
    time and in order, and arm the timer again at the next one. (A timer of the per-segment
    kind an earlier version armed, key `seg:<id>`, is decided the same way.)"""
    facts = turn.state.segment_facts
    if timer.key == LAPSE_TIMER:
        facts.pop(ARMED, None)  # fired: nothing is armed now
    if turn.catalog.segment_index is None:
        # Every segment was archived since: nothing is left to lapse, and a timer armed again
        # at a due time already past would fire at once, for ever.
        facts.pop("due", None)
        return
    catch_up(turn, timer.due_ms)
    arm_lapse_timer(turn)


def catch_up(turn: Turn, until_ms: int, applying: str | None = None) -> None:
    """Decide every lapse due at or before `until_ms`, each at its own due time, in order.

    The engine calls this before it looks at an event: a lapse that happened before the
    event is decided before it, whether or not the runtime fired its timer yet, so the same
    events give the same changes however they are batched and whenever timers fire. The
    timer itself is left as it is: armed early, it fires, finds nothing due, and is armed again.

    `applying`: the segment an apply is about to decide at `until_ms` (Engine.on_segment_apply).
    It is left out, as a lapse and as a dependent of one: the version being applied did not
    exist at those due times, and the apply decides it from the stored events."""
    index = turn.catalog.segment_index
    skip = index.position.get(applying, -1) if index is not None and applying is not None else -1
    facts = turn.state.segment_facts
    timer_at = facts.get(ARMED)
    if isinstance(timer_at, int) and timer_at > until_ms:
        return  # the lapse timer is armed no later than the earliest lapse (arm_lapse_timer)
    while index is not None:
        armed = facts.get("due")
        if not isinstance(armed, dict) or not armed:
            return
        first = min(armed.values())
        if first > until_ms:
            return
        due_now = sorted(sid for sid, due in armed.items() if due == first)
        for sid in due_now:
            del armed[sid]
        if not armed:
            del facts["due"]
        todo = {index.position[sid] for sid in due_now if sid in index.position}
        todo.discard(skip)
        done = _decide(turn, index, todo, _clock(turn.state, first), CAUSE_TIMER, skip) if todo else []
        end_runs(turn, done)
        start(turn, done)


def lapse_due(state: ProfileState, until_ms: int) -> bool:
    """Whether a lapse of the person's is due at or before `until_ms` (catch_up would decide one)."""
    due = state.segment_facts.get("due")
    return isinstance(due, dict) and any(isinstance(t, int) and t <= until_ms for t in due.values())


LAPSE_TIMER = timer_key("seg", "*")  # the person's one lapse timer (`*` is no segment id)
ARMED = "armed"  # segment_facts: the due time the lapse timer is armed at


def arm_lapse_timer(turn: Turn) -> None:
    """Arm the person's lapse timer at the earliest lapse due, unless it is armed earlier
    already (see the module docstring). Called once at the end of a turn that decided segments."""
    facts = turn.state.segment_facts
    due = facts.get("due")
    if not isinstance(due, dict) or not due:
        return  # an armed timer fires, finds nothing due, and is not armed again
    first = min(due.values())
    armed = facts.get(ARMED)
    if isinstance(armed, int) and armed <= first:
        return
    facts[ARMED] = first
    turn.schedule(LAPSE_TIMER, first, {"kind": SEGMENT_TIMER})


def end_runs(turn: Turn, done: Sequence[Change]) -> None:
    """End the active and held runs of journeys whose `exit.segment` the person just left; a
    done run still holding a deferred message loses it (what would have ended the run drops
    it, as an exit event does: core/sending.py)."""
    left = {change.segment.segment_id for change in done if not change.entered}
    if not left:
        return
    for run in list(turn.state.runs.values()):
        waits = run.status == DONE and bool(run.messages) and sending.awaits_release(run)
        if run.status not in (ACTIVE, HELD) and not waits:
            continue
        journey = turn.catalog.version(run.journey_id, run.version)
        if journey is None or journey.exit.segment not in left:
            continue
        if waits:
            sending.drop_deferred(turn, run)
        else:
            end(turn, run, EXITED, SEGMENT_EXIT)


def start(turn: Turn, done: Sequence[Change]) -> None:
    """Enter the journeys triggered by these changes, in the order of the changes (dependency
    order), each change's journeys by priority as the catalog lists them."""
    triggers = turn.catalog.triggers
    for change in done:
        sid = change.segment.segment_id
        listening = triggers.get(f"segment:{sid}:{'enter' if change.entered else 'exit'}")
        if not listening:
            continue
        info = {
            "event": event_names.SEGMENT_ENTERED if change.entered else event_names.SEGMENT_EXITED,
            "message_id": change.cause.get("message_id"),
            "at": change.at_ms,
            "properties": {"segment": sid, "version": change.segment.version, "cause": change.cause},
        }
        for jv in listening:
            trigger = jv.definition.trigger
            if not isinstance(trigger, SegmentTrigger):  # pragma: no cover - the signal says it is one
                continue
            lateness = trigger.max_lateness
            if lateness is not None and turn.now_ms - change.at_ms > duration_ms(lateness):
                continue  # a change decided on a late event: as for any trigger
            enter(turn, jv, dict(info), change.at_ms)


REDECIDE = "redecide"  # segment_facts: decide every segment on the next event


def redecide_all(state: ProfileState) -> None:
    """Have the person's next event decide every live segment (after their state changed
    outside the engine: a merge of two people, runtime/merges.py). The latest instant decided
    ("at") stays: deciding them again does not go back in time either."""
    state.segment_facts[REDECIDE] = True


Test = Callable[["_Ctx"], bool]


TimedTest = Callable[["_Ctx"], tuple[bool, int | None]]
# An event name's segments in the plan: (position, segment id, its Guard or None when every
# occurrence decides it, the Guard's `where` filters compiled with a key each, or None).
_Hit = tuple[int, str, Guard | None, tuple[tuple[int, Callable[[Any, Any], bool]], ...] | None]


@dataclass(frozen=True, slots=True)
class _Plan:
    """A segment index's conditions turned into tests once (as conditions.compiled does for
    filters): deciding a segment is then calls of closures, not a walk of the model. Built
    once per catalog (a new version of a segment is a new catalog, hence a new plan)."""

    index: SegmentIndex
    tests: tuple[Test, ...]  # by position
    empty_true: tuple[int, ...]  # the segments someone of whom nothing is known is in
    # By position: (segment id, version), and the windowed conditions as (memo key, test).
    ids: tuple[tuple[str, int], ...]
    timed: dict[int, tuple[tuple[int, TimedTest], ...]]
    # Event name -> its segments with their guards, for the names some segment guards.
    hits: dict[str, tuple[_Hit, ...]]


_PLANS: dict[int, _Plan] = {}


def _plan(index: SegmentIndex) -> _Plan:
    found = _PLANS.get(id(index))
    if found is not None and found.index is index:
        return found
    tests = tuple(_compile(sv.definition.when, index.position) for sv in index.order)
    timed = {pos: tuple((id(leaf), _timed_test(leaf)) for leaf in leaves_) for pos, leaves_ in index.timed.items()}
    keys: dict[int, int] = {}  # a `where` list's place, by identity: the same list is tested once per event
    hits: dict[str, tuple[_Hit, ...]] = {}
    for name, guards in index.guards.items():
        entries: list[_Hit] = []
        for pos in index.by_event.get(name, ()):
            guard = guards.get(pos)
            wheres = None
            if guard is not None and guard.wheres is not None:
                wheres = tuple((keys.setdefault(id(w), len(keys)), compiled(w)) for w in guard.wheres)
            entries.append((pos, index.order[pos].segment_id, guard, wheres))
        hits[name] = tuple(entries)
    nobody = ProfileState("")
    ctx = _Ctx(nobody, 0, index, {}, {})
    held = []
    for pos, sv in enumerate(index.order):
        if tests[pos](ctx):
            nobody.membership[sv.segment_id] = 0
            held.append(pos)
    if len(_PLANS) > 100:  # catalogs were reloaded many times: keep the live ones
        _PLANS.clear()
    ids = tuple((sv.segment_id, sv.version) for sv in index.order)
    found = _PLANS[id(index)] = _Plan(index, tests, tuple(held), ids, timed, hits)
    return found


def _empty_true(index: SegmentIndex) -> tuple[int, ...]:
    return _plan(index).empty_true


def _compile(rule: object, live: Container[str]) -> Test:
    """One condition tree as a test of a decision's context."""
    if isinstance(rule, TraitCondition):
        if isinstance(rule.value, Ref):
            trait_rule = rule
            return lambda ctx: evaluate_one(trait_rule, ctx.scope())
        if rule.trait.startswith(GROUP_PREFIX):
            in_group = compile_filter(Filter(property=rule.trait[len(GROUP_PREFIX) :], op=rule.op, value=rule.value))
            return lambda ctx: in_group(ctx.state.group_traits or {}, None)
        # A trait condition is a filter on the traits (conditions.evaluate_one reads them so).
        matcher = compile_filter(Filter(property=rule.trait, op=rule.op, value=rule.value))
        return lambda ctx: matcher(ctx.state.traits, None)
    if isinstance(rule, (PerformedCondition, EngagedCondition)):
        key, timed = id(rule), _timed_test(rule)

        def windowed(ctx: _Ctx) -> bool:
            found = ctx.memo.get(key)
            if found is None:
                found = ctx.memo[key] = timed(ctx)
            return found[0]

        return windowed
    if isinstance(rule, ReachableCondition):
        kind = rule.reachable
        return lambda ctx: _reachable(kind, ctx.state.traits, ctx.facts)
    if isinstance(rule, SegmentCondition):
        if rule.segment not in live:
            return lambda ctx: False
        sid, negate = rule.segment, rule.negate
        return lambda ctx: (sid in ctx.state.membership) != negate
    if isinstance(rule, (AllOf, AnyOf)):
        tests = tuple(_compile(item, live) for item in (rule.all if isinstance(rule, AllOf) else rule.any))
        # Loops, not all()/any() over a generator: a generator built per decision cost more
        # than the tests it ran (the same finding as conditions.compile_filters').
        if isinstance(rule, AllOf):

            def all_of(ctx: _Ctx) -> bool:
                for test in tests:  # noqa: SIM110
                    if not test(ctx):
                        return False
                return True

            return all_of

        def any_of(ctx: _Ctx) -> bool:
            for test in tests:  # noqa: SIM110
                if test(ctx):
                    return True
            return False

        return any_of
    if isinstance(rule, NotRule):
        inner = _compile(rule.not_, live)
        return lambda ctx: not inner(ctx)
    return lambda ctx: False  # not a segment condition: matches nothing rather than raising


# --- deciding --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Ctx:
    state: ProfileState
    at: int
    index: SegmentIndex
    history: dict[str, list[list[Any]]]
    facts: dict[str, Any]
    scope_: Scope | None = field(default=None)
    memo: dict[int, tuple[bool, int | None]] = field(default_factory=dict)  # windowed conditions, by id

    def scope(self) -> Scope:
        if self.scope_ is None:
            state = self.state
            self.scope_ = Scope(state.traits, self.at, self.history, group=state.group_traits)
        return self.scope_


def _clock(state: ProfileState, t: int) -> int:
    """The instant to decide at: never before the last one (see the module docstring)."""
    facts = state.segment_facts
    last = facts.get("at")
    at = t if not isinstance(last, int) or t > last else last
    facts["at"] = at
    return at


def _decide(
    turn: Turn, index: SegmentIndex, todo: Iterable[int], at: int, cause: dict[str, Any], skip: int = -1
) -> list[Change]:
    """Decide the segments at these positions at `at`, and those that refer to one that
    changed; `skip` (a position) is not decided as one (catch_up's `applying`)."""
    state = turn.state
    membership = state.membership
    ctx = _Ctx(state, at, index, state.history, state.segment_facts)
    plan = _plan(index)
    tests, ids, timed = plan.tests, plan.ids, plan.timed
    queue = sorted(todo)
    done: list[Change] = []
    i = 0
    while i < len(queue):
        pos = queue[i]
        i += 1
        sid, version = ids[pos]
        member = tests[pos](ctx)
        leaves_ = timed.get(pos)
        if leaves_ is not None:
            _arm(sid, _next_change(leaves_, ctx), ctx.facts)
        if member == (sid in membership):
            continue
        if member:
            membership[sid] = at
        else:
            del membership[sid]
        turn.emit(SegmentChanged(sid, version, member, at, dict(cause)))
        done.append(Change(index.order[pos], member, at, cause))
        dependents = index.dependents.get(pos)
        if dependents:
            # Later in the order than this one: decided in this same pass, after it.
            later = {*queue[i:], *dependents}
            later.discard(skip)
            queue = sorted(later)
            i = 0
    return done


def _arm(sid: str, due: int | None, facts: dict[str, Any]) -> None:
    """Keep the segment's next possible change in segment_facts["due"] (arm_lapse_timer arms
    the person's timer from it once the turn's decisions are done)."""
    armed = facts.get("due")
    if due is None:
        if isinstance(armed, dict) and sid in armed:
            del armed[sid]
            if not armed:
                del facts["due"]
        return
    if not isinstance(armed, dict):
        armed = facts["due"] = {}
    armed[sid] = due


def _next_change(leaves_: Iterable[tuple[int, TimedTest]], ctx: _Ctx) -> int | None:
    """The earliest instant after ctx.at at which a windowed condition of the segment (the
    plan's `timed` of its position) could change its answer with no new event (the segment's
    answer may then stay: it is decided again)."""
    best: int | None = None
    memo = ctx.memo
    for key, test in leaves_:
        found = memo.get(key)
        if found is None:
            found = memo[key] = test(ctx)
        due = found[1]
        if due is not None and (best is None or due < best):
            best = due
    return best


def _timed_test(rule: PerformedCondition | EngagedCondition) -> TimedTest:
    """A windowed condition as a test of a decision's context: (it holds at ctx.at, the next
    instant it could change). Decisions memoize it by the condition's identity (ctx.memo)."""
    if isinstance(rule, EngagedCondition):
        return lambda ctx: _engaged(rule, ctx)
    within = duration_ms(rule.within)
    if rule.where or rule.sum is not None:
        return lambda ctx: _performed(rule, ctx, within)
    name, count, op = rule.performed, rule.count, _OPS[rule.op]
    # As the oldest lapse one by one the count falls from n, and a comparison with `count`
    # can only change between count+1, count and count-1: the largest c below n where it
    # differs is where it flips, when the (n - c)-th oldest lapses.
    flips = (count, count - 1)

    def counted(ctx: _Ctx) -> tuple[bool, int | None]:
        at = ctx.at
        entries, lo, hi = _span(ctx.history.get(name) or [], at - within, at)
        # One stamped after `at` enters the window at its time (a look then that changes
        # nothing only re-arms the timer).
        future = entries[hi][0] if hi < len(entries) else None
        n = hi - lo
        now = op(n, count)
        for c in flips:
            if 0 <= c < n and op(c, count) != now:
                return now, _earliest(entries[lo + n - c - 1][0] + within, future)
        return now, future

    return counted


_OPS: dict[str, Callable[[float, float], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


# A kept entry's time, as the key of the binary searches: C-level, called per comparison.
_ts = operator.itemgetter(0)


def _span(entries: list[list[Any]], since: int, at: int) -> tuple[list[list[Any]], int, int]:
    """The history and the indices of its entries with a time in (since, at]: two binary
    searches, the kept history being in time order. A malformed entry counts as nothing
    rather than failing (the well-formed ones are sorted apart then)."""
    try:
        return entries, bisect_right(entries, since, key=_ts), bisect_right(entries, at, key=_ts)
    except (TypeError, IndexError, KeyError):
        good = sorted((e for e in entries if isinstance(e, list) and e and type(e[0]) is int), key=_ts)
        return good, bisect_right(good, since, key=_ts), bisect_right(good, at, key=_ts)


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None or (b is not None and b < a) else a


def _performed(rule: PerformedCondition, ctx: _Ctx, within: int) -> tuple[bool, int | None]:
    """A count with `where` filters, or a sum (the plain counts are _timed_test's own)."""
    at = ctx.at
    entries, lo, hi = _span(ctx.history.get(rule.performed) or [], at - within, at)
    # One stamped after `at` enters the window at its time (matching the filters or not: a
    # look then that changes nothing only re-arms the timer).
    future = entries[hi][0] if hi < len(entries) else None
    return _filtered(rule, ctx, entries[lo:hi], within, future)


def _filtered(
    rule: PerformedCondition, ctx: _Ctx, window: list[list[Any]], within: int, future: int | None
) -> tuple[bool, int | None]:
    """A count with `where` filters, or a sum: every occurrence in the window is looked at."""
    matcher, needs_scope = None, False
    if rule.where:
        _, matcher, needs_scope = compiled_entry(rule.where)
    scope = ctx.scope() if needs_scope else None
    summed = rule.sum.property if rule.sum is not None else None
    counted: list[tuple[int, float]] = []
    for entry in window:
        props = entry[1] if len(entry) > 1 and type(entry[1]) is dict else {}
        if matcher is not None and not matcher(props, scope):
            continue
        amount = 1.0
        if summed is not None:
            found, value = get_path(props, summed)
            number = as_number(value) if found else None
            if number is None:
                continue
            amount = float(number)
        counted.append((entry[0], amount))
    if rule.sum is not None:
        op, threshold = _OPS[rule.sum.op], rule.sum.value
    else:
        op, threshold = _OPS[rule.op], float(rule.count)
    # What is left once the oldest lapse, summed newest first: the additions a decision at
    # that later instant makes, in the same order, so a threshold is crossed where it says.
    left = [0.0] * (len(counted) + 1)
    for i in range(len(counted) - 1, -1, -1):
        left[i] = left[i + 1] + counted[i][1]
    now = op(left[0], threshold)
    i = 0
    while i < len(counted):
        lapse = counted[i][0] + within
        while i < len(counted) and counted[i][0] + within == lapse:
            i += 1
        if op(left[i], threshold) != now:
            return now, _earliest(lapse, future)
    return now, future


def _engaged(rule: EngagedCondition, ctx: _Ctx) -> tuple[bool, int | None]:
    """Engaged at least once in the window: true until the newest counted one lapses."""
    within = duration_ms(rule.within)
    at = ctx.at
    newest: int | None = None
    future: int | None = None
    for name in engaged_names(rule):
        entries, lo, hi = _span(ctx.history.get(name) or [], at - within, at)
        if hi < len(entries):
            future = _earliest(future, entries[hi][0])
        journey = rule.journey
        # The newest in the window that is the person's: a machine's open or click (flagged
        # machine / bot) is passed over, and with `journey`, one of another journey's messages.
        last = next((entries[i][0] for i in range(hi - 1, lo - 1, -1) if _counts(entries[i], journey)), None)
        if last is not None and (newest is None or last > newest):
            newest = last
    if newest is None:
        return False, future
    return True, _earliest(newest + within, future)


def _counts(entry: list[Any], journey: str | None) -> bool:
    """A kept open or click counts for `engaged` (of `journey`, if given)."""
    props = entry[1] if len(entry) > 1 and type(entry[1]) is dict else None
    if not props:  # the common case: a person's, with no journey asked for
        return journey is None
    if props.get(MACHINE) is True or props.get(BOT) is True:
        return False
    return journey is None or props.get(ENGAGED_JOURNEY) == journey


def _reachable(kind: str, traits: dict[str, Any], facts: dict[str, Any]) -> bool:
    if kind in ("email", "any"):
        email = traits.get(EMAIL_TRAIT)
        if isinstance(email, str) and email.strip() and not facts.get("email_off"):
            return True
    if kind in ("push", "any"):
        return (bool(facts.get("webpush")) or bool(facts.get("device"))) and not facts.get("push_off")
    return False


def _reach_kinds(sv: SegmentVersion) -> tuple[bool, bool]:
    kinds = {leaf.reachable for leaf in leaves(sv.definition.when) if isinstance(leaf, ReachableCondition)}
    return bool(kinds & {"email", "any"}), bool(kinds & {"push", "any"})


# --- what segments remember ----------------------------------------------------------------


# The events that say what a person chose (consent records, the preference center, unsubscribe
# links): reachability follows only those Nudgeflow recorded (model/events.is_own_event).
CHOICES = frozenset(
    {event_names.CONSENT_UPDATED, event_names.UNSUBSCRIBED, event_names.SUBSCRIPTION_PREFERENCES_UPDATED}
)
# segment_facts: the time of the choice that decided each channel's `*_off` fact.
CHOSEN_AT = {"email_off": "email_chosen_at", "push_off": "push_chosen_at"}
EMAIL_FACTS = ("email_off", "email_chosen_at")
PUSH_FACTS = ("push_off", "push_chosen_at", "webpush", "webpush_at", "device")
MAX_ENDPOINT_TIMES = 2 * MAX_WEBPUSH  # endpoints whose latest Push Subscribed / Unsubscribed time is kept


def _observe(index: SegmentIndex, facts: dict[str, Any], event: EventInput) -> bool:
    """Note what the event says about reachability; True when a device token is seen for the
    first time (the events of the other facts are in index.by_event already)."""
    name = event.name
    props = event.properties
    if name in CHOICES and not is_own_event(event.message_id):
        return False  # a sender's event of the name: the person's choices are recorded by Nudgeflow
    if name == event_names.CONSENT_UPDATED:
        # Consent per channel (store/consent_records.py): only the choice for all of a
        # channel's marketing (topic "*") makes the channel unreachable.
        subscribed, channel = props.get("subscribed"), props.get("channel")
        off = {"email": "email_off", "push": "push_off"}.get(channel) if isinstance(channel, str) else None
        if off is not None and props.get("topic") == ALL_TOPICS and isinstance(subscribed, bool):
            _choose(facts, off, subscribed, event.timestamp_ms)
        return False
    if index.email_facts:
        if name == event_names.UNSUBSCRIBED:
            if props.get("topic") == ALL_TOPICS:
                _choose(facts, "email_off", False, event.timestamp_ms)
        elif name == event_names.SUBSCRIPTION_PREFERENCES_UPDATED:
            subscribed = props.get("subscribed")
            if isinstance(subscribed, bool):
                _choose(facts, "email_off", subscribed, event.timestamp_ms)
    if index.push_facts:
        if name in PUSH_TARGET_EVENTS:
            digest = props.get("endpoint_hash")
            endpoint = digest if isinstance(digest, str) and digest else "webpush"
            if not _newest_for(facts, endpoint, event.timestamp_ms):
                return False  # older than what decided this endpoint: it changes nothing
            known = facts.get("webpush")
            known = [h for h in known if h != endpoint] if isinstance(known, list) else []
            if name == event_names.PUSH_SUBSCRIBED:
                known = [*known, endpoint][-MAX_WEBPUSH:]
            if known:
                facts["webpush"] = known
            else:
                facts.pop("webpush", None)
        if not facts.get("device"):
            context = event.context
            device = context.get("device") if type(context) is dict else None
            token = device.get("token") if type(device) is dict else None
            if isinstance(token, str) and token.strip():
                facts["device"] = True
                return True
    return False


def _choose(facts: dict[str, Any], off: str, subscribed: bool, at_ms: int) -> None:
    """A yes or no to all of a channel's marketing (`off`: its fact): the latest by event time
    decides, so one that arrives late, older than the choice that decided, changes nothing
    (an apply, reading the stored events in time order, comes to the same)."""
    when = CHOSEN_AT[off]
    last = facts.get(when)
    if isinstance(last, int) and at_ms < last:
        return
    facts[when] = at_ms
    if subscribed:
        facts.pop(off, None)
    else:
        facts[off] = True


def _newest_for(facts: dict[str, Any], endpoint: str, at_ms: int) -> bool:
    """Whether a Push Subscribed / Unsubscribed of the endpoint at `at_ms` is the latest by
    event time seen for it (then noted as such), as for the consent choices (_choose). The
    times of the newest MAX_ENDPOINT_TIMES endpoints are kept."""
    times = facts.get("webpush_at")
    if not isinstance(times, dict):
        times = facts["webpush_at"] = {}
    last = times.get(endpoint)
    if isinstance(last, int) and at_ms < last:
        return False
    times[endpoint] = at_ms
    if len(times) > MAX_ENDPOINT_TIMES:
        del times[min(times, key=lambda e: times[e] if isinstance(times[e], int) else 0)]
    return True


def _facts_from(index: SegmentIndex, past: Sequence[EventInput]) -> dict[str, Any]:
    """The reachability facts the engine would hold had it seen these events (in time order)."""
    facts: dict[str, Any] = {}
    for event in sorted(past, key=lambda e: e.timestamp_ms):
        _observe(index, facts, event)
    return facts


def _set_reach(facts: dict[str, Any], new: dict[str, Any], sv: SegmentVersion) -> None:
    """Replace the reachability facts the segment reads with those rebuilt from the past
    that needs() gave for it, and only those: that past holds no event of the others (a
    segment of orders reads none), which other segments read from the facts the engine kept."""
    email, push = _reach_kinds(sv)
    for name in (EMAIL_FACTS if email else ()) + (PUSH_FACTS if push else ()):
        if new.get(name):
            facts[name] = new[name]
        else:
            facts.pop(name, None)


def _history_from(catalog: Catalog, names: Iterable[str], past: Sequence[EventInput]) -> dict[str, list[list[Any]]]:
    """The kept history of these names rebuilt from stored events, as the engine keeps it:
    the catalog's properties, within the window of the newest, at most the cap."""
    out: dict[str, list[list[Any]]] = {}
    by_name: dict[str, list[EventInput]] = {}
    for event in past:
        by_name.setdefault(event.name, []).append(event)
    for name in names:
        keys = catalog.history_keys.get(name)
        if keys is None:
            continue  # a reachability event: not kept as history
        events = sorted(by_name.get(name, ()), key=lambda e: e.timestamp_ms)
        entries: list[list[Any]] = [
            [e.timestamp_ms, {k: e.properties[k] for k in keys if k in e.properties}] for e in events
        ]
        if name in catalog.history_ids:  # as the engine keeps a goal event: with its messageId
            for entry, e in zip(entries, events, strict=True):
                if e.message_id:
                    entry.append(e.message_id)
        window = catalog.history_window.get(name)
        if window is not None and entries:
            horizon = entries[-1][0] - window
            entries = [e for e in entries if e[0] > horizon]
        cap = catalog.history_cap.get(name, HISTORY_CAP)
        out[name] = entries[-cap:]
    return out
