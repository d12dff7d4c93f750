"""Bulk import of Segment-shaped JSON Lines, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console
from sqlalchemy import func, select

from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.ingest.importer import ImportReport, UnknownWriteKey, import_file
from nudgeflow.store.profiles import count_summary, get_profile, resolve_profile_id
from nudgeflow.store.schema import events
from tests.support import make_workspace


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, force_terminal=False, color_system=None), out


def _jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_bytes(b"".join((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines))
    return path


def _import(engine: Any, path: str, key: str, batch_size: int = 1000) -> tuple[ImportReport, str]:
    console, out = _console()
    report = import_file(engine, path, key, batch_size=batch_size, console=console)
    return report, out.getvalue()


def _stored(engine: Any, workspace_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(events).where(events.c.workspace_id == workspace_id)
            ).scalar_one()
        )


GOOD: list[dict[str, Any]] = [
    {
        "type": "track",
        "event": "Product Viewed",
        "anonymousId": "anon-1",
        "messageId": "m-1",
        "properties": {"product_id": "p1", "sku": "SKU-1", "price": 19.5},
        "timestamp": "2025-03-01T10:00:00Z",
    },
    {
        "type": "identify",
        "anonymousId": "anon-1",
        "userId": "user-1",
        "traits": {"email": "ada@example.com", "first_name": "Ada"},
        "timestamp": "2025-03-01T10:01:00Z",
    },
    {"type": "page", "userId": "user-1", "name": "Checkout", "timestamp": "2025-03-01T10:02:00Z"},
    {"type": "screen", "userId": "user-1", "name": "Cart", "timestamp": "2025-03-01T10:03:00Z"},
    {"type": "group", "userId": "user-1", "groupId": "acme", "timestamp": "2025-03-01T10:04:00Z"},
    {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-1",
        "properties": {"order_id": "o1", "revenue": 19.5, "currency": "USD"},
        "timestamp": "2025-03-01T10:05:00Z",
    },
    {"type": "alias", "previousId": "old-id", "userId": "user-2", "timestamp": "2025-03-01T10:06:00Z"},
]


def test_good_file_is_imported_with_history_times_and_identity(engine: Any, tmp_path: Path) -> None:
    ws = make_workspace(engine)
    path = _jsonl(tmp_path / "events.jsonl", GOOD)

    report, output = _import(engine, str(path), ws.write_key, batch_size=3)

    assert (report.lines, report.imported, report.duplicates, report.bad_lines) == (7, 7, 0, [])
    assert _stored(engine, ws.workspace_id) == 7
    assert "imported" in output and "duplicates skipped" in output and "bad lines" in output
    with engine.connect() as conn:
        summary = count_summary(conn, ws.workspace_id)
        assert summary["events_by_type"] == {"track": 2, "identify": 1, "page": 1, "screen": 1, "group": 1, "alias": 1}
        # The anonymous browsing was merged into the person who identified.
        pid = resolve_profile_id(conn, ws.workspace_id, "anon-1")
        assert pid is not None and pid == resolve_profile_id(conn, ws.workspace_id, "user-1")
        profile = get_profile(conn, ws.workspace_id, pid)
        assert profile is not None
        assert profile["traits"]["email"] == "ada@example.com"
        assert profile["event_count"] == 6
        # Historical time is kept as it was, not moved to the time of the import.
        first = conn.execute(select(events.c.timestamp_ms).where(events.c.message_id == "m-1")).scalar_one()
    assert first == 1740823200000


def test_bad_lines_are_reported_with_number_and_reason_and_the_rest_imported(engine: Any, tmp_path: Path) -> None:
    ws = make_workspace(engine)
    lines: list[Any] = [
        GOOD[0],  # 1
        b"{not json",  # 2
        b"",  # 3 blank: skipped, not bad
        {"type": "track", "userId": "u"},  # 4 no event name
        {"type": "track", "event": "Signed Up"},  # 5 no ids
        {"type": "teleport", "userId": "u"},  # 6 unknown type
        b"[1, 2, 3]",  # 7 not an object
        {"type": "track", "event": "X", "userId": 5.5, "timestamp": "yesterday"},  # 8 bad timestamp
        {"type": "track", "event": "Big", "userId": "u", "properties": {"blob": "x" * 40_000}},  # 9 too big
        b"   ",  # 10 blank
        GOOD[5],  # 11
        {"type": "identify", "userId": "u9", "traits": {"timezone": "Mars/Olympus_Mons"}},  # 12 imported, warned
    ]
    path = _jsonl(tmp_path / "mixed.jsonl", lines)

    report, output = _import(engine, str(path), ws.write_key, batch_size=2)

    reasons = {bad.line: bad.reason for bad in report.bad_lines}
    assert sorted(reasons) == [2, 4, 5, 6, 7, 8, 9]
    assert reasons[2].startswith("invalid JSON")
    assert "event" in reasons[4] and "required" in reasons[4].lower()
    assert "userId or anonymousId" in reasons[5]
    assert "type" in reasons[6]
    assert "JSON object" in reasons[7]
    assert "timestamp" in reasons[8]
    assert "bytes" in reasons[9] and "limit" in reasons[9]
    for number in reasons:
        assert f"line {number}:" in output
    assert report.lines == 10 and report.imported == 3
    assert _stored(engine, ws.workspace_id) == 3
    assert [w.line for w in report.trait_warnings] == [12]
    assert "timezone" in report.trait_warnings[0].reason
    assert "line 12: warning:" in output


def test_a_received_at_outside_the_calendar_in_utc_is_a_bad_line_not_the_end_of_the_import(
    engine: Any, tmp_path: Path
) -> None:
    # 0001-01-01 at +14:00 is a valid ISO date-time whose UTC instant falls before year 1:
    # converting it raised OverflowError, which ended the import with a traceback and lost
    # the lines read but not yet written.
    ws = make_workspace(engine)
    early = {"type": "track", "event": "X", "userId": "u", "receivedAt": "0001-01-01T00:00:00+14:00"}
    late = {"type": "track", "event": "X", "userId": "u", "receivedAt": "9999-12-31T23:59:59-14:00"}
    sent = {"type": "track", "event": "X", "userId": "u", "sentAt": "0001-01-01T00:00:00+14:00"}
    path = _jsonl(tmp_path / "calendar.jsonl", [GOOD[0], early, late, sent, GOOD[5]])

    report, output = _import(engine, str(path), ws.write_key)

    assert [(bad.line, bad.reason) for bad in report.bad_lines] == [
        (2, "invalid event: receivedAt: out of range once converted to UTC"),
        (3, "invalid event: receivedAt: out of range once converted to UTC"),
        (4, "invalid event: sentAt: out of range once converted to UTC"),
    ]
    assert "line 2:" in output and "line 4:" in output
    assert report.imported == 2 and _stored(engine, ws.workspace_id) == 2


def test_a_line_far_over_the_limit_is_reported_without_being_held_in_memory(engine: Any, tmp_path: Path) -> None:
    # A file with a stray 40 MB line (a binary, a file with no newlines): it was read whole
    # into memory before being refused; it is now skipped a chunk at a time.
    import tracemalloc

    ws = make_workspace(engine)
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as out:
        out.write(orjson.dumps(GOOD[0]) + b"\n")
        out.write(b'{"type": "track", "event": "X", "userId": "u", "properties": {"blob": "')
        for _ in range(40):
            out.write(b"x" * (1 << 20))
        out.write(b'"}}\n')
        out.write(orjson.dumps(GOOD[5]) + b"\n")
    tracemalloc.start()
    try:
        report, output = _import(engine, str(path), ws.write_key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak:,} bytes"
    [bad] = report.bad_lines
    assert bad.line == 2 and "the limit is" in bad.reason and "line 2:" in output
    assert (report.lines, report.imported) == (3, 2)
    assert _stored(engine, ws.workspace_id) == 2


def test_importing_twice_imports_nothing_twice(engine: Any, tmp_path: Path) -> None:
    ws = make_workspace(engine)
    # No messageId on most lines: the id derived from the content keeps them unique.
    lines = [*GOOD, GOOD[2]]  # and one line repeated within the file
    path = _jsonl(tmp_path / "twice.jsonl", lines)

    first, _ = _import(engine, str(path), ws.write_key, batch_size=4)
    second, output = _import(engine, str(path), ws.write_key, batch_size=3)

    assert (first.imported, first.duplicates) == (7, 1)
    assert (second.imported, second.duplicates) == (0, 8)
    assert _stored(engine, ws.workspace_id) == 7
    assert "duplicates skipped" in output


def test_standard_input(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = make_workspace(engine)
    data = b"".join(orjson.dumps(m) + b"\n" for m in GOOD[:3]) + b"oops\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    report, output = _import(engine, "-", ws.write_key)

    assert report.imported == 3
    assert [b.line for b in report.bad_lines] == [4]
    assert "stdin" in output
    assert _stored(engine, ws.workspace_id) == 3


def test_unknown_write_key_is_a_clear_error_that_stores_nothing(engine: Any, tmp_path: Path) -> None:
    ws = make_workspace(engine)
    path = _jsonl(tmp_path / "events.jsonl", GOOD)
    secret = "wk_this_is_not_a_key_of_any_workspace"

    with pytest.raises(UnknownWriteKey) as caught:
        _import(engine, str(path), secret)

    assert "unknown write key" in str(caught.value)
    assert secret not in str(caught.value)
    assert _stored(engine, ws.workspace_id) == 0


def test_workspaces_stay_apart(engine: Any, tmp_path: Path) -> None:
    a = make_workspace(engine, "a")
    b = make_workspace(engine, "b")
    path = _jsonl(tmp_path / "events.jsonl", GOOD)

    _import(engine, str(path), a.write_key)
    report, _ = _import(engine, str(path), b.write_key)

    # The same messageIds in another workspace are not duplicates there.
    assert (report.imported, report.duplicates) == (7, 0)
    assert _stored(engine, a.workspace_id) == _stored(engine, b.workspace_id) == 7


def _refusing(real: Any, error: type[Exception]) -> Any:
    """write_events, except that the database refuses any batch holding userId "poison".

    Fault injection: no real input makes the writer fail any more, but the importer must
    still cope when the database says no.
    """

    def write(conn: Any, workspace_id: str, records: list[Any], now_ms: int) -> Any:
        if any(r.user_id == "poison" for r in records):
            raise error("INSERT INTO events ...", {}, Exception("value refused by the database"))
        return real(conn, workspace_id, records, now_ms)

    return write


def test_a_line_the_database_refuses_is_reported_and_its_batch_neighbours_kept(
    engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import IntegrityError

    from nudgeflow.ingest import importer

    ws = make_workspace(engine)
    monkeypatch.setattr(importer, "write_events", _refusing(importer.write_events, IntegrityError))
    lines: list[Any] = [GOOD[0], {"type": "track", "event": "Boom", "userId": "poison"}, GOOD[5], GOOD[6]]
    path = _jsonl(tmp_path / "poison.jsonl", lines)

    report, output = _import(engine, str(path), ws.write_key, batch_size=10)

    assert [b.line for b in report.bad_lines] == [2]
    assert "refused" in report.bad_lines[0].reason
    assert "line 2:" in output
    assert report.imported == 3 and _stored(engine, ws.workspace_id) == 3


def test_a_database_that_goes_away_stops_the_import_keeping_what_was_committed(
    engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from nudgeflow.ingest import importer

    ws = make_workspace(engine)
    monkeypatch.setattr(importer, "write_events", _refusing(importer.write_events, OperationalError))
    lines: list[Any] = [GOOD[0], GOOD[5], {"type": "track", "event": "Boom", "userId": "poison"}, GOOD[6]]
    path = _jsonl(tmp_path / "gone.jsonl", lines)

    with pytest.raises(importer.ImportFailed) as caught:
        _import(engine, str(path), ws.write_key, batch_size=2)

    assert "line 3" in str(caught.value) and "again" in str(caught.value)
    assert _stored(engine, ws.workspace_id) == 2


def test_alias_whose_previous_id_is_its_own_anonymous_id_merges_once(engine: Any, tmp_path: Path) -> None:
    """analytics.js sends alias with previousId equal to the anonymousId it also carries."""
    ws = make_workspace(engine)
    lines = [
        {"type": "track", "event": "Product Viewed", "anonymousId": "anon-7", "timestamp": "2025-03-01T10:00:00Z"},
        {
            "type": "identify",
            "userId": "user-7",
            "traits": {"email": "seven@example.com"},
            "timestamp": "2025-03-01T10:01:00Z",
        },
        {
            "type": "alias",
            "userId": "user-7",
            "previousId": "anon-7",
            "anonymousId": "anon-7",
            "timestamp": "2025-03-01T10:02:00Z",
        },
    ]
    path = _jsonl(tmp_path / "alias.jsonl", lines)

    report, _ = _import(engine, str(path), ws.write_key)

    assert report.bad_lines == [] and report.imported == 3 and report.merges == 1
    with engine.connect() as conn:
        pid = resolve_profile_id(conn, ws.workspace_id, "anon-7")
        assert pid is not None and pid == resolve_profile_id(conn, ws.workspace_id, "user-7")
        profile = get_profile(conn, ws.workspace_id, pid)
    assert profile is not None and profile["event_count"] == 3 and len(profile["merged_from"]) == 1


def test_an_operators_import_keeps_nudgeflows_own_event_ids(engine: Any, tmp_path: Path) -> None:
    """HTTP ingest refuses messageIds starting with `nudgeflow:` (the events that record a
    person's choices use them); an import, run with database access, takes them as they were
    exported, so an unsubscribe carried over from another deployment still counts."""
    ws = make_workspace(engine)
    own = {
        "type": "track",
        "event": "Unsubscribed",
        "userId": "user-1",
        "messageId": "nudgeflow:msg-key:unsubscribed:*:1740823200000",
        "properties": {"topic": "*", "method": "one_click"},
        "timestamp": "2025-03-01T10:00:00Z",
    }
    report, _ = _import(engine, str(_jsonl(tmp_path / "own.jsonl", [own])), ws.write_key)
    assert (report.imported, report.bad_lines) == (1, [])
    with engine.connect() as conn:
        assert (
            conn.execute(select(events.c.message_id).where(events.c.workspace_id == ws.workspace_id)).scalar_one()
            == own["messageId"]
        )


def test_a_timestamp_far_after_the_import_is_stored_at_its_receipt_and_reported(engine: Any, tmp_path: Path) -> None:
    """History is in the past: a line dated 9999 (or 2200) is kept, stored at its receivedAt
    (or the import's time when that is as far off), its own time kept as originalTimestamp."""
    ws = make_workspace(engine)
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    received = "2025-03-01T10:00:00Z"
    lines: list[Any] = [
        {"type": "track", "event": "A", "userId": "u", "messageId": "i1", "timestamp": "9999-12-31T00:00:00Z"},
        {
            "type": "track",
            "event": "A",
            "userId": "u",
            "messageId": "i2",
            "timestamp": "2200-01-01T00:00:00Z",
            "receivedAt": received,
        },
        {
            "type": "track",
            "event": "A",
            "userId": "u",
            "messageId": "i3",
            "timestamp": "2200-01-01T00:00:00Z",
            "receivedAt": "2200-01-01T00:00:01Z",
        },
        {"type": "track", "event": "A", "userId": "u", "messageId": "i4", "timestamp": "0001-01-01T00:00:00Z"},
        {"type": "track", "event": "A", "userId": "u", "messageId": "i5", "timestamp": "2026-11-29T11:00:00Z"},
    ]
    path = _jsonl(tmp_path / "future.jsonl", lines)
    console, out = _console()
    report = import_file(engine, str(path), ws.write_key, console=console, clock=VirtualClock(now))

    assert (report.imported, report.bad_lines) == (5, [])
    assert [w.line for w in report.clamped] == [1, 2, 3]
    assert "timestamp: 9999-12-31T00:00:00+00:00 is more than 1 day after the import ran" in report.clamped[0].reason
    assert "line 1: warning:" in out.getvalue() and "future timestamps clamped" in out.getvalue()
    with engine.connect() as conn:
        rows = {
            r.message_id: r
            for r in conn.execute(
                select(events.c.message_id, events.c.timestamp_ms, events.c.payload).where(
                    events.c.workspace_id == ws.workspace_id
                )
            )
        }
    assert rows["i1"].timestamp_ms == rows["i3"].timestamp_ms == to_ms(now)
    assert rows["i2"].timestamp_ms == to_ms(datetime(2025, 3, 1, 10, tzinfo=UTC))
    assert rows["i4"].timestamp_ms == to_ms(datetime(1, 1, 1, tzinfo=UTC))
    assert rows["i5"].timestamp_ms == to_ms(now + timedelta(hours=23))
    assert orjson.loads(rows["i2"].payload)["originalTimestamp"].startswith("2200-01-01T00:00:00")
