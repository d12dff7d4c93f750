"""The Segment HTTP Tracking API, spoken over a real socket to a real server.

Every test here runs on SQLite and on PostgreSQL (through the `live`/`settings` fixtures).
"""

from __future__ import annotations

import base64
import gzip
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.settings import Settings
from nudgeflow.store import database
from nudgeflow.store.schema import events, identities, profiles
from nudgeflow.store.workspaces import NewWorkspace
from tests.support import LiveServer, start_server

UTC = UTC
JSON = {"content-type": "application/json"}


# -- helpers ----------------------------------------------------------------------------


def stored(live: LiveServer, workspace_id: str) -> list[Any]:
    with live.state.engine.connect() as conn:
        return list(conn.execute(select(events).where(events.c.workspace_id == workspace_id).order_by(events.c.seq)))


def count(live: LiveServer, workspace_id: str) -> int:
    with live.state.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(events).where(events.c.workspace_id == workspace_id)
            ).scalar_one()
        )


def profile_row(live: LiveServer, workspace_id: str, user_id: str) -> Any:
    """The profile a userId resolved to (traits and trait errors as stored), or None."""
    with live.state.engine.connect() as conn:
        return conn.execute(
            select(profiles).where(profiles.c.workspace_id == workspace_id, profiles.c.user_id == user_id)
        ).first()


