"""How a shared batch's events are split between a worker's partitions (partition_work.shares)."""

from __future__ import annotations

from nudgeflow.store.partition_work import shares


def test_partitions_that_fit_get_all_they_have_and_the_rest_split_what_is_left() -> None:
    assert shares({1: 5, 2: 0, 3: 7}, 1000) == {1: 5, 3: 7}  # everything fits; nothing for an empty one
    assert shares({1: 10, 2: 500, 3: 800}, 400) == {1: 10, 2: 195, 3: 195}
    assert sum(shares({p: 1000 for p in range(64)}, 1000).values()) <= 1000
    assert shares({p: 1000 for p in range(64)}, 1000)[0] >= 15
    assert shares({7: 3}, 0) == {7: 1}  # a batch shrunk to nothing still moves one event
