"""Claims lost to a dispatcher that stopped (killed before it recorded anything) on both
databases: they are not attempts. A message fails for attempts only after `max_attempts`
tries with an outcome; lost claims have their own bound, `max_lost_claims`, so a message
that kills every dispatcher that takes it still ends."""

from __future__ import annotations

from datetime import timedelta

from nudgeflow.runtime.dispatcher import Dispatcher, RetryPolicy
from nudgeflow.runtime.processor import process_events
from tests.runtime.harness import FlakyRemote, Harness, registry

LEASE_S = 300


def lose_claims(h: Harness, n: int, policy: RetryPolicy) -> None:
    """`n` dispatchers in turn claim the message and die: each lease runs out unrecorded."""
    for _ in range(n):
        dead = Dispatcher(registry(flaky=FlakyRemote()), h.clock, policy)
        claim = h.in_transaction(lambda conn, d=dead: d.claim_and_sink(conn))
        assert len(claim.remote) == 1 and claim.handled == 0
        h.clock.advance(timedelta(seconds=LEASE_S))


def test_claims_lost_to_dead_dispatchers_do_not_use_up_the_attempts(h: Harness) -> None:
    # Old code: each claim took an attempt, so after max_attempts (8) dead dispatchers the
    # next claim failed the message, "gave up after 8 attempts", no provider ever asked.
    flaky = FlakyRemote(failures=2)
    h.track("ada", "Signed Up", channel="flaky")
    policy = RetryPolicy(lease_s=LEASE_S)
    rt = h.runtime(channels=registry(flaky=flaky), policy=policy)
    h.in_transaction(lambda conn: process_events(conn, rt.engines, h.clock))
    lose_claims(h, 10, policy)
    for _ in range(3):  # two transient failures, then sent: tries 1, 2 and 3
        rt.run_until_idle()
        h.clock.advance(timedelta(hours=2))
    [row] = h.outbox()
    assert (row.status, row.attempts, row.error) == ("sent", 3, None)
    assert (row.claims, row.lost_claims) == (13, 10)
    assert flaky.sent == [(row.idempotency_key, 1), (row.idempotency_key, 2), (row.idempotency_key, 3)]
    # Every claim after a lease that ran out may be a resend: counted as today.
    assert rt.stats.messages_redelivered == 1  # only rt's own claims count in its stats


def test_a_message_whose_dispatchers_all_die_fails_after_max_lost_claims(h: Harness) -> None:
    flaky = FlakyRemote()
    h.track("ada", "Signed Up", channel="flaky")
    policy = RetryPolicy(lease_s=LEASE_S, max_attempts=3, max_lost_claims=5)
    rt = h.runtime(channels=registry(flaky=flaky), policy=policy)
    h.in_transaction(lambda conn: process_events(conn, rt.engines, h.clock))
    lose_claims(h, 4, policy)
    [row] = h.outbox()
    assert (row.status, row.attempts, row.lost_claims) == ("pending", 0, 3)  # the 4th is seen at the next claim
    lose_claims(h, 1, policy)  # the 5th claim: still sent, 4 lost before it
    rt.run_until_idle()  # 5 lost: failed, not sent
    [row] = h.outbox()
    assert (row.status, row.attempts, row.lost_claims) == ("failed", 0, 5)
    assert row.error == "claimed 5 times without an outcome: its dispatchers stopped"
    assert flaky.sent == []
    assert [e.event for e in h.events_named("Message Failed")] == ["Message Failed"]


def test_the_lease_token_changes_on_every_claim_even_without_an_outcome(h: Harness) -> None:
    # A dispatcher whose lease ran out and was claimed again records nothing, even though
    # `attempts` is the same for both claims (neither recorded a try).
    import asyncio

    flaky = FlakyRemote()
    h.track("ada", "Signed Up", channel="flaky")
    policy = RetryPolicy(lease_s=LEASE_S)
    rt = h.runtime(channels=registry(flaky=flaky), policy=policy)
    h.in_transaction(lambda conn: process_events(conn, rt.engines, h.clock))
    late = Dispatcher(registry(flaky=flaky), h.clock, policy)
    first = h.in_transaction(lambda conn: late.claim_and_sink(conn))
    h.clock.advance(timedelta(seconds=LEASE_S))
    other = Dispatcher(registry(flaky=flaky), h.clock, policy)
    second = h.in_transaction(lambda conn: other.claim_and_sink(conn))
    [(_, m1, _)] = first.remote
    [(_, m2, _)] = second.remote
    assert m1.attempt == m2.attempt == 1 and m1.claim != m2.claim
    refusing = FlakyRemote(permanent="550 no such user")
    outcomes = asyncio.run(late.send_remote([(first.remote[0][0], m1, refusing)]))
    assert h.in_transaction(lambda conn: late.record_remote(conn, outcomes)) == 0
    [row] = h.outbox()
    assert (row.status, row.attempts) == ("pending", 0)
    sent = asyncio.run(other.send_remote(second.remote))
    assert h.in_transaction(lambda conn: other.record_remote(conn, sent)) == 1
    [row] = h.outbox()
    assert (row.status, row.attempts) == ("sent", 1)


def test_the_bound_on_lost_claims_is_a_setting(h: Harness) -> None:
    from nudgeflow.settings import Settings

    assert Settings().dispatch_max_lost_claims == 32
    assert Settings.from_env({"NUDGEFLOW_DISPATCH_MAX_LOST_CLAIMS": "2"}).dispatch_max_lost_claims == 2
    flaky = FlakyRemote()
    h.track("ada", "Signed Up", channel="flaky")
    rt = h.runtime(channels=registry(flaky=flaky), dispatch_lease_seconds=LEASE_S, dispatch_max_lost_claims=2)
    assert rt.dispatcher.policy.max_lost_claims == 2
    h.in_transaction(lambda conn: process_events(conn, rt.engines, h.clock))
    lose_claims(h, 2, rt.dispatcher.policy)
    rt.run_until_idle()
    [row] = h.outbox()
    assert (row.status, row.error) == ("failed", "claimed 2 times without an outcome: its dispatchers stopped")
    assert flaky.sent == []
