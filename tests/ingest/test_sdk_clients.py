"""The official Segment and RudderStack Python libraries, pointed at a live Nudgeflow server.

These are the real clients (`segment-analytics-python`, `rudder-sdk-python`), unmodified:
their queues, consumer threads, batching, gzip and retries are what a customer runs. Tests
wait on the clients' own flush(), never on sleeps, and compare what the clients produced
(the messageIds their calls returned) with what the database holds.

Quirks of the libraries that shape these tests:
- both batch in a consumer thread; `flush()` blocks until every queued message was
  uploaded or given up on, and `on_error(exc, batch)` is how a lost batch is reported;
- Segment sends the write key both as the Basic user and as `writeKey` in the body, gzip
  is off unless asked; RudderStack sends Basic auth only and gzips by default;
- RudderStack's identify puts traits in `context.traits`, not at the root;
- RudderStack's batches may grow to 4 MB, above Segment's 500 KB request limit that
  Nudgeflow keeps: its default upload_size (100 events) stays well under it;
- both keep a module-level requests session (connection pool) shared by all clients.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import orjson
import pytest
from segment.analytics import Client as SegmentClient
from segment.analytics.consumer import MAX_MSG_SIZE
from segment.analytics.request import DatetimeSerializer
from sqlalchemy import select

from nudgeflow.store.profiles import get_profile, resolve_profile_id
from nudgeflow.store.schema import events
from tests.ingest.sdk_client_support import Errors, Factory

BULK = 5000
RECEIVED_MS = 1_767_225_600_000  # the virtual clock's 2026-01-01T00:00:00Z


def queued(result: tuple[bool, dict[str, Any]]) -> str:
    """The clients answer (queued?, message); the message carries the id they generated."""
    ok, message = result
    assert ok, "the client's queue refused the message"
    return str(message["messageId"])


def stored_ids(live: Any, workspace_id: str) -> list[str]:
    with live.state.engine.connect() as conn:
        return list(conn.execute(select(events.c.message_id).where(events.c.workspace_id == workspace_id)).scalars())


def stored_events(live: Any, workspace_id: str) -> dict[str, Any]:
    with live.state.engine.connect() as conn:
        rows = conn.execute(select(events).where(events.c.workspace_id == workspace_id).order_by(events.c.seq))
        return {r.message_id: r for r in rows}


def profile(live: Any, workspace_id: str, ref: str) -> dict[str, Any]:
    with live.state.engine.connect() as conn:
        pid = resolve_profile_id(conn, workspace_id, ref)
        assert pid is not None, f"no profile for {ref!r}"
        found = get_profile(conn, workspace_id, pid)
    assert found is not None
    return found


def product(i: int) -> dict[str, Any]:
    """Properties the size of a real e-commerce event (a few hundred bytes)."""
    return {
        "product_id": f"sku-{i:06d}",
        "name": f"Organic cotton t-shirt, model {i}",
        "category": "Apparel/Men/Shirts",
        "brand": "Nudgewear",
        "variant": ["black", "white", "navy"][i % 3],
        "price": round(9.99 + i % 50, 2),
        "currency": "EUR",
        "quantity": 1 + i % 3,
        "url": f"https://shop.example.com/products/{i}",
        "image_url": f"https://cdn.example.com/img/{i}.jpg",
    }


def every_call(client: Any, user: str, anon: str, laptop: str) -> list[str]:
    """One of each Segment call, in the order a real visitor produces them."""
    return [
        queued(client.page(anonymous_id=anon, category="Landing", name="Home", properties={"path": "/"})),
        queued(client.screen(anonymous_id=anon, name="Onboarding", properties={"step": 1})),
        queued(client.track(anonymous_id=anon, event="Product Viewed", properties=product(1))),
        queued(client.track(anonymous_id=laptop, event="Product Added", properties=product(2))),
        queued(
            client.identify(
                user_id=user,
                anonymous_id=anon,
                traits={"email": "ada@example.com", "firstName": "Ada", "plan": "trial", "timezone": "Europe/London"},
            )
        ),
        queued(client.group(user_id=user, group_id="acme-inc", traits={"name": "Acme Inc", "employees": 42})),
        queued(client.alias(previous_id=laptop, user_id=user)),
        queued(client.track(user_id=user, event="Order Completed", properties={"order_id": "o-1", "revenue": 29.97})),
    ]


def check_every_call(live: Any, ws: Any, ids: list[str], user: str, anon: str, laptop: str, library: str) -> None:
    rows = stored_events(live, ws.workspace_id)
    assert sorted(rows) == sorted(ids)
    page, screen, viewed, added, identify, group, alias, order = (rows[i] for i in ids)
    assert [r.type for r in (page, screen, viewed, added, identify, group, alias, order)] == [
        "page",
        "screen",
        "track",
        "track",
        "identify",
        "group",
        "alias",
        "track",
    ]
    assert (page.event, screen.event, viewed.event, added.event, order.event) == (
        "Home",
        "Onboarding",
        "Product Viewed",
        "Product Added",
        "Order Completed",
    )
    payloads = {i: orjson.loads(rows[i].payload) for i in ids}
    assert payloads[ids[0]]["category"] == "Landing"
    assert payloads[ids[2]]["properties"] == product(1)
    assert payloads[ids[5]]["groupId"] == "acme-inc"
    assert payloads[ids[5]]["traits"] == {"name": "Acme Inc", "employees": 42}
    assert payloads[ids[6]]["previousId"] == laptop
    assert payloads[ids[7]]["properties"]["revenue"] == 29.97
    for message in payloads.values():
        assert message["context"]["library"]["name"] == library
        assert "writeKey" not in message  # the key is never stored with the event
        # The device clock was corrected against sentAt: the events happened just before
        # the server (on its virtual clock) received them.
        assert message["receivedAt"].startswith("2026-01-01T00:00:00")
    for row in rows.values():
        assert RECEIVED_MS - 60_000 <= row.timestamp_ms <= RECEIVED_MS

    # identify with both ids, and alias, made one person of the visitor's two devices.
    person = profile(live, ws.workspace_id, user)
    assert person["identities"] == {"user_ids": [user], "anonymous_ids": sorted([anon, laptop])}
    assert person["event_count"] == 8
    assert profile(live, ws.workspace_id, laptop)["id"] == person["id"]
    assert person["traits"] == {
        "email": "ada@example.com",
        "first_name": "Ada",
        "plan": "trial",
        "timezone": "Europe/London",
    }


def ids_for(prefix: str) -> tuple[str, str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"{prefix}-user-{tag}", f"{prefix}-anon-{tag}", f"{prefix}-laptop-{tag}"


# -- every call lands --------------------------------------------------------------------


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_segment_every_call_lands(live: Any, ws: Any, segment: Factory, upload_errors: Errors, gzip: bool) -> None:
    client = segment(gzip=gzip)
    user, anon, laptop = ids_for("seg")
    ids = every_call(client, user, anon, laptop)
    client.flush()
    assert upload_errors.seen == []
    check_every_call(live, ws, ids, user, anon, laptop, "analytics-python")


def test_segment_sync_mode_lands_each_call_before_returning(
    live: Any, ws: Any, segment: Factory, upload_errors: Errors
) -> None:
    client = segment(sync_mode=True)
    user, anon, laptop = ids_for("sync")
    ids = every_call(client, user, anon, laptop)
    # No flush: in sync mode each call returned only after the server answered 200,
    # which Nudgeflow gives only once the event is committed.
    assert upload_errors.seen == []
    check_every_call(live, ws, ids, user, anon, laptop, "analytics-python")


def test_rudder_every_call_lands(live: Any, ws: Any, rudder: Factory, upload_errors: Errors) -> None:
    client = rudder()  # gzip is on by default
    assert client.gzip is True
    user, anon, laptop = ids_for("rudder")
    ids = every_call(client, user, anon, laptop)
    client.flush()
    assert upload_errors.seen == []
    check_every_call(live, ws, ids, user, anon, laptop, "analytics-python")
    identify = orjson.loads(stored_events(live, ws.workspace_id)[ids[4]].payload)
    assert "traits" not in identify and identify["context"]["traits"]["plan"] == "trial"
    assert identify["channel"] == "server"


# -- thousands of events -----------------------------------------------------------------


def send_bulk(client: Any, n: int, prefix: str) -> list[str]:
    ids = []
    for i in range(n):
        user = f"{prefix}-buyer-{i % 97}"
        if i % 10 == 0:
            ids.append(queued(client.identify(user_id=user, traits={"plan": ["free", "pro"][i % 2], "orders": i})))
        elif i % 7 == 0:
            ids.append(
                queued(client.page(anonymous_id=f"{prefix}-visitor-{i % 31}", name="Catalog", properties={"page": i}))
            )
        else:
            ids.append(queued(client.track(user_id=user, event="Product Viewed", properties=product(i))))
    return ids


def assert_delivered_once(live: Any, ws: Any, produced: list[str], upload_errors: Errors) -> None:
    assert upload_errors.seen == [], f"the client reported failed uploads: {upload_errors.seen[:3]}"
    assert len(set(produced)) == len(produced)
    stored = stored_ids(live, ws.workspace_id)
    assert len(stored) == len(produced), "events lost or doubled"
    assert set(stored) == set(produced)


@pytest.mark.parametrize(
    ("gzip", "upload_size"),
    [(False, 100), (True, 100), (False, 1000), (True, 1000)],
    ids=["plain-100", "gzip-100", "plain-1000", "gzip-1000"],
)
def test_segment_delivers_thousands_once(
    live: Any, ws: Any, segment: Factory, upload_errors: Errors, gzip: bool, upload_size: int
) -> None:
    """upload_size 1000 makes the client cut batches at its ~475 KB size limit instead:
    requests near Segment's 500 KB cap, which Nudgeflow must accept."""
    client = segment(gzip=gzip, upload_size=upload_size, max_queue_size=BULK * 2)
    produced = send_bulk(client, BULK, f"seg-{gzip}-{upload_size}")
    client.flush()
    assert_delivered_once(live, ws, produced, upload_errors)
    client.shutdown()
    assert live.state.committer.running


