"""Why a person did or did not get a journey's message: an explanation from stored facts.

A pure function of what the store holds about one person and one journey (their trigger
events, runs, the engine's entry count, the journey's messages for them with status and
reason). It states what those facts show and no more: where the facts cannot tell (an
entry filter judged on the traits of that moment, which are not kept), it says what could
have happened and that the record does not say which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nudgeflow.model import reasons
from nudgeflow.model.iso_time import iso
from nudgeflow.model.journeys import (
    EventNotFollowedTrigger,
    EventTrigger,
    Journey,
    LocationTrigger,
    MilestoneTrigger,
    SegmentTrigger,
    duration_ms,
)

YES, NO, INFO = "yes", "no", "info"
DELIVERED = ("sent", "logged")


@dataclass(frozen=True)
class JourneyFacts:
    """What the store holds about one person and one journey (times in epoch ms)."""

    journey_id: str
    status: str | None  # draft | live | paused | archived; None: no such journey
    definition: Journey | None  # the live version's, else the draft's
    first_published_ms: int | None
    trigger_event: str | None  # the event name that starts a run, for an event-based trigger
    trigger_events: list[dict[str, Any]]  # {"at_ms", "received_at_ms", "message_id"}, newest first
    events_limit: int  # trigger_events holds at most this many (the newest)
    runs: list[dict[str, Any]]  # journey_runs rows as dicts, newest first
    entries: dict[str, Any] | None  # the engine's {"count", "last_at"} for the journey
    messages: list[dict[str, Any]]  # outbox rows as dicts, newest first
    template: str | None = None  # the message asked about, if one was chosen


@dataclass(frozen=True)
class Finding:
    topic: str  # journey | trigger | entry | run | message
    verdict: str  # yes | no | info
    text: str


@dataclass(frozen=True)
class Explanation:
    headline: str
    findings: list[Finding] = field(default_factory=list)


def trigger_event_of(journey: Journey) -> str | None:
    """The event whose arrival can start a run, for the triggers that have one."""
    trigger = journey.trigger
    if isinstance(trigger, (EventTrigger, EventNotFollowedTrigger, MilestoneTrigger)):
        return trigger.event
    if isinstance(trigger, LocationTrigger):
        return trigger.event
    return None


def _t(ms: int | None) -> str:
    return iso(ms, milliseconds=False) or "?"


def reason_words(reason: str | None) -> str | None:
    """A message's reason (model/reasons.py) in words; None for one outside the vocabulary."""
    if not reason:
        return None
    family, _, detail = reason.partition(":")
    return {
        reasons.FREQUENCY_CAP: f"the frequency cap rule {detail!r} was reached",
        reasons.QUIET_HOURS: "it fell in the person's quiet hours",
        reasons.COLLISION: f"journey {detail!r} won the collision window (higher priority)",
        reasons.RUN_ENDED: "the run ended before the message could be released",
        reasons.JOURNEY_PAUSED: "the journey was paused",
        reasons.UNSUBSCRIBED: "the person unsubscribed from all marketing"
        if detail == reasons.ALL_MARKETING
        else f"the person unsubscribed from topic {detail!r}",
        reasons.SUPPRESSED: f"the address is on the suppression list ({detail})",
        reasons.NO_CONSENT: "the workspace asks for opt-in and the person has no recorded yes for the channel",
        reasons.NO_TARGET: "the person has no address or device for the channel",
        reasons.GLOBAL_CONTROL: "the run is in the workspace's global control group",
    }.get(family)


def reason_text(reason: str | None) -> str:
    """A message's reason in words, the reason itself after them."""
    if not reason:
        return "no reason recorded"
    words = reason_words(reason)
    return f"{words} ({reason})" if words else reason


def _trigger_findings(facts: JourneyFacts, journey: Journey) -> list[Finding]:
    out: list[Finding] = []
    trigger = journey.trigger
    name = facts.trigger_event
    if name is None:
        what = f"segment {trigger.segment!r} ({trigger.on})" if isinstance(trigger, SegmentTrigger) else trigger.type
        out.append(
            Finding(
                "trigger", INFO, f"The trigger is {what}: the engine decides it from the person's state, not one event."
            )
        )
        return out
    found = facts.trigger_events
    if not found:
        out.append(Finding("trigger", NO, f"No {name!r} event is stored for this person: they never triggered it."))
        return out
    many = "at least " if len(found) >= facts.events_limit else ""
    out.append(
        Finding(
            "trigger",
            YES,
            f"{many}{len(found)} {name!r} event(s) stored, the latest at {_t(found[0]['at_ms'])} "
            "(by name: the trigger's property filters are not re-checked here).",
        )
    )
    if facts.first_published_ms is not None:
        before = [ev for ev in found if ev["at_ms"] < facts.first_published_ms]
        if before:
            out.append(
                Finding(
                    "trigger",
                    INFO,
                    f"{len(before)} of them happened before the journey was first published "
                    f"({_t(facts.first_published_ms)}).",
                )
            )
    lateness = trigger.max_lateness
    if lateness is not None:
        limit = duration_ms(lateness)
        late = [ev for ev in found if ev["received_at_ms"] - ev["at_ms"] > limit]
        if late:
            out.append(
                Finding(
                    "trigger",
                    INFO,
                    f"{len(late)} of them arrived more than {lateness} after they happened: "
                    "too late to start a run (max_lateness).",
                )
            )
    return out


