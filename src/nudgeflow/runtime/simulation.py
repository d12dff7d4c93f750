"""The simulator: the production core on a virtual clock, with everything kept in memory.

`Simulation` carries out the effects of the very `Engine` the runtime uses (the pure core),
but instead of an outbox and a timers table it keeps a list of planned messages and a heap
of timers, and instead of the wall clock it moves a virtual one: an event happens at its
own timestamp, and every timer due before it fires first, in due order. Nothing is sent.

It is what `nudgeflow simulate` replays files through, and the harness journey tests use:

    sim = Simulation([welcome])
    sim.identify("ada", {"email": "ada@example.com"}, at="2026-01-05T09:00:00Z")
    sim.track("ada", "Signed Up", at="2026-01-05T09:00:01Z")
    sim.advance("3d")
    assert [m.step for m in sim.messages_for("ada")] == ["hello", "tips"]

Identity, kept simple: a profile is keyed by its userId, else its anonymousId. An event
carrying both ids (an identify after sign-up, and every later event of Segment's clients)
or an alias (previousId -> userId) links the anonymous id to the user from then on, as
ingest does; an anonymous id already linked to one user is never moved to another (a
shared device must not fuse two people). The anonymous person's engine state (runs,
timers, counters, history) then becomes the user's: as it is when the user has none yet,
and folded in with the runtime's own `merge_state` when the user has some (the user's
wins where the two disagree, counts add up, the user's timer wins a key both have), as
the production runtime does when ingest merges two profiles.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from nudgeflow.core.catalog import Catalog, JourneyVersion
from nudgeflow.core.clock import from_ms, to_ms
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
from nudgeflow.core.inputs import EventInput, TimerInput
from nudgeflow.core.segment_index import SegmentVersion
from nudgeflow.core.state import DONE, EXITED, ProfileState
from nudgeflow.errors import EngineRuntimeError
from nudgeflow.model import event_names
from nudgeflow.model.engagement_signals import is_flagged
from nudgeflow.model.events import EVENT_TYPES, InvalidPayload, parse_message
from nudgeflow.model.iso_time import iso
from nudgeflow.model.journeys import Journey, duration_ms
from nudgeflow.model.policies import EMPTY, Policies
from nudgeflow.model.segments import Segment
from nudgeflow.model.timestamps import corrected_timestamp
from nudgeflow.runtime.merges import merge_state

__all__ = [
    "CLICKED",
    "FIRST_INSTANT_MS",
    "LAST_INSTANT_MS",
    "OPENED",
    "Engagement",
    "FailedMessage",
    "InvalidMessage",
    "PlannedMessage",
    "SegmentMove",
    "Simulation",
    "WithheldMessage",
    "check_message",
    "message_time_ms",
]


class CoreEngine(Protocol):
    def on_event(self, state: ProfileState, event: EventInput, now_ms: int) -> list[Effect]: ...

    def on_timer(self, state: ProfileState, timer: TimerInput, now_ms: int) -> list[Effect]: ...


class InvalidMessage(EngineRuntimeError, ValueError):
    """A message the simulator (like ingest) refuses; the text names the field."""


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    """A message the core decided to send. `profile` is the key the simulator keeps state
    under (the userId, else the anonymousId); `user_id` is the person's userId when known."""

    at_ms: int
    user_id: str | None
    anonymous_id: str | None
    profile: str
    journey: str
    version: int
    step: str
    channel: str
    template: str
    variant: str | None
    run_id: str
    key: str
    marketing: bool = True
    deferred_from_ms: int | None = None  # when a send policy first deferred it
    # The trigger event's time (the core's message context): what a report's time to trigger
    # measures from. Not in `as_json`: simulate's message lines are what they always were.
    trigger_at_ms: int | None = None

    @property
    def at(self) -> datetime:
        return from_ms(self.at_ms)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "at": iso(self.at_ms),
            "user_id": self.user_id,
            "anonymous_id": self.anonymous_id,
            "journey": self.journey,
            "version": self.version,
            "step": self.step,
            "channel": self.channel,
            "template": self.template,
            "variant": self.variant,
            "run_id": self.run_id,
        }
        if self.deferred_from_ms is not None:
            out["deferred_from"] = iso(self.deferred_from_ms)
        return out


