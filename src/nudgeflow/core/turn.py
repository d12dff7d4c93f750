"""One call into the core: the state it changes, the time it is, the effects it collects."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nudgeflow.core.conditions import SegmentView
from nudgeflow.core.effects import CancelTimer, Effect, RunChanged, ScheduleTimer
from nudgeflow.core.state import ProfileState, Run
from nudgeflow.model.journeys import Journey

if TYPE_CHECKING:  # the catalog imports core.policies, which imports unit_hash from here
    from nudgeflow.core.catalog import Catalog

MAX_TIMER_KEY = 200


def timer_key(*parts: object) -> str:
    """A timer key from parts; long ones (a huge cart_id) are hashed to fit the column."""
    key = ":".join(map(str, parts))
    if len(key) <= MAX_TIMER_KEY:
        return key
    return f"{parts[0]}:h:{hashlib.blake2b(key.encode(), digest_size=16).hexdigest()}"


def unit_hash(*parts: object) -> float:
    """A number in [0, 1) fixed by its parts: deterministic splits, variants and holdouts."""
    digest = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(slots=True)
class Wanted:
    """A message a run wants, waiting for the send policies' decision at the end of the call."""

    run: Run
    journey: Journey
    step_id: str
    key: str
    template: str
    variant: str | None
    at_ms: int  # the message's time (Turn.message_ms) of this decision
    first_ms: int  # when it was first wanted (a release keeps the first deferral's)
    resume: bool  # the run stopped on the send step and goes on after the decision


@dataclass(slots=True)
class Turn:
    state: ProfileState
    catalog: Catalog
    now_ms: int
    effects: list[Effect] = field(default_factory=list)
    touched: dict[str, Run] = field(default_factory=dict)
    # The event time of the event being decided (never after now_ms); None for a timer.
    # The runtime decides a batch at one processing time, later than the events happened:
    # windows that start in this call (a wait for an event) start at the event's time, or a
    # checkout two seconds after the add, decided in the same batch, would be missed.
    event_ms: int | None = None
    # Traits a journey's update_profile step changed in this call: (before, after) by name.
    trait_changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    # The due time of the timer being decided; None for an event.
    due_ms: int | None = None
    # Messages send policies decide at the end of this call (core/policies.py).
    wanted: list[Wanted] = field(default_factory=list)
    # The event's coordinates, as every location trigger of this call reads them: looked for
    # once per call (core/triggers.py), not once per location journey. `coords_of` holds
    # the event they were read from.
    coords_of: Any = None
    coords: tuple[float, float] | None = None
    # Work the candidate journeys of one event share (core/triggers.py), done once per
    # event rather than once per journey: the nearest place of a place list (by the list's
    # identity: the catalog gives equal lists as one), and the times of the earlier
    # occurrences that pass a trigger's constant filters. `shared_of` is the event they
    # were found for.
    shared_of: Any = None
    nearest: dict[int, tuple[float, Any]] | None = None
    occurred: dict[tuple[Any, ...], list[Any]] | None = None

    @property
    def since_ms(self) -> int:
        return self.now_ms if self.event_ms is None else min(self.event_ms, self.now_ms)

    @property
    def message_ms(self) -> int:
        """The time send policies judge a message wanted in this call by: the event's time,
        or the timer's due time, never the time the batch is processed (core/policies.py)."""
        own = self.event_ms if self.event_ms is not None else self.due_ms
        return self.now_ms if own is None else min(own, self.now_ms)

    def segments(self) -> SegmentView | None:
        """What segment conditions read (None without live segments)."""
        index = self.catalog.segment_index
        return None if index is None else SegmentView(self.state.membership, index.position)

    def emit(self, effect: Effect) -> None:
        self.effects.append(effect)

    def schedule(self, key: str, due_ms: int, payload: dict[str, Any]) -> None:
        self.effects.append(ScheduleTimer(key, due_ms, payload))

    def cancel(self, key: str) -> None:
        self.effects.append(CancelTimer(key))

    def touch(self, run: Run) -> None:
        self.touched[run.id] = run

    def close(self) -> list[Effect]:
        # One RunChanged per run and call, however many steps it moved through.
        for run in self.touched.values():
            self.effects.append(RunChanged(run.as_row(self.state.profile_id)))
        return self.effects
