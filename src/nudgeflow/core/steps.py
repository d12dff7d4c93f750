"""Runs: entering a journey and walking its steps until the next wait.

A run moves through steps at once until it reaches something that takes time (a wait, a
wait for an event) or the end. Each send produces a SendMessage whose idempotency key is
(run, step, visit): replaying the same decision gives the same key, so the outbox and the
channel can drop a repeat.
"""

from __future__ import annotations

import hashlib
from typing import Any

from nudgeflow.core import control_group, experiments, send_time, timecalc
from nudgeflow.core.catalog import ARCHIVED, EVENT_STARTED, LIVE, PAUSED, JourneyVersion
from nudgeflow.core.conditions import Scope, evaluate, event_matches, get_path, resolve
from nudgeflow.core.effects import DROPPED, MessageWithheld, SendMessage, UpdateProfile
from nudgeflow.core.inputs import EventInput
from nudgeflow.core.kept_history import newest_since
from nudgeflow.core.state import ACTIVE, DONE, EXITED, HELD, Run
from nudgeflow.core.turn import Turn, Wanted, timer_key, unit_hash
from nudgeflow.model.journeys import (
    BranchStep,
    ExitStep,
    Journey,
    SendStep,
    SendTime,
    SplitStep,
    UpdateProfileStep,
    WaitForEventStep,
    WaitStep,
    duration_ms,
)
from nudgeflow.model.numbers import as_revenue

# A journey that validated has no cycle without a wait; this bounds one that slipped by.
MAX_STEPS_PER_TURN = 200
SEND_TIME = "send_time"  # the run timer of a send step waiting for its optimized hour


def run_id_for(profile_id: str, seq: int, entered_at_ms: int) -> str:
    """A run's id: its entry time (11 hex digits of ms, so ids sort by entry), then a hash
    of the person and their run count (unique, and the same in the simulator and in
    production).

    Why the time first: runs, their outbox messages (keyed by run id) and the runs' index
    entries are written again when a run moves on, and runs fall due in roughly the order
    they entered. Time-ordered keys put the rows one batch touches on neighbouring B-tree
    pages instead of one random page each, as UUIDv7 does for the same reason.
    """
    digest = hashlib.blake2b(f"{profile_id}:{seq}".encode(), digest_size=12).hexdigest()
    return f"run_{max(0, entered_at_ms):011x}{digest}"


def run_timer_key(run: Run) -> str:
    return timer_key("run", run.id)


def may_enter(turn: Turn, jv: JourneyVersion) -> bool:
    """Re-entry rules: once ever, once per period, at most one active run, or always."""
    journey = jv.definition
    if turn.catalog.status(jv.journey_id) != LIVE:
        return False
    mode = journey.entry.reentry
    if mode == "always":
        return True
    entries = turn.state.entries.get(jv.journey_id)
    if mode == "once":
        return not entries
    if mode == "once_per_period":
        return not entries or entries["last_at"] + duration_ms(journey.entry.period or "0s") <= turn.now_ms
    return not any(r.journey_id == jv.journey_id and r.status in (ACTIVE, HELD) for r in turn.state.runs.values())


