"""StreamUnavailable when there is no cluster to answer: at connect, and for a publish or read once
the whole cluster is down. This module stops its own cluster (the fixture is module-scoped)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from nudgeflow.errors import NudgeflowError
from nudgeflow.stream.client import EventStream
from nudgeflow.stream.config import StreamSettings
from nudgeflow.stream.errors import StreamError, StreamUnavailable
from tests.stream.cluster import NatsCluster, free_ports


def test_connect_with_no_server_listening_is_unavailable() -> None:
    port = free_ports(1)[0]  # nothing listens there once the probe socket is closed
    settings = StreamSettings(servers=(f"nats://user:pw@127.0.0.1:{port}",), connect_timeout_seconds=1.0)

    async def run() -> None:
        with pytest.raises(StreamUnavailable) as info:
            await EventStream(settings).connect()
        assert isinstance(info.value.__cause__, Exception)  # raised from the client's error
        assert "pw" not in str(info.value) and "***@127.0.0.1" in str(info.value)
        assert isinstance(info.value, StreamError) and isinstance(info.value, NudgeflowError)

    asyncio.run(run())


def test_publish_and_read_are_unavailable_while_the_cluster_is_down(
    nats_cluster: NatsCluster, stream_settings: StreamSettings
) -> None:
    settings = replace(stream_settings, request_timeout_seconds=1.0)

    async def run() -> None:
        async with EventStream(settings) as stream:
            await stream.ensure_stream()
            await stream.publish(0, "ws:before", b"stored")
            await asyncio.to_thread(nats_cluster.stop)
            for attempt in (
                lambda: stream.publish(0, "ws:during", b"not stored"),
                lambda: stream.read(0, 0, timeout=0.5),
                stream.ensure_stream,
                stream.describe,
            ):
                started = time.monotonic()
                with pytest.raises(StreamUnavailable) as info:
                    await attempt()
                assert info.value.__cause__ is not None
                assert time.monotonic() - started < 5.0  # bounded by the request timeout, not hanging

    asyncio.run(run())
