"""Send policies applied to runs: the decisions of core/policies.py on the messages a call
wanted, the release of deferred messages, and what each run remembers of them.

A deferred message is kept in its run's `messages[step]` record with `until` (when it is
decided again) and `first` (when it was first wanted); the record loses both once the message
is sent or dropped. A run is kept in the state while it holds such a record.
"""

from __future__ import annotations

from typing import Any

from nudgeflow.core import policies
from nudgeflow.core.catalog import ARCHIVED, PAUSED
from nudgeflow.core.effects import MessageWithheld
from nudgeflow.core.state import ACTIVE, EXITED, Run
from nudgeflow.core.steps import MAX_STEPS_PER_TURN, advance, emit_send, end, message_context
from nudgeflow.core.turn import Turn, Wanted, timer_key
from nudgeflow.model.journeys import Journey, SendStep, duration_ms


def settle(turn: Turn) -> None:
    """Decide the messages wanted in this call; then the runs that stopped on their send steps
    go on, and what they want next is decided in a next round."""
    plan = turn.catalog.send_plan
    for _ in range(MAX_STEPS_PER_TURN):
        if not turn.wanted:
            return
        batch, turn.wanted = turn.wanted, []
        assert plan is not None  # only a catalog with a plan makes a call want decisions
        # In time order; at one time the highest priority first, then the message wanted
        # first; the sort is stable: then the order they were wanted in.
        batch.sort(key=lambda w: (w.at_ms, -w.journey.priority, w.first_ms))
        for wanted in batch:
            _decide(turn, plan, wanted)
        for wanted in batch:
            run = wanted.run
            if wanted.resume and run.status == ACTIVE and run.step == wanted.step_id:
                step = wanted.journey.steps[wanted.step_id]
                assert isinstance(step, SendStep)
                advance(turn, run, wanted.journey, step.next)
    # Only sends in a loop without a wait get here (validation refuses those): stop them.
    for wanted in turn.wanted:
        if wanted.resume:
            end(turn, wanted.run, EXITED, "step_limit")
    turn.wanted = []


def _decide(turn: Turn, plan: policies.Plan, wanted: Wanted) -> None:
    run, journey = wanted.run, wanted.journey
    step = journey.steps[wanted.step_id]
    assert isinstance(step, SendStep)
    want = policies.Want(
        channel=step.channel,
        journey_id=run.journey_id,
        transactional=not step.marketing,
        topic=step.topic,
        on_cap=step.on_cap,
        on_collision=step.on_collision,
        max_deferral_ms=duration_ms(step.max_deferral) if step.max_deferral else None,
        first_ms=wanted.first_ms,
    )
    state = turn.state
    fewer = state.frequency is not None and state.frequency.get("value") == policies.FEWER
    zone = policies.zone_for(plan, state.traits)
    decision = policies.decide(plan, state.sends, want, wanted.at_ms, zone, fewer, state.assignment_key)
    record = _record_of(run, wanted.step_id, wanted.key, create=wanted.resume)
    if decision.capped and "capped" not in record["statuses"]:
        record["statuses"].append("capped")
    if decision.status == policies.SENT:
        policies.record(plan, state.sends, want, wanted.at_ms)
        _settled(record, "sent")
        emit_send(turn, run, journey, wanted.step_id, step, wanted.key, wanted.template, wanted.variant)
        return
    assert decision.reason is not None
    ids = (run.id, run.journey_id, run.version)
    message = (wanted.step_id, wanted.key, wanted.template, wanted.variant)
    if decision.until_ms is None:
        _drop(turn, run, ids, journey, step, message, decision.reason, record)
        return
    record["reason"], record["until"], record["first"] = decision.reason, decision.until_ms, wanted.first_ms
    if policies.DEFERRED not in record["statuses"]:
        record["statuses"].append(policies.DEFERRED)
    payload = {
        "kind": "release",
        "run_id": run.id,
        "journey": run.journey_id,
        "version": run.version,
        "step": wanted.step_id,
        "key": wanted.key,
        "template": wanted.template,
        "variant": wanted.variant,
        "first": wanted.first_ms,
    }
    _emit_withheld(turn, run, ids, journey, step, message, policies.DEFERRED, decision.reason, decision.until_ms)
    turn.schedule(release_timer_key(wanted.key), decision.until_ms, payload)