def enter(turn: Turn, jv: JourneyVersion, trigger: dict[str, Any], at_ms: int) -> Run | None:
    """Start a run if the rules allow; `trigger` describes what started it."""
    journey = jv.definition
    state = turn.state
    if not may_enter(turn, jv):
        return None
    scope = Scope(
        traits=state.traits,
        now_ms=at_ms,
        history=state.history,
        trigger=trigger.get("properties"),
        group=state.group_traits,
        segments=turn.segments(),
    )
    if journey.entry.filter and not evaluate(journey.entry.filter, scope):
        return None
    state.run_seq += 1
    entered_at = turn.since_ms
    holdout = journey.holdout > 0 and unit_hash("holdout", jv.journey_id, state.assignment_key) < journey.holdout
    # The global control group, independent of the journey's holdout (another hash), decided
    # at the entry's event time (core/control_group.py): the run keeps its side.
    # A journey that excludes the group takes no part in it, nor in the program's comparison.
    plan = turn.catalog.control_plan if journey.control_group == "include" else None
    control = plan is not None and control_group.member(plan, state.assignment_key, entered_at)
    cohort = None if plan is None else control_group.cohort(plan, entered_at)
    run = Run(
        id=run_id_for(state.profile_id, state.run_seq, entered_at),
        journey_id=jv.journey_id,
        version=jv.version,
        # Event time, as the goal window and conversions are (see Turn.event_ms): an order
        # decided in the same batch as the sign-up, seconds after it, converts.
        entered_at=entered_at,
        trigger=trigger,
        holdout=holdout,
        control=control,
        control_cohort=cohort,
        goal_until=turn.since_ms + duration_ms(journey.goal.within) if journey.goal else None,
    )
    state.runs[run.id] = run
    entries = state.entries.setdefault(jv.journey_id, {"count": 0, "last_at": 0})
    entries["count"] += 1
    entries["last_at"] = turn.now_ms
    turn.touch(run)
    # As the run's first reactions would have been, had the events come in order: the goal
    # (which may end it), then the exit events.
    if goal_seen(turn, jv, run) and run.status != ACTIVE:
        return run
    exit_event = exit_seen(turn, jv, run)
    if exit_event is not None:
        end(turn, run, EXITED, f"exit_event:{exit_event}")
        return run
    # A holdout run walks the same steps (waits, branches, exits) and sends nothing: it
    # blocks re-entry and converts over the same time as a treated run would, so the two
    # groups stay comparable (the baseline for uplift).
    advance(turn, run, journey, journey.first_step)
    return run


def exit_seen(turn: Turn, jv: JourneyVersion, run: Run) -> str | None:
    """The exit event, already decided, that happened after the event the run starts from; None
    when there is none. Such a run would have ended on it, had the events come in order: a
    "Product Added" flushed from an app's queue after the server's "Order Completed" of that
    cart, or a cart emptied before its "not followed" window ended (kept: catalog.exit_needs)."""
    journey = jv.definition
    since = run.trigger.get("at")
    if not journey.exit.events or not isinstance(journey.trigger, EVENT_STARTED) or not isinstance(since, int):
        return None
    history = turn.state.history
    scope = None
    for spec in journey.exit.events:
        # The trigger event itself is kept under its name: an exit event of that name must
        # come after it (as the run, started by it, does not react to it).
        after = since + 1 if spec.event == run.trigger.get("event") else since
        for entry in newest_since(history.get(spec.event), after):
            if scope is None:
                scope = Scope(turn.state.traits, turn.now_ms, history, run.trigger.get("properties"), run)
            if event_matches(spec, EventInput("", "track", spec.event, entry[0], entry[1]), scope):
                return spec.event
    return None


def goal_seen(turn: Turn, jv: JourneyVersion, run: Run) -> bool:
    """Record the conversion by a goal event already decided that happened after the event
    the run enters at (a late trigger event: kept by catalog.goal_needs); True when there
    was one. With `exit: true` the run ends, converted."""
    journey = jv.definition
    goal = journey.goal
    if goal is None or run.goal_until is None or not isinstance(journey.trigger, EVENT_STARTED):
        return False
    # The trigger event itself (kept under its name) does not convert its own run.
    after = run.entered_at + 1 if goal.event == run.trigger.get("event") else run.entered_at
    scope = None
    first = None  # the earliest goal event in the window: the walk goes newest first
    for entry in newest_since(turn.state.history.get(goal.event), after, run.goal_until):
        if scope is None:
            scope = Scope(turn.state.traits, turn.now_ms, turn.state.history, run.trigger.get("properties"), run)
        if event_matches(goal, EventInput("", "track", goal.event, entry[0], entry[1]), scope):
            first = entry
    if first is None:
        return False
    run.converted_at = first[0]
    # The goal event's messageId, kept with it (Catalog.history_ids), as a conversion decided on
    # time records it: measure/ counts a goal event once however many runs it converted.
    run.converted_by = first[2] if len(first) > 2 else None
    if goal.revenue:
        found, value = get_path(first[1], goal.revenue)
        run.revenue = as_revenue(value) if found else None
    if goal.exit:
        end(turn, run, EXITED, "converted")
    return True


