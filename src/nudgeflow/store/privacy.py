"""Everything held about a person: its export, and its erasure.

`ERASURE` names every table that holds a person's rows or addresses and what erasure
does to it. tests/store/test_privacy.py reads the database's tables, picks those with a
column that names a person or an address (profile_id, user_id, anonymous_id, email,
phone, address, endpoint, token, rcpt_to ...), and fails for one missing here: a table
added later cannot be forgotten.

A person is their profile and every profile merged into it: rows the runtime has not
moved yet (engine state folded on the next decision, a log-channel row) may still carry
a merged-away id, and erasure takes those too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import ColumnElement, Connection, and_, delete, func, or_, select, update

from nudgeflow.model.iso_time import iso
from nudgeflow.store import consent, dev_inbox, engine_state, segments
from nudgeflow.store.profiles import event_view, get_profile
from nudgeflow.store.schema import (
    PROFILE_OWNED,
    device_tokens,
    events,
    inbox_messages,
    journey_runs,
    log_channel_messages,
    message_facts,
    outbox,
    profile_merges,
    profile_state,
    profiles,
    push_deliveries,
    push_subscriptions,
    run_arms,
    segment_members,
    suppressions,
    template_versions,
    timers,
)

DELETED_BY_PROFILE = "deleted: the rows of the person's profile ids"
NOT_A_PERSON = "not a person's: "

# Table name -> what erasure does to it. Tables whose matching column is not about a person
# say so, with the reason, so the schema test knows they were looked at.
ERASURE: dict[str, str] = {
    **{table.name: DELETED_BY_PROFILE for table in PROFILE_OWNED},
    "profiles": "deleted: the person",
    "profile_merges": "deleted: merges into the person, and of its merged-away profiles",
    "suppressions": "kept, the address replaced by a one-way hash (store/consent.erased_address): the "
    "list still stops the address, and no longer holds it",
    "inbox_messages": "deleted: what the dev inbox (serve --dev, the demo) received for the person's email "
    "addresses and push subscriptions",
    "catalog_places": NOT_A_PERSON + "`address` is a store's street address",
    # The console's own users are the workspace's staff, not the people messaged: an erasure
    # of a profile never touches them (a user is removed with `nudgeflow users disable`).
    "console_users": NOT_A_PERSON + "`email` is a console user's sign-in",
    "console_sessions": NOT_A_PERSON + "`user_id` is the console user signed in",
}

# Table name -> where the export shows its rows for the person (a dotted path in the document).
EXPORTED_AS: dict[str, str] = {
    "profiles": "traits",
    "identities": "identities",
    "profile_merges": "merges",
    "events": "events",
    "profile_state": "engine_state",
    "journey_runs": "journey_runs",
    "timers": "timers",
    "outbox": "messages",
    "log_channel_messages": "logged_messages",
    "subscriptions": "consent.choices",
    "suppressions": "suppressions",
    "push_subscriptions": "push_targets",
    "device_tokens": "push_targets",
    "push_deliveries": "push_deliveries",
    "inbox_messages": "dev_inbox",
    "segment_members": "segments",
    "message_facts": "message_facts",
    "run_arms": "experiment_arms",
}


def exported(doc: dict[str, Any], table: str) -> bool:
    """Whether the export `doc` shows anything of `table` (False when it has no place in it)."""
    path = EXPORTED_AS.get(table)
    value: Any = doc if path else None
    for part in (path or "").split("."):
        value = value.get(part) if isinstance(value, dict) and part else None
    return _holds(value)


def _holds(value: Any) -> bool:
    if isinstance(value, dict):
        return any(isinstance(v, bool) or _holds(v) for v in value.values())
    if isinstance(value, (list, str)):
        return bool(value)
    return value is not None


@dataclass
class Erasure:
    profile_id: str
    deleted: dict[str, int] = field(default_factory=dict)  # rows deleted per table
    profile_ids: list[str] = field(default_factory=list)  # the profile and those merged into it
    hashed: dict[str, int] = field(default_factory=dict)  # rows kept with the address hashed


def person_ids(conn: Connection, workspace_id: str, profile_id: str) -> list[str]:
    """The profile and every profile merged into it."""
    merged = conn.execute(
        select(profile_merges.c.from_profile_id).where(
            profile_merges.c.workspace_id == workspace_id, profile_merges.c.into_profile_id == profile_id
        )
    ).scalars()
    return [profile_id, *sorted(set(merged) - {profile_id})]


def _address_traits(doc: Any) -> Iterable[tuple[str, str]]:
    if isinstance(doc, dict):
        for channel in ("email", "sms"):
            value = doc.get(consent.ADDRESS_TRAIT[channel])
            if isinstance(value, str) and value.strip():
                yield channel, consent.normalize_address(channel, value)


def person_addresses(
    conn: Connection, workspace_id: str, ids: list[str], traits: dict[str, Any]
) -> dict[str, set[str]]:
    """Every address the person is or was known by, per kind: "email" and "sms" from the
    traits now and in every identify and event context they sent, "push" the endpoints and
    device tokens they hold."""
    found: dict[str, set[str]] = {"email": set(), "sms": set(), "push": set()}
    for channel, address in _address_traits(traits):
        found[channel].add(address)
    for (payload,) in _streamed(conn, select(events.c.payload).where(events.c.profile_id.in_(ids))):
        message = orjson.loads(payload)
        context = message.get("context") if isinstance(message, dict) else None
        for doc in (
            message.get("traits") if isinstance(message, dict) else None,
            context.get("traits") if isinstance(context, dict) else None,
        ):
            for channel, address in _address_traits(doc):
                found[channel].add(address)
    found["push"].update(
        conn.execute(
            select(push_subscriptions.c.endpoint).where(
                push_subscriptions.c.workspace_id == workspace_id, push_subscriptions.c.profile_id.in_(ids)
            )
        ).scalars()
    )
    found["push"].update(
        conn.execute(
            select(device_tokens.c.token).where(
                device_tokens.c.workspace_id == workspace_id, device_tokens.c.profile_id.in_(ids)
            )
        ).scalars()
    )
    return found


def _inbox_of(addresses: dict[str, set[str]]) -> ColumnElement[bool] | None:
    """The dev inbox's messages to the person: mail to their email addresses (without case),
    pushes to their push subscriptions (store/dev_inbox.push_recipients); None for none."""
    ib = inbox_messages.c
    emails = sorted(addresses["email"])
    pushes = dev_inbox.push_recipients(addresses["push"])
    found = [
        *([and_(ib.channel != dev_inbox.PUSH, func.lower(ib.rcpt_to).in_(emails))] if emails else []),
        *([and_(ib.channel == dev_inbox.PUSH, ib.rcpt_to.in_(pushes))] if pushes else []),
    ]
    return or_(*found) if found else None


def mask(address: str) -> str:
    """An endpoint or token as export shows it: enough to recognise it, too little to use
    it (an endpoint URL is the capability to push to the browser)."""
    parts = urlsplit(address)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}/…{address[-4:]}"
    return f"{address[:4]}…{address[-4:]}" if len(address) > 12 else "…"


# -- export -------------------------------------------------------------------------------------


def _templates_saved(conn: Connection, workspace_id: str, ids: list[str]) -> dict[str, list[tuple[int, int]]]:
    """(version, saved at) of each template the person's messages name, oldest first."""
    o = outbox.c
    names = sorted(
        conn.execute(
            select(o.template).where(o.workspace_id == workspace_id, o.profile_id.in_(ids)).distinct()
        ).scalars()
    )
    saved: dict[str, list[tuple[int, int]]] = {}
    if names:
        for name, version, created in conn.execute(
            select(template_versions.c.name, template_versions.c.version, template_versions.c.created_at_ms)
            .where(template_versions.c.workspace_id == workspace_id, template_versions.c.name.in_(names))
            .order_by(template_versions.c.version)
        ):
            saved.setdefault(name, []).append((version, created))
    return saved


