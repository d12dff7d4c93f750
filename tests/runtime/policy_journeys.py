"""Journeys and policies the send-policy runtime tests share (tests/runtime/test_policies_runtime.py)."""

from __future__ import annotations

from typing import Any

from nudgeflow.core.clock import to_ms
from nudgeflow.model.journeys import Journey
from nudgeflow.model.policies import Policies
from nudgeflow.store import journeys as journey_store
from nudgeflow.store import policies as policy_store
from tests.runtime.harness import Harness


def journey(journey_id: str, event: str, *, priority: int = 0, channel: str = "email", **send: Any) -> dict[str, Any]:
    """A journey that sends one message on `event`, every time."""
    return {
        "id": journey_id,
        "name": journey_id,
        "priority": priority,
        "trigger": {"type": "event", "event": event},
        "entry": {"reentry": "always"},
        "steps": {"hello": {"type": "send", "channel": channel, "template": f"{journey_id}-hello", **send}},
    }


def publish(h: Harness, *definitions: dict[str, Any], ws: str | None = None) -> None:
    now = to_ms(h.clock.now())

    def apply(conn: Any) -> None:
        for definition in definitions:
            journey_store.apply_draft(conn, ws or h.ws, Journey.model_validate(definition), now)
            journey_store.publish(conn, ws or h.ws, definition["id"], now, backfill=False)

    h.in_transaction(apply)


def apply_policies(h: Harness, document: dict[str, Any], ws: str | None = None) -> int:
    policies = Policies.model_validate(document)
    now = to_ms(h.clock.now())
    done = h.in_transaction(lambda conn: policy_store.put(conn, ws or h.ws, policies, "", "test", now))
    return done.version


def outbox_of(h: Harness, ws: str | None = None) -> list[Any]:
    return h.q(
        "SELECT o.*, i.key AS person FROM outbox o JOIN identities i ON i.profile_id = o.profile_id"
        " AND i.key LIKE 'u:%' WHERE o.workspace_id = :w ORDER BY o.id",
        w=ws or h.ws,
    )