def _record_of(run: Run, step_id: str, key: str, create: bool) -> dict[str, Any]:
    """The run's record of the message with this key; a loose one when the run has since sent
    that step again (a deferred message of an earlier visit: it is decided, not remembered)."""
    record = run.messages.get(step_id)
    if record is not None and record.get("key") == key:
        return record
    fresh: dict[str, Any] = {"key": key, "statuses": []}
    if create:
        run.messages[step_id] = fresh
    return fresh


def _settled(record: dict[str, Any], status: str) -> None:
    if status not in record["statuses"] or status == "sent":
        record["statuses"].append(status)
    record.pop("until", None)
    record.pop("first", None)


def _drop(
    turn: Turn,
    run: Run | None,
    ids: tuple[str, str, int],
    journey: Journey,
    step: SendStep,
    message: tuple[str, str, str, str | None],
    reason: str,
    record: dict[str, Any] | None,
) -> None:
    if record is not None:
        _settled(record, policies.DROPPED)
        record["reason"] = reason
    _emit_withheld(turn, run, ids, journey, step, message, policies.DROPPED, reason, None)


def _emit_withheld(
    turn: Turn,
    run: Run | None,
    ids: tuple[str, str, int],
    journey: Journey,
    step: SendStep,
    message: tuple[str, str, str, str | None],
    status: str,
    reason: str,
    until: int | None,
) -> None:
    """`ids`: the message's run, journey and version (the run itself may be gone);
    `message`: its step, key, template and variant."""
    step_id, key, template, variant = message
    turn.emit(
        MessageWithheld(
            key=key,
            run_id=ids[0],
            journey_id=ids[1],
            version=ids[2],
            step=step_id,
            channel=step.channel,
            template=template,
            variant=variant,
            marketing=step.marketing,
            status=status,
            reason=reason,
            at_ms=turn.now_ms,
            until_ms=until,
            context=message_context(run, journey, step) if run is not None else {},
        )
    )


def release_timer_key(message_key: str) -> str:
    return timer_key("release", message_key)


def awaits_release(run: Run) -> bool:
    """Whether one of the run's messages is deferred (the run is kept until it is decided)."""
    return any("until" in record for record in run.messages.values())


def release_due(turn: Turn) -> None:
    """Decide again, each at its own time, every deferred message of the person due by this
    call's message time, before the call's own event or timer does anything: as if each release
    timer had fired on time, however late the runtime gets to it or to this event.

    In rounds, earliest release time first: a message deferred again to a time still at or
    before this call's is decided then too, in its place among the others (its timer would
    have fired before this event). Each deferral is later than the time it was decided at, so
    the rounds end; past MAX_STEPS_PER_TURN of them, the timers left armed go on from there."""
    t = turn.message_ms
    for _ in range(MAX_STEPS_PER_TURN):
        due = _earliest_due(turn, t)
        if not due:
            return
        for run, step_id, record in due:
            until = record["until"]
            journey = turn.catalog.version(run.journey_id, run.version)
            step = journey.steps.get(step_id) if journey is not None else None
            if journey is None or not isinstance(step, SendStep):
                _settled(record, policies.DROPPED)  # nothing left says what the message was
                continue
            turn.cancel(release_timer_key(record["key"]))  # decided here; a deferral arms it again
            template, variant = _content(run, step_id, step)
            message = (step_id, record["key"], template, variant)
            ids = (run.id, run.journey_id, run.version)
            _release(turn, run, ids, journey, step, message, until, record.get("first", until), record)
        settle(turn)


def _earliest_due(turn: Turn, t: int) -> list[tuple[Run, str, dict[str, Any]]]:
    """The deferred messages whose release time is the earliest one at or before t."""
    due: list[tuple[Run, str, dict[str, Any]]] = []
    earliest = t + 1
    for run in list(turn.state.runs.values()):
        if not run.messages:
            continue
        for step_id, record in run.messages.items():
            until = record.get("until")
            if not isinstance(until, int) or until > t or until > earliest:
                continue
            if until < earliest:
                due, earliest = [], until
            due.append((run, step_id, record))
    return due


