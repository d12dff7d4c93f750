"""Carrying out the core's effects for many profiles in one transaction, in bulk.

The processor collects the effects of a whole batch of events (or fired timers) here, then
writes them with a handful of executemany statements in the transaction that also moves the
cursor and saves the profiles' state: either all of it is durable or none of it is.

Effects of one profile are ordered, bulk statements are not, so effects on the same row are
folded first: the last word on a timer (schedule or cancel), on a run, wins; trait updates
are applied in order. Outbox rows are keyed by the message's idempotency key with ON
CONFLICT DO NOTHING: a batch that is decided twice (a crash after the decisions but before
the commit, a cursor moved back by hand) queues each message once. The one exception is a
message a send policy deferred (MessageWithheld, status `deferred`): the decision taken when
it is released, under the same key, replaces its row (store/outbox.py), in the batch as in
the table.

Run rows also feed the report rollups (store/rollups.count_runs): an entry the first time a
run's row is written, a conversion the first time it carries one; and, for a run in the
global control group's comparison, the program's people and their conversions; and a
treated run's experiment arms (its `paths`: split and variant steps -> the arm chosen), each
recorded once in run_arms and counted in its arm with the run's conversion
(store/rollups.count_arms). Holdout runs and global-control runs are in no arm: the first is
sent nothing by design, the second no marketing, so neither is exposed to what the arms
differ in.

Segment changes (SegmentChanged) do two things: the members rows follow the last word on
each membership and the daily sizes count every change on its own day, however many a batch
holds (store/segments.write_changes), and every change is appended
to the person's event log as `Segment Entered` / `Segment Exited`, with a message id made
from the change itself, so a batch decided twice appends it once. The engine reads those
events back like any other; segment triggers do not listen to them (they fire from the
membership change, in the turn that made it: core/segments.py), so nothing enters twice.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection

from nudgeflow.core.effects import (
    CancelTimer,
    Effect,
    MessageFailed,
    MessageWithheld,
    RunChanged,
    ScheduleTimer,
    SegmentChanged,
    SendMessage,
    UpdateProfile,
)
from nudgeflow.core.state import ProfileState
from nudgeflow.model.event_names import SEGMENT_ENTERED, SEGMENT_EXITED
from nudgeflow.model.events import OWN_SEGMENT_PREFIX
from nudgeflow.model.partitions import partition_of
from nudgeflow.model.reasons import family_of
from nudgeflow.store import engine_state, event_log, partition_log, rollups, segments, sql
from nudgeflow.store.outbox import DEFERRED, DROPPED, FAILED, PENDING, STATUS, queue

TIMER_COLUMNS = ("profile_id", "key", "workspace_id", "due_at_ms", "payload", "partition")
RUN_COLUMNS = (
    "id",
    "workspace_id",
    "journey_id",
    "version",
    "profile_id",
    "status",
    "step",
    "holdout",
    "entered_at_ms",
    "ended_at_ms",
    "exit_reason",
    "converted_at_ms",
    "revenue",
    "updated_at_ms",
    "control",
    "control_cohort",
    "converted_by",
)
# What can change on a run once its row exists. Its workspace, journey, version, holdout,
# control group side and entry never do, and its profile moves only on a merge, which re-points the rows itself
# (runtime/merges.py). Setting an indexed column rewrites its index entry even when the
# value is the same: leaving profile_id out takes a random index page off every update.
RUN_UPDATED = (
    "status",
    "step",
    "ended_at_ms",
    "exit_reason",
    "converted_at_ms",
    "revenue",
    "updated_at_ms",
    "converted_by",
)
STATE_COLUMNS = ("profile_id", "workspace_id", "state", "updated_at_ms")


@dataclass
class WriteCounts:
    messages_queued: int = 0
    messages_failed: int = 0
    # Decisions of the send policies to withhold a message, by (status, reason family,
    # channel): bounded labels. Every decision counts, even one a later decision of the
    # batch overtook (a deferral released in the same batch was still a deferral).
    messages_withheld: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    timers_scheduled: int = 0
    timers_deleted: int = 0
    runs_changed: int = 0
    profiles_updated: int = 0
    states_written: int = 0
    segments_entered: int = 0  # members rows added
    segments_exited: int = 0  # members rows removed
    segment_events: int = 0  # Segment Entered / Exited appended to the event log


_EMPTY_STATE = ProfileState("").to_json()  # the profile id is not part of the document
_DELETE = None  # a folded timer operation meaning "no such timer after this transaction"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class EffectsBatch:
    """Everything one transaction of the runtime writes, gathered, folded, then written in bulk."""

    def __init__(self, *, count_rollups: bool = True) -> None:
        # False only in benchmarks/engine.py's rollups phase, which measures what counting the
        # report rollups costs the engine by running the same work with and without it. Not a
        # setting: reports are wrong without the counts.
        self._count_rollups = count_rollups
        # By (workspace, idempotency key): a later row of the same key replaces only a deferred one.
        self._outbox: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._timers: dict[tuple[str, str], tuple[Any, ...] | None] = {}
        self._fired: dict[tuple[str, str], int] = {}  # fired timers' rowids (SQLite), by key
        self._runs: dict[str, tuple[Any, ...]] = {}
        self._traits: dict[str, list[tuple[dict[str, Any], list[str]]]] = {}
        self._states: dict[str, tuple[str, str]] = {}
        self._withheld: Counter[tuple[str, str, str]] = Counter()
        # (workspace, segment, profile) -> (member, at_ms): the last word on each membership.
        self._members: dict[tuple[str, str, str], segments.Change] = {}
        # The changes before the last word, for the few memberships that changed more than once
        # in the batch (a backlog's days of one person): each counts on its own day.
        self._earlier: dict[tuple[str, str, str], list[segments.Change]] = {}
        # (workspace, profile, event name, message id, properties, at_ms), in decision order.
        self._segment_events: list[tuple[str, str, str, str, dict[str, Any], int]] = []
        # Run id -> {experiment step: arm} of treated runs outside the global control group,
        # and (run id, step) of the batch's messages with a variant (store/rollups.count_arms).
        self._arms: dict[str, dict[str, str]] = {}
        self._variant_steps: set[tuple[str, str]] = set()

    def __bool__(self) -> bool:
        return bool(self._outbox or self._timers or self._runs or self._traits or self._states or self._segment_events)

    @property
    def messages(self) -> int:
        """Outbox rows queued so far (sends, recorded failures and withheld messages)."""
        return len(self._outbox)

    def delete_timer(self, profile_id: str, key: str, rowid: int | None = None) -> None:
        """A fired timer: gone, unless an effect that follows arms the same key again, or one
        that came before in this batch already did.

        The second case: timers are claimed as a batch, then decided one by one, so a timer
        can fire as it was stored after an earlier decision of the batch armed its key anew
        (the send policies decide the messages due together on the first of their release
        timers, and re-arm the others' timers when they defer them again). That arm is newer
        than the row that fired: deleting it would lose the timer for good.

        `rowid` (SQLite) is the fired row's, as claimed: its write then skips the key's index."""
        if self._timers.get((profile_id, key), _DELETE) is _DELETE:
            self._timers[(profile_id, key)] = _DELETE
        if rowid is not None:
            self._fired[(profile_id, key)] = rowid

    def add(self, workspace_id: str, profile_id: str, effects: Iterable[Effect], now_ms: int) -> None:
        """Take one decision's effects. Raises (and takes none of them) if one cannot be stored.

        Values are serialized here, not at write time, so that an effect the database could
        not take is charged to the one event or timer that produced it.
        """
        outbox: list[tuple[Any, ...]] = []
        timers: list[tuple[tuple[str, str], tuple[Any, ...] | None]] = []
        runs: list[tuple[str, tuple[Any, ...]]] = []
        traits: list[tuple[dict[str, Any], list[str]]] = []
        withheld: list[tuple[str, str, str]] = []
        changes: list[tuple[str, str, str, str, dict[str, Any], int]] = []
        members: list[SegmentChanged] = []
        arms: list[tuple[str, dict[str, str]]] = []
        variant_steps: list[tuple[str, str]] = []
        for effect in effects:
            if type(effect) is SegmentChanged:
                # First: with live segments, most of a decision's effects are these. The id
                # made here serializes the cause, so one that cannot be stored fails here,
                # for this decision.
                changes.append(_segment_event(workspace_id, profile_id, effect))
                members.append(effect)
                continue
            if type(effect) is ScheduleTimer:
                # Next: with many journeys, most of the rest are timers (a watch and an
                # inactivity timer per journey), tested here before the other kinds.
                payload = _dumps(effect.payload)
                timer = (profile_id, effect.key, workspace_id, effect.due_ms, payload)
                timers.append(((profile_id, effect.key), timer))
                continue
            if isinstance(effect, (SendMessage, MessageWithheld)) and effect.variant is not None:
                variant_steps.append((effect.run_id, effect.step))
            if isinstance(effect, SendMessage):
                outbox.append(
                    (
                        workspace_id,
                        effect.key,
                        profile_id,
                        effect.run_id,
                        effect.journey_id,
                        effect.version,
                        effect.step,
                        effect.channel,
                        effect.template,
                        effect.variant,
                        int(effect.marketing),
                        _dumps(effect.context),
                        PENDING,
                        0,
                        effect.at_ms,
                        now_ms,
                        now_ms,
                        None,
                        None,
                        None,
                    )
                )
            elif isinstance(effect, MessageWithheld):
                if effect.status not in (DEFERRED, DROPPED):
                    raise ValueError(f"a withheld message is {DEFERRED} or {DROPPED}, not {effect.status!r}")
                # A deferred row waits, unclaimed, until the engine decides it again; its
                # next_attempt_at_ms says when. A dropped one says when it was dropped.
                outbox.append(
                    (
                        workspace_id,
                        effect.key,
                        profile_id,
                        effect.run_id,
                        effect.journey_id,
                        effect.version,
                        effect.step,
                        effect.channel,
                        effect.template,
                        effect.variant,
                        int(effect.marketing),
                        _dumps(effect.context),
                        effect.status,
                        0,
                        effect.until_ms if effect.status == DEFERRED and effect.until_ms is not None else effect.at_ms,
                        now_ms,
                        now_ms,
                        None,
                        None,
                        effect.reason,
                    )
                )
                withheld.append((effect.status, family_of(effect.reason), effect.channel))
            elif isinstance(effect, ScheduleTimer):
                timers.append(
                    (
                        (profile_id, effect.key),
                        (
                            profile_id,
                            effect.key,
                            workspace_id,
                            effect.due_ms,
                            _dumps(effect.payload),
                        ),
                    )
                )
            elif isinstance(effect, CancelTimer):
                timers.append(((profile_id, effect.key), _DELETE))
            elif isinstance(effect, UpdateProfile):
                orjson.dumps(effect.set)  # fails here, for this decision, if it cannot be stored
                traits.append((effect.set, list(effect.unset)))
            elif isinstance(effect, RunChanged):
                row = effect.run
                if row.get("paths") and not row.get("holdout") and not row.get("control"):
                    arms.append((row["id"], row["paths"]))
                runs.append(
                    (
                        row["id"],
                        (
                            row["id"],
                            workspace_id,
                            row["journey_id"],
                            row["version"],
                            row.get("profile_id") or profile_id,
                            row["status"],
                            row.get("step"),
                            int(row.get("holdout") or 0),
                            row["entered_at_ms"],
                            row.get("ended_at_ms"),
                            row.get("exit_reason"),
                            row.get("converted_at_ms"),
                            row.get("revenue"),
                            now_ms,
                            int(row.get("control") or 0),
                            row.get("control_cohort"),
                            row.get("converted_by"),
                        ),
                    )
                )
            elif isinstance(effect, MessageFailed):
                # The send that could not even be queued is recorded, with its reason, where
                # every other message's fate is: in the outbox.
                outbox.append(
                    (
                        workspace_id,
                        effect.key,
                        profile_id,
                        effect.run_id,
                        effect.journey_id,
                        getattr(effect, "version", 0) or 0,
                        effect.step,
                        getattr(effect, "channel", "") or "",
                        getattr(effect, "template", "") or "",
                        getattr(effect, "variant", None),
                        int(getattr(effect, "marketing", True)),
                        _dumps(getattr(effect, "context", None) or {}),
                        FAILED,
                        0,
                        now_ms,
                        now_ms,
                        now_ms,
                        None,
                        effect.reason,
                        None,
                    )
                )
            else:
                raise TypeError(f"unknown effect {type(effect).__name__}")
        for message in outbox:
            message_key = (message[0], message[1])
            earlier = self._outbox.get(message_key)
            if earlier is None or earlier[STATUS] == DEFERRED:
                self._outbox[message_key] = message
        self._withheld.update(withheld)
        for change in members:
            membership = (workspace_id, change.segment_id, profile_id)
            before = self._members.get(membership)
            if before is not None:
                self._earlier.setdefault(membership, []).append(before)
            self._members[membership] = (change.entered, change.at_ms)
        self._segment_events.extend(changes)
        for key, op in timers:
            self._timers[key] = op
        for run_id, run_row in runs:
            self._runs[run_id] = run_row
        self._arms.update(arms)
        self._variant_steps.update(variant_steps)
        if traits:
            self._traits.setdefault(profile_id, []).extend(traits)

    def add_state(self, workspace_id: str, state: ProfileState, loaded: bytes | str | None, now_ms: int) -> str | None:
        """Save a profile's state, unless the decisions left it exactly as it was loaded
        (or, for a person the engine had no state for, left it empty). Returns the document
        the row holds once this batch is written (None: no row)."""
        doc = state.to_json()
        if loaded is None:
            if doc == _EMPTY_STATE:
                return None
        elif doc == loaded:  # loaded as bytes
            return doc.decode()
        text = doc.decode()
        if text != loaded:
            self._states[state.profile_id] = (workspace_id, text)
        return text

    def write(self, conn: Connection, now_ms: int) -> WriteCounts:
        counts = WriteCounts()
        if self._states:
            sql.insert_rows(
                conn,
                "profile_state",
                STATE_COLUMNS,
                [(pid, ws, doc, now_ms) for pid, (ws, doc) in self._states.items()],
                conflict="profile_id",
                update=("state", "updated_at_ms"),
            )
            counts.states_written = len(self._states)
        deletes = [key for key, op in self._timers.items() if op is _DELETE]
        # A timer fires in its person's partition (runtime/partition_processor); P is the
        # deployment's, read from the database (store/partition_log.partition_count).
        count = partition_log.partition_count(conn) if self._timers else 0
        # One person's timers are in one partition: its hash is taken once per person.
        partitions: dict[tuple[str, str], int] = {}
        arms = []
        for op in self._timers.values():
            if op is _DELETE:
                continue
            who = (op[2], op[0])
            partition = partitions.get(who)
            if partition is None:
                partition = partitions[who] = partition_of(op[2], op[0], count)
            arms.append((*op, partition))
        if self._fired:
            deletes, arms = _write_fired_timers(conn, self._fired, deletes, arms)
        sql.execute_many(conn, 'DELETE FROM timers WHERE profile_id = ? AND "key" = ?', deletes)
        sql.insert_rows(
            conn,
            "timers",
            TIMER_COLUMNS,
            arms,
            conflict="profile_id, key",
            update=("workspace_id", "due_at_ms", "payload", "partition"),
        )
        counts.timers_deleted, counts.timers_scheduled = len(deletes), len(arms)
        rows = list(self._outbox.values())
        queue(conn, rows)
        counts.messages_queued = sum(1 for row in rows if row[STATUS] == PENDING)
        counts.messages_failed = sum(1 for row in rows if row[STATUS] == FAILED)
        counts.messages_withheld = Counter(self._withheld)
        if self._runs:
            # Entries and conversions are counted from the rows as stored before this write
            # (store/rollups.py), in this transaction: a batch decided twice counts them once.
            if self._count_rollups:
                report = rollups.Rollup()
                run_rows = list(self._runs.values())
                converting = rollups.count_runs(conn, report, run_rows)
                if self._arms:
                    rollups.count_arms(conn, report, run_rows, self._arms, self._variant_steps, converting, now_ms)
                report.write(conn)
            sql.insert_rows(
                conn, "journey_runs", RUN_COLUMNS, list(self._runs.values()), conflict="id", update=RUN_UPDATED
            )
            counts.runs_changed = len(self._runs)
        if self._traits:
            counts.profiles_updated = _update_traits(conn, self._traits, now_ms)
        if self._segment_events:
            counts.segments_entered, counts.segments_exited = segments.write_changes(conn, self._members, self._earlier)
            counts.segment_events = _append_segment_events(conn, self._segment_events, now_ms)
        return counts


def _write_fired_timers(
    conn: Connection, fired: dict[tuple[str, str], int], deletes: list[tuple[str, str]], arms: list[tuple[Any, ...]]
) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    """Write the fired timers' deletions and re-arms by their rowids (engine_state.write_fired_timers);
    returns what is left to write by key: the others, or all of them if a row had moved."""
    gone = [(fired[key], *key) for key in deletes if key in fired]
    again = [(*arm[2:], fired[(arm[0], arm[1])], arm[0], arm[1]) for arm in arms if (arm[0], arm[1]) in fired]
    if not engine_state.write_fired_timers(conn, again, gone):
        return deletes, arms
    return [key for key in deletes if key not in fired], [arm for arm in arms if (arm[0], arm[1]) not in fired]


def _segment_event(
    workspace_id: str, profile_id: str, change: SegmentChanged
) -> tuple[str, str, str, str, dict[str, Any], int]:
    name = SEGMENT_ENTERED if change.entered else SEGMENT_EXITED
    properties = {"segment_id": change.segment_id, "segment_version": change.version, "cause": change.cause}
    # The change itself names the event: deciding the same change again (a batch decided
    # twice) makes the same id, and the event log stores it once. The change's time comes
    # first, in fixed-width hex: ids in time order land at the end of the unique index on
    # (workspace_id, message_id), where a hash alone scattered each batch's hundreds of
    # rows over as many index pages, each written out at the commit (benchmarks/RESULTS.md,
    # issue 14's fourth pass: about a sixth of the engine's time with 50 live segments).
    key = orjson.dumps([workspace_id, profile_id, name, change.segment_id, change.version, change.at_ms, change.cause])
    message_id = f"{OWN_SEGMENT_PREFIX}{change.at_ms:011x}-{hashlib.blake2b(key, digest_size=16).hexdigest()}"
    return workspace_id, profile_id, name, message_id, properties, change.at_ms


def _append_segment_events(
    conn: Connection, found: list[tuple[str, str, str, str, dict[str, Any], int]], now_ms: int
) -> int:
    """Append the batch's Segment Entered / Exited to the people's event logs, with their userId."""
    user_ids = segments.profile_user_ids(conn, sorted({pid for _ws, pid, *_ in found}))
    rows = [
        event_log.event_row(
            ws, pid, user_ids.get(pid), name, message_id, properties, now_ms, library="nudgeflow-engine", at_ms=at_ms
        )
        for ws, pid, name, message_id, properties, at_ms in found
    ]
    # Not logged: no partition decides them again (store/event_log.py's _READ_COLUMNS).
    event_log.append_events(conn, rows, logged=False)
    return len(rows)


def _update_traits(conn: Connection, updates: dict[str, list[tuple[dict[str, Any], list[str]]]], now_ms: int) -> int:
    suffix = " FOR UPDATE" if sql.is_postgres(conn) else ""
    current = {
        pid: traits
        for pid, traits in sql.select_in(
            conn, "SELECT id, traits FROM profiles WHERE id IN", sorted(updates), suffix=suffix
        )
    }
    rows = []
    for pid, changes in updates.items():
        if pid not in current:  # erased (or merged away) meanwhile: nothing to update
            continue
        traits = orjson.loads(current[pid])
        for set_, unset in changes:
            traits.update(set_)
            for name in unset:
                traits.pop(name, None)
        rows.append((_dumps(traits), now_ms, pid))
    sql.execute_many(conn, "UPDATE profiles SET traits = ?, updated_at_ms = ? WHERE id = ?", rows)
    return len(rows)
