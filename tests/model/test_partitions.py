"""The partition of a person: stable across processes and releases, and spread evenly."""

from __future__ import annotations

from collections import Counter

import pytest

from nudgeflow.errors import ModelError
from nudgeflow.model.partitions import (
    DEFAULT_PARTITIONS,
    MAX_PARTITIONS,
    PartitionCountError,
    partition_of,
    ranges,
)


@pytest.mark.parametrize(
    ("workspace_id", "canonical_id", "partitions", "expected"),
    [
        # Recorded once from the function as designed (docs/partitions.md). A change here moves
        # people between partitions in every running deployment: it is never a refactor.
        ("ws_a", "p_1", 64, 19),
        ("ws_a", "p_2", 64, 10),
        ("ws_b", "p_1", 64, 42),
        ("ws_shop", "prof_0123456789", 64, 59),
        ("ws_a", "p_1", 4096, 339),
        ("ws_shop", "prof_0123456789", 4096, 2043),
        ("ws_a", "p_1", 1, 0),
    ],
)
def test_the_partition_of_a_person_is_the_recorded_one(
    workspace_id: str, canonical_id: str, partitions: int, expected: int
) -> None:
    assert partition_of(workspace_id, canonical_id, partitions) == expected


def test_the_hash_is_blake2b_of_workspace_nul_id_big_endian() -> None:
    # 15922361963392745811 = the 8-byte blake2b digest of b"ws_a\0p_1", big-endian.
    assert partition_of("ws_a", "p_1", MAX_PARTITIONS) == 15922361963392745811 % MAX_PARTITIONS
    assert DEFAULT_PARTITIONS == 64
    assert partition_of("ws_a", "p_1") == partition_of("ws_a", "p_1", 64)


def test_the_separator_keeps_workspace_and_id_apart() -> None:
    assert partition_of("ab", "c", 4096) != partition_of("a", "bc", 4096)


def test_100k_people_spread_evenly_over_64_partitions() -> None:
    counts = Counter(partition_of("ws_spread", f"prof_{i:08d}") for i in range(100_000))
    assert set(counts) == set(range(64))
    expected = 100_000 / 64
    # Binomial: sd = sqrt(n p (1 - p)) ~ 39 of 1,562 (2.5 %); the largest of 64 deviations is
    # about 3 sd. Each partition within 10 % (4 sd) of its share, and a chi-square within its
    # 0.999 quantile for 63 degrees of freedom (103.4): a bad hash (or a bias to the low
    # partitions) misses both by far. The ids are fixed, so the outcome is too.
    assert max(abs(c - expected) / expected for c in counts.values()) < 0.10
    chi_square = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi_square < 103.4


@pytest.mark.parametrize("bad", [0, -1, MAX_PARTITIONS + 1, True, 2.0, "64", None])
def test_a_partition_count_out_of_range_is_refused_with_its_value(bad: object) -> None:
    with pytest.raises(PartitionCountError) as caught:
        partition_of("ws", "p", bad)  # type: ignore[arg-type]
    assert repr(bad) in str(caught.value) or str(bad) in str(caught.value)
    assert isinstance(caught.value, ModelError) and isinstance(caught.value, ValueError)


def test_ranges_are_compact() -> None:
    assert ranges([]) == "none"
    assert ranges([3]) == "3"
    assert ranges(range(21)) == "0-20"
    assert ranges([50, 51, 0, 1, 2, 42, 2]) == "0-2, 42, 50-51"
