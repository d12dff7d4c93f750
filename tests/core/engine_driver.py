"""A tiny driver for the pure journey core, shared by the test_engine_* files.

It plays the runtime's part and nothing more: a dict of timers that ScheduleTimer replaces
and CancelTimer removes, a virtual "now" that only moves forward, and due timers fired in
(due, key) order while it moves, each at its own due time. Every effect is logged with the
time of the call that produced it, so tests can assert exact effects and timings.

With `roundtrip=True` the profile state goes through ProfileState.to_json/from_json before
every call, as it does between batches in the runtime.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from nudgeflow.core.catalog import Catalog, JourneyVersion, VersionLoader
from nudgeflow.core.effects import (
    CancelTimer,
    Effect,
    MessageFailed,
    MessageWithheld,
    RunChanged,
    ScheduleTimer,
    SegmentChanged,
    SendMessage,
    UpdateProfile,
)
from nudgeflow.core.engine import Engine
from nudgeflow.core.inputs import EventInput, TimerInput
from nudgeflow.core.segments import CHOICES
from nudgeflow.core.state import ProfileState
from nudgeflow.core.steps import run_id_for
from nudgeflow.model.events import OWN_EVENT_PREFIX
from nudgeflow.model.journeys import Journey, duration_ms

S = 1000
M = 60 * S
H = 60 * M
D = 24 * H
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(text: str) -> int:
    """ISO 8601 (with Z or an offset) as epoch milliseconds, exactly."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.tzinfo is not None, text
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def iso(value: int) -> str:
    return datetime.fromtimestamp(value / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# A Monday, noon UTC.
T0 = ms("2026-03-02T12:00:00Z")


def journey(id: str, trigger: dict[str, Any], steps: dict[str, Any], **rest: Any) -> Journey:
    return Journey.model_validate({"id": id, "name": id.replace("_", " "), "trigger": trigger, "steps": steps, **rest})


def catalog(
    *journeys: Journey | JourneyVersion,
    statuses: dict[str, str] | None = None,
    load_version: VersionLoader | None = None,
) -> Catalog:
    live = [j if isinstance(j, JourneyVersion) else JourneyVersion(j.id, 1, j) for j in journeys]
    return Catalog(live, statuses=statuses, load_version=load_version)


def summarize(effect: Effect) -> tuple[Any, ...]:
    """An effect as a short tuple that says everything the tests care about."""
    if isinstance(effect, SendMessage):
        return ("send", effect.journey_id, effect.step, effect.template, effect.variant, effect.at_ms)
    if isinstance(effect, ScheduleTimer):
        return ("schedule", effect.key, effect.due_ms)
    if isinstance(effect, CancelTimer):
        return ("cancel", effect.key)
    if isinstance(effect, RunChanged):
        row = effect.run
        return ("run", row["journey_id"], row["status"], row["step"], row["exit_reason"])
    if isinstance(effect, UpdateProfile):
        return ("update", effect.set, effect.unset)
    if isinstance(effect, MessageFailed):
        return ("failed", effect.step, effect.reason)
    if isinstance(effect, MessageWithheld):
        return (effect.status, effect.journey_id, effect.step, effect.reason, effect.until_ms)
    if isinstance(effect, SegmentChanged):
        return ("segment", effect.segment_id, "entered" if effect.entered else "exited", effect.at_ms, effect.cause)
    raise AssertionError(f"unknown effect {effect!r}")


class Driver:
    def __init__(
        self,
        *journeys: Journey | JourneyVersion,
        profile: str = "ada",
        now: int = T0,
        statuses: dict[str, str] | None = None,
        load_version: VersionLoader | None = None,
        roundtrip: bool = False,
        cat: Catalog | None = None,
    ) -> None:
        self.engine = Engine(
            cat if cat is not None else catalog(*journeys, statuses=statuses, load_version=load_version)
        )
        self.state = ProfileState(profile)
        self.timers: dict[str, tuple[int, dict[str, Any]]] = {}
        self.now = now
        self.log: list[tuple[int, Effect]] = []
        self.roundtrip = roundtrip
        self._seq = 0

    # --- the outside world ---------------------------------------------------------------

    def use(self, cat: Catalog) -> None:
        """Publish, pause, resume or archive: the engine gets a new catalog, state stays."""
        self.engine = Engine(cat)

    def run_id(self, n: int = 1) -> str:
        """The id of the person's n-th run (1-based), as the engine made it."""
        seen: list[str] = []
        for _, effect in self.log:
            if isinstance(effect, RunChanged) and effect.run["id"] not in seen:
                seen.append(effect.run["id"])
        if len(seen) < n:
            raise AssertionError(f"the person has {len(seen)} runs, not {n}")
        assert seen[n - 1].endswith(run_id_for(self.state.profile_id, n, 0)[-24:])  # ids are time + hash(person, n)
        return seen[n - 1]

    def _apply(self, effects: list[Effect]) -> list[Effect]:
        for effect in effects:
            if isinstance(effect, ScheduleTimer):
                self.timers[effect.key] = (effect.due_ms, effect.payload)
            elif isinstance(effect, CancelTimer):
                self.timers.pop(effect.key, None)
        self.log.extend((self.now, e) for e in effects)
        return effects

    def _fresh_state(self) -> None:
        if self.roundtrip:
            self.state = ProfileState.from_json(self.state.profile_id, self.state.to_json())

    def event(self, event: EventInput) -> list[Effect]:
        self._fresh_state()
        return self._apply(self.engine.on_event(self.state, event, self.now))

    def track(
        self,
        name: str,
        properties: dict[str, Any] | None = None,
        *,
        ts: int | None = None,
        message_id: str | None = None,
        **kw: Any,
    ) -> list[Effect]:
        """A track event processed now; `ts` is its (corrected) event time, default now. The
        events of a person's choices get a messageId of Nudgeflow's own, as Nudgeflow records
        them (model/events.is_own_event), unless `message_id` says otherwise."""
        self._seq += 1
        if message_id is None:
            message_id = f"{OWN_EVENT_PREFIX}m{self._seq}" if name in CHOICES else f"m{self._seq}"
        return self.event(
            EventInput(message_id, "track", name, self.now if ts is None else ts, dict(properties or {}), **kw)
        )

    def identify(self, traits: dict[str, Any], *, ts: int | None = None) -> list[Effect]:
        self._seq += 1
        return self.event(
            EventInput(f"m{self._seq}", "identify", None, self.now if ts is None else ts, {}, dict(traits))
        )

    def fire(self, key: str) -> list[Effect]:
        """Fire one armed timer now (whatever its due time), as a runtime would."""
        due, payload = self.timers.pop(key)
        self._fresh_state()
        return self._apply(self.engine.on_timer(self.state, TimerInput(key, due, payload), self.now))

    def add_timer(self, key: str, due: int, payload: dict[str, Any]) -> None:
        self.timers[key] = (due, payload)

    def advance_to(self, until: int) -> list[Effect]:
        """Move the clock to `until`, firing every timer that falls due on the way, in order."""
        assert until >= self.now, "time does not go back"
        out: list[Effect] = []
        while True:
            due_now = [(due, key) for key, (due, _) in self.timers.items() if due <= until]
            if not due_now:
                break
            due, key = min(due_now)
            self.now = max(self.now, due)
            out.extend(self.fire(key))
        self.now = until
        return out

    def advance(self, by: str | int) -> list[Effect]:
        return self.advance_to(self.now + (duration_ms(by) if isinstance(by, str) else by))

    # --- reading what happened --------------------------------------------------------------

    def effects(self, since: int = 0) -> list[tuple[Any, ...]]:
        return [summarize(e) for _, e in self.log[since:]]

    def withheld(self, journey_id: str | None = None) -> list[MessageWithheld]:
        return [
            e
            for _, e in self.log
            if isinstance(e, MessageWithheld) and (journey_id is None or e.journey_id == journey_id)
        ]

    def sends(self, journey_id: str | None = None) -> list[SendMessage]:
        return [
            e for _, e in self.log if isinstance(e, SendMessage) and (journey_id is None or e.journey_id == journey_id)
        ]

    def sent(self, journey_id: str | None = None) -> list[tuple[str, str]]:
        """(step, ISO time) of every message sent, in order."""
        return [(e.step, iso(e.at_ms)) for e in self.sends(journey_id)]

    def runs(self, journey_id: str | None = None) -> list[dict[str, Any]]:
        """The last RunChanged row of every run, in order of first appearance."""
        rows: dict[str, dict[str, Any]] = {}
        for _, e in self.log:
            if isinstance(e, RunChanged) and (journey_id is None or e.run["journey_id"] == journey_id):
                rows[e.run["id"]] = e.run
        return list(rows.values())

    def schedules(self, key: str) -> list[int]:
        return [e.due_ms for _, e in self.log if isinstance(e, ScheduleTimer) and e.key == key]

    def mark(self) -> int:
        return len(self.log)


def send_steps(effects: Iterable[Effect]) -> list[str]:
    return [e.step for e in effects if isinstance(e, SendMessage)]