def on_release(turn: Turn, payload: dict[str, Any]) -> None:
    """A release timer fired. The run's deferred messages due by now were decided by
    release_due; this one is decided from the timer's payload only when its run no longer
    holds it (the run is gone, or it sent that step again since)."""
    journey_id, step_id, key = payload.get("journey"), payload.get("step"), payload.get("key")
    version, template, first = payload.get("version"), payload.get("template"), payload.get("first")
    if not (isinstance(journey_id, str) and isinstance(step_id, str) and isinstance(version, int)):
        return
    if not (isinstance(key, str) and isinstance(template, str)):
        return
    run = turn.state.runs.get(payload.get("run_id", ""))
    record = run.messages.get(step_id) if run is not None else None
    if record is not None and record.get("key") == key:
        if "until" in record:  # no send plan any more: release_due was not called
            release_due(turn)
        return
    journey = turn.catalog.version(journey_id, version)
    step = journey.steps.get(step_id) if journey is not None else None
    if journey is None or not isinstance(step, SendStep):
        return  # a version no longer known: nothing left says what the message was
    t = turn.message_ms
    ids = (str(payload.get("run_id", "")), journey_id, version)
    message = (step_id, key, template, payload.get("variant"))
    _release(turn, run, ids, journey, step, message, t, first if isinstance(first, int) else t, None)
    settle(turn)


def drop_deferred(turn: Turn, run: Run) -> None:
    """The run ended (or converted, or met an exit event once done): its deferred messages are
    dropped now, reason run_ended."""
    journey = turn.catalog.version(run.journey_id, run.version)
    for step_id, record in run.messages.items():
        if "until" not in record:
            continue
        turn.cancel(release_timer_key(record["key"]))
        step = journey.steps.get(step_id) if journey is not None else None
        if journey is None or not isinstance(step, SendStep):
            _settled(record, policies.DROPPED)
            continue
        template, variant = _content(run, step_id, step)
        message = (step_id, record["key"], template, variant)
        _drop(turn, run, (run.id, run.journey_id, run.version), journey, step, message, policies.RUN_ENDED, record)


def _content(run: Run, step_id: str, step: SendStep) -> tuple[str, str | None]:
    """The template and variant a send step chose for this run (the variant is in run.paths)."""
    if step.variants:
        name = run.paths.get(step_id)
        chosen = next((v for v in step.variants if v.name == name), step.variants[0])
        return chosen.template, chosen.name
    assert step.template is not None
    return step.template, None


def _release(
    turn: Turn,
    run: Run | None,
    ids: tuple[str, str, int],
    journey: Journey,
    step: SendStep,
    message: tuple[str, str, str, str | None],
    at: int,
    first: int,
    record: dict[str, Any] | None,
) -> None:
    """Decide a deferred message again at `at`, if its run is still going."""
    status = turn.catalog.status(ids[1])
    if run is None or run.status == EXITED or status == ARCHIVED:
        _drop(turn, run, ids, journey, step, message, policies.RUN_ENDED, record)
    elif status == PAUSED:
        _drop(turn, run, ids, journey, step, message, policies.JOURNEY_PAUSED, record)
    elif turn.catalog.send_plan is None:  # the policies were taken away meanwhile: it goes now
        if record is not None:
            _settled(record, "sent")
        step_id, key, template, variant = message
        emit_send(turn, run, journey, step_id, step, key, template, variant)
    else:
        step_id, key, template, variant = message
        turn.wanted.append(Wanted(run, journey, step_id, key, template, variant, at, first, resume=False))


def finish(turn: Turn) -> None:
    """The runs this call ended drop their deferred messages (reason run_ended)."""
    for run in turn.touched.values():
        if run.status == EXITED and run.messages and awaits_release(run):
            drop_deferred(turn, run)
