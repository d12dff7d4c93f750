"""Several dispatchers on one PostgreSQL database (issue 17, item 5): each on its own
connections, against the real SMTP sink on loopback.

- 300 messages of one workspace, three dispatchers claiming at once (FOR UPDATE SKIP
  LOCKED and a lease): every message sent exactly once, with the Message-ID its key gives.
- The resend window: a dispatcher that dies between the provider's acceptance and the
  record (an injected crash point: its outcome is never recorded) has its message sent
  again once, with the same Message-ID, by another dispatcher after the lease ends; the
  first one's late record, had it come, changes nothing.
- A dispatcher stopping hands its sends back: due at once, attempts as before, no claim lost.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.runtime.dispatcher import HANDED_BACK, Dispatcher, RetryPolicy
from nudgeflow.store import database
from tests.channels.smtp_support import Sink
from tests.roles.support import email_registry, expected_message_id, message_ids, outbox_rows, queue_messages
from tests.support import make_workspace

DISPATCHERS = 3
MESSAGES = 300
LEASE_S = 60.0


def _dispatch_until_none_due(engine: Any, dispatcher: Dispatcher, start: threading.Barrier, claimed: list[int]) -> None:
    """One dispatcher's loop: claim a small batch, send it, record it; until a claim is empty."""
    loop = asyncio.new_event_loop()
    start.wait()
    try:
        while True:
            with engine.begin() as conn:
                round_ = dispatcher.claim_and_sink(conn, 10)
            if not round_.claimed:
                return
            claimed.append(round_.claimed)
            outcomes = loop.run_until_complete(dispatcher.send_remote(round_.remote))
            with engine.begin() as conn:
                dispatcher.record_remote(conn, outcomes)
    finally:
        loop.run_until_complete(dispatcher.channels.get("email").aclose())  # type: ignore[union-attr]
        loop.close()


