"""When ingest merges an anonymous profile into a known one, its engine state comes along.

Ingest merges profiles (an identify or alias linking an anonymousId to a known userId)
in its own transaction: it re-points the identities, push targets and consent choices
(store/consent.merge_subscriptions: per topic, the newer choice wins) and records the
merge in profile_merges, but the events, the engine's state, timers and runs of the
merged-away profile are the runtime's. They are folded into the surviving profile the next
time the engine touches it, before it decides anything for it, in the same transaction as
those decisions: a cart run started while anonymous then exits on the `Order Completed` of
the known person, and its timers fire for them. (Until then the processor decides an event
stored under the merged-away id on the surviving profile: store/engine_state.merged_into.)

This costs one indexed query per batch (profiles merged into the batch's profiles that
still have a state of their own), which finds nothing almost always.
"""

from __future__ import annotations

from sqlalchemy import Connection

from nudgeflow.core import send_time
from nudgeflow.core.policies import MAX_LEDGER
from nudgeflow.core.segments import CHOSEN_AT, redecide_all
from nudgeflow.core.state import ACTIVE, HELD, ProfileState
from nudgeflow.model.numbers import is_number
from nudgeflow.store import engine_state

HISTORY_CAP = 200  # as the core keeps it


def merge_state(into: ProfileState, other: ProfileState) -> None:
    """Fold `other` (the merged-away person) into `into`; `into` wins where they disagree.

    Runs, watches and timers are the other person's too now (two runs in progress of one
    journey are settled by the engine's next call: `merged`); entry counts and milestone
    counts and sums add up (the person did both), and so do the send-time hour counts;
    histories and send ledgers interleave by time; for inactivity, the latest activity counts.
    """
    into.traits = {**other.traits, **into.traits}
    # Both had a run of one journey in progress: the engine's next call settles them by the
    # journey's entry rules (core/merged_runs.py), whichever of the two this is folded into.
    into.merged = into.merged or other.merged or bool(_in_progress(into) & _in_progress(other))
    into.runs = {**other.runs, **into.runs}
    for journey_id, theirs in other.entries.items():
        ours = into.entries.get(journey_id)
        if ours is None:
            into.entries[journey_id] = theirs
        else:
            ours["count"] = int(ours.get("count", 0)) + int(theirs.get("count", 0))
            ours["last_at"] = max(ours.get("last_at") or 0, theirs.get("last_at") or 0)
    into.pending = {**other.pending, **into.pending}
    for key, theirs in other.counters.items():
        ours = into.counters.get(key)
        if key not in into.counters:
            into.counters[key] = theirs
        elif is_number(ours) and is_number(theirs):
            into.counters[key] = ours + theirs
    for journey_id, theirs in other.activity.items():
        ours = into.activity.get(journey_id)
        if ours is None:
            into.activity[journey_id] = theirs
        else:
            armed = bool(ours.get("armed")) or bool(theirs.get("armed"))
            if (theirs.get("last") or 0) > (ours.get("last") or 0):
                into.activity[journey_id] = {**theirs}
            into.activity[journey_id]["armed"] = armed
    for name, their_history in other.history.items():
        ours_history = into.history.get(name, [])
        entries = sorted([*ours_history, *their_history], key=lambda e: e[0])
        # A segment's count may keep more than HISTORY_CAP (core Catalog.history_cap).
        into.history[name] = entries[-max(HISTORY_CAP, len(ours_history), len(their_history)) :]
    if into.last_location is None:
        into.last_location = other.last_location
    # Both people's sends count against the caps from now on; the newer "how often" choice wins.
    if other.sends:
        into.sends = sorted([*into.sends, *other.sends], key=lambda e: e[0])[-MAX_LEDGER:]
    theirs_choice, ours_choice = other.frequency, into.frequency
    if theirs_choice and (not ours_choice or theirs_choice.get("at", 0) > ours_choice.get("at", 0)):
        into.frequency = theirs_choice
    if other.hours:  # when the person pays attention: both ids' opens and clicks
        into.hours = send_time.merged(into.hours, other.hours)
    _merge_segment_facts(into, other)


def _in_progress(state: ProfileState) -> set[str]:
    """The journeys the person has a run of in progress (active or held)."""
    return {run.journey_id for run in state.runs.values() if run.status in (ACTIVE, HELD)}


def _merge_segment_facts(into: ProfileState, other: ProfileState) -> None:
    """Reachability is the person's, whichever id it was seen under: push targets add up and
    an unsubscribe from a channel stays. Membership stays the surviving person's until their next
    event, which decides every live segment again from the merged state."""
    ours, theirs = into.segment_facts, other.segment_facts
    if not theirs and not ours:
        return  # no segment has seen either of them
    for off, chosen in CHOSEN_AT.items():
        if theirs.get(off):
            ours[off] = True
        # The later of their choices' times: a choice older than both, arriving late, changes nothing.
        times = [t for t in (ours.get(chosen), theirs.get(chosen)) if isinstance(t, int)]
        if times:
            ours[chosen] = max(times)
    if theirs.get("device"):
        ours["device"] = True
    known = list(ours.get("webpush") or [])
    pushes = known + [h for h in theirs.get("webpush") or [] if h not in known]
    if pushes:
        ours["webpush"] = pushes
    # Each endpoint's latest Push Subscribed / Unsubscribed time, the later of theirs and ours.
    endpoint_times = dict(ours.get("webpush_at") or {})
    for endpoint, at in (theirs.get("webpush_at") or {}).items():
        mine = endpoint_times.get(endpoint)
        if isinstance(at, int) and (not isinstance(mine, int) or at > mine):
            endpoint_times[endpoint] = at
    if endpoint_times:
        ours["webpush_at"] = endpoint_times
    # The latest instant either was decided at: deciding them again does not go back in time.
    times = [t for t in (ours.get("at"), theirs.get("at")) if isinstance(t, int)]
    if times:
        ours["at"] = max(times)
    redecide_all(into)


def fold_merged(
    conn: Connection, states: dict[str, ProfileState], restore_base: dict[str, str | None], profile_ids: list[str]
) -> int:
    """Fold into the batch's profiles the state of profiles merged into them; move their
    timers, runs and messages over. `states` and `restore_base` are updated in place (the
    latter is what a failed decision restores from). Returns how many were folded."""
    found = engine_state.merged_states(conn, profile_ids)
    if not found:
        return 0
    found.sort(key=lambda row: (row[1], row[0]))
    for source, target, doc in found:
        if doc is not None:  # None: only its events are left to move (engine_state.merged_states)
            state = states.get(target)
            if state is None:
                state = states[target] = ProfileState(target)
            merge_state(state, ProfileState.from_json(source, doc))
            restore_base[target] = state.to_json().decode()
        engine_state.move_merged(conn, source, target)
    return len(found)
