"""Journey definitions: the one format used by YAML files, the admin API and the console.

A journey is a trigger (how a person enters), rules (who may enter, when a run ends, what
counts as a conversion) and a graph of steps keyed by id. These pydantic models are the
source of the published JSON Schema (`journey_json_schema`) and of the structural checks;
`model.journey_checks` adds the checks a schema cannot express (dangling step references,
cycles without a wait).

Durations are strings such as "90s", "15m", "1h", "3d", "2w", "1.5d" (decimals allowed, to a
whole millisecond; negative ones, "-3d", only where an offset is meant). Event names and
properties follow Segment's specs; a filter's `property` is a dotted path inside the event's
`properties` ("cart_id", "products").
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from nudgeflow.model.webhooks import NAME_PATTERN as WEBHOOK_NAME_PATTERN
from nudgeflow.model.webhooks import check_url as check_webhook_url

_DURATION = re.compile(r"^(-)?(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
DURATION_PATTERN = r"^\d+(\.\d+)?(ms|s|m|h|d|w)$"
OFFSET_PATTERN = r"^-?\d+(\.\d+)?(ms|s|m|h|d|w)$"


def _whole_ms(text: str) -> str:
    duration_ms(text)  # the pattern let it through; a fraction of a millisecond is refused here
    return text


Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        description="A positive duration: a number (decimals allowed) and a unit, one of ms, s, m, h, d, w "
        '("1h", "3d", "1.5d", "0.5h").',
        examples=["1h", "24h", "7d", "1.5d"],
    ),
    AfterValidator(_whole_ms),
]
Offset = Annotated[
    str,
    Field(
        pattern=OFFSET_PATTERN,
        description='A signed duration: "-3d" is three days before, "2h" two hours after, "-1.5d" a day and a half '
        "before.",
        examples=["-3d", "0d", "1d", "-0.5d"],
    ),
    AfterValidator(_whole_ms),
]
LocalTime = Annotated[
    str,
    Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="A local time of day, HH:MM (24 h).", examples=["09:00"]),
]
REF_PATTERN = r"^(trigger|profile|group)\.[^.\s][^\s]*$"
StepId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@lru_cache(maxsize=4096)
def duration_ms(text: str) -> int:
    """Milliseconds of a duration or offset string; ValueError names the bad text."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r} (use a number and one of ms, s, m, h, d, w: 90s, 1h, 1.5d)")
    sign, amount, unit = match.groups()
    # Decimal, not float: "0.1s" must be exactly 100 ms, and "1.5d" exactly 129,600,000.
    exact = Decimal(amount) * _UNIT_MS[unit]
    if exact != exact.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of milliseconds")
    value = int(exact)
    return -value if sign else value


class _Strict(BaseModel):
    # Unknown keys are errors: a typo ("wihtin") must not silently mean "no window".
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- values and filters -------------------------------------------------------------------


class Ref(_Strict):
    """A value taken from the run: `trigger.<property path>`, `profile.<trait>` or `group.<trait>`."""

    ref: str = Field(pattern=REF_PATTERN, examples=["trigger.cart_id", "profile.plan", "group.plan"])


Operator = Literal[
    "eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists", "not_exists", "contains", "not_contains"
]
OPERATORS: tuple[str, ...] = get_args(Operator)


class Filter(_Strict):
    """A test on one property of an event."""

    property: str = Field(min_length=1, description="Dotted path inside the event's properties.")
    op: Operator = "eq"
    value: Ref | Any = None

    @model_validator(mode="after")
    def _value_fits(self) -> Filter:
        _check_operand(self.op, self.value)
        return self


def _check_operand(op: str, value: Any) -> None:
    if op in ("in", "not_in") and not isinstance(value, (list, Ref)):
        raise ValueError(f"operator {op!r} needs a list as value")
    if op in ("gt", "gte", "lt", "lte") and (value is None or isinstance(value, (bool, list, dict))):
        raise ValueError(f"operator {op!r} needs a number, a string or a date as value")


class EventMatch(_Strict):
    """An event by name, with optional property filters."""

    event: str = Field(min_length=1, examples=["Order Completed"])
    where: list[Filter] = Field(default_factory=list)
    # The property that must equal the trigger event's: the same cart, the same product.
    match: str | None = Field(default=None, description="Property that must equal the triggering event's.")


