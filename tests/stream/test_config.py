"""StreamSettings and the client's argument checks: no server needed."""

from __future__ import annotations

import asyncio

import pytest

from nudgeflow.stream.client import EventStream
from nudgeflow.stream.config import StreamSettings, parse_servers, partition_subject
from nudgeflow.stream.errors import InvalidStreamRequest, StreamError, StreamSettingError


def test_defaults_are_the_documented_ones() -> None:
    s = StreamSettings()
    assert (s.stream, s.partitions, s.replicas, s.storage) == ("NUDGEFLOW_EVENTS", 64, 3, "file")
    assert s.duplicate_window_seconds == 120.0
    assert s.subjects == "nudgeflow.events.*"
    assert s.subject(0) == "nudgeflow.events.0" and s.subject(63) == "nudgeflow.events.63"
    assert partition_subject(5) == "nudgeflow.events.5"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"replicas": 2}, "replicas"),
        ({"replicas": 0}, "replicas"),
        ({"replicas": True}, "replicas"),
        ({"partitions": 0}, "partitions"),
        ({"partitions": 4097}, "partitions"),
        ({"partitions": 1.5}, "partitions"),
        ({"storage": "memory"}, "storage"),
        ({"servers": ()}, "servers"),
        ({"servers": ("http://x:4222",)}, "servers"),
        ({"servers": ("nats://:4222",)}, "servers"),
        ({"servers": ("nats://host:port",)}, "servers"),
        ({"stream": "has.dot"}, "stream"),
        ({"stream": ""}, "stream"),
        ({"subject_prefix": "a.*"}, "subject_prefix"),
        ({"subject_prefix": "a..b"}, "subject_prefix"),
        ({"duplicate_window_seconds": 0}, "duplicate_window_seconds"),
        ({"max_age_seconds": -1}, "max_age_seconds"),
        ({"max_age_seconds": 60}, "max_age_seconds"),
        ({"request_timeout_seconds": 0}, "request_timeout_seconds"),
    ],
)
def test_bad_settings_are_named(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(StreamSettingError, match=named) as info:
        StreamSettings(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_bounds_are_accepted() -> None:
    assert StreamSettings(partitions=1, replicas=1).partitions == 1
    assert StreamSettings(partitions=4096, replicas=5).partitions == 4096
    assert StreamSettings(max_age_seconds=0).max_age_seconds == 0  # kept for ever


def test_servers_from_a_comma_list_and_credentials_never_shown() -> None:
    assert parse_servers(" nats://a:4222, ,nats://b:4222 ") == ("nats://a:4222", "nats://b:4222")
    s = StreamSettings(servers="nats://alice:s3cret@a:4222,tls://tok3n@b:4443")  # type: ignore[arg-type]
    assert s.servers == ("nats://alice:s3cret@a:4222", "tls://tok3n@b:4443")
    assert s.redacted_servers() == ("nats://***@a:4222", "tls://***@b:4443")
    assert "s3cret" not in repr(s) and "tok3n" not in repr(s)
    with pytest.raises(StreamSettingError) as info:
        StreamSettings(servers=("nats://alice:s3cret@a:notaport",))
    assert "s3cret" not in str(info.value)


def test_publish_and_read_check_their_arguments_before_any_connection() -> None:
    stream = EventStream(StreamSettings(partitions=8))

    async def attempts() -> list[str]:
        out = []
        for call in (
            stream.publish(8, "w:1", b"x"),
            stream.publish(-1, "w:1", b"x"),
            stream.publish(0, "", b"x"),
            stream.publish(0, "w:1\r\nX-Evil: 1", b"x"),
            stream.publish(0, "w" * 600, b"x"),
            stream.publish(0, "w:1", "not bytes"),  # type: ignore[arg-type]
            stream.read(8, 0),
            stream.read(0, -1),
            stream.read(0, 0, max_messages=0),
            stream.read(0, 0, timeout=0),
        ):
            with pytest.raises(InvalidStreamRequest) as info:
                await call
            out.append(str(info.value).split(":", 1)[0])
        with pytest.raises(StreamError, match="not connected"):
            await stream.publish(0, "w:1", b"x")
        return out

    named = asyncio.run(attempts())
    assert named == [
        "partition",
        "partition",
        "msg_id",
        "msg_id",
        "msg_id",
        "payload",
        "partition",
        "after_seq",
        "max_messages",
        "timeout",
    ]
