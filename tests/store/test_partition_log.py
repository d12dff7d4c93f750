"""The partitioned event log (store/partition_log.py): offsets dense and in commit order per
partition, who gets one, merges' from_partition/from_offset, timers' partitions, and the
migration that backfills them. On SQLite and PostgreSQL, each module on a database of its
own (the heads are not per workspace); the concurrency test is PostgreSQL's alone."""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from nudgeflow.core.clock import VirtualClock
from nudgeflow.model.event_names import SEGMENT_ENTERED
from nudgeflow.model.events import OWN_SEGMENT_PREFIX, EventRecord, normalize, parse_message
from nudgeflow.model.partitions import DEFAULT_PARTITIONS, partition_of
from nudgeflow.store import database, engine_state, event_log, partition_log, workspace_settings
from nudgeflow.store.consent_records import CONSENT_TRAITS
from nudgeflow.store.group_commit import GroupCommitter
from nudgeflow.store.ingest_writer import write_events
from nudgeflow.store.workspaces import create_workspace

RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)
NOW_MS = 1_767_225_600_000
WAIT = 60
_ids = itertools.count(1)


def record(**fields: Any) -> EventRecord:
    message = {"type": "track", "event": "Product Viewed", "messageId": f"pl-{next(_ids)}", **fields}
    return normalize(parse_message(message), RECEIVED, max_event_bytes=32 * 1024)


def identify(**fields: Any) -> EventRecord:
    message = {"type": "identify", "messageId": f"pl-{next(_ids)}", **fields}
    return normalize(parse_message(message), RECEIVED, max_event_bytes=32 * 1024)


@pytest.fixture
def db(private_database_url: str) -> Iterator[Any]:
    engine = database.create_db_engine(private_database_url, sqlite_synchronous="NORMAL")
    yield engine
    engine.dispose()


def workspace(db: Any) -> str:
    with db.begin() as conn:
        return create_workspace(conn, "partlog", NOW_MS).workspace_id


def heads(db: Any) -> dict[int, int]:
    with db.connect() as conn:
        return partition_log.heads(conn)


def logged_rows(db: Any, workspace_id: str) -> list[Any]:
    with db.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT seq, profile_id, partition, part_offset, message_id FROM events"
                    " WHERE workspace_id = :w ORDER BY seq"
                ),
                {"w": workspace_id},
            )
        )


def assert_dense_in_commit_order(db: Any, before: dict[int, int], rows: list[Any]) -> None:
    """The rows' offsets continue each partition's head from `before`, one by one, in seq
    order (one writer at a time here: seq order is commit order), up to the head now."""
    by_partition: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        by_partition[row.partition].append(row.part_offset)
    after = heads(db)
    for p, offsets in by_partition.items():
        assert offsets == list(range(before[p] + 1, before[p] + 1 + len(offsets))), p
        assert after[p] == before[p] + len(offsets)
    assert {p for p in after if after[p] != before[p]} == set(by_partition)


def test_the_heads_are_the_default_partitions_from_zero_and_take_offsets_locks_in_order(db: Any) -> None:
    with db.begin() as conn:
        start = partition_log.heads(conn)
        assert sorted(start) == list(range(DEFAULT_PARTITIONS))
        first = partition_log.take_offsets(conn, {9: 3, 2: 1, 40: 0})
        assert first == {2: start[2] + 1, 9: start[9] + 1, 40: start[40] + 1}
        assert partition_log.head(conn, 9) == start[9] + 3
        assert partition_log.head(conn, 40) == start[40]  # a count of 0 only locks the row
        with pytest.raises(partition_log.UnknownPartition):
            partition_log.take_offsets(conn, {DEFAULT_PARTITIONS: 1})


def test_ingest_gives_dense_offsets_in_each_partition_and_the_persons_partition(db: Any) -> None:
    ws = workspace(db)
    before = heads(db)
    with db.begin() as conn:
        write_events(conn, ws, [record(userId=f"u{i % 40}") for i in range(200)], NOW_MS)
    with db.begin() as conn:
        write_events(conn, ws, [record(anonymousId=f"a{i}") for i in range(30)], NOW_MS)
    rows = logged_rows(db, ws)
    assert len(rows) == 230
    assert all(r.partition == partition_of(ws, r.profile_id) for r in rows)
    assert_dense_in_commit_order(db, before, rows)
    # A repeat of a message id is not stored again, and takes no offset.
    again = heads(db)
    with db.begin() as conn:
        write_events(conn, ws, [record(userId="u1", messageId=rows[0].message_id)], NOW_MS)
    assert heads(db) == again
    # read gives a partition's events in offset order.
    p = rows[0].partition
    with db.connect() as conn:
        read = partition_log.read(conn, p, before[p], 1000)
    mine = [r for r in rows if r.partition == p]
    assert [(r[0], r[1]) for r in read] == [(r.part_offset, r.seq) for r in mine]


