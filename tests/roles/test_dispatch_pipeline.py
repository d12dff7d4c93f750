"""The dispatcher's pipeline (runtime/sends.py, runtime/dispatch_pipeline.py), against a real
SMTP server on loopback and a PostgreSQL outbox:

- sends start one per turn of the event loop: with builds that cost (a blocking render, as
  the template, MIME and DKIM are), the first message of a claim is accepted by the server
  before the last of the claim has been built. Started all at once, as before, none was
  accepted before all were built.
- claims overlap sends: the next claim is made while the sends of the claim before are still
  held by a slow server, and outcomes are recorded as they come, each row once.
- claims start at the dispatcher's concurrency and double while their sends start in time,
  up to the batch.
- stopping drains: sends not started are handed back without counting an attempt, sends
  under way get the grace and are then handed back; nothing stays leased.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import text

from nudgeflow.channels.base import ChannelRegistry
from nudgeflow.channels.email.channel import EmailChannel
from nudgeflow.content.rendered import RenderedEmail
from nudgeflow.core.clock import SystemClock, to_ms
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.model.smtp_config import parse_smtp_url
from nudgeflow.runtime.dispatch_pipeline import DispatchPipeline
from nudgeflow.runtime.dispatcher import HANDED_BACK, Dispatcher, DispatchRound, Outcome, RetryPolicy
from nudgeflow.store import database
from tests.channels.smtp_support import Sink, start_sink
from tests.roles.support import email_registry, message_ids, outbox_rows, queue_messages, smtp_url
from tests.support import make_workspace

BUILD_S = 0.005  # what a build costs here: the event loop is blocked for it, as by a real one
WAIT_S = 30.0  # the longest any step below may take on a loaded machine (never reached when it works)


class Timeline:
    """What happened, in order, from both sides: the dispatcher's builds and claims, the
    server's acceptances (another thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[tuple[str, str]] = []

    def note(self, what: str, key: str = "") -> None:
        with self.lock:
            self.entries.append((what, key))

    def index(self, what: str, nth: int = 0) -> int:
        found = [i for i, (w, _) in enumerate(self.entries) if w == what]
        return found[nth] if len(found) > nth else len(self.entries)