def _template_version(saved: dict[str, list[tuple[int, int]]], row: Any) -> int | None:
    """The version of its template a message was rendered from: the newest version saved
    before the message was sent or last tried (rendering reads the current version then;
    the outbox keeps the template's name only). None for a message not tried yet."""
    at = row.sent_at_ms if row.sent_at_ms is not None else (row.updated_at_ms if row.attempts else None)
    versions = [v for v, created in saved.get(row.template, []) if at is not None and created <= at]
    return versions[-1] if versions else None


# The sections that grow with a person's history: read and written a chunk of rows at a time
# (export_chunks), so that an export of years of events holds one chunk in memory.
CHUNK = 100


def _streamed(conn: Connection, query: Any) -> Iterator[Any]:
    # Options of this statement only: Connection.execution_options would set them for every
    # later statement of the connection too (an UPDATE cannot be a server-side cursor).
    for part in conn.execute(query, execution_options={"stream_results": True, "yield_per": CHUNK}).partitions():
        yield from part


def export_person(conn: Connection, workspace_id: str, profile_id: str) -> dict[str, Any] | None:
    """One JSON-ready document of everything held about the person (README, "Privacy"),
    built whole in memory: export_chunks writes the same document a chunk at a time."""
    doc = _document(conn, workspace_id, profile_id)
    if doc is None:
        return None
    return {key: list(value()) if callable(value) else value for key, value in doc.items()}


