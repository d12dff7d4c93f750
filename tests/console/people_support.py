"""What the People pages' tests share: a person with a history (tests/store/person_seed.py)
in a console's workspace, and the journey their runs belong to."""

from __future__ import annotations

from sqlalchemy import insert

from nudgeflow.model.journeys import Journey
from nudgeflow.store import journeys as journey_store
from nudgeflow.store.schema import identities, profiles
from tests.console.support import ConsoleApp
from tests.store.person_seed import T0, Seeded, seed_person

CART = Journey.model_validate(
    {
        "id": "cart",
        "name": "Cart",
        "trigger": {
            "type": "event_not_followed",
            "event": "Product Added",
            "not_followed_by": {"event": "Order Completed", "within": "1h"},
        },
        "steps": {
            "remind": {"type": "send", "channel": "email", "template": "cart-reminder", "next": "nudge"},
            "nudge": {"type": "send", "channel": "email", "template": "cart-nudge"},
        },
    }
)


def seed_console_person(app: ConsoleApp, workspace_id: str | None = None) -> Seeded:
    """Ada (store/person_seed.py) in the console's workspace (or another), and journey
    `cart` published before her history began."""
    wsid = workspace_id or app.workspace_id
    with app.state.engine.begin() as conn:
        seeded = seed_person(conn, wsid)
        journey_store.apply_draft(conn, wsid, CART, T0 - 60_000)
        journey_store.publish(conn, wsid, "cart", T0 - 60_000, backfill=False)
    return seeded


def add_plain_person(app: ConsoleApp, user_id: str) -> str:
    """A person of the console's workspace known by `user_id` and nothing else; their id."""
    pid = f"prf_{user_id}_{app.workspace_id.removeprefix('ws_')}"
    with app.state.engine.begin() as conn:
        conn.execute(
            insert(profiles).values(
                id=pid, workspace_id=app.workspace_id, user_id=user_id, traits="{}", created_at_ms=T0, updated_at_ms=T0
            )
        )
        conn.execute(
            insert(identities).values(
                workspace_id=app.workspace_id, key=f"u:{user_id}", profile_id=pid, created_at_ms=T0
            )
        )
    return pid
