"""EventStream against a real 3-node JetStream cluster: acknowledgements, duplicates, the stream's
durable configuration, refusing a weaker stream, and reading a partition from a position."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from dataclasses import replace

import nats
import pytest
from nats.js.api import StorageType, StreamConfig

from nudgeflow.stream.client import EventStream
from nudgeflow.stream.config import StreamSettings
from nudgeflow.stream.errors import StreamRefused
from tests.stream.cluster import NatsCluster


def test_every_node_syncs_each_write(nats_cluster: NatsCluster) -> None:
    # The fixture's promise (sync_interval: always), read back from each server rather than trusted.
    for node in nats_cluster.nodes:
        with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/varz", timeout=5) as resp:
            config = json.loads(resp.read())["jetstream"]["config"]
        assert config["sync_always"] is True, node.name


def test_publish_is_acknowledged_with_the_stream_sequence(stream_settings: StreamSettings) -> None:
    async def run() -> None:
        async with EventStream(stream_settings) as stream:
            await stream.ensure_stream()
            first = await stream.publish(3, "ws1:m1", b'{"event":"a"}')
            second = await stream.publish(5, "ws1:m2", b'{"event":"b"}')
            assert (first.seq, first.duplicate) == (1, False)
            assert (second.seq, second.duplicate) == (2, False)
            state = await stream.describe()
            assert (state.messages, state.last_seq) == (2, 2)

    asyncio.run(run())


def test_a_repeated_msg_id_inside_the_window_is_a_duplicate_stored_once(stream_settings: StreamSettings) -> None:
    async def run() -> None:
        async with EventStream(stream_settings) as stream:
            await stream.ensure_stream()
            original = await stream.publish(2, "ws1:same", b"first")
            again = await stream.publish(2, "ws1:same", b"second")
            other = await stream.publish(2, "ws1:other", b"third")
            assert original.duplicate is False
            assert again.duplicate is True and again.seq == original.seq
            assert other.seq == original.seq + 1
            assert (await stream.describe()).messages == 2
            read = await stream.read(2, 0, max_messages=10, timeout=0.5)
            assert [(m.msg_id, m.payload) for m in read] == [("ws1:same", b"first"), ("ws1:other", b"third")]

    asyncio.run(run())


def test_the_stream_is_created_with_three_replicas_on_file_storage(stream_settings: StreamSettings) -> None:
    async def run() -> None:
        async with EventStream(stream_settings) as stream:
            created = await stream.ensure_stream()
            again = await stream.ensure_stream()  # an existing stream as asked is accepted as it is
            # Read back through the plain client too, not only through the layer under test.
            nc = await nats.connect(servers=list(stream_settings.servers))
            try:
                raw = await nc.jsm().stream_info(stream_settings.stream)
            finally:
                await nc.close()
        for state in (created, again):
            assert state.replicas == 3 and state.storage == "file" and state.retention == "limits"
            assert state.duplicate_window_seconds == 120.0
            assert state.subjects == (stream_settings.subjects,)
        assert raw.config.num_replicas == 3 and raw.config.storage == StorageType.FILE
        assert raw.cluster is not None and raw.cluster.replicas is not None and len(raw.cluster.replicas) == 2

    asyncio.run(run())


@pytest.mark.parametrize(
    ("existing", "named"),
    [
        ({"num_replicas": 1}, "replicas is 1, asked 3"),
        ({"storage": StorageType.MEMORY}, "storage is memory"),
        ({"duplicate_window": 10.0}, "duplicate_window is 10 s"),
        ({"max_age": 600.0}, "max_age is 600 s"),
    ],
)
def test_a_weaker_existing_stream_is_refused_and_left_unchanged(
    stream_settings: StreamSettings, existing: dict[str, object], named: str
) -> None:
    async def run() -> None:
        config = StreamConfig(
            name=stream_settings.stream,
            subjects=[stream_settings.subjects],
            num_replicas=3,
            storage=StorageType.FILE,
            duplicate_window=120.0,
            max_age=stream_settings.max_age_seconds,
        ).evolve(**existing)
        nc = await nats.connect(servers=list(stream_settings.servers))
        try:
            await nc.jsm().add_stream(config)
            async with EventStream(stream_settings) as stream:
                with pytest.raises(StreamRefused, match=named):
                    await stream.ensure_stream()
            after = await nc.jsm().stream_info(stream_settings.stream)
        finally:
            await nc.close()
        for key, value in existing.items():
            assert getattr(after.config, key) == value, key

    asyncio.run(run())


def test_a_stronger_existing_stream_is_accepted(stream_settings: StreamSettings) -> None:
    async def run() -> None:
        async with EventStream(stream_settings) as stream:
            await stream.ensure_stream()  # three replicas
        weaker_ask = replace(stream_settings, replicas=1, duplicate_window_seconds=60.0)
        async with EventStream(weaker_ask) as stream:
            state = await stream.ensure_stream()
        assert state.replicas == 3 and state.duplicate_window_seconds == 120.0

    asyncio.run(run())


def test_read_gives_one_partitions_messages_in_order_from_a_position(stream_settings: StreamSettings) -> None:
    async def run() -> None:
        async with EventStream(stream_settings) as stream:
            await stream.ensure_stream()
            published: dict[int, list[tuple[int, str]]] = {}
            for i in range(40):
                partition = (i * 5) % 4  # 0, 1, 2, 3 interleaved
                ack = await stream.publish(partition, f"ws:{i}", f"event {i}".encode())
                published.setdefault(partition, []).append((ack.seq, f"ws:{i}"))
            mine = published[2]
            assert len(mine) == 10

            everything = await stream.read(2, 0, max_messages=100, timeout=0.5)
            assert [(m.seq, m.msg_id) for m in everything] == mine
            assert {m.partition for m in everything} == {2}
            assert everything[0].payload == f"event {mine[0][1].split(':')[1]}".encode()

            # From a stored position, in pages: each page starts after the last seq the caller kept.
            position, pages = mine[3][0], []
            while True:
                page = await stream.read(2, position, max_messages=3, timeout=0.3)
                if not page:
                    break
                pages.append([m.seq for m in page])
                position = page[-1].seq
            assert [seq for page in pages for seq in page] == [seq for seq, _ in mine[4:]]
            assert all(len(page) <= 3 for page in pages)

            # Nothing after the last one: an empty list after the timeout, not an error.
            assert await stream.read(2, mine[-1][0], max_messages=10, timeout=0.2) == []
            # A partition nobody published to.
            assert await stream.read(7, 0, max_messages=10, timeout=0.2) == []

    asyncio.run(run())


def test_read_waits_for_an_event_published_while_it_waits(stream_settings: StreamSettings) -> None:
    async def run() -> None:
        async with EventStream(stream_settings) as reader, EventStream(stream_settings) as writer:
            await reader.ensure_stream()
            waiting = asyncio.create_task(reader.read(1, 0, max_messages=5, timeout=5.0))
            # Publish only once the read's consumer exists, so the read is really waiting for it.
            nc = await nats.connect(servers=list(stream_settings.servers))
            try:
                deadline = asyncio.get_running_loop().time() + 5.0
                while not await nc.jsm().consumers_info(stream_settings.stream):
                    assert asyncio.get_running_loop().time() < deadline, "the read made no consumer"
                    await asyncio.sleep(0.02)
            finally:
                await nc.close()
            ack = await writer.publish(1, "ws:late", b"late")
            got = await waiting
            assert [(m.seq, m.msg_id) for m in got] == [(ack.seq, "ws:late")]

    asyncio.run(run())
