"""Partition leases in SQL (store/partition_leases.py), on SQLite and PostgreSQL: claims,
fencing epochs, releases and positions. Each module runs on a database of its own
(`lease_engine`): lease rows are not per workspace."""

from __future__ import annotations

from typing import Any

import pytest

from nudgeflow.errors import StoreError
from nudgeflow.model.partitions import PartitionCountError
from nudgeflow.store import partition_leases as leases
from nudgeflow.store.partition_leases import LeaseArgumentError, LeaseLost

TTL = 6000
T0 = 1_800_000_000_000


def claim(engine: Any, worker: str, now: int, partitions: int = 64) -> leases.Claim:
    with engine.begin() as conn:
        if not leases.heartbeat(conn, worker, now):
            leases.register_worker(conn, worker, host="test", pid=1, now_ms=now)
        return leases.claim(conn, worker, partitions, now, TTL)


def test_a_lone_worker_takes_every_partition_with_a_first_epoch(lease_engine: Any) -> None:
    first = claim(lease_engine, "w-a", T0)
    assert first.owned == dict.fromkeys(range(64), 1)
    assert first.taken == tuple(range(64)) and first.given_back == ()
    assert (first.live_workers, first.quota) == (1, 64)

    again = claim(lease_engine, "w-a", T0 + 2000)  # a renewal: same epochs, nothing taken
    assert again.owned == first.owned and again.taken == ()
    with lease_engine.connect() as conn:
        assert {lease.expires_at_ms for lease in leases.leases(conn)} == {T0 + 2000 + TTL}


def test_a_second_worker_gets_its_quota_once_the_first_gives_back(lease_engine: Any) -> None:
    claim(lease_engine, "w-a", T0)
    b = claim(lease_engine, "w-b", T0 + 1000)
    assert b.owned == {} and b.quota == 32  # nothing free: it waits for w-a's surplus
    a = claim(lease_engine, "w-a", T0 + 2000)
    assert a.given_back == tuple(range(32, 64)) and set(a.owned) == set(range(32))
    b = claim(lease_engine, "w-b", T0 + 3000)
    assert b.owned == dict.fromkeys(range(32, 64), 3)  # taken (1), given back (2), taken (3)


def test_an_expired_lease_goes_to_another_worker_with_the_next_epoch(lease_engine: Any) -> None:
    claim(lease_engine, "w-a", T0, partitions=4)
    early = claim(lease_engine, "w-b", T0 + TTL - 1, partitions=4)
    assert early.owned == {}  # w-a's heartbeat is still fresh, its leases unexpired
    late = claim(lease_engine, "w-b", T0 + TTL, partitions=4)
    assert late.owned == dict.fromkeys(range(4), 2) and late.live_workers == 1
    with lease_engine.connect() as conn:
        assert leases.owned(conn, "w-a") == {}
        assert {lease.moved_at_ms for lease in leases.leases(conn)} == {T0 + TTL}


def test_a_stale_fence_raises_lease_lost_and_its_transaction_writes_nothing(lease_engine: Any) -> None:
    claim(lease_engine, "w-a", T0, partitions=2)
    with lease_engine.begin() as conn:
        leases.save_position(conn, 0, 10, T0)
        leases.fence(conn, 0, 1)  # current: the write commits
    claim(lease_engine, "w-b", T0 + TTL, partitions=2)  # w-a's leases moved (epoch 2)

    with pytest.raises(LeaseLost) as caught, lease_engine.begin() as conn:
        leases.save_position(conn, 0, 11, T0 + TTL)
        leases.fence(conn, 0, 1)
    assert (caught.value.partition, caught.value.epoch, caught.value.current) == (0, 1, 2)
    assert isinstance(caught.value, StoreError)
    assert "partition 0" in str(caught.value) and "epoch 1" in str(caught.value)
    with lease_engine.connect() as conn:
        assert leases.position(conn, 0) == 10  # rolled back with the failed fence

    with lease_engine.begin() as conn:  # the new owner's epoch passes, for several at once
        leases.fence_all(conn, {1: 2, 0: 2})
        leases.save_position(conn, 0, 11, T0 + TTL)
    with lease_engine.connect() as conn:
        assert leases.position(conn, 0) == 11


def test_a_partition_without_a_lease_row_fails_its_fence(lease_engine: Any) -> None:
    with pytest.raises(LeaseLost, match="no lease row"), lease_engine.begin() as conn:
        leases.fence(conn, 7, 1)


def test_release_frees_every_lease_at_once_and_fences_the_old_epochs_out(lease_engine: Any) -> None:
    claim(lease_engine, "w-a", T0, partitions=8)
    with lease_engine.begin() as conn:
        assert leases.stop_worker(conn, "w-a", T0 + 100) == tuple(range(8))
    with lease_engine.connect() as conn:
        assert all(lease.owner is None and lease.epoch == 2 for lease in leases.leases(conn))
        assert [w.stopped_at_ms for w in leases.workers(conn)] == [T0 + 100]
    with pytest.raises(LeaseLost), lease_engine.begin() as conn:
        leases.fence(conn, 3, 1)
    b = claim(lease_engine, "w-b", T0 + 200, partitions=8)  # no wait for a TTL
    assert b.owned == dict.fromkeys(range(8), 3) and b.live_workers == 1  # w-a stopped: not live


def test_positions_only_move_forward(lease_engine: Any) -> None:
    with lease_engine.begin() as conn:
        assert leases.position(conn, 5) is None
        leases.save_position(conn, 5, 100, T0)
        leases.save_position(conn, 5, 90, T0 + 1)  # a redelivery's older position changes nothing
        leases.save_position(conn, 6, 7, T0 + 2)
    with lease_engine.connect() as conn:
        got = leases.positions(conn)
    assert {p: (pos.stream_seq, pos.updated_at_ms) for p, pos in got.items()} == {5: (100, T0), 6: (7, T0 + 2)}


def test_quotas_share_partitions_by_worker_id() -> None:
    assert leases.quotas({"c", "a", "b"}, 64) == {"a": 22, "b": 21, "c": 21}
    assert leases.quotas({"x"}, 64) == {"x": 64}
    assert sum(leases.quotas({f"w{i}" for i in range(7)}, 100).values()) == 100
    assert leases.quotas({f"w{i}" for i in range(5)}, 3) == {"w0": 1, "w1": 1, "w2": 1, "w3": 0, "w4": 0}


@pytest.mark.parametrize(
    ("worker", "partitions", "ttl", "error", "words"),
    [
        ("", 64, TTL, LeaseArgumentError, "worker id"),
        ("x" * 81, 64, TTL, LeaseArgumentError, "worker id"),
        ("w", 0, TTL, PartitionCountError, "between 1 and 4096"),
        ("w", 4097, TTL, PartitionCountError, "between 1 and 4096"),
        ("w", 64, 0, LeaseArgumentError, "TTL"),
    ],
)
def test_a_bad_claim_is_refused_naming_what_is_wrong(
    lease_engine: Any, worker: str, partitions: int, ttl: int, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words), lease_engine.begin() as conn:
        leases.claim(conn, worker, partitions, T0, ttl)