class CostlyRenderer:
    """Renders every message alike, blocking the event loop BUILD_S for each (a build's CPU)."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline

    async def render_email(self, message: OutboundMessage) -> RenderedEmail:
        time.sleep(BUILD_S)  # blocking on purpose: a build holds the loop
        self.timeline.note("built", message.key)
        return RenderedEmail(subject=f"Order {message.key}", html="<p>Thank you.</p>", marketing=message.marketing)


class NotingSink(Sink):
    """Notes each acceptance on the timeline; with `hold` set, answers DATA only once `release`
    is set (a slow server), at most WAIT_S later."""

    def __init__(self, timeline: Timeline) -> None:
        super().__init__()
        self.timeline = timeline
        self.hold = False
        self.release = threading.Event()
        self.port = 0

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.hold:
            deadline = time.monotonic() + WAIT_S
            while not self.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        reply = await super().handle_DATA(server, session, envelope)
        self.timeline.note("accepted", envelope.rcpt_tos[0])
        return reply


@pytest.fixture
def timeline() -> Timeline:
    return Timeline()


@pytest.fixture
def noting_sink(timeline: Timeline) -> Iterator[NotingSink]:
    s = NotingSink(timeline)
    controller = start_sink(s)
    s.port = controller.port
    yield s
    s.release.set()
    controller.stop()


def _registry(port: int, renderer: Any, clock: Any) -> ChannelRegistry:
    registry = ChannelRegistry.development(())
    registry.register("email", EmailChannel(parse_smtp_url(smtp_url(port)), renderer=renderer, clock=clock))
    return registry


def _queued(pg_db: str, count: int) -> tuple[SystemClock, Any, str, list[str]]:
    """A workspace on the test database with `count` emails queued, due now: (clock, db,
    workspace id, their keys)."""
    clock = SystemClock()
    db = database.create_db_engine(pg_db)
    ws = make_workspace(db, clock=clock).workspace_id
    return clock, db, ws, queue_messages(db, ws, count, to_ms(clock.now()))


def test_the_first_message_of_a_claim_is_accepted_before_the_last_is_built(
    pg_db: str, noting_sink: NotingSink, timeline: Timeline
) -> None:
    count = 40
    clock, db, _, _ = _queued(pg_db, count)
    dispatcher = Dispatcher(_registry(noting_sink.port, CostlyRenderer(timeline), clock), clock, RetryPolicy())
    with db.begin() as conn:
        round_ = dispatcher.claim_and_sink(conn)
    assert len(round_.remote) == count

    async def send() -> list[Outcome]:
        try:
            return await dispatcher.send_remote(round_.remote, lease_until_ms=round_.lease_until_ms)
        finally:
            await dispatcher.channels.get("email").aclose()  # type: ignore[union-attr]

    outcomes = asyncio.run(send())
    assert [o.status for o in outcomes] == ["sent"] * count
    assert len(noting_sink.received) == count
    last_built = timeline.index("built", count - 1)
    first_accepted = timeline.index("accepted")
    # Started all at once (before), every build came first: first_accepted == count.
    assert first_accepted < last_built, timeline.entries[: count + 5]
    # Each message in its claim's order, the first built first.
    assert timeline.entries[0] == ("built", "m0000")
    db.dispose()


def _pipeline(
    db: Any,
    dispatcher: Dispatcher,
    timeline: Timeline,
    *,
    batch: int,
    stop: threading.Event,
    grace_s: float = 5.0,
    turn: Any = None,
    after_record: Any = None,
) -> DispatchPipeline:
    def claim(cap: int) -> tuple[DispatchRound, int]:
        timeline.note("cap", str(cap))
        limit = min(cap, batch)
        with db.begin() as conn:
            round_ = dispatcher.claim_and_sink(conn, limit)
        if round_.claimed:
            timeline.note("claimed", str(round_.claimed))
        return round_, limit

    def record(outcomes: list[Outcome]) -> int:
        with db.begin() as conn:
            appended = dispatcher.record_remote(conn, outcomes)
        timeline.note("recorded", str(len(outcomes)))
        if after_record is not None:
            after_record(outcomes)
        return appended

    return DispatchPipeline(
        dispatcher,
        claim,
        record,
        batch=batch,
        stop=stop,
        wake=threading.Event(),
        poll_s=0.05,
        grace_s=grace_s,
        turn=turn,
    )


def _run_in_thread(pipeline: DispatchPipeline) -> threading.Thread:
    def run() -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(pipeline.run())
            loop.run_until_complete(pipeline.dispatcher.channels.get("email").aclose())  # type: ignore[union-attr]
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="test-dispatch")
    thread.start()
    return thread


@dataclass
class Running:
    """A pipeline dispatching a test's queued emails on a thread of its own."""

    db: Any
    ws: str
    keys: list[str]
    dispatcher: Dispatcher
    pipeline: DispatchPipeline
    stop: threading.Event
    thread: threading.Thread


def _start(
    pg_db: str,
    noting_sink: NotingSink,
    timeline: Timeline,
    *,
    count: int,
    concurrency: int,
    batch: int,
    hold: bool = False,
    grace_s: float = 5.0,
    turn: Any = None,
    send_one: Any = None,
    after_record: Any = None,
) -> Running:
    """`count` emails queued, and a pipeline of `concurrency` sends and claims of up to
    `batch` started on them (`hold`: the SMTP server accepts nothing until released)."""
    clock, db, ws, keys = _queued(pg_db, count)
    dispatcher = Dispatcher(
        email_registry(noting_sink.port, clock), clock, RetryPolicy(lease_s=60), max_concurrency=concurrency
    )
    if send_one is not None:  # wraps the dispatcher's own (a test's fault)
        dispatcher.send_one = partial(send_one, dispatcher.send_one)  # type: ignore[method-assign]
    noting_sink.hold = hold
    stop = threading.Event()
    pipeline = _pipeline(
        db, dispatcher, timeline, batch=batch, stop=stop, grace_s=grace_s, turn=turn, after_record=after_record
    )
    return Running(db, ws, keys, dispatcher, pipeline, stop, _run_in_thread(pipeline))


