"""`nudgeflow serve --role` as an operator runs it, on PostgreSQL, against a real SMTP sink
on loopback (issue 17, items 3 and 4).

- SIGTERM drains a dispatch process: it exits 0 within a bound, and the rows it had claimed
  (their sends held unanswered by the sink) are pending and due at once, leases released,
  taken by the next dispatcher straight away.
- SIGTERM stops an engine, all or api process: exit 0, the engine lock free for the next
  one. An engine's port answers /healthz and /metrics, not the ingest API.
- The resend window, with a real kill: a dispatch process SIGKILLed right after the sink
  accepted a message (before it could record it) has that message sent again by the next
  dispatcher once the lease ends: once, with the same Message-ID. Counted.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.runtime.dispatcher import Dispatcher, RetryPolicy
from nudgeflow.store import database, engine_lock
from tests.roles.support import (
    HoldingSink,
    RoleProcess,
    email_registry,
    expected_message_id,
    message_ids,
    outbox_rows,
    queue_messages,
    smtp_url,
    wait_for,
)
from tests.support import make_workspace

DRAIN_S = 1.0
EXIT_BOUND_S = 10.0  # SIGTERM to exit, drain included
LEASE_S = 300  # the default lease: the resend comes when it ends


def _drain_all(dispatcher: Dispatcher, db: object) -> int:
    """Claim, send and record until nothing is due; the messages claimed."""
    total = 0
    while True:
        with db.begin() as conn:  # type: ignore[attr-defined]
            round_ = dispatcher.claim_and_sink(conn)
        if not round_.claimed:
            return total
        total += round_.claimed
        outcomes = asyncio.run(dispatcher.send_remote(round_.remote))
        with db.begin() as conn:  # type: ignore[attr-defined]
            dispatcher.record_remote(conn, outcomes)


def test_sigterm_drains_a_dispatch_process_its_claims_handed_back(
    pg_db: str, holding_sink: HoldingSink, tmp_path: Path
) -> None:
    db = database.create_db_engine(pg_db)
    ws = make_workspace(db).workspace_id
    keys = queue_messages(db, ws, 5, to_ms(datetime.now(UTC)))
    holding_sink.hold_after = 0  # every send stays under way
    proc = RoleProcess(
        "dispatch",
        pg_db,
        tmp_path / "dispatch.log",
        NUDGEFLOW_SMTP_URL=smtp_url(holding_sink.port),
        NUDGEFLOW_DRAIN_SECONDS=str(DRAIN_S),
    )
    try:
        proc.wait_ready()
        wait_for("a send under way", lambda: holding_sink.held >= 1)
        assert {(r.attempts, r.claims) for r in outbox_rows(db, ws).values()} == {(0, 1)}  # all five claimed and leased
        proc.terminate()
        started = time.monotonic()
        assert proc.proc.wait(30) == 0, proc.log.read_text()
        took = time.monotonic() - started
    finally:
        proc.stop()
    assert took < EXIT_BOUND_S, took
    now_ms = to_ms(datetime.now(UTC))
    rows = outbox_rows(db, ws)
    assert set(rows) == set(keys) and holding_sink.received == []
    for r in rows.values():
        assert (r.status, r.leased_until_ms, r.lost_claims) == ("pending", None, 0)  # handed back, not lost
        assert r.next_attempt_at_ms <= now_ms  # due now, not at the lease's end
    said = proc.log.read_text()
    assert "handed back" in said and "Traceback" not in said
    # The next dispatcher takes them at once.
    holding_sink.hold_after = None
    holding_sink.release.set()
    clock = VirtualClock(datetime.now(UTC))
    dispatcher = Dispatcher(email_registry(holding_sink.port, clock), clock, RetryPolicy())
    assert _drain_all(dispatcher, db) == 5
    assert sorted(rcpt for rcpt, _ in message_ids(holding_sink)) == [f"{k}@example.org" for k in keys]
    db.dispose()


@pytest.mark.parametrize("role", ["engine", "all", "api"])
def test_sigterm_stops_each_role_with_exit_0_and_frees_the_lock(pg_db: str, tmp_path: Path, role: str) -> None:
    db = database.create_db_engine(pg_db)
    proc = RoleProcess(role, pg_db, tmp_path / f"{role}.log")
    try:
        proc.wait_ready()
        ingest = httpx.post(f"{proc.url}/v1/track", json={"event": "x", "userId": "u"}).status_code
        assert (ingest == 404) == (role == "engine")  # 401 from the API: no write key
        assert httpx.get(f"{proc.url}/metrics").status_code == 200
        if role == "api":  # no engine lock taken
            engine_lock.acquire(db, 0).release()
        else:
            with pytest.raises(engine_lock.EngineLocked):
                engine_lock.acquire(db, 0)
        proc.terminate()
        started = time.monotonic()
        assert proc.proc.wait(30) == 0, proc.log.read_text()
        assert time.monotonic() - started < EXIT_BOUND_S
    finally:
        proc.stop()
    engine_lock.acquire(db, 0).release()  # free for the next engine
    db.dispose()


def test_a_dispatch_process_killed_after_the_send_resends_once_with_the_same_message_id(
    pg_db: str, holding_sink: HoldingSink, tmp_path: Path
) -> None:
    db = database.create_db_engine(pg_db)
    ws = make_workspace(db).workspace_id
    keys = queue_messages(db, ws, 2, to_ms(datetime.now(UTC)))
    # The sink accepts one message and holds the other: the process's round cannot record
    # the accepted one before the held one ends, so it dies with the first sent, unrecorded.
    holding_sink.hold_after = 1
    proc = RoleProcess(
        "dispatch",
        pg_db,
        tmp_path / "dispatch.log",
        NUDGEFLOW_SMTP_URL=smtp_url(holding_sink.port),
        NUDGEFLOW_DISPATCH_LEASE_SECONDS=str(LEASE_S),
    )
    try:
        proc.wait_ready()
        wait_for("one accepted, one held", lambda: len(holding_sink.received) == 1 and holding_sink.held == 1)
        killed_at = datetime.now(UTC)
        proc.stop()  # SIGKILL
    finally:
        proc.stop()
    [(rcpt, first_id)] = message_ids(holding_sink)
    accepted = rcpt.split("@")[0]
    assert first_id == expected_message_id(ws, accepted)
    rows = outbox_rows(db, ws)
    assert {(r.status, r.attempts, r.claims) for r in rows.values()} == {("pending", 0, 1)}  # leased, nothing recorded
    holding_sink.hold_after = None
    holding_sink.release.set()

    # Within the lease nothing is due; when it ends, the next dispatcher sends both.
    clock = VirtualClock(killed_at)
    dispatcher = Dispatcher(email_registry(holding_sink.port, clock), clock, RetryPolicy())
    assert _drain_all(dispatcher, db) == 0
    clock.set(killed_at + timedelta(seconds=LEASE_S))
    assert _drain_all(dispatcher, db) == 2
    received = message_ids(holding_sink)
    copies = Counter(mid for _, mid in received)
    assert copies == {expected_message_id(ws, k): (2 if k == accepted else 1) for k in keys}
    resent = sum(n - 1 for n in copies.values())
    assert resent == 1  # the window's one resend, with the same Message-ID
    # Each is a lost claim, then one try (the resend counted by messages_redelivered).
    rows = outbox_rows(db, ws)
    assert {(r.status, r.attempts, r.claims, r.lost_claims) for r in rows.values()} == {("sent", 1, 2, 1)}
    db.dispose()
