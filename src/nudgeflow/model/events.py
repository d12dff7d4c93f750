"""Segment-spec messages: their validated shapes and the normalized record we store.

Validation is done by pydantic-core straight from the JSON bytes (one pass, in Rust), into
TypedDicts rather than models: the result is plain dicts that keep every field the sender
set (Segment payloads carry arbitrary extras) and that serialize back with orjson at once.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, NotRequired

import orjson
from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, with_config
from pydantic_core import ErrorDetails
from typing_extensions import TypedDict

from nudgeflow.errors import ModelError
from nudgeflow.model.iso_time import to_ms
from nudgeflow.model.timestamps import as_utc, corrected_timestamp
from nudgeflow.model.traits import clean_traits

# The messageId prefix of the Segment Entered / Exited the engine appends itself
# (store/effects_writer.py): its cursor passes those undecided (store/event_log.py), so ingest
# refuses the prefix from outside rather than let a sender's event pass as one of them.
OWN_SEGMENT_PREFIX = "nf-seg-"
# The messageId prefix of the other events Nudgeflow records itself: the dispatcher's outcomes,
# opens and clicks, unsubscribes, the preference center's choices and consent records
# ("nudgeflow:…"). Ingest refuses it from senders, so that the engine can tell a choice the
# person made through Nudgeflow from a sender's event of the same name (is_own_event).
OWN_EVENT_PREFIX = "nudgeflow:"


def is_own_event(message_id: str | None) -> bool:
    """Whether Nudgeflow recorded this event itself (no sender can give such a messageId)."""
    return message_id is not None and message_id.startswith(OWN_EVENT_PREFIX)


EVENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")

Id = Annotated[str, StringConstraints(max_length=512)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Dict = dict[str, Any]

_MESSAGE_CONFIG = ConfigDict(extra="allow", coerce_numbers_to_str=True)

# The 32 KB limit is Segment's, on the event as its client sends it (the official client
# lets through anything up to 32 KB as it measures it). What normalize adds (receivedAt,
# sentAt, originalTimestamp, the corrected timestamp, a messageId) is about 250 bytes:
# it must not push such an event over the limit and have the client's whole batch refused.
ADDED_BY_SERVER_BYTES = 512


@with_config(_MESSAGE_CONFIG)
class _Common(TypedDict):
    userId: NotRequired[Id | None]
    anonymousId: NotRequired[Id | None]
    messageId: NotRequired[Id | None]
    timestamp: NotRequired[datetime | None]
    originalTimestamp: NotRequired[datetime | None]
    sentAt: NotRequired[datetime | None]
    context: NotRequired[Dict | None]
    integrations: NotRequired[Dict | None]
    writeKey: NotRequired[str | None]


@with_config(_MESSAGE_CONFIG)
class Track(_Common):
    type: Literal["track"]
    event: Name
    properties: NotRequired[Dict | None]


@with_config(_MESSAGE_CONFIG)
class Identify(_Common):
    type: Literal["identify"]
    traits: NotRequired[Dict | None]


@with_config(_MESSAGE_CONFIG)
class Page(_Common):
    type: Literal["page"]
    name: NotRequired[Id | None]
    category: NotRequired[Id | None]
    properties: NotRequired[Dict | None]


@with_config(_MESSAGE_CONFIG)
class Screen(_Common):
    type: Literal["screen"]
    name: NotRequired[Id | None]
    category: NotRequired[Id | None]
    properties: NotRequired[Dict | None]


@with_config(_MESSAGE_CONFIG)
class Group(_Common):
    type: Literal["group"]
    groupId: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    traits: NotRequired[Dict | None]


@with_config(_MESSAGE_CONFIG)
class Alias(_Common):
    type: Literal["alias"]
    previousId: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    userId: Annotated[str, StringConstraints(min_length=1, max_length=512)]  # type: ignore[misc]


Message = Annotated[Track | Identify | Page | Screen | Group | Alias, Field(discriminator="type")]

_BY_TYPE: dict[str, type] = {
    "track": Track,
    "identify": Identify,
    "page": Page,
    "screen": Screen,
    "group": Group,
    "alias": Alias,
}


@with_config(ConfigDict(extra="allow"))
class BatchBody(TypedDict):
    batch: Annotated[list[Message], Field(min_length=1)]
    sentAt: NotRequired[datetime | None]
    context: NotRequired[Dict | None]
    integrations: NotRequired[Dict | None]
    writeKey: NotRequired[str | None]


class InvalidEvent(ModelError, ValueError):
    """A message that breaks the spec. `field` is a path such as `batch[3].userId`."""

    def __init__(self, field: str, message: str, index: int | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.index = index

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "message": self.message}
        if self.index is not None:
            out["index"] = self.index
        return out


class EventTooLarge(InvalidEvent):
    """An event over the per-event size limit (a 400, as Segment answers: no retry helps)."""


@dataclass(slots=True)
class EventRecord:
    """One accepted message, normalized, as it is written to the event log."""

    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    previous_id: str | None
    timestamp_ms: int
    received_at_ms: int
    payload: bytes  # the message as JSON, with the corrected timestamp and receivedAt
    traits: Dict | None  # identify traits that passed validation, applied to the profile
    trait_errors: dict[str, Dict] | None  # reserved traits that failed, with reasons
    # The timestamp the event gave, when it was too far in the future and was stored at the
    # time received instead (future_limit in normalize); the sender is told in a warning.
    clamped_from: datetime | None = None


class _Adapters:
    """TypeAdapters are built on first use, not at import (building them costs milliseconds)."""

    _batch: TypeAdapter[Any] | None = None
    _single: ClassVar[dict[str, TypeAdapter[Any]]] = {}

    @classmethod
    def batch(cls) -> TypeAdapter[Any]:
        if cls._batch is None:
            cls._batch = TypeAdapter(BatchBody)
        return cls._batch

    @classmethod
    def single(cls, type_: str) -> TypeAdapter[Any]:
        adapter = cls._single.get(type_)
        if adapter is None:
            adapter = cls._single[type_] = TypeAdapter(_BY_TYPE[type_])
        return adapter


def _field_path(loc: tuple[Any, ...], in_batch: bool) -> tuple[str, int | None]:
    parts: list[str] = []
    index: int | None = None
    items = list(loc)
    if in_batch and len(items) >= 2 and items[0] == "batch" and isinstance(items[1], int):
        index = items[1]
        parts.append(f"batch[{index}]")
        items = items[2:]
        # pydantic names the union member it tried (the event type); it is not a field.
        if items and items[0] in _BY_TYPE:
            items = items[1:]
    for item in items:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts) or "body", index


def _describe(error: ErrorDetails) -> str:
    if error["type"] == "union_tag_invalid":
        return f"unknown type; expected one of {', '.join(EVENT_TYPES)}"
    if error["type"] == "union_tag_not_found":
        return f"missing type; expected one of {', '.join(EVENT_TYPES)}"
    return str(error["msg"])


def invalid_from(exc: ValidationError, in_batch: bool) -> list[InvalidEvent]:
    out = []
    for error in exc.errors(include_url=False):
        if error["type"] == "json_invalid":
            out.append(InvalidEvent("body", f"invalid JSON: {error.get('ctx', {}).get('error', error['msg'])}"))
            continue
        field, index = _field_path(tuple(error["loc"]), in_batch)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            field = "type" if field == "body" else f"{field}.type"
        out.append(InvalidEvent(field, _describe(error), index))
    return out


class InvalidPayload(ModelError):
    """A body that is not a valid Segment message or batch; `errors` says where (ingest answers 400)."""

    def __init__(self, errors: list[InvalidEvent]) -> None:
        super().__init__("; ".join(str(e) for e in errors[:5]))
        self.errors = errors


def parse_batch(body: bytes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Validate a /v1/batch body; returns its messages and the whole body."""
    try:
        parsed = _Adapters.batch().validate_json(body)
    except ValidationError as exc:
        raise InvalidPayload(invalid_from(exc, in_batch=True)) from exc
    return parsed["batch"], parsed


