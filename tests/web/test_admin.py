"""The admin API over HTTP on a live server: profiles, events, export, erasure, auth, isolation."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import func, or_, select

from nudgeflow.store.schema import events, identities, profile_merges, profiles
from tests.web.batch_messages import msg, send


def count(live: Any, table: Any, *where: Any) -> int:
    with live.state.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


# -- reading a profile -------------------------------------------------------------------


def test_profile_by_every_id_it_is_known_by(live: Any, ws: Any, customer: dict[str, Any]) -> None:
    with live.admin(ws.admin_token) as client:
        by_user = client.get("/api/profiles/user-42")
        assert by_user.status_code == 200, by_user.text
        profile = by_user.json()
        pid = profile["id"]
        for ref in (pid, "phone-1", "laptop-1", customer["phone_pid"], customer["laptop_pid"]):
            answer = client.get(f"/api/profiles/{ref}")
            assert answer.status_code == 200, (ref, answer.text)
            assert answer.json()["id"] == pid, ref
    # The phone profile adopted the userId; the laptop profile was merged into it.
    assert pid == customer["phone_pid"]
    assert profile["merged_from"] == [customer["laptop_pid"]]
    assert profile["user_id"] == "user-42"
    assert profile["traits"] == {
        "email": "jo@example.com",
        "first_name": "Jo",
        "plan": "pro",
        "timezone": "Europe/Berlin",
    }
    assert profile["trait_errors"] == {}
    assert profile["identities"] == {"user_ids": ["user-42"], "anonymous_ids": ["laptop-1", "phone-1"]}
    assert profile["event_count"] == customer["events"]
    recent = profile["recent_events"]
    assert [e["type"] for e in recent[:3]] == ["identify", "track", "alias"]  # newest first
    assert recent[1]["event"] == "Order Completed"
    assert recent[1]["message"]["properties"] == {"revenue": 42.5}
    assert {"seq", "message_id", "type", "event", "timestamp", "received_at", "message"} <= set(recent[0])
    assert recent[0]["timestamp"].endswith("Z")


def test_unknown_profile_is_404_with_a_message(live: Any, ws: Any) -> None:
    with live.admin(ws.admin_token) as client:
        for path in ("/api/profiles/nobody", "/api/profiles/nobody/events", "/api/profiles/nobody/export"):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert "nobody" in answer.json()["detail"]
        assert client.delete("/api/profiles/nobody").status_code == 404


def test_bad_reserved_trait_is_shown_on_the_profile(live: Any, ws: Any) -> None:
    with live.client(auth=(ws.write_key, "")) as client:
        answer = client.post(
            "/v1/identify", json={"userId": "tz-user", "traits": {"timezone": "Moon/Base", "plan": "x"}}
        )
    assert answer.status_code == 200
    assert answer.json()["warnings"][0]["field"] == "traits.timezone"
    with live.admin(ws.admin_token) as client:
        profile = client.get("/api/profiles/tz-user").json()
    assert profile["traits"] == {"plan": "x"}
    assert profile["trait_errors"]["timezone"]["value"] == "Moon/Base"


def test_recent_events_are_capped(live: Any, ws: Any) -> None:
    send(live, ws.write_key, *[msg("track", userId="busy", event=f"E{i}") for i in range(25)])
    with live.admin(ws.admin_token) as client:
        profile = client.get("/api/profiles/busy").json()
    assert profile["event_count"] == 25
    assert [e["event"] for e in profile["recent_events"]] == [f"E{i}" for i in range(24, 14, -1)]


# -- events, paged -----------------------------------------------------------------------


def test_events_are_paged_newest_first(live: Any, ws: Any) -> None:
    sent = [msg("track", userId="pager", event=f"Step {i}") for i in range(23)]
    send(live, ws.write_key, *sent[:10])
    send(live, ws.write_key, *sent[10:])
    seen: list[str] = []
    pages = 0
    before: int | None = None
    with live.admin(ws.admin_token) as client:
        while True:
            params: dict[str, Any] = {"limit": 5}
            if before is not None:
                params["before"] = before
            answer = client.get("/api/profiles/pager/events", params=params)
            assert answer.status_code == 200, answer.text
            page = answer.json()
            pages += 1
            assert len(page["events"]) <= 5
            seen += [e["message_id"] for e in page["events"]]
            before = page["next_before"]
            if before is None:
                break
            assert pages < 10
        assert pages == 5
        assert seen == [m["messageId"] for m in reversed(sent)]

        # An exact multiple of the page size ends without an empty extra page.
        full = client.get("/api/profiles/pager/events", params={"limit": 23}).json()
        assert len(full["events"]) == 23 and full["next_before"] is None
        default = client.get("/api/profiles/pager/events").json()
        assert len(default["events"]) == 23

        for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "many"}, {"before": "x"}):
            answer = client.get("/api/profiles/pager/events", params=bad)
            assert answer.status_code == 422, bad
            assert answer.json()["errors"][0]["field"] in ("limit", "before")


def test_events_page_follows_a_merged_profile(live: Any, ws: Any, customer: dict[str, Any]) -> None:
    with live.admin(ws.admin_token) as client:
        page = client.get(f"/api/profiles/{customer['laptop_pid']}/events", params={"limit": 100}).json()
    assert len(page["events"]) == customer["events"]
    assert page["next_before"] is None


# -- export ------------------------------------------------------------------------------


def test_export_has_everything_held_about_the_person(live: Any, ws: Any, customer: dict[str, Any]) -> None:
    with live.admin(ws.admin_token) as client:
        answer = client.get("/api/profiles/laptop-1/export")
    assert answer.status_code == 200
    data = answer.json()
    assert data["id"] == customer["phone_pid"]
    assert data["traits"]["email"] == "jo@example.com"
    assert data["identities"] == {"user_ids": ["user-42"], "anonymous_ids": ["laptop-1", "phone-1"]}
    assert data["merged_from"] == [customer["laptop_pid"]]
    assert data["event_count"] == len(data["events"]) == customer["events"]
    # Oldest first, each with the full message as stored.
    assert [e["type"] for e in data["events"]] == [
        "track",
        "page",
        "track",
        "identify",
        "track",
        "alias",
        "track",
        "identify",
    ]
    assert data["events"][0]["message"]["properties"] == {"sku": "A"}
    assert data["events"][2]["message"]["anonymousId"] == "laptop-1"
    assert all(e["message"]["messageId"] == e["message_id"] for e in data["events"])
    assert "recent_events" not in data


# -- erasure -----------------------------------------------------------------------------


def test_erasure_removes_the_person_and_everything_derived(live: Any, ws: Any, customer: dict[str, Any]) -> None:
    pid = customer["phone_pid"]
    # Someone else in the workspace, who must be untouched.
    send(live, ws.write_key, msg("identify", userId="bystander", anonymousId="other-device", traits={"plan": "x"}))

    with live.admin(ws.admin_token) as client:
        answer = client.delete(f"/api/profiles/{customer['laptop_pid']}")  # any id of the person will do
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["erased"] == pid
        assert body["deleted"]["events"] == customer["events"]
        assert body["deleted"]["profiles"] == 1
        assert body["deleted"]["identities"] == 3
        assert body["deleted"]["profile_merges"] == 1

        for ref in (pid, customer["laptop_pid"], "user-42", "phone-1", "laptop-1"):
            assert client.get(f"/api/profiles/{ref}").status_code == 404, ref
            assert client.get(f"/api/profiles/{ref}/export").status_code == 404, ref
        assert client.get("/api/profiles/bystander").json()["event_count"] == 1

    wsid = ws.workspace_id
    assert count(live, events, events.c.profile_id.in_([pid, customer["laptop_pid"]])) == 0
    assert count(live, events, events.c.workspace_id == wsid, events.c.user_id == "user-42") == 0
    assert count(live, events, events.c.workspace_id == wsid, events.c.anonymous_id.in_(["phone-1", "laptop-1"])) == 0
    assert count(live, identities, identities.c.profile_id == pid) == 0
    assert (
        count(
            live,
            identities,
            identities.c.workspace_id == wsid,
            identities.c.key.in_(["u:user-42", "a:phone-1", "a:laptop-1"]),
        )
        == 0
    )
    assert (
        count(
            live,
            profile_merges,
            or_(profile_merges.c.into_profile_id == pid, profile_merges.c.from_profile_id == customer["laptop_pid"]),
        )
        == 0
    )
    assert count(live, profiles, profiles.c.id == pid) == 0
    assert count(live, events, events.c.workspace_id == wsid) == 1  # the bystander's

    # The same ids later start a new person, with nothing of the old one.
    send(live, ws.write_key, msg("track", userId="user-42", anonymousId="phone-1", event="Application Opened"))
    with live.admin(ws.admin_token) as client:
        fresh = client.get("/api/profiles/user-42").json()
        assert client.get("/api/profiles/phone-1").json()["id"] == fresh["id"]
        assert client.get("/api/profiles/laptop-1").status_code == 404
    assert fresh["id"] != pid
    assert fresh["traits"] == {}
    assert fresh["event_count"] == 1
    assert fresh["merged_from"] == []
    assert fresh["identities"] == {"user_ids": ["user-42"], "anonymous_ids": ["phone-1"]}


def test_erasing_a_person_drops_the_state_the_engine_kept_of_them(live: Any, ws: Any) -> None:
    from nudgeflow.runtime.state_cache import StateCache

    live.state.runtime.engines.states = StateCache()  # as with NUDGEFLOW_ENGINE_STATE_CACHE_MB=16
    send(live, ws.write_key, msg("identify", userId="kept", traits={"email": "kept@example.org"}))
    send(live, ws.write_key, msg("track", userId="kept", event="Signed Up"))
    live.state.runtime.run_until_idle()
    with live.admin(ws.admin_token) as client:
        pid = client.get("/api/profiles/kept").json()["id"]
    kept = live.state.runtime.engines.states
    assert pid in kept  # decided, and kept parsed for the person's next batch
    before = kept.size
    with live.admin(ws.admin_token) as client:
        assert client.delete("/api/profiles/kept").status_code == 200
    assert pid not in kept and kept.size < before


def test_erased_message_ids_are_not_replayed_as_duplicates_of_nothing(live: Any, ws: Any) -> None:
    """After erasure the event rows are gone, so a retry of an old message is stored anew."""
    old = msg("track", userId="gone", event="Signed Up")
    send(live, ws.write_key, old)
    with live.admin(ws.admin_token) as client:
        assert client.delete("/api/profiles/gone").status_code == 200
    send(live, ws.write_key, old)
    with live.admin(ws.admin_token) as client:
        assert client.get("/api/profiles/gone").json()["event_count"] == 1


# -- auth --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/profiles/user-42", "/api/profiles/user-42/events", "/api/profiles/user-42/export", "/api/stats"]
)
def test_admin_api_needs_the_bearer_admin_token(live: Any, ws: Any, path: str) -> None:
    send(live, ws.write_key, msg("identify", userId="user-42", traits={"plan": "pro"}))
    with live.client() as client:
        missing = client.get(path)
        assert missing.status_code == 401
        assert "admin token" in missing.json()["detail"]
        for headers in (
            {"Authorization": f"Bearer {ws.write_key}"},  # a write key is not an admin token
            {"Authorization": "Bearer nfa_not-a-real-token"},
            {"Authorization": "Bearer"},
            {"Authorization": ws.admin_token},  # no scheme
        ):
            assert client.get(path, headers=headers).status_code == 401, headers
        # Basic auth is how write keys travel; it does not carry admin rights.
        assert client.get(path, auth=(ws.admin_token, "")).status_code == 401
        assert client.get(path, headers={"Authorization": f"bearer {ws.admin_token}"}).status_code == 200
    with live.client() as client:
        assert client.delete("/api/profiles/user-42").status_code == 401
        assert (
            client.delete("/api/profiles/user-42", headers={"Authorization": f"Bearer {ws.write_key}"}).status_code
            == 401
        )
    with live.admin(ws.admin_token) as client:
        assert client.get("/api/profiles/user-42").status_code == 200


def test_an_admin_token_cannot_ingest(live: Any, ws: Any) -> None:
    with live.client(auth=(ws.admin_token, "")) as client:
        answer = client.post("/v1/track", json={"userId": "u", "event": "Signed Up"})
    assert answer.status_code == 401
    assert count(live, events, events.c.workspace_id == ws.workspace_id) == 0


def test_tokens_never_appear_in_answers(live: Any, ws: Any, customer: dict[str, Any]) -> None:
    with live.admin(ws.admin_token) as client:
        for path in (
            "/api/profiles/user-42",
            "/api/profiles/user-42/export",
            "/api/profiles/user-42/events",
            "/api/stats",
        ):
            text = client.get(path).text
            assert ws.write_key not in text and ws.admin_token not in text, path


# -- isolation ---------------------------------------------------------------------------


def test_workspaces_are_isolated(live: Any) -> None:
    a, b = live.workspace("shop-a"), live.workspace("shop-b")
    # The same ids, and even the same messageIds, in both workspaces.
    same_id = "shared-message-1"
    send(
        live,
        b.write_key,
        msg("identify", userId="same-user", anonymousId="same-device", traits={"shop": "b"}, messageId=same_id),
        msg("track", userId="same-user", event="Order Completed"),
    )
    with live.admin(b.admin_token) as client:
        b_profile = client.get("/api/profiles/same-user").json()

    # A's admin token finds nothing of B's, by any id, and cannot erase it.
    with live.admin(a.admin_token) as client:
        for ref in ("same-user", "same-device", b_profile["id"]):
            assert client.get(f"/api/profiles/{ref}").status_code == 404, ref
            assert client.get(f"/api/profiles/{ref}/events").status_code == 404, ref
            assert client.get(f"/api/profiles/{ref}/export").status_code == 404, ref
            assert client.delete(f"/api/profiles/{ref}").status_code == 404, ref
        assert client.get("/api/stats").json()["events"] == 0

    # A's write key writes into A only, whatever the body claims.
    send(
        live,
        a.write_key,
        msg("identify", userId="same-user", anonymousId="same-device", traits={"shop": "a"}, messageId=same_id),
    )
    with live.client(auth=(a.write_key, "")) as client:
        answer = client.post("/v1/batch", json={"writeKey": b.write_key, "batch": [msg("track", userId="same-user")]})
        assert answer.status_code == 200
    with live.admin(a.admin_token) as client:
        a_profile = client.get("/api/profiles/same-user").json()
    with live.admin(b.admin_token) as client:
        b_after = client.get("/api/profiles/same-user").json()
        assert client.get(f"/api/profiles/{a_profile['id']}").status_code == 404

    assert a_profile["id"] != b_profile["id"]
    assert a_profile["traits"] == {"shop": "a"} and a_profile["event_count"] == 2
    assert b_after["traits"] == {"shop": "b"} and b_after["event_count"] == 2
    assert b_after == b_profile

    # Erasing in A leaves B's person alone.
    with live.admin(a.admin_token) as client:
        assert client.delete("/api/profiles/same-user").status_code == 200
    with live.admin(b.admin_token) as client:
        assert client.get("/api/profiles/same-user").json() == b_profile


def test_stats_count_one_workspace(live: Any, ws: Any, customer: dict[str, Any]) -> None:
    other = live.workspace("other")
    send(live, other.write_key, msg("track", userId="x"))
    with live.admin(ws.admin_token) as client:
        stats = client.get("/api/stats").json()
    assert stats["events"] == customer["events"]
    assert stats["profiles"] == 1 and stats["known_profiles"] == 1 and stats["merges"] == 1
    assert stats["track_events"]["Product Viewed"] == 2


@pytest.mark.parametrize(
    "user_id", ["jo+tag@example.com", "Zoë Ünïcode", "auth0|5f1c", "id with spaces?&#", "org/42/user/7"]
)
def test_profiles_by_ids_that_need_escaping(live: Any, ws: Any, user_id: str) -> None:
    send(live, ws.write_key, msg("identify", userId=user_id, traits={"plan": "pro"}))
    with live.admin(ws.admin_token) as client:
        answer = client.get("/api/profiles/" + quote(user_id, safe=""))
        assert answer.status_code == 200, answer.text
        assert answer.json()["user_id"] == user_id
        assert (
            client.get("/api/profiles/" + quote(user_id, safe="") + "/events").json()["events"][0]["type"] == "identify"
        )


# -- values the database cannot hold -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/api/profiles/a%00b", "ref"),
        ("GET", "/api/profiles/a%00b/events", "ref"),
        ("GET", "/api/profiles/a%00b/export", "ref"),
        ("DELETE", "/api/profiles/a%00b", "ref"),
        ("GET", "/api/profiles/a%00b/subscriptions", "ref"),
        ("GET", "/api/profiles/a%00b/push-targets", "ref"),
        ("DELETE", "/api/profiles/user-42/devices/t%00", "token"),
        ("GET", "/api/journeys/a%00b", "journey_id"),
        ("GET", "/api/journeys/a%00b/versions/1", "journey_id"),
        ("POST", "/api/journeys/a%00b/publish", "journey_id"),
        ("POST", "/api/journeys/a%00b/pause", "journey_id"),
        ("GET", "/api/templates/a%00b", "name"),
        ("POST", "/api/templates/a%00b/render", "name"),
        ("GET", "/api/catalog/products/a%00b", "item_id"),
        ("DELETE", "/api/catalog/products/a%00b", "item_id"),
        ("GET", "/api/catalog/products?after=a%00b", "after"),
        ("GET", "/api/catalog/products?category=a%00b", "category"),
        ("GET", "/api/suppressions?address=a%00b", "address"),
        ("GET", "/api/suppressions?after=a%00b", "after"),
    ],
)
def test_a_nul_character_in_a_path_or_query_value_is_a_422_naming_it(
    live: Any, ws: Any, method: str, path: str, field: str
) -> None:
    """PostgreSQL text cannot hold NUL: these were 500s (a psycopg DataError) on PostgreSQL."""
    send(live, ws.write_key, msg("identify", userId="user-42"))
    with live.admin(ws.admin_token) as client:
        answer = client.request(method, path)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["errors"][0]["field"] == field
    assert "NUL" in body["detail"]
    with live.client() as client:  # the token is checked first: a stranger learns nothing more
        assert client.request(method, path).status_code == 401


def test_an_events_cursor_beyond_64_bits_is_a_422(live: Any, ws: Any) -> None:
    """Was a 500: OverflowError from SQLite, NumericValueOutOfRange from PostgreSQL."""
    send(live, ws.write_key, msg("track", userId="pager"))
    with live.admin(ws.admin_token) as client:
        for before in (2**63, -(2**63) - 1, 10**20):
            answer = client.get("/api/profiles/pager/events", params={"before": before})
            assert answer.status_code == 422, answer.text
            assert answer.json()["errors"][0]["field"] == "before"
        for before in (2**63 - 1, -(2**63)):  # the edges of the range still answer
            assert client.get("/api/profiles/pager/events", params={"before": before}).status_code == 200