def export_chunks(conn: Connection, workspace_id: str, profile_id: str) -> Iterator[bytes] | None:
    """The export as JSON (UTF-8), in pieces to write as they come: the events, messages and
    logged messages are read and written CHUNK rows at a time, the rest first (bounded by
    the person's profile ids, runs, timers and addresses). None for no such person."""
    doc = _document(conn, workspace_id, profile_id)
    return None if doc is None else _json_pieces(doc)


def _json_pieces(doc: dict[str, Any]) -> Iterator[bytes]:
    yield b"{"
    for n, (key, value) in enumerate(doc.items()):
        head = (b"," if n else b"") + orjson.dumps(key) + b":"
        if not callable(value):
            yield head + orjson.dumps(value)
            continue
        yield head + b"["
        items = value()
        first = True
        while part := list(islice(items, CHUNK)):
            yield (b"" if first else b",") + b",".join(orjson.dumps(item) for item in part)
            first = False
        yield b"]"
    yield b"}"


def _document(conn: Connection, workspace_id: str, profile_id: str) -> dict[str, Any] | None:
    """The export's sections in order; those that grow with the history (events, messages,
    logged messages) as functions giving their items one by one."""
    doc = get_profile(conn, workspace_id, profile_id, recent=0)
    if doc is None:
        return None
    doc.pop("recent_events")
    ids = person_ids(conn, workspace_id, profile_id)
    doc["merges"] = [
        {"from_profile_id": r.from_profile_id, "merged_at": iso(r.merged_at_ms, milliseconds=False)}
        for r in conn.execute(
            select(profile_merges.c.from_profile_id, profile_merges.c.merged_at_ms)
            .where(profile_merges.c.workspace_id == workspace_id, profile_merges.c.into_profile_id == profile_id)
            .order_by(profile_merges.c.merged_at_ms, profile_merges.c.from_profile_id)
        )
    ]
    doc["events"] = lambda: (
        event_view(r)
        for r in _streamed(conn, select(events).where(events.c.profile_id.in_(ids)).order_by(events.c.seq))
    )

    r = journey_runs.c
    doc["journey_runs"] = [
        {
            "id": row.id,
            "journey_id": row.journey_id,
            "version": row.version,
            "status": row.status,
            "step": row.step,
            "holdout": bool(row.holdout),
            "entered_at": iso(row.entered_at_ms, milliseconds=False),
            "ended_at": iso(row.ended_at_ms, milliseconds=False),
            "exit_reason": row.exit_reason,
            "converted_at": iso(row.converted_at_ms, milliseconds=False),
            "revenue": row.revenue,
            "updated_at": iso(row.updated_at_ms, milliseconds=False),
        }
        for row in conn.execute(
            select(journey_runs)
            .where(r.workspace_id == workspace_id, r.profile_id.in_(ids))
            .order_by(r.entered_at_ms, r.id)
        )
    ]
    # The engine's own record of the person: runs in progress, counters, pending triggers.
    doc["engine_state"] = {
        row.profile_id: orjson.loads(row.state)
        for row in conn.execute(
            select(profile_state.c.profile_id, profile_state.c.state).where(
                profile_state.c.workspace_id == workspace_id, profile_state.c.profile_id.in_(ids)
            )
        )
    }
    doc["segments"] = [
        {"segment_id": sid, "since": iso(since, milliseconds=False)}
        for sid, since in sorted(
            (sid, since)
            for found in segments.memberships(conn, workspace_id, ids).values()
            for sid, since in found.items()
        )
    ]
    f = message_facts.c
    # What measurement recorded once per message or run: the first open, click, send...
    doc["message_facts"] = [
        {"subject": row.subject, "fact": row.fact, "at": iso(row.at_ms, milliseconds=False)}
        for row in conn.execute(
            select(f.subject, f.fact, f.at_ms)
            .where(f.workspace_id == workspace_id, f.profile_id.in_(ids))
            .order_by(f.at_ms, f.subject, f.fact)
        )
    ]
    a = run_arms.c
    # The arm of each experiment the person's runs were assigned (store/rollups.count_arms).
    doc["experiment_arms"] = [
        {
            "run_id": row.run_id,
            "journey_id": row.journey_id,
            "version": row.version,
            "step": row.step,
            "arm": row.arm,
            "kind": row.kind,
            "assigned_at": iso(row.assigned_at_ms, milliseconds=False),
        }
        for row in conn.execute(
            select(run_arms)
            .where(a.workspace_id == workspace_id, a.profile_id.in_(ids))
            .order_by(a.assigned_at_ms, a.run_id, a.step)
        )
    ]
    doc["timers"] = [
        {"key": row.key, "due_at": iso(row.due_at_ms, milliseconds=False), "payload": orjson.loads(row.payload)}
        for row in conn.execute(
            select(timers)
            .where(timers.c.workspace_id == workspace_id, timers.c.profile_id.in_(ids))
            .order_by(timers.c.due_at_ms, timers.c.key)
        )
    ]

    o = outbox.c
    saved = _templates_saved(conn, workspace_id, ids)
    doc["messages"] = lambda: (
        {
            "id": row.id,
            "key": row.idempotency_key,
            "journey_id": row.journey_id,
            "journey_version": row.journey_version,
            "run_id": row.run_id,
            "step": row.step,
            "channel": row.channel,
            "template": row.template,
            "template_version": _template_version(saved, row),
            "variant": row.variant,
            "marketing": bool(row.marketing),
            "status": row.status,
            # Why it is not sent (suppressed, deferred, dropped), else what went wrong (failed).
            "reason": row.reason if row.reason is not None else row.error,
            "error": row.error,
            "attempts": row.attempts,
            "created_at": iso(row.created_at_ms, milliseconds=False),
            "sent_at": iso(row.sent_at_ms, milliseconds=False),
            "updated_at": iso(row.updated_at_ms, milliseconds=False),
            "context": orjson.loads(row.payload),
        }
        for row in _streamed(
            conn, select(outbox).where(o.workspace_id == workspace_id, o.profile_id.in_(ids)).order_by(o.id)
        )
    )
    lc = log_channel_messages.c
    doc["logged_messages"] = lambda: (
        {
            "key": row.idempotency_key,
            "channel": row.channel,
            "template": row.template,
            "body": row.body,
            "at": iso(row.sent_at_ms, milliseconds=False),
        }
        for row in _streamed(
            conn,
            select(log_channel_messages).where(lc.workspace_id == workspace_id, lc.profile_id.in_(ids)).order_by(lc.id),
        )
    )

    settings = consent.get_settings(conn, workspace_id)
    doc["consent"] = {
        **consent.subscriptions_of(conn, workspace_id, profile_id, [t for t, _ in consent.topics_of(settings)]),
        "choices": consent.choices_of(conn, workspace_id, profile_id),  # every channel's, with source and time
    }
    addresses = person_addresses(conn, workspace_id, ids, doc["traits"])
    held = sorted(addresses["email"] | addresses["sms"] | addresses["push"])
    erased = {consent.erased_address(workspace_id, ch, a): a for ch in ("email", "sms") for a in addresses[ch]}
    found = (
        conn.execute(
            select(suppressions)
            .where(suppressions.c.workspace_id == workspace_id, suppressions.c.address.in_([*held, *erased]))
            .order_by(suppressions.c.channel, suppressions.c.address)
        ).all()
        if held
        else []
    )
    doc["suppressions"] = [
        {
            "channel": s.channel,
            "address": mask(s.address) if s.address in addresses["push"] else erased.get(s.address, s.address),
            "reason": s.reason,
            "detail": s.detail,
            "since": iso(s.created_at_ms, milliseconds=False),
        }
        for s in found
    ]

    ps = push_subscriptions.c
    dt = device_tokens.c
    doc["push_targets"] = [
        {
            "provider": "webpush",
            "endpoint": mask(row.endpoint),
            "user_agent": row.user_agent,
            "created_at": iso(row.created_at_ms, milliseconds=False),
            "updated_at": iso(row.updated_at_ms, milliseconds=False),
        }
        for row in conn.execute(
            select(push_subscriptions)
            .where(ps.workspace_id == workspace_id, ps.profile_id.in_(ids))
            .order_by(ps.created_at_ms, ps.endpoint_hash)
        )
    ] + [
        {
            "provider": row.provider,
            "token": mask(row.token),
            "platform": row.platform,
            "app_id": row.app_id,
            "created_at": iso(row.created_at_ms, milliseconds=False),
            "updated_at": iso(row.updated_at_ms, milliseconds=False),
        }
        for row in conn.execute(
            select(device_tokens)
            .where(dt.workspace_id == workspace_id, dt.profile_id.in_(ids))
            .order_by(dt.created_at_ms, dt.token)
        )
    ]
    ib = inbox_messages.c
    to_person = _inbox_of(addresses)
    doc["dev_inbox"] = (
        [
            {
                "id": row.id,
                "channel": row.channel,
                "subject": row.subject,
                "received_at": iso(row.received_at_ms, milliseconds=False),
            }
            for row in conn.execute(
                select(ib.id, ib.channel, ib.subject, ib.received_at_ms).where(to_person).order_by(ib.id)
            )
        ]
        if to_person is not None
        else []
    )
    pd = push_deliveries.c
    doc["push_deliveries"] = [
        {
            "message_key": row.message_key,
            "target": row.target_key,
            "delivered_at": iso(row.delivered_at_ms, milliseconds=False),
        }
        for row in conn.execute(
            select(push_deliveries)
            .where(pd.workspace_id == workspace_id, pd.profile_id.in_(ids))
            .order_by(pd.delivered_at_ms, pd.message_key, pd.target_key)
        )
    ]
    return doc