def post(client: httpx.Client, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(path, content=content, headers={**JSON, **(headers or {})})


def assert_error(
    response: httpx.Response, status: int, field: str | None = None, index: int | None = None
) -> dict[str, Any]:
    """Every refusal is a JSON object with `code`, `message` and `errors[].field`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]
    if status != 429:
        assert body["errors"], body
        for error in body["errors"]:
            assert isinstance(error["field"], str) and error["field"]
            assert error["message"]
    if field is not None:
        assert body["errors"][0]["field"] == field, body
    if index is not None:
        assert body["errors"][0]["index"] == index, body
        assert f"event {index}" in body["message"]
    elif status != 429:
        assert "index" not in body["errors"][0], body
    return body  # type: ignore[no-any-return]


# -- every endpoint ---------------------------------------------------------------------

SINGLE_CALLS = {
    "track": {"userId": "u1", "event": "Product Viewed", "properties": {"sku": "A-1", "price": 9.5}},
    "identify": {"userId": "u1", "traits": {"email": "ada@example.com", "plan": "pro"}},
    "page": {"anonymousId": "a1", "name": "Pricing", "properties": {"path": "/pricing"}},
    "screen": {"userId": "u1", "name": "Home"},
    "group": {"userId": "u1", "groupId": "acme", "traits": {"name": "Acme"}},
    "alias": {"userId": "u1", "previousId": "a1"},
}


@pytest.mark.parametrize("type_", list(SINGLE_CALLS))
def test_each_single_endpoint_stores_one_event_of_its_type(live: LiveServer, ws: NewWorkspace, type_: str) -> None:
    message_id = f"m-{type_}"
    with live.client(auth=(ws.write_key, "")) as client:
        response = post(client, f"/v1/{type_}", {**SINGLE_CALLS[type_], "messageId": message_id})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    rows = stored(live, ws.workspace_id)
    assert [(r.type, r.message_id) for r in rows] == [(type_, message_id)]
    payload = orjson.loads(rows[0].payload)
    assert payload["type"] == type_
    for key, value in SINGLE_CALLS[type_].items():
        assert payload[key] == value
    if type_ == "track":
        assert rows[0].event == "Product Viewed"
    if type_ in ("page", "screen"):
        assert rows[0].event == SINGLE_CALLS[type_]["name"]
    # What the call did to the person, not only to the log.
    if type_ == "identify":
        assert orjson.loads(profile_row(live, ws.workspace_id, "u1").traits) == SINGLE_CALLS["identify"]["traits"]
    with live.state.engine.connect() as conn:
        linked = dict(
            conn.execute(
                select(identities.c.key, identities.c.profile_id).where(identities.c.workspace_id == ws.workspace_id)
            ).all()
        )
    # The caller's id now leads to the event's profile (an unknown alias previousId is not invented).
    assert linked == {("u:u1" if "userId" in SINGLE_CALLS[type_] else "a:a1"): rows[0].profile_id}


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import"])
def test_batch_and_import_store_every_event(live: LiveServer, ws: NewWorkspace, path: str) -> None:
    batch = [{"type": t, **body, "messageId": f"b-{t}"} for t, body in SINGLE_CALLS.items()]
    with live.client(auth=(ws.write_key, "")) as client:
        response = post(client, path, {"batch": batch})
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    rows = stored(live, ws.workspace_id)
    assert sorted((r.type, r.message_id) for r in rows) == sorted((t, f"b-{t}") for t in SINGLE_CALLS)
    for row in rows:  # each event whole, as sent
        payload = orjson.loads(row.payload)
        assert {k: payload[k] for k in SINGLE_CALLS[row.type]} == SINGLE_CALLS[row.type]
    assert orjson.loads(profile_row(live, ws.workspace_id, "u1").traits) == SINGLE_CALLS["identify"]["traits"]


def test_the_write_key_can_arrive_in_the_body(live: LiveServer, ws: NewWorkspace) -> None:
    with live.client() as client:  # no Authorization header at all
        single = post(client, "/v1/track", {"writeKey": ws.write_key, "userId": "u", "event": "E", "messageId": "s1"})
        batch = post(
            client,
            "/v1/batch",
            {"writeKey": ws.write_key, "batch": [{"type": "track", "userId": "u", "event": "E", "messageId": "b1"}]},
        )
    assert single.status_code == 200, single.text
    assert batch.status_code == 200, batch.text
    rows = stored(live, ws.workspace_id)
    assert {r.message_id for r in rows} == {"s1", "b1"}
    for row in rows:  # a credential is never kept with the data
        assert ws.write_key not in row.payload
        assert "writeKey" not in orjson.loads(row.payload)


def test_basic_auth_with_the_key_as_user_and_an_empty_password(live: LiveServer, ws: NewWorkspace) -> None:
    token = base64.b64encode(f"{ws.write_key}:".encode()).decode()
    with live.client() as client:
        response = post(client, "/v1/track", {"userId": "u", "event": "E"}, {"authorization": f"Basic {token}"})
    assert response.status_code == 200, response.text
    [row] = stored(live, ws.workspace_id)
    assert (row.type, row.event, orjson.loads(row.payload)["userId"]) == ("track", "E", "u")


@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
def test_gzip_encoded_bodies_are_accepted(live: LiveServer, ws: NewWorkspace, path: str) -> None:
    message = {"userId": "u", "event": "Zipped", "messageId": "z1", "properties": {"text": "x" * 5000}}
    body = message if path == "/v1/track" else {"batch": [{"type": "track", **message}]}
    compressed = gzip.compress(orjson.dumps(body))
    assert len(compressed) < 1000
    with live.client(auth=(ws.write_key, "")) as client:
        response = post(client, path, compressed, {"content-encoding": "gzip"})
    assert response.status_code == 200, response.text
    rows = stored(live, ws.workspace_id)
    assert [r.event for r in rows] == ["Zipped"]
    assert orjson.loads(rows[0].payload)["properties"]["text"] == "x" * 5000


def test_text_plain_is_accepted_for_browser_beacons(live: LiveServer, ws: NewWorkspace) -> None:
    with live.client(auth=(ws.write_key, "")) as client:
        response = post(
            client,
            "/v1/track",
            {"userId": "u", "event": "E", "properties": {"note": "café"}},
            {"content-type": "text/plain;charset=UTF-8"},
        )
    assert response.status_code == 200, response.text
    [row] = stored(live, ws.workspace_id)
    assert row.event == "E" and orjson.loads(row.payload)["properties"] == {"note": "café"}


# -- idempotency ------------------------------------------------------------------------


def test_a_repeated_message_id_answers_200_and_is_stored_once(live: LiveServer, ws: NewWorkspace) -> None:
    first = {"userId": "u", "event": "Order Completed", "messageId": "order-1", "properties": {"total": 10}}
    repeat = {**first, "properties": {"total": 99}}  # a retry that differs must not overwrite
    with live.client(auth=(ws.write_key, "")) as client:
        for body in (first, repeat, first):
            response = post(client, "/v1/track", body)
            assert response.status_code == 200, response.text
            assert response.json()["success"] is True
        # The same id again through a batch, twice inside the batch, and once more new.
        batch = [
            {"type": "track", **first},
            {"type": "track", "userId": "u", "event": "E", "messageId": "new-1"},
            {"type": "track", "userId": "u", "event": "E", "messageId": "new-1"},
        ]
        assert post(client, "/v1/batch", {"batch": batch}).status_code == 200
        assert post(client, "/v1/import", {"batch": batch}).status_code == 200
    rows = stored(live, ws.workspace_id)
    assert [r.message_id for r in rows] == ["order-1", "new-1"]
    assert orjson.loads(rows[0].payload)["properties"] == {"total": 10}


def test_concurrent_repeats_of_one_message_are_stored_once(live: LiveServer, ws: NewWorkspace) -> None:
    body = {"userId": "u", "event": "E", "messageId": "raced"}
    with live.client(auth=(ws.write_key, "")) as client, ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: post(client, "/v1/track", body).status_code, range(24)))
    assert statuses == [200] * 24
    assert count(live, ws.workspace_id) == 1


def test_message_ids_are_scoped_to_the_workspace(live: LiveServer, ws: NewWorkspace) -> None:
    other = live.workspace("other")
    body = {"userId": "u", "event": "E", "messageId": "shared-id"}
    for key in (ws.write_key, other.write_key):
        with live.client(auth=(key, "")) as client:
            assert post(client, "/v1/track", body).status_code == 200
    assert count(live, ws.workspace_id) == 1
    assert count(live, other.workspace_id) == 1


def test_messages_without_message_id_each_get_one(live: LiveServer, ws: NewWorkspace) -> None:
    with live.client(auth=(ws.write_key, "")) as client:
        for _ in range(2):
            assert post(client, "/v1/track", {"userId": "u", "event": "E"}).status_code == 200
    rows = stored(live, ws.workspace_id)
    assert len(rows) == 2 and len({r.message_id for r in rows}) == 2
    assert all(orjson.loads(r.payload)["messageId"] == r.message_id for r in rows)


# -- time -------------------------------------------------------------------------------


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def test_device_clock_skew_is_corrected_with_the_servers_receive_time(
    live: LiveServer, ws: NewWorkspace, clock: VirtualClock
) -> None:
    now = clock.set(datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC))
    # The phone's clock is 3 hours behind; the event happened 5 s before the phone sent it.
    device_event = datetime(2026, 11, 28, 8, 59, 55, tzinfo=UTC)
    device_sent = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)
    with live.client(auth=(ws.write_key, "")) as client:
        response = post(
            client,
            "/v1/track",
            {
                "userId": "u",
                "event": "Skewed",
                "messageId": "t1",
                "timestamp": iso(device_event),
                "sentAt": iso(device_sent),
            },
        )
        assert response.status_code == 200, response.text
        # In a batch the sentAt of the batch applies to the messages that have none of their own.
        later = clock.advance(timedelta(minutes=10))
        response = post(
            client,
            "/v1/batch",
            {
                "sentAt": iso(device_sent),
                "batch": [
                    {"type": "track", "userId": "u", "event": "B1", "messageId": "t2", "timestamp": iso(device_event)},
                    {
                        "type": "track",
                        "userId": "u",
                        "event": "B2",
                        "messageId": "t3",
                        "originalTimestamp": iso(device_event - timedelta(seconds=60)),
                        "sentAt": iso(device_sent),
                    },
                    # No time at all: it happened when it arrived.
                    {"type": "track", "userId": "u", "event": "B3", "messageId": "t4"},
                ],
            },
        )
        assert response.status_code == 200, response.text
        # A timestamp without a sentAt is the device's word, kept as sent.
        response = post(
            client,
            "/v1/track",
            {"userId": "u", "event": "Imported", "messageId": "t5", "timestamp": "2025-06-01T10:00:00+02:00"},
        )
        assert response.status_code == 200, response.text

    rows = {r.message_id: r for r in stored(live, ws.workspace_id)}
    assert rows["t1"].timestamp_ms == to_ms(now - timedelta(seconds=5))
    assert rows["t1"].received_at_ms == to_ms(now)
    assert rows["t2"].timestamp_ms == to_ms(later - timedelta(seconds=5))
    assert rows["t3"].timestamp_ms == to_ms(later - timedelta(seconds=65))
    assert rows["t4"].timestamp_ms == rows["t4"].received_at_ms == to_ms(later)
    assert rows["t5"].timestamp_ms == to_ms(datetime(2025, 6, 1, 8, 0, 0, tzinfo=UTC))
    payload = orjson.loads(rows["t1"].payload)
    assert datetime.fromisoformat(payload["timestamp"]) == now - timedelta(seconds=5)
    assert datetime.fromisoformat(payload["receivedAt"]) == now
    assert datetime.fromisoformat(payload["originalTimestamp"]) == device_event
    assert datetime.fromisoformat(payload["sentAt"]) == device_sent


def test_a_timestamp_that_correction_pushes_off_the_calendar_is_refused(live: LiveServer, ws: NewWorkspace) -> None:
    with live.client(auth=(ws.write_key, "")) as client:
        response = post(
            client,
            "/v1/track",
            {"userId": "u", "event": "E", "timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T00:00:00Z"},
        )
        assert_error(response, 400, "timestamp")
        response = post(
            client,
            "/v1/batch",
            {"batch": [{"type": "track", "userId": "u", "event": "E", "timestamp": "9999-12-31T23:59:59-23:00"}]},
        )
        assert_error(response, 400, "batch[0].timestamp", 0)
    assert count(live, ws.workspace_id) == 0


def test_a_timestamp_far_in_the_future_is_stored_at_its_receipt_with_a_warning(
    live: LiveServer, ws: NewWorkspace, clock: VirtualClock
) -> None:
    """A device's 9999-12-31 (or 2200) would sort after every real event for ever; it is
    stored at the time received, the time sent kept as originalTimestamp, and the sender
    told. Other events of the batch, and the far past, are stored as they came."""
    now = clock.set(datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC))
    with live.client(auth=(ws.write_key, "")) as client:
        single = post(
            client, "/v1/track", {"userId": "u", "event": "F", "messageId": "f1", "timestamp": "9999-12-31T00:00:00Z"}
        )
        batch = post(
            client,
            "/v1/batch",
            {
                "batch": [
                    {
                        "type": "track",
                        "userId": "u",
                        "event": "B",
                        "messageId": "f2",
                        "timestamp": "2200-01-01T00:00:00Z",
                    },
                    # Within the day allowed: a device clock a little ahead is kept as it is.
                    {
                        "type": "track",
                        "userId": "u",
                        "event": "B",
                        "messageId": "f3",
                        "timestamp": iso(now + timedelta(hours=23)),
                    },
                    {
                        "type": "track",
                        "userId": "u",
                        "event": "B",
                        "messageId": "f4",
                        "timestamp": "0001-01-01T00:00:00Z",
                    },
                    # sentAt does not make a future time good: the gap is measured on the device.
                    {
                        "type": "track",
                        "userId": "u",
                        "event": "B",
                        "messageId": "f5",
                        "timestamp": "2200-01-01T00:00:00Z",
                        "sentAt": iso(now),
                    },
                ]
            },
        )
    assert single.status_code == 200, single.text
    [warning] = single.json()["warnings"]
    assert warning["field"] == "timestamp"
    assert "9999-12-31T00:00:00+00:00 is more than 1 day after the event was received" in warning["message"]
    assert batch.status_code == 200, batch.text
    assert [(w["field"], w["index"]) for w in batch.json()["warnings"]] == [
        ("batch[0].timestamp", 0),
        ("batch[3].timestamp", 3),
    ]
    rows = {r.message_id: r for r in stored(live, ws.workspace_id)}
    assert rows["f1"].timestamp_ms == rows["f2"].timestamp_ms == rows["f5"].timestamp_ms == to_ms(now)
    assert rows["f3"].timestamp_ms == to_ms(now + timedelta(hours=23))
    assert rows["f4"].timestamp_ms == to_ms(datetime(1, 1, 1, tzinfo=UTC))
    payload = orjson.loads(rows["f1"].payload)
    assert datetime.fromisoformat(payload["timestamp"]) == now
    assert datetime.fromisoformat(payload["originalTimestamp"]) == datetime(9999, 12, 31, tzinfo=UTC)
    # Counted for the operator: three timestamps corrected, none of the events refused.
    metrics = httpx.get(f"{live.url}/metrics").text
    assert 'nudgeflow_events_corrected_total{field="timestamp"} 3.0' in metrics


def test_the_future_limit_is_a_setting(settings: Settings, clock: VirtualClock) -> None:
    now = clock.set(datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC))
    server = start_server(settings.with_(ingest_max_future_seconds=60), clock)
    try:
        ws = server.workspace("future")
        with server.client(auth=(ws.write_key, "")) as client:
            kept = post(
                client, "/v1/track", {"userId": "u", "event": "E", "timestamp": iso(now + timedelta(seconds=60))}
            )
            moved = post(
                client, "/v1/track", {"userId": "u", "event": "E", "timestamp": iso(now + timedelta(seconds=61))}
            )
        assert "warnings" not in kept.json()
        assert "more than 60 s after" in moved.json()["warnings"][0]["message"]
    finally:
        server.stop()


# -- durability -------------------------------------------------------------------------


def test_the_answer_comes_only_after_the_event_is_committed(
    live: LiveServer, ws: NewWorkspace, settings: Settings
) -> None:
    # A separate engine (another connection pool, as another process would have) must see
    # each event the moment its 200 arrives.
    reader = database.create_db_engine(settings.database_url, sqlite_synchronous="NORMAL")

    def send_and_look(i: int) -> tuple[int, int]:
        path, body = (
            ("/v1/track", {"userId": f"u{i}", "event": "E", "messageId": f"d{i}"})
            if i % 2
            else ("/v1/batch", {"batch": [{"type": "page", "anonymousId": f"a{i}", "messageId": f"d{i}"}]})
        )
        response = post(client, path, body)
        with reader.connect() as conn:
            seen = conn.execute(
                select(func.count())
                .select_from(events)
                .where(events.c.workspace_id == ws.workspace_id, events.c.message_id == f"d{i}")
            ).scalar_one()
        return response.status_code, seen

    try:
        with live.client(auth=(ws.write_key, "")) as client, ThreadPoolExecutor(8) as pool:
            results = list(pool.map(send_and_look, range(64)))
    finally:
        reader.dispose()
    assert results == [(200, 1)] * 64


# -- limits -----------------------------------------------------------------------------


def test_a_single_event_over_32_kb_is_a_400(live: LiveServer, ws: NewWorkspace) -> None:
    """400 as in a batch, and as Segment answers (its Node library retries a 413)."""
    big = {"userId": "u", "event": "E", "properties": {"blob": "x" * (33 * 1024)}}
    with live.client(auth=(ws.write_key, "")) as client:
        assert assert_error(post(client, "/v1/track", big), 400, "body")["code"] == "event_too_large"
        assert_error(
            post(client, "/v1/track", gzip.compress(orjson.dumps(big)), {"content-encoding": "gzip"}), 400, "body"
        )
        # The limit is on the event as the client sends it: what the server adds to it
        # (receivedAt, the corrected timestamp, a messageId) does not push it over.
        edge = {"userId": "u", "event": "E", "properties": {"blob": ""}}
        edge["properties"]["blob"] = "x" * (32 * 1024 - len(orjson.dumps(edge)))
        assert len(orjson.dumps(edge)) == 32 * 1024
        response = post(client, "/v1/track", edge)
        assert response.status_code == 200, response.text
        edge["properties"]["blob"] += "x"
        assert_error(post(client, "/v1/track", edge), 400, "body")
    assert count(live, ws.workspace_id) == 1


def test_an_event_over_32_kb_in_a_batch_is_named_by_index(live: LiveServer, ws: NewWorkspace) -> None:
    batch = [
        {"type": "track", "userId": "u", "event": "Small", "messageId": "ok-0"},
        {"type": "track", "userId": "u", "event": "Small", "messageId": "ok-1"},
        {"type": "track", "userId": "u", "event": "Big", "properties": {"blob": "x" * (40 * 1024)}},
    ]
    with live.client(auth=(ws.write_key, "")) as client:
        body = assert_error(post(client, "/v1/batch", {"batch": batch}), 400, "batch[2]", 2)
        alone = assert_error(post(client, "/v1/track", batch[2]), 400, "body")
    assert "32768" in body["errors"][0]["message"]
    assert body["code"] == alone["code"] == "event_too_large"  # the same answer alone or in a batch
    assert count(live, ws.workspace_id) == 0  # none of the batch, not even the good ones


def test_a_request_over_500_kb_is_refused_and_one_under_is_accepted(live: LiveServer, ws: NewWorkspace) -> None:
    def batch_of(n: int, size: int) -> dict[str, Any]:
        return {
            "batch": [
                {"type": "track", "userId": "u", "event": "E", "messageId": f"m{i}", "properties": {"blob": "x" * size}}
                for i in range(n)
            ]
        }

    over = batch_of(26, 20 * 1024)  # every event is fine; the request is not
    assert len(orjson.dumps(over)) > 500 * 1024
    under = batch_of(24, 20 * 1024)
    assert len(orjson.dumps(under)) < 500 * 1024
    with live.client(auth=(ws.write_key, "")) as client:
        assert_error(post(client, "/v1/batch", over), 413, "body")
        # Compression does not get around the limit: it applies to the inflated body.
        assert_error(
            post(client, "/v1/batch", gzip.compress(orjson.dumps(over)), {"content-encoding": "gzip"}), 413, "body"
        )
        assert count(live, ws.workspace_id) == 0
        assert post(client, "/v1/batch", under).status_code == 200
    assert count(live, ws.workspace_id) == 24


def test_a_gzip_bomb_is_refused_without_inflating_it(live: LiveServer, ws: NewWorkspace) -> None:
    bomb = gzip.compress(b"[" + b" " * (50 * 1024 * 1024) + b"]")
    assert len(bomb) < 100 * 1024
    with live.client(auth=(ws.write_key, "")) as client:
        assert_error(post(client, "/v1/batch", bomb, {"content-encoding": "gzip"}), 413, "body")


# -- bad input --------------------------------------------------------------------------

TRACK = {"userId": "u", "event": "E"}
GOOD = {"type": "track", "userId": "u", "event": "E"}

# (path, body, extra headers, status, first error field, first error index)
BAD_INPUT: dict[str, tuple[str, Any, dict[str, str], int, str, int | None]] = {
    "invalid JSON": ("/v1/track", b'{"userId": "u", "event": ', {}, 400, "body", None),
    "invalid JSON in a batch": ("/v1/batch", b'{"batch": [{"type": "track",', {}, 400, "body", None),
    "not UTF-8": ("/v1/batch", b'{"batch": "\xff\xfe"}', {}, 400, "body", None),
    "empty body": ("/v1/track", b"", {}, 400, "body", None),
    "a JSON array": ("/v1/track", [TRACK], {}, 400, "body", None),
    "a JSON string": ("/v1/batch", "batch", {}, 400, "body", None),
    "properties not an object": ("/v1/track", {**TRACK, "properties": "cheap"}, {}, 400, "properties", None),
    "userId a boolean": ("/v1/track", {**TRACK, "userId": True}, {}, 400, "userId", None),
    "event a list": ("/v1/track", {**TRACK, "event": ["E"]}, {}, 400, "event", None),
    "event missing": ("/v1/track", {"userId": "u"}, {}, 400, "event", None),
    "event empty": ("/v1/track", {"userId": "u", "event": ""}, {}, 400, "event", None),
    "timestamp not a date": ("/v1/track", {**TRACK, "timestamp": "yesterday"}, {}, 400, "timestamp", None),
    "userId too long": ("/v1/track", {**TRACK, "userId": "u" * 513}, {}, 400, "userId", None),
    "userId with NUL": ("/v1/track", {**TRACK, "userId": "u\x00v"}, {}, 400, "userId", None),
    # The engine's own Segment Entered / Exited (passed undecided by its cursor) cannot be forged.
    "messageId of the engine's own events": (
        "/v1/track",
        {**TRACK, "event": "Segment Entered", "messageId": "nf-seg-0123"},
        {},
        400,
        "messageId",
        None,
    ),
    # Nor those that record a person's choices (unsubscribes, preferences, consent): the engine
    # trusts an event of those names only with Nudgeflow's own id (model/events.is_own_event).
    "messageId of Nudgeflow's own events": (
        "/v1/track",
        {**TRACK, "event": "Subscription Preferences Updated", "messageId": "nudgeflow:x:preferences:1"},
        {},
        400,
        "messageId",
        None,
    ),
    "traits not an object": ("/v1/identify", {"userId": "u", "traits": [1]}, {}, 400, "traits", None),
    "neither userId nor anonymousId": ("/v1/track", {"event": "E"}, {}, 400, "userId", None),
    "both ids empty": ("/v1/page", {"userId": "", "anonymousId": None}, {}, 400, "userId", None),
    "alias without previousId": ("/v1/alias", {"userId": "u"}, {}, 400, "previousId", None),
    "group without groupId": ("/v1/group", {"userId": "u"}, {}, 400, "groupId", None),
    "nested too deep": (
        "/v1/track",
        b'{"userId": "u", "event": "E", "properties": ' + b'{"a": ' * 300 + b"1" + b"}" * 301,
        {},
        400,
        "body",
        None,
    ),
    "integer beyond 64 bits": (
        "/v1/batch",
        b'{"batch": [{"type": "track", "userId": "u", "event": "E", "properties": {"n": 1' + b"0" * 30 + b"}}]}",
        {},
        400,
        "batch[0]",
        0,
    ),
    "batch not a list": ("/v1/batch", {"batch": GOOD}, {}, 400, "batch", None),
    "batch missing": ("/v1/batch", {"events": [GOOD]}, {}, 400, "batch", None),
    "batch empty": ("/v1/batch", {"batch": []}, {}, 400, "batch", None),
    "wrong type in a batch": (
        "/v1/batch",
        {"batch": [GOOD, GOOD, GOOD, {**GOOD, "properties": 7}]},
        {},
        400,
        "batch[3].properties",
        3,
    ),
    "no id in a batch": (
        "/v1/batch",
        {"batch": [GOOD, GOOD, {"type": "track", "event": "E"}]},
        {},
        400,
        "batch[2].userId",
        2,
    ),
    "unknown type in a batch": (
        "/v1/batch",
        {"batch": [GOOD, {**GOOD, "type": "purchase"}]},
        {},
        400,
        "batch[1].type",
        1,
    ),
    "missing type in a batch": ("/v1/batch", {"batch": [{"userId": "u", "event": "E"}]}, {}, 400, "batch[0].type", 0),
    "message not an object in a batch": ("/v1/batch", {"batch": [GOOD, "track"]}, {}, 400, "batch[1]", 1),
    "wrong content type": (
        "/v1/track",
        TRACK,
        {"content-type": "application/x-www-form-urlencoded"},
        415,
        "Content-Type",
        None,
    ),
    "missing content type": ("/v1/batch", {"batch": [GOOD]}, {"content-type": ""}, 415, "Content-Type", None),
    "unsupported encoding": ("/v1/track", TRACK, {"content-encoding": "br"}, 415, "Content-Encoding", None),
    "bad gzip": ("/v1/batch", orjson.dumps({"batch": [GOOD]}), {"content-encoding": "gzip"}, 400, "body", None),
    "truncated gzip": (
        "/v1/batch",
        gzip.compress(orjson.dumps({"batch": [GOOD]}))[:-12],
        {"content-encoding": "gzip"},
        400,
        "body",
        None,
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_a_4xx_naming_the_field_and_stores_nothing(live: LiveServer, ws: NewWorkspace, case: str) -> None:
    path, body, headers, status, field, index = BAD_INPUT[case]
    with live.client(auth=(ws.write_key, "")) as client:
        response = post(client, path, body, headers)
    assert_error(response, status, field, index)
    assert count(live, ws.workspace_id) == 0


def test_a_batch_with_one_bad_event_stores_none_of_them(live: LiveServer, ws: NewWorkspace) -> None:
    good = [{"type": "identify", "userId": f"u{i}", "messageId": f"g{i}", "traits": {"plan": "pro"}} for i in range(5)]
    bad = {"type": "track", "anonymousId": "a", "event": "E", "messageId": "bad", "context": "not an object"}
    with live.client(auth=(ws.write_key, "")) as client:
        assert_error(post(client, "/v1/batch", {"batch": [*good[:3], bad, *good[3:]]}), 400, "batch[3].context", 3)
        assert count(live, ws.workspace_id) == 0
        with live.state.engine.connect() as conn:
            assert (
                conn.execute(
                    select(func.count()).select_from(profiles).where(profiles.c.workspace_id == ws.workspace_id)
                ).scalar_one()
                == 0
            )
        # The same events, the bad one fixed, go through whole.
        response = post(client, "/v1/batch", {"batch": [*good[:3], {**bad, "context": {}}, *good[3:]]})
        assert response.status_code == 200, response.text
    assert count(live, ws.workspace_id) == 6


def test_several_bad_events_are_all_named(live: LiveServer, ws: NewWorkspace) -> None:
    batch = [GOOD, {**GOOD, "userId": []}, GOOD, {**GOOD, "properties": "x", "event": None}]
    with live.client(auth=(ws.write_key, "")) as client:
        body = assert_error(post(client, "/v1/batch", {"batch": batch}), 400, "batch[1].userId", 1)
    named = {(e["field"], e["index"]) for e in body["errors"]}
    assert {("batch[1].userId", 1), ("batch[3].properties", 3), ("batch[3].event", 3)} <= named


def test_an_unknown_write_key_is_401(live: LiveServer, ws: NewWorkspace) -> None:
    with live.client(auth=("wk_not_a_key_of_anyone", "")) as client:
        assert_error(post(client, "/v1/track", TRACK), 401, "writeKey")
        assert_error(post(client, "/v1/batch", {"batch": [GOOD]}), 401, "writeKey")
    with live.client() as client:
        assert_error(post(client, "/v1/identify", {"userId": "u", "writeKey": "wk_nope"}), 401, "writeKey")
        # An admin token is not a write key.
        assert_error(post(client, "/v1/track", {**TRACK, "writeKey": ws.admin_token}), 401, "writeKey")
    assert count(live, ws.workspace_id) == 0


def test_a_missing_write_key_is_401(live: LiveServer, ws: NewWorkspace) -> None:
    with live.client() as client:
        assert_error(post(client, "/v1/track", TRACK), 401, "writeKey")
        assert_error(post(client, "/v1/batch", {"batch": [GOOD]}), 401, "writeKey")
        # Credentials in a form the API does not read are no key either.
        assert_error(post(client, "/v1/track", TRACK, {"authorization": f"Bearer {ws.write_key}"}), 401, "writeKey")
        assert_error(post(client, "/v1/track", TRACK, {"authorization": "Basic %%%notbase64"}), 401, "writeKey")
        assert_error(post(client, "/v1/track", {**TRACK, "writeKey": 12345}), 401, "writeKey")
    assert count(live, ws.workspace_id) == 0


def test_bad_reserved_traits_are_accepted_with_warnings_naming_them(live: LiveServer, ws: NewWorkspace) -> None:
    with live.client(auth=(ws.write_key, "")) as client:
        single = post(client, "/v1/identify", {"userId": "u", "traits": {"timezone": "Mars/Olympus", "plan": "pro"}})
        batch = post(
            client,
            "/v1/batch",
            {"batch": [GOOD, {"type": "identify", "userId": "u", "traits": {"email": "not-an-address"}}]},
        )
    assert single.status_code == 200, single.text
    assert single.json()["success"] is True
    assert [w["field"] for w in single.json()["warnings"]] == ["traits.timezone"]
    assert "time zone" in single.json()["warnings"][0]["message"]
    assert batch.status_code == 200, batch.text
    assert batch.json()["warnings"] == [
        {"field": "batch[1].traits.email", "index": 1, "message": "not an email address; the trait was not applied"}
    ]
    assert count(live, ws.workspace_id) == 3
    # The valid trait is applied and the invalid ones are not: they are kept as errors.
    row = profile_row(live, ws.workspace_id, "u")
    assert orjson.loads(row.traits) == {"plan": "pro"}
    assert {"timezone", "email"} <= set(orjson.loads(row.trait_errors))


def test_a_trait_holding_a_nul_character_is_reported_and_the_rest_stored(live: LiveServer, ws: NewWorkspace) -> None:
    """PostgreSQL's JSON cannot hold U+0000, and the profile's traits are read as JSON by an
    index: one such trait used to fail the whole group commit (a 503, found by the fuzz test)."""
    traits = {"last_name": "\u0000", "plan": "pro", "tags": ["a", "b\u0000"], "nested": {"k\u0000": 1}}
    with live.client(auth=(ws.write_key, "")) as client:
        answer = post(client, "/v1/identify", {"userId": "nul", "traits": traits})
    assert answer.status_code == 200, answer.text
    assert sorted(w["field"] for w in answer.json()["warnings"]) == ["traits.last_name", "traits.nested", "traits.tags"]
    assert "NUL" in answer.json()["warnings"][0]["message"]
    row = profile_row(live, ws.workspace_id, "nul")
    assert orjson.loads(row.traits) == {"plan": "pro"}
    assert set(orjson.loads(row.trait_errors)) == {"last_name", "tags", "nested"}
    assert count(live, ws.workspace_id) == 1  # the event itself is stored (its payload is text)


def test_other_methods_and_paths_are_4xx(live: LiveServer, ws: NewWorkspace) -> None:
    with live.client(auth=(ws.write_key, "")) as client:
        assert client.get("/v1/track").status_code == 405
        assert post(client, "/v1/purchase", TRACK).status_code == 404


# -- rate limiting ----------------------------------------------------------------------


def test_ingest_is_rate_limited_per_workspace(settings: Settings, clock: VirtualClock) -> None:
    server = start_server(settings.with_(ingest_rate_per_second=10.0, ingest_burst=20), clock)
    try:
        busy, quiet = server.workspace("busy"), server.workspace("quiet")

        def batch(n: int, tag: str) -> dict[str, Any]:
            return {
                "batch": [{"type": "track", "userId": "u", "event": "E", "messageId": f"{tag}-{i}"} for i in range(n)]
            }

        with server.client(auth=(busy.write_key, "")) as client:
            assert post(client, "/v1/batch", batch(20, "burst")).status_code == 200  # the whole burst
            refused = post(client, "/v1/track", {**TRACK, "messageId": "one-too-many"})
            assert_error(refused, 429)
            assert refused.json()["code"] == "rate_limited"
            assert refused.headers["retry-after"] == "1"  # one event at 10/s
            refused = post(client, "/v1/batch", batch(15, "wait"))
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "2"  # 15 events at 10/s: 1.5 s, rounded up
            # Another workspace has its own bucket.
            with server.client(auth=(quiet.write_key, "")) as other:
                assert post(other, "/v1/batch", batch(20, "quiet")).status_code == 200
            # Time refills the bucket: after 1 s, 10 events pass and the 11th does not.
            clock.advance(1.0)
            assert post(client, "/v1/batch", batch(10, "refill")).status_code == 200
            assert post(client, "/v1/track", {**TRACK, "messageId": "again"}).status_code == 429
            # The bucket never holds more than the burst, however long it rests.
            clock.advance(3600)
            assert post(client, "/v1/batch", batch(20, "rested")).status_code == 200
            assert post(client, "/v1/track", {**TRACK, "messageId": "after-rest"}).status_code == 429
            # A batch larger than the burst passes on a full bucket and is paid back over time,
            # so a client that honours Retry-After is never refused forever.
            clock.advance(3600)
            assert post(client, "/v1/batch", batch(21, "huge")).status_code == 200
            refused = post(client, "/v1/track", {**TRACK, "messageId": "in-debt"})
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            clock.advance(0.5)
            assert post(client, "/v1/track", {**TRACK, "messageId": "paid-back"}).status_code == 200
            # Refusals are counted in events: 1 + 15 + 1 + 1 + 1.
            assert 'nudgeflow_events_rejected_total{reason="rate_limited"} 19.0' in client.get("/metrics").text

        with server.state.engine.connect() as conn:

            def n(workspace_id: str) -> int:
                return int(
                    conn.execute(
                        select(func.count()).select_from(events).where(events.c.workspace_id == workspace_id)
                    ).scalar_one()
                )

            assert n(busy.workspace_id) == 20 + 10 + 20 + 21 + 1  # nothing refused was stored
            assert n(quiet.workspace_id) == 20
    finally:
        server.stop()


# -- isolation --------------------------------------------------------------------------


def test_a_write_key_writes_only_into_its_own_workspace(live: LiveServer, ws: NewWorkspace) -> None:
    other = live.workspace("other")
    with live.client(auth=(ws.write_key, "")) as client:
        assert post(client, "/v1/identify", {"userId": "same-user", "traits": {"plan": "pro"}}).status_code == 200
        # A writeKey in the body does not override the Basic credentials.
        assert (
            post(client, "/v1/track", {**TRACK, "userId": "same-user", "writeKey": other.write_key}).status_code == 200
        )
    with live.client(auth=(other.write_key, "")) as client:
        assert post(client, "/v1/identify", {"userId": "same-user", "traits": {"plan": "free"}}).status_code == 200
    assert [r.type for r in stored(live, ws.workspace_id)] == ["identify", "track"]
    assert [r.type for r in stored(live, other.workspace_id)] == ["identify"]
    with live.state.engine.connect() as conn:
        rows = conn.execute(
            select(profiles.c.workspace_id, profiles.c.traits).where(profiles.c.user_id == "same-user")
        ).all()
    by_workspace = {
        r.workspace_id: orjson.loads(r.traits) for r in rows if r.workspace_id in (ws.workspace_id, other.workspace_id)
    }
    assert by_workspace == {ws.workspace_id: {"plan": "pro"}, other.workspace_id: {"plan": "free"}}


def test_ingest_answers_browsers_of_any_origin(live: LiveServer, ws: NewWorkspace) -> None:
    """The browser SDK posts from the site's origin: preflights are answered and every
    ingest answer, errors included, allows any origin (the write key authorizes, not a cookie)."""
    with live.client() as http:
        pre = http.options(
            "/v1/batch",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == "*"
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        ok = http.post(
            "/v1/track",
            auth=(ws.write_key, ""),
            headers={"Origin": "https://shop.example"},
            json={"userId": "u-cors", "event": "Viewed"},
        )
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "*"
        assert ok.headers["content-type"] == "application/json" and ok.json() == {"success": True}
        assert [r.event for r in stored(live, ws.workspace_id)] == ["Viewed"]
        bad = http.post("/v1/track", auth=("no-such-key", ""), json={"userId": "u", "event": "x"})
        assert bad.status_code == 401 and bad.headers["access-control-allow-origin"] == "*"
        assert bad.headers["content-type"] == "application/json" and bad.json()["code"] == "unauthorized"


def test_an_address_trait_with_a_control_character_is_not_applied(live: LiveServer, ws: NewWorkspace) -> None:
    with live.client(auth=(ws.write_key, "")) as client:
        response = post(
            client,
            "/v1/identify",
            {"userId": "u-nul", "traits": {"email": "a\u0000b@example.com", "phone": "+33612345678\n", "plan": "pro"}},
        )
    assert response.status_code == 200, response.text
    warnings = {w["field"]: w["message"] for w in response.json()["warnings"]}
    assert set(warnings) == {"traits.email", "traits.phone"}
    assert all("control character" in message for message in warnings.values())
    (row,) = stored(live, ws.workspace_id)
    assert orjson.loads(row.payload)["traits"]["email"] == "a\u0000b@example.com"  # the event is kept as sent
    assert orjson.loads(profile_row(live, ws.workspace_id, "u-nul").traits) == {"plan": "pro"}  # but not applied


def test_the_rate_limit_is_the_workspaces_across_serving_processes(settings: Settings, clock: VirtualClock) -> None:
    # Two servers on one database stand for two processes behind a load balancer: what one
    # admits is taken out of the other's bucket at their next exchange (ingest/shared_limits.py).
    import time

    limited = settings.with_(ingest_rate_per_second=10.0, ingest_burst=20)
    first, second = start_server(limited, clock), start_server(limited.with_(role="api"), clock)
    try:
        ws = first.workspace("shared")
        batch = {"batch": [{"type": "track", "userId": "u", "event": "E", "messageId": f"a-{i}"} for i in range(19)]}
        with first.client(auth=(ws.write_key, "")) as a, second.client(auth=(ws.write_key, "")) as b:
            assert post(b, "/v1/track", {**TRACK, "messageId": "b-0"}).status_code == 200  # b serves it too
            assert post(a, "/v1/batch", batch).status_code == 200  # a's own bucket had 20
            limiter = second.state.limiter
            seen = limiter.exchanges  # type: ignore[attr-defined]
            deadline = time.monotonic() + 30
            while limiter.exchanges < seen + 2:  # type: ignore[attr-defined]  # a's exchange, then b's
                assert time.monotonic() < deadline, "no exchange in 30 s"
                time.sleep(0.05)  # the exchange loops run on the servers' own event loops
            refused = post(b, "/v1/track", {**TRACK, "messageId": "b-1"})
            assert refused.status_code == 429  # 20 of the workspace's burst of 20 are spent
    finally:
        first.stop()
        second.stop()
