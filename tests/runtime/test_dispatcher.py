"""Outbox dispatch on both databases: the log channel, retries with exact backoff, failures."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from nudgeflow.channels.base import ChannelRegistry, DatabaseSink, TransientError
from nudgeflow.channels.log import LogChannel
from nudgeflow.core.clock import to_ms
from nudgeflow.runtime.dispatcher import Dispatcher, RetryPolicy, backoff_ms
from tests.runtime.harness import FakeEngine, FlakyRemote, Harness, registry


def test_log_channel_records_the_message_as_logged_never_sent(h: Harness) -> None:
    # The log channel stands in for a channel that is not configured: nobody got the
    # message, so it is `logged` (not `sent`), its event is "Message Logged" (no "Message
    # Sent" or "Message Delivered" for a report to count), and it is not counted as sent.
    h.identify("ada", email="ada@example.com", first_name="Ada", plan="pro")
    h.track("ada", "Signed Up", plan="pro")
    engine = FakeEngine()
    rt = h.runtime(engine)
    report = rt.run_until_idle()
    assert report.messages == 1
    [row] = h.outbox()
    now = to_ms(h.clock.now())
    assert (row.status, row.attempts, row.sent_at_ms, row.error) == ("logged", 1, now, None)
    [logged] = h.log_messages()
    assert (logged.idempotency_key, logged.channel, logged.template, logged.profile_id) == (
        row.idempotency_key,
        "email",
        "welcome",
        h.profile_id("ada"),
    )
    body = orjson.loads(logged.body)
    assert body["to"] == {"email": "ada@example.com", "first_name": "Ada"}  # address traits only
    assert body["context"] == {"trigger": {"event": "Signed Up", "plan": "pro"}}
    assert (body["journey_id"], body["step"], body["channel"]) == ("welcome", "welcome", "email")
    # The engagement event went into the log and was decided by the engine like any event.
    assert h.events_named("Message Delivered") == [] and h.events_named("Message Sent") == []
    [event] = h.events_named("Message Logged")
    assert event.message_id == f"nudgeflow:{row.idempotency_key}:logged"
    assert (event.profile_id, event.type, event.user_id) == (h.profile_id("ada"), "track", "ada")
    props = orjson.loads(event.payload)["properties"]
    assert props == {
        "message_key": row.idempotency_key,
        "journey_id": "welcome",
        "run_id": row.run_id,
        "step": "welcome",
        "channel": "email",
        "template": "welcome",
        "attempts": 1,
    }
    assert h.state("ada").counters["engagement"] == [["Message Logged", row.idempotency_key, None]]
    assert rt.stats.messages_sent == 0 and rt.stats.messages_logged == 1
    assert rt.run_until_idle().messages == 0


def test_a_crash_in_the_dispatch_transaction_neither_loses_nor_repeats_a_send(h: Harness) -> None:
    h.track("ada", "Signed Up")
    h.track("bob", "Signed Up")
    rt = h.runtime()
    rt.run_until_idle()  # decides and sends both
    assert len(h.log_messages()) == 2
    h.track("cy", "Signed Up")
    from nudgeflow.runtime.processor import process_events

    h.in_transaction(lambda conn: process_events(conn, rt.engines, h.clock))
    dispatcher = Dispatcher(ChannelRegistry.development(), h.clock)

    def crashing(conn: Any) -> None:
        dispatcher.claim_and_sink(conn)
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        h.in_transaction(crashing)
    assert len(h.log_messages()) == 2 and h.outbox()[-1].status == "pending"
    assert h.in_transaction(lambda conn: dispatcher.claim_and_sink(conn)).handled == 1
    assert h.in_transaction(lambda conn: dispatcher.claim_and_sink(conn)).handled == 0
    keys = [m.idempotency_key for m in h.log_messages()]
    assert len(keys) == 3 == len(set(keys))


def test_transient_failures_are_retried_at_exact_backoff_times_then_sent(h: Harness) -> None:
    flaky = FlakyRemote(failures=3)
    h.track("ada", "Signed Up", channel="flaky")
    rt = h.runtime(channels=registry(flaky=flaky))
    rt.run_until_idle()
    [row] = h.outbox()
    key = row.idempotency_key
    for attempt in (1, 2, 3):
        now = to_ms(h.clock.now())
        [row] = h.outbox()
        expected = now + backoff_ms(key, attempt)
        assert (row.status, row.attempts, row.next_attempt_at_ms) == ("pending", attempt, expected)
        assert row.error == f"503 from provider (try {attempt})"
        # One millisecond early: nothing happens.
        h.clock.advance(timedelta(milliseconds=expected - now - 1))
        assert rt.run_until_idle().messages == 0
        h.clock.advance(timedelta(milliseconds=1))
        assert rt.run_until_idle().messages == 1
    [row] = h.outbox()
    assert (row.status, row.attempts, row.error) == ("sent", 4, None)
    assert flaky.sent == [(key, 1), (key, 2), (key, 3), (key, 4)]
    # A remote provider accepted it: "Message Sent" (its delivery report comes later).
    assert [e.message_id for e in h.events_named("Message Sent")] == [f"nudgeflow:{key}:sent"]
    assert h.events_named("Message Delivered") == []
    assert rt.stats.messages_retried == 3 and rt.stats.messages_sent == 1


def test_backoff_doubles_from_30_s_with_jitter_fixed_by_the_key_and_is_capped_at_an_hour() -> None:
    delays = [backoff_ms("run_1:welcome:1", n) for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        nominal = min(3600, 30 * 2 ** (n - 1)) * 1000
        assert nominal * 0.8 <= delay <= min(nominal * 1.2, 3_600_000)
    assert delays == [backoff_ms("run_1:welcome:1", n) for n in range(1, 12)]  # deterministic
    assert delays[0] != backoff_ms("run_2:welcome:1", 1)  # spread across messages
    assert max(delays) <= 3_600_000
    assert backoff_ms("k", 1, retry_after_s=7200) == 7_200_000  # the provider's word wins
    assert backoff_ms("k", 1, retry_after_s=10 * 86400) == 86_400_000  # within reason


def test_retry_after_is_honoured(h: Harness) -> None:
    h.track("ada", "Signed Up", channel="flaky")
    rt = h.runtime(channels=registry(flaky=FlakyRemote(failures=1, retry_after_s=600)))
    rt.run_until_idle()
    [row] = h.outbox()
    assert row.next_attempt_at_ms == to_ms(h.clock.now()) + 600_000


def test_a_message_that_keeps_failing_transiently_fails_after_max_attempts(h: Harness) -> None:
    flaky = FlakyRemote(failures=100)
    h.track("ada", "Signed Up", channel="flaky")
    rt = h.runtime(channels=registry(flaky=flaky), policy=RetryPolicy(max_attempts=3))
    rt.run_until_idle()
    for _ in range(2):
        h.clock.advance(timedelta(hours=2))
        rt.run_until_idle()
    [row] = h.outbox()
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.error == "gave up after 3 attempts: 503 from provider (try 3)"
    [event] = h.events_named("Message Failed")
    assert orjson.loads(event.payload)["properties"]["reason"] == row.error
    h.clock.advance(timedelta(hours=12))
    assert rt.run_until_idle().messages == 0 and len(flaky.sent) == 3
    assert flaky.last == [False, False, True]  # the channel is told which try is its last


def test_a_permanent_failure_is_recorded_with_its_reason_and_reported(h: Harness) -> None:
    h.track("ada", "Signed Up", channel="flaky")
    engine = FakeEngine()
    rt = h.runtime(engine, channels=registry(flaky=FlakyRemote(permanent="address rejected: 550 no such user")))
    rt.run_until_idle()
    [row] = h.outbox()
    assert (row.status, row.attempts, row.error) == ("failed", 1, "address rejected: 550 no such user")
    [event] = h.events_named("Message Failed")
    assert event.message_id == f"nudgeflow:{row.idempotency_key}:failed"
    assert h.state("ada").counters["engagement"] == [
        ["Message Failed", row.idempotency_key, "address rejected: 550 no such user"]
    ]
    assert rt.stats.messages_failed == 1


def test_an_unknown_channel_fails_the_message(h: Harness) -> None:
    h.track("ada", "Signed Up", channel="sms")
    rt = h.runtime()
    rt.run_until_idle()
    [row] = h.outbox()
    assert (row.status, row.error) == ("failed", "no channel named 'sms'")
    assert len(h.events_named("Message Failed")) == 1 and h.log_messages() == []


def test_an_unknown_template_fails_when_the_log_channel_knows_its_templates(h: Harness) -> None:
    h.track("ada", "Signed Up", template="welcome")
    h.track("bob", "Signed Up", template="promo")
    rt = h.runtime(channels=ChannelRegistry.development(templates={"welcome", "reminder"}))
    rt.run_until_idle()
    by_profile = {r.profile_id: r for r in h.outbox()}
    assert by_profile[h.profile_id("ada")].status == "logged"
    bob = by_profile[h.profile_id("bob")]
    assert (bob.status, bob.error) == ("failed", "template 'promo' not found")
    assert [m.template for m in h.log_messages()] == ["welcome"]


def test_a_sink_that_fails_transiently_is_retried(h: Harness) -> None:
    class Sometimes(DatabaseSink):
        name = "sometimes"
        delivered_on_send = True

        def __init__(self) -> None:
            self.inner = LogChannel()
            self.down = True

        def sink_in_transaction(self, conn: Any, messages: Any, now_ms: int) -> None:
            if self.down:
                raise TransientError("sink is down")
            self.inner.sink_in_transaction(conn, messages, now_ms)

    sink = Sometimes()
    h.track("ada", "Signed Up", channel="sometimes")
    rt = h.runtime(channels=registry(sometimes=sink))
    rt.run_until_idle()
    [row] = h.outbox()
    assert (row.status, row.attempts, row.error) == ("pending", 1, "sink is down")
    sink.down = False
    h.clock.advance(timedelta(minutes=1))
    rt.run_until_idle()
    [row] = h.outbox()
    assert (row.status, row.attempts) == ("sent", 2) and len(h.log_messages()) == 1


def test_a_remote_send_whose_outcome_was_never_recorded_is_sent_again_after_its_lease(h: Harness) -> None:
    flaky = FlakyRemote()
    h.track("ada", "Signed Up", channel="flaky")
    rt = h.runtime(channels=registry(flaky=flaky), policy=RetryPolicy(lease_s=300))
    from nudgeflow.runtime.processor import process_events

    h.in_transaction(lambda conn: process_events(conn, rt.engines, h.clock))
    # Claimed and leased, then the process died before sending or recording anything.
    leased = h.in_transaction(lambda conn: rt.dispatcher.claim_and_sink(conn))
    assert len(leased.remote) == 1
    [row] = h.outbox()
    # Leased: claimed once, not yet tried (an attempt is a try with an outcome).
    assert (row.status, row.attempts, row.claims) == ("pending", 0, 1)
    assert row.next_attempt_at_ms == to_ms(h.clock.now()) + 300_000
    assert rt.run_until_idle().messages == 0  # leased: nobody else takes it
    h.clock.advance(timedelta(seconds=300))
    rt.run_until_idle()
    [row] = h.outbox()
    assert (row.status, row.attempts, row.claims, row.lost_claims) == ("sent", 1, 2, 1)
    assert flaky.sent == [(row.idempotency_key, 1)]
    assert rt.stats.messages_redelivered == 1  # it may have been sent by the dead one


def test_a_late_outcome_of_a_lease_taken_over_records_nothing(h: Harness) -> None:
    # Dispatcher A claims a message and stalls past its lease; dispatcher B claims it again
    # and sends it. A's send then comes back refused: the row is B's now, and A's outcome
    # must leave no trace (no "Message Failed" that a send step's `on_failure: exit` would end
    # the run on, no bounce, no count), as docs/roles.md and store/outbox.py promise.
    import asyncio

    from nudgeflow.runtime.processor import process_events

    h.track("ada", "Signed Up", channel="flaky")
    flaky = FlakyRemote()
    rt = h.runtime(channels=registry(flaky=flaky), policy=RetryPolicy(lease_s=300))
    h.in_transaction(lambda conn: process_events(conn, rt.engines, h.clock))
    late = Dispatcher(registry(flaky=flaky), h.clock, RetryPolicy(lease_s=300))
    claim = h.in_transaction(lambda conn: late.claim_and_sink(conn))
    [(row_id, message, _)] = claim.remote
    h.clock.advance(timedelta(seconds=300))
    rt.run_until_idle()  # B: the lease ran out, so it claims, sends and records
    [row] = h.outbox()
    assert (row.status, row.attempts, row.claims) == ("sent", 1, 2)
    refusing = FlakyRemote(permanent="address rejected: 550 no such user")
    outcomes = asyncio.run(late.send_remote([(row_id, message, refusing)]))
    assert [o.status for o in outcomes] == ["failed"]
    assert h.in_transaction(lambda conn: late.record_remote(conn, outcomes)) == 0
    [row] = h.outbox()
    assert (row.status, row.attempts, row.error) == ("sent", 1, None)
    assert h.events_named("Message Failed") == []
    assert late.stats.messages_failed == 0
