"""Segments in the database, on SQLite and PostgreSQL: versions, applies, members, daily sizes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import func, insert, select

from nudgeflow.core.clock import VirtualClock
from nudgeflow.core.effects import SegmentChanged
from nudgeflow.model.event_names import SEGMENT_ENTERED, SEGMENT_EXITED
from nudgeflow.model.journeys import Journey
from nudgeflow.model.segments import Segment
from nudgeflow.store import journeys as journey_store
from nudgeflow.store import privacy
from nudgeflow.store import segments as store
from nudgeflow.store.effects_writer import EffectsBatch
from nudgeflow.store.engine_state import move_merged
from nudgeflow.store.schema import events, profile_merges, profiles, segment_daily_sizes, segment_members
from tests.store.pg_race import second_after_first
from tests.support import make_workspace

DAY = store.DAY_MS
T0 = 20_000 * DAY  # a UTC midnight (2024-10-04)


def segment(segment_id: str = "buyers", within: str = "30d", **extra: Any) -> Segment:
    doc: dict[str, Any] = {
        "id": segment_id,
        "name": segment_id.title(),
        "when": {"performed": "Order Completed", "within": within},
        **extra,
    }
    return Segment.model_validate(doc)


def add_profiles(engine: Any, wsid: str, ids: list[str], user: bool = True) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(profiles),
            [
                {
                    "id": pid,
                    "workspace_id": wsid,
                    "user_id": f"user-{pid}" if user else None,
                    "traits": "{}",
                    "created_at_ms": T0,
                    "updated_at_ms": T0,
                }
                for pid in ids
            ],
        )


def apply(engine: Any, wsid: str, seg: Segment, now: int = T0, **kwargs: Any) -> store.Applied:
    with engine.begin() as conn:
        return store.apply(conn, wsid, seg, now, **kwargs)


def change(engine: Any, wsid: str, changes: dict[tuple[str, str], tuple[bool, int]]) -> tuple[int, int]:
    with engine.begin() as conn:
        return store.write_changes(conn, {(wsid, sid, pid): value for (sid, pid), value in changes.items()})


def members(engine: Any, wsid: str, segment_id: str) -> list[str]:
    with engine.connect() as conn:
        return [pid for pid, _ in store.members(conn, wsid, segment_id, limit=1000)]


def daily(engine: Any, wsid: str, segment_id: str, through: int | None = None) -> list[tuple[int, int, int, int]]:
    with engine.connect() as conn:
        return [
            (d["day"], d["entered"], d["exited"], d["size"]) for d in store.daily_sizes(conn, wsid, segment_id, through)
        ]


# --- versions and lifecycle ---------------------------------------------------------------------


def test_apply_creates_version_one_live_and_queues_its_computation(engine: Any, wsid: str) -> None:
    done = apply(engine, wsid, segment())
    assert done == store.Applied("buyers", created=True, status=store.LIVE, version=1, new_version=True)
    with engine.connect() as conn:
        jobs = store.pending_applies(conn)
        live = store.live_segments(conn, wsid)
        found = store.get_segment(conn, wsid, "buyers")
    assert [(j.segment_id, j.version, j.position) for j in jobs if j.workspace_id == wsid] == [("buyers", 1, "")]
    assert [(s.segment_id, s.version, s.definition) for s in live] == [("buyers", 1, segment())]
    assert found is not None
    assert found["status"] == "live" and found["size"] == 0 and not found["draft_changed"]
    assert found["computed"]["status"] == "pending" and found["computed"]["version"] == 1
    assert found["definition"]["when"]["performed"] == "Order Completed"
    assert [v["version"] for v in found["versions"]] == [1]


def test_an_unchanged_definition_makes_no_version_and_a_change_makes_the_next(engine: Any, wsid: str) -> None:
    apply(engine, wsid, segment())
    again = apply(engine, wsid, segment(), now=T0 + 1)
    assert (again.created, again.version, again.new_version) == (False, 1, False)
    edited = apply(engine, wsid, segment(within="60d"), now=T0 + 2)
    assert (edited.version, edited.new_version) == (2, True)
    with engine.connect() as conn:
        jobs = store.latest_applies(conn, wsid)
        assert store.load_version(conn, wsid, "buyers", 1) == segment()
        assert store.load_version(conn, wsid, "buyers", 2) == segment(within="60d")
        pending = [(j.segment_id, j.version) for j in store.pending_applies(conn) if j.workspace_id == wsid]
    # The new version's computation replaces the unfinished one of version 1.
    assert pending == [("buyers", 2)]
    assert jobs["buyers"].version == 2


def test_a_draft_is_stored_without_going_live_then_published(engine: Any, wsid: str) -> None:
    done = apply(engine, wsid, segment(), draft=True)
    assert (done.status, done.version, done.new_version) == ("draft", None, False)
    with engine.connect() as conn:
        assert store.live_segments(conn, wsid) == []
        assert store.latest_applies(conn, wsid) == {}
    with engine.begin() as conn:
        assert store.publish(conn, wsid, "buyers", T0 + 1) == (1, True)
    # A live segment's draft is edited beside its live version until the next apply.
    apply(engine, wsid, segment(within="7d"), now=T0 + 2, draft=True)
    with engine.connect() as conn:
        found = store.get_segment(conn, wsid, "buyers")
    assert found is not None and found["live_version"] == 1 and found["draft_changed"]
    assert found["definition"]["when"]["within"] == "30d" and found["draft"]["when"]["within"] == "7d"


def test_references_must_be_live_and_must_not_go_round(engine: Any, wsid: str) -> None:
    pro = segment("pro-buyers", when={"all": [{"trait": "plan", "value": "pro"}, {"segment": "buyers"}]})
    with pytest.raises(store.InvalidSegment, match="no segment 'buyers'"):
        apply(engine, wsid, pro)
    apply(engine, wsid, segment())
    assert apply(engine, wsid, pro).version == 1
    circular = segment("buyers", when={"segment": "pro-buyers"})
    with pytest.raises(store.InvalidSegment, match="circle"):
        apply(engine, wsid, circular, now=T0 + 5)
    with engine.connect() as conn:
        assert sorted(store.live_definitions(conn, wsid)) == ["buyers", "pro-buyers"]


def test_publishing_a_draft_that_closes_a_circle_is_refused(engine: Any, wsid: str) -> None:
    # The draft was no circle when it was stored; a segment it refers to has since come to
    # refer back to it. Making it live then would leave the engine a catalog it cannot order.
    apply(engine, wsid, segment())
    apply(engine, wsid, segment("pro-buyers", when={"trait": "plan", "value": "pro"}))
    apply(engine, wsid, segment("buyers", when={"segment": "pro-buyers"}), now=T0 + 1, draft=True)
    apply(engine, wsid, segment("pro-buyers", when={"segment": "buyers"}), now=T0 + 2)
    with engine.begin() as conn, pytest.raises(store.InvalidSegment, match=r"circle: .*buyers"):
        store.publish(conn, wsid, "buyers", T0 + 3)
    with engine.connect() as conn:
        assert store.status_of(conn, wsid, "buyers") == ("live", 1)


def test_archive_lets_members_go_and_is_refused_while_something_uses_the_segment(engine: Any, wsid: str) -> None:
    apply(engine, wsid, segment())
    apply(engine, wsid, segment("pro-buyers", when={"segment": "buyers"}))
    journey = Journey.model_validate(
        {
            "id": "vip",
            "name": "VIP",
            "trigger": {"type": "event", "event": "Order Completed"},
            "entry": {"filter": [{"segment": "buyers"}]},
            "steps": {"hello": {"type": "send", "channel": "log", "template": "hi"}},
        }
    )
    with engine.begin() as conn:
        journey_store.apply_draft(conn, wsid, journey, T0)
        journey_store.publish(conn, wsid, "vip", T0)
    with pytest.raises(store.SegmentRefused, match=r"journey 'vip'.*segment 'pro-buyers'"), engine.begin() as conn:
        store.archive(conn, wsid, "buyers", T0)
    with engine.begin() as conn:
        journey_store.archive(conn, wsid, "vip", T0 + 1)
        assert store.archive(conn, wsid, "pro-buyers", T0 + 1) is True
    change(engine, wsid, {("buyers", "p1"): (True, T0), ("buyers", "p2"): (True, T0)})
    with engine.begin() as conn:
        assert store.archive(conn, wsid, "buyers", T0 + 2 * DAY) is True
        assert store.archive(conn, wsid, "buyers", T0 + 2 * DAY) is False
    assert members(engine, wsid, "buyers") == []
    assert daily(engine, wsid, "buyers") == [(20_000, 2, 0, 2), (20_001, 0, 0, 2), (20_002, 0, 2, 0)]
    with pytest.raises(store.SegmentRefused, match="archived"):
        apply(engine, wsid, segment(within="2d"), now=T0 + 3 * DAY)
    with engine.connect() as conn:
        assert store.live_segments(conn, wsid) == []


def test_the_catalog_fingerprint_moves_when_a_segment_changes(engine: Any, wsid: str) -> None:
    def mark() -> Any:
        with engine.connect() as conn:
            return journey_store.catalog_fingerprint(conn, wsid)

    before = mark()
    apply(engine, wsid, segment())
    first = mark()
    apply(engine, wsid, segment(within="10d"))  # the same millisecond: still a move
    assert len({before, first, mark()}) == 3


# --- members and daily sizes ---------------------------------------------------------------------


def test_members_rows_and_daily_counts_follow_the_changes_exactly(engine: Any, wsid: str) -> None:
    apply(engine, wsid, segment())
    assert change(engine, wsid, {("buyers", "a"): (True, T0 + 5), ("buyers", "b"): (True, T0 + 6)}) == (2, 0)
    # Entering again (a batch decided twice, a cursor moved back) changes and counts nothing.
    assert change(engine, wsid, {("buyers", "a"): (True, T0 + 7), ("buyers", "c"): (False, T0 + 7)}) == (0, 0)
    assert change(engine, wsid, {("buyers", "a"): (False, T0 + 2 * DAY), ("buyers", "c"): (True, T0 + 2 * DAY)}) == (
        1,
        1,
    )
    assert members(engine, wsid, "buyers") == ["b", "c"]
    with engine.connect() as conn:
        since = dict(store.members(conn, wsid, "buyers"))
        assert since == {"b": T0 + 6, "c": T0 + 2 * DAY}
        assert store.sizes(conn, wsid) == {"buyers": 2}
    assert daily(engine, wsid, "buyers", through=20_003) == [
        (20_000, 2, 0, 2),
        (20_001, 0, 0, 2),
        (20_002, 1, 1, 2),
        (20_003, 0, 0, 2),
    ]


def test_members_are_paged_by_profile_id(engine: Any, wsid: str) -> None:
    apply(engine, wsid, segment())
    ids = [f"p{n:03d}" for n in range(25)]
    change(engine, wsid, {("buyers", pid): (True, T0) for pid in reversed(ids)})
    change(engine, wsid, {("other", "p005"): (True, T0)})  # another segment's member is not listed
    pages: list[list[str]] = []
    after = ""
    with engine.connect() as conn:
        while True:
            page = store.members(conn, wsid, "buyers", after, 10)
            pages.append([pid for pid, _ in page])
            if len(page) < 10:
                break
            after = page[-1][0]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [pid for page in pages for pid in page] == ids


def test_segment_changed_effects_write_members_and_append_events_once(engine: Any, wsid: str) -> None:
    apply(engine, wsid, segment())
    add_profiles(engine, wsid, ["pa", "pb"])
    cause = {"event": "Order Completed", "message_id": "m-1"}

    def batch() -> Any:
        b = EffectsBatch()
        b.add(wsid, "pa", [SegmentChanged("buyers", 1, True, T0 + 10, cause)], T0 + 20)
        b.add(wsid, "pb", [SegmentChanged("buyers", 1, True, T0 + 11, cause)], T0 + 20)
        b.add(wsid, "pb", [SegmentChanged("buyers", 1, False, T0 + 12, {"timer": "window"})], T0 + 20)
        with engine.begin() as conn:
            return b.write(conn, T0 + 20)

    counts = batch()
    assert (counts.segments_entered, counts.segments_exited, counts.segment_events) == (1, 0, 3)
    counts = batch()  # the same decisions again: the same rows, the same event ids
    assert (counts.segments_entered, counts.segments_exited) == (0, 0)
    assert members(engine, wsid, "buyers") == ["pa"]
    with engine.connect() as conn:
        rows = conn.execute(
            select(events.c.profile_id, events.c.event, events.c.user_id, events.c.timestamp_ms, events.c.payload)
            .where(events.c.workspace_id == wsid)
            .order_by(events.c.seq)
        ).all()
    assert [(r.profile_id, r.event, r.user_id, r.timestamp_ms) for r in rows] == [
        ("pa", SEGMENT_ENTERED, "user-pa", T0 + 10),
        ("pb", SEGMENT_ENTERED, "user-pb", T0 + 11),
        ("pb", SEGMENT_EXITED, "user-pb", T0 + 12),
    ]
    payload = orjson.loads(rows[2].payload)
    assert payload["properties"] == {"segment_id": "buyers", "segment_version": 1, "cause": {"timer": "window"}}
    assert payload["type"] == "track" and payload["userId"] == "user-pb"


def test_changes_decided_in_one_batch_count_on_their_own_days_as_in_separate_batches(engine: Any, wsid: str) -> None:
    # A backlog (an import, an engine that was down) decides days of one person's changes in
    # one batch: the daily sizes and `since` must not depend on how they were batched.
    apply(engine, wsid, segment())
    add_profiles(engine, wsid, ["day-a", "day-b"])
    cause = {"event": "Order Completed", "message_id": "m-1"}
    lapse = {"timer": "window"}
    first = EffectsBatch()
    first.add(wsid, "day-a", [SegmentChanged("buyers", 1, True, T0, cause)], T0)
    with engine.begin() as conn:
        first.write(conn, T0)
    b = EffectsBatch()
    b.add(wsid, "day-a", [SegmentChanged("buyers", 1, False, T0 + DAY, lapse)], T0 + 3 * DAY)
    b.add(wsid, "day-a", [SegmentChanged("buyers", 1, True, T0 + 2 * DAY, cause)], T0 + 3 * DAY)
    b.add(wsid, "day-b", [SegmentChanged("buyers", 1, True, T0 + 11, cause)], T0 + 3 * DAY)
    b.add(wsid, "day-b", [SegmentChanged("buyers", 1, False, T0 + DAY + 12, lapse)], T0 + 3 * DAY)
    with engine.begin() as conn:
        counts = b.write(conn, T0 + 3 * DAY)
    assert (counts.segments_entered, counts.segments_exited) == (0, 0)  # no members row added or removed
    d0 = store.day_of(T0)
    assert daily(engine, wsid, "buyers") == [(d0, 2, 0, 2), (d0 + 1, 0, 2, 0), (d0 + 2, 1, 0, 1)]
    with engine.connect() as conn:
        assert store.members(conn, wsid, "buyers") == [("day-a", T0 + 2 * DAY)]  # since its latest entry


def test_erasure_and_merges_keep_the_daily_sizes_equal_to_the_members(engine: Any, wsid: str) -> None:
    apply(engine, wsid, segment())
    apply(engine, wsid, segment("browsers", when={"performed": "Product Viewed", "within": "7d"}))
    add_profiles(engine, wsid, ["anon", "known", "gone"])
    change(
        engine,
        wsid,
        {
            ("buyers", "anon"): (True, T0),
            ("buyers", "known"): (True, T0 + DAY),
            ("browsers", "anon"): (True, T0),
            ("buyers", "gone"): (True, T0),
        },
    )
    with engine.begin() as conn:
        privacy.erase_person(conn, wsid, "gone", T0 + 3 * DAY)
        conn.execute(
            insert(profile_merges).values(
                workspace_id=wsid, from_profile_id="anon", into_profile_id="known", merged_at_ms=T0 + 2 * DAY
            )
        )
        move_merged(conn, "anon", "known")
    # The merged-away profile leaves; the known one's next event decides its segments again.
    assert members(engine, wsid, "buyers") == ["known"]
    assert members(engine, wsid, "browsers") == []
    with engine.connect() as conn:
        for sid in ("buyers", "browsers"):
            total = conn.execute(
                select(func.sum(segment_daily_sizes.c.entered - segment_daily_sizes.c.exited)).where(
                    segment_daily_sizes.c.workspace_id == wsid, segment_daily_sizes.c.segment_id == sid
                )
            ).scalar()
            count = conn.execute(
                select(func.count()).where(segment_members.c.workspace_id == wsid, segment_members.c.segment_id == sid)
            ).scalar()
            assert total == count
        exported = privacy.export_person(conn, wsid, "known")
    assert exported is not None
    assert [m["segment_id"] for m in exported["segments"]] == ["buyers"]
    assert daily(engine, wsid, "buyers") == [(20_000, 2, 0, 2), (20_001, 1, 0, 3), (20_002, 0, 1, 2), (20_003, 0, 1, 1)]
    assert daily(engine, wsid, "browsers") == [(20_000, 1, 0, 1), (20_001, 0, 0, 1), (20_002, 0, 1, 0)]


def test_a_persons_memberships_are_read_and_erased_in_their_workspace_only(
    engine: Any, wsid: str, clock: VirtualClock
) -> None:
    other = make_workspace(engine, "other", clock).workspace_id
    for ws in (wsid, other):
        apply(engine, ws, segment())
        apply(engine, ws, segment("browsers", when={"performed": "Product Viewed", "within": "7d"}))
        change(engine, ws, {("buyers", "p1"): (True, T0), ("browsers", "p1"): (True, T0 + DAY)})
    apply(engine, wsid, segment("old"))
    with engine.begin() as conn:
        store.archive(conn, wsid, "old", T0)
        # A row an engine batch could write as its segment was archived: not read, but erased.
        conn.execute(insert(segment_members).values(workspace_id=wsid, segment_id="old", profile_id="p1", since_ms=T0))
    with engine.begin() as conn:
        store.archive(conn, other, "browsers", T0 + 2 * DAY)  # its members are let go
        assert store.memberships(conn, wsid, ["p1", "p2"]) == {"p1": {"buyers": T0, "browsers": T0 + DAY}}
        assert store.memberships(conn, other, ["p1"]) == {"p1": {"buyers": T0}}
        assert store.let_go(conn, wsid, ["p1"], T0 + 3 * DAY) == 3
        assert store.memberships(conn, wsid, ["p1"]) == {}
        assert store.memberships(conn, other, ["p1"]) == {"p1": {"buyers": T0}}
    assert members(engine, wsid, "old") == [] and members(engine, other, "buyers") == ["p1"]


def test_two_first_applies_of_a_segment_at_once_make_two_versions_not_an_error(engine: Any, wsid: str) -> None:
    # Two `segments apply` runs (or API processes) create the same new segment at once. On
    # PostgreSQL the second's insert waited for the first and failed on the primary key (a
    # 500); its definition is the next version now, as an apply after it would make.
    second = second_after_first(
        engine,
        lambda conn: store.apply(conn, wsid, segment(), T0),
        lambda conn: store.apply(conn, wsid, segment(within="7d"), T0 + 1000),
        "segments",
    )
    assert second == store.Applied("buyers", created=False, status=store.LIVE, version=2, new_version=True)


# --- draft revisions: two editors of one draft ---------------------------------------------------


def draft_revision(engine: Any, wsid: str, segment_id: str = "buyers") -> int:
    with engine.connect() as conn:
        found = store.get_segment(conn, wsid, segment_id)
    assert found is not None
    return int(found["draft_revision"])


def test_a_segment_draft_saved_against_a_stale_revision_is_refused_and_changes_nothing(engine: Any) -> None:
    wsid = make_workspace(engine).workspace_id
    apply(engine, wsid, segment())
    assert draft_revision(engine, wsid) == 1
    apply(engine, wsid, segment(), T0 + 1)  # the same definition again: no change
    assert draft_revision(engine, wsid) == 1
    done = apply(engine, wsid, segment(within="7d"), T0 + 2, expected_revision=1)
    assert done.version == 2 and draft_revision(engine, wsid) == 2
    with pytest.raises(store.DraftConflict) as refused:
        apply(engine, wsid, segment(within="1d"), T0 + 3, expected_revision=1)
    assert (refused.value.expected, refused.value.current) == (1, 2)
    with engine.connect() as conn:
        found = store.get_segment(conn, wsid, "buyers")
    assert found is not None and found["draft"]["when"]["within"] == "7d" and found["live_version"] == 2
    with pytest.raises(store.DraftConflict) as missing:
        apply(engine, wsid, segment("nope"), T0 + 3, draft=True, expected_revision=1)
    assert missing.value.current is None
    assert apply(engine, wsid, segment(within="1d"), T0 + 4, draft=True, expected_revision=2).version == 2
    assert draft_revision(engine, wsid) == 3


def test_two_saves_of_one_segment_draft_revision_at_once_the_second_is_refused(engine: Any) -> None:
    wsid = make_workspace(engine).workspace_id
    apply(engine, wsid, segment())
    second = second_after_first(
        engine,
        lambda conn: store.apply(conn, wsid, segment(within="7d"), T0 + 1, draft=True, expected_revision=1),
        lambda conn: store.apply(conn, wsid, segment(within="1d"), T0 + 2, draft=True, expected_revision=1),
        "segments",
    )
    assert isinstance(second, store.DraftConflict) and second.current == 2, second
    with engine.connect() as conn:
        found = store.get_segment(conn, wsid, "buyers")
    assert found is not None and found["draft"]["when"]["within"] == "7d" and found["draft_revision"] == 2