def end(turn: Turn, run: Run, status: str, reason: str) -> None:
    if run.status == ACTIVE and (run.waiting is not None or run.step is not None):
        turn.cancel(run_timer_key(run))
    run.status = status
    run.exit_reason = reason
    run.ended_at = turn.now_ms
    run.waiting = None
    run.held = None
    turn.touch(run)


def advance(turn: Turn, run: Run, journey: Journey, step_id: str | None) -> None:
    """Walk from `step_id` until the run waits or ends."""
    state = turn.state
    for _ in range(MAX_STEPS_PER_TURN):
        if step_id is None:
            run.step = None
            end(turn, run, DONE, "completed")
            return
        step = journey.steps.get(step_id)
        if step is None:  # only a definition that skipped validation gets here
            end(turn, run, EXITED, f"no step {step_id}")
            return
        run.step = step_id
        visit = run.visits.get(step_id, 0) + 1
        run.visits[step_id] = visit
        turn.touch(run)
        if isinstance(step, SendStep):
            if step.send_time is not None:
                best = _optimized_due(turn, run, step_id, step.send_time)
                if best > turn.now_ms:  # the run waits on the send step; the timer sends (_continue)
                    payload = {"kind": SEND_TIME, "run_id": run.id, "step": step_id, "visit": visit}
                    turn.schedule(run_timer_key(run), best, payload)
                    return
            if _send(turn, run, journey, step_id, step, visit):
                return  # send policies decide at the end of the call (settle), then the walk goes on
            step_id = step.next
        elif isinstance(step, WaitStep):
            due = _wait_due(turn, run, step_id, step)
            if due is None:
                assert step.until_date is not None
                end(turn, run, EXITED, f"no date in trait {step.until_date.trait}")
                return
            if due <= turn.now_ms:
                step_id = step.next
                continue
            turn.schedule(run_timer_key(run), due, {"kind": "step", "run_id": run.id, "step": step_id, "visit": visit})
            return
        elif isinstance(step, WaitForEventStep):
            until = turn.now_ms + duration_ms(step.timeout)
            run.waiting = {"step": step_id, "since": turn.since_ms, "until": until}
            turn.schedule(
                run_timer_key(run), until, {"kind": "timeout", "run_id": run.id, "step": step_id, "visit": visit}
            )
            return
        elif isinstance(step, BranchStep):
            scope = Scope(
                state.traits,
                turn.now_ms,
                state.history,
                run.trigger.get("properties"),
                run,
                state.group_traits,
                turn.segments(),
            )
            step_id = next((case.next for case in step.cases if evaluate(case.when, scope)), step.default)
        elif isinstance(step, SplitStep):
            path = _assign(turn, run, step_id, step.paths, "split")
            run.paths[step_id] = path.name
            step_id = path.next
        elif isinstance(step, UpdateProfileStep):
            scope = Scope(
                state.traits, turn.now_ms, state.history, run.trigger.get("properties"), run, state.group_traits
            )
            values = {name: resolve(value, scope) for name, value in step.set.items()}
            for name, value in values.items():
                if state.traits.get(name) != value or name not in state.traits:
                    turn.trait_changes[name] = (state.traits.get(name), value)
                    state.traits[name] = value
            for name in step.unset:
                if name in state.traits:
                    turn.trait_changes[name] = (state.traits.pop(name), None)
            turn.emit(UpdateProfile(values, list(step.unset)))
            step_id = step.next
        elif isinstance(step, ExitStep):
            end(turn, run, EXITED, "exit_step")
            return
        else:  # pragma: no cover - the Step union is closed
            raise TypeError(type(step).__name__)
    end(turn, run, EXITED, "step_limit")