# -- erasure ------------------------------------------------------------------------------------


def erase_person(conn: Connection, workspace_id: str, profile_id: str, now_ms: int | None = None) -> Erasure:
    """Erase the person and everything derived from them, in the caller's transaction.
    `now_ms`: the day their segment memberships end in the segments' daily sizes (None: the
    day each began, as if never counted)."""
    # A profile merged away since the caller named it (an identify between the lookup and
    # this transaction) is the person it went into now: erase them, as every lookup of a
    # merged-away id finds them (profile_merges is kept flattened: one step).
    survivor = conn.execute(
        select(profile_merges.c.into_profile_id).where(
            profile_merges.c.workspace_id == workspace_id, profile_merges.c.from_profile_id == profile_id
        )
    ).scalar_one_or_none()
    if survivor is not None:
        profile_id = survivor
    done = Erasure(profile_id)
    # Before anything is read: an engine batch deciding the person now commits first, and
    # the next cannot decide them until this erasure commits (it then finds no one).
    engine_state.hold_engine(conn, person_ids(conn, workspace_id, profile_id))
    row = conn.execute(
        select(profiles.c.traits).where(profiles.c.workspace_id == workspace_id, profiles.c.id == profile_id)
    ).one_or_none()
    traits = orjson.loads(row.traits) if row is not None else {}
    ids = done.profile_ids = person_ids(conn, workspace_id, profile_id)
    # Addresses first: they are read from the events and push targets deleted below.
    addresses = person_addresses(conn, workspace_id, ids, traits)

    hashed = 0
    for found in addresses.values():
        for address in sorted(found):
            where = and_(suppressions.c.workspace_id == workspace_id, suppressions.c.address == address)
            for (channel,) in conn.execute(select(suppressions.c.channel).where(where)).all():
                erased = consent.erased_address(workspace_id, channel, address)
                one = and_(where, suppressions.c.channel == channel)
                if conn.execute(
                    select(func.count())
                    .select_from(suppressions)
                    .where(
                        suppressions.c.workspace_id == workspace_id,
                        suppressions.c.channel == channel,
                        suppressions.c.address == erased,
                    )
                ).scalar_one():
                    conn.execute(delete(suppressions).where(one))  # hashed already, by an earlier erasure
                else:
                    conn.execute(update(suppressions).where(one).values(address=erased, detail=None))
                hashed += 1
    done.hashed["suppressions"] = hashed

    to_person = _inbox_of(addresses)
    done.deleted["inbox_messages"] = (
        conn.execute(delete(inbox_messages).where(to_person)).rowcount if to_person is not None else 0
    )

    # Through the segments' own writer first, so that their daily sizes count the departures.
    # That deletes their members rows too: segment_members has no index by profile, and a
    # DELETE by profile_id would read every membership of the workspace.
    done.deleted[segment_members.name] = segments.let_go(conn, workspace_id, ids, now_ms)
    for table in PROFILE_OWNED:
        if table is segment_members:
            continue
        done.deleted[table.name] = conn.execute(delete(table).where(table.c.profile_id.in_(ids))).rowcount
    done.deleted["profile_merges"] = conn.execute(
        delete(profile_merges).where(
            profile_merges.c.workspace_id == workspace_id,
            or_(profile_merges.c.into_profile_id.in_(ids), profile_merges.c.from_profile_id.in_(ids)),
        )
    ).rowcount
    done.deleted["profiles"] = conn.execute(
        delete(profiles).where(profiles.c.workspace_id == workspace_id, profiles.c.id.in_(ids))
    ).rowcount
    return done
