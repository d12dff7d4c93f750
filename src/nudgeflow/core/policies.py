"""Send policies, decided in the pure core: frequency caps, "fewer emails", quiet hours and the
collision window (model/policies.py holds the document; docs/policies.md is written from this).

When it is decided
    A send step of a live run that is not a holdout does not emit its message at once when the
    workspace has policies: the run stops on the step, and at the end of the engine call (the
    "turn": one event or one timer of one person) every message wanted in it is decided (core/
    sending.py). The order: by message time (all the messages one call wants share it), then the
    highest journey `priority`, then the message wanted first (a released one before a new one),
    then the order in which the runs reached their send steps (for one event: the catalog's order
    of entry, priority then journey id). Each message is sent, deferred or dropped; then each run
    goes on from its send step (a branch right after it sees the outcome), and any message those
    walks want is decided in a next round the same way. A run does not wait for a deferred
    message: it moves on at once. (While the call lasts, a run stopped on its send step is
    still active: the same call does not enter its journey again when it allows one active run
    at a time; without policies such a run might have finished its steps first.)

    Because all work for a person is serialized (DESIGN §3), the decision reads and writes the
    person's *send ledger* in ProfileState, and the runtime writes that state in the same
    transaction as the outbox rows: two journeys firing for one person, in one batch or in two,
    can never both pass a cap of 1.

    A workspace without any rule (no caps, no fewer caps, no quiet hours, no collision window)
    has no plan (`plan_for` answers None): sends are emitted at once, exactly as before policies,
    and nothing of this module runs.

The message's time `t`
    Decisions never read the processing time, so that the same events give the same decisions
    however they are batched: `t` is the event's time for a send reached from an event
    (Turn.since_ms: the runtime decides a batch later than its events happened), the timer's due
    time for a send reached from a timer (a wait's end, a timeout, a release), and the call's time
    for a backfill. The ledger records `t`, not the time the message was queued.

The send ledger
    One entry per message sent while the workspace has policies and some rule reads such
    messages (a cap that counts it, fewer caps included, or the collision window): [t, channel,
    journey id, transactional (0/1), topic]. A message no rule reads is not recorded, so that
    many of them (a chat app's transactional pushes) cannot push the counted ones out of the
    MAX_LEDGER kept; a rule added later counts from then on. Entries older than the longest
    window any rule needs (Policies.longest_window_ms from the newest entry; a calendar week
    needs 8 days) are pruned when one is added; at most MAX_LEDGER are kept. Messages withheld
    are not in it. Consent and suppression are checked at dispatch, after this: a message the
    dispatcher then suppresses still counted here.

Which rules apply to a message
    A message is transactional when its send step says `marketing: false`. A cap rule counts and
    limits the messages of its channel, its category (`marketing`, the default, leaves
    transactional messages alone; `transactional`; `any`) and, when it names one, of its topic:
    the send step's `topic` (the workspace's topic maps by template or journey are a dispatch
    setting the core does not see). Quiet hours apply by channel and category the same way.
    The collision window applies to marketing messages only, on the channels it lists (all
    when it lists none).

Frequency caps (`frequency_caps`, plus `fewer.caps` for people who chose "fewer")
    For each rule that applies to the message, count the ledger entries the rule applies to:
    - rolling (`window: 24h`): entries later than t - window (later than t too: a late event's
      message cannot slip in before messages already sent), so within (t - window, t] when
      events come in order;
    - calendar (`calendar: day|week`): entries in the local day, or the ISO week (Monday 00:00
      to Monday 00:00), that contains t, in the person's time zone: the `timezone` trait when it
      is a known IANA name, else the policies' `timezone`, else UTC. A day is from one local
      midnight to the next (23 or 25 hours across a DST change; a midnight that does not exist
      is the first instant of the day).
    count >= limit caps the message (`limit: 0` stops the channel for those messages). A capped
    message is dropped when its send step says `on_cap: drop` (the default), else deferred to
    the earliest time the rule allows: rolling, when enough counted entries have left the window
    (the (count - limit + 1)-th oldest entry's time + window); calendar, the next local day or
    week start. Several caps at once: the latest of their times.

"Fewer emails"
    The preference center records the choice in the `Subscription Preferences Updated` event
    (property `frequency`: `normal` or `fewer`). The engine keeps the latest choice by event
    time in the person's state, policies or not; `fewer.caps` apply to people whose choice is
    `fewer`, in addition to `frequency_caps`.

Quiet hours (`quiet_hours`)
    Local hours [start, end) in the person's zone; an end before the start ends the next day
    (22:00-08:00). A message whose t is inside them is dropped (`action: drop`) or deferred to
    the end of that stretch plus a spread: unit_hash("quiet", person, local date of the end) x
    `spread`, so one person's messages of one night are released together and different people
    are spread evenly over the spread, deterministically. The person is the stable identity
    (userId, else first anonymousId), as splits use. An end that happens twice (the fall-back
    hour) is its occurrence after t; one in the spring-forward gap is the jump itself (02:30 on
    the night clocks go from 02:00 to 03:00 ends at 03:00): the first instant the clock reads
    the end or later (timecalc.at_local_time_after). Quiet hours start at the start's first
    occurrence: in the second pass of the repeated hour the clock reads before the start
    again (01:10 after 01:30), and the message is inside all the same.

Collision window (`collision`)
    A marketing message collides when the ledger holds a marketing message of *another* journey
    on the same channel less than `window` away from t (either side). A journey's own messages
    never collide with each other. The message is dropped (`on_collision: drop`) or deferred
    (the default) to the colliding entry's time + window (the latest such entry). Its reason
    names that entry's journey. Within one turn the order above decides who is first: of five
    journeys wanting one person on one `Signed Up`, the highest priority is sent and the others
    collide with it. Across turns the first message decided holds the window: a sent message is
    never taken back. So a person gets at most one marketing message per channel per window from
    different journeys.

Several rules at once
    Caps (`frequency_caps` in order, then `fewer.caps`), then quiet hours, then the collision
    window are checked at t. No rule blocks: sent. A blocking rule that drops (on_cap: drop,
    quiet hours action drop, on_collision: drop, or a cap of 0) drops the message, with the
    first such rule's reason. Otherwise the message is deferred to the latest time any blocking
    rule gives, with that rule's reason (the first of equal ones). `capped` is noted whenever a
    cap blocked, whatever else did.

Deferral and release
    A deferred message is a MessageWithheld(DEFERRED, reason, until) and a `release` timer due at
    `until` whose key comes from the message key ("release:<message key>"). It is decided again
    at t = until, as if newly wanted (caps, quiet hours and collisions may defer it again), by
    the first call for the person whose time is at or after `until`: its release timer, or an
    event or another timer that the runtime decides first. So a release is decided before any
    later event however late the runtime fires timers, and deferred messages due at one time are
    decided together in the order above, whichever of their timers fires first. A message that
    call defers again to a time still at or before the call's is decided at that time too, in
    its place among the others: as its timer would have, had it fired on time.

    The run must still be going:
    - a run that ends by exiting (an exit event, leaving its exit segment, a goal with
      `exit: true`, an exit step, an archived journey...) drops its deferred messages at once,
      reason `run_ended`; a run that finished its steps (done) keeps them, and they are dropped
      the same way by what would have ended it: one of its exit events, leaving its exit
      segment, or its conversion when its goal says `exit: true`;
    - at release, an archived journey drops it (`run_ended`), a paused one too, reason
      `journey_paused` (a paused journey sends nothing, and resuming wakes held runs, not
      messages).
    A message is never deferred past its first want time + `max_deferral` (the send step's, else
    the policies', 7 days by default): a deferral that would is a drop, keeping the reason of the
    rule that held it (`frequency_cap:<rule>`, `quiet_hours`, `collision:<journey>`). A message
    deferred and then sent is a SendMessage with the same key (the outbox row is updated). When
    the workspace's policies are removed meanwhile, a deferred message is sent at release.

Batching
    Every time a decision reads is a message time, the ledger is ordered by it, and releases are
    decided at their own time before any later event: the same events decided one at a time or
    in one batch give the same decisions. What the core cannot see is the order in which the
    runtime hands it events and the other timers (a wait step's end): that order is the
    runtime's. (A wait's end is counted from when the runtime decided the wait began, as it was
    before policies: a send after a wait inherits that.)

What a run remembers (branches)
    run.messages[step] = {"key", "statuses", "reason"?, "until"?, "first"?}, "until" and "first"
    only while the message is deferred. Statuses gain `capped` when a cap blocked the message,
    `deferred` when it was deferred (kept once it is released: it *was* deferred), `dropped` when
    it was dropped, and `sent` when it went out; `reason` is the latest reason. MessageCondition
    `status: capped|deferred|dropped` reads them.

Reasons: `frequency_cap:<rule id>`, `quiet_hours`, `collision:<winning journey id>`,
`run_ended`, `journey_paused`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from nudgeflow.core import timecalc
from nudgeflow.core.turn import unit_hash
from nudgeflow.model.journeys import duration_ms
from nudgeflow.model.policies import MAX_CAP_LIMIT, CapRule, Collision, Policies, QuietHours

SENT, DEFERRED, DROPPED = "sent", "deferred", "dropped"
FEWER = "fewer"  # the preference center's value (store/consent.FEWER)
MAX_LEDGER = MAX_CAP_LIMIT  # entries kept per person, newest last: the most any cap can count
RUN_ENDED, JOURNEY_PAUSED, QUIET_HOURS = "run_ended", "journey_paused", "quiet_hours"

# A ledger entry is a list (compact in the state document): its fields by position.
AT, CHANNEL, JOURNEY, TRANSACTIONAL, TOPIC = range(5)

_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Plan:
    """A workspace's policies, made ready once per catalog."""

    policies: Policies
    caps: tuple[tuple[CapRule, int | None], ...]  # each rule with its rolling window in ms (None: calendar)
    fewer_caps: tuple[tuple[CapRule, int | None], ...]
    quiet: tuple[QuietHours, ...]
    collision: Collision | None
    collision_ms: int
    max_deferral_ms: int
    longest_ms: int
    zone: ZoneInfo  # the workspace's, for people without a known `timezone` trait


