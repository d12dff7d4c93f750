"""One call into the core: the state it changes, the time it is, the effects it collects."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from nudgeflow.core.catalog import Catalog
from nudgeflow.core.effects import CancelTimer, Effect, RunChanged, ScheduleTimer
from nudgeflow.core.state import ProfileState, Run

MAX_TIMER_KEY = 200


def timer_key(*parts: object) -> str:
    """A timer key from parts; long ones (a huge cart_id) are hashed to fit the column."""
    key = ":".join(str(p) for p in parts)
    if len(key) <= MAX_TIMER_KEY:
        return key
    return f"{parts[0]}:h:{hashlib.blake2b(key.encode(), digest_size=16).hexdigest()}"


def unit_hash(*parts: object) -> float:
    """A number in [0, 1) fixed by its parts: deterministic splits, variants and holdouts."""
    digest = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


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

    @property
    def since_ms(self) -> int:
        return self.now_ms if self.event_ms is None else min(self.event_ms, self.now_ms)

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
