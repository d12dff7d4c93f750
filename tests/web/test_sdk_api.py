"""The browser SDK's server side, over a real socket on SQLite and PostgreSQL: the two scripts
as they are served, and POST / DELETE /v1/push/subscriptions (write-key auth, the profile
resolved the way ingest resolves it, a "Push Subscribed" event without the keys, errors
naming their field, CORS for pages on another origin)."""

from __future__ import annotations

import base64
import fnmatch
import secrets
import tomllib
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import delete, event, select

from nudgeflow.model.partitions import partition_of
from nudgeflow.settings import Settings
from nudgeflow.store.profiles import resolve_profile_id
from nudgeflow.store.push_targets import MAX_SUBSCRIPTIONS_PER_PROFILE, endpoint_hash, targets_of
from nudgeflow.store.schema import events, identities, partition_heads, profiles, push_subscriptions
from nudgeflow.store.workspaces import NewWorkspace
from tests.support import LiveServer

ROOT = Path(__file__).resolve().parents[2]
SDK_DIR = ROOT / "src" / "nudgeflow" / "web" / "sdk"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_subscription(service: str = "https://push.example.net") -> dict[str, Any]:
    """What PushSubscription.toJSON() gives (the keys are random: nothing is sent here)."""
    return {
        "endpoint": f"{service}/send/{secrets.token_urlsafe(24)}",
        "expirationTime": None,
        "keys": {"p256dh": b64url(b"\x04" + secrets.token_bytes(64)), "auth": b64url(secrets.token_bytes(16))},
    }


def write(live: LiveServer, ws: NewWorkspace) -> httpx.Client:
    return live.client(auth=(ws.write_key, ""))


def profile_of(live: LiveServer, ws: NewWorkspace, ref: str) -> str | None:
    with live.state.engine.connect() as conn:
        return resolve_profile_id(conn, ws.workspace_id, ref)


def endpoints_of(live: LiveServer, ws: NewWorkspace, ref: str) -> list[str]:
    pid = profile_of(live, ws, ref)
    assert pid is not None, f"no profile for {ref}"
    with live.state.engine.connect() as conn:
        return [t.address for t in targets_of(conn, ws.workspace_id, pid)]


def named(live: LiveServer, ws: NewWorkspace, name: str) -> list[dict[str, Any]]:
    with live.state.engine.connect() as conn:
        rows = conn.execute(
            select(events.c.payload, events.c.profile_id)
            .where(events.c.workspace_id == ws.workspace_id, events.c.event == name)
            .order_by(events.c.seq)
        )
        return [{**orjson.loads(r.payload), "_profile": r.profile_id} for r in rows]