def test_rudder_delivers_thousands_once(live: Any, ws: Any, rudder: Factory, upload_errors: Errors) -> None:
    client = rudder(max_queue_size=BULK * 2)
    produced = send_bulk(client, BULK, "rudder")
    client.shutdown()  # flush, then stop the consumer
    assert_delivered_once(live, ws, produced, upload_errors)
    traits = profile(live, ws.workspace_id, "rudder-buyer-0")["traits"]
    assert set(traits) == {"plan", "orders"}  # identify traits from context.traits were applied


def test_clients_at_once_into_one_workspace(
    live: Any, ws: Any, segment: Factory, rudder: Factory, upload_errors: Errors
) -> None:
    """Three clients upload concurrently: their requests share group commits, nothing mixes up."""
    senders = [segment(gzip=False), segment(gzip=True, upload_size=250), rudder()]
    produced: list[list[str]] = [[] for _ in senders]

    def run(k: int) -> None:
        produced[k] = send_bulk(senders[k], 2000, f"conc-{k}")
        senders[k].flush()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(senders))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
        assert not t.is_alive()
    assert_delivered_once(live, ws, [i for ids in produced for i in ids], upload_errors)


def test_retried_upload_is_stored_once(live: Any, ws: Any, segment: Factory, upload_errors: Errors) -> None:
    """A client retrying a batch it thinks failed resends the same messageIds: stored once."""
    client = segment(sync_mode=True)
    message_id = str(uuid.uuid4())
    for _ in range(3):
        client.track(user_id="retry-user", event="Checkout Started", message_id=message_id)
    assert upload_errors.seen == []
    assert stored_ids(live, ws.workspace_id) == [message_id]
    assert profile(live, ws.workspace_id, "retry-user")["event_count"] == 1