# --- conditions (entry filters and branches) -----------------------------------------------


class TraitCondition(_Strict):
    trait: str = Field(
        min_length=1,
        description="A trait of the person; `group.<trait>` is one of their group's "
        "(the group of their latest group call; `group.id` is its groupId).",
    )
    op: Operator = "eq"
    value: Ref | Any = None

    @model_validator(mode="after")
    def _value_fits(self) -> TraitCondition:
        _check_operand(self.op, self.value)
        return self


class EventCountCondition(_Strict):
    """How many matching events the person did within a window (default: at least one)."""

    event: str = Field(min_length=1)
    where: list[Filter] = Field(default_factory=list)
    within: Duration | None = Field(default=None, description="Look-back window; none means the kept history.")
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte"] = "gte"
    value: int = Field(default=1, ge=0)


class MessageCondition(_Strict):
    """Engagement with a message an earlier send step of the same run sent."""

    message: StepId = Field(description="The id of a send step of this journey.")
    status: Literal["sent", "delivered", "opened", "clicked", "capped", "deferred", "dropped"] = Field(
        default="opened",
        description="sent/delivered/opened/clicked: how far the message got. capped: a frequency cap stopped or "
        "deferred it; deferred: a send policy (cap, quiet hours, collision) made it wait; dropped: a policy "
        "dropped it.",
    )
    negate: bool = Field(default=False, description="True: the message did not reach that status.")


SegmentId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,79}$", description="A segment's id (a slug).")]


class SegmentCondition(_Strict):
    """The person is (or, negated, is not) a member of a live segment now."""

    segment: SegmentId
    negate: bool = Field(default=False, description="True: the person is not in the segment.")


class AllCondition(_Strict):
    all: list[Condition]


class AnyCondition(_Strict):
    any: list[Condition]


class NotCondition(_Strict):
    not_: Condition = Field(alias="not")


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("trait", "event", "message", "segment", "all", "any", "not"):
            if key in value:
                return key
        return None
    kinds: dict[type[Any], str] = {
        TraitCondition: "trait",
        EventCountCondition: "event",
        MessageCondition: "message",
        SegmentCondition: "segment",
        AllCondition: "all",
        AnyCondition: "any",
        NotCondition: "not",
    }
    return kinds.get(type(value))


Condition = Annotated[
    Annotated[TraitCondition, Tag("trait")]
    | Annotated[EventCountCondition, Tag("event")]
    | Annotated[MessageCondition, Tag("message")]
    | Annotated[SegmentCondition, Tag("segment")]
    | Annotated[AllCondition, Tag("all")]
    | Annotated[AnyCondition, Tag("any")]
    | Annotated[NotCondition, Tag("not")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition_kind",
        custom_error_message="a condition needs one of the keys trait, event, message, segment, all, any, not",
    ),
]

# --- triggers ------------------------------------------------------------------------------


class _TriggerBase(_Strict):
    max_lateness: Duration | None = Field(
        default="24h",
        description="An event older than this when processed (an offline queue flushed late) does not start a run.",
    )


class Occurrences(_Strict):
    """Require the event to have happened `count` times within a window (same `match` value)."""

    count: int = Field(ge=2)
    within: Duration
    match: str | None = None


class EventTrigger(_TriggerBase):
    type: Literal["event"]
    event: str = Field(min_length=1)
    where: list[Filter] = Field(default_factory=list)
    occurrences: Occurrences | None = None


class NotFollowedBy(_Strict):
    event: str = Field(min_length=1)
    where: list[Filter] = Field(default_factory=list)
    within: Duration
    match: str | None = Field(default=None, description="Property equal on both events (cart_id).")


class EventNotFollowedTrigger(_TriggerBase):
    type: Literal["event_not_followed"]
    event: str = Field(min_length=1)
    where: list[Filter] = Field(default_factory=list)
    occurrences: Occurrences | None = None
    not_followed_by: NotFollowedBy


class InactivityTrigger(_TriggerBase):
    type: Literal["inactivity"]
    events: list[str] | None = Field(default=None, description="Events that count as activity; none means any event.")
    window: Duration


