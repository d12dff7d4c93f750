"""Segment messages: validation from bytes, error paths, and the normalized record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from nudgeflow.core.clock import to_ms
from nudgeflow.model.events import (
    InvalidEvent,
    InvalidPayload,
    content_message_id,
    normalize,
    parse_batch,
    parse_message,
    parse_single,
)

UTC = UTC
RECEIVED = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
LIMIT = 32 * 1024


def errors_of(call: Any, *args: Any) -> list[InvalidEvent]:
    with pytest.raises(InvalidPayload) as caught:
        call(*args)
    return caught.value.errors


def fields(errors: list[InvalidEvent]) -> list[tuple[str, int | None]]:
    return [(e.field, e.index) for e in errors]


def batch_body(*messages: Any, **top: Any) -> bytes:
    return orjson.dumps({"batch": list(messages), **top})


# -- parse_batch ------------------------------------------------------------------------


def test_parse_batch_returns_the_messages_with_extra_fields_kept() -> None:
    messages, body = parse_batch(
        batch_body(
            {"type": "track", "userId": "u", "event": "E", "properties": {"a": 1}, "custom": [1, 2]},
            {
                "type": "identify",
                "anonymousId": "a",
                "traits": {"email": "a@b.co"},
                "timestamp": "2026-01-01T00:00:00Z",
            },
            sentAt="2026-01-01T00:00:05Z",
            context={"library": {"name": "analytics-python"}},
        )
    )
    assert [m["type"] for m in messages] == ["track", "identify"]
    assert messages[0]["custom"] == [1, 2]  # Segment payloads carry extras; they are kept
    assert messages[1]["timestamp"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert body["sentAt"] == datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert body["context"] == {"library": {"name": "analytics-python"}}


def test_numeric_ids_are_taken_as_strings() -> None:
    # Segment's libraries accept numeric user ids; the spec stores them as strings.
    messages, _ = parse_batch(batch_body({"type": "track", "userId": 42, "event": "E", "messageId": 7}))
    assert messages[0]["userId"] == "42" and messages[0]["messageId"] == "7"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{", [("body", None)]),
        (b"", [("body", None)]),
        (b"[1]", [("body", None)]),
        (b'{"batch": 1}', [("batch", None)]),
        (b'{"batch": []}', [("batch", None)]),
        (b'{"messages": []}', [("batch", None)]),
        (b'{"batch": [], "sentAt": "soon"}', [("batch", None), ("sentAt", None)]),
        (batch_body({"type": "track", "userId": "u", "event": "E"}, "x"), [("batch[1]", 1)]),
        (batch_body({"type": "purchase", "userId": "u"}), [("batch[0].type", 0)]),
        (batch_body({"userId": "u"}), [("batch[0].type", 0)]),
        (batch_body({"type": "track", "userId": "u"}), [("batch[0].event", 0)]),
        (batch_body({"type": "track", "userId": ["u"], "event": "E"}), [("batch[0].userId", 0)]),
        (batch_body({"type": "alias", "userId": "u"}), [("batch[0].previousId", 0)]),
        (batch_body({"type": "group", "userId": "u", "groupId": ""}), [("batch[0].groupId", 0)]),
        (batch_body({"type": "page", "anonymousId": "a", "properties": [1]}), [("batch[0].properties", 0)]),
        (batch_body({"type": "page", "anonymousId": "a", "timestamp": "nope"}), [("batch[0].timestamp", 0)]),
        (
            batch_body(
                {"type": "track", "userId": "u", "event": "E"},
                {"type": "track", "userId": "u", "event": "E"},
                {"type": "identify", "userId": "u", "traits": "x", "context": 3},
            ),
            [("batch[2].context", 2), ("batch[2].traits", 2)],
        ),
    ],
)
def test_parse_batch_names_each_bad_field_and_its_index(body: bytes, expected: list[tuple[str, int | None]]) -> None:
    assert sorted(fields(errors_of(parse_batch, body)), key=str) == sorted(expected, key=str)


def test_an_invalid_json_error_says_where() -> None:
    (error,) = errors_of(parse_batch, b'{"batch": [}')
    assert error.field == "body"
    assert error.message.startswith("invalid JSON") and "column" in error.message


def test_unknown_and_missing_types_are_described_with_the_choices() -> None:
    (unknown,) = errors_of(parse_batch, batch_body({"type": "purchase", "userId": "u"}))
    (missing,) = errors_of(parse_batch, batch_body({"userId": "u"}))
    assert (
        unknown.message.startswith("unknown type") and "track, identify, page, screen, group, alias" in unknown.message
    )
    assert missing.message.startswith("missing type")


def test_ids_longer_than_512_characters_are_refused() -> None:
    assert fields(errors_of(parse_batch, batch_body({"type": "track", "userId": "u" * 513, "event": "E"}))) == [
        ("batch[0].userId", 0)
    ]
    messages, _ = parse_batch(batch_body({"type": "track", "userId": "u" * 512, "event": "E"}))
    assert len(messages[0]["userId"]) == 512


# -- parse_single -----------------------------------------------------------------------


def test_parse_single_takes_the_type_from_the_path() -> None:
    message = parse_single("page", orjson.dumps({"type": "track", "anonymousId": "a", "name": "Home"}))
    assert message["type"] == "page" and message["name"] == "Home"


@pytest.mark.parametrize(
    ("type_", "body", "field"),
    [
        ("track", b"nope", "body"),
        ("track", b'"a string"', "body"),
        ("track", b"[]", "body"),
        ("track", orjson.dumps({"userId": "u"}), "event"),
        ("track", orjson.dumps({"userId": "u", "event": "E", "properties": "x"}), "properties"),
        ("identify", orjson.dumps({"userId": {"id": 1}}), "userId"),
        ("alias", orjson.dumps({"previousId": "a"}), "userId"),
        ("group", orjson.dumps({"userId": "u", "groupId": None}), "groupId"),
        ("screen", orjson.dumps({"userId": "u", "sentAt": [2026]}), "sentAt"),
    ],
)
def test_parse_single_names_the_bad_field_without_an_index(type_: str, body: bytes, field: str) -> None:
    errors = errors_of(parse_single, type_, body)
    assert errors[0].field == field
    assert all(e.index is None for e in errors)
    assert "index" not in errors[0].as_dict()


def test_parse_message_needs_a_known_type() -> None:
    assert parse_message({"type": "screen", "userId": "u"})["type"] == "screen"
    assert fields(errors_of(parse_message, {"type": "buy", "userId": "u"})) == [("type", None)]
    assert fields(errors_of(parse_message, ["track"])) == [("body", None)]


# -- normalize --------------------------------------------------------------------------


def track(**fields: Any) -> dict[str, Any]:
    return parse_single("track", orjson.dumps({"event": "E", **fields}))


def test_normalize_builds_the_record() -> None:
    record = normalize(
        track(userId="u", anonymousId="a", messageId="m1", properties={"x": 1}), RECEIVED, max_event_bytes=LIMIT
    )
    assert (record.message_id, record.type, record.event) == ("m1", "track", "E")
    assert (record.user_id, record.anonymous_id, record.previous_id) == ("u", "a", None)
    assert record.timestamp_ms == record.received_at_ms == to_ms(RECEIVED)
    payload = orjson.loads(record.payload)
    assert payload["properties"] == {"x": 1}
    assert datetime.fromisoformat(payload["receivedAt"]) == RECEIVED
    assert datetime.fromisoformat(payload["timestamp"]) == RECEIVED
    assert record.traits is None and record.trait_errors is None


@pytest.mark.parametrize(("field", "index", "expected"), [("body", None, "userId"), ("batch[4]", 4, "batch[4].userId")])
def test_normalize_needs_a_user_id_or_an_anonymous_id(field: str, index: int | None, expected: str) -> None:
    for ids in ({}, {"userId": ""}, {"userId": None, "anonymousId": ""}):
        with pytest.raises(InvalidEvent) as caught:
            normalize(track(**ids), RECEIVED, max_event_bytes=LIMIT, field=field, index=index)
        assert (caught.value.field, caught.value.index) == (expected, index)
        assert "userId or anonymousId" in caught.value.message
    assert normalize(track(anonymousId="a"), RECEIVED, max_event_bytes=LIMIT).user_id is None


def test_normalize_drops_the_write_key_from_what_is_stored() -> None:
    record = normalize(track(userId="u", writeKey="wk_secret_secret"), RECEIVED, max_event_bytes=LIMIT)
    assert b"wk_secret" not in record.payload


def test_normalize_gives_each_message_without_an_id_a_new_one() -> None:
    first = normalize(track(userId="u"), RECEIVED, max_event_bytes=LIMIT)
    second = normalize(track(userId="u"), RECEIVED, max_event_bytes=LIMIT)
    assert first.message_id != second.message_id
    assert orjson.loads(first.payload)["messageId"] == first.message_id


def test_a_derived_message_id_depends_only_on_the_message_as_sent() -> None:
    # Bulk import derives ids from content so that a second run stores nothing twice,
    # even though it happens at another time.
    a = normalize(
        track(userId="u", properties={"x": 1, "y": 2}), RECEIVED, max_event_bytes=LIMIT, derive_message_id=True
    )
    b = normalize(
        track(userId="u", properties={"y": 2, "x": 1}),
        RECEIVED + timedelta(days=1),
        max_event_bytes=LIMIT,
        derive_message_id=True,
    )
    c = normalize(track(userId="u", properties={"x": 2}), RECEIVED, max_event_bytes=LIMIT, derive_message_id=True)
    assert a.message_id == b.message_id != c.message_id
    assert a.message_id.startswith("content-")
    assert content_message_id({"a": 1, "b": 2}) == content_message_id({"b": 2, "a": 1})


def test_the_batch_context_fills_in_for_messages_without_their_own() -> None:
    shared = {"library": {"name": "analytics-python"}}
    plain = normalize(track(userId="u"), RECEIVED, max_event_bytes=LIMIT, batch_context=shared)
    own = normalize(track(userId="u", context={"ip": "1.2.3.4"}), RECEIVED, max_event_bytes=LIMIT, batch_context=shared)
    assert orjson.loads(plain.payload)["context"] == shared
    assert orjson.loads(own.payload)["context"] == {"ip": "1.2.3.4"}


def test_timestamps_are_corrected_for_device_clock_skew() -> None:
    # The device is 2 hours ahead; it sent the event 30 s after it happened.
    device = RECEIVED + timedelta(hours=2)
    sent = normalize(
        track(userId="u", timestamp=(device - timedelta(seconds=30)).isoformat(), sentAt=device.isoformat()),
        RECEIVED,
        max_event_bytes=LIMIT,
    )
    assert sent.timestamp_ms == to_ms(RECEIVED - timedelta(seconds=30))
    payload = orjson.loads(sent.payload)
    assert datetime.fromisoformat(payload["originalTimestamp"]) == device - timedelta(seconds=30)
    assert datetime.fromisoformat(payload["sentAt"]) == device
    # originalTimestamp wins over timestamp, and the batch's sentAt serves when the message has none.
    batch = normalize(
        track(
            userId="u", originalTimestamp=(device - timedelta(seconds=10)).isoformat(), timestamp="2000-01-01T00:00:00Z"
        ),
        RECEIVED,
        max_event_bytes=LIMIT,
        batch_sent_at=device,
    )
    assert batch.timestamp_ms == to_ms(RECEIVED - timedelta(seconds=10))
    # Without sentAt there is no gap to measure: the device's time is taken as it is.
    kept = normalize(track(userId="u", timestamp="2025-05-05T05:05:05+02:00"), RECEIVED, max_event_bytes=LIMIT)
    assert kept.timestamp_ms == to_ms(datetime(2025, 5, 5, 3, 5, 5, tzinfo=UTC))


@pytest.mark.parametrize(
    "times",
    [
        {"timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T00:00:00Z"},
        {"timestamp": "9999-12-31T23:59:59-23:00"},
        {"timestamp": "0001-01-01T00:00:00+01:00"},
    ],
)
def test_a_timestamp_out_of_calendar_after_correction_is_an_invalid_event(times: dict[str, str]) -> None:
    with pytest.raises(InvalidEvent) as caught:
        normalize(track(userId="u", **times), RECEIVED, max_event_bytes=LIMIT, field="batch[1]", index=1)
    assert (caught.value.field, caught.value.index) == ("batch[1].timestamp", 1)


def test_the_size_limit_is_on_the_event_as_sent() -> None:
    blob = "x" * (LIMIT - len(orjson.dumps({"type": "track", "event": "E", "userId": "u", "properties": {"b": ""}})))
    at_limit = track(userId="u", properties={"b": blob})
    assert len(orjson.dumps(at_limit)) == LIMIT
    assert normalize(at_limit, RECEIVED, max_event_bytes=LIMIT).payload  # the server's additions do not count
    with pytest.raises(InvalidEvent) as caught:
        normalize(
            track(userId="u", properties={"b": blob + "x" * 2000}),
            RECEIVED,
            max_event_bytes=LIMIT,
            field="batch[0]",
            index=0,
        )
    assert (caught.value.field, caught.value.index) == ("batch[0]", 0)
    assert str(LIMIT) in caught.value.message


def test_values_json_cannot_store_are_an_invalid_event_not_a_crash() -> None:
    deep: Any = 1
    for _ in range(300):
        deep = {"a": deep}
    for properties in ({"deep": deep}, {"big": 2**70}):
        message = parse_message({"type": "track", "userId": "u", "event": "E", "properties": properties})
        with pytest.raises(InvalidEvent) as caught:
            normalize(message, RECEIVED, max_event_bytes=LIMIT, field="batch[2]", index=2)
        assert (caught.value.field, caught.value.index) == ("batch[2]", 2)
        assert "cannot be stored as JSON" in caught.value.message


@pytest.mark.parametrize("name", ["userId", "anonymousId", "messageId"])
def test_nul_characters_in_stored_ids_are_refused(name: str) -> None:
    # PostgreSQL text cannot hold NUL; refusing it here keeps both backends alike.
    with pytest.raises(InvalidEvent) as caught:
        normalize(track(**{"userId": "u", name: "x\x00y"}), RECEIVED, max_event_bytes=LIMIT)
    assert caught.value.field == name
    # Elsewhere in the message it is just a character, escaped in the JSON.
    record = normalize(track(userId="u", properties={"note": "x\x00y"}), RECEIVED, max_event_bytes=LIMIT)
    assert orjson.loads(record.payload)["properties"]["note"] == "x\x00y"


@pytest.mark.parametrize(
    ("type_", "body", "event"),
    [
        ("track", {"userId": "u", "event": "Order Completed"}, "Order Completed"),
        ("page", {"userId": "u", "name": "Pricing"}, "Pricing"),
        ("screen", {"userId": "u"}, None),
        ("identify", {"userId": "u"}, None),
        ("group", {"userId": "u", "groupId": "g"}, None),
    ],
)
def test_the_event_column_holds_the_event_or_page_name(type_: str, body: dict[str, Any], event: str | None) -> None:
    record = normalize(parse_single(type_, orjson.dumps(body)), RECEIVED, max_event_bytes=LIMIT)
    assert record.event == event


def test_only_alias_carries_a_previous_id() -> None:
    alias = normalize(
        parse_single("alias", orjson.dumps({"userId": "u", "previousId": "a"})), RECEIVED, max_event_bytes=LIMIT
    )
    assert alias.previous_id == "a"
    # On other types previousId is an unchecked extra: it is kept in the payload, not used.
    other = normalize(track(userId="u", previousId={"not": "an id"}), RECEIVED, max_event_bytes=LIMIT)
    assert other.previous_id is None
    assert orjson.loads(other.payload)["previousId"] == {"not": "an id"}


def test_identify_traits_are_cleaned_and_bad_reserved_ones_set_aside() -> None:
    message = parse_single(
        "identify",
        orjson.dumps({"userId": "u", "traits": {"firstName": "Ada", "timezone": "Nowhere/City", "plan": "pro"}}),
    )
    record = normalize(message, RECEIVED, max_event_bytes=LIMIT)
    assert record.traits == {"first_name": "Ada", "plan": "pro"}
    assert record.trait_errors is not None and set(record.trait_errors) == {"timezone"}
    # Traits on a track call are not profile traits.
    assert normalize(track(userId="u", traits={"plan": "x"}), RECEIVED, max_event_bytes=LIMIT).traits is None
