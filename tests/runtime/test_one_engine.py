"""One engine per database: the engine lock, a cursor that never skips an event that
commits late, and the sends a dead engine had leased (on SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest

from nudgeflow.channels.base import ChannelRegistry, RemoteChannel
from nudgeflow.core.clock import to_ms
from nudgeflow.model.events import normalize, parse_message
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.runtime.processor import GAP_WAIT_MS, process_events, skip_next_event
from nudgeflow.settings import ConfigError, Settings
from nudgeflow.store.engine_lock import EngineLocked
from nudgeflow.store.ingest_writer import write_events
from tests.runtime.harness import FakeEngine, Harness, fake_cache


def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Wait for a background loop (real threads, real time) to get somewhere."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(0.02)
    return value


def decided(engine: FakeEngine) -> list[str]:
    return [name for kind, _, name in engine.calls if kind == "event"]


def gaps(h: Harness) -> list[list[int]]:
    doc = h.scalar("SELECT gaps FROM engine_cursors WHERE name = 'events'")
    return orjson.loads(doc) if doc else []


def seq_of(h: Harness, event: str) -> int:
    return int(h.scalar("SELECT seq FROM events WHERE event = :e", e=event))


# --- the cursor -------------------------------------------------------------------------------


def test_an_event_that_commits_after_a_later_seq_is_still_decided(h: Harness) -> None:
    if not h.url.startswith("postgresql"):
        pytest.skip("SQLite admits one writer at a time: a later seq cannot commit first there")
    engine = FakeEngine()
    rt = h.runtime(engine)
    h.track("warm", "Warm Up")
    rt.run_until_idle()
    # Two real connections: this one takes a seq and holds its transaction open ...
    late = h.db.connect()
    tx = late.begin()
    record = normalize(
        parse_message({"type": "track", "userId": "ada", "event": "Late", "messageId": "late-1"}),
        h.clock.now(),
        max_event_bytes=32 * 1024,
    )
    write_events(late, h.ws, [record], to_ms(h.clock.now()))
    # ... while a later seq commits (through the writer, as ingest does) and the engine reads.
    h.track("bob", "Early")
    rt.run_until_idle()
    assert "Early" in decided(engine) and "Late" not in decided(engine)
    early = seq_of(h, "Early")
    assert h.cursor() >= early
    assert any(first < early for first, _, _ in gaps(h))  # the late one's seq, waited for
    tx.commit()
    late.close()
    rt.run_until_idle()
    assert decided(engine).count("Late") == 1
    assert decided(engine).count("Early") == 1
    assert gaps(h) == []


def test_a_seq_that_appears_below_the_cursor_is_decided_on_both_databases(h: Harness) -> None:
    # The same, made to happen on SQLite too: an event's row is out of sight (as an open
    # transaction's is) while the engine reads past its seq, then it appears.
    engine = FakeEngine()
    rt = h.runtime(engine)
    h.track("ada", "First")
    h.track("bob", "Second")
    first = seq_of(h, "First")
    h.in_transaction(lambda conn: conn.exec_driver_sql(f"UPDATE events SET seq = {-first} WHERE seq = {first}"))
    rt.run_until_idle()
    assert decided(engine) == ["Second"]
    assert h.cursor() == seq_of(h, "Second")
    assert [g[:2] for g in gaps(h)] == [[first, first]]
    h.in_transaction(lambda conn: conn.exec_driver_sql(f"UPDATE events SET seq = {first} WHERE seq = {-first}"))
    rt.run_until_idle()
    assert decided(engine) == ["Second", "First"]
    assert gaps(h) == []
    rt.run_until_idle()
    assert decided(engine) == ["Second", "First"]  # decided once


def test_a_gap_that_never_fills_is_given_up_after_the_wait(h: Harness) -> None:
    engine = FakeEngine()
    rt = h.runtime(engine)
    h.track("ada", "Rolled Back")
    h.track("bob", "Kept")
    gone = seq_of(h, "Rolled Back")
    h.in_transaction(lambda conn: conn.exec_driver_sql(f"DELETE FROM events WHERE seq = {gone}"))
    rt.run_until_idle()
    assert decided(engine) == ["Kept"]
    assert [g[:2] for g in gaps(h)] == [[gone, gone]]
    h.clock.advance(timedelta(milliseconds=GAP_WAIT_MS - 1))
    rt.run_until_idle()
    assert [g[:2] for g in gaps(h)] == [[gone, gone]]  # still waited for
    h.clock.advance(timedelta(milliseconds=1))
    rt.run_until_idle()
    assert gaps(h) == []
    assert h.cursor() == seq_of(h, "Kept")


def test_gaps_inside_one_batch_are_each_remembered_and_filled_one_by_one(h: Harness) -> None:
    engine = FakeEngine()
    rt = h.runtime(engine)
    for name in ("A", "B", "C", "D", "E"):
        h.track("ada", name)
    b, d = seq_of(h, "B"), seq_of(h, "D")
    h.in_transaction(lambda conn: conn.exec_driver_sql(f"UPDATE events SET seq = -seq WHERE seq IN ({b}, {d})"))
    rt.run_until_idle()
    assert decided(engine) == ["A", "C", "E"]
    assert [g[:2] for g in gaps(h)] == [[b, b], [d, d]]
    h.in_transaction(lambda conn: conn.exec_driver_sql(f"UPDATE events SET seq = {d} WHERE seq = {-d}"))
    rt.run_until_idle()
    assert decided(engine) == ["A", "C", "E", "D"]
    assert [g[:2] for g in gaps(h)] == [[b, b]]
    h.in_transaction(lambda conn: conn.exec_driver_sql(f"UPDATE events SET seq = {b} WHERE seq = {-b}"))
    rt.run_until_idle()
    assert decided(engine) == ["A", "C", "E", "D", "B"]
    assert gaps(h) == []


def test_the_safety_net_sets_aside_an_event_that_filled_a_gap_first(h: Harness) -> None:
    engine = FakeEngine()
    rt = h.runtime(engine)
    h.track("ada", "First")
    h.track("bob", "Second")
    first = seq_of(h, "First")
    h.in_transaction(lambda conn: conn.exec_driver_sql(f"UPDATE events SET seq = {-first} WHERE seq = {first}"))
    rt.run_until_idle()
    h.in_transaction(lambda conn: conn.exec_driver_sql(f"UPDATE events SET seq = {first} WHERE seq = {-first}"))
    h.track("cy", "Third")
    now = to_ms(h.clock.now())
    assert h.in_transaction(lambda conn: skip_next_event(conn, now)) == first  # the late one, not Third
    assert gaps(h) == []
    assert h.in_transaction(lambda conn: process_events(conn, fake_cache(engine), h.clock)) == 1
    assert decided(engine) == ["Second", "Third"]


# --- the engine lock --------------------------------------------------------------------------


def test_a_second_engine_on_the_database_is_refused_naming_the_first(h: Harness) -> None:
    first = h.runtime(engine_poll_ms=20)
    first.start()
    second = h.runtime(engine_poll_ms=20)
    with pytest.raises(EngineLocked) as refused:
        second.start()
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message and f"host {socket.gethostname()}" in message
    assert "started " in message and "NUDGEFLOW_ENGINE=0" in message
    assert not second.running and first.running
    first.stop()  # frees the lock
    second.start()
    assert second.running
    second.stop()


def test_the_lock_is_taken_again_when_its_connection_was_lost(h: Harness) -> None:
    rt = h.runtime(engine_poll_ms=20)
    rt.claim_database()
    lock = rt._engine_lock
    assert lock is not None and lock.held()
    lock.release()  # as a dropped connection (or a lost file) would leave it
    assert not lock.held()
    rt._lock_checked_at = 0.0
    assert rt._holds_lock()
    assert rt._engine_lock is not None and rt._engine_lock.held()
    other = h.runtime()
    with pytest.raises(EngineLocked):
        other.claim_database()
    rt.release_database()


# --- leases -----------------------------------------------------------------------------------


class Recorder(RemoteChannel):
    """A remote provider that accepts everything and remembers each try."""

    name = "recorder"

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    async def send(self, message: OutboundMessage) -> None:
        self.sent.append((message.key, message.attempt))


def channels(recorder: Recorder) -> ChannelRegistry:
    reg = ChannelRegistry.development()
    reg.register("recorder", recorder)
    return reg


def lease_one(h: Harness, **settings: Any) -> tuple[str, Any]:
    """A message claimed for sending by an engine that then died before recording it."""
    h.track("ada", "Signed Up", channel="recorder")
    crashed = h.runtime(channels=channels(Recorder()), **settings)
    h.in_transaction(lambda conn: process_events(conn, fake_cache(FakeEngine()), h.clock))
    claimed = h.in_transaction(lambda conn: crashed.dispatcher.claim_and_sink(conn, 10))
    assert len(claimed.remote) == 1  # leased; the process dies before it sends or records
    [row] = h.outbox()
    return row.idempotency_key, row


def test_an_engine_that_takes_the_lock_sends_its_dead_predecessors_leases_at_once(h: Harness) -> None:
    key, row = lease_one(h)
    now = to_ms(h.clock.now())
    # Leased: a claim, not yet a try (attempts count tries with an outcome).
    assert (row.status, row.attempts, row.claims, row.next_attempt_at_ms, row.leased_until_ms) == (
        "pending",
        0,
        1,
        now + 300_000,
        now + 300_000,
    )
    recorder = Recorder()
    rt = h.runtime(channels=channels(recorder), engine_poll_ms=20)
    rt.start()  # the virtual clock stands still: only the reclaim can make it due
    eventually(lambda: recorder.sent == [(key, 1)])  # its first try: the dead engine's was none
    assert rt.leases_reclaimed == 1
    # Each may be a resend: counted as docs/roles.md says, as a lease that ran out would be.
    assert rt.snapshot()["messages_redelivered"] == 1
    eventually(lambda: h.outbox()[0].status == "sent")
    rt.stop()
    [row] = h.outbox()
    assert (row.attempts, row.claims, row.lost_claims) == (1, 2, 1)  # the reclaimed lease was lost


def test_the_lease_is_a_setting(h: Harness) -> None:
    assert Settings.from_env({"NUDGEFLOW_DISPATCH_LEASE_SECONDS": "30"}).dispatch_lease_seconds == 30.0
    assert Settings().dispatch_lease_seconds == 300.0
    with pytest.raises(ConfigError, match="NUDGEFLOW_DISPATCH_LEASE_SECONDS"):
        Settings.from_env({"NUDGEFLOW_DISPATCH_LEASE_SECONDS": "soon"})
    key, row = lease_one(h, dispatch_lease_seconds=30)
    assert row.next_attempt_at_ms == to_ms(h.clock.now()) + 30_000
    recorder = Recorder()
    rt = h.runtime(channels=channels(recorder), dispatch_lease_seconds=30)
    h.clock.advance(timedelta(seconds=29))
    rt.run_until_idle()
    assert recorder.sent == []
    h.clock.advance(timedelta(seconds=1))
    rt.run_until_idle()
    assert recorder.sent == [(key, 1)]