class AttributeChangeTrigger(_TriggerBase):
    type: Literal["attribute_change"]
    trait: str = Field(min_length=1)
    from_: Any = Field(default=None, alias="from", description="Previous value (or list of values); omit for any.")
    to: Any = Field(default=None, description="New value (or list of values); omit for any change.")


class DateRelativeTrigger(_TriggerBase):
    type: Literal["date_relative"]
    trait: str = Field(min_length=1, examples=["trial_ends_at", "birthday"])
    offset: Offset = "0d"
    at: LocalTime = Field(default="09:00", description="Local time of day in the profile's timezone.")
    yearly: bool = Field(default=False, description="Repeat every year on the date's anniversary (birthdays).")


class SumThreshold(_Strict):
    property: str = Field(min_length=1)
    reaches: float


class Streak(_Strict):
    days: int = Field(ge=2)


class MilestoneTrigger(_TriggerBase):
    type: Literal["milestone"]
    event: str = Field(min_length=1)
    where: list[Filter] = Field(default_factory=list)
    count: int | None = Field(default=None, ge=1, description="Fire on the Nth occurrence.")
    sum: SumThreshold | None = Field(default=None, description="Fire when the running sum reaches a threshold.")
    streak: Streak | None = Field(default=None, description="Fire on N consecutive local days with the event.")

    @model_validator(mode="after")
    def _one_kind(self) -> MilestoneTrigger:
        given = [name for name in ("count", "sum", "streak") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("a milestone needs exactly one of count, sum, streak")
        return self


class Place(_Strict):
    id: str | None = Field(default=None, description="The place's id, for a place of the places catalog.")
    name: str = Field(min_length=1)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class CatalogPlaces(_Strict):
    """Places taken from the workspace's places catalog (`nudgeflow catalog import places`):
    those with one of these ids, and those with one of these tags (a place's `tags` column:
    a list, or text with commas between tags). Read when the engine loads the journey, and
    again whenever the places catalog changes."""

    ids: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list, examples=[["store-flagship"]])
    tags: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list, examples=[["store"]])

    @model_validator(mode="after")
    def _some(self) -> CatalogPlaces:
        if not self.ids and not self.tags:
            raise ValueError("catalog_places needs `ids`, `tags` or both")
        return self


class LocationTrigger(_TriggerBase):
    type: Literal["location"]
    event: str | None = Field(default=None, description="Only this event's coordinates; none means any event.")
    places: list[Place] = Field(default_factory=list, description="Places written out here.")
    catalog_places: CatalogPlaces | None = Field(
        default=None, description="Places from the places catalog, by id or tag (with or instead of `places`)."
    )
    radius_m: float = Field(gt=0, le=100_000)

    @model_validator(mode="after")
    def _some_places(self) -> LocationTrigger:
        if not self.places and self.catalog_places is None:
            raise ValueError("a location trigger needs `places`, `catalog_places` or both")
        return self


class SegmentTrigger(_TriggerBase):
    """Entering (or leaving) a segment: the engine's `Segment Entered` / `Segment Exited`."""

    type: Literal["segment"]
    segment: SegmentId
    on: Literal["enter", "exit"] = "enter"

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 (PyYAML) reads a bare `on:` key as the boolean true: take it as "on", so
        # `on: exit` written unquoted does not silently become the default "enter".
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data


Trigger = Annotated[
    EventTrigger
    | EventNotFollowedTrigger
    | InactivityTrigger
    | AttributeChangeTrigger
    | DateRelativeTrigger
    | MilestoneTrigger
    | LocationTrigger
    | SegmentTrigger,
    Field(discriminator="type"),
]

# --- rules ---------------------------------------------------------------------------------


class Entry(_Strict):
    filter: list[Condition] = Field(default_factory=list, description="All must hold for the person to enter.")
    reentry: Literal["once", "once_per_period", "one_active", "always"] = "one_active"
    period: Duration | None = None

    @model_validator(mode="after")
    def _period(self) -> Entry:
        if (self.reentry == "once_per_period") != (self.period is not None):
            raise ValueError("`period` goes with, and only with, reentry: once_per_period")
        return self


