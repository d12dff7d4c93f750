"""Partitioned engine workers on PostgreSQL: partitions shared by leases, each event decided
once, a dead worker's partitions moved with its committed positions, fencing, timers on the
owner, and merges across partitions (runtime/partition_worker.py, partition_processor.py)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from nudgeflow.core.clock import to_ms
from nudgeflow.model.partitions import partition_of
from nudgeflow.runtime.partition_processor import process_partition_events
from nudgeflow.runtime.partition_worker import PartitionWorker
from nudgeflow.runtime.processor import RuntimeStats
from nudgeflow.store import partition_work
from nudgeflow.store.event_log import append_events, event_row
from nudgeflow.store.partition_leases import LeaseLost
from tests.runtime.harness import FakeEngine, Harness, fake_cache

TTL_MS = 6000
IDENTIFY = "identify"


def worker(h: Harness, engine: FakeEngine, name: str) -> PartitionWorker:
    return PartitionWorker(h.db, h.clock, fake_cache(engine), RuntimeStats(), worker_id=name, ttl_ms=TTL_MS)


def settle(*workers: PartitionWorker) -> None:
    """Lease ticks until no lease moves (a newcomer's share is given back, then taken)."""
    for _ in range(4):
        for w in workers:
            w.tick_leases()


def events_decided(engine: FakeEngine) -> Counter[tuple[str, str]]:
    return Counter((c[1], c[2]) for c in engine.calls if c[0] == "event")


def lags(h: Harness) -> dict[int, int]:
    with h.db.connect() as conn:
        return {p: head - pos for p, head, pos in partition_work.partition_lags(conn) if head - pos}


def test_two_workers_share_the_partitions_and_decide_each_event_once(h: Harness) -> None:
    engine = FakeEngine()
    one, two = worker(h, engine, "w1"), worker(h, engine, "w2")
    settle(one, two)
    owned_one, owned_two = one.keeper.owned_now(), two.keeper.owned_now()
    assert len(owned_one) == len(owned_two) == 32 and not set(owned_one) & set(owned_two)
    for i in range(60):
        h.track(f"user-{i}", "Signed Up")
        h.track(f"user-{i}", "Product Viewed", n=i)
    calls_before = len(engine.calls)
    one.run_until_idle()
    by_one = {c[1] for c in engine.calls[calls_before:]}
    two.run_until_idle()
    assert lags(h) == {}
    decided = events_decided(engine)
    people = {h.profile_id(f"user-{i}") for i in range(60)}
    assert {pid for pid, _ in decided} == people
    assert all(decided[(pid, name)] == 1 for pid in people for name in ("Signed Up", "Product Viewed"))
    # Each worker decided the people of its partitions only.
    assert all(partition_of(h.ws, pid) in owned_one for pid in by_one)
    for i in range(60):
        assert h.state(f"user-{i}").counters["seen"] == ["Signed Up", "Product Viewed"]  # in order
    assert len(h.timers()) == 60
    h.clock.advance(timedelta(days=1, minutes=1))
    for w in (one, two):
        w.tick_leases()
        w.run_until_idle()
    fired = Counter(c[1] for c in engine.calls if c[0] == "timer")
    assert set(fired) == people and set(fired.values()) == {1}
    assert h.timers() == []


def test_a_dead_workers_partitions_move_and_the_new_owner_resumes_where_it_committed(h: Harness) -> None:
    engine = FakeEngine()
    first = worker(h, engine, "w1")
    first.tick_leases()
    for i in range(20):
        h.track(f"p-{i}", "Signed Up")
    first.run_until_idle()
    for i in range(20):
        h.track(f"p-{i}", "Product Viewed")
    # w1 dies here (no more ticks): its leases run out after the TTL, and w2 takes them all.
    second = worker(h, engine, "w2")
    assert second.tick_leases() == {}
    h.clock.advance(timedelta(milliseconds=TTL_MS + 1))
    assert len(second.tick_leases()) == 64
    second.run_until_idle()
    assert lags(h) == {}
    assert set(events_decided(engine).values()) == {1}  # nothing decided twice, nothing missed
    assert sum(events_decided(engine).values()) == 40


def test_a_worker_whose_lease_moved_cannot_commit(h: Harness) -> None:
    engine = FakeEngine()
    first = worker(h, engine, "w1")
    owned = first.tick_leases()
    h.track("ada", "Signed Up")
    partition = partition_of(h.ws, h.profile_id("ada"))
    h.clock.advance(timedelta(milliseconds=TTL_MS + 1))
    worker(h, engine, "w2").tick_leases()  # takes every expired lease: the epochs move on
    with pytest.raises(LeaseLost), h.db.begin() as conn:
        process_partition_events(conn, fake_cache(engine), h.clock, partition, owned[partition], 100)
    assert engine.calls == [] and h.outbox() == []
    assert lags(h) == {partition: 1}


def _anonymous_and_known_in_two_partitions(h: Harness) -> tuple[str, str, str]:
    """An anonymous visitor and a known person whose profiles fall in different partitions."""
    h.identify("ada", email="ada@example.com")
    known = h.profile_id("ada")
    for n in range(50):
        anon_id = f"anon-{n}"
        h.send({"type": "track", "anonymousId": anon_id, "event": "Signed Up"})
        anon = h.scalar("SELECT profile_id FROM identities WHERE key = :k", k="a:" + anon_id)
        if partition_of(h.ws, anon) != partition_of(h.ws, known):
            return anon_id, anon, known
    raise AssertionError("50 anonymous profiles all fell in the known person's partition")


def _seen(h: Harness, profile_id: str) -> list[Any]:
    doc = h.scalar("SELECT state FROM profile_state WHERE profile_id = :p", p=profile_id)
    from nudgeflow.core.state import ProfileState

    return list(ProfileState.from_json(profile_id, doc).counters["seen"]) if doc else []


def test_a_merge_across_partitions_keeps_order_and_both_sides_state_while_both_are_busy(h: Harness) -> None:
    engine = FakeEngine()
    w = worker(h, engine, "w1")
    w.tick_leases()
    anon_id, anon, ada = _anonymous_and_known_in_two_partitions(h)
    pa, pu = partition_of(h.ws, anon), partition_of(h.ws, ada)
    # Both partitions busy: undecided events on both sides, then the merge, then more.
    for n in range(3):
        h.send({"type": "track", "anonymousId": anon_id, "event": "Product Viewed", "properties": {"n": n}})
        h.track("ada", "Page Viewed", n=n)
    h.send({"type": "identify", "userId": "ada", "anonymousId": anon_id})  # ingest merges anon into ada
    h.track("ada", "Order Completed")
    # A message queued for the visitor before the merge reports its delivery after it: the
    # event names the merged-away profile, and lands in its partition after the merge.
    with h.db.begin() as conn:
        now = to_ms(h.clock.now())
        append_events(conn, [event_row(h.ws, anon, None, "Message Delivered", "late-1", {}, now)])
    [merge] = h.q("SELECT from_partition, from_offset FROM profile_merges WHERE from_profile_id = :a", a=anon)
    assert merge.from_partition == pa and merge.from_offset > 0

    owned = w.keeper.owned_now()
    cache = fake_cache(engine)
    # The known person's partition first: it stops at ada's first undecided event, waiting
    # for the visitor's partition to decide what the visitor did before the merge.
    with h.db.begin() as conn:
        process_partition_events(conn, cache, h.clock, pu, owned[pu], 1000)
    assert _seen(h, ada) == [] and not any(c[1] == ada for c in engine.calls)
    # The visitor's partition: its events before the merge on the visitor; the late one forwarded.
    with h.db.begin() as conn:
        process_partition_events(conn, cache, h.clock, pa, owned[pa], 1000)
    assert _seen(h, anon) == ["Signed Up", "Product Viewed", "Product Viewed", "Product Viewed"]
    assert not any(c[2] == "Message Delivered" for c in engine.calls)
    # Now ada's partition goes on: the visitor's state folds in, then the identify, the order
    # and the forwarded delivery are decided on ada.
    w.run_until_idle()
    assert lags(h) == {}
    assert h.scalar("SELECT count(*) FROM profile_state WHERE profile_id = :a", a=anon) == 0
    seen = _seen(h, ada)
    # The visitor's four, folded in; then ada's own in their order, and the forwarded one last.
    assert Counter(seen[:4]) == Counter(["Signed Up", "Product Viewed", "Product Viewed", "Product Viewed"])
    assert seen[4:] == [
        IDENTIFY,
        "Page Viewed",
        "Page Viewed",
        "Page Viewed",
        IDENTIFY,
        "Order Completed",
        "Message Delivered",
    ]
    ours = (anon, ada)  # (other visitors of the search for two partitions have timers and runs of their own)
    assert [t.profile_id for t in h.timers() if t.profile_id in ours] == [ada]  # the visitor's timer came along
    assert [r.profile_id for r in h.q("SELECT profile_id FROM journey_runs") if r.profile_id in ours] == [ada]
    decided = events_decided(engine)
    assert decided[(anon, "Product Viewed")] == 3 and decided[(ada, "Page Viewed")] == 3
    assert decided[(ada, "Message Delivered")] == 1 and decided[(anon, "Message Delivered")] == 0
    assert decided[(ada, IDENTIFY)] == 2 and decided[(ada, "Order Completed")] == 1
    assert h.q("SELECT count(*) AS n FROM events WHERE profile_id = :a", a=anon)[0].n == 0  # re-pointed by the fold


def test_workers_take_over_from_the_single_engine_where_its_cursor_stopped(h: Harness) -> None:
    engine = FakeEngine()
    single = h.runtime(engine)
    for i in range(30):
        h.track(f"s-{i}", "Signed Up")
    single.run_until_idle()  # decides them, and the Message Logged its dispatch records
    assert sum(n for (_, name), n in events_decided(engine).items() if name == "Signed Up") == 30
    for i in range(30):
        h.track(f"s-{i}", "Product Viewed")
    w = worker(h, engine, "w1")
    w.tick_leases()
    w.run_until_idle()
    decided = events_decided(engine)
    assert set(decided.values()) == {1}  # nothing the single engine decided is decided again
    assert Counter(name for _, name in decided) == {"Signed Up": 30, "Message Logged": 30, "Product Viewed": 30}
    assert lags(h) == {}


def test_the_single_engine_is_refused_where_workers_have_run_and_beside_running_ones(h: Harness) -> None:
    from nudgeflow.runtime.embedded import EmbeddedRuntime
    from nudgeflow.store import engine_lock

    def single() -> EmbeddedRuntime:
        return EmbeddedRuntime(h.db, None, h.clock, h.settings(role="all"), engines=fake_cache(FakeEngine()))

    shared = engine_lock.acquire_shared(h.db, 0)  # a worker process is running
    try:
        with pytest.raises(engine_lock.WorkersRunning, match="partitioned engine workers"):
            single().claim_database()
        engine_lock.acquire_shared(h.db, 0).release()  # another worker may start beside it
    finally:
        shared.release()
    h.track("ada", "Signed Up")
    w = worker(h, FakeEngine(), "w1")
    w.tick_leases()
    w.run_until_idle()  # a position is stored now
    with pytest.raises(engine_lock.PartitionedDatabase, match="would decide their events again"):
        single().claim_database()
    lock = engine_lock.acquire(h.db, 0)  # the refusal left the lock free
    try:
        with pytest.raises(engine_lock.EngineLocked):
            engine_lock.acquire_shared(h.db, 0)  # and a worker is refused beside a single engine
    finally:
        lock.release()


def test_the_single_engine_takes_back_from_drained_workers_and_workers_can_take_over_again(h: Harness) -> None:
    from typer.testing import CliRunner

    from nudgeflow.cli import app
    from nudgeflow.store import engine_lock

    engine = FakeEngine()
    for i in range(20):
        h.track(f"s-{i}", "Signed Up")
    h.runtime(engine).run_until_idle()  # the single engine first
    for i in range(20):
        h.track(f"s-{i}", "Product Viewed")
    w1 = worker(h, engine, "w1")
    settle(w1)
    w1.run_until_idle()  # then a worker, from where the single engine stopped
    runner = CliRunner()

    def single_engine() -> tuple[int, str]:
        done = runner.invoke(app, ["db", "single-engine", "--database", h.url])
        return done.exit_code, " ".join(done.output.split())  # as said, not as wrapped

    shared = engine_lock.acquire_shared(h.db, 0)  # a worker process still running
    try:
        code, said = single_engine()
        assert code != 0 and "running on this database: stop them first" in said
    finally:
        shared.release()
    for i in range(5):
        h.track(f"late-{i}", "Signed Up")  # acknowledged, not decided by anyone yet
    code, said = single_engine()
    assert code != 0 and "5 events are not decided yet" in said, said
    with h.db.connect() as conn:
        assert partition_work.partitioned(conn)  # the refusal changed nothing
    w1.run_until_idle()
    w1.stop()
    code, said = single_engine()
    assert code == 0 and "back to the single engine" in said, said
    with h.db.connect() as conn:
        assert not partition_work.partitioned(conn)
    for i in range(20):
        h.track(f"s-{i}", "Cart Viewed")
    h.runtime(engine).run_until_idle()  # --role all again: only what came after
    for i in range(20):
        h.track(f"s-{i}", "Order Completed")
    w2 = worker(h, engine, "w2")
    settle(w2)
    w2.run_until_idle()  # and workers once more, from the single engine's cursor
    decided = events_decided(engine)
    assert set(decided.values()) == {1}  # no event decided twice, none skipped
    names = Counter(name for _, name in decided)
    assert names["Signed Up"] == 25 and names["Product Viewed"] == names["Cart Viewed"] == 20
    assert names["Order Completed"] == 20
    assert lags(h) == {}


def test_the_coordinator_runs_a_backfill_across_every_partition(h: Harness) -> None:
    """A journey published with the past in view: the holder of partition 0 backfills it over
    people of every partition (the winback journey of tests/runtime/backfill_support.py)."""
    from nudgeflow.runtime.processor import EngineCache
    from tests.runtime.backfill_support import entered, jobs, publish, winback

    one = PartitionWorker(h.db, h.clock, EngineCache(), RuntimeStats(), worker_id="w1", ttl_ms=TTL_MS)
    two = PartitionWorker(h.db, h.clock, EngineCache(), RuntimeStats(), worker_id="w2", ttl_ms=TTL_MS)
    settle(one, two)
    for i in range(40):
        h.track(f"q-{i}", "Session Started")
    for w in (one, two):
        w.run_until_idle()
    h.clock.advance(timedelta(days=10))
    for w in (one, two):
        w.tick_leases()
    publish(h, winback())
    coordinator = one if 0 in one.keeper.owned_now() else two
    other = two if coordinator is one else one
    other.run_until_idle()
    assert entered(h) == []  # only the coordinator backfills
    coordinator.run_until_idle()
    [job] = jobs(h)
    assert (job.status, job.profiles_done, job.entered) == ("done", 40, 40)
    people = {h.profile_id(f"q-{i}") for i in range(40)}
    assert set(entered(h)) == people and len({partition_of(h.ws, p) for p in people}) > 20


def test_a_shared_batch_that_fails_falls_back_to_one_partition_at_a_time(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net (retry smaller, set an item aside) is per partition: a failure of the
    batch shared by the partitions makes the round decide each partition on its own."""
    import nudgeflow.runtime.partition_worker as partition_worker

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a shared batch that fails")

    monkeypatch.setattr(partition_worker, "process_partitions_events", broken)
    engine = FakeEngine()
    w = worker(h, engine, "w1")
    w.tick_leases()
    for i in range(20):
        h.track(f"f-{i}", "Signed Up")
    w.run_until_idle()
    assert lags(h) == {} and sum(events_decided(engine).values()) == 20
