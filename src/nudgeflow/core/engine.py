"""The pure core: (profile state, event or timer, now) -> effects. No I/O, no wall clock.

Each call first forgets the runs that are over and, after a profile merge, ends the runs
the person as one could not have had (core/merged_runs.py). Then, for each event, in this order:
0. segment windows that lapsed before the event's time are decided first (core/segments.py);
1. traits from identify are applied to the engine's view of the person, and what changed
   is noted (attribute-change and date-relative triggers look at it);
2. the event is kept in the short history that counts and `occurrences` need; an open, click
   or app open (not a machine's) counts in the person's hours (core/send_time.py);
3. engagement with a message (delivered, opened, clicked, failed) is recorded on its run;
4. the live segments the event can change are decided (core/segments.py), so that every
   condition below reads the membership it leaves;
5. the person's open runs react: goal (conversion), exit events, a wait for this event;
   then runs whose journey's `exit.segment` the person just left end;
6. the journeys whose trigger may react are looked up in the catalog's index (never a scan
   of every journey) and may start runs; then those triggered by this event's segment changes.
Goals and exits come before triggers so that an `Order Completed` ends the cart run it
completes before it could start anything new.

With send policies (core/policies.py), deferred messages due by the event's time are decided
first, and the messages the call wants are decided at its end (core/sending.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nudgeflow.core import backfill, merged_runs, segments, send_time, sending, steps, timecalc, triggers
from nudgeflow.core.catalog import ARCHIVED, HISTORY_CAP, LIVE, PAUSED, Catalog
from nudgeflow.core.conditions import Scope, event_matches, get_path
from nudgeflow.core.effects import Effect
from nudgeflow.core.inputs import EventInput, TimerInput
from nudgeflow.core.state import ACTIVE, DONE, EXITED, HELD, ProfileState, Run
from nudgeflow.core.turn import Turn
from nudgeflow.model import event_names
from nudgeflow.model.engagement_signals import is_flagged
from nudgeflow.model.events import is_own_event
from nudgeflow.model.journeys import SendStep, WaitForEventStep
from nudgeflow.model.numbers import as_revenue

# Engagement events (Segment's email and push spec names, and the dispatcher's own) and
# the message status each one means. They carry the message's idempotency key.
ENGAGEMENT: dict[str, str] = {
    event_names.MESSAGE_DELIVERED: "delivered",
    event_names.EMAIL_DELIVERED: "delivered",
    event_names.PUSH_DELIVERED: "delivered",
    event_names.PUSH_NOTIFICATION_RECEIVED: "delivered",
    event_names.EMAIL_OPENED: "opened",
    event_names.PUSH_OPENED: "opened",
    event_names.PUSH_NOTIFICATION_TAPPED: "clicked",
    event_names.EMAIL_LINK_CLICKED: "clicked",
    event_names.PUSH_CLICKED: "clicked",
    event_names.MESSAGE_FAILED: "failed",
}
MESSAGE_KEY = "message_key"


class Engine:
    """Decides for one workspace. `state` is changed in place; the effects say what to do."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def on_event(self, state: ProfileState, event: EventInput, now_ms: int) -> list[Effect]:
        turn = Turn(state, self.catalog, now_ms, event_ms=event.timestamp_ms)
        _open(turn)
        if self.catalog.send_plan is not None:
            sending.release_due(turn)
        if event.user_id:
            state.identity = event.user_id
        elif state.identity is None and event.anonymous_id:
            state.identity = event.anonymous_id
        live_segments = self.catalog.segment_index is not None
        if live_segments:
            segments.catch_up(turn, event.timestamp_ms)  # windows that lapsed before this event
        changes = _apply_traits(state, event)
        if send_time.counts(event.event, event.properties):
            state.hours = send_time.record(state.hours, event.timestamp_ms, state.traits)
        if event.group_id is not None:
            _apply_group(state, event)
        _remember(self.catalog, state, event)
        _locate(state, event)
        moved = segments.on_event(turn, event, changes) if live_segments else None
        if event.event in ENGAGEMENT:
            _engagement(turn, event)
        for run in list(state.runs.values()):
            _run_reacts(turn, run, event)
        if moved:
            segments.end_runs(turn, moved)
        # Less the triggers whose constant eq / in filter cannot hold for this event.
        triggers.on_candidates(
            turn, self.catalog.for_event(event.name, event.type == "identify", event.properties), event, changes
        )
        if moved:
            segments.start(turn, moved)
        if event.event == event_names.SUBSCRIPTION_PREFERENCES_UPDATED and is_own_event(event.message_id):
            _preferences(state, event)  # the preference center's (a sender's event of the name says nothing)
        return _finish(turn)

    def on_timer(self, state: ProfileState, timer: TimerInput, now_ms: int) -> list[Effect]:
        turn = Turn(state, self.catalog, now_ms, due_ms=timer.due_ms)
        _open(turn)
        if self.catalog.send_plan is not None:
            sending.release_due(turn)
        kind = timer.payload.get("kind")
        if kind in ("step", "timeout", steps.SEND_TIME):
            steps.on_run_timer(turn, timer.payload)
        elif kind == "not_followed":
            triggers.on_not_followed_timer(turn, timer.key, timer.payload)
        elif kind == "inactivity":
            triggers.on_inactivity_timer(turn, timer.payload)
        elif kind == "date":
            triggers.on_date_timer(turn, timer.payload)
        elif kind == "resume":
            steps.on_resume(turn, timer.payload)
        elif kind == "release":
            sending.on_release(turn, timer.payload)
        elif kind == segments.SEGMENT_TIMER:
            segments.on_timer(turn, timer)
        return _finish(turn)

    def on_backfill(self, state: ProfileState, journey_id: str, past: backfill.Past, now_ms: int) -> list[Effect]:
        """A journey published now looks at this person's past (core/backfill.py)."""
        turn = Turn(state, self.catalog, now_ms)
        _open(turn)
        jv = self.catalog.live.get(journey_id)
        if jv is not None and self.catalog.status(journey_id) == LIVE:
            backfill.plan(turn, jv, past)
        return _finish(turn)

    def on_segment_apply(
        self, state: ProfileState, segment_id: str, past: Sequence[EventInput], now_ms: int
    ) -> list[Effect]:
        """A live segment (or a new version of it) applied now, for a person already known:
        the kept history is rebuilt from `past` (their stored events, oldest first, of the
        names segments.needs() gives), membership is decided at `now_ms`, and the result is
        SegmentChanged (cause {"apply": version}) when it differs from the state's, and the
        segment's lapse timer. No journey is started or ended by it (core/segments.py).

        A lapse of the person's already due by `now_ms` (the engine behind, the process down:
        its timer has not fired yet) is decided first, as the event path's catch_up does: at
        its own due time, with the journeys it starts or ends, as its timer would have (all but
        the segment applied, which did not exist then). The apply then reads every segment as
        of its own time (one that refers to a lapsed segment sees it lapsed), and the lapse's
        Segment Exited keeps its due time."""
        turn = Turn(state, self.catalog, now_ms)
        if not segments.lapse_due(state, now_ms):
            segments.apply(turn, segment_id, past)
            return turn.close()
        _prune(turn)
        if self.catalog.send_plan is not None:
            sending.release_due(turn)
        segments.catch_up(turn, now_ms, applying=segment_id)
        segments.apply(turn, segment_id, past)
        return _finish(turn)