class Exit(_Strict):
    events: list[EventMatch] = Field(default_factory=list, description="Any of these ends the run at once.")
    segment: SegmentId | None = Field(default=None, description="Leaving this segment ends the run at once.")


class Goal(_Strict):
    event: str = Field(min_length=1)
    where: list[Filter] = Field(default_factory=list)
    within: Duration = "7d"
    revenue: str | None = Field(default=None, description="Property holding the revenue, e.g. `revenue`.")
    exit: bool = Field(default=False, description="End the run when it converts.")


# --- steps ---------------------------------------------------------------------------------


class Variant(_Strict):
    name: str = Field(min_length=1)
    template: str = Field(min_length=1)
    weight: float = Field(gt=0)


WEBHOOK = "webhook"
# A path into a JSON answer: `$` the whole answer, `.name` a member, `[0]` an item.
JSON_PATH_PATTERN = r"^\$(\.[A-Za-z0-9_-]+|\[\d+\])*$"
JsonPath = Annotated[
    str, Field(pattern=JSON_PATH_PATTERN, examples=["$.id", "$.customer.tier", "$.items[0].sku"], max_length=500)
]


def _webhook_url(value: str) -> str:
    return check_webhook_url(value, liquid=True)


# Experiment automation (runtime/experiments.py): what the evaluator may do on its own.
OnWinner = Literal["keep_all", "route_to_winner"]
GuardrailAction = Literal["pause", "report"]
ON_WINNER_DESCRIPTION = (
    "`route_to_winner`: once a winner is called (always-valid, docs/measurement.md), every new run takes the "
    "winning arm; runs already assigned keep theirs. `keep_all` (default): the winner is only reported."
)
GUARDRAILS_DESCRIPTION = (
    "`pause` (default): an arm whose unsubscribe or complaint rate is credibly above the control's (the first "
    "arm) takes no new runs, and the reason is recorded. `report`: breaches are only reported."
)


