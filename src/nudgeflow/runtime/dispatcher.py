"""Outbox dispatch: claim due messages, deliver them through their channel, record the outcome.

A round claims the pending rows that are due (oldest first; FOR UPDATE SKIP LOCKED on
PostgreSQL, so several dispatchers share the work) in one transaction, and in that same
transaction:
- hands the messages of database-sink channels (the `log` channel) to their sink and marks
  them `logged`: exactly once, since sink row and outbox status commit together. The log
  channel stands in for a channel that is not configured, so nothing it takes is ever
  recorded as sent or delivered, and its event is "Message Logged";
- records as failed the messages no channel can take (no such channel, a refused template);
- leases the messages of remote channels (claims + 1, due again after the lease), which
  are then sent outside any transaction and their outcomes recorded in a second one. A
  crash between the two sends such a message again once the lease runs out, with the same
  idempotency key, by whichever dispatcher claims it then (or at once, when the next
  engine of `--role all` takes the engine lock with no dispatch process alive: it reclaims
  the leases of its dead predecessor, store/engine_lock.py). The email channel's
  Message-ID is a function of that key, so the resend carries the same Message-ID
  (docs/roles.md: the resend window).

Attempts and claims are counted apart (store/outbox.py). An attempt is a try with an
outcome recorded; a message fails after `max_attempts` of them. A claim whose lease ran out
with no outcome (its dispatcher died, or stalled past the lease) is a lost claim, not an
attempt, so a crash loop of dispatchers does not use up the attempts of messages no
provider was asked about. Lost claims have their own, higher bound, `max_lost_claims`: a
message that kills every dispatcher that takes it (or is never recorded for another
reason) still ends, failed with "claimed N times without an outcome: its dispatchers
stopped". Every claim after a lost one is counted as a possible resend
(nudgeflow_messages_redelivered_total): whether the dead dispatcher had begun to send it is
not known, since a send's start is not written to the database.

Any number of dispatchers may run at once on PostgreSQL (`serve --role dispatch`): claims
skip the rows another holds, and a lease that runs out is due for all of them.

A running dispatcher does not wait for one claim's sends before the next claim, nor record
a claim's outcomes all at once: runtime/dispatch_pipeline.py drives these steps so that they
overlap, each claimed row keeping its own lease. `send_remote` sends one claim, for
`run_until_idle` and tests.

A dispatcher that is stopping (`send_remote`'s `stopping`, the pipeline's `stop`) drains: sends not yet started
are handed back at once, sends under way get `grace_s` to finish and are handed back if
they have not (store/outbox.hand_back: due now, for any dispatcher). A send handed back
while under way may have been accepted: it is in the resend window above.

A transient failure is retried with exponential backoff (30 s doubling, capped at 1 h,
with a jitter fixed by the message key so that runs are reproducible; a provider's
Retry-After is honoured), up to `max_attempts`, then the message is failed. Each final
outcome appends an engagement event to the profile's event log ("Message Delivered" or
"Message Sent", "Message Failed"), with a message id derived from the message key so that
recording it twice stores it once: journeys branch on it, and a send step with
`on_failure: exit` ends its run on it.

Before any of that, consent and suppression (store/consent.py): a message to a suppressed
address (any message, transactional included) or a marketing message to a person who
unsubscribed (from all marketing, or from the message's topic) is not sent: its row is
marked `suppressed` with the reason in `reason`, and a "Message Suppressed" event says why.
Consent is read for the message's channel only, and in an opt_in workspace a marketing
message needs a recorded yes (reason `no_consent`): store/consent.decide. A message to a
person with nothing to send to on its channel (the channel raises NoTarget) is
`suppressed` too, reason `no_target`. The reasons are model/reasons.py's.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import orjson
from sqlalchemy import Connection

from nudgeflow.channels.base import (
    ChannelError,
    ChannelProblem,
    ChannelRegistry,
    DatabaseSink,
    NoTarget,
    NotStarted,
    PushOptedOut,
    RemoteChannel,
    TransientError,
)
from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.model.event_names import (
    EMAIL_BOUNCED,
    MESSAGE_DELIVERED,
    MESSAGE_FAILED,
    MESSAGE_LOGGED,
    MESSAGE_SENT,
    MESSAGE_SUPPRESSED,
)
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.model.reasons import NO_TARGET, family_of
from nudgeflow.runtime.processor import RuntimeStats
from nudgeflow.runtime.sends import Sends
from nudgeflow.store import consent, outbox, rollups
from nudgeflow.store.event_log import append_events, event_row
from nudgeflow.store.outbox import FAILED, LOGGED, PENDING, SENT, SUPPRESSED
from nudgeflow.store.profiles import load_for_messages

log = logging.getLogger("nudgeflow.dispatch")

# An outcome that is no outcome: a leased send handed back by a stopping dispatcher
# (never a row's status: the row stays pending, due at once).
HANDED_BACK = "handed_back"


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 30.0
    cap_s: float = 3600.0
    max_attempts: int = 8  # tries with an outcome (a transient failure) before a message is failed
    jitter: float = 0.2  # each delay is within ±20 % of the nominal one
    max_retry_after_s: float = 86_400.0  # a provider cannot park a message for longer
    # A remote send not recorded within this is tried again (NUDGEFLOW_DISPATCH_LEASE_SECONDS);
    # an engine that takes the engine lock tries its dead predecessor's at once.
    lease_s: float = 300.0
    send_timeout_s: float = 60.0
    # Claims whose lease ran out with no outcome (the dispatcher died) before a message is
    # failed: several times max_attempts, so that dispatchers killed for reasons of their own
    # (a deploy, the OOM killer) do not fail messages, yet a message that kills every
    # dispatcher that takes it ends.
    max_lost_claims: int = 32


def backoff_ms(key: str, attempt: int, retry_after_s: float | None = None, policy: RetryPolicy = RetryPolicy()) -> int:
    """The delay before try `attempt + 1`, after try `attempt` (1-based) failed transiently.

    Nominal: base × 2^(attempt-1), capped. The jitter spreads retries of messages that
    failed together (a provider outage) yet is a function of the key and attempt, so a
    test can state the exact time of every retry.
    """
    nominal = min(policy.cap_s, policy.base_s * 2 ** max(0, attempt - 1))
    digest = hashlib.blake2b(f"{key}:{attempt}".encode(), digest_size=8).digest()
    unit = int.from_bytes(digest, "big") / 2**64
    delay = min(policy.cap_s, nominal * (1 - policy.jitter + 2 * policy.jitter * unit))
    if retry_after_s is not None and retry_after_s > 0:
        delay = max(delay, min(float(retry_after_s), policy.max_retry_after_s))
    return int(delay * 1000)


@dataclass
class Outcome:
    row_id: int
    message: OutboundMessage
    attempts: int  # tries made, this one included
    status: str  # sent | logged | pending (retry) | failed | suppressed | handed_back
    error: str | None = None  # what went wrong (failed, or retried)
    reason: str | None = None  # why it is not sent (suppressed), model/reasons.py
    next_attempt_at_ms: int | None = None
    delivered: bool = False  # "Message Delivered" rather than "Message Sent"
    bounce: dict[str, Any] | None = None  # the channel's bounce details, when it bounced
    opted_out: bool = False  # every push target gone: the person's push opt-out (PushOptedOut)
    channel_problem: bool = False  # our side's refusal, not the person's (ChannelProblem)
    started: bool = True  # handed back: whether its send had begun (it may have been accepted)


@dataclass
class DispatchRound:
    handled: int = 0  # outcomes recorded in this round's transaction
    remote: list[tuple[int, OutboundMessage, RemoteChannel]] = field(default_factory=list)  # leased, to send
    events_appended: int = 0
    lease_until_ms: int | None = None  # when the leases of `remote` run out (send_remote's deadline)

    @property
    def claimed(self) -> int:
        return self.handled + len(self.remote)


class Dispatcher:
    def __init__(
        self,
        channels: ChannelRegistry,
        clock: Clock,
        policy: RetryPolicy | None = None,
        stats: RuntimeStats | None = None,
        max_concurrency: int = 64,
    ) -> None:
        self.channels = channels
        self.clock = clock
        self.policy = policy or RetryPolicy()
        self.stats = stats if stats is not None else RuntimeStats()
        self.max_concurrency = max_concurrency
        # Sends handed back because their lease had too little left (send_one): a dispatcher
        # claiming more than it starts in time claims less (dispatch_pipeline.py).
        self.sends_past_deadline = 0

    # -- the transaction that claims ----------------------------------------------------------

    @staticmethod
    def _template_topic(
        conn: Connection, ws: str, template: str, seen: dict[tuple[str, str], str | None]
    ) -> str | None:
        """The topic the message's template declares (`topic:` of an email template), once
        per template and round; compiled versions are cached, so this is one small query."""
        key = (ws, template)
        if key not in seen:
            from nudgeflow.content.compiled_templates import load_compiled
            from nudgeflow.store.templates import TemplateNotFound

            try:
                seen[key] = getattr(load_compiled(conn, ws, template).source, "topic", None) or None
            except TemplateNotFound:
                seen[key] = None  # the channel fails the message with the reason
            except Exception:  # a template that no longer compiles: the render reports it
                seen[key] = None
        return seen[key]

    def claim_and_sink(self, conn: Connection, max_messages: int = 500) -> DispatchRound:
        """Claim due messages; deliver to sinks and fail the undeliverable in this transaction,
        lease the remote ones (returned, to be sent by `send_remote`)."""
        now_ms = to_ms(self.clock.now())
        rows = outbox.claim_due(conn, now_ms, max_messages)
        result = DispatchRound()
        if not rows:
            return result
        profiles = load_for_messages(conn, list({r[3] for r in rows}))
        addresses = {
            row[0]: consent.address_of(row[8], profiles[row[3]][0] if row[3] in profiles else {}) for row in rows
        }
        consents = consent.ConsentBatch(
            conn,
            [(r[1], profiles[r[3]][2] if r[3] in profiles else r[3], r[8], addresses[r[0]]) for r in rows],
        )
        outcomes: list[Outcome] = []
        template_topics: dict[tuple[str, str], str | None] = {}
        sinks: dict[int, tuple[DatabaseSink, list[tuple[int, OutboundMessage, int]]]] = {}
        leases: list[tuple[int, int, int, int, int, int]] = []
        given_up: list[tuple[int, int]] = []  # (lost_claims, id) of rows failed for their lost claims
        for (
            row_id,
            ws,
            key,
            pid,
            run_id,
            journey_id,
            version,
            step,
            channel_name,
            template,
            variant,
            marketing,
            payload,
            attempts,
            created_at_ms,
            leased_until,
            claims,
            lost_claims,
        ) in rows:
            lost = int(lost_claims)
            if leased_until is not None:  # its last dispatcher's lease ran out unrecorded
                self.stats.messages_redelivered += 1
                lost += 1
            traits = profiles[pid][0] if pid in profiles else {}
            attempt = int(attempts) + 1
            try:
                context = orjson.loads(payload)
            except orjson.JSONDecodeError:
                context = {}
            message = OutboundMessage(
                key=key,
                workspace_id=ws,
                profile_id=pid,
                run_id=run_id,
                journey_id=journey_id,
                step=step,
                channel=channel_name,
                template=template,
                variant=variant,
                marketing=bool(marketing),
                context=context if isinstance(context, dict) else {},
                traits=traits,
                version=int(version),
                attempt=attempt,
                claim=int(claims) + 1,
                created_at_ms=int(created_at_ms or 0),
                last_attempt=attempt >= self.policy.max_attempts,
            )
            topic = consent.topic_for(consents.settings.get(ws, {}), template, journey_id, message.context)
            if topic is None and message.marketing:
                topic = self._template_topic(conn, ws, template, template_topics)
            if topic is not None:
                message.context.setdefault("topic", topic)
            verdict = consents.state(
                ws,
                profiles[pid][2] if pid in profiles else pid,
                channel_name,
                addresses[row_id],
                message.marketing,
                topic,
            )
            if not verdict.allowed:
                outcomes.append(Outcome(row_id, message, attempts, SUPPRESSED, reason=verdict.reason))
                continue
            channel = self.channels.get(channel_name)
            if channel is None:
                outcomes.append(Outcome(row_id, message, attempt, FAILED, f"no channel named {channel_name!r}"))
                continue
            try:
                channel.check(message)
            except ChannelError as exc:
                outcomes.append(self._failure(row_id, message, attempt, exc, now_ms))
                continue
            if isinstance(channel, DatabaseSink):
                sinks.setdefault(id(channel), (channel, []))[1].append((row_id, message, attempt))
            elif isinstance(channel, RemoteChannel):
                if lost >= self.policy.max_lost_claims:  # a crash loop: it never got an outcome
                    error = f"claimed {lost} times without an outcome: its dispatchers stopped"
                    outcomes.append(Outcome(row_id, message, int(attempts), FAILED, error))
                    given_up.append((lost, row_id))
                    continue
                if attempt > self.policy.max_attempts:  # its last try was handed back under way
                    outcomes.append(
                        Outcome(
                            row_id, message, attempts, FAILED, f"gave up after {attempts} attempts: no outcome recorded"
                        )
                    )
                    continue
                until = now_ms + int(self.policy.lease_s * 1000)
                result.lease_until_ms = until
                leases.append((message.claim, lost, until, until, now_ms, row_id))
                result.remote.append((row_id, message, channel))
            else:
                outcomes.append(Outcome(row_id, message, attempt, FAILED, f"channel {channel_name!r} cannot send"))
        for channel, items in sinks.values():
            try:
                channel.sink_in_transaction(conn, [msg for _, msg, _ in items], now_ms)
            except ChannelError as exc:  # the sink refused the lot: each is retried or failed
                outcomes.extend(self._failure(rid, msg, att, exc, now_ms) for rid, msg, att in items)
                continue
            outcomes.extend(
                Outcome(rid, msg, att, LOGGED)
                if channel.logs_only
                else Outcome(rid, msg, att, SENT, delivered=channel.delivered_on_send)
                for rid, msg, att in items
            )
        outbox.lease(conn, leases)
        outbox.count_lost(conn, given_up)
        result.events_appended = self._record(conn, outcomes, profiles, now_ms, leased=False)
        result.handled = len(outcomes)
        return result

    def _failure(self, row_id: int, message: OutboundMessage, attempt: int, exc: ChannelError, now_ms: int) -> Outcome:
        if isinstance(exc, NoTarget):  # nothing to send to: not a failure, a message not sent
            return Outcome(row_id, message, attempt, SUPPRESSED, reason=NO_TARGET)
        if isinstance(exc, TransientError):
            if attempt >= self.policy.max_attempts:
                return Outcome(row_id, message, attempt, FAILED, f"gave up after {attempt} attempts: {exc.reason}")
            due = now_ms + backoff_ms(message.key, attempt, exc.retry_after_s, self.policy)
            return Outcome(row_id, message, attempt, PENDING, exc.reason, next_attempt_at_ms=due)
        bounce = getattr(exc, "bounce", None)
        return Outcome(
            row_id,
            message,
            attempt,
            FAILED,
            exc.reason,
            bounce=bounce if isinstance(bounce, dict) else None,
            opted_out=isinstance(exc, PushOptedOut),
            channel_problem=isinstance(exc, ChannelProblem),
        )

    # -- remote sends, outside any transaction ------------------------------------------------

    async def send_remote(
        self,
        leased: Sequence[tuple[int, OutboundMessage, RemoteChannel]],
        stopping: Callable[[], bool] | None = None,
        grace_s: float = 0.0,
        lease_until_ms: int | None = None,
    ) -> list[Outcome]:
        """Send one claim's leased messages and return their outcomes, in its order: at most
        `max_concurrency` at once, started one per turn of the event loop (runtime/sends.py),
        so that the first is on the wire while the last is still waiting to be built. When
        `stopping()` turns true, drain: sends not started are handed back, sends under way
        get `grace_s` and are then cancelled and handed back.

        With `lease_until_ms` (the claim's, DispatchRound.lease_until_ms), a send is not
        started once less than `lease_margin_ms` of the lease is left (`deadlined`).

        The dispatcher's own loop does not wait for a claim's end: it starts the sends of
        one claim after another and records outcomes as they come (dispatch_pipeline.py).
        This is the one-claim-at-a-time form, for `run_until_idle` and tests."""
        sends: Sends[Outcome] = Sends(self.max_concurrency, stopping)
        began: set[int] = set()
        items = self.deadlined(leased, lease_until_ms)
        out: dict[int, Outcome] = {}
        for row_id, message, channel in items:
            if not await sends.start(row_id, partial(self.send_one, row_id, message, channel, began)):
                out[row_id] = Outcome(row_id, message, message.attempt, HANDED_BACK, started=False)
        cancelled = set(await sends.settle(grace_s))
        out.update((o.row_id, o) for o in sends.take())
        for row_id, message, _ in items:
            if row_id in cancelled:  # under way when the grace ended, it may have been accepted
                out[row_id] = Outcome(row_id, message, message.attempt, HANDED_BACK, started=row_id in began)
        return [out[row_id] for row_id, _, _ in items if row_id in out]

    def deadlined(
        self, leased: Sequence[tuple[int, OutboundMessage, RemoteChannel]], lease_until_ms: int | None
    ) -> list[tuple[int, OutboundMessage, RemoteChannel]]:
        """The claim's messages, each with the last moment its send may start (`send_by_ms`):
        `lease_margin_ms` before its lease runs out. Sends are started as slots free up, and
        a large claim, a slow server or the claims before it can keep a message waiting past
        that: without it, this dispatcher would send it while another, the lease run out,
        sends it too. `send_one` hands such a message back, due at once, without counting
        an attempt, as does a channel whose own queue (a free connection, the rate limit)
        keeps it past that moment (NotStarted)."""
        if lease_until_ms is None:
            return list(leased)
        last_start_ms = lease_until_ms - self.lease_margin_ms()
        return [(row_id, replace(message, send_by_ms=last_start_ms), ch) for row_id, message, ch in leased]

    async def send_one(
        self, row_id: int, message: OutboundMessage, channel: RemoteChannel, began: set[int] | None = None
    ) -> Outcome:
        """Send one leased message through its channel; its outcome (HANDED_BACK, not started,
        when its `send_by_ms` has passed: see `deadlined`). Adds `row_id` to `began` once the
        send has begun."""
        if message.send_by_ms is not None and to_ms(self.clock.now()) > message.send_by_ms:
            self.sends_past_deadline += 1
            return Outcome(row_id, message, message.attempt, HANDED_BACK, started=False)
        if began is not None:
            began.add(row_id)
        try:
            await asyncio.wait_for(channel.send(message), self.policy.send_timeout_s)
        except NotStarted:  # it waited in the channel's own queue past the deadline
            self.sends_past_deadline += 1
            return Outcome(row_id, message, message.attempt, HANDED_BACK, started=False)
        except ChannelError as exc:
            return self._failure(row_id, message, message.attempt, exc, to_ms(self.clock.now()))
        except TimeoutError:
            exc2 = TransientError(f"no answer within {self.policy.send_timeout_s:g} s")
            return self._failure(row_id, message, message.attempt, exc2, to_ms(self.clock.now()))
        except Exception as exc:  # a channel's bug: retried, named by its type only
            log.error(
                "channel raised an unexpected error",
                extra={"channel": message.channel, "message_key": message.key, "error": type(exc).__name__},
                exc_info=True,
            )
            exc3 = TransientError(f"channel error: {type(exc).__name__}")
            return self._failure(row_id, message, message.attempt, exc3, to_ms(self.clock.now()))
        return Outcome(row_id, message, message.attempt, SENT, delivered=channel.delivered_on_send)

    def lease_margin_ms(self) -> int:
        """How much of a lease must be left to start a send: its timeout, or half the lease
        when that is shorter (a short lease is for fast failover, and sends are quick)."""
        return int(min(self.policy.send_timeout_s, self.policy.lease_s / 2) * 1000)

    def record_remote(self, conn: Connection, outcomes: Sequence[Outcome]) -> int:
        """Record remote outcomes (a second transaction); returns engagement events appended.

        Only the outcomes of leases still held are recorded: a send whose lease ran out and
        whose row another dispatcher claimed since leaves no event, no count, no status (its
        row is that dispatcher's to record: its own outcome is the one that counts)."""
        if not outcomes:
            return 0
        ours = outbox.still_leased(conn, [(o.row_id, o.message.claim) for o in outcomes])
        if len(ours) < len(outcomes):
            stale = [o for o in outcomes if o.row_id not in ours]
            log.info(
                "outcomes not recorded: their leases ran out and were claimed again",
                extra={"messages": len(stale), "statuses": sorted({o.status for o in stale})},
            )
            outcomes = [o for o in outcomes if o.row_id in ours]
            if not outcomes:
                return 0
        now_ms = to_ms(self.clock.now())
        profiles = load_for_messages(conn, list({o.message.profile_id for o in outcomes}))
        return self._record(conn, outcomes, profiles, now_ms, leased=True)

    # -- recording ----------------------------------------------------------------------------

    def _record(
        self,
        conn: Connection,
        outcomes: Sequence[Outcome],
        profiles: dict[str, tuple[dict[str, Any], str | None, str]],
        now_ms: int,
        *,
        leased: bool,
    ) -> int:
        if not outcomes:
            return 0
        if handed := [o for o in outcomes if o.status == HANDED_BACK]:
            released = outbox.hand_back(
                conn,
                [(o.attempts if o.started else o.attempts - 1, now_ms, o.row_id, o.message.claim) for o in handed],
            )
            log.info(
                "dispatcher stopping: sends handed back",
                extra={"messages": released, "under_way": sum(o.started for o in handed)},
            )
            outcomes = [o for o in outcomes if o.status != HANDED_BACK]
            if not outcomes:
                return 0
        sent, retry, failed, suppressed = [], [], [], []
        logged = 0
        for o in outcomes:
            tail = (PENDING, o.message.claim) if leased else ()
            if o.status == SENT:
                sent.append((SENT, o.attempts, now_ms, now_ms, o.row_id, *tail))
            elif o.status == LOGGED:  # when it was logged, in sent_at_ms; the status says it was not sent
                sent.append((LOGGED, o.attempts, now_ms, now_ms, o.row_id, *tail))
                logged += 1
            elif o.status == PENDING:
                retry.append((o.attempts, o.next_attempt_at_ms, now_ms, o.error, o.row_id, *tail))
            elif o.status == SUPPRESSED:  # final, with why it was not sent
                suppressed.append((o.attempts, now_ms, o.reason, o.row_id, *tail))
                self.stats.not_sent[(SUPPRESSED, family_of(o.reason), o.message.channel)] += 1
            else:  # failed: final, with what went wrong
                failed.append((o.status, o.attempts, now_ms, o.error, o.row_id, *tail))
        outbox.record(conn, sent, retry, failed, leased=leased, suppressed=suppressed)
        _count(conn, outcomes, now_ms)
        self.stats.messages_sent += len(sent) - logged
        self.stats.messages_logged += logged
        self.stats.messages_failed += len(failed)
        self.stats.messages_retried += len(retry)
        for o in outcomes:
            if o.status == FAILED and o.channel_problem:
                # The channel's settings, not the person: an operator has to act, and until
                # then every message of the channel fails the same way.
                self.stats.channel_problems[o.message.channel] += 1
                log.warning(
                    "channel problem: a message failed for the channel's settings, not the person",
                    extra={"message_key": o.message.key, "channel": o.message.channel, "reason": o.error},
                )
            elif o.status == FAILED:
                log.warning(
                    "message failed",
                    extra={"message_key": o.message.key, "channel": o.message.channel, "reason": o.error},
                )
            elif o.status == SUPPRESSED:
                log.info(
                    "message suppressed",
                    extra={"message_key": o.message.key, "channel": o.message.channel, "reason": o.reason},
                )
        events = [
            _engagement_row(o, *profiles.get(o.message.profile_id, ({}, None, o.message.profile_id))[1:], now_ms)
            for o in outcomes
            if o.status != PENDING
        ]
        events.extend(
            _bounce_row(o, *profiles.get(o.message.profile_id, ({}, None, o.message.profile_id))[1:], now_ms)
            for o in outcomes
            if o.status == FAILED and o.bounce is not None
        )
        append_events(conn, events)
        return len(events)

    # -- driving it ---------------------------------------------------------------------------

    def dispatch(self, conn: Connection, max_messages: int = 500) -> int:
        """One synchronous round in the caller's transaction, for sinks and failures only;
        remote messages are leased and returned to the pool by their lease. Prefer
        `EmbeddedRuntime`, which also sends remote messages."""
        return self.claim_and_sink(conn, max_messages).handled


def _engagement_row(o: Outcome, user_id: str | None, profile_id: str, now_ms: int) -> tuple[Any, ...]:
    msg = o.message
    if o.status == SENT:
        status, name = ("delivered", MESSAGE_DELIVERED) if o.delivered else ("sent", MESSAGE_SENT)
    elif o.status == LOGGED:
        status, name = LOGGED, MESSAGE_LOGGED
    elif o.status == SUPPRESSED:
        status, name = SUPPRESSED, MESSAGE_SUPPRESSED
    else:
        status, name = "failed", MESSAGE_FAILED
    message_id = f"nudgeflow:{msg.key}:{status}"
    properties: dict[str, Any] = {
        "message_key": msg.key,
        "journey_id": msg.journey_id,
        "run_id": msg.run_id,
        "step": msg.step,
        "channel": msg.channel,
        "template": msg.template,
        "attempts": o.attempts,
    }
    if msg.variant is not None:
        properties["variant"] = msg.variant
    if o.reason is not None or o.error is not None:
        properties["reason"] = o.reason if o.reason is not None else o.error
    if msg.context.get("topic") is not None:
        properties["topic"] = msg.context["topic"]
    return event_row(msg.workspace_id, profile_id, user_id, name, message_id, properties, now_ms)


# A permanent failure that carries `bounce` (a dict: code, status, text...; the email
# channel's BounceError) also appends EMAIL_BOUNCED, for journeys and suppression to act on.
def _bounce_row(o: Outcome, user_id: str | None, profile_id: str, now_ms: int) -> tuple[Any, ...]:
    msg = o.message
    message_id = f"nudgeflow:{msg.key}:bounced"
    properties: dict[str, Any] = {
        "message_key": msg.key,
        "journey_id": msg.journey_id,
        "run_id": msg.run_id,
        "step": msg.step,
        "channel": msg.channel,
        "template": msg.template,
        **(o.bounce or {}),
    }
    return event_row(msg.workspace_id, profile_id, user_id, EMAIL_BOUNCED, message_id, properties, now_ms)


def _count(conn: Connection, outcomes: Sequence[Outcome], now_ms: int) -> None:
    """The report rollups' share of these outcomes, in the transaction that records them
    (store/rollups.py): each message sent is counted once, whoever records it; a bounce the
    channel reported counts against its message."""
    report = rollups.Rollup()
    rollups.count_sent(conn, report, [_sent(o, now_ms) for o in outcomes if o.status == SENT])
    report.write(conn)
    for o in outcomes:
        if o.status == FAILED and o.bounce is not None:
            rollups.count_engagement(conn, o.message.workspace_id, o.message.key, rollups.BOUNCED, now_ms)
        if o.status == FAILED and o.opted_out:
            rollups.count_engagement(conn, o.message.workspace_id, o.message.key, rollups.PUSH_OPT_OUT, now_ms)


def _sent(o: Outcome, now_ms: int) -> rollups.Sent:
    msg = o.message
    run = msg.context.get("run")
    trigger = msg.context.get("trigger")
    entered = run.get("entered_at") if isinstance(run, dict) else None
    triggered = trigger.get("at") if isinstance(trigger, dict) else None
    # The send-time decision that timed it (core/steps.py puts it on the context): its arm is
    # counted apart, so a report can compare optimized with explore.
    timing = msg.context.get("send_time")
    arm = timing.get("arm") if isinstance(timing, dict) else None
    timed_by = timing.get("step") if isinstance(timing, dict) else None
    return rollups.Sent(
        workspace_id=msg.workspace_id,
        key=msg.key,
        profile_id=msg.profile_id,
        run_id=msg.run_id,
        journey_id=msg.journey_id,
        version=msg.version,
        step=msg.step,
        variant=msg.variant,
        channel=msg.channel,
        delivered=o.delivered,
        sent_at_ms=now_ms,
        entered_at_ms=entered if isinstance(entered, int) else None,
        trigger_at_ms=triggered if isinstance(triggered, int) else None,
        send_time_arm=arm if arm in rollups.SEND_TIME_ARMS else None,
        timed_by=timed_by if isinstance(timed_by, str) and timed_by else None,
        control=isinstance(run, dict) and run.get("control") is True,
    )