@dataclass(frozen=True, slots=True)
class WithheldMessage:
    """A message a send policy deferred (to `until_ms`, then decided again) or dropped, with the
    core's reason (core/policies.py)."""

    at_ms: int
    user_id: str | None
    profile: str
    journey: str
    step: str
    channel: str
    template: str
    run_id: str
    key: str
    status: str  # deferred | dropped
    reason: str
    until_ms: int | None
    version: int = 1
    variant: str | None = None


@dataclass(frozen=True, slots=True)
class FailedMessage:
    """A send step that could not produce its message, with the core's reason."""

    at_ms: int
    user_id: str | None
    profile: str
    journey: str
    step: str
    run_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Engagement:
    """A replayed open or click of a message (a tracking event carrying its `message_key`), as
    the tracking routes would count it: `fact` is opened or clicked; `machine` when the event
    is flagged as a machine's (model/engagement_signals.py). Whether the key is one of the
    simulation's planned messages is for the reader to check (runtime/simulation_rollups.py)."""

    at_ms: int
    key: str
    fact: str
    machine: bool


# The tracking events whose first occurrence production counts as a message's unique open or
# click (web/tracking.py, web/push_reports.py: opening a notification is clicking it).
OPENED, CLICKED = "opened", "clicked"
_ENGAGEMENT_FACTS: dict[str, tuple[str, ...]] = {
    event_names.EMAIL_OPENED: (OPENED,),
    event_names.EMAIL_LINK_CLICKED: (CLICKED,),
    event_names.PUSH_CLICKED: (OPENED, CLICKED),
}


@dataclass(frozen=True, slots=True)
class SegmentMove:
    """A person entered or left a segment (the core's SegmentChanged), as the simulator saw it."""

    at_ms: int
    profile: str
    segment: str
    entered: bool
    cause: dict[str, Any]


# --- reading a Segment message cheaply --------------------------------------------------

# What ingest's pydantic models check, for the fields the simulator reads and the common
# ones, done by hand because validating every message with the full model costs more than
# the rest of a replay. Anything unusual (a number where a string goes, a date-time in an
# odd format) falls back to the same `parse_message` as import, which either coerces it
# as ingest would or says what is wrong in the same words.
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
_ID_FIELDS = ("userId", "anonymousId", "messageId")
_DICT_FIELDS = ("context", "integrations")
_TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt")
_TYPE_DICT = {
    "track": "properties",
    "page": "properties",
    "screen": "properties",
    "identify": "traits",
    "group": "traits",
}
_MAX_ID = 512


def _fast_ok(raw: dict[str, Any]) -> bool:
    type_ = raw.get("type")
    if type_ not in _TYPE_SET:
        return False
    for name in _ID_FIELDS:
        value = raw.get(name)
        if value is not None and (type(value) is not str or len(value) > _MAX_ID or "\x00" in value):
            return False
    for name in _DICT_FIELDS:
        value = raw.get(name)
        if value is not None and type(value) is not dict:
            return False
    for name in _TIME_FIELDS:
        value = raw.get(name)
        if value is not None and (type(value) is not str or not _RFC3339.match(value)):
            return False
    writekey = raw.get("writeKey")
    if writekey is not None and type(writekey) is not str:
        return False
    received = raw.get("receivedAt")
    if received is not None and (type(received) is not str or not _RFC3339.match(received)):
        return False
    body = _TYPE_DICT.get(type_)
    if body is not None:
        value = raw.get(body)
        if value is not None and type(value) is not dict:
            return False
    if type_ == "track":
        event = raw.get("event")
        if type(event) is not str or not event or len(event) > _MAX_ID or "\x00" in event:
            return False
    elif type_ in ("page", "screen"):
        for name in ("name", "category"):
            value = raw.get(name)
            if value is not None and (type(value) is not str or len(value) > _MAX_ID or "\x00" in value):
                return False
    elif type_ == "group":
        group = raw.get("groupId")
        if type(group) is not str or not group or len(group) > _MAX_ID:
            return False
    elif type_ == "alias":
        for name in ("previousId", "userId"):
            value = raw.get(name)
            if type(value) is not str or not value:
                return False
    return bool(raw.get("userId") or raw.get("anonymousId"))


_TYPE_SET = frozenset(EVENT_TYPES)