def plan_for(policies: Policies) -> Plan | None:
    """The plan, or None when no rule can ever withhold a message (the no-policies path)."""
    if not (policies.frequency_caps or policies.fewer.caps or policies.quiet_hours or policies.collision):
        return None

    def rolling(rules: list[CapRule]) -> tuple[tuple[CapRule, int | None], ...]:
        return tuple((r, duration_ms(r.window) if r.window else None) for r in rules)

    collision = policies.collision
    return Plan(
        policies=policies,
        caps=rolling(policies.frequency_caps),
        fewer_caps=rolling(policies.fewer.caps),
        quiet=tuple(policies.quiet_hours),
        collision=collision,
        collision_ms=duration_ms(collision.window) if collision else 0,
        max_deferral_ms=duration_ms(policies.max_deferral),
        longest_ms=policies.longest_window_ms,
        zone=timecalc.named_zone(policies.timezone) if policies.timezone else timecalc.UTC_ZONE,
    )


@dataclass(frozen=True, slots=True)
class Want:
    """What a decision needs to know of one message."""

    channel: str
    journey_id: str
    transactional: bool
    topic: str | None
    on_cap: str  # drop | defer
    on_collision: str  # defer | drop
    max_deferral_ms: int | None  # the send step's; None: the policies'
    first_ms: int  # when the message was first wanted (max_deferral counts from it)


