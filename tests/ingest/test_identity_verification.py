"""Identity verification (issue 12, item 7 and item 11's device-token path), over a real socket,
on SQLite and PostgreSQL: with verification on, a public write key's request that sets an
address trait, registers a push subscription or device token for a userId, or links an
anonymousId to a userId must carry context.userHash; without a valid one it is refused with
403 naming the field, and nothing of it is stored. Server keys are exempt; during a rotation
both secrets are valid; with verification off nothing changes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select

from nudgeflow.store.profiles import resolve_profile_id
from nudgeflow.store.schema import device_tokens, events, identities, profiles, push_subscriptions
from nudgeflow.store.workspaces import NewWorkspace
from tests.support import LiveServer

APNS_TOKEN = "a1" * 32


def user_hash(secret: str, user_id: str) -> str:
    """What the docs tell a backend to compute (docs/identity.md, Python)."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def enable(live: LiveServer, ws: NewWorkspace) -> str:
    with live.admin(ws.admin_token) as client:
        answer = client.post("/api/identity/enable")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["verification"] is True and body["secrets"] == 1
    return str(body["secret"])


def server_key(live: LiveServer, ws: NewWorkspace) -> str:
    with live.admin(ws.admin_token) as client:
        answer = client.post("/api/keys", json={"kind": "server"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def counts(live: LiveServer, ws: NewWorkspace) -> dict[str, int]:
    out = {}
    with live.state.engine.connect() as conn:
        for table in (events, profiles, identities, device_tokens, push_subscriptions):
            out[table.name] = int(
                conn.execute(
                    select(func.count()).select_from(table).where(table.c.workspace_id == ws.workspace_id)
                ).scalar_one()
            )
    return out


def traits_of(live: LiveServer, ws: NewWorkspace, ref: str) -> dict[str, Any]:
    with live.state.engine.connect() as conn:
        pid = resolve_profile_id(conn, ws.workspace_id, ref)
        assert pid is not None, ref
        return orjson.loads(conn.execute(select(profiles.c.traits).where(profiles.c.id == pid)).scalar_one())


def refused(answer: httpx.Response, field: str = "context.userHash", index: int | None = None) -> dict[str, Any]:
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert body["success"] is False and body["code"] == "identity_not_verified"
    assert body["errors"][0]["field"] == field, body
    assert field in body["message"]
    if index is not None:
        assert body["errors"][0]["index"] == index
    return body  # type: ignore[no-any-return]


def subscription() -> dict[str, Any]:
    b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()  # noqa: E731
    return {
        "endpoint": f"https://push.example.net/send/{secrets.token_urlsafe(24)}",
        "expirationTime": None,
        "keys": {"p256dh": b64(b"\x04" + secrets.token_bytes(64)), "auth": b64(secrets.token_bytes(16))},
    }


# The three paths of item 7 and the device-token path of item 11, each as a public-key call
# for userId "victim" (the body's context gets the userHash when a test gives one).
CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "email trait": ("/v1/identify", {"userId": "victim", "traits": {"email": "attacker@example.com"}}),
    "phone trait": ("/v1/identify", {"userId": "victim", "traits": {"phone": "+15550100"}}),
    "context.traits email": ("/v1/identify", {"userId": "victim", "context": {"traits": {"email": "x@example.com"}}}),
    "merge by identify": ("/v1/identify", {"userId": "victim", "anonymousId": "attacker-browser"}),
    "merge by track": ("/v1/track", {"userId": "victim", "anonymousId": "attacker-browser", "event": "Viewed"}),
    "alias": ("/v1/alias", {"userId": "victim", "previousId": "attacker-browser"}),
    "device token": (
        "/v1/track",
        {"userId": "victim", "event": "App Opened", "context": {"device": {"type": "ios", "token": APNS_TOKEN}}},
    ),
    "push subscription": ("/v1/push/subscriptions", {"userId": "victim"}),
}


def call(client: httpx.Client, name: str, user_hash_value: str | None = None) -> httpx.Response:
    path, body = CALLS[name]
    body = orjson.loads(orjson.dumps(body))
    if name == "push subscription":
        body["subscription"] = subscription()
    if user_hash_value is not None:
        body.setdefault("context", {})["userHash"] = user_hash_value
    return client.post(path, content=orjson.dumps(body), headers={"content-type": "application/json"})


def prepare_victim(live: LiveServer, ws: NewWorkspace) -> None:
    """The victim exists, with an email; the attacker's browser has an anonymous profile."""
    with live.client(auth=(ws.write_key, "")) as client:
        for path, body in (
            ("/v1/identify", {"userId": "victim", "traits": {"email": "victim@example.com"}}),
            ("/v1/track", {"anonymousId": "attacker-browser", "event": "Viewed"}),
        ):
            assert client.post(path, json=body).status_code == 200


def test_verification_off_changes_nothing(live: LiveServer, ws: NewWorkspace) -> None:
    prepare_victim(live, ws)
    with live.client(auth=(ws.write_key, "")) as client:
        for name in CALLS:
            answer = call(client, name)
            assert answer.status_code == 200, (name, answer.text)
    assert traits_of(live, ws, "victim")["email"] == "x@example.com"
    assert counts(live, ws)["device_tokens"] == 1 and counts(live, ws)["push_subscriptions"] == 1


def test_each_path_is_refused_without_or_with_a_wrong_hash_and_nothing_is_stored(
    live: LiveServer, ws: NewWorkspace
) -> None:
    prepare_victim(live, ws)
    secret = enable(live, ws)
    before = counts(live, ws)
    with live.client(auth=(ws.write_key, "")) as client:
        for name in CALLS:
            body = refused(call(client, name))
            assert "missing" in body["message"], name
            body = refused(call(client, name, user_hash(secret, "someone-else")))
            assert "does not match" in body["message"], name
            refused(call(client, name, user_hash("not-the-secret", "victim")))
            refused(call(client, name, "zz"))
    assert counts(live, ws) == before
    assert traits_of(live, ws, "victim") == {"email": "victim@example.com"}
    with live.state.engine.connect() as conn:  # the attacker's browser was not merged in
        assert resolve_profile_id(conn, ws.workspace_id, "attacker-browser") != resolve_profile_id(
            conn, ws.workspace_id, "victim"
        )
    metrics = live.client().get("/metrics").text
    assert 'reason="identity"' in metrics


def test_each_path_is_accepted_with_the_right_hash_and_the_hash_is_not_stored(
    live: LiveServer, ws: NewWorkspace
) -> None:
    prepare_victim(live, ws)
    secret = enable(live, ws)
    with live.client(auth=(ws.write_key, "")) as client:
        for name in CALLS:
            answer = call(
                client, name, user_hash(secret, "victim").upper() if name == "alias" else user_hash(secret, "victim")
            )
            assert answer.status_code == 200, (name, answer.text)
    assert traits_of(live, ws, "victim")["phone"] == "+15550100"
    with live.state.engine.connect() as conn:
        assert resolve_profile_id(conn, ws.workspace_id, "attacker-browser") == resolve_profile_id(
            conn, ws.workspace_id, "victim"
        )
        payloads = (
            conn.execute(select(events.c.payload).where(events.c.workspace_id == ws.workspace_id)).scalars().all()
        )
    assert counts(live, ws)["device_tokens"] == 1 and counts(live, ws)["push_subscriptions"] == 1
    assert not any("userHash" in p for p in payloads)


def test_a_server_key_is_exempt_and_anonymous_calls_need_no_hash(live: LiveServer, ws: NewWorkspace) -> None:
    prepare_victim(live, ws)
    enable(live, ws)
    key = server_key(live, ws)
    assert key.startswith("sk_")
    with live.client(auth=(key, "")) as client:
        for name in CALLS:
            assert call(client, name).status_code == 200, name
    with live.client(auth=(ws.write_key, "")) as client:
        anonymous = {
            "anonymousId": "anon-9",
            "traits": {"email": "anon@example.com"},
            "context": {"device": {"type": "ios", "token": "b2" * 32}},
        }
        assert client.post("/v1/identify", json=anonymous).status_code == 200
        # A tracked event with only a userId and nothing to prove is accepted as before.
        assert client.post("/v1/track", json={"userId": "victim", "event": "Viewed"}).status_code == 200
    assert traits_of(live, ws, "anon-9")["email"] == "anon@example.com"


def test_a_batch_is_refused_whole_naming_each_offending_event(live: LiveServer, ws: NewWorkspace) -> None:
    secret = enable(live, ws)
    before = counts(live, ws)
    batch = [
        {"type": "track", "userId": "u1", "event": "Fine"},
        {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com"}},
        {"type": "track", "userId": "u2", "event": "Fine", "context": {"userHash": user_hash(secret, "u2")}},
        {"type": "track", "userId": "u3", "anonymousId": "a3", "event": "Linked"},
    ]
    with live.client(auth=(ws.write_key, "")) as client:
        answer = client.post("/v1/batch", json={"batch": batch})
        body = refused(answer, "batch[1].context.userHash", index=1)
        assert [e["index"] for e in body["errors"]] == [1, 3]
        assert "event 1" in body["message"]
        assert counts(live, ws) == before
        # Fixed: each event proves its own userId; a batch-level context serves events without one.
        batch[1]["context"] = {"userHash": user_hash(secret, "u1")}
        answer = client.post("/v1/batch", json={"batch": batch, "context": {"userHash": user_hash(secret, "u3")}})
        assert answer.status_code == 200, answer.text
    assert traits_of(live, ws, "u1")["email"] == "a@example.com"
    assert counts(live, ws)["events"] == before["events"] + 4


def test_rotation_keeps_both_secrets_valid_until_it_is_finished(live: LiveServer, ws: NewWorkspace) -> None:
    old = enable(live, ws)
    with live.admin(ws.admin_token) as client:
        rotated = client.post("/api/identity/rotate")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new != old and rotated.json()["rotating"] is True and rotated.json()["secrets"] == 2
        again = client.post("/api/identity/rotate")  # a second rotation would drop `old` unannounced
        assert again.status_code == 409 and "finish-rotation" in again.json()["detail"]
        assert client.get("/api/identity").json() == {"verification": True, "secrets": 2, "rotating": True}
    with live.client(auth=(ws.write_key, "")) as client:
        for i, secret in enumerate((old, new)):
            body = {
                "userId": f"r{i}",
                "traits": {"email": f"r{i}@example.com"},
                "context": {"userHash": user_hash(secret, f"r{i}")},
            }
            assert client.post("/v1/identify", json=body).status_code == 200
    with live.admin(ws.admin_token) as client:
        assert client.post("/api/identity/finish-rotation").json() == {
            "verification": True,
            "secrets": 1,
            "rotating": False,
        }
        assert client.post("/api/identity/finish-rotation").status_code == 409
    with live.client(auth=(ws.write_key, "")) as client:
        body = {"userId": "r0", "traits": {"email": "r0b@example.com"}, "context": {"userHash": user_hash(old, "r0")}}
        refused(client.post("/v1/identify", json=body))
        body["context"]["userHash"] = user_hash(new, "r0")
        assert client.post("/v1/identify", json=body).status_code == 200
    with live.admin(ws.admin_token) as client:  # off again: unverified calls pass, the secret is kept
        assert client.post("/api/identity/disable").json() == {"verification": False, "secrets": 1, "rotating": False}
    with live.client(auth=(ws.write_key, "")) as client:
        assert (
            client.post("/v1/identify", json={"userId": "r0", "traits": {"email": "r0c@example.com"}}).status_code
            == 200
        )


def test_a_change_from_another_process_reaches_the_server_within_its_cache_time(
    live: LiveServer, ws: NewWorkspace
) -> None:
    from nudgeflow.core.clock import to_ms
    from nudgeflow.store import identity_settings

    body = {"userId": "p1", "traits": {"email": "p1@example.com"}}
    with live.client(auth=(ws.write_key, "")) as client:
        assert client.post("/v1/identify", json=body).status_code == 200  # reads (and caches) "off"
        with live.state.engine.begin() as conn:  # as `nudgeflow workspace identity enable` does
            identity_settings.enable(conn, ws.workspace_id, to_ms(live.state.clock.now()))
        live.state.clock.advance(timedelta(seconds=6))
        refused(client.post("/v1/identify", json=body))


def test_keys_create_list_revoke(live: LiveServer, ws: NewWorkspace) -> None:
    key = server_key(live, ws)
    with live.admin(ws.admin_token) as client:
        public = client.post("/api/keys", json={"kind": "public"}).json()["key"]
        assert public.startswith("wk_")
        assert client.post("/api/keys", json={"kind": "secret"}).status_code == 422
        listed = client.get("/api/keys").json()["keys"]
        kinds = sorted((k["hint"], k["kind"]) for k in listed)
        assert kinds == sorted(
            [(ws.write_key[:8], "public"), (ws.admin_token[:8], "admin"), (key[:8], "server"), (public[:8], "public")]
        )
        assert all(set(k) == {"hint", "kind", "created_at_ms"} for k in listed)  # never a key or digest
    with live.client(auth=(key, "")) as client:
        assert client.post("/v1/track", json={"userId": "k", "event": "E"}).status_code == 200  # cached now
    with live.admin(ws.admin_token) as client:
        assert client.delete(f"/api/keys/{key[:8]}").json()["kind"] == "server"
        assert client.delete(f"/api/keys/{key[:8]}").status_code == 404
        assert client.delete(f"/api/keys/{ws.admin_token[:8]}").status_code == 404  # write keys only
    live.state.clock.advance(timedelta(seconds=31))  # the key cache forgets it
    with live.client(auth=(key, "")) as client:
        assert client.post("/v1/track", json={"userId": "k", "event": "E"}).status_code == 401


def test_unreadable_identity_settings_are_a_503_never_a_500_and_store_nothing(
    live: LiveServer, ws: NewWorkspace
) -> None:
    from sqlalchemy import delete, update

    from nudgeflow.store.schema import workspace_settings

    enable(live, ws)
    with live.state.engine.begin() as conn:  # sealed with a key this server does not have
        conn.execute(
            update(workspace_settings)
            .where(workspace_settings.c.workspace_id == ws.workspace_id)
            .values(settings="nf1:not-a-token-any-key-opens")
        )
    live.state.identity.forget(ws.workspace_id)
    try:
        before = counts(live, ws)
        with live.client(auth=(ws.write_key, "")) as client:
            answer = client.post("/v1/identify", json={"userId": "u", "traits": {"email": "u@example.com"}})
            assert answer.status_code == 503 and answer.json()["code"] == "unavailable"
            assert "not-a-token" not in answer.text
            # Calls that need no proof do not read the settings at all.
            assert client.post("/v1/track", json={"userId": "u", "event": "E"}).status_code == 200
        assert counts(live, ws)["events"] == before["events"] + 1
    finally:
        # On PostgreSQL the tests share one database, whose every workspace a starting
        # server checks it can open: leave no unreadable settings behind.
        with live.state.engine.begin() as conn:
            conn.execute(delete(workspace_settings).where(workspace_settings.c.workspace_id == ws.workspace_id))


def consent_events(live: LiveServer, ws: NewWorkspace) -> list[dict[str, Any]]:
    with live.state.engine.connect() as conn:
        payloads = conn.execute(
            select(events.c.payload).where(
                events.c.workspace_id == ws.workspace_id, events.c.event == "Consent Updated"
            )
        ).scalars()
        return [orjson.loads(p)["properties"] for p in payloads]


def test_a_trait_the_workspace_maps_to_consent_needs_the_hash_others_do_not(live: LiveServer, ws: NewWorkspace) -> None:
    """An identify that says yes or no for the victim through a mapped consent trait is a
    consent record made in their name (docs/consent.md): with verification on it needs the
    proof, like an address; a boolean trait nobody mapped does not."""
    prepare_victim(live, ws)
    secret = enable(live, ws)
    with live.admin(ws.admin_token) as admin:
        mapping = {"newsletter_opt_in": {"channel": "email", "topic": "news"}}
        assert admin.patch("/api/settings", json={"consent_traits": mapping}).status_code == 200
    before = counts(live, ws)
    with live.client(auth=(ws.write_key, "")) as client:
        for body in (
            {"userId": "victim", "traits": {"newsletter_opt_in": True}},
            {"userId": "victim", "traits": {"vip": False, "newsletter_opt_in": False}},
            {"userId": "victim", "context": {"traits": {"newsletter_opt_in": True}}},  # as RudderStack sends them
        ):
            answer = refused(client.post("/v1/identify", json=body))
            assert "newsletter_opt_in" in answer["message"] and "consent" in answer["message"]
        batch = [{"type": "identify", "userId": "victim", "traits": {"newsletter_opt_in": True}}]
        refused(client.post("/v1/batch", json={"batch": batch}), "batch[0].context.userHash", index=0)
        assert counts(live, ws) == before and consent_events(live, ws) == []
        # A boolean trait the workspace does not map, or a mapped one that is not a boolean
        # (which records nothing), needs no proof.
        assert client.post("/v1/identify", json={"userId": "victim", "traits": {"vip": True}}).status_code == 200
        assert (
            client.post("/v1/identify", json={"userId": "victim", "traits": {"newsletter_opt_in": "yes"}}).status_code
            == 200
        )
        # With the proof, the choice is recorded.
        proved = {
            "userId": "victim",
            "traits": {"newsletter_opt_in": True},
            "context": {"userHash": user_hash(secret, "victim")},
        }
        assert client.post("/v1/identify", json=proved).status_code == 200
    assert [(e["topic"], e["subscribed"], e["source"]) for e in consent_events(live, ws)] == [
        ("news", True, "identify")
    ]
    # A server key is exempt, as for every other claim.
    with live.client(auth=(server_key(live, ws), "")) as client:
        assert (
            client.post("/v1/identify", json={"userId": "victim", "traits": {"newsletter_opt_in": False}}).status_code
            == 200
        )
    assert sorted(e["subscribed"] for e in consent_events(live, ws)) == [False, True]


def test_a_consent_trait_mapped_through_the_admin_api_is_checked_at_once(live: LiveServer, ws: NewWorkspace) -> None:
    """The gate caches a workspace's settings for seconds; a change made through this server's
    admin API applies to its ingest at once (docs/identity.md)."""
    enable(live, ws)
    with live.client(auth=(ws.write_key, "")) as client:
        assert client.post("/v1/identify", json={"userId": "u", "traits": {"promo_ok": True}}).status_code == 200
        with live.admin(ws.admin_token) as admin:
            assert (
                admin.patch("/api/settings", json={"consent_traits": {"promo_ok": {"channel": "push"}}}).status_code
                == 200
            )
        refused(client.post("/v1/identify", json={"userId": "u", "traits": {"promo_ok": False}}))
        with live.admin(ws.admin_token) as admin:
            assert admin.patch("/api/settings", json={"identity.verification": False}).status_code == 200
        assert client.post("/v1/identify", json={"userId": "u", "traits": {"promo_ok": False}}).status_code == 200
