"""Deciding one partition's events and timers, fenced: the partitioned engine worker's batch.

The same decisions as runtime/processor.py (`DecisionBatch`, the core's `Engine`), for the
events and timers of one partition, in a transaction that first fences the partition's lease
(store/partition_leases.fence) and ends by saving the partition's position with the state it
produced. So a worker that lost its lease cannot commit, and an event is decided exactly once
although a batch may be read twice (a worker dies before its commit: the next owner reads the
batch again from the saved position).

Events are read by the partition's offset (store/partition_log.py), which becomes visible
in offset order: no gaps to wait for, unlike the single engine's `seq` cursor.

Merges across partitions (docs/partitions.md). Ingest records, with each merge of A into U,
A's partition (pa) and the last offset it had there (from_offset). Then:
- pa's owner decides A's events up to from_offset on A, as before the merge;
- an event of A after it (ingest resolved it to A just before the merge committed), or a
  timer of A once pa has passed from_offset, is *forwarded*: moved to U, in U's partition
  (pu), with a new offset there, and not decided in pa;
- pu's owner decides nothing of U while pa's position is below from_offset: the partition
  stops before U's event (or leaves U's timer) and tries again at its next batch. When it
  goes on, the fold (runtime/merges.fold_merged) brings A's state into U first.
So A's events before the merge are decided on A in their order, then folded; the ones after
it are decided on U; neither side's state is lost. The wait is bounded by pa's lag. It
cannot deadlock: a partition only ever waits for another to reach an offset it had when an
earlier merge committed (each merge locks both partitions' heads), so waits point back in
commit order. When A and U share a partition, A's events are decided on U, as the single
engine does (their order is the partition's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.model.partitions import partition_of
from nudgeflow.runtime.processor import (
    DecisionBatch,
    EngineCache,
    RuntimeStats,
    decide_events,
    decide_timers,
)
from nudgeflow.store import partition_log, partition_work
from nudgeflow.store.engine_state import claim_due_timers, cursor_position, drop_timers, merged_into
from nudgeflow.store.groups import refresh_group_traits
from nudgeflow.store.partition_leases import fence, fence_all, position, save_position

DECIDE, FORWARD = "decide", "forward"


def start_position(conn: Connection, partition: int) -> int:
    """The partition's saved position; at its first batch, where the single engine left it
    (store/partition_work.handover_position)."""
    saved = position(conn, partition)
    if saved is not None:
        return saved
    return partition_work.handover_position(conn, partition, cursor_position(conn))


def _route(
    partition: int,
    workspace_id: str,
    profile_id: str,
    offset: int,
    merged: dict[str, tuple[str, Any, Any]],
    count: int,
) -> tuple[str, str, int]:
    """(DECIDE or FORWARD, the profile to decide it on or forward it to, that profile's partition);
    `count` is the deployment's partition count (store/partition_log.partition_count)."""
    found = merged.get(profile_id)
    if found is not None:
        into, from_partition, from_offset = found
        into_partition = partition_of(workspace_id, into, count)
        if into_partition == partition:
            return DECIDE, into, partition  # one partition: decided on the survivor, as the single engine does
        if from_partition == partition and from_offset is not None and offset <= int(from_offset):
            return DECIDE, profile_id, partition  # before the merge: on the merged-away profile
        return FORWARD, into, into_partition
    own = partition_of(workspace_id, profile_id, count)
    if own != partition:  # an event of A the fold re-pointed to U before this partition read it
        return FORWARD, profile_id, own
    return DECIDE, profile_id, partition


def process_partition_events(
    conn: Connection,
    engines: EngineCache,
    clock: Clock,
    partition: int,
    epoch: int,
    max_events: int = 1000,
    stats: RuntimeStats | None = None,
) -> int:
    """Decide the partition's next events, fenced by `epoch`; returns how many were read
    (forwarded ones included). Raises LeaseLost when the lease moved: roll back."""
    return process_partitions_events(conn, engines, clock, {partition: epoch}, max_events, stats).read


@dataclass
class PartitionsRead:
    read: int = 0  # events read and passed (decided or forwarded), every partition's
    full: bool = False  # a partition gave as many as it was allowed: more may be waiting


def process_partitions_events(
    conn: Connection,
    engines: EngineCache,
    clock: Clock,
    epochs: Mapping[int, int],
    max_events: int = 1000,
    stats: RuntimeStats | None = None,
) -> PartitionsRead:
    """Decide the next events of several partitions in one transaction, each fenced by its
    epoch (in partition order, as claims lock) and read from its own position, up to
    `max_events` shared between them; one DecisionBatch for all, and each partition's
    position saved with it. One transaction for many partitions keeps batches large when the
    events spread thin over them. Raises LeaseLost when one lease moved: roll back."""
    stats = stats if stats is not None else RuntimeStats()
    fence_all(conn, epochs)
    now_ms = to_ms(clock.now())
    # Every offset up to a head read here is either visible below or never will be (a
    # duplicate dropped at insert): store/partition_log.take_offsets.
    spans = partition_work.spans(conn, list(epochs))
    positions = {p: position if position is not None else start_position(conn, p) for p, (_, position) in spans.items()}
    lags = {p: spans[p][0] - positions[p] for p in spans}
    for p, (head, stored) in spans.items():
        if stored is None and lags[p] <= 0:
            # Taken over from the single engine with nothing new: saved now, or the partition
            # would count its old events as lag (status, /metrics, `db single-engine`) and be
            # visited again at every poll.
            save_position(conn, p, max(head, positions[p]), now_ms)
    allowed = partition_work.shares(lags, max_events)
    result = PartitionsRead(full=any(allowed.get(p, 0) < lag for p, lag in lags.items()))
    reads: list[tuple[int, int, Sequence[Any], int]] = []  # (partition, head, rows, cut)
    for partition, share in sorted(allowed.items()):
        head, after = spans[partition][0], positions[partition]
        rows = partition_log.read(conn, partition, after, share)
        if not rows:
            save_position(conn, partition, head, now_ms)  # only offsets never used lay between
            continue
        reads.append((partition, head, rows, len(rows)))
    if not reads:
        return result
    merged = merged_into(conn, list({r[3] for _, _, rows, _ in reads for r in rows}))
    count = partition_log.partition_count(conn)
    forwards: list[tuple[int, int, str]] = []
    decided: list[tuple[int, str, str, int, str | bytes]] = []
    for i, (partition, head, rows, _) in enumerate(reads):
        routes = [_route(partition, r[2], r[3], int(r[0]), merged, count) for r in rows]
        waiting = partition_work.waiting_merges(conn, partition, [who for how, who, _ in routes if how == DECIDE])
        cut = len(rows)
        for n, (how, who, _) in enumerate(routes):
            if how == DECIDE and who in waiting:
                cut = n  # the partition waits here for the other partition to drain the merge
                break
        reads[i] = (partition, head, rows, cut)
        for row, (how, who, target) in zip(rows[:cut], routes[:cut], strict=True):
            if how == FORWARD:
                forwards.append((target, int(row[1]), who))
            else:
                decided.append((int(row[1]), row[2], who, int(row[4]), row[5]))
    for target_partition, seq, profile_id in sorted(forwards):  # heads locked in partition order, as ingest does
        partition_log.forward(conn, seq, profile_id, target_partition)
    batch = DecisionBatch(conn, engines, stats, list({d[2] for d in decided}), keep_states=True)
    refresh_group_traits(conn, batch.states, {d[2]: d[1] for d in decided})
    decide_events(batch, decided, now_ms, stats)
    counts = batch.write(now_ms)
    for partition, head, rows, cut in reads:
        if cut:
            last = int(rows[cut - 1][0])
            everything = cut == len(rows) < allowed[partition]  # fewer than asked: all up to the head
            save_position(conn, partition, max(last, head) if everything else last, now_ms)
        result.read += cut
    stats.events_processed += result.read
    stats.add_counts(counts)
    return result


def fire_partition_timers(
    conn: Connection,
    engines: EngineCache,
    clock: Clock,
    partition: int,
    epoch: int,
    max_timers: int = 1000,
    stats: RuntimeStats | None = None,
) -> int:
    """Fire the partition's due timers, fenced by `epoch`; returns how many were handled
    (fired or forwarded; a timer of a person waiting for a merge is left for later)."""
    stats = stats if stats is not None else RuntimeStats()
    fence(conn, partition, epoch)
    now_ms = to_ms(clock.now())
    rows = claim_due_timers(conn, now_ms, max_timers, partition=partition)
    if not rows:
        return 0
    merged = merged_into(conn, list({r[0] for r in rows}))
    here = start_position(conn, partition) if merged else 0
    fire: list[Any] = []
    handled = 0
    for row in rows:
        profile_id, key, workspace_id = row[0], row[1], row[2]
        found = merged.get(profile_id)
        if found is not None:
            into, from_partition, from_offset = found
            still_ours = from_partition == partition and from_offset is not None and here < int(from_offset)
            into_partition = partition_log.partition_for(conn, workspace_id, into)
            if not still_ours or into_partition == partition:
                partition_work.forward_timer(conn, profile_id, key, into, into_partition)
                handled += 1
                continue
        elif (own := partition_log.partition_for(conn, workspace_id, profile_id)) != partition:
            partition_work.forward_timer(conn, profile_id, key, profile_id, own)
            handled += 1
            continue
        fire.append(row)
    waiting = partition_work.waiting_merges(conn, partition, [r[0] for r in fire])
    fire = [r for r in fire if r[0] not in waiting]
    if fire:
        batch = DecisionBatch(conn, engines, stats, list({r[0] for r in fire}))
        refresh_group_traits(conn, batch.states, {r[0]: r[2] for r in fire})
        decide_timers(batch, fire, now_ms, stats)
        counts = batch.write(now_ms)
        stats.add_counts(counts)
        stats.timers_fired += len(fire)
    return handled + len(fire)


def skip_partition_event(conn: Connection, partition: int, epoch: int, now_ms: int) -> str | None:
    """Set aside the partition's next event without deciding it (the safety net's last resort)."""
    fence(conn, partition, epoch)
    rows = partition_log.read(conn, partition, start_position(conn, partition), 1)
    if not rows:
        return None
    save_position(conn, partition, int(rows[0][0]), now_ms)
    return f"event:{rows[0][1]}"


def drop_partition_timer(conn: Connection, partition: int, epoch: int, now_ms: int) -> str | None:
    """Drop the partition's next due timer, which cannot be fired at all (a last resort)."""
    fence(conn, partition, epoch)
    rows = claim_due_timers(conn, now_ms, 1, partition=partition)
    if not rows:
        return None
    drop_timers(conn, [(rows[0][0], rows[0][1])])
    return f"timer:{rows[0][0]}:{rows[0][1]}"