def _wait_for(what: str, check: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {WAIT_S} s"
        time.sleep(0.01)


def test_claims_overlap_the_sends_of_the_claim_before_and_every_row_is_recorded_once(
    pg_db: str, noting_sink: NotingSink, timeline: Timeline
) -> None:
    # A slow server: nothing is accepted until the test says so.
    run = _start(pg_db, noting_sink, timeline, count=30, concurrency=10, batch=10, hold=True)
    db, ws, keys, pipeline, stop, thread = run.db, run.ws, run.keys, run.pipeline, run.stop, run.thread
    try:
        # The second claim comes while all ten sends of the first are held by the server.
        _wait_for("a second claim", lambda: pipeline.claims >= 2)
        assert timeline.index("accepted") == len(timeline.entries)  # none accepted yet
        noting_sink.release.set()
        _wait_for("all sent and recorded", lambda: {r.status for r in outbox_rows(db, ws).values()} == {"sent"})
    finally:
        stop.set()
        noting_sink.release.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    received = message_ids(noting_sink)
    assert sorted(rcpt for rcpt, _ in received) == sorted(f"{k}@example.org" for k in keys)  # each once
    rows = outbox_rows(db, ws)
    assert {(r.status, r.attempts) for r in rows.values()} == {("sent", 1)}
    recorded = [int(n) for what, n in timeline.entries if what == "recorded"]
    assert sum(recorded) == len(keys)
    db.dispose()


def test_claims_start_at_the_concurrency_and_double_while_their_sends_start_in_time(
    pg_db: str, noting_sink: NotingSink, timeline: Timeline
) -> None:
    run = _start(pg_db, noting_sink, timeline, count=250, concurrency=16, batch=100)
    db, ws, dispatcher, stop, thread = run.db, run.ws, run.dispatcher, run.stop, run.thread
    try:
        _wait_for("all sent and recorded", lambda: {r.status for r in outbox_rows(db, ws).values()} == {"sent"})
    finally:
        stop.set()
        thread.join(WAIT_S)
    caps = [int(n) for what, n in timeline.entries if what == "cap"]
    # 16 + 32 + 64 + 100: the fourth claim leaves 38, then one comes back short (or empty).
    assert caps[:4] == [16, 32, 64, 100], caps
    assert [int(n) for what, n in timeline.entries if what == "claimed"] == [16, 32, 64, 100, 38]
    assert dispatcher.sends_past_deadline == 0
    db.dispose()


def test_a_stopping_pipeline_hands_back_what_it_has_not_sent(
    pg_db: str, noting_sink: NotingSink, timeline: Timeline
) -> None:
    # The three under way are held past the grace.
    run = _start(pg_db, noting_sink, timeline, count=8, concurrency=3, batch=8, hold=True, grace_s=0.2)
    db, ws, keys, pipeline, stop, thread = run.db, run.ws, run.keys, run.pipeline, run.stop, run.thread
    try:
        # Both claims made before the stop: the second follows the third send's start, and a
        # loaded machine can take its time over it (stopping sooner left one claim, not two).
        _wait_for(
            "three sends under way, the rest claimed", lambda: pipeline.sends.in_flight == 3 and pipeline.claims == 2
        )
        stop.set()
        thread.join(WAIT_S)
        assert not thread.is_alive()
    finally:
        stop.set()
        noting_sink.release.set()
        thread.join(WAIT_S)
    rows = outbox_rows(db, ws)
    assert set(rows) == set(keys)
    # Nothing stays leased: all due at once. The three under way count their attempt (they may
    # have been accepted), the five never started do not.
    assert {(r.status, r.leased_until_ms) for r in rows.values()} == {("pending", None)}
    assert sorted(r.attempts for r in rows.values()) == [0] * 5 + [1] * 3
    # Claims start at max_concurrency: three claimed and started, then the other five claimed
    # while those were under way, never started (they waited for a slot).
    assert pipeline.claims == 2
    db.dispose()


def test_a_send_that_raises_leaves_its_row_leased_and_the_dispatcher_idle_again(
    pg_db: str, noting_sink: NotingSink, timeline: Timeline
) -> None:
    # A bug of ours in one send (it raises instead of giving an outcome) must not keep the
    # dispatcher busy for ever: run_until_idle waits for the dispatch turn, which a pipeline
    # holding an unrecorded send never gave back.
    failed: list[int] = []

    async def faulty(real: Any, row_id: int, *args: Any) -> Outcome:
        if not failed:
            failed.append(row_id)
            raise RuntimeError("a bug")
        return await real(row_id, *args)

    turn = threading.Lock()
    run = _start(pg_db, noting_sink, timeline, count=5, concurrency=2, batch=5, turn=turn, send_one=faulty)
    try:
        _wait_for(
            "the other four sent", lambda: sum(r.status == "sent" for r in outbox_rows(run.db, run.ws).values()) == 4
        )
        assert turn.acquire(timeout=WAIT_S), "the dispatch turn was never given back"
        turn.release()
    finally:
        run.stop.set()
        run.thread.join(WAIT_S)
    assert not run.thread.is_alive()
    with run.db.connect() as conn:
        row = conn.execute(text("SELECT status, leased_until_ms FROM outbox WHERE id = :id"), {"id": failed[0]}).one()
    assert (row.status, row.leased_until_ms is not None) == ("pending", True)  # sent again when its lease ends
    run.db.dispose()


def test_a_row_claimed_again_while_its_hand_back_is_recorded_keeps_its_new_lease_in_hand(
    pg_db: str, noting_sink: NotingSink, timeline: Timeline
) -> None:
    # A send handed back before it started makes its row due at once; the next claim can take
    # it again while the recorder is still finishing that record. The recorder must not then
    # drop what it holds of the new send: stopped with the new send under way, the row is
    # handed back (not left leased until its lease runs out).
    calls: list[int] = []

    async def first_not_started(real: Any, row_id: int, message: Any, *args: Any) -> Outcome:
        calls.append(row_id)
        if len(calls) == 1:
            return Outcome(row_id, message, message.attempt, HANDED_BACK, started=False)
        return await real(row_id, message, *args)

    def then_claimed_again(outcomes: list[Outcome]) -> None:
        if any(o.status == HANDED_BACK for o in outcomes):  # committed: the row is due now
            _wait_for("the row claimed and started again", lambda: len(calls) == 2)

    run = _start(
        pg_db,
        noting_sink,
        timeline,
        count=1,
        concurrency=1,
        batch=1,
        hold=True,
        grace_s=0.2,
        send_one=first_not_started,
        after_record=then_claimed_again,
    )
    try:
        _wait_for("the second send under way", lambda: len(calls) == 2 and run.pipeline.sends.in_flight == 1)
        time.sleep(0.2)  # the recorder's turn after its record
        run.stop.set()
        run.thread.join(WAIT_S)
        assert not run.thread.is_alive()
    finally:
        run.stop.set()
        noting_sink.release.set()
        run.thread.join(WAIT_S)
    (row,) = outbox_rows(run.db, run.ws).values()
    assert (row.status, row.leased_until_ms) == ("pending", None)
    run.db.dispose()
