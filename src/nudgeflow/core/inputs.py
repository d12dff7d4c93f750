"""What the pure core reacts to: an event from the log, or a timer that fell due."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(slots=True)
class EventInput:
    message_id: str
    type: str  # track | identify | page | screen | group | alias
    event: str | None  # the track event's name; "Page Viewed"-style names are not invented
    timestamp_ms: int  # corrected event time: windows are measured on it
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] | None = None  # identify (and group) traits
    context: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None
    anonymous_id: str | None = None
    group_id: str | None = None  # a group call's groupId
    # The name triggers match on: the track event's, or the call type for the others. Set
    # once here rather than computed on each read: it is read for every candidate trigger.
    name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.name = self.event if self.event is not None else self.type

    @classmethod
    def from_message(cls, message: dict[str, Any], timestamp_ms: int) -> EventInput:
        """From a stored Segment message (the events table's payload)."""
        type_ = message.get("type", "track")
        traits = message.get("traits") if type_ in ("identify", "group") else None
        if traits is None and type_ == "identify":
            traits = (message.get("context") or {}).get("traits")
        properties = message.get("properties") or {}
        if type_ in ("page", "screen") and isinstance(properties, dict):
            # A page or screen call names the page at the top level (`name`, `category`);
            # analytics.js copies both into properties too. Filters read properties, so
            # `where: [{property: name, …}]` must see them whichever way the client sent them.
            extra = {k: message[k] for k in ("name", "category") if message.get(k) is not None and k not in properties}
            if extra:
                properties = {**extra, **properties}
        group_id = message.get("groupId") if type_ == "group" else None
        return cls(
            message_id=str(message.get("messageId", "")),
            type=type_,
            event=message.get("event") if type_ == "track" else None,
            timestamp_ms=timestamp_ms,
            properties=properties,
            traits=traits if isinstance(traits, dict) else None,
            context=message.get("context") or {},
            user_id=message.get("userId"),
            anonymous_id=message.get("anonymousId"),
            group_id=group_id if isinstance(group_id, str) and group_id else None,
        )

    @classmethod
    def from_payload(cls, payload: str | bytes, timestamp_ms: int) -> EventInput:
        return cls.from_message(orjson.loads(payload), timestamp_ms)


@dataclass(slots=True)
class TimerInput:
    key: str
    due_ms: int
    payload: dict[str, Any]
