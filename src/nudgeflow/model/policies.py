"""Send policies: the workspace-wide rules every journey's messages pass (`policies.yaml`).

One document per workspace, applied by the engine when a send step wants a person, across all
journeys (DESIGN §5 "Policies"):

- `frequency_caps`: channel × limit × window rules. A window is rolling (`window: 24h`) or a
  calendar day or week in the person's time zone (`calendar: day|week`). A rule applies to one
  category of message (`marketing` by default, `transactional` or `any`) and optionally one
  topic. Transactional messages pass every rule that does not name them.
- `fewer`: what the preference center's "fewer emails" choice means: stricter rules for the
  people who made it, applied in addition to the caps.
- `quiet_hours`: per channel, local hours in which a message is deferred to their end (spread
  over `spread`) or dropped.
- `collision`: one message per person per channel per window across journeys; the higher
  journey priority wins, ties go to the earlier message.
- `control_group`: the workspace's global control group, a `share` of people who get no
  marketing message from any journey (transactional ones still go), drawn again each `reset`
  period or when the `salt` changes; it measures the whole program's lift (core/control_group.py).

These pydantic models are the source of the published JSON Schema (`policies_json_schema`).
The decisions are made in `core/policies.py`; docs/policies.md gives the exact semantics.
"""

from __future__ import annotations

from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nudgeflow.model.journeys import Duration, LocalTime, duration_ms

Category = Literal["marketing", "transactional", "any"]
ChannelName = Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$", examples=["email", "push", "webhook"])
RuleId = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# The most messages a cap may allow in its window: the send ledger keeps this many per person
# (core/policies.MAX_LEDGER), so a higher limit could never be reached and would never cap.
MAX_CAP_LIMIT = 1000


class CapRule(_Strict):
    """At most `limit` messages on `channel` per window, counted across all journeys."""

    id: str = RuleId
    channel: str = ChannelName
    limit: int = Field(
        ge=0, le=MAX_CAP_LIMIT, description="Messages allowed in the window (0 stops the channel; at most 1,000)."
    )
    window: Duration | None = Field(default=None, description="A rolling window ending now, e.g. 24h, 7d.")
    calendar: Literal["day", "week"] | None = Field(
        default=None, description="A calendar day, or ISO week (Monday first), in the person's time zone."
    )
    category: Category = Field(default="marketing", description="Which messages the rule counts and limits.")
    topic: str | None = Field(default=None, min_length=1, max_length=100, description="Only messages of this topic.")

    @model_validator(mode="after")
    def _one_window(self) -> CapRule:
        if (self.window is None) == (self.calendar is None):
            raise ValueError(f"cap {self.id!r} needs exactly one of `window` (rolling) and `calendar` (day|week)")
        return self

    def applies(self, channel: str, transactional: bool, topic: str | None) -> bool:
        """Whether a message of this channel, kind and topic is counted and limited by the rule."""
        if channel != self.channel:
            return False
        if self.category == "marketing" and transactional:
            return False
        if self.category == "transactional" and not transactional:
            return False
        return self.topic is None or self.topic == topic


class QuietHours(_Strict):
    """Local hours in which `channel`'s messages of `category` wait, or are dropped."""

    channel: str = ChannelName
    start: LocalTime = Field(description="Local time the quiet hours begin, HH:MM.")
    end: LocalTime = Field(description="Local time they end, HH:MM; before `start` means the next day.")
    category: Category = "marketing"
    action: Literal["defer", "drop"] = Field(default="defer", description="Defer to the end, or drop the message.")
    spread: Duration = Field(
        default="0m", description="Released messages are spread over this long after `end`, by person, not all at once."
    )

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError(f"quiet hours for {self.channel!r} start and end at the same time ({self.start})")
        return self

    def applies(self, channel: str, transactional: bool) -> bool:
        if channel != self.channel:
            return False
        if self.category == "marketing":
            return not transactional
        if self.category == "transactional":
            return transactional
        return True


class Collision(_Strict):
    """One message per person per channel per window, across journeys."""

    window: Duration = Field(description="How long one message holds the channel for the person, e.g. 10m.")
    channels: list[str] | None = Field(default=None, description="The channels it applies to; none means all.")

    def applies(self, channel: str) -> bool:
        return self.channels is None or channel in self.channels


class Fewer(_Strict):
    """The preference center's "fewer emails": stricter caps for the people who chose it."""

    caps: list[CapRule] = Field(default_factory=list)


class ControlGroup(_Strict):
    """A share of people who get no marketing from any journey: the baseline of the program's lift."""

    share: float = Field(
        ge=0.0, le=0.5, description="Share of people in the group, 0 to 0.5 (0.05: one in twenty).", examples=[0.05]
    )
    reset: Literal["never", "yearly", "quarterly", "monthly"] = Field(
        default="never",
        description="How often the group is drawn again: at each calendar period's start, in the policies' time zone.",
    )
    salt: str = Field(
        default="",
        max_length=100,
        description="Part of the draw: changing it draws a new group at once (a manual reset).",
    )


class Policies(_Strict):
    """A workspace's send policies, as written in policies.yaml."""

    schema_: str | None = Field(default=None, alias="$schema")
    timezone: str | None = Field(
        default=None,
        description="The workspace's time zone (IANA name) for people without a `timezone` trait; default UTC.",
        examples=["America/New_York"],
    )
    frequency_caps: list[CapRule] = Field(default_factory=list)
    fewer: Fewer = Field(default_factory=Fewer)
    quiet_hours: list[QuietHours] = Field(default_factory=list)
    collision: Collision | None = None
    max_deferral: Duration = Field(
        default="7d",
        description="A message deferred (by a cap, quiet hours or a collision) longer than this is dropped.",
    )
    control_group: ControlGroup | None = Field(
        default=None,
        description="The global control group: people who get no marketing message from any journey.",
    )

    @model_validator(mode="after")
    def _checks(self) -> Policies:
        seen: set[str] = set()
        for rule in [*self.frequency_caps, *self.fewer.caps]:
            if rule.id in seen:
                raise ValueError(f"cap id {rule.id!r} is used twice; each rule needs its own id (it names drops)")
            seen.add(rule.id)
        channels = [q.channel + "/" + q.category for q in self.quiet_hours]
        for name in channels:
            if channels.count(name) > 1:
                raise ValueError(f"quiet hours for {name} are given twice")
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a name too long for a path
                hint = "use an IANA name such as Europe/Paris"
                raise ValueError(f"unknown time zone {self.timezone!r} ({hint})") from exc
        return self

    @property
    def longest_window_ms(self) -> int:
        """How far back the ledger of sends must reach for every rule (a calendar week: 8 days)."""
        longest = duration_ms(self.collision.window) if self.collision else 0
        for rule in [*self.frequency_caps, *self.fewer.caps]:
            span = duration_ms(rule.window) if rule.window else (2 if rule.calendar == "day" else 8) * 86_400_000
            longest = max(longest, span)
        return longest


EMPTY = Policies()


def policies_json_schema() -> dict[str, Any]:
    schema = Policies.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://nudgeflow.dev/schema/policies.schema.json"
    schema["title"] = "Nudgeflow send policies"
    return schema