def _entry_findings(facts: JourneyFacts, journey: Journey) -> list[Finding]:
    entry = journey.entry
    rule = entry.reentry + (f" (every {entry.period})" if entry.period else "")
    if facts.runs:
        return [Finding("entry", INFO, f"Re-entry rule: {rule}; {len(facts.runs)} run(s) stored.")]
    if facts.trigger_event is not None and not facts.trigger_events:
        return []
    possible = []
    if entry.filter:
        possible.append(f"the entry filter ({len(entry.filter)} condition(s), judged on the traits of that moment)")
    possible.append(f"the re-entry rule ({rule})")
    possible.append("the journey not being live at the time")
    text = "No run of this journey is stored for the person. What can stop an entry: " + "; ".join(possible) + "."
    if facts.entries:
        count, last = facts.entries.get("count", 0), _t(facts.entries.get("last_at"))
        text += f" The engine counts {count} entry(ies), the last at {last}."
    return [Finding("entry", NO, text)]


def _run_findings(run: dict[str, Any], holdout_share: float) -> list[Finding]:
    head = f"Run {run['id']} (v{run['version']}) entered {_t(run['entered_at_ms'])}"
    out = []
    if run["holdout"]:
        out.append(
            Finding("run", NO, f"{head}: held out (holdout share {holdout_share:.0%}): a held-out run is sent nothing.")
        )
    elif run.get("control"):
        out.append(
            Finding(
                "run",
                NO,
                f"{head}: in the workspace's global control group: "
                "its marketing messages are dropped (global_control).",
            )
        )
    status = run["status"]
    if status == "active":
        where = f"{head}: in progress at step {run['step']!r}."
    elif status == "held":
        where = f"{head}: held at step {run['step']!r} (the journey is paused)."
    elif status == "done":
        where = f"{head}: finished its steps at {_t(run['ended_at_ms'])} ({run['exit_reason']})."
    else:
        where = f"{head}: exited at {_t(run['ended_at_ms'])} at step {run['step']!r}, reason {run['exit_reason']!r}."
    if run.get("converted_at_ms") is not None:
        where += f" Converted at {_t(run['converted_at_ms'])}."
    out.append(Finding("run", INFO, where))
    return out


def _message_finding(msg: dict[str, Any]) -> Finding:
    head = f"Message {msg['template']!r} ({msg['channel']}, step {msg['step']!r}, {_t(msg['created_at_ms'])})"
    status = msg["status"]
    if status == "sent":
        return Finding("message", YES, f"{head}: sent at {_t(msg['sent_at_ms'])}.")
    if status == "logged":
        return Finding("message", YES, f"{head}: taken by the log channel (its channel is not configured).")
    if status == "pending":
        return Finding("message", INFO, f"{head}: queued, not sent yet ({msg['attempts']} attempt(s)).")
    if status == "failed":
        return Finding("message", NO, f"{head}: failed: {msg['error']}.")
    if status == "deferred":
        return Finding(
            "message",
            NO,
            f"{head}: deferred until {_t(msg['next_attempt_at_ms'])}: {reason_text(msg['reason'])}.",
        )
    return Finding("message", NO, f"{head}: {status}: {reason_text(msg['reason'])}.")


def explain(facts: JourneyFacts) -> Explanation:
    """Did the person get the journey's message (the chosen template's, if any), and why not."""
    journey = facts.definition
    if facts.status is None or journey is None:
        return Explanation(f"There is no journey {facts.journey_id!r} in this workspace.")
    findings: list[Finding] = []
    if facts.status != "live":
        findings.append(
            Finding(
                "journey",
                NO if facts.status in ("draft", "archived") else INFO,
                f"The journey is {facts.status}"
                + (": nobody enters it." if facts.status in ("draft", "archived", "paused") else "."),
            )
        )
    findings += _trigger_findings(facts, journey)
    findings += _entry_findings(facts, journey)
    for run in facts.runs:
        findings += _run_findings(run, journey.holdout)
    messages = [m for m in facts.messages if facts.template is None or m["template"] == facts.template]
    findings += [_message_finding(m) for m in messages]
    what = f"template {facts.template!r}" if facts.template else "a message"
    sent = [m for m in messages if m["status"] in DELIVERED]
    if sent:
        headline = f"Yes: {len(sent)} message(s) of {what} from journey {facts.journey_id!r} went out."
    elif messages:
        headline = f"No: {len(messages)} message(s) of {what} were decided but none went out; see each reason."
    elif facts.runs:
        active = [r for r in facts.runs if r["status"] in ("active", "held")]
        headline = f"No: the person entered the journey but no message of {what} was decided" + (
            f" yet (a run is at step {active[0]['step']!r})." if active else "."
        )
        if any(r["holdout"] for r in facts.runs):
            headline = "No: the person's run was held out; held-out runs are sent nothing."
    else:
        headline = "No: the person never entered this journey."
    return Explanation(headline, findings)
