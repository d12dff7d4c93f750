"""The per-person cap on push targets (store/push_targets.keep_within_cap): under two
registrations at once, and across a merge, on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import func, insert, select

from nudgeflow.model.event_names import PUSH_UNSUBSCRIBED
from nudgeflow.store.push_targets import (
    MAX_DEVICES_PER_PROFILE,
    MAX_SUBSCRIPTIONS_PER_PROFILE,
    endpoint_hash,
    save_device,
    save_subscription,
)
from nudgeflow.store.schema import device_tokens, events, profiles, push_subscriptions
from tests.store.ingest_support import NOW_MS, identify, profile_of, track, write
from tests.store.pg_race import second_after_first

CAP = MAX_SUBSCRIPTIONS_PER_PROFILE


def subscription(name: str) -> dict[str, Any]:
    return {"endpoint": f"https://fcm.googleapis.com/fcm/send/{name}", "keys": {"p256dh": "BPk", "auth": "au"}}


def count(engine: Any, table: Any, profile_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).select_from(table).where(table.c.profile_id == profile_id)).scalar()
        )


def test_two_registrations_at_once_for_one_person_keep_the_cap(engine: Any, wsid: str) -> None:
    # Two browsers of one person register at the same moment, the person one short of the
    # cap. On PostgreSQL each transaction counted the cap without the other's new row and
    # kept its own: 21 subscriptions. The second now waits for the first, and replaces one.
    pid = "prf_race_cap"
    with engine.begin() as conn:
        conn.execute(
            insert(profiles).values(
                id=pid, workspace_id=wsid, user_id=None, traits="{}", created_at_ms=NOW_MS, updated_at_ms=NOW_MS
            )
        )
        for n in range(CAP - 1):
            save_subscription(conn, wsid, pid, subscription(f"old-{n}"), NOW_MS + n)
    replaced: list[tuple[str, str]] = []
    second_after_first(
        engine,
        lambda conn: save_subscription(conn, wsid, pid, subscription("new-a"), NOW_MS + 100),
        lambda conn: save_subscription(conn, wsid, pid, subscription("new-b"), NOW_MS + 101, replaced=replaced),
        profiles.name,
    )
    assert count(engine, push_subscriptions, pid) == CAP
    # The least recently seen made room, and the second registration says which it was.
    assert [url for _, url in replaced] == [subscription("old-0")["endpoint"]]


def test_subscriptions_a_merge_leaves_over_the_cap_record_push_unsubscribed(engine: Any, wsid: str) -> None:
    write(engine, wsid, identify(userId="u-cap"))
    write(engine, wsid, track(anonymousId="visitor-cap"))
    known, visitor = profile_of(engine, wsid, "u-cap"), profile_of(engine, wsid, "visitor-cap")
    assert known and visitor
    with engine.begin() as conn:
        for n in range(CAP - 2):
            save_subscription(conn, wsid, known, subscription(f"known-{n}"), NOW_MS + 10 + n)
        for n in range(5):  # the visitor's are older: the oldest three of them go
            save_subscription(conn, wsid, visitor, subscription(f"visitor-{n}"), NOW_MS + n)
        for n in range(MAX_DEVICES_PER_PROFILE + 2):
            save_device(conn, wsid, known if n % 2 else visitor, f"{n:064x}", NOW_MS + n, platform="ios")

    assert write(engine, wsid, identify(userId="u-cap", anonymousId="visitor-cap")).merges == 1

    assert count(engine, push_subscriptions, known) == CAP
    assert count(engine, device_tokens, known) == MAX_DEVICES_PER_PROFILE
    with engine.connect() as conn:
        payloads = conn.execute(
            select(events.c.payload).where(events.c.profile_id == known, events.c.event == PUSH_UNSUBSCRIBED)
        ).scalars()
        gone = [orjson.loads(p) for p in payloads]
    dropped = {endpoint_hash(subscription(f"visitor-{n}")["endpoint"]) for n in range(3)}
    assert {e["properties"]["endpoint_hash"] for e in gone} == dropped
    assert {e["properties"]["reason"] for e in gone} == {"merged_over_cap"}
    assert {e["userId"] for e in gone} == {"u-cap"}
