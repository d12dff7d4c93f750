"""Writing accepted events: dedupe, resolve each to a profile, merge identities, append.

Everything here runs inside one transaction per group commit, for many requests at once,
and talks to the database in bulk: one lookup of known message ids, one of identities,
one insert of events (with their partitions' offsets, last: store/event_log.appending), one
read and one write of the profiles whose traits changed. Merges are rare and done row by row.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import orjson
from sqlalchemy import Connection, bindparam, delete, insert, select, update

from nudgeflow.errors import StoreError
from nudgeflow.model.events import EventRecord
from nudgeflow.store import event_log, partition_log, sql
from nudgeflow.store.consent import merge_subscriptions
from nudgeflow.store.consent_records import Person, TraitChange, apply_trait_changes, consent_traits_of
from nudgeflow.store.device_ingest import register_from_events
from nudgeflow.store.groups import apply_group_calls
from nudgeflow.store.push_targets import DEVICES, SUBSCRIPTIONS, keep_within_cap
from nudgeflow.store.push_unsubscribed import MERGED_OVER_CAP, unsubscribed_row
from nudgeflow.store.schema import device_tokens, identities, profile_merges, profiles, push_subscriptions
from nudgeflow.store.workspace_settings import get_all

# Ingest's own chunk size, larger than the engine's (see store/sql.py).
CHUNK = sql.INGEST_CHUNK


@dataclass
class WriteResult:
    accepted: int = 0
    duplicates: int = 0
    # Of the duplicates, repeats whose content differs from the event stored under that
    # messageId: dropped like every repeat (the first one stored wins), but counted apart,
    # since a client reusing ids for different events is losing data.
    duplicate_conflicts: int = 0
    profiles_created: int = 0
    merges: int = 0


@dataclass
class _Resolution:
    """Identity state for one workspace during one transaction."""

    idmap: dict[str, str]  # identity key -> profile id
    user_of: dict[str, str | None]  # profile id -> its userId, if known
    merged_into: dict[str, str] = field(default_factory=dict)
    new_profiles: dict[str, str | None] = field(default_factory=dict)
    new_identities: dict[str, str] = field(default_factory=dict)
    merges: list[tuple[str, str]] = field(default_factory=list)
    adopted: dict[str, str] = field(default_factory=dict)  # existing anonymous profile -> new userId

    def final(self, profile_id: str) -> str:
        while profile_id in self.merged_into:
            profile_id = self.merged_into[profile_id]
        return profile_id


def new_profile_id() -> str:
    return "prf_" + uuid.uuid4().hex[:24]


def _identity_keys(record: EventRecord) -> Iterable[str]:
    if record.user_id:
        yield "u:" + record.user_id
    if record.anonymous_id:
        yield "a:" + record.anonymous_id
    if record.previous_id:
        yield "u:" + record.previous_id
        yield "a:" + record.previous_id


def _known_message_ids(conn: Connection, workspace_id: str, message_ids: list[str]) -> dict[str, str]:
    """The stored payload of each message id already in the log (only repeats come back, so
    reading their payloads costs nothing for fresh events)."""
    known: dict[str, str] = {}
    mark = sql.mark(conn)
    for chunk in sql.chunks(message_ids, CHUNK):
        ids = sql.padded(chunk, CHUNK)
        stmt = (
            f"SELECT message_id, payload FROM events WHERE workspace_id = {mark} "
            f"AND message_id IN {sql.in_list(mark, len(ids))}"
        )
        known.update((row[0], row[1]) for row in conn.exec_driver_sql(stmt, (workspace_id, *ids)))
    return known


# What normalize adds or recomputes on every receipt: a retry of the same event differs here.
_RECEIPT_FIELDS = ("receivedAt", "sentAt", "timestamp")


def _same_content(stored: bytes | str, repeat: bytes | str) -> bool:
    """Whether a repeat of a messageId is the event already stored, as its client sent it."""
    if stored == repeat:
        return True
    try:
        a, b = orjson.loads(stored), orjson.loads(repeat)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(a, dict) or not isinstance(b, dict):
        return a == b
    for name in _RECEIPT_FIELDS:
        a.pop(name, None)
        b.pop(name, None)
    return bool(a == b)


def _load_identities(conn: Connection, workspace_id: str, keys: list[str]) -> _Resolution:
    res = _Resolution(idmap={}, user_of={})
    mark = sql.mark(conn)
    for chunk in sql.chunks(keys, CHUNK):
        padded = sql.padded(chunk, CHUNK)
        stmt = (
            "SELECT i.key, i.profile_id, p.user_id FROM identities i JOIN profiles p ON p.id = i.profile_id"
            f" WHERE i.workspace_id = {mark} AND i.key IN {sql.in_list(mark, len(padded))}"
        )
        for key, profile_id, user_id in conn.exec_driver_sql(stmt, (workspace_id, *padded)).all():
            res.idmap[key] = profile_id
            res.user_of[profile_id] = user_id
    return res


def _resolve(res: _Resolution, record: EventRecord, now_ms: int) -> str:
    """Decide which profile an event belongs to, creating or merging profiles as needed.

    An anonymous profile is merged into a known one when an event links the two ids
    (identify with both, or alias). A profile that already has a different userId is never
    merged: a shared device must not fuse two customers into one.
    """
    ukey = "u:" + record.user_id if record.user_id else None
    akeys = ["a:" + record.anonymous_id] if record.anonymous_id else []
    if record.previous_id:
        akeys += ["u:" + record.previous_id, "a:" + record.previous_id]

    pu = res.final(res.idmap[ukey]) if ukey and ukey in res.idmap else None
    linked = [(k, res.final(res.idmap[k]) if k in res.idmap else None) for k in akeys]

    if pu is None and ukey is not None:
        # The first known profile among the linked ids that is still anonymous adopts the userId.
        adopt = next((p for _, p in linked if p is not None and not res.user_of.get(p)), None)
        if adopt is not None:
            pu = adopt
            res.user_of[pu] = record.user_id
            if pu not in res.new_profiles:
                res.adopted[pu] = cast(str, record.user_id)  # ukey is set: the record has a userId
            else:
                res.new_profiles[pu] = record.user_id
        else:
            pu = _create(res, record.user_id)
        res.idmap[ukey] = pu
        res.new_identities[ukey] = pu

    if pu is None:  # anonymous-only event
        key = akeys[0]
        existing = linked[0][1]
        if existing is not None:
            return existing
        pid = _create(res, None)
        res.idmap[key] = pid
        res.new_identities[key] = pid
        return pid

    for key, other in linked:
        # Two linked ids may lead to one profile (an alias whose previousId is its own
        # anonymousId, as analytics.js sends it): once merged, it is not merged again.
        other = res.final(other) if other is not None else None
        if other is None:
            # Only the event's own anonymousId becomes a new identity; an unknown alias
            # previousId is not invented into one.
            if key == (akeys[0] if record.anonymous_id else None):
                res.idmap[key] = pu
                res.new_identities[key] = pu
        elif other != pu and not res.user_of.get(other):
            res.merged_into[other] = pu
            res.merges.append((other, pu))
            for k, p in list(res.idmap.items()):
                if p == other:
                    res.idmap[k] = pu
            for k, p in list(res.new_identities.items()):
                if p == other:
                    res.new_identities[k] = pu
    return pu


class IdentityConflict(StoreError, RuntimeError):
    """Concurrent writers kept claiming the same new identities; the write may be retried."""


# Rounds of resolve-and-claim before giving up: each lost round means another writer
# committed one of these very identities meanwhile, and the next round reads it.
IDENTITY_ROUNDS = 5


def _resolve_and_claim(
    conn: Connection, workspace_id: str, records: list[EventRecord], now_ms: int
) -> tuple[_Resolution, list[str]]:
    """Resolve each record to a profile, and claim the new identities that took."""
    keys = sorted({k for r in records for k in _identity_keys(r)})
    for _ in range(IDENTITY_ROUNDS):
        res = _load_identities(conn, workspace_id, keys)
        assigned = [_resolve(res, r, now_ms) for r in records]
        assigned = [res.final(p) for p in assigned]  # after the whole batch: later records merge
        if _claim_identities(conn, workspace_id, res, now_ms):
            return res, assigned
    raise IdentityConflict("identities kept changing under concurrent writes")


def _claim_identities(conn: Connection, workspace_id: str, res: _Resolution, now_ms: int) -> bool:
    """Insert the new identities first, before anything that depends on them.

    Another process (a second ingest process, an import) may have stored one of them since
    it was read: two requests for a new person at once. The insert then waits for that
    commit and skips the key instead of failing the transaction (a duplicate-key error
    here was a 503). If any was skipped, this round's own rows are taken back and False
    says: resolve again against what is stored now, so that both requests land on the
    person the first one created. Keys go in sorted order, so that two writers claiming
    overlapping keys wait for each other instead of deadlocking.
    """
    rows = sorted((workspace_id, key, res.final(pid), now_ms) for key, pid in res.new_identities.items())
    if not rows:
        return True
    mark = sql.mark(conn)
    inserted = conn.exec_driver_sql(
        sql.insert_sql(
            identities.name, ("workspace_id", "key", "profile_id", "created_at_ms"), mark, "workspace_id, key"
        ),
        rows,
    ).rowcount
    if inserted == len(rows):
        return True
    conn.exec_driver_sql(
        f'DELETE FROM identities WHERE workspace_id = {mark} AND "key" = {mark} AND profile_id = {mark}',
        [(ws, key, pid) for ws, key, pid, _ in rows],
    )
    return False


def _create(res: _Resolution, user_id: str | None) -> str:
    pid = new_profile_id()
    res.new_profiles[pid] = user_id
    res.user_of[pid] = user_id
    return pid


def _merge_traits(into: dict[str, Any], older: dict[str, Any]) -> dict[str, Any]:
    # The known profile's own traits win; the anonymous one only fills gaps.
    return {**older, **into}


def _apply_merges(conn: Connection, workspace_id: str, res: _Resolution, now_ms: int) -> None:
    for source, _ in res.merges:
        target = res.final(source)
        rows = {
            r.id: r
            for r in conn.execute(
                select(profiles.c.id, profiles.c.traits, profiles.c.trait_errors).where(
                    profiles.c.id.in_([source, target])
                )
            )
        }
        if source in rows and target in rows:
            traits = _merge_traits(orjson.loads(rows[target].traits), orjson.loads(rows[source].traits))
            conn.execute(
                update(profiles)
                .where(profiles.c.id == target)
                .values(traits=orjson.dumps(traits).decode(), updated_at_ms=now_ms)
            )
        conn.execute(update(identities).where(identities.c.profile_id == source).values(profile_id=target))
        # The merged-away profile's events stay its own here: they keep the partition and
        # offsets they were given, and the engine re-points them when it folds the profile
        # into the target (store/engine_state.move_merged). Until then the engine decides
        # them on the target (engine_state.merged_into).
        # A browser subscribes to push (or an app registers its token) before the person
        # logs in: the anonymous profile's push targets follow it into the known one.
        for table in (push_subscriptions, device_tokens):
            conn.execute(update(table).where(table.c.profile_id == source).values(profile_id=target))
        # A person's Web Push subscriptions are capped, and so are their device tokens. A
        # subscription the merge leaves over the cap records Push Unsubscribed, as one the
        # cap replaces at a registration does, so `reachable: push` stops counting it.
        dropped = keep_within_cap(conn, SUBSCRIPTIONS, workspace_id, [target])
        event_log.append_events(
            conn,
            [
                unsubscribed_row(
                    workspace_id, (target, res.user_of.get(target)), key, endpoint, now_ms, MERGED_OVER_CAP
                )
                for _, key, endpoint in dropped
            ],
        )
        keep_within_cap(conn, DEVICES, workspace_id, [target])
        # So do the visitor's consent and topic choices (the newer one wins per topic).
        merge_subscriptions(conn, workspace_id, source, target)
        conn.execute(
            update(profile_merges).where(profile_merges.c.into_profile_id == source).values(into_profile_id=target)
        )
        # Where the source's events end in its partition: the last offset given there, read
        # under the head's lock with this transaction's own offsets (store/event_log.with_head).
        from_partition = partition_log.partition_for(conn, workspace_id, source)
        conn.execute(
            insert(profile_merges).values(
                workspace_id=workspace_id,
                from_profile_id=source,
                into_profile_id=target,
                merged_at_ms=now_ms,
                from_partition=from_partition,
            )
        )
        event_log.with_head(conn, from_partition, partial(_record_from_offset, workspace_id, source))
        conn.execute(delete(profiles).where(profiles.c.id == source))


def _record_from_offset(workspace_id: str, source: str, conn: Connection, head: int) -> None:
    conn.execute(
        update(profile_merges)
        .where(profile_merges.c.workspace_id == workspace_id, profile_merges.c.from_profile_id == source)
        .values(from_offset=head)
    )


def _apply_traits(
    conn: Connection, updates: dict[str, list[EventRecord]], now_ms: int, watched: Collection[str] = ()
) -> list[tuple[str, EventRecord, str, bool]]:
    """Apply identify traits; returns, for the `watched` traits (those the workspace maps to
    consent), each (profile, record, trait, value) where a record set one to true or false
    and it held something else before."""
    ids = list(updates)
    current: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    stmt = select(profiles.c.id, profiles.c.traits, profiles.c.trait_errors).where(
        profiles.c.id.in_(bindparam("ids", expanding=True))
    )
    for chunk in sql.chunks(ids, CHUNK):
        for pid, traits, errors in conn.execute(stmt, {"ids": list(chunk)}):
            current[pid] = (orjson.loads(traits), orjson.loads(errors) if errors else {})
    rows = []
    flips: list[tuple[str, EventRecord, str, bool]] = []
    for pid, records in updates.items():
        traits, errors = current.get(pid, ({}, {}))
        for record in records:
            if record.traits:
                for name in watched:
                    value = record.traits.get(name)
                    if isinstance(value, bool) and traits.get(name) is not value:
                        flips.append((pid, record, name, value))
                traits.update(record.traits)
                for name in record.traits:
                    errors.pop(name, None)
            if record.trait_errors:
                errors.update(record.trait_errors)
        rows.append(
            {
                "pid": pid,
                "traits": orjson.dumps(traits).decode(),
                "trait_errors": orjson.dumps(errors).decode() if errors else None,
                "now": now_ms,
            }
        )
    conn.execute(
        update(profiles)
        .where(profiles.c.id == bindparam("pid"))
        .values(traits=bindparam("traits"), trait_errors=bindparam("trait_errors"), updated_at_ms=bindparam("now")),
        rows,
    )
    return flips


def _consent_traits(
    conn: Connection, workspace_id: str, updates: dict[str, list[EventRecord]]
) -> dict[str, tuple[str, str]]:
    """The workspace's consent_traits map, read only when some identify sets a boolean
    trait (the only values it maps): most identifies never pay for the settings read."""
    if not any(
        isinstance(value, bool)
        for records in updates.values()
        for r in records
        if r.traits
        for value in r.traits.values()
    ):
        return {}
    return consent_traits_of(get_all(conn, workspace_id))


def write_events(conn: Connection, workspace_id: str, records: list[EventRecord], now_ms: int) -> WriteResult:
    """Append one workspace's events; called inside a transaction the caller commits.

    The events (and those the same write appends for consent) are inserted at the end, with
    their partitions' offsets taken in one call (store/event_log.appending): at the end of
    this call, or of the caller's own `appending` scope (the group commit's, over all its
    workspaces)."""
    with event_log.appending(conn):
        return _write_events(conn, workspace_id, records, now_ms)


def _write_events(conn: Connection, workspace_id: str, records: list[EventRecord], now_ms: int) -> WriteResult:
    result = WriteResult()
    seen: dict[str, bytes] = {}
    unique: list[EventRecord] = []
    for record in records:
        first = seen.get(record.message_id)
        if first is not None:
            result.duplicates += 1
            result.duplicate_conflicts += not _same_content(first, record.payload)
            continue
        seen[record.message_id] = record.payload
        unique.append(record)
    known = _known_message_ids(conn, workspace_id, [r.message_id for r in unique])
    if known:
        repeats = [r for r in unique if r.message_id in known]
        result.duplicates += len(repeats)
        result.duplicate_conflicts += sum(not _same_content(known[r.message_id], r.payload) for r in repeats)
        unique = [r for r in unique if r.message_id not in known]
    if not unique:
        return result

    res, assigned = _resolve_and_claim(conn, workspace_id, unique, now_ms)

    if res.new_profiles:
        sql.insert_rows(
            conn,
            profiles.name,
            ("id", "workspace_id", "user_id", "traits", "trait_errors", "created_at_ms", "updated_at_ms"),
            [(pid, workspace_id, user_id, "{}", None, now_ms, now_ms) for pid, user_id in res.new_profiles.items()],
        )
        # A profile created and merged away within this very commit is not one more person.
        result.profiles_created = sum(1 for pid in res.new_profiles if pid not in res.merged_into)
    # A profile that was anonymous and has now been given a userId records it.
    adopted = [{"pid": pid, "uid": uid} for pid, uid in res.adopted.items() if pid not in res.merged_into]
    if adopted:
        conn.execute(
            update(profiles)
            .where(profiles.c.id == bindparam("pid"), profiles.c.user_id.is_(None))
            .values(user_id=bindparam("uid")),
            adopted,
        )
    if res.merges:
        _apply_merges(conn, workspace_id, res, now_ms)
        result.merges = len(res.merges)

    event_log.append_events(
        conn,
        [
            (
                workspace_id,
                r.message_id,
                pid,
                r.type,
                r.event,
                r.user_id,
                r.anonymous_id,
                r.timestamp_ms,
                r.received_at_ms,
                r.payload.decode(),
            )
            for r, pid in zip(unique, assigned, strict=True)
        ],
    )
    result.accepted = len(unique)

    trait_updates: dict[str, list[EventRecord]] = {}
    for record, pid in zip(unique, assigned, strict=True):
        if record.traits or record.trait_errors:
            trait_updates.setdefault(pid, []).append(record)
    if trait_updates:
        # Traits the workspace maps to consent record it when an identify flips them
        # (store/consent_records.py). The public write key reaches this: mapping a trait is
        # the workspace's choice to trust what its SDK says, as it trusts its other traits.
        mapping = _consent_traits(conn, workspace_id, trait_updates)
        flips = _apply_traits(conn, trait_updates, now_ms, tuple(mapping))
        if flips:
            apply_trait_changes(
                conn,
                workspace_id,
                mapping,
                [
                    TraitChange(Person(pid, record.user_id or res.user_of.get(pid)), record.message_id, name, value)
                    for pid, record, name, value in flips
                ],
                now_ms,
            )
    # A mobile SDK's push token (context.device.token) joins the profile with the event.
    register_from_events(conn, workspace_id, unique, assigned, now_ms)
    # A group call's traits are merged into its group (store/groups.py).
    apply_group_calls(conn, workspace_id, unique, now_ms)
    return result
