"""Device tokens the Segment way: context.device.token on events, through write_events, on
SQLite and on PostgreSQL (each test in its own workspace)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from nudgeflow.model.events import EventRecord, normalize, parse_message
from nudgeflow.store.device_ingest import normalize_device
from nudgeflow.store.ingest_writer import write_events
from nudgeflow.store.profiles import resolve_profile_id
from nudgeflow.store.push_targets import PushTargetError, targets_of
from nudgeflow.store.schema import device_tokens, events
from nudgeflow.store.workspaces import create_workspace

RECEIVED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW_MS = 1_767_268_800_000
APNS_TOKEN = "a0b1c2d3e4f5" * 5 + "a0b1"  # 64 hex characters, as iOS gives them
FCM_TOKEN = "dGVzdC1pbnN0YW5jZQ:APA91bH-" + "x" * 120
_ids = itertools.count(1)


def record(type_: str, device: dict[str, Any] | None = None, app: str | None = None, **fields: Any) -> EventRecord:
    message: dict[str, Any] = {"type": type_, "messageId": f"dev-{next(_ids)}", **fields}
    if type_ == "track":
        message.setdefault("event", "App Opened")
    context: dict[str, Any] = {}
    if device is not None:
        context["device"] = device
    if app is not None:
        context["app"] = {"name": "Shop", "namespace": app}
    if context:
        message["context"] = context
    return normalize(parse_message(message), RECEIVED, max_event_bytes=32 * 1024)


def write(engine: Any, ws: str, *records: EventRecord, now_ms: int = NOW_MS) -> None:
    with engine.begin() as conn:
        write_events(conn, ws, list(records), now_ms)


def rows(engine: Any, ws: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(device_tokens).where(device_tokens.c.workspace_id == ws).order_by(device_tokens.c.token)
            )
        )


def pid(engine: Any, ws: str, ref: str) -> str:
    with engine.connect() as conn:
        found = resolve_profile_id(conn, ws, ref)
    assert found is not None
    return found


def test_ios_and_android_tokens_join_the_events_profile(engine: Any, wsid: str) -> None:
    write(
        engine,
        wsid,
        record(
            "identify",
            userId="ada",
            traits={"email": "ada@example.org"},
            device={"id": "d1", "type": "ios", "token": APNS_TOKEN, "model": "iPhone15,2"},
            app="com.example.shop",
        ),
        record("track", userId="ben", device={"type": "android", "token": FCM_TOKEN}, app="com.example.shop.android"),
    )
    found = {r.token: r for r in rows(engine, wsid)}
    assert set(found) == {APNS_TOKEN, FCM_TOKEN}
    ios, android = found[APNS_TOKEN], found[FCM_TOKEN]
    assert (ios.profile_id, ios.provider, ios.platform, ios.app_id) == (
        pid(engine, wsid, "ada"),
        "apns",
        "ios",
        "com.example.shop",
    )
    assert (android.profile_id, android.provider, android.platform) == (pid(engine, wsid, "ben"), "fcm", "android")
    with engine.connect() as conn:
        targets = targets_of(conn, wsid, pid(engine, wsid, "ada"))
    assert [(t.provider, t.address, t.app_id) for t in targets] == [("apns", APNS_TOKEN, "com.example.shop")]


def test_a_bad_token_is_skipped_and_the_event_kept(engine: Any, wsid: str, caplog: pytest.LogCaptureFixture) -> None:
    write(
        engine,
        wsid,
        record("track", userId="ada", device={"type": "windows", "token": "abc123abc123"}),
        record("track", userId="ada", device={"type": "ios", "token": "not hex at all"}),
        record("track", userId="ada", device={"type": "ios", "token": "zz" * 32}),
        record("track", userId="ada", device={"type": "android", "token": 12345}),
        record("track", userId="ada", device={"type": "android", "token": "x" * 600}),
    )
    assert rows(engine, wsid) == []
    with engine.connect() as conn:
        stored = conn.execute(
            select(func.count()).select_from(events).where(events.c.workspace_id == wsid)
        ).scalar_one()
    assert stored == 5
    skipped = [r for r in caplog.records if r.getMessage() == "device token skipped"]
    assert len(skipped) == 5
    assert all("zz" * 32 not in str(r.__dict__) for r in skipped)  # the token itself is never logged


def test_a_token_moves_to_the_person_who_registers_it_last(engine: Any, wsid: str) -> None:
    write(
        engine, wsid, record("track", userId="ada", device={"type": "ios", "token": APNS_TOKEN}, app="com.example.shop")
    )
    # The phone is handed over and the app re-registers for another person; the event has no app namespace.
    write(engine, wsid, record("track", userId="cy", device={"type": "ios", "token": APNS_TOKEN}), now_ms=NOW_MS + 1000)
    [row] = rows(engine, wsid)
    assert row.profile_id == pid(engine, wsid, "cy")
    assert row.app_id == "com.example.shop"  # kept: it is the APNs topic
    assert (row.created_at_ms, row.updated_at_ms) == (NOW_MS, NOW_MS + 1000)


def test_a_token_on_every_event_is_written_once(engine: Any, wsid: str) -> None:
    device = {"type": "android", "token": FCM_TOKEN}
    write(engine, wsid, *[record("track", userId="ada", device=device) for _ in range(50)])
    write(engine, wsid, *[record("track", userId="ada", device=device) for _ in range(5)], now_ms=NOW_MS + 5000)
    [row] = rows(engine, wsid)
    assert row.updated_at_ms == NOW_MS  # unchanged: not rewritten


def test_an_anonymous_devices_token_follows_the_person_who_logs_in(engine: Any, wsid: str) -> None:
    write(engine, wsid, record("track", anonymousId="anon-1", device={"type": "ios", "token": APNS_TOKEN}))
    anon = pid(engine, wsid, "anon-1")
    assert rows(engine, wsid)[0].profile_id == anon
    write(engine, wsid, record("identify", userId="ada", anonymousId="anon-1"))
    assert rows(engine, wsid)[0].profile_id == pid(engine, wsid, "ada")


def test_the_same_token_in_two_workspaces(engine: Any, wsid: str) -> None:
    with engine.begin() as conn:
        other = create_workspace(conn, "other", NOW_MS).workspace_id
    write(engine, wsid, record("track", userId="ada", device={"type": "ios", "token": APNS_TOKEN}))
    write(engine, other, record("track", userId="ada", device={"type": "ios", "token": APNS_TOKEN}))
    assert len(rows(engine, wsid)) == len(rows(engine, other)) == 1


def test_normalize_device() -> None:
    assert normalize_device(APNS_TOKEN.upper(), "iOS") == normalize_device(APNS_TOKEN, "ios")  # one device, one row
    assert normalize_device(FCM_TOKEN, "ios").provider == "fcm"  # a Firebase iOS app's token
    assert normalize_device(APNS_TOKEN, provider="FCM").provider == "fcm"
    assert normalize_device(" " + FCM_TOKEN + " ", "Android", app_id=" com.x ") == normalize_device(
        FCM_TOKEN, "android", app_id="com.x"
    )
    for bad, kw in [
        ("", {"platform": "ios"}),
        ("abc/def", {"platform": "android"}),
        ("ab" * 10, {"platform": "blackberry"}),
        ("ab" * 10, {"provider": "webpush"}),
        ("xyz-not-hex", {"provider": "apns"}),
    ]:
        with pytest.raises(PushTargetError):
            normalize_device(bad, **kw)