def _assign(turn: Turn, run: Run, step_id: str, options: list[Any], salt: str) -> Any:
    """The arm of an experiment step (a variant, a split path) this run takes: drawn by hash
    of the person, journey and step, within what the step's decisions leave open
    (core/experiments.py)."""
    decided = turn.catalog.experiment_decisions.get((run.journey_id, run.version, step_id))
    if decided is not None:
        # Decisions change only where new runs go: a run that was assigned here before
        # (and comes back to the step) keeps its arm, so each run's arm stays one.
        kept = run.paths.get(step_id)
        for option in options:
            if option.name == kept:
                return option
    u = unit_hash(salt, run.journey_id, step_id, turn.state.assignment_key)
    return experiments.choose(options, u, decided)


def _send(turn: Turn, run: Run, journey: Journey, step_id: str, step: SendStep, visit: int) -> bool:
    """Emit the step's message; True when send policies will decide it (the run stops here)."""
    variant = None
    template = step.template
    if step.variants:
        chosen = _assign(turn, run, step_id, step.variants, "variant")
        variant, template = chosen.name, chosen.template
        run.paths[step_id] = chosen.name
    key = f"{run.id}:{step_id}:{visit}"
    # The send-time decision this message goes out by (its own step's, or a wait's before
    # it) stays on its record: reports split optimized / explore / fallback on it.
    timing, run.timing = run.timing, None
    if run.holdout:
        run.messages[step_id] = {"key": key, "statuses": ["held_out"]}
        if timing is not None:
            run.messages[step_id]["send_time"] = timing
        return False
    if timing is not None:  # send policies' record of the message (sending._record_of) is this one
        run.messages[step_id] = {"key": key, "statuses": [], "send_time": timing}
    template = template or ""  # a webhook step has none: it renders its own `webhook` body
    if run.control and step.marketing:
        # Withheld before any send policy sees it: it takes no place in caps or collision
        # windows, and the outbox row with its reason is what splits treated from control.
        run.messages[step_id] = {"key": key, "statuses": [DROPPED], "reason": control_group.REASON}
        context = message_context(run, journey, step)
        if timing is not None:  # as a sent message's: a report splits on it (emit_send)
            run.messages[step_id]["send_time"] = context["send_time"] = timing
        turn.emit(
            MessageWithheld(
                key=key,
                run_id=run.id,
                journey_id=run.journey_id,
                version=run.version,
                step=step_id,
                channel=step.channel,
                template=template,
                variant=variant,
                marketing=True,
                status=DROPPED,
                reason=control_group.REASON,
                at_ms=turn.now_ms,
                context=context,
            )
        )
        return False
    if turn.catalog.send_plan is not None:
        at = turn.message_ms
        turn.wanted.append(Wanted(run, journey, step_id, key, template, variant, at, at, resume=True))
        return True
    run.messages[step_id] = {"key": key, "statuses": ["sent"]}
    if timing is not None:
        run.messages[step_id]["send_time"] = timing
    emit_send(turn, run, journey, step_id, step, key, template, variant)
    return False


def emit_send(
    turn: Turn, run: Run, journey: Journey, step_id: str, step: SendStep, key: str, template: str, variant: str | None
) -> None:
    context = message_context(run, journey, step)
    record = run.messages.get(step_id)
    if record is not None and record.get("key") == key and "send_time" in record:
        context["send_time"] = record["send_time"]
    turn.emit(
        SendMessage(
            key=key,
            run_id=run.id,
            journey_id=run.journey_id,
            version=run.version,
            step=step_id,
            channel=step.channel,
            template=template,
            variant=variant,
            marketing=step.marketing,
            at_ms=turn.now_ms,
            context=context,
        )
    )


def message_context(run: Run, journey: Journey, step: SendStep) -> dict[str, Any]:
    context: dict[str, Any] = {
        "trigger": run.trigger,
        "journey": {"id": run.journey_id, "version": run.version, "name": journey.name},
        "run": {"id": run.id, "entered_at": run.entered_at},
    }
    if run.control:  # a member's transactional message: the rollups count its run apart
        context["run"]["control"] = True
    if step.topic:  # the consent check at dispatch reads it (store/consent.topic_for)
        context["topic"] = step.topic
    return context