def check_message(raw: Any) -> dict[str, Any]:
    """The message as ingest would accept it, or InvalidMessage naming what is wrong.

    Most messages pass the cheap checks and are returned as they are; the others go
    through ingest's own validation (which coerces what it can, as ingest would)."""
    if type(raw) is dict and _fast_ok(raw):
        return raw
    try:
        message = parse_message(raw)
    except InvalidPayload as exc:
        raise InvalidMessage("; ".join(str(e) for e in exc.errors[:5])) from exc
    if not (message.get("userId") or message.get("anonymousId")):
        raise InvalidMessage("userId: either userId or anonymousId is required")
    for name in ("userId", "anonymousId", "messageId", "previousId", "event", "name"):
        value = message.get(name)
        if isinstance(value, str) and "\x00" in value:
            raise InvalidMessage(f"{name}: must not contain a NUL (\\u0000) character")
    received = message.get("receivedAt")
    if received is not None and (not isinstance(received, str) or not _parse_time(received)):
        raise InvalidMessage("receivedAt: not an ISO 8601 date-time")
    return message


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def message_time_ms(message: dict[str, Any]) -> int | None:
    """When a (checked) message happened, corrected for device clock skew as ingest does.

    With receivedAt, sentAt and a device timestamp, the time is receivedAt - (sentAt -
    timestamp) (an export from Segment gives back its own `timestamp` this way); otherwise
    it is the message's `originalTimestamp` or `timestamp`. None when it has no time."""
    original_raw = message.get("originalTimestamp") or message.get("timestamp")
    received_raw = message.get("receivedAt")
    sent_raw = message.get("sentAt")
    if original_raw is None:
        received = _parse_time(received_raw)
        if received is not None:
            return _in_calendar(to_ms(received), "receivedAt")
        sent = _parse_time(sent_raw)
        return _in_calendar(to_ms(sent), "sentAt") if sent else None
    original = _parse_time(original_raw)
    if original is None:
        raise InvalidMessage("timestamp: not an ISO 8601 date-time")
    sent = _parse_time(sent_raw) if sent_raw is not None else None
    if sent_raw is not None and sent is None:
        raise InvalidMessage("sentAt: not an ISO 8601 date-time")
    if received_raw is None or sent is None:
        return _in_calendar(to_ms(original), "timestamp")
    received = _parse_time(received_raw)
    if received is None:
        raise InvalidMessage("receivedAt: not an ISO 8601 date-time")
    try:
        return _in_calendar(to_ms(corrected_timestamp(received, original, sent)), "timestamp")
    except OverflowError as exc:
        raise InvalidMessage("timestamp: out of range once corrected with sentAt") from exc


# The instants a datetime can hold in UTC, as ingest stores them: 0001-01-01T00:00:00+14:00
# parses but falls before year 1 once in UTC, and nothing could show it (iso() raised). The
# replay's horizon stops at the last one too (runtime/replay.replay_file).
FIRST_INSTANT_MS = to_ms(datetime(1, 1, 1, tzinfo=UTC))
LAST_INSTANT_MS = to_ms(datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC))


def _in_calendar(ms: int, field: str) -> int:
    if FIRST_INSTANT_MS <= ms <= LAST_INSTANT_MS:
        return ms
    raise InvalidMessage(f"{field}: out of range once converted to UTC")


def _as_ms(when: int | str | datetime | None) -> int | None:
    if when is None or isinstance(when, int):
        return when
    parsed = _parse_time(when)
    if parsed is None:
        raise ValueError(f"not an ISO 8601 date-time: {when!r}")
    return to_ms(parsed)


def _duration(value: int | str) -> int:
    return duration_ms(value) if isinstance(value, str) else int(value)


# --- the simulator -----------------------------------------------------------------------


