"""People and sent messages for the bounce tests, written straight into the store."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy import Engine

from nudgeflow.store import sql


def add_person(engine: Engine, workspace_id: str, user_id: str, email: str, now_ms: int = 1_700_000_000_000) -> str:
    pid = uuid.uuid4().hex
    with engine.begin() as conn:
        sql.insert_rows(
            conn,
            "profiles",
            ("id", "workspace_id", "user_id", "traits", "created_at_ms", "updated_at_ms"),
            [(pid, workspace_id, user_id, orjson.dumps({"email": email, "name": user_id}).decode(), now_ms, now_ms)],
        )
        sql.insert_rows(
            conn,
            "identities",
            ("workspace_id", "key", "profile_id", "created_at_ms"),
            [(workspace_id, f"u:{user_id}", pid, now_ms)],
        )
    return pid


def add_sent_message(
    engine: Engine, workspace_id: str, profile_id: str, key: str, now_ms: int = 1_700_000_000_000
) -> None:
    with engine.begin() as conn:
        sql.insert_rows(
            conn,
            "outbox",
            (
                "workspace_id",
                "idempotency_key",
                "profile_id",
                "run_id",
                "journey_id",
                "journey_version",
                "step",
                "channel",
                "template",
                "marketing",
                "payload",
                "status",
                "attempts",
                "next_attempt_at_ms",
                "created_at_ms",
                "updated_at_ms",
                "sent_at_ms",
            ),
            [
                (
                    workspace_id,
                    key,
                    profile_id,
                    "run-1",
                    "cart",
                    1,
                    "email-1",
                    "email",
                    "cart",
                    1,
                    "{}",
                    "sent",
                    1,
                    now_ms,
                    now_ms,
                    now_ms,
                    now_ms,
                )
            ],
        )


def suppressions(engine: Engine, workspace_id: str) -> dict[str, str]:
    with engine.connect() as conn:
        m = sql.mark(conn)
        rows = conn.exec_driver_sql(
            f"SELECT address, reason FROM suppressions WHERE workspace_id = {m} ORDER BY address", (workspace_id,)
        ).all()
    return {a: r for a, r in rows}


def feedback_events(engine: Engine, workspace_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        m = sql.mark(conn)
        rows = conn.exec_driver_sql(
            f"SELECT profile_id, event, payload FROM events WHERE workspace_id = {m}"
            " AND event IN ('Email Bounced', 'Email Marked as Spam') ORDER BY seq",
            (workspace_id,),
        ).all()
    return [{"profile_id": p, "event": e, **orjson.loads(payload)} for p, e, payload in rows]


def signed_bounce_address(
    engine: Engine, workspace_id: str, message_key: str, recipient: str, domain: str = "bounce.shop.test"
) -> str:
    """The Return-Path the email channel gives the message `message_key` to `recipient`."""
    from nudgeflow.model.bounce_address import bounce_key, signed_address
    from nudgeflow.store.consent import tracking_secret

    with engine.begin() as conn:
        secret = tracking_secret(conn, workspace_id, 1_700_000_000_000)
    return signed_address(bounce_key(secret), workspace_id, message_key, recipient, domain)