def _finish(turn: Turn) -> list[Effect]:
    """Trait changes made by journeys, then the send policies' decisions on the messages the
    call wanted (core/policies.py: the runs stopped on their send steps go on after them)."""
    _journey_trait_changes(turn)
    if turn.catalog.send_plan is not None:
        sending.settle(turn)
        if turn.trait_changes:  # made by the walks that went on after their send steps
            _journey_trait_changes(turn)
            sending.settle(turn)
        sending.finish(turn)
    if turn.catalog.segment_index is not None:
        segments.arm_lapse_timer(turn)  # once, after every segment decision of the turn
    return turn.close()


def _preferences(state: ProfileState, event: EventInput) -> None:
    """The preference center's "how often" choice (`fewer` brings policies' fewer.caps); the
    latest by event time is kept."""
    value = event.properties.get("frequency")
    known = state.frequency
    if isinstance(value, str) and (known is None or event.timestamp_ms >= known.get("at", 0)):
        state.frequency = {"value": value, "at": event.timestamp_ms}


def _journey_trait_changes(turn: Turn) -> None:
    """Traits set by a journey's update_profile step drive trait triggers like an identify.

    One pass only: a change made by a journey entered here is not looked at again in this
    call, so two journeys that set each other's trait cannot loop.
    """
    changes, turn.trait_changes = turn.trait_changes, {}
    if not changes:
        return
    event = EventInput(
        message_id="",
        type="identify",
        event=None,
        timestamp_ms=turn.now_ms,
        traits={name: after for name, (_, after) in changes.items()},
    )
    for jv in turn.catalog.triggers.get("identify", []):
        triggers.on_event(turn, jv, event, changes)
    if turn.catalog.segment_index is not None:
        segments.on_traits(turn, changes)
    turn.trait_changes = {}