class WebhookCall(_Strict):
    """What a send step with `channel: webhook` sends: where, how, and what it keeps of the answer.

    The body is rendered with the same Liquid context as an email or a push message."""

    url: Annotated[str, AfterValidator(_webhook_url)] | None = Field(
        default=None,
        description="An http(s) URL; Liquid may appear in its path and query, never in its scheme or host. "
        "Signed with the workspace's webhook secret; never reaches a private, loopback or link-local address.",
        examples=["https://hooks.example.com/nudgeflow", "https://api.example.com/contacts/{{ profile.id }}"],
    )
    destination: str | None = Field(
        default=None,
        pattern=WEBHOOK_NAME_PATTERN,
        description="A destination of the workspace's settings (`nudgeflow workspace webhooks destinations set`): "
        "its URL, headers, secret and network allowance.",
    )
    method: Literal["POST", "PUT"] | None = Field(default=None, description="Default: the destination's, else POST.")
    body: dict[str, Any] | list[Any] | str = Field(
        description="JSON. An object or list: every string in it is Liquid, and a string that is one `{{ … }}` and "
        "nothing else keeps its value's type (a number stays a number). A string: one Liquid template whose output "
        "must be JSON (the `json` filter writes a value as JSON)."
    )
    response_traits: dict[Annotated[str, Field(min_length=1, max_length=100)], JsonPath] = Field(
        default_factory=dict,
        description="Traits to set from a 2xx JSON answer: trait name -> path in the answer ($.id, $.items[0].sku). "
        "Recorded as an identify of the person, applied in order with their other events.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> WebhookCall:
        if (self.url is None) == (self.destination is None):
            raise ValueError("a webhook names either `url` or `destination`")
        return self


class SendTime(_Strict):
    """Send-time optimization: wait for the person's best hour within a window (core/send_time.py).

    `send_time: optimized` alone is this with its defaults."""

    mode: Literal["optimized"] = "optimized"
    within: Duration = Field(
        default="24h",
        description="The window from when the run reaches the step: the message goes out at the best local hour "
        "that starts in it (now, when the current hour is the best). From 1h to 7d.",
    )
    fallback: LocalTime = Field(
        default="10:00",
        description="The local time used when nothing is known of the person or the workspace (its hour counts).",
    )
    explore: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Share of people (deterministic by person, journey and step) sent at a random hour of the window "
        "instead, so the feature's lift against a fixed time can be measured.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"mode": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _window(self) -> SendTime:
        if not duration_ms("1h") <= duration_ms(self.within) <= duration_ms("7d"):
            raise ValueError("send_time.within must be from 1h to 7d")
        return self


# What an experiment step's arms are compared on (docs/measurement.md, experiments): the
# journey's goal within its window (the default), or a person's open or click of the arm's
# messages (machine opens and bot clicks never count).
PrimaryMetric = Literal["conversion", "open", "click"]
PRIMARY_METRIC_DESCRIPTION = (
    "What the experiment's arms are compared on: conversion (the journey's goal; the default), open or click "
    "(by people, of the arm's messages)."
)
MINIMUM_PER_ARM_DESCRIPTION = (
    "Runs every arm needs before a winner is called or a guardrail breached, in the reports and by the "
    "experiment evaluator (default 500; at least 100: the always-valid sequences rest on the normal "
    "approximation, docs/measurement.md)."
)
# Below this the normal approximation the winner calls rest on is not to be trusted.
MINIMUM_PER_ARM_FLOOR = 100


class SendStep(_Strict):
    type: Literal["send"]
    channel: str = Field(min_length=1, examples=["email", "push", "webhook", "log"])
    template: str | None = None
    variants: list[Variant] | None = None
    marketing: bool = Field(default=True, description="False for transactional messages (receipts).")
    topic: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="The subscription group (topic) of this message: a person unsubscribed from it is not sent it. "
        "Default: the workspace's map by template, then by journey, then the template's own topic.",
    )
    on_failure: Literal["continue", "exit"] = Field(
        default="continue", description="What the run does when this message fails (no template, channel error)."
    )
    on_cap: Literal["drop", "defer"] = Field(
        default="drop", description="A frequency cap stops this message: drop it, or defer it until the cap allows."
    )
    on_collision: Literal["defer", "drop"] = Field(
        default="defer",
        description="A higher-priority journey's message holds the channel (policies' collision window): defer this "
        "one past the window, or drop it.",
    )
    max_deferral: Duration | None = Field(
        default=None, description="Drop the message rather than defer it longer than this; default the policies'."
    )
    webhook: WebhookCall | None = Field(
        default=None, description="With `channel: webhook` only: the call it makes (instead of a template)."
    )
    send_time: SendTime | None = Field(
        default=None,
        description="`optimized`: the run waits on this step until the person's best hour within the window, then "
        "sends (docs/journeys.md, send-time optimization).",
    )
    on_winner: OnWinner = Field(default="keep_all", description=ON_WINNER_DESCRIPTION)
    guardrails: GuardrailAction = Field(default="pause", description=GUARDRAILS_DESCRIPTION)
    primary_metric: PrimaryMetric | None = Field(
        default=None, description=PRIMARY_METRIC_DESCRIPTION + " With `variants` only."
    )
    minimum_per_arm: int | None = Field(
        default=None,
        ge=MINIMUM_PER_ARM_FLOOR,
        le=1_000_000_000,
        description=MINIMUM_PER_ARM_DESCRIPTION + " With `variants` only.",
    )
    next: StepId | None = None

    @model_validator(mode="after")
    def _content(self) -> SendStep:
        if self.primary_metric is not None and not self.variants:
            raise ValueError("`primary_metric` goes only with `variants`: a send step without them is no experiment")
        if self.minimum_per_arm is not None and not self.variants:
            raise ValueError("`minimum_per_arm` goes only with `variants`: a send step without them is no experiment")
        if self.channel == WEBHOOK:
            if self.webhook is None:
                raise ValueError("a webhook step needs `webhook` (its url or destination, and its body)")
            if self.template is not None or self.variants:
                raise ValueError("a webhook step sends `webhook.body`: it has no `template` or `variants`")
            return self
        if self.webhook is not None:
            raise ValueError(f"`webhook` goes only with channel: webhook (this step sends {self.channel})")
        if (self.template is None) == (not self.variants):
            raise ValueError("a send step needs either `template` or `variants`")
        return self