def parse_single(type_: str, body: bytes) -> dict[str, Any]:
    """Validate the body of /v1/{type}: one message whose type the path gives."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload([InvalidEvent("body", f"invalid JSON: {exc}")]) from exc
    if not isinstance(raw, dict):
        raise InvalidPayload([InvalidEvent("body", "expected a JSON object")])
    raw["type"] = type_
    try:
        return _Adapters.single(type_).validate_python(raw)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise InvalidPayload(invalid_from(exc, in_batch=False)) from exc


def parse_message(raw: Any) -> dict[str, Any]:
    """Validate one decoded message of any type (used by bulk import)."""
    if not isinstance(raw, dict):
        raise InvalidPayload([InvalidEvent("body", "expected a JSON object")])
    type_ = raw.get("type")
    if type_ not in _BY_TYPE:
        raise InvalidPayload(
            [InvalidEvent("type", f"unknown or missing type; expected one of {', '.join(EVENT_TYPES)}")]
        )
    try:
        return _Adapters.single(type_).validate_python(raw)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise InvalidPayload(invalid_from(exc, in_batch=False)) from exc


def content_message_id(message: dict[str, Any]) -> str:
    """A messageId derived from the content, so a message sent without one is still stored once."""
    digest = hashlib.sha256(orjson.dumps(message, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"content-{digest[:32]}"


def normalize(
    message: dict[str, Any],
    received_at: datetime,
    *,
    batch_sent_at: datetime | None = None,
    batch_context: dict[str, Any] | None = None,
    max_event_bytes: int,
    field: str = "body",
    index: int | None = None,
    derive_message_id: bool = False,
    own: bool = False,
    future_limit: timedelta | None = None,
    now: datetime | None = None,
) -> EventRecord:
    """Check what the schema cannot express and build the stored record. `own`: Nudgeflow
    records it itself, or an operator imports a log (a messageId may then be one of its own).
    `future_limit`: an event timestamped more than this after `now` (default: `received_at`)
    is stored at the earlier of the two instead (see clamp_future); the record says so."""

    def at(name: str) -> str:
        return f"{field}.{name}" if field != "body" else name

    user_id = message.get("userId") or None
    anonymous_id = message.get("anonymousId") or None
    if user_id is None and anonymous_id is None:
        raise InvalidEvent(at("userId"), "either userId or anonymousId is required", index)
    # These become indexed text columns, and PostgreSQL text cannot hold a NUL character.
    for name in ("userId", "anonymousId", "messageId", "previousId", "groupId", "event", "name"):
        value = message.get(name)
        if isinstance(value, str) and "\x00" in value:
            raise InvalidEvent(at(name), "must not contain a NUL (\\u0000) character", index)
    message.pop("writeKey", None)
    message_id = message.get("messageId")
    if isinstance(message_id, str) and message_id.startswith(OWN_SEGMENT_PREFIX):
        raise InvalidEvent(
            at("messageId"), f"must not start with {OWN_SEGMENT_PREFIX!r}: the engine's own events use it", index
        )
    if not own and is_own_event(message_id if isinstance(message_id, str) else None):
        raise InvalidEvent(
            at("messageId"), f"must not start with {OWN_EVENT_PREFIX!r}: Nudgeflow's own events use it", index
        )
    if not message_id:
        # Derived from the message as sent, before we add receive-time fields, so that
        # importing the same file twice derives the same id.
        try:
            message_id = content_message_id(message) if derive_message_id else str(uuid.uuid4())
        except orjson.JSONEncodeError as exc:
            raise InvalidEvent(field, f"cannot be stored as JSON: {exc}", index) from exc
        message["messageId"] = message_id
    if batch_context and not message.get("context"):
        message["context"] = batch_context
    original = message.get("originalTimestamp") or message.get("timestamp")
    sent_at = message.get("sentAt") or batch_sent_at
    try:
        timestamp = corrected_timestamp(received_at, original, sent_at)
    except OverflowError as exc:  # e.g. year 1 sent in year 9999: the correction leaves the calendar
        raise InvalidEvent(
            at("timestamp"), "out of range once converted to UTC and corrected with sentAt", index
        ) from exc
    clamped_from = None
    if future_limit is not None:
        clamped = clamp_future(timestamp, received_at, now or received_at, future_limit)
        if clamped != timestamp:
            clamped_from, timestamp = timestamp, clamped
    if original is not None:
        # Kept as sent: with a clamped timestamp it is where the event's own time survives.
        message["originalTimestamp"] = original
    message["timestamp"] = timestamp
    message["receivedAt"] = received_at
    if sent_at is not None:
        message["sentAt"] = sent_at
    try:
        payload = orjson.dumps(message)
    except orjson.JSONEncodeError as exc:  # nesting deeper than 254 levels, integers beyond 64 bits
        raise InvalidEvent(field, f"cannot be stored as JSON: {exc}", index) from exc
    if len(payload) > max_event_bytes + ADDED_BY_SERVER_BYTES:
        raise EventTooLarge(field, f"event is {len(payload)} bytes; the limit is {max_event_bytes}", index)
    type_ = message["type"]
    traits = trait_errors = None
    if type_ == "identify":
        raw_traits = message.get("traits")
        if not raw_traits:
            # RudderStack's SDKs send identify traits only as context.traits.
            context = message.get("context")
            raw_traits = context.get("traits") if isinstance(context, dict) else None
        if raw_traits and isinstance(raw_traits, dict):
            traits, trait_errors = clean_traits(raw_traits)
    event_name: str | None
    if type_ == "track":
        event_name = message["event"]
    elif type_ in ("page", "screen"):
        event_name = message.get("name")
    else:
        event_name = None
    return EventRecord(
        message_id=message_id,
        type=type_,
        event=event_name,
        user_id=user_id,
        anonymous_id=anonymous_id,
        # Only alias declares previousId; on other types it is an unchecked extra field.
        previous_id=message.get("previousId") if type_ == "alias" else None,
        timestamp_ms=to_ms(timestamp),
        received_at_ms=to_ms(received_at),
        payload=payload,
        traits=traits,
        trait_errors=trait_errors or None,
        clamped_from=clamped_from,
    )


def clamp_future(timestamp: datetime, received_at: datetime, now: datetime, limit: timedelta) -> datetime:
    """The timestamp to store for an event: its own, unless it is more than `limit` after
    `now`, when it is the earlier of `received_at` and `now`.

    A date in year 9999 (a device with a broken clock, a placeholder) would sort after every
    real event for ever: "last seen" and recency would be stuck on it, and timers computed
    from it would fall off the calendar. Segment's clock-skew correction cannot help when the
    device's clock was already wrong when it sent. The event is kept, not refused: its
    originalTimestamp still holds the time it gave."""
    try:
        latest = as_utc(now) + limit
    except OverflowError:  # `now` within `limit` of the calendar's end: nothing is later
        return timestamp
    if timestamp <= latest:
        return timestamp
    return min(as_utc(received_at), as_utc(now))


def describe_clamp(clamped_from: datetime, limit: timedelta, after: str = "the event was received") -> str:
    """The warning a sender (or an import's report) is given for a clamped timestamp."""
    return (
        f"{clamped_from.isoformat()} is more than {_duration(limit)} after {after} (the limit); "
        "it was stored at the time received, and originalTimestamp keeps the time sent"
    )


def _duration(limit: timedelta) -> str:
    seconds = int(limit.total_seconds())
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day" if days == 1 else f"{days} days"
    return f"{seconds} s"
