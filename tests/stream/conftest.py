"""The stream tests' fixtures: a real 3-node NATS cluster per test module, and a stream of each test's own.

The cluster is module-scoped: every module (and every xdist worker running one) starts its own on
ports the OS hands out (a port taken in between starts it again on fresh ones), so the modules that
restart or stop nodes disturb no one else. Without the wheel's nats-server the tests FAIL with what
to install; they never skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from nudgeflow.stream.config import StreamSettings
from tests.stream.cluster import NatsCluster, NatsServerMissing, nats_server_binary, start_cluster


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    try:
        binary = nats_server_binary()
    except NatsServerMissing as exc:
        pytest.fail(str(exc))
    cluster = start_cluster(binary, tmp_path_factory.mktemp("nats-cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def stream_settings(nats_cluster: NatsCluster) -> StreamSettings:
    """Settings for a stream of this test's own (name and subjects), on the module's cluster,
    once every node of it is current: on a loaded machine a follower can miss heartbeats and
    be offline for a moment, and JetStream then refuses to place 3 replicas ("no suitable
    peers for placement"), which is right, and not what these tests are about."""
    nats_cluster.wait_ready()
    tag = uuid.uuid4().hex[:10]
    return StreamSettings(
        servers=tuple(nats_cluster.urls),
        stream=f"T_{tag}",
        subject_prefix=f"t{tag}.events",
        partitions=8,
        # Generous: the suite shares two cores, and with sync_interval: always each write waits on fsync.
        # 10 s was once not enough in a full run: a stream lookup right after creating the
        # stream timed out while the loaded cluster was busy (clean-clone run, 2026-12-07).
        request_timeout_seconds=30.0,
        connect_timeout_seconds=2.0,
    )