def test_client_errors_are_reported_not_swallowed(
    live: Any, ws: Any, upload_errors: Errors, sdk_clients: list[Any]
) -> None:
    """The on_error check above means something: a wrong write key does reach on_error."""
    client = SegmentClient("wk_wrong", host=live.url, on_error=upload_errors, max_retries=0)
    sdk_clients.append(client)
    client.track(user_id="nobody", event="Signed Up")
    client.flush()
    assert len(upload_errors.seen) == 1
    exc, size = upload_errors.seen[0]
    assert size == 1
    assert getattr(exc, "status", None) == 401
    assert stored_ids(live, ws.workspace_id) == []


def test_rudder_without_gzip(live: Any, ws: Any, rudder: Factory, upload_errors: Errors) -> None:
    client = rudder(gzip=False)
    produced = send_bulk(client, 300, "rudder-plain")
    client.flush()
    assert_delivered_once(live, ws, produced, upload_errors)


def test_events_near_the_size_limit_the_client_allows_are_accepted(
    live: Any, ws: Any, segment: Factory, upload_errors: Errors
) -> None:
    """Segment's client lets through any event up to 32 KB as it serializes it; the server
    adds receivedAt and the corrected timestamp, which must not push it over the limit and
    lose the whole batch with it."""
    client = segment(upload_size=20)
    produced = [queued(client.track(user_id="small", event="Before")) for _ in range(5)]
    _ok, message = client.track(user_id="big", event="Big", properties={"blob": ""})
    # The client measures json.dumps of the message (with its default separators).
    room = MAX_MSG_SIZE - len(json.dumps(message, cls=DatetimeSerializer).encode())  # exactly at its limit
    produced.append(queued(client.track(user_id="big", event="Big", properties={"blob": "x" * room})))
    produced += [queued(client.track(user_id="small", event="After")) for _ in range(5)]
    produced.insert(0, str(message["messageId"]))
    client.flush()
    assert_delivered_once(live, ws, produced, upload_errors)