def _open(turn: Turn) -> None:
    """What every call does first: forget runs that are over, and settle the runs a profile
    merge brought together (only after one: core/merged_runs.py), before the runs react."""
    _prune(turn)
    if turn.state.merged:
        merged_runs.settle(turn)


def _prune(turn: Turn) -> None:
    """Forget runs that are over and can no longer convert."""
    runs = turn.state.runs
    for run_id in [
        rid
        for rid, run in runs.items()
        if run.status in (DONE, EXITED)
        and (run.converted_at is not None or run.goal_until is None or run.goal_until < turn.now_ms)
        and not (run.messages and sending.awaits_release(run))
    ]:
        del runs[run_id]


def _apply_traits(state: ProfileState, event: EventInput) -> dict[str, tuple[Any, Any]]:
    if event.type != "identify" or not event.traits:
        return {}
    changes: dict[str, tuple[Any, Any]] = {}
    for name, value in event.traits.items():
        before = state.traits.get(name)
        if before != value or name not in state.traits:
            changes[name] = (before, value)
            state.traits[name] = value
    return changes


def _apply_group(state: ProfileState, event: EventInput) -> None:
    """A group call: the person's group is the one of their latest call (by event time), its
    traits merged as identify merges a person's. A late call for another group changes
    nothing; a late call for the same group only fills traits not known yet."""
    current = state.group
    traits = event.traits or {}
    if current is not None and current.get("id") == event.group_id:
        known = dict(current.get("traits") or {})
        newer = event.timestamp_ms >= current.get("at", 0)
        merged = {**known, **traits} if newer else {**traits, **known}
        state.group = {"id": event.group_id, "at": max(event.timestamp_ms, current.get("at", 0)), "traits": merged}
    elif current is None or event.timestamp_ms >= current.get("at", 0):
        state.group = {"id": event.group_id, "at": event.timestamp_ms, "traits": dict(traits)}


def _remember(catalog: Catalog, state: ProfileState, event: EventInput) -> None:
    keys = catalog.history_keys.get(event.name)
    if keys is None:
        return
    props = {k: event.properties[k] for k in keys if k in event.properties}
    entries = state.history.setdefault(event.name, [])
    if event.name in catalog.history_ids and event.message_id:
        entries.append([event.timestamp_ms, props, event.message_id])  # a goal event (Catalog.history_ids)
    else:
        entries.append([event.timestamp_ms, props])
    if len(entries) > 1 and entries[-2][0] > event.timestamp_ms:
        entries.sort(key=lambda e: e[0])  # a late event goes where it happened
    window = catalog.history_window.get(event.name)
    if window is not None:
        horizon = entries[-1][0] - window
        while entries and entries[0][0] <= horizon:
            entries.pop(0)
    cap = catalog.history_cap.get(event.name, HISTORY_CAP)
    if len(entries) > cap:
        del entries[: len(entries) - cap]