def test_three_dispatchers_send_three_hundred_messages_each_exactly_once(pg_db: str, sink: Sink) -> None:
    clock = VirtualClock()
    setup = database.create_db_engine(pg_db)
    ws = make_workspace(setup, clock=clock).workspace_id
    keys = queue_messages(setup, ws, MESSAGES, to_ms(clock.now()))
    # Each dispatcher on an engine (a connection pool) of its own, as in processes of their own.
    engines = [database.create_db_engine(pg_db) for _ in range(DISPATCHERS)]
    dispatchers = [
        Dispatcher(email_registry(sink.port, clock), clock, RetryPolicy(lease_s=LEASE_S))  # type: ignore[attr-defined]
        for _ in range(DISPATCHERS)
    ]
    claims: list[list[int]] = [[] for _ in range(DISPATCHERS)]
    start = threading.Barrier(DISPATCHERS)
    threads = [
        threading.Thread(target=_dispatch_until_none_due, args=(engines[i], dispatchers[i], start, claims[i]))
        for i in range(DISPATCHERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)

    received = message_ids(sink)
    assert len(received) == MESSAGES
    by_recipient = Counter(rcpt for rcpt, _ in received)
    assert set(by_recipient) == {f"{k}@example.org" for k in keys} and set(by_recipient.values()) == {1}
    # The message key is the Message-ID (the provider's idempotency key).
    assert {rcpt: mid for rcpt, mid in received} == {f"{k}@example.org": expected_message_id(ws, k) for k in keys}
    rows = outbox_rows(setup, ws)
    assert {(r.status, r.attempts) for r in rows.values()} == {("sent", 1)}
    assert sum(sum(c) for c in claims) == MESSAGES
    assert sum(1 for c in claims if c) >= 2, claims  # they shared the work
    assert sum(d.stats.messages_sent for d in dispatchers) == MESSAGES
    for eng in [setup, *engines]:
        eng.dispose()


def test_a_dispatcher_that_dies_after_the_send_has_its_message_resent_once_with_the_same_message_id(
    pg_db: str, sink: Sink
) -> None:
    clock = VirtualClock()
    setup = database.create_db_engine(pg_db)
    ws = make_workspace(setup, clock=clock).workspace_id
    [key] = queue_messages(setup, ws, 1, to_ms(clock.now()))
    first_db, second_db = database.create_db_engine(pg_db), database.create_db_engine(pg_db)
    first = Dispatcher(email_registry(sink.port, clock), clock, RetryPolicy(lease_s=LEASE_S))  # type: ignore[attr-defined]
    second = Dispatcher(email_registry(sink.port, clock), clock, RetryPolicy(lease_s=LEASE_S))  # type: ignore[attr-defined]

    with first_db.begin() as conn:
        leased = first.claim_and_sink(conn)
    outcomes = asyncio.run(first.send_remote(leased.remote))  # the provider accepted it...
    assert [o.status for o in outcomes] == ["sent"] and len(sink.received) == 1
    # ... and the first dispatcher dies here: its outcome is never recorded (the crash point).

    with second_db.begin() as conn:  # within the lease: the row is the first one's
        assert second.claim_and_sink(conn).claimed == 0
    clock.advance(LEASE_S)  # the lease ends: the row is due, for any dispatcher
    with second_db.begin() as conn:
        again = second.claim_and_sink(conn)
    assert [m.key for _, m, _ in again.remote] == [key]
    assert (first.stats.messages_redelivered, second.stats.messages_redelivered) == (0, 1)  # counted (/metrics)
    resent = asyncio.run(second.send_remote(again.remote))
    with second_db.begin() as conn:
        second.record_remote(conn, resent)
    # Had the first recorded late, nothing would change: the row carries the second's claim.
    with first_db.begin() as conn:
        first.record_remote(conn, outcomes)

    received = message_ids(sink)
    assert received == [(f"{key}@example.org", expected_message_id(ws, key))] * 2  # resent once, same id
    row = outbox_rows(setup, ws)[key]
    # The resend is counted: a lost claim (and messages_redelivered above), not a try. Its
    # first dispatcher recorded no outcome, so attempts count the one that did.
    assert (row.status, row.attempts, row.claims, row.lost_claims) == ("sent", 1, 2, 1)
    with setup.connect() as conn:
        sent_events = conn.exec_driver_sql(
            "SELECT count(*) FROM events WHERE workspace_id = %s AND event IN ('Message Sent', 'Message Delivered')",
            (ws,),
        ).scalar()
    assert sent_events == 1  # one engagement event: the message is recorded once
    for eng in (setup, first_db, second_db):
        eng.dispose()


def test_a_stopping_dispatcher_hands_back_the_sends_it_has_not_started(pg_db: str, sink: Sink) -> None:
    clock = VirtualClock()
    db = database.create_db_engine(pg_db)
    ws = make_workspace(db, clock=clock).workspace_id
    keys = queue_messages(db, ws, 5, to_ms(clock.now()))
    dispatcher = Dispatcher(email_registry(sink.port, clock), clock, RetryPolicy(lease_s=LEASE_S))  # type: ignore[attr-defined]
    with db.begin() as conn:
        round_ = dispatcher.claim_and_sink(conn)
    assert {(r.attempts, r.claims) for r in outbox_rows(db, ws).values()} == {(0, 1)}  # leased, not tried
    outcomes = asyncio.run(dispatcher.send_remote(round_.remote, stopping=lambda: True, grace_s=0))
    assert {o.status for o in outcomes} == {HANDED_BACK} and sink.received == []
    with db.begin() as conn:
        dispatcher.record_remote(conn, outcomes)
    rows = outbox_rows(db, ws)
    now = to_ms(clock.now())
    assert set(rows) == set(keys)
    assert {(r.status, r.attempts, r.lost_claims, r.next_attempt_at_ms, r.leased_until_ms) for r in rows.values()} == {
        ("pending", 0, 0, now, None)
    }
    with db.begin() as conn:  # due at once, for any dispatcher
        assert dispatcher.claim_and_sink(conn).claimed == 5
    db.dispose()
