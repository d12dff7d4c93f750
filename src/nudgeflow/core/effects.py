"""What the pure core asks the outside world to do.

The core never does I/O: it returns these, and the runtime (or the simulator) carries them
out, in the same transaction as the state that caused them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class SendMessage:
    """Queue one message in the outbox. `key` is its idempotency key: run, step and visit."""

    key: str
    run_id: str
    journey_id: str
    version: int
    step: str
    channel: str
    template: str
    variant: str | None
    marketing: bool
    at_ms: int
    # What rendering needs that the profile does not hold: the trigger event, run facts.
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ScheduleTimer:
    """Arm (or re-arm: same key replaces) a timer of this profile."""

    key: str
    due_ms: int
    payload: dict[str, Any]


@dataclass(slots=True)
class CancelTimer:
    key: str


@dataclass(slots=True)
class UpdateProfile:
    set: dict[str, Any]
    unset: list[str]


@dataclass(slots=True)
class RunChanged:
    """A run entered, moved, held, converted or ended: the runs table follows."""

    run: dict[str, Any]  # Run.as_row()


@dataclass(slots=True)
class MessageFailed:
    """A step could not produce its message (no template, an unknown channel)."""

    key: str
    run_id: str
    journey_id: str
    step: str
    reason: str


@dataclass(slots=True)
class MessageWithheld:
    """A send policy withheld a message: deferred to `until_ms` (then decided again), or dropped.

    `reason` says why, in the words of docs/policies.md: `frequency_cap:<rule id>`,
    `quiet_hours`, `collision:<winning journey id>`, `run_ended`, `journey_paused` (a message
    deferred past its max_deferral is dropped with the reason of the rule that held it), and
    `global_control` (dropped: the run is in the workspace's global control group). A
    deferred message that is later sent is a SendMessage with the same key.
    """

    key: str
    run_id: str
    journey_id: str
    version: int
    step: str
    channel: str
    template: str
    variant: str | None
    marketing: bool
    status: str  # DEFERRED or DROPPED
    reason: str
    at_ms: int
    until_ms: int | None = None  # when a deferred message is decided again
    context: dict[str, Any] = field(default_factory=dict)


DEFERRED, DROPPED = "deferred", "dropped"


@dataclass(slots=True)
class SegmentChanged:
    """The person entered or left a live segment. The runtime records the membership and
    appends `Segment Entered` / `Segment Exited` (model.event_names) to the person's log."""

    segment_id: str
    version: int
    entered: bool
    at_ms: int
    cause: dict[str, Any]  # {"event": name, "message_id": id}, or {"timer": "window"} for a lapsed window


Effect = (
    SendMessage
    | ScheduleTimer
    | CancelTimer
    | UpdateProfile
    | RunChanged
    | MessageFailed
    | MessageWithheld
    | SegmentChanged
)