def _locate(state: ProfileState, event: EventInput) -> None:
    """Keep the person's last known position (for "nearest store" in templates)."""
    # Cheap test first: most events carry no coordinates at all.
    location = event.context.get("location") if isinstance(event.context, dict) else None
    if "latitude" not in event.properties and not location:
        return
    coords = timecalc.event_coordinates(event)
    if coords is None:
        return
    last = state.last_location
    if last is None or event.timestamp_ms >= last.get("at", 0):
        state.last_location = {"latitude": coords[0], "longitude": coords[1], "at": event.timestamp_ms}


def _engagement(turn: Turn, event: EventInput) -> None:
    key = event.properties.get(MESSAGE_KEY)
    if not isinstance(key, str):
        return
    if is_flagged(event.properties):
        # An open fetched by Apple's Mail Privacy Protection or a click by a link scanner
        # (model/engagement_signals.py) is not the person's: "opened"/"clicked" conditions
        # on the message do not hold for it.
        return
    run = turn.state.runs.get(key.split(":", 1)[0])
    if run is None:
        return
    status = ENGAGEMENT[event.event or ""]
    for step_id, message in run.messages.items():
        if message.get("key") != key:
            continue
        if status not in message["statuses"]:
            message["statuses"].append(status)
        if status == "failed" and run.status in (ACTIVE, HELD):
            journey = turn.catalog.version(run.journey_id, run.version)
            step = journey.steps.get(step_id) if journey else None
            if isinstance(step, SendStep) and step.on_failure == "exit":
                steps.end(turn, run, EXITED, "message_failed")
        return


def _run_reacts(turn: Turn, run: Run, event: EventInput) -> None:
    journey = turn.catalog.version(run.journey_id, run.version)
    if journey is None or event.timestamp_ms < run.trigger.get("at", 0):
        return
    scope = Scope(turn.state.traits, event.timestamp_ms, turn.state.history, run.trigger.get("properties"), run)
    goal = journey.goal
    if (
        goal is not None
        and run.converted_at is None
        and run.goal_until is not None
        and event.timestamp_ms <= run.goal_until
        and event.timestamp_ms >= run.entered_at
        and event_matches(goal, event, scope)
    ):
        run.converted_at = event.timestamp_ms
        run.converted_by = event.message_id
        if goal.revenue:
            found, value = get_path(event.properties, goal.revenue)
            run.revenue = as_revenue(value) if found else None
        turn.touch(run)
        if goal.exit and run.status in (ACTIVE, HELD):
            steps.end(turn, run, EXITED, "converted")
            return
    if run.status not in (ACTIVE, HELD):
        if run.status == DONE and run.messages and sending.awaits_release(run):
            # Done, with a message still deferred: what would have ended the run drops it.
            converted = goal is not None and goal.exit and run.converted_at is not None
            if converted or any(event_matches(spec, event, scope) for spec in journey.exit.events):
                sending.drop_deferred(turn, run)
        return
    for spec in journey.exit.events:
        if event_matches(spec, event, scope):
            steps.end(turn, run, EXITED, f"exit_event:{spec.event}")
            return
    waiting = run.waiting
    # Within the wait, by event time: one stamped after the timeout, decided before its timer
    # fired (timers fire on processing time), came too late.
    if run.status == ACTIVE and waiting is not None and waiting["since"] <= event.timestamp_ms <= waiting["until"]:
        step = journey.steps.get(waiting["step"])
        if isinstance(step, WaitForEventStep) and event_matches(step, event, scope):
            # A paused journey sends nothing and an archived one is over, whatever ends the
            # wait: the event is held like a due timer (resume takes the event branch).
            status = turn.catalog.status(run.journey_id)
            if status == ARCHIVED:
                steps.end(turn, run, EXITED, "archived")
                return
            turn.cancel(steps.run_timer_key(run))
            run.waiting = None
            if status == PAUSED:
                run.status, run.held = HELD, "event"
                turn.touch(run)
                return
            steps.advance(turn, run, journey, step.on_event)
