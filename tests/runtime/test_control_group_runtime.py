"""The global control group in the running engine, on SQLite and PostgreSQL: what the outbox
holds for a member and a non-member (the marketing message dropped with its reason, the
transactional one and an excluded journey's sent), the metrics, and where the run's side is
kept."""

from __future__ import annotations

from typing import Any

import orjson

from nudgeflow.channels.base import ChannelRegistry
from nudgeflow.core.control_group import member, plan_for
from nudgeflow.model.policies import Policies
from nudgeflow.runtime.embedded import EmbeddedRuntime
from nudgeflow.runtime.processor import EngineCache
from tests.runtime.harness import Harness
from tests.runtime.policy_journeys import apply_policies, journey, outbox_of, publish

GROUP = {"control_group": {"share": 0.2, "salt": "runtime-test"}}


def runtime(h: Harness) -> EmbeddedRuntime:
    return h.runtime(engines=EngineCache(), channels=ChannelRegistry.development())


def people() -> tuple[str, str]:
    """A userId in the group and one outside it (reset: never, so any time will do)."""
    plan = plan_for(Policies.model_validate(GROUP))
    assert plan is not None
    names = [f"user-{i}" for i in range(1000)]
    inside = next(n for n in names if member(plan, n, 0))
    outside = next(n for n in names if not member(plan, n, 0))
    return inside, outside


def by_person(h: Harness) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for row in outbox_of(h):
        out.setdefault(row.person, []).append((row.journey_id, row.status, row.reason))
    return {person: sorted(rows) for person, rows in out.items()}


def test_a_member_gets_the_receipt_and_excluded_journeys_and_the_promo_is_dropped_with_its_reason(
    h: Harness,
) -> None:
    publish(
        h,
        # A goal keeps the finished run in the person's state, where its side is read below.
        {**journey("promo", "Signed Up"), "goal": {"event": "Order Completed", "within": "7d"}},
        journey("receipt", "Signed Up", marketing=False),
        {**journey("orders", "Signed Up"), "control_group": "exclude"},
    )
    apply_policies(h, GROUP)
    inside, outside = people()
    for user in (inside, outside):
        h.identify(user, email=f"{user}@example.com")
        h.track(user, "Signed Up")
    rt = runtime(h)
    rt.run_until_idle()
    assert by_person(h) == {
        f"u:{inside}": [
            ("orders", "logged", None),
            ("promo", "dropped", "global_control"),
            ("receipt", "logged", None),
        ],
        f"u:{outside}": [("orders", "logged", None), ("promo", "logged", None), ("receipt", "logged", None)],
    }
    assert sorted(m.template for m in h.log_messages()) == sorted(
        ["orders-hello", "receipt-hello", "orders-hello", "promo-hello", "receipt-hello"]
    )
    assert rt.not_sent() == {("dropped", "global_control", "email"): 1}

    # The run's side is in the person's engine state (journey_runs has no column for it yet).
    (promo_run,) = h.q(
        "SELECT r.id, s.state FROM journey_runs r JOIN profile_state s ON s.profile_id = r.profile_id"
        " JOIN identities i ON i.profile_id = r.profile_id WHERE r.journey_id = 'promo' AND i.key = :k",
        k=f"u:{inside}",
    )
    state = orjson.loads(promo_run.state)
    assert state["runs"][promo_run.id]["control"] is True