@dataclass(frozen=True, slots=True)
class Decision:
    status: str  # SENT, DEFERRED or DROPPED
    reason: str | None = None
    until_ms: int | None = None
    capped: bool = False


SEND = Decision(SENT)


@dataclass(frozen=True, slots=True)
class _Block:
    reason: str
    until_ms: int | None  # None: no time would allow it
    drop: bool
    cap: bool = False


def zone_for(plan: Plan, traits: dict[str, Any]) -> ZoneInfo:
    return timecalc.zone_of(traits, plan.zone)


def decide(
    plan: Plan, ledger: list[list[Any]], want: Want, t: int, zone: ZoneInfo, fewer: bool, person: str
) -> Decision:
    """Send, defer or drop one message wanted at `t` (see the module's docstring)."""
    blocks: list[_Block] = []
    for rule, window in plan.caps + plan.fewer_caps if fewer else plan.caps:
        block = _cap(rule, window, ledger, want, t, zone)
        if block is not None:
            blocks.append(block)
    for quiet in plan.quiet:
        block = _quiet(quiet, want, t, zone, person)
        if block is not None:
            blocks.append(block)
    if plan.collision is not None:
        block = _collision(plan, ledger, want, t)
        if block is not None:
            blocks.append(block)
    if not blocks:
        return SEND
    capped = any(b.cap for b in blocks)
    binding, until = blocks[0], -1
    for block in blocks:
        if block.drop or block.until_ms is None:
            return Decision(DROPPED, block.reason, capped=capped)
        if block.until_ms > until:  # the latest wins; the first of equal ones
            binding, until = block, block.until_ms
    limit = plan.max_deferral_ms if want.max_deferral_ms is None else want.max_deferral_ms
    if until - want.first_ms > limit:
        return Decision(DROPPED, binding.reason, capped=capped)
    return Decision(DEFERRED, binding.reason, until, capped)


def record(plan: Plan, ledger: list[list[Any]], want: Want, t: int) -> None:
    """Add a sent message to the ledger, and forget what no rule can look at any more. A
    message no rule counts is not added: it would only push counted ones past MAX_LEDGER."""
    if not _read(plan, want):
        return
    ledger.append([t, want.channel, want.journey_id, int(want.transactional), want.topic])
    if len(ledger) > 1 and ledger[-2][AT] > t:
        ledger.sort(key=lambda e: e[AT])  # a late event's message goes where it happened
    horizon = ledger[-1][AT] - plan.longest_ms
    drop = 0
    while drop < len(ledger) and ledger[drop][AT] <= horizon:
        drop += 1
    drop = max(drop, len(ledger) - MAX_LEDGER)
    if drop:
        del ledger[:drop]


