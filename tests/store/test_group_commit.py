"""The group committer: many submissions, few transactions; failures stay contained; clean stops.

A job that waits on an Event holds the writer thread still (a "gate"), so a test can queue
work behind it and know exactly what the writer will find when it is released: no sleeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, func, insert, select

from nudgeflow.core.clock import VirtualClock
from nudgeflow.model.events import EventRecord, normalize, parse_message
from nudgeflow.store.group_commit import GroupCommitter, WriterFailed, WriterStopped
from nudgeflow.store.schema import events, workspaces
from nudgeflow.store.workspaces import create_workspace
from tests.store.commit_recorder import Commits

RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)
WAIT = 60  # seconds a future may take before the test is declared hung
_ids = itertools.count(1)


def records(n: int, user: str = "u") -> list[EventRecord]:
    out = []
    for _ in range(n):
        i = next(_ids)
        message = {"type": "track", "event": "Product Viewed", "userId": f"{user}-{i % 7}", "messageId": f"gc-{i}"}
        out.append(normalize(parse_message(message), RECEIVED, max_event_bytes=32 * 1024))
    return out


class Gate:
    """Holds the writer thread inside a job until opened."""

    def __init__(self, committer: GroupCommitter) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.future = committer.submit_job(self._hold)
        assert self.entered.wait(WAIT), "the writer never ran the gate job"

    def _hold(self, _conn: Connection) -> str:
        self.entered.set()
        assert self.release.wait(WAIT)
        return "opened"

    def open(self) -> None:
        self.release.set()
        assert self.future.result(WAIT) == "opened"


def stored(engine: Any, workspace_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(events).where(events.c.workspace_id == workspace_id)
            ).scalar_one()
        )


def test_queued_submissions_are_committed_together(
    engine: Any, committer: GroupCommitter, commits: Commits, wsid: str
) -> None:
    gate = Gate(committer)
    futures = [committer.submit_events(wsid, records(3)) for _ in range(100)]
    gate.open()
    results = [f.result(WAIT) for f in futures]
    # One transaction took all 100 requests; each is told the commit's totals.
    assert commits.seen == [(300, 100)]
    assert all(r.accepted == 300 for r in results)
    assert stored(engine, wsid) == 300


def test_concurrent_submitters_share_transactions(
    engine: Any, committer: GroupCommitter, commits: Commits, wsid: str
) -> None:
    """Sixteen threads each send 25 requests one after the other, as ingest requests do."""

    def client(n: int) -> int:
        accepted = 0
        for _ in range(n):
            accepted += committer.submit_events(wsid, records(2)).result(WAIT).accepted > 0
        return accepted

    start = threading.Barrier(16)

    def run(_: int) -> int:
        start.wait(WAIT)
        return client(25)

    with ThreadPoolExecutor(16) as pool:
        assert sum(pool.map(run, range(16))) == 400
    assert sum(commits.requests) == 400
    assert sum(a for a, _ in commits.seen) == 800
    assert len(commits.seen) < 400, "no two requests ever shared a transaction"
    assert stored(engine, wsid) == 800


def test_a_commit_takes_at_most_about_max_events(engine: Any, commits: Commits, wsid: str) -> None:
    committer = GroupCommitter(engine, VirtualClock(), max_events=1000, on_commit=commits)
    committer.start()
    try:
        gate = Gate(committer)
        futures = [committer.submit_events(wsid, records(100)) for _ in range(30)]
        gate.open()
        for f in futures:
            f.result(WAIT)
    finally:
        committer.stop()
    assert commits.seen == [(1000, 10)] * 3
    assert stored(engine, wsid) == 3000


def test_jobs_and_events_keep_their_order(engine: Any, committer: GroupCommitter, wsid: str) -> None:
    gate = Gate(committer)
    before = committer.submit_events(wsid, records(5))
    counted = committer.submit_job(
        lambda conn: conn.execute(
            select(func.count()).select_from(events).where(events.c.workspace_id == wsid)
        ).scalar_one()
    )
    after = committer.submit_events(wsid, records(5))
    gate.open()
    before.result(WAIT)
    after.result(WAIT)
    # The job ran after the events queued before it and before those queued after it.
    assert counted.result(WAIT) == 5
    assert stored(engine, wsid) == 10


def test_a_failing_job_does_not_stop_the_writer(engine: Any, committer: GroupCommitter, wsid: str) -> None:
    failed = committer.submit_job(lambda conn: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failed.result(WAIT)
    assert committer.running

    # The failed job's transaction was rolled back; later work commits.
    def write_then_fail(conn: Connection) -> None:
        conn.execute(insert(workspaces).values(id="ws_rolled_back", name="x", created_at_ms=0))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        committer.submit_job(write_then_fail).result(WAIT)
    assert committer.submit_events(wsid, records(4)).result(WAIT).accepted == 4
    assert committer.submit_job(lambda conn: "still here").result(WAIT) == "still here"
    with engine.connect() as conn:
        assert conn.execute(select(workspaces.c.id).where(workspaces.c.id == "ws_rolled_back")).first() is None


def test_a_failing_request_does_not_fail_its_neighbours(
    engine: Any, committer: GroupCommitter, commits: Commits, wsid: str
) -> None:
    # A record the database refuses (a NOT NULL column without a value) shares a commit with good ones.
    poisoned = dataclasses.replace(records(1)[0], timestamp_ms=None)  # type: ignore[arg-type]
    gate = Gate(committer)
    good_before = committer.submit_events(wsid, records(3))
    bad = committer.submit_events(wsid, [poisoned])
    good_after = committer.submit_events(wsid, records(3))
    gate.open()
    with pytest.raises(WriterFailed):
        bad.result(WAIT)
    assert good_before.result(WAIT).accepted == 3
    assert good_after.result(WAIT).accepted == 3
    assert stored(engine, wsid) == 6
    assert committer.running
    assert committer.submit_events(wsid, records(1)).result(WAIT).accepted == 1


def test_stop_drains_queued_work(engine: Any, commits: Commits, wsid: str) -> None:
    committer = GroupCommitter(engine, VirtualClock(), on_commit=commits)
    committer.start()
    gate = Gate(committer)
    futures: list[Future[Any]] = [committer.submit_events(wsid, records(2)) for _ in range(50)]
    futures.append(committer.submit_job(lambda conn: "job after events"))
    stopper = threading.Thread(target=committer.stop)
    stopper.start()
    # Wait until stop() has queued its marker behind the 51 items: the writer is still
    # held by the gate, so everything it must drain is in the queue at that moment.
    assert _wait_for(lambda: committer._queue.qsize() == 52)
    assert stopper.is_alive()
    gate.open()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert all(f.done() for f in futures)
    assert futures[-1].result() == "job after events"
    assert all(f.result().accepted == 100 for f in futures[:-1])
    assert stored(engine, wsid) == 100
    assert not committer.running


def _wait_for(condition: Callable[[], bool]) -> bool:
    """Waits for a condition another thread is about to make true (bounded, not timed)."""
    ev = threading.Event()
    for _ in range(WAIT * 1000):
        if condition():
            return True
        ev.wait(0.001)
    return False


def test_submitting_when_stopped_raises(engine: Any, wsid: str) -> None:
    committer = GroupCommitter(engine, VirtualClock())
    assert not committer.running
    with pytest.raises(WriterStopped):
        committer.submit_events(wsid, records(1))
    with pytest.raises(WriterStopped):
        committer.submit_job(lambda conn: None)

    committer.start()
    committer.start()  # a second start is harmless
    assert committer.submit_events(wsid, records(1)).result(WAIT).accepted == 1
    committer.stop()
    committer.stop()  # so is a second stop
    assert not committer.running
    with pytest.raises(WriterStopped):
        committer.submit_events(wsid, records(1))
    with pytest.raises(WriterStopped):
        committer.submit_job(lambda conn: None)
    with pytest.raises(WriterStopped):
        asyncio.run(committer.write_events(wsid, records(1)))
    assert stored(engine, wsid) == 1

    # A stopped writer can be started again.
    committer.start()
    try:
        assert asyncio.run(committer.write_events(wsid, records(1))).accepted == 1
        assert asyncio.run(committer.run_job(lambda conn: 42)) == 42
    finally:
        committer.stop()


def test_one_commit_spans_workspaces(engine: Any, committer: GroupCommitter, commits: Commits, wsid: str) -> None:
    with engine.begin() as conn:
        other = create_workspace(conn, "gc-other", 0).workspace_id
    gate = Gate(committer)
    # The same messageIds in two workspaces: each workspace stores its own copy.
    batch = records(10)
    a = committer.submit_events(wsid, batch)
    b = committer.submit_events(other, [dataclasses.replace(r) for r in batch])
    gate.open()
    a.result(WAIT)
    b.result(WAIT)
    assert commits.seen == [(20, 2)]
    assert stored(engine, wsid) == stored(engine, other) == 10


def test_submitting_while_stopping_is_refused_not_left_waiting(engine: Any, wsid: str) -> None:
    """Work that arrives after stop() began must fail fast: queued behind the stop marker,
    nothing would ever answer it and its request would hang."""
    committer = GroupCommitter(engine, VirtualClock())
    committer.start()
    gate = Gate(committer)
    queued = committer.submit_events(wsid, records(2))
    stopper = threading.Thread(target=committer.stop)
    stopper.start()
    assert _wait_for(lambda: committer._queue.qsize() == 2)  # the events, then the stop marker
    with pytest.raises(WriterStopped):
        late = committer.submit_events(wsid, records(2))
        late.result(5)  # without the fix this is never answered
    with pytest.raises(WriterStopped):
        committer.submit_job(lambda conn: None)
    gate.open()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert queued.result(WAIT).accepted == 2
    assert stored(engine, wsid) == 2


def test_a_cancelled_request_does_not_kill_the_writer(engine: Any, committer: GroupCommitter, wsid: str) -> None:
    """An ingest request whose task is cancelled (client gone, server shutting down)
    cancels its future through asyncio.wrap_future; the writer must carry on."""
    gate = Gate(committer)
    dropped = committer.submit_events(wsid, records(3))
    assert dropped.cancel()
    kept = committer.submit_events(wsid, records(2))
    failed_job = committer.submit_job(lambda conn: "never")
    assert failed_job.cancel()
    gate.open()
    assert kept.result(WAIT).accepted == 2
    assert committer.running
    assert committer.submit_events(wsid, records(1)).result(WAIT).accepted == 1
    # The cancelled request was never acknowledged: whether its events were stored or not,
    # its client retries them and dedupe keeps one copy. Here they were not written.
    assert stored(engine, wsid) == 3


def test_a_cancelled_request_in_a_failing_commit_does_not_kill_the_writer(
    engine: Any, committer: GroupCommitter, wsid: str
) -> None:
    poisoned = dataclasses.replace(records(1)[0], timestamp_ms=None)  # type: ignore[arg-type]
    gate = Gate(committer)
    bad = committer.submit_events(wsid, [poisoned])
    assert bad.cancel()
    good = committer.submit_events(wsid, records(2))
    gate.open()
    assert good.result(WAIT).accepted == 2
    assert committer.running
    assert committer.submit_job(lambda conn: "alive").result(WAIT) == "alive"
