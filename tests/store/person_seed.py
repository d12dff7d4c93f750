"""One person's stored history, written row by row as the engine and ingest write it: the
People page's store tests read it back (tests/store/test_person_timeline.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert

from nudgeflow.model import reasons
from nudgeflow.model.partitions import partition_of
from nudgeflow.store.schema import (
    events,
    identities,
    journey_runs,
    outbox,
    profile_merges,
    profiles,
    run_arms,
    timers,
)

T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z
MIN = 60_000


@dataclass(frozen=True)
class Seeded:
    """The ids of the seeded person: of their workspace's own (tests share PostgreSQL's database)."""

    pid: str
    merged: str
    run: str  # ended (converted), in journey "cart"
    run2: str  # active at step "wait", in journey "welcome"


def seed_person(conn: Any, wsid: str) -> Seeded:
    """Ada: identified, merged from an anonymous profile, three events, two runs (one ended),
    a split decision, a sent, a dropped (frequency cap), a deferred (quiet hours) and a
    suppressed (unsubscribed from all marketing) message,
    two pending timers."""
    tail = wsid.removeprefix("ws_")
    pid, merged = f"prf_{tail}", f"prf_anon_{tail}"
    RUN, RUN2 = f"run_0000000001{tail}", f"run_0000000002{tail}"
    conn.execute(
        insert(profiles).values(
            id=pid,
            workspace_id=wsid,
            user_id="ada-1",
            traits=orjson.dumps({"email": "Ada@Example.com", "plan": "pro"}).decode(),
            created_at_ms=T0,
            updated_at_ms=T0,
        )
    )
    conn.execute(
        insert(identities),
        [
            {"workspace_id": wsid, "key": "u:ada-1", "profile_id": pid, "created_at_ms": T0},
            {"workspace_id": wsid, "key": "a:anon-ada", "profile_id": pid, "created_at_ms": T0},
        ],
    )
    conn.execute(
        insert(profile_merges).values(workspace_id=wsid, from_profile_id=merged, into_profile_id=pid, merged_at_ms=T0)
    )
    for seq_at, name, owner in (
        (T0 + 1 * MIN, "Product Viewed", merged),  # before the merge's rows moved: still the old id
        (T0 + 2 * MIN, "Product Added", pid),
        (T0 + 9 * MIN, "Order Completed", pid),
    ):
        conn.execute(
            insert(events).values(
                workspace_id=wsid,
                message_id=f"m-{name}",
                profile_id=owner,
                type="track",
                event=name,
                user_id="ada-1",
                anonymous_id=None,
                timestamp_ms=seq_at,
                received_at_ms=seq_at,
                payload=orjson.dumps({"type": "track", "event": name, "properties": {"sku": "S1"}}).decode(),
            )
        )
    common = {
        "workspace_id": wsid,
        "version": 1,
        "profile_id": pid,
        "holdout": 0,
        "updated_at_ms": T0,
        "ended_at_ms": None,
        "exit_reason": None,
        "converted_at_ms": None,
        "revenue": None,
    }
    conn.execute(
        insert(journey_runs),
        [
            {
                **common,
                "id": RUN,
                "journey_id": "cart",
                "status": "exited",
                "step": "remind",
                "entered_at_ms": T0 + 2 * MIN,
                "ended_at_ms": T0 + 9 * MIN,
                "exit_reason": "converted",
                "converted_at_ms": T0 + 9 * MIN,
                "revenue": 42.0,
            },
            {**common, "id": RUN2, "journey_id": "welcome", "status": "active", "step": "wait", "entered_at_ms": T0},
        ],
    )
    conn.execute(
        insert(run_arms).values(
            run_id=RUN,
            step="split",
            arm="b",
            kind="split",
            workspace_id=wsid,
            journey_id="cart",
            version=1,
            profile_id=pid,
            entered_at_ms=T0 + 2 * MIN,
            assigned_at_ms=T0 + 2 * MIN,
        )
    )
    base = {
        "workspace_id": wsid,
        "profile_id": pid,
        "journey_version": 1,
        "marketing": 1,
        "payload": "{}",
        "attempts": 0,
        "variant": None,
        "reason": None,
        "sent_at_ms": None,
        "error": None,
    }
    conn.execute(
        insert(outbox),
        [
            {
                **base,
                "idempotency_key": f"{RUN}:remind:1",
                "run_id": RUN,
                "journey_id": "cart",
                "step": "remind",
                "channel": "email",
                "template": "cart-reminder",
                "status": "sent",
                "attempts": 1,
                "next_attempt_at_ms": T0 + 3 * MIN,
                "created_at_ms": T0 + 3 * MIN,
                "updated_at_ms": T0 + 3 * MIN,
                "sent_at_ms": T0 + 3 * MIN,
            },
            {
                **base,
                "idempotency_key": f"{RUN}:nudge:1",
                "run_id": RUN,
                "journey_id": "cart",
                "step": "nudge",
                "channel": "email",
                "template": "cart-nudge",
                "status": "dropped",
                "reason": reasons.frequency_cap("daily"),
                "next_attempt_at_ms": T0 + 5 * MIN,
                "created_at_ms": T0 + 5 * MIN,
                "updated_at_ms": T0 + 5 * MIN,
            },
            {
                **base,
                "idempotency_key": f"{RUN2}:hello:1",
                "run_id": RUN2,
                "journey_id": "welcome",
                "step": "hello",
                "channel": "push",
                "template": "hello",
                "status": "deferred",
                "reason": reasons.QUIET_HOURS,
                "next_attempt_at_ms": T0 + 600 * MIN,
                "created_at_ms": T0 + 7 * MIN,
                "updated_at_ms": T0 + 7 * MIN,
            },
            {
                **base,
                "idempotency_key": f"{RUN2}:letter:1",
                "run_id": RUN2,
                "journey_id": "welcome",
                "step": "letter",
                "channel": "email",
                "template": "welcome-letter",
                "status": "suppressed",
                "attempts": 1,
                "reason": reasons.unsubscribed(None),
                "next_attempt_at_ms": T0 + 8 * MIN,
                "created_at_ms": T0 + 8 * MIN,
                "updated_at_ms": T0 + 8 * MIN,
            },
        ],
    )
    conn.execute(
        insert(timers),
        [
            {
                "profile_id": pid,
                "key": f"run:{RUN2}",
                "workspace_id": wsid,
                "partition": partition_of(wsid, pid),
                "due_at_ms": T0 + 24 * 60 * MIN,
                "payload": orjson.dumps({"kind": "step", "run_id": RUN2, "step": "wait", "visit": 1}).decode(),
            },
            {
                "profile_id": pid,
                "key": f"release:{RUN2}:hello:1",
                "workspace_id": wsid,
                "partition": partition_of(wsid, pid),
                "due_at_ms": T0 + 600 * MIN,
                "payload": orjson.dumps(
                    {"kind": "release", "run_id": RUN2, "step": "hello", "template": "hello"}
                ).decode(),
            },
        ],
    )
    return Seeded(pid, merged, RUN, RUN2)
