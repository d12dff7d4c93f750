"""Partitions of people: which of P partitions decides a person's events (docs/partitions.md).

All work for one person is decided in order by one engine worker at a time; the distributed
runtime gets there by routing each event to a partition picked from the workspace and the
person's canonical id (the profile id the person resolves to at ingest), and by giving each
partition to one worker through a lease (store/partition_leases.py).

The function is part of the stored data's meaning: an event log and the positions kept per
partition are only right while every process computes the same partition for the same
person. So it is fixed here, tested against recorded values, and never depends on Python's
per-process `hash()` seed. Changing it, or the partition count of a deployment, moves people
between partitions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from nudgeflow.errors import ModelError

DEFAULT_PARTITIONS = 64
# A bound on the lease table's size and on a worker's claim (each partition is a row, read
# on every claim); far beyond the workers one deployment runs.
MAX_PARTITIONS = 4096


class PartitionCountError(ModelError, ValueError):
    """A partition count outside 1..MAX_PARTITIONS, or not a whole number."""


def check_partitions(partitions: object) -> int:
    """`partitions` when it is a valid partition count; else PartitionCountError naming it."""
    # bool is an int in Python, and True partitions would mean one: refuse it as the typo it is.
    if isinstance(partitions, bool) or not isinstance(partitions, int):
        raise PartitionCountError(f"the partition count must be a whole number, not {partitions!r}")
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise PartitionCountError(f"the partition count must be between 1 and {MAX_PARTITIONS}, not {partitions}")
    return partitions


def partition_of(workspace_id: str, canonical_id: str, partitions: int = DEFAULT_PARTITIONS) -> int:
    """The partition (0..partitions-1) of a person: blake2b of "workspace\\0canonical id"
    with an 8-byte digest, read as a big-endian number, modulo the partition count.

    The NUL separator keeps ("ab", "c") and ("a", "bc") apart; ids never hold a NUL (the
    model refuses one at the edge). The modulo's bias is at most P / 2**64: none that matters.
    """
    check_partitions(partitions)
    digest = hashlib.blake2b(f"{workspace_id}\0{canonical_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def ranges(partitions: Iterable[int]) -> str:
    """Partition numbers as compact ranges, "0-20, 42, 50-51" ("none" for none): how the
    status command and the logs name a set of partitions."""
    numbers = sorted(set(partitions))
    if not numbers:
        return "none"
    parts: list[str] = []
    start = prev = numbers[0]
    for n in numbers[1:]:
        if n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = n
    parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ", ".join(parts)