def assert_error(answer: httpx.Response, status: int, field: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["success"] is False
    assert field in [e["field"] for e in body["errors"]], body
    assert answer.headers["access-control-allow-origin"] == "*"  # the page can read why


# -- the scripts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nudgeflow.js", "sw.js"])
def test_the_scripts_are_served_as_javascript_with_a_revalidating_etag(live: LiveServer, name: str) -> None:
    with live.client() as client:
        answer = client.get(f"/sdk/{name}")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.content == (SDK_DIR / name).read_bytes()
        etag = answer.headers["etag"]
        again = client.get(f"/sdk/{name}", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        head = client.head(f"/sdk/{name}")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == len(answer.content)


def test_the_service_worker_may_control_the_whole_site_and_is_never_cached_stale(live: LiveServer) -> None:
    with live.client() as client:
        answer = client.get("/sdk/sw.js")
    assert answer.headers["service-worker-allowed"] == "/"
    assert answer.headers["cache-control"] == "no-cache"


def test_the_sdk_is_cached_briefly(live: LiveServer) -> None:
    with live.client() as client:
        answer = client.get("/sdk/nudgeflow.js")
    assert answer.headers["cache-control"] == "public, max-age=300"
    assert answer.headers["access-control-allow-origin"] == "*"


def test_the_scripts_are_package_data_of_the_distribution() -> None:
    """`pip install nudgeflow` (not only an editable checkout) must carry both scripts."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["nudgeflow"]
    for name in ("nudgeflow.js", "sw.js"):
        assert any(fnmatch.fnmatch(f"web/sdk/{name}", p) for p in patterns), patterns


# -- subscribing ------------------------------------------------------------------------------------


def test_an_anonymous_subscription_lands_on_the_visitors_profile_and_follows_a_login(
    live: LiveServer, ws: NewWorkspace
) -> None:
    sub = new_subscription()
    with write(live, ws) as client:
        answer = client.post(
            "/v1/push/subscriptions", json={"anonymousId": "anon-1", "subscription": sub, "userAgent": "Test/1.0"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"success": True, "endpointHash": endpoint_hash(sub["endpoint"])}
        assert endpoints_of(live, ws, "anon-1") == [sub["endpoint"]]
        # Logging in merges the anonymous profile, and its subscription comes along.
        assert client.post("/v1/identify", json={"userId": "ada", "anonymousId": "anon-1"}).status_code == 200
    assert endpoints_of(live, ws, "ada") == [sub["endpoint"]]
    [event] = named(live, ws, "Push Subscribed")
    assert event["anonymousId"] == "anon-1" and event["type"] == "track"
    assert event["properties"] == {
        "provider": "webpush",
        "endpoint_hash": endpoint_hash(sub["endpoint"]),
        "push_service": "https://push.example.net",
    }
    assert event["context"]["userAgent"] == "Test/1.0"
    assert event["_profile"] == profile_of(live, ws, "ada")
    # The subscription's secrets stay in push_subscriptions; the event log never sees them.
    raw = orjson.dumps(event).decode()
    assert sub["keys"]["auth"] not in raw and sub["keys"]["p256dh"] not in raw and sub["endpoint"] not in raw


def test_a_known_user_with_a_new_browser_is_merged_like_an_identify(live: LiveServer, ws: NewWorkspace) -> None:
    sub = new_subscription()
    with write(live, ws) as client:
        assert client.post("/v1/track", json={"anonymousId": "anon-2", "event": "Viewed"}).status_code == 200
        assert client.post("/v1/identify", json={"userId": "bob"}).status_code == 200
        answer = client.post(
            "/v1/push/subscriptions", json={"userId": "bob", "anonymousId": "anon-2", "subscription": sub}
        )
        assert answer.status_code == 200, answer.text
    assert profile_of(live, ws, "anon-2") == profile_of(live, ws, "bob")
    assert endpoints_of(live, ws, "bob") == [sub["endpoint"]]


def test_registering_again_is_idempotent_and_another_person_takes_the_browser_over(
    live: LiveServer, ws: NewWorkspace
) -> None:
    sub = new_subscription()
    with write(live, ws) as client:
        for _ in range(2):
            assert client.post("/v1/push/subscriptions", json={"userId": "cy", "subscription": sub}).status_code == 200
        assert endpoints_of(live, ws, "cy") == [sub["endpoint"]]
        assert len(named(live, ws, "Push Subscribed")) == 1
        # A shared browser: the next person to log in gets its notifications, not both.
        assert client.post("/v1/push/subscriptions", json={"userId": "dee", "subscription": sub}).status_code == 200
    assert endpoints_of(live, ws, "cy") == []
    assert endpoints_of(live, ws, "dee") == [sub["endpoint"]]
    assert [e["userId"] for e in named(live, ws, "Push Subscribed")] == ["cy", "dee"]


def test_the_write_key_may_come_in_the_body_and_the_body_as_text_plain(live: LiveServer, ws: NewWorkspace) -> None:
    sub = new_subscription()
    body = orjson.dumps({"writeKey": ws.write_key, "anonymousId": "anon-3", "subscription": sub})
    with live.client() as client:
        answer = client.post("/v1/push/subscriptions", content=body, headers={"content-type": "text/plain"})
    assert answer.status_code == 200, answer.text
    assert endpoints_of(live, ws, "anon-3") == [sub["endpoint"]]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"anonymousId": "a"}, "subscription"),
        ({"anonymousId": "a", "subscription": "nope"}, "subscription"),
        (
            {"anonymousId": "a", "subscription": {**new_subscription(), "endpoint": "http://push.example.net/x"}},
            "subscription.endpoint",
        ),
        ({"anonymousId": "a", "subscription": {"endpoint": "https://push.example.net/x"}}, "subscription.keys"),
        (
            {"anonymousId": "a", "subscription": {"endpoint": "https://p.example/x", "keys": {"p256dh": "abc"}}},
            "subscription.keys.auth",
        ),
        (
            {
                "anonymousId": "a",
                "subscription": {"endpoint": "https://p.example/x", "keys": {"p256dh": "a b", "auth": "abc"}},
            },
            "subscription.keys.p256dh",
        ),
        ({"subscription": new_subscription()}, "userId"),
        ({"userId": ["x"], "subscription": new_subscription()}, "userId"),
        ({"anonymousId": "a", "subscription": new_subscription(), "userAgent": 7}, "userAgent"),
        ({"anonymousId": "a", "subscription": new_subscription(), "context": []}, "context"),
        ({"anonymousId": "a", "subscription": new_subscription(), "timestamp": "yesterday"}, "timestamp"),
        ([1, 2], "body"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(
    live: LiveServer, ws: NewWorkspace, body: Any, field: str
) -> None:
    with write(live, ws) as client:
        assert_error(client.post("/v1/push/subscriptions", json=body), 400, field)
    assert named(live, ws, "Push Subscribed") == []


@pytest.mark.parametrize(
    "service",
    [
        "https://10.0.0.7",
        "https://internal.corp.example",
        "http://127.0.0.1:8080",
        "https://fcm.googleapis.com.evil.example",
    ],
)
def test_an_endpoint_that_is_not_a_push_service_is_refused(live: LiveServer, ws: NewWorkspace, service: str) -> None:
    # The server would POST to it from inside the operator's network (SSRF): refused, named.
    with write(live, ws) as client:
        answer = client.post(
            "/v1/push/subscriptions", json={"anonymousId": "a", "subscription": new_subscription(service)}
        )
    assert_error(answer, 400, "subscription.endpoint")
    assert "not a known Web Push service" in answer.text
    assert named(live, ws, "Push Subscribed") == []


@pytest.mark.parametrize(
    "service",
    [
        "https://fcm.googleapis.com/fcm/send",
        "https://updates.push.services.mozilla.com/wpush/v2",
        "https://web.push.apple.com",
        "https://wns2-par02p.notify.windows.com/w",
    ],
)
def test_the_browsers_push_services_are_accepted(live: LiveServer, ws: NewWorkspace, service: str) -> None:
    sub = new_subscription(service)
    with write(live, ws) as client:
        answer = client.post("/v1/push/subscriptions", json={"userId": "gus", "subscription": sub})
    assert answer.status_code == 200, answer.text
    assert endpoints_of(live, ws, "gus") == [sub["endpoint"]]


def test_the_push_service_policy() -> None:
    from nudgeflow.channels.push_services import allowed, allowed_hosts

    assert allowed("https://fcm.googleapis.com/fcm/send/x")
    assert not allowed("https://push.example.org/x")
    assert allowed("https://push.example.org/x", ["push.example.org"])
    assert allowed("https://a.push.example.org/x", ["*.push.example.org"]) and not allowed(
        "https://push.example.org.evil/x", ["*.push.example.org"]
    )
    assert allowed("https://anything.example/x", ["*"])
    assert not allowed("not a url") and not allowed("https:///nohost")
    assert allowed_hosts(Settings(webpush_hosts=("a.example",))) == ("a.example",)
    assert "127.0.0.1" in allowed_hosts(Settings(dev_mode=True))  # serve --dev: its local push service
    assert Settings.from_env({"NUDGEFLOW_WEBPUSH_HOSTS": "push.corp.example, *.autopush.example"}).webpush_hosts == (
        "push.corp.example",
        "*.autopush.example",
    )


def test_not_json_an_unknown_key_or_a_wrong_type_are_refused(live: LiveServer, ws: NewWorkspace) -> None:
    sub = new_subscription()
    with write(live, ws) as client:
        assert_error(
            client.post("/v1/push/subscriptions", content=b"{", headers={"content-type": "application/json"}),
            400,
            "body",
        )
        assert_error(
            client.post("/v1/push/subscriptions", content=b"x", headers={"content-type": "image/png"}),
            415,
            "Content-Type",
        )
    with live.client(auth=("wk_not_a_key", "")) as client:
        assert_error(
            client.post("/v1/push/subscriptions", json={"anonymousId": "a", "subscription": sub}), 401, "writeKey"
        )
    with live.client() as client:
        assert_error(
            client.post("/v1/push/subscriptions", json={"anonymousId": "a", "subscription": sub}), 401, "writeKey"
        )
    assert named(live, ws, "Push Subscribed") == []


# -- unsubscribing ----------------------------------------------------------------------------------


def test_delete_removes_the_subscription_once_and_records_it(live: LiveServer, ws: NewWorkspace) -> None:
    sub = new_subscription()
    with write(live, ws) as client:
        assert client.post("/v1/push/subscriptions", json={"userId": "eve", "subscription": sub}).status_code == 200
        answer = client.request("DELETE", "/v1/push/subscriptions", json={"endpoint": sub["endpoint"]})
        assert answer.status_code == 200 and answer.json() == {"success": True, "removed": True}
        assert endpoints_of(live, ws, "eve") == []
        again = client.request("DELETE", "/v1/push/subscriptions", json={"subscription": sub})
        assert again.status_code == 200 and again.json() == {"success": True, "removed": False}
        assert_error(client.request("DELETE", "/v1/push/subscriptions", json={}), 400, "endpoint")
        assert_error(
            client.request("DELETE", "/v1/push/subscriptions", json={"subscription": {}}), 400, "subscription.endpoint"
        )
    [event] = named(live, ws, "Push Unsubscribed")
    assert event["userId"] == "eve" and event["properties"]["endpoint_hash"] == endpoint_hash(sub["endpoint"])
    with live.client() as client:
        assert_error(
            client.request("DELETE", "/v1/push/subscriptions", json={"endpoint": sub["endpoint"]}), 401, "writeKey"
        )


def test_another_workspaces_key_cannot_remove_a_subscription(live: LiveServer, ws: NewWorkspace) -> None:
    other = live.workspace("other")
    sub = new_subscription()
    with write(live, ws) as client:
        assert client.post("/v1/push/subscriptions", json={"userId": "fay", "subscription": sub}).status_code == 200
    with write(live, other) as client:
        answer = client.request("DELETE", "/v1/push/subscriptions", json={"endpoint": sub["endpoint"]})
        assert answer.status_code == 200 and answer.json()["removed"] is False
    assert endpoints_of(live, ws, "fay") == [sub["endpoint"]]


# -- CORS ---------------------------------------------------------------------------------------------


def test_the_preflight_of_a_page_on_another_origin_is_answered(live: LiveServer, ws: NewWorkspace) -> None:
    with live.client() as client:
        answer = client.options(
            "/v1/push/subscriptions",
            headers={
                "Origin": "https://shop.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "*"
    assert {"POST", "DELETE"} <= {m.strip() for m in answer.headers["access-control-allow-methods"].split(",")}
    assert {"authorization", "content-type"} <= {
        h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")
    }
    sub = new_subscription()
    with write(live, ws) as client:
        done = client.post(
            "/v1/push/subscriptions",
            json={"anonymousId": "a", "subscription": sub},
            headers={"Origin": "https://shop.example.com"},
        )
    assert done.status_code == 200 and done.headers["access-control-allow-origin"] == "*"
    assert endpoints_of(live, ws, "a") == [sub["endpoint"]]


def test_a_subscription_the_writer_cannot_store_is_a_503_to_retry(live: LiveServer, ws: NewWorkspace) -> None:
    sub = new_subscription()
    live.state.committer.stop()  # as during shutdown: nothing can be committed
    with write(live, ws) as client:
        answer = client.post("/v1/push/subscriptions", json={"anonymousId": "late", "subscription": sub})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert answer.json()["success"] is False
    assert profile_of(live, ws, "late") is None


def test_a_resubscribe_after_an_erasure_takes_its_offsets_once_at_the_end(live: LiveServer, ws: NewWorkspace) -> None:
    """The rare second write_events: the Push Subscribed event repeats one the log holds, but
    its person is gone (an erasure committed between the writer's read of the known message
    ids and its read of the identities). The event is written anew under a fresh id, in the
    same transaction, and that transaction takes its partitions' offsets once, at its end
    (store/event_log.appending), as an ingest commit does: two takes could lock partition
    heads out of order against one."""
    sub = new_subscription()
    with write(live, ws) as client:
        assert client.post("/v1/push/subscriptions", json={"userId": "eve", "subscription": sub}).status_code == 200
    [first] = named(live, ws, "Push Subscribed")
    gone = first["_profile"]
    # The state that race leaves for the second read: the event still known, no person.
    with live.state.engine.begin() as conn:
        for table in (push_subscriptions, identities, profiles):
            key = table.c.id if table is profiles else table.c.profile_id
            conn.execute(delete(table).where(table.c.workspace_id == ws.workspace_id, key == gone))

    # What each transaction on the server's connections does, in order.
    transactions: dict[int, list[str]] = {}
    done: list[list[str]] = []

    def begun(conn: Any) -> None:
        transactions[id(conn)] = []

    def statement(conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        steps = transactions.get(id(conn))
        if steps is None:
            return
        said = sql.lstrip().replace('"', "").upper()
        if said.startswith("SELECT PARTITION, HEAD FROM PARTITION_HEADS"):
            steps.append("take offsets")
        elif said.startswith("INSERT INTO PUSH_SUBSCRIPTIONS"):
            steps.append("save subscription")
        elif said.startswith("INSERT INTO EVENTS"):
            steps.append("insert events")

    def committed(conn: Any) -> None:
        done.append(transactions.pop(id(conn), []))

    engine = live.state.engine
    listeners = [("begin", begun), ("before_cursor_execute", statement), ("commit", committed)]
    for name, fn in listeners:
        event.listen(engine, name, fn)
    try:
        with write(live, ws) as client:
            answer = client.post("/v1/push/subscriptions", json={"userId": "eve", "subscription": sub})
    finally:
        for name, fn in listeners:
            event.remove(engine, name, fn)
    assert answer.status_code == 200, answer.text

    [steps] = [t for t in done if "save subscription" in t]
    # One take, for the whole transaction, after everything it wrote: at the scope's end.
    assert steps == ["save subscription", "take offsets", "insert events"]
    again = [e for e in named(live, ws, "Push Subscribed") if e["messageId"] != first["messageId"]]
    [anew] = again
    assert anew["messageId"].startswith(first["messageId"] + "-")  # the fresh id
    pid = profile_of(live, ws, "eve")
    assert pid is not None and pid != gone and anew["_profile"] == pid
    assert endpoints_of(live, ws, "eve") == [sub["endpoint"]]
    # Its offset is the one its partition's head gave last, past the earlier event's if
    # both fell in one partition.
    with engine.connect() as conn:
        stored = {
            r.message_id: (r.partition, r.part_offset)
            for r in conn.execute(
                select(events.c.message_id, events.c.partition, events.c.part_offset).where(
                    events.c.workspace_id == ws.workspace_id
                )
            )
        }
        (partition, offset), (partition_before, offset_before) = stored[anew["messageId"]], stored[first["messageId"]]
        head = conn.execute(select(partition_heads.c.head).where(partition_heads.c.partition == partition)).scalar_one()
    assert partition == partition_of(ws.workspace_id, pid) and offset == head
    assert partition != partition_before or offset > offset_before


def test_a_person_keeps_at_most_the_cap_of_subscriptions_the_least_recently_seen_replaced(
    live: LiveServer, ws: NewWorkspace
) -> None:
    """The public write key may register subscriptions for any anonymousId: without a cap one
    visitor could hold unbounded rows, each a send on every push to them."""
    cap = MAX_SUBSCRIPTIONS_PER_PROFILE
    subs = [new_subscription() for _ in range(cap + 2)]
    with write(live, ws) as client:

        def register(sub: dict[str, Any]) -> None:
            answer = client.post("/v1/push/subscriptions", json={"anonymousId": "v", "subscription": sub})
            assert answer.status_code == 200, answer.text
            live.state.clock.advance(1)

        for sub in subs[:cap]:
            register(sub)
        register(subs[0])  # the first browser is still in use: it refreshes its subscription, and is kept
        for sub in subs[cap:]:
            register(sub)
    kept = endpoints_of(live, ws, "v")
    assert len(kept) == cap
    assert set(kept) == {s["endpoint"] for s in [subs[0], *subs[3:]]}  # subs[1] and subs[2] were the stalest
    # The person's history says which were replaced, as for one removed by DELETE.
    gone = named(live, ws, "Push Unsubscribed")
    assert [e["properties"]["endpoint_hash"] for e in gone] == [endpoint_hash(s["endpoint"]) for s in subs[1:3]]
    assert {e["properties"]["reason"] for e in gone} == {"replaced"}
    assert {e["_profile"] for e in gone} == {profile_of(live, ws, "v")}


def test_merging_visitors_into_one_person_keeps_the_cap(live: LiveServer, ws: NewWorkspace) -> None:
    """Two anonymous visitors at the cap each, then both log in as one person: the merge
    brings their subscriptions along, and the least recently seen beyond the cap go."""
    cap = MAX_SUBSCRIPTIONS_PER_PROFILE
    first, second = [new_subscription() for _ in range(cap)], [new_subscription() for _ in range(cap)]
    with write(live, ws) as client:
        for visitor, subs in (("v1", first), ("v2", second)):
            for sub in subs:
                answer = client.post("/v1/push/subscriptions", json={"anonymousId": visitor, "subscription": sub})
                assert answer.status_code == 200, answer.text
                live.state.clock.advance(1)
        for visitor in ("v1", "v2"):
            assert client.post("/v1/identify", json={"userId": "eve", "anonymousId": visitor}).status_code == 200
    assert set(endpoints_of(live, ws, "eve")) == {s["endpoint"] for s in second}


def test_a_subscription_dated_far_in_the_future_is_stored_at_its_receipt(live: LiveServer, ws: NewWorkspace) -> None:
    """The subscription's event is held to ingest's future limit (docs/ingest-limits.md): a
    browser's clock set to 2200 does not put its Push Subscribed in 2200."""
    sub = new_subscription()
    with write(live, ws) as client:
        answer = client.post(
            "/v1/push/subscriptions",
            json={"anonymousId": "anon-future", "subscription": sub, "timestamp": "2200-01-01T00:00:00Z"},
        )
        assert answer.status_code == 200, answer.text
    with live.state.engine.connect() as conn:
        row = conn.execute(
            select(events.c.timestamp_ms, events.c.received_at_ms, events.c.payload).where(
                events.c.workspace_id == ws.workspace_id, events.c.event == "Push Subscribed"
            )
        ).one()
    assert row.timestamp_ms == row.received_at_ms
    assert orjson.loads(row.payload)["originalTimestamp"].startswith("2200-01-01")
    assert 'nudgeflow_events_corrected_total{field="timestamp"} 1.0' in httpx.get(f"{live.url}/metrics").text
