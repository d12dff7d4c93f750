"""A node restarted (SIGTERM, then started again) while events are published loses no acknowledged event.

This module has its own cluster (the fixture is module-scoped): it restarts the stream's leader, the
node whose loss is hardest on a write in flight.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from nudgeflow.stream.client import EventStream
from nudgeflow.stream.config import StreamSettings
from nudgeflow.stream.errors import StreamUnavailable
from tests.stream.cluster import NatsCluster

EVENTS = 500
STOP_AT, START_AT = 100, 250  # acknowledged events before the leader is stopped, and before it returns
RETRY_DEADLINE_SECONDS = 30.0  # one event may wait this long for a new leader before the test fails


def test_a_restarted_leader_loses_no_acknowledged_event(
    nats_cluster: NatsCluster, stream_settings: StreamSettings
) -> None:
    acked: dict[str, int] = {}  # msg_id -> the stream sequence JetStream acknowledged
    retries = duplicates = 0

    async def publisher(stream: EventStream) -> None:
        nonlocal retries, duplicates
        for i in range(EVENTS):
            msg_id = f"ws:{i}"
            deadline = time.monotonic() + RETRY_DEADLINE_SECONDS
            while True:
                try:
                    ack = await stream.publish(i % stream_settings.partitions, msg_id, f"event {i}".encode())
                    break
                except StreamUnavailable:
                    # Not known to be stored: the sender retries with the same id, as an API process would.
                    assert time.monotonic() < deadline, f"{msg_id} not acknowledged in {RETRY_DEADLINE_SECONDS} s"
                    retries += 1
                    await asyncio.sleep(0.05)
            duplicates += ack.duplicate  # an earlier attempt was stored but its acknowledgement lost
            acked[msg_id] = ack.seq

    async def until_acked(count: int) -> None:
        deadline = time.monotonic() + 60
        while len(acked) < count:
            assert time.monotonic() < deadline, f"only {len(acked)} of {count} acknowledged"
            await asyncio.sleep(0.01)

    # A publish caught by the restart waits this long before it is retried.
    settings = replace(stream_settings, request_timeout_seconds=3.0)

    async def run() -> None:
        async with EventStream(settings) as stream:
            await stream.ensure_stream()
            task = asyncio.create_task(publisher(stream))
            await until_acked(STOP_AT)
            leader = nats_cluster.node((await stream.describe()).leader or "")
            await asyncio.to_thread(nats_cluster.stop_node, leader)
            await until_acked(START_AT)
            await asyncio.to_thread(nats_cluster.start_node, leader)
            await task

            # Every replica current again (the restarted one caught up), within a bound.
            deadline = time.monotonic() + 20
            while (state := await stream.describe()).current_replicas < 3:
                assert time.monotonic() < deadline, f"replicas not current: {state}"
                await asyncio.sleep(0.1)

            stored: dict[str, int] = {}
            for partition in range(stream_settings.partitions):
                position = 0
                while page := await stream.read(partition, position, max_messages=200, timeout=0.3):
                    for m in page:
                        assert m.msg_id is not None and m.msg_id not in stored, f"{m.msg_id} stored twice"
                        stored[m.msg_id] = m.seq
                    position = page[-1].seq
            assert stored == acked  # every acknowledged event, at the sequence acknowledged, and nothing else
            assert state.messages == EVENTS

    asyncio.run(run())
    assert len(acked) == EVENTS
    print(f"{EVENTS} acknowledged; {retries} retries, {duplicates} acknowledged as duplicates of a lost ack")