def test_a_group_commit_over_many_workspaces_takes_its_offsets_once_and_densely(db: Any) -> None:
    a, b = workspace(db), workspace(db)
    before = heads(db)
    committer = GroupCommitter(db, VirtualClock())
    committer.start()
    try:
        gate_in, gate_out = threading.Event(), threading.Event()

        def hold(_conn: Connection) -> None:
            gate_in.set()
            assert gate_out.wait(WAIT)

        held = committer.submit_job(hold)
        assert gate_in.wait(WAIT)
        # Queued behind the gate: both land in one commit.
        futures = [
            committer.submit_events(a, [record(userId=f"x{i}") for i in range(20)]),
            committer.submit_events(b, [record(userId=f"y{i}") for i in range(20)]),
        ]
        gate_out.set()
        held.result(WAIT)
        for f in futures:
            f.result(WAIT)
    finally:
        committer.stop()
    rows = sorted([*logged_rows(db, a), *logged_rows(db, b)], key=lambda r: r.seq)
    assert len(rows) == 40
    assert_dense_in_commit_order(db, before, rows)


def test_appended_events_are_logged_and_the_engines_own_segment_events_are_not(db: Any) -> None:
    ws = workspace(db)
    before = heads(db)
    rows = [
        event_log.event_row(ws, f"prf_{i}", None, "Message Delivered", f"delivered-{ws}-{i}", {"k": i}, NOW_MS)
        for i in range(12)
    ]
    with db.begin() as conn:
        event_log.append_events(conn, rows[:5])
        event_log.append_events(conn, rows[5:])
    own = event_log.event_row(
        ws, "prf_1", None, SEGMENT_ENTERED, f"{OWN_SEGMENT_PREFIX}{ws}", {"segment_id": "s"}, NOW_MS
    )
    with db.begin() as conn:
        event_log.append_events(conn, [own], logged=False)
    found = logged_rows(db, ws)
    assert [r.message_id for r in found] == [*(r[1] for r in rows), own[1]]
    assert (found[-1].partition, found[-1].part_offset) == (None, None)
    assert all(r.partition == partition_of(ws, r.profile_id) for r in found[:-1])
    assert_dense_in_commit_order(db, before, found[:-1])
    # In an `appending` scope they are inserted at its end, all at once.
    with db.begin() as conn, event_log.appending(conn):
        late = event_log.event_row(ws, "prf_z", None, "Clicked", f"late-{ws}", {}, NOW_MS)
        event_log.append_events(conn, [late])
        assert event_log.event_exists(conn, ws, late[1])  # gathered, inserted at the end
        assert conn.execute(text("SELECT count(*) FROM events WHERE message_id = :m"), {"m": late[1]}).scalar() == 0
    with db.connect() as conn:
        assert event_log.event_exists(conn, ws, late[1])


def test_an_identify_that_flips_a_consent_trait_logs_the_consent_event_in_the_same_take(db: Any) -> None:
    ws = workspace(db)
    with db.begin() as conn:
        workspace_settings.set_section(
            conn, ws, CONSENT_TRAITS, {"newsletter": {"channel": "email", "topic": "news"}}, NOW_MS
        )
    before = heads(db)
    with db.begin() as conn:
        write_events(conn, ws, [identify(userId="ada", traits={"newsletter": True})], NOW_MS)
    found = logged_rows(db, ws)
    assert len(found) == 2, found  # the identify and its Consent Updated
    assert_dense_in_commit_order(db, before, found)


def merge_row(db: Any, ws: str, source: str) -> Any:
    with db.connect() as conn:
        return conn.execute(
            text("SELECT into_profile_id, from_partition, from_offset FROM profile_merges WHERE from_profile_id = :s"),
            {"s": source},
        ).one()


def profile_of(db: Any, ws: str, key: str) -> str:
    with db.connect() as conn:
        return str(
            conn.execute(
                text("SELECT profile_id FROM identities WHERE workspace_id = :w AND key = :k"), {"w": ws, "k": key}
            ).scalar_one()
        )


def test_a_merge_records_where_the_merged_away_profiles_events_end_and_leaves_them_to_the_fold(db: Any) -> None:
    ws = workspace(db)
    with db.begin() as conn:
        write_events(
            conn, ws, [record(userId="ada"), record(anonymousId="anon-1"), record(anonymousId="anon-1")], NOW_MS
        )
    ada, anon = profile_of(db, ws, "u:ada"), profile_of(db, ws, "a:anon-1")
    source_rows = [r for r in logged_rows(db, ws) if r.profile_id == anon]
    before = heads(db)
    with db.begin() as conn:
        write_events(conn, ws, [identify(userId="ada", anonymousId="anon-1")], NOW_MS)
    into, from_partition, from_offset = merge_row(db, ws, anon)
    assert (into, from_partition) == (ada, partition_of(ws, anon))
    assert from_offset == before[from_partition]  # the last offset given there when it merged
    assert from_offset >= max(r.part_offset for r in source_rows)
    # Ingest left the events where they are; the fold re-points them, keeping their offsets.
    assert [r for r in logged_rows(db, ws) if r.profile_id == anon] == source_rows
    with db.begin() as conn:
        assert engine_state.merged_into(conn, [anon, ada]) == {anon: (ada, from_partition, from_offset)}
        engine_state.move_merged(conn, anon, ada)
        assert engine_state.merged_into(conn, [ada]) == {}
    moved = {r.seq: r for r in logged_rows(db, ws)}
    for r in source_rows:
        assert (moved[r.seq].profile_id, moved[r.seq].partition, moved[r.seq].part_offset) == (
            ada,
            r.partition,
            r.part_offset,
        )


