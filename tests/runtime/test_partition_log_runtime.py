"""The partitioned event log under the embedded runtime: what ingest, the dispatcher and the
engine write carries its partition and offset, timers carry their person's partition after
an arm and a merge, and a merge's events are re-pointed by the engine's fold, not by ingest."""

from __future__ import annotations

from collections import defaultdict

from nudgeflow.model.partitions import partition_of
from tests.runtime.harness import FakeEngine, Harness


def test_every_decided_event_has_its_persons_partition_and_dense_offsets(h: Harness) -> None:
    rt = h.runtime(FakeEngine())
    for i in range(15):
        h.track(f"user-{i}", "Signed Up")  # a welcome message each: its outcome is an event too
    h.send(*({"type": "track", "anonymousId": f"anon-{i}", "event": "Page Viewed"} for i in range(10)))
    rt.run_until_idle()
    rows = h.q("SELECT seq, workspace_id, profile_id, event, partition, part_offset FROM events ORDER BY seq")
    assert any(r.event == "Message Logged" for r in rows)  # the dispatcher's outcome events
    offsets: dict[int, list[int]] = defaultdict(list)
    for r in rows:
        assert r.partition == partition_of(r.workspace_id, r.profile_id), r
        offsets[r.partition].append(r.part_offset)
    heads = {r.partition: r.head for r in h.q("SELECT partition, head FROM partition_heads")}
    for p, found in offsets.items():
        assert found == list(range(1, len(found) + 1)), p  # this database's own: from 1, in seq order
        assert heads[p] == len(found)
    assert sum(heads.values()) == len(rows)
    # The timers the engine armed are in their person's partition.
    timers = h.q("SELECT workspace_id, profile_id, partition FROM timers")
    assert len(timers) == 15
    assert all(t.partition == partition_of(t.workspace_id, t.profile_id) for t in timers)


def test_a_merged_profiles_events_and_timers_follow_it_at_the_fold(h: Harness) -> None:
    engine = FakeEngine()
    rt = h.runtime(engine)
    h.track("ada", "Product Viewed")
    h.send({"type": "track", "anonymousId": "anon-1", "event": "Signed Up"})
    rt.run_until_idle()
    anon = h.scalar("SELECT profile_id FROM identities WHERE key = 'a:anon-1'")
    ada = h.profile_id("ada")
    [timer] = h.q("SELECT profile_id, partition FROM timers")
    assert (timer.profile_id, timer.partition) == (anon, partition_of(h.ws, anon))
    anon_events = h.q("SELECT seq, partition, part_offset FROM events WHERE profile_id = :p ORDER BY seq", p=anon)
    assert anon_events

    rt.stop()  # ingest merges while the engine is away
    h.send({"type": "identify", "userId": "ada", "anonymousId": "anon-1"})
    merge = h.q("SELECT into_profile_id, from_partition, from_offset FROM profile_merges")
    assert [(m.into_profile_id, m.from_partition) for m in merge] == [(ada, partition_of(h.ws, anon))]
    assert merge[0].from_offset >= max(e.part_offset for e in anon_events)
    # Not re-pointed by ingest.
    assert (
        h.q("SELECT seq, partition, part_offset FROM events WHERE profile_id = :p ORDER BY seq", p=anon) == anon_events
    )

    rt = h.runtime(engine)
    rt.run_until_idle()
    # Folded: the events are ada's, where they were in the log; the timer is in ada's partition.
    assert h.q("SELECT seq FROM events WHERE profile_id = :p", p=anon) == []
    moved = h.q(
        f"SELECT seq, partition, part_offset FROM events WHERE seq IN ({', '.join(str(e.seq) for e in anon_events)})"
        " ORDER BY seq"
    )
    assert moved == anon_events
    [timer] = h.q("SELECT profile_id, partition FROM timers")
    assert (timer.profile_id, timer.partition) == (ada, partition_of(h.ws, ada))


def test_events_of_a_profile_merged_before_the_engine_saw_it_are_decided_on_the_known_person(h: Harness) -> None:
    engine = FakeEngine()
    h.track("bea", "Product Viewed")
    h.send({"type": "track", "anonymousId": "anon-9", "event": "Page Viewed"})
    anon = h.scalar("SELECT profile_id FROM identities WHERE key = 'a:anon-9'")
    h.send({"type": "identify", "userId": "bea", "anonymousId": "anon-9"})
    bea = h.profile_id("bea")
    assert h.q("SELECT event FROM events WHERE profile_id = :p", p=anon)[0].event == "Page Viewed"
    h.runtime(engine).run_until_idle()
    assert ("event", bea, "Page Viewed") in engine.calls
    assert all(c[1] == bea for c in engine.calls)
    # No state of its own to fold, but its events are moved all the same.
    assert h.q("SELECT seq FROM events WHERE profile_id = :p", p=anon) == []