class UntilTime(_Strict):
    at: LocalTime
    weekdays: list[Weekday] | None = Field(default=None, description="Allowed days; none means every day.")


class UntilDate(_Strict):
    trait: str = Field(min_length=1)
    offset: Offset = "0d"
    at: LocalTime | None = Field(default=None, description="Local time of day; none keeps the trait's time.")


class WaitStep(_Strict):
    type: Literal["wait"]
    duration: Duration | None = None
    until_time: UntilTime | None = None
    until_date: UntilDate | None = None
    send_time: SendTime | None = Field(
        default=None, description="`optimized`: wait until the person's best hour within the window."
    )
    next: StepId | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> WaitStep:
        given = [n for n in ("duration", "until_time", "until_date", "send_time") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("a wait needs exactly one of duration, until_time, until_date, send_time")
        return self


class WaitForEventStep(_Strict):
    type: Literal["wait_for_event"]
    event: str = Field(min_length=1)
    where: list[Filter] = Field(default_factory=list)
    match: str | None = Field(default=None, description="Property that must equal the triggering event's.")
    timeout: Duration
    on_event: StepId | None = None
    on_timeout: StepId | None = None


class Case(_Strict):
    when: list[Condition] = Field(min_length=1)
    next: StepId | None = None


class BranchStep(_Strict):
    type: Literal["branch"]
    cases: list[Case] = Field(min_length=1)
    default: StepId | None = None


class SplitPath(_Strict):
    name: str = Field(min_length=1)
    weight: float = Field(gt=0)
    next: StepId | None = None


class SplitStep(_Strict):
    type: Literal["split"]
    paths: list[SplitPath] = Field(min_length=2)
    on_winner: OnWinner = Field(default="keep_all", description=ON_WINNER_DESCRIPTION)
    guardrails: GuardrailAction = Field(default="pause", description=GUARDRAILS_DESCRIPTION)
    primary_metric: PrimaryMetric | None = Field(default=None, description=PRIMARY_METRIC_DESCRIPTION)
    minimum_per_arm: int | None = Field(
        default=None, ge=MINIMUM_PER_ARM_FLOOR, le=1_000_000_000, description=MINIMUM_PER_ARM_DESCRIPTION
    )


class UpdateProfileStep(_Strict):
    type: Literal["update_profile"]
    set: dict[str, Ref | Any] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)
    next: StepId | None = None


class ExitStep(_Strict):
    type: Literal["exit"]


Step = Annotated[
    SendStep | WaitStep | WaitForEventStep | BranchStep | SplitStep | UpdateProfileStep | ExitStep,
    Field(discriminator="type"),
]


class Journey(_Strict):
    """One journey definition, as written in a YAML file."""

    schema_: str | None = Field(default=None, alias="$schema")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,79}$", description="Stable id (a slug), unique in a workspace.")
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    trigger: Trigger
    entry: Entry = Field(default_factory=Entry)
    exit: Exit = Field(default_factory=Exit)
    goal: Goal | None = None
    priority: int = Field(
        default=0,
        description="When one event starts several journeys, the higher priority is entered first; when several "
        "journeys want one person on one channel in the policies' collision window, the higher priority is sent.",
    )
    holdout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Share of entrants who are sent nothing.")
    control_group: Literal["include", "exclude"] = Field(
        default="include",
        description="`exclude`: the workspace's global control group (send policies) does not apply to this "
        "journey, whose marketing messages then reach its members too.",
    )
    start: StepId | None = Field(default=None, description="The first step; default the first one listed.")
    steps: dict[StepId, Step] = Field(min_length=1)

    @property
    def first_step(self) -> str:
        return self.start or next(iter(self.steps))


def journey_json_schema() -> dict[str, Any]:
    schema = Journey.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://nudgeflow.dev/schema/journey.schema.json"
    schema["title"] = "Nudgeflow journey"
    return schema


AllCondition.model_rebuild()
AnyCondition.model_rebuild()
NotCondition.model_rebuild()
Case.model_rebuild()
Entry.model_rebuild()
BranchStep.model_rebuild()
Journey.model_rebuild()
