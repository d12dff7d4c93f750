"""Device tokens over HTTP on a live server: the Segment way through /v1/batch, and the
admin API (list, register, remove), on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import func, select

from nudgeflow.core.clock import to_ms
from nudgeflow.store.push_targets import MAX_DEVICES_PER_PROFILE, save_subscription
from nudgeflow.store.schema import device_tokens, profiles

IPHONE = "0123456789abcdef" * 4
PIXEL = "cGl4ZWw:APA91bF-" + "q" * 80
_ids = itertools.count(1)


def post_events(live: Any, write_key: str, *messages: dict[str, Any]) -> None:
    batch = [{"messageId": f"dev-api-{next(_ids)}", **m} for m in messages]
    with live.client(auth=(write_key, "")) as client:
        answer = client.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 200, answer.text


def test_tokens_from_events_show_on_the_profile(live: Any, ws: Any) -> None:
    post_events(
        live,
        ws.write_key,
        {
            "type": "identify",
            "userId": "ada",
            "traits": {"first_name": "Ada"},
            "context": {"device": {"type": "ios", "token": IPHONE}, "app": {"namespace": "com.example.shop"}},
        },
        {
            "type": "track",
            "userId": "ada",
            "event": "App Opened",
            "context": {"device": {"type": "android", "token": PIXEL}},
        },
        {
            "type": "track",
            "userId": "ada",
            "event": "App Opened",
            "context": {"device": {"type": "ios", "token": "nope"}},
        },
    )
    with live.admin(ws.admin_token) as client:
        answer = client.get("/api/profiles/ada/push-targets")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert sorted(body["targets"], key=lambda t: t["provider"]) == [
            {"provider": "apns", "address": IPHONE, "platform": "ios", "app_id": "com.example.shop"},
            {"provider": "fcm", "address": PIXEL, "platform": "android", "app_id": None},
        ]
        # The event with the bad token was kept.
        events = client.get("/api/profiles/ada/events").json()["events"]
        assert len(events) == 3


def test_register_list_and_remove_devices(live: Any, ws: Any) -> None:
    post_events(
        live,
        ws.write_key,
        {"type": "identify", "userId": "ben", "traits": {"plan": "pro"}},
        {"type": "identify", "userId": "cy"},
    )
    with live.state.engine.begin() as conn:
        ben = conn.execute(
            select(profiles.c.id).where(profiles.c.workspace_id == ws.workspace_id, profiles.c.user_id == "ben")
        ).scalar_one()
        save_subscription(
            conn,
            ws.workspace_id,
            ben,
            {"endpoint": "https://push.example.net/send/abc", "keys": {"p256dh": "BPubKey123", "auth": "secretAuth"}},
            to_ms(live.state.clock.now()),
        )
    with live.admin(ws.admin_token) as client:
        answer = client.post(
            "/api/profiles/ben/devices", json={"token": IPHONE.upper(), "type": "iOS", "app_id": "com.example.shop"}
        )
        assert answer.status_code == 201, answer.text
        assert answer.json() == {
            "profile_id": ben,
            "provider": "apns",
            "token": IPHONE,
            "platform": "ios",
            "app_id": "com.example.shop",
        }  # APNs tokens are kept in lower case
        assert client.post("/api/profiles/ben/devices", json={"token": PIXEL, "provider": "fcm"}).status_code == 201

        listed = client.get(f"/api/profiles/{ben}/push-targets")
        assert listed.status_code == 200
        targets = listed.json()["targets"]
        assert [t["provider"] for t in targets] == ["webpush", "apns", "fcm"]
        assert "secretAuth" not in listed.text and "BPubKey123" not in listed.text  # no Web Push secrets

        # The same token registered for another person moves to them.
        assert client.post("/api/profiles/cy/devices", json={"token": PIXEL, "type": "android"}).status_code == 201
        assert [t["provider"] for t in client.get("/api/profiles/ben/push-targets").json()["targets"]] == [
            "webpush",
            "apns",
        ]

        # Removing: only the person's own token; the profile itself stays.
        assert client.delete(f"/api/profiles/ben/devices/{PIXEL}").status_code == 404
        gone = client.delete(f"/api/profiles/ben/devices/{IPHONE.upper()}")
        assert gone.status_code == 200 and gone.json() == {"removed": True, "profile_id": ben}
        assert client.delete(f"/api/profiles/ben/devices/{IPHONE.upper()}").status_code == 404
        assert client.get("/api/profiles/ben").status_code == 200
        assert [t["provider"] for t in client.get("/api/profiles/ben/push-targets").json()["targets"]] == ["webpush"]


def test_bad_requests(live: Any, ws: Any) -> None:
    post_events(live, ws.write_key, {"type": "identify", "userId": "dee"})
    with live.admin(ws.admin_token) as client:
        for body, fragment in [
            ({"token": IPHONE}, "type"),
            ({"token": "zz" * 32, "type": "ios"}, "hexadecimal"),
            ({"token": PIXEL, "type": "windows"}, "neither ios nor android"),
            ({"token": PIXEL, "provider": "webpush"}, "fcm or apns"),
            ({"token": "a b", "type": "android"}, "not a push token"),
            ({"token": "", "type": "android"}, ""),
            # NUL: a 500 on PostgreSQL (text cannot hold it), now a 422 naming the field
            ({"token": PIXEL, "type": "android", "app_id": "com.x\x00"}, '"field":"app_id"'),
            ({"token": IPHONE, "provider": "apns\x00"}, '"field":"provider"'),
        ]:
            answer = client.post("/api/profiles/dee/devices", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert fragment in answer.text
        assert client.post("/api/profiles/nobody/devices", json={"token": PIXEL, "type": "android"}).status_code == 404
        assert client.get("/api/profiles/nobody/push-targets").status_code == 404
    with live.state.engine.connect() as conn:
        assert (
            conn.execute(
                select(func.count()).select_from(device_tokens).where(device_tokens.c.workspace_id == ws.workspace_id)
            ).scalar_one()
            == 0
        )


def test_needs_the_workspaces_admin_token(live: Any, ws: Any) -> None:
    other = live.workspace("other")
    post_events(live, ws.write_key, {"type": "identify", "userId": "eve"})
    with live.client() as client:
        assert client.get("/api/profiles/eve/push-targets").status_code == 401
        assert client.post("/api/profiles/eve/devices", json={"token": PIXEL, "type": "android"}).status_code == 401
    with live.admin(other.admin_token) as client:  # another workspace does not see eve
        assert client.get("/api/profiles/eve/push-targets").status_code == 404
        assert client.delete(f"/api/profiles/eve/devices/{PIXEL}").status_code == 404


def _tokens_of(live: Any, ws: Any, ref: str) -> set[str]:
    with live.admin(ws.admin_token) as client:
        answer = client.get(f"/api/profiles/{ref}/push-targets")
        assert answer.status_code == 200, answer.text
        return {t["address"] for t in answer.json()["targets"]}


def _apns(i: int) -> str:
    return f"{i:064x}"


def test_a_person_keeps_at_most_the_cap_of_device_tokens_the_least_recently_registered_replaced(
    live: Any, ws: Any
) -> None:
    """The public write key may put any number of tokens on one anonymousId (context.device.token):
    without a cap one visitor could hold unbounded rows, each a send on every push to them."""
    cap = MAX_DEVICES_PER_PROFILE
    for i in range(cap + 2):
        post_events(live, ws.write_key, _device_event("v", _apns(i)))
        live.state.clock.advance(1)
    assert _tokens_of(live, ws, "v") == {_apns(i) for i in range(2, cap + 2)}  # the two oldest went
    # One batch with more tokens than the cap: the person still holds the cap.
    post_events(live, ws.write_key, *(_device_event("w", _apns(1000 + i)) for i in range(cap + 5)))
    assert len(_tokens_of(live, ws, "w")) == cap
    # The admin API's registration keeps the cap too, and never drops the token just registered.
    live.state.clock.advance(1)
    with live.admin(ws.admin_token) as client:
        answer = client.post("/api/profiles/v/devices", json={"token": _apns(5000), "type": "ios"})
        assert answer.status_code in (200, 201), answer.text
    kept = _tokens_of(live, ws, "v")
    assert len(kept) == cap and _apns(5000) in kept and _apns(2) not in kept


def test_merging_visitors_into_one_person_keeps_the_cap_of_device_tokens(live: Any, ws: Any) -> None:
    """Two anonymous visitors at the cap each, then both identified as one person: the merge
    brings their tokens along, and the least recently registered beyond the cap go."""
    cap = MAX_DEVICES_PER_PROFILE
    for visitor, base in (("v1", 0), ("v2", 100)):
        for i in range(cap):
            post_events(live, ws.write_key, _device_event(visitor, _apns(base + i)))
            live.state.clock.advance(1)
    for visitor in ("v1", "v2"):
        post_events(live, ws.write_key, {"type": "identify", "userId": "eve", "anonymousId": visitor})
    assert _tokens_of(live, ws, "eve") == {_apns(100 + i) for i in range(cap)}


def _device_event(anonymous_id: str, token: str) -> dict[str, Any]:
    return {
        "type": "track",
        "anonymousId": anonymous_id,
        "event": "App Opened",
        "context": {"device": {"type": "ios", "token": token}},
    }