def _read(plan: Plan, want: Want) -> bool:
    """Whether a cap (fewer ones too: the choice can change) or the collision window reads
    such a message in the ledger."""
    if any(rule.applies(want.channel, want.transactional, want.topic) for rule, _ in plan.caps + plan.fewer_caps):
        return True
    collision = plan.collision
    return collision is not None and not want.transactional and collision.applies(want.channel)


def _counts(rule: CapRule, entry: list[Any]) -> bool:
    return rule.applies(entry[CHANNEL], bool(entry[TRANSACTIONAL]), entry[TOPIC])


def _cap(
    rule: CapRule, window: int | None, ledger: list[list[Any]], want: Want, t: int, zone: ZoneInfo
) -> _Block | None:
    if not rule.applies(want.channel, want.transactional, want.topic):
        return None
    reason = f"frequency_cap:{rule.id}"
    drop = want.on_cap == "drop"
    if window is not None:
        since = t - window
        times = sorted(e[AT] for e in ledger if e[AT] > since and _counts(rule, e))
        if len(times) < rule.limit:
            return None
        # The window must lose count - limit + 1 entries: the oldest ones, in time order.
        until = times[len(times) - rule.limit] + window if rule.limit > 0 else None
        return _Block(reason, until, drop, cap=True)
    start, end = _calendar_span(rule.calendar or "day", t, zone)
    count = sum(1 for e in ledger if start <= e[AT] < end and _counts(rule, e))
    if count < rule.limit:
        return None
    return _Block(reason, end if rule.limit > 0 else None, drop, cap=True)


def _calendar_span(unit: str, t: int, zone: ZoneInfo) -> tuple[int, int]:
    """[start, end) of the local day or ISO week (Monday first) that contains t."""
    day = timecalc.local_moment(t, zone).date()
    if unit == "week":
        day -= timedelta(days=day.weekday())
    length = timedelta(days=7) if unit == "week" else _DAY
    return _midnight(day, zone), _midnight(day + length, zone)


def _midnight(day: date, zone: ZoneInfo) -> int:
    return timecalc.at_local_time(day, "00:00", zone)


def _quiet(quiet: QuietHours, want: Want, t: int, zone: ZoneInfo, person: str) -> _Block | None:
    if not quiet.applies(want.channel, want.transactional):
        return None
    local: datetime = timecalc.local_moment(t, zone)
    now = local.time().replace(tzinfo=None)
    start, end = timecalc.local_time(quiet.start), timecalc.local_time(quiet.end)
    end_day = local.date()
    if start < end:
        inside = start <= now < end
    else:  # overnight: 22:00-08:00 ends the next day for the evening part
        inside = now >= start or now < end
        if now >= start:
            end_day += _DAY
    if not inside and local.fold and now < start and timecalc.at_local_time(end_day, quiet.start, zone) <= t:
        # The second pass of the repeated fall-back hour, after the start's first occurrence:
        # the clock going back from 01:50 to 01:00 does not end quiet hours that began at 01:30.
        inside = True
        if start > end:
            end_day += _DAY  # the evening part of overnight hours
    if not inside:
        return None
    if quiet.action == "drop":
        return _Block(QUIET_HOURS, None, True)
    # The end after t: in the repeated fall-back hour, a t in its second occurrence is inside
    # until the end's second occurrence (the first is already past).
    until = timecalc.at_local_time_after(end_day, quiet.end, zone, t)
    spread = duration_ms(quiet.spread)
    if spread:
        until += int(unit_hash("quiet", person, end_day.isoformat()) * spread)
    return _Block(QUIET_HOURS, max(until, t + 1), False)


def _collision(plan: Plan, ledger: list[list[Any]], want: Want, t: int) -> _Block | None:
    collision = plan.collision
    if want.transactional or collision is None or not collision.applies(want.channel):
        return None
    window = plan.collision_ms
    latest: list[Any] | None = None
    for entry in ledger:
        if (
            abs(entry[AT] - t) < window
            and entry[CHANNEL] == want.channel
            and not entry[TRANSACTIONAL]
            and entry[JOURNEY] != want.journey_id
            and (latest is None or entry[AT] > latest[AT])
        ):
            latest = entry
    if latest is None:
        return None
    return _Block(f"collision:{latest[JOURNEY]}", latest[AT] + window, want.on_collision == "drop")