def _optimized_due(turn: Turn, run: Run, step_id: str, spec: SendTime) -> int:
    """When the person's best hour within the window starts (core/send_time.py); the decision
    is kept on the run until the next send takes it."""
    state = turn.state
    choice = send_time.choose(
        spec,
        state.hours,
        turn.catalog.send_time_prior,
        state.traits,
        turn.now_ms,
        (state.assignment_key, run.journey_id, step_id),
    )
    run.timing = {"step": step_id, **choice.record()}
    return choice.at_ms


def _wait_due(turn: Turn, run: Run, step_id: str, step: WaitStep) -> int | None:
    traits = turn.state.traits
    if step.duration is not None:
        return turn.now_ms + duration_ms(step.duration)
    if step.send_time is not None:
        return _optimized_due(turn, run, step_id, step.send_time)
    tz = timecalc.zone_of(traits)
    if step.until_time is not None:
        return timecalc.next_time_of_day(turn.now_ms, step.until_time.at, step.until_time.weekdays, tz)
    assert step.until_date is not None
    spec = step.until_date
    return timecalc.date_relative_due(traits.get(spec.trait), duration_ms(spec.offset), spec.at, tz, False, turn.now_ms)


def on_run_timer(turn: Turn, payload: dict[str, Any]) -> None:
    """A step's wait ended, or a wait for an event timed out."""
    run = turn.state.runs.get(payload.get("run_id", ""))
    if run is None or run.status != ACTIVE or run.step != payload.get("step"):
        return  # a timer from before the run moved on, or of a run that ended
    # A run without a step (None) has no visits: get answers 0, as for a step never visited.
    if run.visits.get(run.step, 0) != payload.get("visit"):  # type: ignore[arg-type]
        return
    journey = turn.catalog.version(run.journey_id, run.version)
    if journey is None:
        end(turn, run, EXITED, "journey_missing")
        return
    status = turn.catalog.status(run.journey_id)
    if status == ARCHIVED:
        end(turn, run, EXITED, "archived")
        return
    kind = payload.get("kind")
    if status == PAUSED:
        run.status = HELD
        run.held = kind
        turn.touch(run)
        return
    _continue(turn, run, journey, kind)


def _continue(turn: Turn, run: Run, journey: Journey, kind: str | None) -> None:
    step = journey.steps.get(run.step or "")
    if kind == "timeout" and isinstance(step, WaitForEventStep):
        run.waiting = None
        advance(turn, run, journey, step.on_timeout)
    elif kind == "event" and isinstance(step, WaitForEventStep):
        # The awaited event came while the journey was paused (engine._run_reacts held it).
        advance(turn, run, journey, step.on_event)
    elif isinstance(step, WaitStep):
        advance(turn, run, journey, step.next)
    elif kind == SEND_TIME and isinstance(step, SendStep) and run.step is not None:
        # The best hour came: the send step sends now, then the walk goes on.
        if not _send(turn, run, journey, run.step, step, run.visits.get(run.step, 0)):
            advance(turn, run, journey, step.next)
    else:
        end(turn, run, EXITED, "step_changed")


def on_resume(turn: Turn, payload: dict[str, Any]) -> None:
    """The journey was resumed: a held run goes on from where its timer fell due."""
    run = turn.state.runs.get(payload.get("run_id", ""))
    if run is None or run.status != HELD:
        return
    journey = turn.catalog.version(run.journey_id, run.version)
    if journey is None or turn.catalog.status(run.journey_id) == ARCHIVED:
        end(turn, run, EXITED, "archived")
        return
    if turn.catalog.status(run.journey_id) == PAUSED:
        return
    kind, run.held = run.held, None
    run.status = ACTIVE
    turn.touch(run)
    _continue(turn, run, journey, kind)