class Simulation:
    """All live journeys, every profile's state and every timer, in memory, on a virtual clock.

    `journeys` all go live as version 1, and so do `segments` (their membership is decided
    as the engine decides it: `segment_moves`, `segment_sizes`). `start_ms` sets the clock
    (default: the first event's time). Pass `engine` to drive a stand-in for the core (tests
    of this class)."""

    def __init__(
        self,
        journeys: Sequence[Journey],
        start_ms: int | None = None,
        *,
        engine: CoreEngine | None = None,
        places: Iterable[Mapping[str, Any]] = (),
        policies: Policies = EMPTY,
        segments: Sequence[Segment] = (),
    ) -> None:
        ids = [j.id for j in journeys]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"journey id used twice: {', '.join(duplicates)}")
        self.journeys: dict[str, Journey] = {j.id: j for j in journeys}
        # `places`: a places catalog (id, name, latitude, longitude, attributes) for location
        # triggers that take theirs from it (`catalog_places`).
        seg_ids = [s.id for s in segments]
        duplicates = sorted({i for i in seg_ids if seg_ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"segment id used twice: {', '.join(duplicates)}")
        self.segments: dict[str, Segment] = {s.id: s for s in segments}
        # `policies`: the workspace's send policies, applied as the engine applies them.
        self.catalog = Catalog(
            (JourneyVersion(j.id, 1, j) for j in journeys),
            places=places,
            policies=policies,
            segments=[SegmentVersion(s.id, 1, s) for s in segments],
        )
        if engine is None:
            from nudgeflow.core.engine import Engine

            engine = Engine(self.catalog)
        self.engine: CoreEngine = engine
        self.now_ms: int | None = start_ms
        self.states: dict[str, ProfileState] = {}
        self.messages: list[PlannedMessage] = []
        self.failures: list[FailedMessage] = []
        # Every deferral and drop by a send policy, in order; a deferred message that is later
        # sent is also in `messages`, at its new time (with deferred_from).
        self.withheld: list[WithheldMessage] = []
        self._deferred_from: dict[str, int] = {}  # message key -> when it was first deferred
        self.segment_moves: list[SegmentMove] = []
        # Replayed opens and clicks of messages, in the order fed (`Engagement`).
        self.engagement: list[Engagement] = []
        self.runs: dict[str, dict[str, Any]] = {}  # run id -> latest Run.as_row
        self._runs_of: dict[str, list[str]] = {}  # profile key -> its run ids
        self.profile_updates = 0
        self.events = 0
        self.timers_fired = 0
        self.merges = 0
        self.first_event_ms: int | None = None
        self.last_event_ms: int | None = None
        self._anon_user: dict[str, str] = {}  # anonymousId -> the userId it was linked to
        self._anonymous: set[str] = set()  # profile keys that are anonymous ids
        # Timers: a heap of (due, seq, profile, key) and, per profile, key -> (due, seq,
        # payload). Replacing or cancelling a timer leaves its heap entry behind; an entry
        # whose seq no longer matches is skipped when it comes up (lazy deletion).
        self._heap: list[tuple[int, int, str, str]] = []
        self._timers: dict[str, dict[str, tuple[int, int, dict[str, Any]]]] = {}
        self._seq = 0
        self._live = 0  # timers in _timers; the heap also holds stale entries
        self._auto_id = 0

    # -- time -----------------------------------------------------------------------------

    @property
    def now(self) -> datetime | None:
        return from_ms(self.now_ms) if self.now_ms is not None else None

    @property
    def pending_timers(self) -> int:
        return self._live

    def timers_of(self, user_or_anonymous_id: str) -> dict[str, int]:
        """The pending timers of a person: key -> due (ms)."""
        owned = self._timers.get(self.profile_key(user_or_anonymous_id), {})
        return {key: due for key, (due, _seq, _payload) in sorted(owned.items(), key=lambda kv: kv[1][0])}

    def next_due_ms(self) -> int | None:
        """When the next live timer falls due (None: no timer)."""
        heap = self._heap
        while heap:
            due, seq, profile, key = heap[0]
            entry = self._timers.get(profile, {}).get(key)
            if entry is not None and entry[1] == seq:
                return due
            heapq.heappop(heap)
        return None

    def advance_to(self, when: int | str | datetime) -> list[PlannedMessage]:
        """Fire every timer due up to `when` (inclusive), in due order; the clock ends there."""
        target = _as_ms(when)
        assert target is not None
        before = len(self.messages)
        self._fire_until(target)
        if self.now_ms is None or target > self.now_ms:
            self.now_ms = target
        return self.messages[before:]

    def advance(self, duration: int | str) -> list[PlannedMessage]:
        """Move the clock forward by milliseconds or a duration ("3d"), firing what falls due."""
        if self.now_ms is None:
            raise ValueError("the clock has not started: feed an event or give start_ms first")
        return self.advance_to(self.now_ms + _duration(duration))

    def drain(self, horizon: int | str | datetime) -> list[PlannedMessage]:
        """Fire timers until none is due at or before `horizon`; the clock stays at the last one."""
        target = _as_ms(horizon)
        assert target is not None
        before = len(self.messages)
        self._fire_until(target)
        return self.messages[before:]

    def _fire_until(self, limit_ms: int) -> None:
        heap, timers = self._heap, self._timers
        while heap and heap[0][0] <= limit_ms:
            due, seq, profile, key = heapq.heappop(heap)
            owned = timers.get(profile)
            entry = owned.get(key) if owned is not None else None
            if owned is None or entry is None or entry[1] != seq:
                continue  # replaced or cancelled since
            del owned[key]
            self._live -= 1
            # The clock never goes back: a timer armed in the past fires now.
            now = due if self.now_ms is None or due > self.now_ms else self.now_ms
            self.now_ms = now
            self.timers_fired += 1
            state = self.states.get(profile)
            if state is None:  # pragma: no cover - timers belong to states
                continue
            effects = self.engine.on_timer(state, TimerInput(key, due, entry[2]), now)
            if effects:
                self._apply(profile, effects, now)

    # -- events ---------------------------------------------------------------------------

    def feed(self, message: dict[str, Any]) -> list[PlannedMessage]:
        """Process one Segment message at its own timestamp; returns the messages planned
        meanwhile (by timers that fell due before it, and by the event itself).

        A message without any time happens at the clock's current time. One older than the
        clock (fed out of order) is processed now, with its own timestamp as event time:
        what production does with a late event, so `max_lateness` applies to it."""
        checked = check_message(message)
        at = message_time_ms(checked)
        if at is None:
            if self.now_ms is None:
                raise InvalidMessage("timestamp: required for the first message (the clock has not started)")
            at = self.now_ms
        return self.feed_checked(checked, at)

    def feed_checked(self, message: dict[str, Any], at_ms: int) -> list[PlannedMessage]:
        """`feed` for a message already checked, whose time is known (the file replay)."""
        before = len(self.messages)
        if self.now_ms is None or at_ms > self.now_ms:
            self._fire_until(at_ms)
            self.now_ms = at_ms
        now = self.now_ms
        if self.first_event_ms is None or at_ms < self.first_event_ms:
            self.first_event_ms = at_ms
        if self.last_event_ms is None or at_ms > self.last_event_ms:
            self.last_event_ms = at_ms
        self.events += 1
        if not message.get("messageId"):
            self._auto_id += 1
            message = {**message, "messageId": f"sim-{self._auto_id}"}
        profile = self._resolve(message)
        if message.get("type") == "track" and message.get("event") in _ENGAGEMENT_FACTS:
            self._engaged(message, at_ms)
        state = self.states.get(profile)
        if state is None:
            state = self.states[profile] = ProfileState(profile)
        effects = self.engine.on_event(state, EventInput.from_message(message, at_ms), now)
        if effects:
            self._apply(profile, effects, now)
        return self.messages[before:]

    def _engaged(self, message: dict[str, Any], at_ms: int) -> None:
        properties = message.get("properties")
        if not isinstance(properties, dict):
            return
        key = properties.get("message_key")
        if not isinstance(key, str):
            return
        machine = is_flagged(properties)
        for fact in _ENGAGEMENT_FACTS[message["event"]]:
            self.engagement.append(Engagement(at_ms, key, fact, machine))

    def replay(self, messages: Iterable[dict[str, Any]], horizon: int | str | None = None) -> list[PlannedMessage]:
        """Feed messages in timestamp order (a stable sort), then fire timers up to the last
        event + `horizon` (a duration) when one is given."""
        timed = []
        for message in messages:
            checked = check_message(message)
            at = message_time_ms(checked)
            if at is None:
                raise InvalidMessage("timestamp: every replayed message needs one")
            timed.append((at, checked))
        timed.sort(key=lambda item: item[0])
        before = len(self.messages)
        for at, checked in timed:
            self.feed_checked(checked, at)
        if horizon is not None and self.last_event_ms is not None:
            self.drain(self.last_event_ms + _duration(horizon))
        return self.messages[before:]

    # Conveniences for tests: Segment calls with a time.

    def track(
        self,
        user_id: str | None,
        event: str,
        properties: dict[str, Any] | None = None,
        *,
        at: int | str | datetime | None = None,
        anonymous_id: str | None = None,
        **fields: Any,
    ) -> list[PlannedMessage]:
        return self.feed(
            self._call("track", user_id, anonymous_id, at, event=event, properties=properties or {}, **fields)
        )

    def identify(
        self,
        user_id: str | None,
        traits: dict[str, Any] | None = None,
        *,
        at: int | str | datetime | None = None,
        anonymous_id: str | None = None,
        **fields: Any,
    ) -> list[PlannedMessage]:
        return self.feed(self._call("identify", user_id, anonymous_id, at, traits=traits or {}, **fields))

    def alias(self, user_id: str, previous_id: str, *, at: int | str | datetime | None = None) -> list[PlannedMessage]:
        return self.feed(self._call("alias", user_id, None, at, previousId=previous_id))

    def _call(
        self, type_: str, user_id: str | None, anonymous_id: str | None, at: Any, **fields: Any
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"type": type_, **fields}
        if user_id is not None:
            message["userId"] = user_id
        if anonymous_id is not None:
            message["anonymousId"] = anonymous_id
        at_ms = _as_ms(at)
        if at_ms is not None:
            message["timestamp"] = iso(at_ms)
        return message

    # -- identity -------------------------------------------------------------------------

    def profile_key(self, user_or_anonymous_id: str) -> str:
        """The key the state of this id lives under now."""
        return self._anon_user.get(user_or_anonymous_id, user_or_anonymous_id)

    def _resolve(self, message: dict[str, Any]) -> str:
        user_id = message.get("userId") or None
        anonymous_id = message.get("anonymousId") or None
        if user_id is None:
            # A checked message has a userId or an anonymousId: parse_message refuses one with neither.
            anonymous = cast(str, anonymous_id)
            key = self._anon_user.get(anonymous, anonymous)
            if key == anonymous:
                self._anonymous.add(key)
            return key
        if anonymous_id is not None and anonymous_id != user_id:
            self._link(anonymous_id, user_id)
        if message.get("type") == "alias":
            previous = message.get("previousId")
            if previous and previous != user_id:
                self._link(previous, user_id)
        return user_id

    def _link(self, anonymous_id: str, user_id: str) -> None:
        if anonymous_id in self._anon_user:
            return  # linked already (to this user, or to another: never moved)
        if anonymous_id not in self._anonymous and anonymous_id in self.states:
            # Not seen as anonymous: a former userId (an alias from one) is not merged,
            # as ingest does not merge two known profiles.
            return
        self._anon_user[anonymous_id] = user_id
        state = self.states.pop(anonymous_id, None)
        if state is None:
            return
        self.merges += 1
        self._anonymous.discard(anonymous_id)
        target = self.states.get(user_id)
        if target is None:
            state.profile_id = user_id
            self.states[user_id] = state
        else:
            merge_state(target, state)
        timers = self._timers.pop(anonymous_id, None)
        if timers:
            moved = self._timers.setdefault(user_id, {})
            for key, (due, _seq, payload) in timers.items():
                if key in moved:  # the user's own timer wins a key both have
                    self._live -= 1
                    continue
                self._seq += 1
                moved[key] = (due, self._seq, payload)
                heapq.heappush(self._heap, (due, self._seq, user_id, key))
        runs = self._runs_of.pop(anonymous_id, None)
        if runs:
            for run_id in runs:
                self.runs[run_id]["profile_id"] = user_id
            self._runs_of.setdefault(user_id, []).extend(runs)

    def _who(self, profile: str) -> tuple[str | None, str | None]:
        """(user_id, anonymous_id) of a profile key."""
        if profile in self._anonymous:
            return self._anon_user.get(profile), profile
        return profile, None

    # -- effects --------------------------------------------------------------------------

    def _apply(self, profile: str, effects: list[Effect], now: int) -> None:
        # Dispatch on the exact class (one type() per effect, then identity tests): each cast
        # below only names the class the `kind is` test has just established.
        for effect in effects:
            kind = type(effect)
            if kind is ScheduleTimer:
                timer = cast(ScheduleTimer, effect)
                self._seq += 1
                owned = self._timers.get(profile)
                if owned is None:
                    owned = self._timers[profile] = {}
                if timer.key not in owned:
                    self._live += 1
                owned[timer.key] = (timer.due_ms, self._seq, timer.payload)
                heap = self._heap
                heapq.heappush(heap, (timer.due_ms, self._seq, profile, timer.key))
                if len(heap) > 4 * self._live + 65536:
                    self._compact()
            elif kind is SendMessage:
                send = cast(SendMessage, effect)
                user_id, anonymous_id = self._who(profile)
                self.messages.append(
                    PlannedMessage(
                        at_ms=send.at_ms,
                        user_id=user_id,
                        anonymous_id=anonymous_id,
                        profile=profile,
                        journey=send.journey_id,
                        version=send.version,
                        step=send.step,
                        channel=send.channel,
                        template=send.template,
                        variant=send.variant,
                        run_id=send.run_id,
                        key=send.key,
                        marketing=send.marketing,
                        deferred_from_ms=self._deferred_from.pop(send.key, None) if self._deferred_from else None,
                        trigger_at_ms=_trigger_at(send.context),
                    )
                )
            elif kind is CancelTimer:
                owned = self._timers.get(profile)
                if owned is not None and owned.pop(cast(CancelTimer, effect).key, None) is not None:
                    self._live -= 1
            elif kind is RunChanged:
                row = cast(RunChanged, effect).run
                if row["id"] not in self.runs:
                    self._runs_of.setdefault(profile, []).append(row["id"])
                self.runs[row["id"]] = row
            elif kind is UpdateProfile:
                self.profile_updates += 1  # the core already changed state.traits
            elif kind is MessageFailed:
                failed = cast(MessageFailed, effect)
                user_id, _ = self._who(profile)
                self.failures.append(
                    FailedMessage(now, user_id, profile, failed.journey_id, failed.step, failed.run_id, failed.reason)
                )
            elif kind is MessageWithheld:
                held = cast(MessageWithheld, effect)
                user_id, _ = self._who(profile)
                self.withheld.append(
                    WithheldMessage(
                        now,
                        user_id,
                        profile,
                        held.journey_id,
                        held.step,
                        held.channel,
                        held.template,
                        held.run_id,
                        held.key,
                        held.status,
                        held.reason,
                        held.until_ms,
                        held.version,
                        held.variant,
                    )
                )
                if held.until_ms is not None:
                    self._deferred_from.setdefault(held.key, now)
                else:
                    self._deferred_from.pop(held.key, None)
            elif kind is SegmentChanged:
                # The core already changed state.membership; the store would append Segment
                # Entered / Exited to the person's log, which journeys do not read back.
                moved = cast(SegmentChanged, effect)
                self.segment_moves.append(
                    SegmentMove(moved.at_ms, profile, moved.segment_id, moved.entered, moved.cause)
                )
            else:  # pragma: no cover - a new effect kind must be handled here
                raise TypeError(f"the simulator does not know the effect {kind.__name__}")

    def _compact(self) -> None:
        # Re-armed timers (inactivity re-arms on every event) leave stale heap entries
        # behind; rebuilding from the live ones keeps the heap near the number of timers.
        # In place: a firing loop may hold the list.
        heap = self._heap
        heap[:] = [
            (due, seq, profile, key) for profile, owned in self._timers.items() for key, (due, seq, _p) in owned.items()
        ]
        heapq.heapify(heap)

    # -- results --------------------------------------------------------------------------

    def messages_for(self, user_or_anonymous_id: str) -> list[PlannedMessage]:
        """The planned messages of one person, by userId or anonymousId: those planned
        while they were anonymous included."""
        ids = self._ids_of(user_or_anonymous_id)
        return [m for m in self.messages if m.user_id in ids or m.profile in ids]

    def _ids_of(self, user_or_anonymous_id: str) -> set[str]:
        key = self.profile_key(user_or_anonymous_id)
        return {user_or_anonymous_id, key} | {anon for anon, user in self._anon_user.items() if user == key}

    def runs_for(self, user_or_anonymous_id: str) -> list[dict[str, Any]]:
        """The runs of one person (latest row of each), those started while anonymous included."""
        key = self.profile_key(user_or_anonymous_id)
        return [self.runs[run_id] for run_id in self._runs_of.get(key, [])]

    def state_of(self, user_or_anonymous_id: str) -> ProfileState | None:
        return self.states.get(self.profile_key(user_or_anonymous_id))

    def segment_sizes(self) -> dict[str, int]:
        """How many people each segment holds now, by segment id (in the order given)."""
        sizes = dict.fromkeys(self.segments, 0)
        for state in self.states.values():
            for segment_id in state.membership:
                if segment_id in sizes:
                    sizes[segment_id] += 1
        return sizes

    def segments_of(self, user_or_anonymous_id: str) -> list[str]:
        """The segments a person is in now."""
        state = self.state_of(user_or_anonymous_id)
        return sorted(sid for sid in (state.membership if state else {}) if sid in self.segments)

    def summary(self) -> dict[str, Any]:
        """Per journey: entered, holdout, exited by reason, completed, converted, revenue,
        still active, messages per step (and failures per step); plus replay totals. With a
        global control group in the policies, also the runs in it (`global_control`, counted
        in completed / exited / active too: they walk like treated runs) and how many of them
        converted (`global_control_converted`)."""
        control = self.catalog.control_plan is not None
        journeys: dict[str, dict[str, Any]] = {}
        for journey_id in self.journeys:
            journeys[journey_id] = {
                "entered": 0,
                "holdout": 0,
                "active": 0,
                "completed": 0,
                "exited": {},
                "converted": 0,
                "revenue": 0.0,
                "messages": {},
                "failed": {},
            }
            if control:
                journeys[journey_id].update(global_control=0, global_control_converted=0)
        exited: dict[str, Counter[str]] = defaultdict(Counter)
        for row in self.runs.values():
            entry = journeys.get(row["journey_id"])
            if entry is None:
                continue
            entry["entered"] += 1
            status, reason = row.get("status"), row.get("exit_reason")
            if row.get("holdout"):
                entry["holdout"] += 1
            elif status == DONE:
                entry["completed"] += 1
            elif status == EXITED:
                exited[row["journey_id"]][reason or "unknown"] += 1
            else:
                entry["active"] += 1
            if row.get("converted_at_ms") is not None:
                entry["converted"] += 1
                entry["revenue"] += float(row.get("revenue") or 0.0)
            if control and row.get("control"):
                entry["global_control"] += 1
                entry["global_control_converted"] += row.get("converted_at_ms") is not None
        for journey_id, counts in exited.items():
            journeys[journey_id]["exited"] = dict(sorted(counts.items()))
        steps: dict[str, Counter[str]] = defaultdict(Counter)
        for message in self.messages:
            steps[message.journey][message.step] += 1
        for journey_id, counts in steps.items():
            if journey_id in journeys:
                journeys[journey_id]["messages"] = _in_step_order(self.journeys[journey_id], counts)
        failed: dict[str, Counter[str]] = defaultdict(Counter)
        for failure in self.failures:
            failed[failure.journey][failure.step] += 1
        for journey_id, counts in failed.items():
            if journey_id in journeys:
                journeys[journey_id]["failed"] = _in_step_order(self.journeys[journey_id], counts)
        for entry in journeys.values():
            entry["revenue"] = round(entry["revenue"], 2)
        return {
            "events": self.events,
            "profiles": len(self.states),
            "merges": self.merges,
            "messages": len(self.messages),
            "failed": len(self.failures),
            "withheld": _withheld_summary(self.withheld),
            "timers_fired": self.timers_fired,
            "timers_pending": self.pending_timers,
            "first_event": iso(self.first_event_ms) if self.first_event_ms is not None else None,
            "last_event": iso(self.last_event_ms) if self.last_event_ms is not None else None,
            "clock": iso(self.now_ms) if self.now_ms is not None else None,
            "journeys": journeys,
        }


def _trigger_at(context: Mapping[str, Any]) -> int | None:
    # As the dispatcher reads it for the rollups' time to trigger (runtime/dispatcher.py).
    trigger = context.get("trigger")
    at = trigger.get("at") if isinstance(trigger, dict) else None
    return at if isinstance(at, int) else None


def _withheld_summary(withheld: list[WithheldMessage]) -> dict[str, Any]:
    """Deferrals and drops by send policies: how many, and how many per reason."""
    reasons: dict[str, Counter[str]] = {"deferred": Counter(), "dropped": Counter()}
    for held in withheld:
        reasons.setdefault(held.status, Counter())[held.reason] += 1
    return {status: {"count": sum(c.values()), "reasons": dict(sorted(c.items()))} for status, c in reasons.items()}


def _in_step_order(journey: Journey, counts: Counter[str]) -> dict[str, int]:
    order = {step: i for i, step in enumerate(journey.steps)}
    return {step: counts[step] for step in sorted(counts, key=lambda s: (order.get(s, len(order)), s))}
