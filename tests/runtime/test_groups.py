"""Groups: `group` calls over HTTP set a group's traits (merged, newest wins), and
conditions and templates read them as `group.*`, whichever member's call set them. On
both databases, with the real engine and a virtual clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.model.journeys import Journey
from nudgeflow.store import groups as groups_store
from nudgeflow.store import journeys as journey_store
from tests.support import LiveServer

TEAM = {
    "id": "team-upsell",
    "name": "Team upsell",
    "trigger": {"type": "event", "event": "Trial Started"},
    "entry": {"filter": [{"trait": "group.plan", "op": "eq", "value": "enterprise"}]},
    "steps": {
        "check": {
            "type": "branch",
            "cases": [{"when": [{"trait": "group.seats", "op": "gte", "value": 10}], "next": "big"}],
            "default": "small",
        },
        "big": {"type": "send", "channel": "log", "template": "big-team"},
        "small": {"type": "send", "channel": "log", "template": "small-team"},
    },
}


def sent(srv: LiveServer) -> list[tuple[str, str]]:
    with srv.state.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT i.key, m.template FROM log_channel_messages m JOIN identities i ON i.profile_id = m.profile_id "
                "ORDER BY m.id"
            )
        ).all()
    return [(key, template) for key, template in rows]


def profile_of(srv: LiveServer, user_id: str) -> str:
    with srv.state.engine.connect() as conn:
        return str(
            conn.execute(text("SELECT profile_id FROM identities WHERE key = :k"), {"k": f"u:{user_id}"}).scalar_one()
        )


def test_group_traits_reach_conditions_and_templates_whoever_set_them(server: tuple[LiveServer, VirtualClock]) -> None:
    srv, clock = server
    ws = srv.workspace()
    now = to_ms(clock.now())
    with srv.state.engine.begin() as conn:
        journey_store.apply_draft(conn, ws.workspace_id, Journey.model_validate(TEAM), now)
        journey_store.publish(conn, ws.workspace_id, "team-upsell", now)
    runtime = srv.state.runtime

    def post(path: str, body: dict[str, Any]) -> None:
        with srv.client(auth=(ws.write_key, "")) as client:
            answer = client.post(path, json=body)
            assert answer.status_code == 200, answer.text
        clock.advance(timedelta(seconds=1))
        runtime.run_until_idle()

    post("/v1/group", {"userId": "ada", "groupId": "acme", "traits": {"plan": "free", "seats": 3}})
    post("/v1/group", {"userId": "bob", "groupId": "acme"})  # bob joins; his call carries no traits
    post("/v1/group", {"userId": "ada", "groupId": "acme", "traits": {"plan": "enterprise"}})  # merged
    post("/v1/track", {"userId": "bob", "event": "Trial Started"})
    post("/v1/track", {"userId": "carol", "event": "Trial Started"})  # no group: the filter does not hold
    assert sent(srv) == [("u:bob", "small-team")]

    post("/v1/group", {"userId": "ada", "groupId": "acme", "traits": {"seats": 12}})
    # A call from an offline queue, older than the latest: it changes nothing it names.
    post(
        "/v1/group",
        {
            "userId": "ada",
            "groupId": "acme",
            "traits": {"plan": "free", "region": "eu"},
            "timestamp": "2020-01-01T00:00:00Z",
        },
    )
    post("/v1/track", {"userId": "bob", "event": "Trial Started"})
    assert sent(srv) == [("u:bob", "small-team"), ("u:bob", "big-team")]

    with srv.state.engine.connect() as conn:
        stored = groups_store.get_group(conn, ws.workspace_id, "acme")
        assert stored is not None
        assert stored["traits"] == {"plan": "enterprise", "seats": 12, "region": "eu"}
        from nudgeflow.content.context import build_context

        context = build_context(conn, ws.workspace_id, profile_of(srv, "bob"), {}, to_ms(clock.now()))
        assert context["group"] == {"id": "acme", "plan": "enterprise", "seats": 12, "region": "eu"}
        carol = build_context(conn, ws.workspace_id, profile_of(srv, "carol"), {}, to_ms(clock.now()))
        assert carol["group"] == {}


def test_a_person_belongs_to_the_group_of_their_latest_call(server: tuple[LiveServer, VirtualClock]) -> None:
    srv, clock = server
    ws = srv.workspace()
    runtime = srv.state.runtime
    with srv.client(auth=(ws.write_key, "")) as client:
        for body in (
            {"userId": "dee", "groupId": "acme", "traits": {"plan": "enterprise"}},
            {"userId": "dee", "groupId": "globex", "traits": {"plan": "free"}},
            # older than the globex call: dee stays in globex; acme's traits still merge
            {"userId": "dee", "groupId": "acme", "traits": {"seats": 5}, "timestamp": "2020-01-01T00:00:00Z"},
        ):
            assert client.post("/v1/group", json=body).status_code == 200
            clock.advance(timedelta(seconds=1))
            runtime.run_until_idle()
    from nudgeflow.content.context import build_context

    with srv.state.engine.connect() as conn:
        context = build_context(conn, ws.workspace_id, profile_of(srv, "dee"), {}, to_ms(clock.now()))
        assert context["group"] == {"id": "globex", "plan": "free"}
        assert groups_store.get_group(conn, ws.workspace_id, "acme")["traits"] == {  # type: ignore[index]
            "plan": "enterprise",
            "seats": 5,
        }


QUIET = {
    "id": "quiet-accounts",
    "name": "Quiet enterprise accounts",
    "trigger": {"type": "inactivity", "events": ["Application Opened"], "window": "1d"},
    "entry": {"filter": [{"trait": "group.plan", "op": "eq", "value": "enterprise"}]},
    "steps": {"nudge": {"type": "send", "channel": "log", "template": "come-back"}},
}


def test_a_backfill_at_publish_reads_the_stored_group_traits(server: tuple[LiveServer, VirtualClock]) -> None:
    """People already quiet enter at publish (the backfill): the entry filter sees the
    group's traits that another member's call set, not only the person's own call."""
    srv, clock = server
    ws = srv.workspace()
    runtime = srv.state.runtime
    with srv.client(auth=(ws.write_key, "")) as client:
        for body in (
            {"userId": "ada", "groupId": "acme", "traits": {"plan": "enterprise"}},
            {"userId": "bob", "groupId": "acme"},
            {"userId": "cy", "groupId": "initech", "traits": {"plan": "free"}},
        ):
            assert client.post("/v1/group", json=body).status_code == 200
    runtime.run_until_idle()
    clock.advance(timedelta(days=2))
    now = to_ms(clock.now())
    with srv.state.engine.begin() as conn:
        journey_store.apply_draft(conn, ws.workspace_id, Journey.model_validate(QUIET), now)
        journey_store.publish(conn, ws.workspace_id, "quiet-accounts", now)
    runtime.run_until_idle()
    assert sorted(key for key, _template in sent(srv)) == ["u:ada", "u:bob"]