def test_a_later_merge_into_the_same_person_keeps_the_older_rows_offsets(db: Any) -> None:
    ws = workspace(db)
    with db.begin() as conn:
        write_events(conn, ws, [record(anonymousId="old-device"), record(userId="bo")], NOW_MS)
    old = profile_of(db, ws, "a:old-device")
    with db.begin() as conn:
        write_events(conn, ws, [record(anonymousId="laptop")], NOW_MS)
    laptop = profile_of(db, ws, "a:laptop")
    with db.begin() as conn:
        write_events(conn, ws, [identify(userId="bo", anonymousId="old-device")], NOW_MS)
    first = merge_row(db, ws, old)
    with db.begin() as conn:
        write_events(conn, ws, [identify(userId="bo", anonymousId="laptop")], NOW_MS)
    assert merge_row(db, ws, old) == first
    assert merge_row(db, ws, laptop)[1] == partition_of(ws, laptop)


def test_forward_moves_one_event_to_a_new_offset_of_another_partition(db: Any) -> None:
    ws = workspace(db)
    with db.begin() as conn:
        write_events(conn, ws, [record(userId="cy")], NOW_MS)
    [row] = logged_rows(db, ws)
    target = (row.partition + 1) % DEFAULT_PARTITIONS
    with db.begin() as conn:
        offset = partition_log.forward(conn, row.seq, "prf_elsewhere", target)
        assert offset == partition_log.head(conn, target)
    [moved] = logged_rows(db, ws)
    assert (moved.profile_id, moved.partition, moved.part_offset) == ("prf_elsewhere", target, offset)


def test_claim_due_timers_of_one_partition(db: Any) -> None:
    ws = workspace(db)
    people = [f"{ws}-t{i}" for i in range(20)]
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO timers (profile_id, key, workspace_id, due_at_ms, payload, partition)"
                " VALUES (:p, 'k', :w, 5, '{}', :part)"
            ),
            [{"p": p, "w": ws, "part": partition_of(ws, p)} for p in people],
        )
    p = partition_of(ws, people[0])
    with db.begin() as conn:
        claimed = engine_state.claim_due_timers(conn, 10, 1000, partition=p)
        assert {r[0] for r in claimed} == {x for x in people if partition_of(ws, x) == p}
        everyone = {r[0] for r in engine_state.claim_due_timers(conn, 10, 100_000)}
        assert set(people) <= everyone
        conn.execute(text("DELETE FROM timers WHERE workspace_id = :w"), {"w": ws})


def test_two_transactions_on_one_partition_become_visible_in_offset_order(db: Any) -> None:
    """PostgreSQL: the second writer waits for the first's head lock, so a reader never sees
    offset k+1 without k, whichever transaction inserted first."""
    if db.dialect.name != "postgresql":
        pytest.skip("one SQLite writer at a time: there is no second transaction to order")
    ws = workspace(db)
    person = "prf_same"
    p = partition_of(ws, person)

    def row(n: int) -> tuple[Any, ...]:
        return event_log.event_row(ws, person, None, "Opened", f"open-{ws}-{n}", {}, NOW_MS)

    def visible() -> list[int]:
        with db.connect() as conn:
            return [int(r[0]) for r in partition_log.read(conn, p, 0, 100_000) if r[3] == person]

    first = db.connect()
    tx1 = first.begin()
    event_log.append_events(first, [row(1)])
    k = partition_log.head(first, p)

    # A second writer cannot take an offset in the partition while the first is open.
    with db.connect() as second, pytest.raises(OperationalError), second.begin():
        second.exec_driver_sql("SET LOCAL lock_timeout = '100ms'")
        event_log.append_events(second, [row(2)])
    assert visible() == []

    done = threading.Event()
    errors: list[BaseException] = []

    def write_second() -> None:
        try:
            with db.begin() as conn:
                event_log.append_events(conn, [row(3)])
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write_second)
    thread.start()
    # Wait (bounded) until the second writer is blocked on the head's lock.
    with db.connect() as watcher:
        for _ in range(600):
            waiting = watcher.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE '%%partition_heads%%'"
            ).scalar()
            if waiting:
                break
            done.wait(0.05)
        else:
            pytest.fail("the second writer never waited for the head's lock")
    assert not done.is_set() and visible() == []
    tx1.commit()
    first.close()
    assert done.wait(WAIT) and not errors, errors
    thread.join(WAIT)
    assert visible() == [k, k + 1]
