"""Health, the OpenAPI document and Prometheus metrics of a running server."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from nudgeflow.settings import Settings
from nudgeflow.store.workspaces import NewWorkspace
from nudgeflow.web.app import create_app
from tests.support import LiveServer

INGEST_PATHS = [f"/v1/{p}" for p in ("track", "identify", "page", "screen", "group", "alias", "batch", "import")]
PROFILE_PATHS = ["/api/profiles/{ref}", "/api/profiles/{ref}/events", "/api/profiles/{ref}/export"]


def scrape(live: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with live.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, item in node.items():
            if key == "$ref" and isinstance(item, str):
                yield item
            else:
                yield from references(item)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def test_healthz_answers_200_when_ready(live: LiveServer) -> None:
    with live.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    # No SMTP server and no push in use: both go to the log channel, and health says so.
    # (On PostgreSQL the tests share one database, where other tests' workspaces set up
    # SMTP and push: a channel some workspace set up is configured.)
    body = response.json()
    if live.state.settings.is_sqlite:
        assert body == {"status": "ok", "channels_not_configured": ["email", "push"]}
    else:
        assert body["status"] == "ok" and set(body["channels_not_configured"]) <= {"email", "push"}


def test_healthz_answers_503_until_started_and_after_stopping(settings: Settings) -> None:
    import anyio
    import httpx

    app = create_app(settings)
    state = app.state.nudgeflow

    async def health() -> int:
        # ASGITransport runs no lifespan: this is the app before startup has finished.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return (await client.get("/healthz")).status_code

    assert anyio.run(health) == 503
    state.committer.start()
    state.ready = True
    try:
        assert anyio.run(health) == 200
    finally:
        state.ready = False
        state.committer.stop()
    assert anyio.run(health) == 503
    state.engine.dispose()


def test_openapi_describes_ingest_and_the_admin_api(live: LiveServer) -> None:
    with live.client() as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in INGEST_PATHS:
        operation = paths[path]["post"]
        assert "ingest" in operation["tags"]
        assert {"200", "400", "401", "413", "415", "429"} <= set(operation["responses"])
        assert {"writeKeyBasic": []} in operation["security"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[1] in spec["components"]["schemas"]
    for path in PROFILE_PATHS:
        assert path in paths
    assert "delete" in paths["/api/profiles/{ref}"]
    for path, item in paths.items():
        if path.startswith("/api/"):
            for operation in item.values():
                assert operation["security"] == [{"adminToken": []}]
    assert "/healthz" in paths and "/metrics" in paths
    # Every reference in the document resolves.
    schemas = spec["components"]["schemas"]
    refs = list(references(spec))
    assert len(refs) >= len(INGEST_PATHS)
    for ref in refs:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    error = schemas["IngestError"]["properties"]
    assert {"code", "message", "errors"} <= set(error)


def test_metrics_count_accepted_and_rejected_events_by_reason(live: LiveServer, ws: NewWorkspace) -> None:
    json = {"content-type": "application/json"}
    with live.client(auth=(ws.write_key, "")) as client:
        for i in range(3):
            assert client.post("/v1/track", json={"userId": "u", "event": "E", "messageId": f"m{i}"}).status_code == 200
        batch = {"batch": [{"type": "track", "userId": "u", "event": "E", "messageId": f"b{i}"} for i in range(10)]}
        assert client.post("/v1/batch", json=batch).status_code == 200
        assert (
            client.post("/v1/track", json={"userId": "u", "event": "E", "messageId": "m0"}).status_code == 200
        )  # repeat
        assert client.post("/v1/track", content=b"{", headers=json).status_code == 400
        bad_batch = {"batch": [*batch["batch"][:4], {"type": "track", "event": "no id"}]}
        assert client.post("/v1/batch", json=bad_batch).status_code == 400
        assert client.post("/v1/track", content=b"{}", headers={"content-type": "text/xml"}).status_code == 415
        big = {"userId": "u", "event": "E", "properties": {"x": "y" * 40_000}}
        assert client.post("/v1/track", json=big).status_code == 400  # an event too large, as in a batch
        assert (
            client.post(
                "/v1/batch", content=gzip.compress(b"{}")[:-3], headers={**json, "content-encoding": "gzip"}
            ).status_code
            == 400
        )
        assert (
            client.post("/v1/identify", json={"userId": "u", "traits": {"timezone": "Atlantis/Capital"}}).status_code
            == 200
        )
    with live.client(auth=("wk_unknown_key_1234", "")) as client:
        assert client.post("/v1/track", json={"userId": "u", "event": "E"}).status_code == 401

    samples = scrape(live)
    assert value(samples, "nudgeflow_events_accepted_total") == 3 + 10 + 1
    assert value(samples, "nudgeflow_events_duplicate_total") == 1
    rejected = {
        dict(labels)["reason"]: v for (name, labels), v in samples.items() if name == "nudgeflow_events_rejected_total"
    }
    # A refused batch counts all of its events: none of them was stored.
    assert rejected == {"invalid": 1 + 5 + 1, "content_type": 1, "too_large": 1, "auth": 1, "invalid_trait": 1}


def test_metrics_record_request_latency_and_commit_batch_sizes(live: LiveServer, ws: NewWorkspace) -> None:
    with live.client(auth=(ws.write_key, "")) as client:
        for i in range(5):
            assert client.post("/v1/track", json={"userId": "u", "event": "E", "messageId": f"t{i}"}).status_code == 200
        batch = {"batch": [{"type": "page", "anonymousId": "a", "messageId": f"p{i}"} for i in range(40)]}
        assert client.post("/v1/batch", json=batch).status_code == 200
        assert client.get("/healthz").status_code == 200

    samples = scrape(live)
    assert value(samples, "nudgeflow_request_seconds_count", route="/v1/track") == 5
    assert value(samples, "nudgeflow_request_seconds_count", route="/v1/batch") == 1
    assert value(samples, "nudgeflow_request_seconds_sum", route="/v1/track") > 0
    assert value(samples, "nudgeflow_request_seconds_bucket", route="/v1/track", le="+Inf") == 5
    assert value(samples, "nudgeflow_request_seconds_count", route="/healthz") >= 2  # the fixture polls it too
    # Six commits (five single events, one batch of 40), each the events it wrote.
    assert value(samples, "nudgeflow_commit_batch_events_count") == 6
    assert value(samples, "nudgeflow_commit_batch_events_sum") == 45
    assert value(samples, "nudgeflow_commit_batch_events_bucket", le="1.0") == 5
    assert value(samples, "nudgeflow_commit_batch_events_bucket", le="50.0") == 6
    assert value(samples, "nudgeflow_commit_batch_requests_count") == 6
    assert value(samples, "nudgeflow_commit_batch_requests_sum") == 6


def test_the_admin_routes_are_timed_as_one_group(live: LiveServer, ws: NewWorkspace) -> None:
    # Profile ids in paths would make one time series per person; they are grouped.
    headers = {"authorization": f"Bearer {ws.admin_token}"}
    with live.client() as client:
        for ref in ("a", "b", "c"):
            client.get(f"/api/profiles/{ref}", headers=headers)
    samples = scrape(live)
    routes: set[Any] = {
        dict(labels).get("route") for (name, labels) in samples if name.startswith("nudgeflow_request_seconds")
    }
    assert "/api" in routes
    assert not any(str(r).startswith("/api/") for r in routes)
    assert value(samples, "nudgeflow_request_seconds_count", route="/api") == 3


def test_paths_the_app_does_not_serve_are_timed_as_other(live: LiveServer, ws: NewWorkspace) -> None:
    # A client making up /v1/<x> paths must not add a histogram child (memory) per path.
    with live.client(auth=(ws.write_key, "")) as client:
        for i in range(5):
            assert client.post(f"/v1/made-up-{i}", json={}).status_code == 404
            assert client.get(f"/v1/track/{i}").status_code == 404
        assert client.post("/v1/track", json={"userId": "u", "event": "E"}).status_code == 200
        assert client.get("/v1/track").status_code == 405  # the router's answer, timed under the same route
        assert client.options("/v1/push/subscriptions").status_code < 300
    samples = scrape(live)
    routes = {dict(labels).get("route") for (name, labels) in samples if name == "nudgeflow_request_seconds_count"}
    assert not any("made-up" in str(r) or str(r).startswith("/v1/track/") for r in routes)
    assert value(samples, "nudgeflow_request_seconds_count", route="other") == 10
    assert value(samples, "nudgeflow_request_seconds_count", route="/v1/track") == 2
    assert value(samples, "nudgeflow_request_seconds_count", route="/v1/push/subscriptions") == 1


def test_a_repeat_messageid_with_other_content_is_dropped_and_counted_apart(live: LiveServer, ws: NewWorkspace) -> None:
    from sqlalchemy import select

    from nudgeflow.store.schema import events

    first = {
        "userId": "u",
        "event": "Order Completed",
        "messageId": "m-1",
        "properties": {"total": 10},
        "timestamp": "2026-01-05T10:00:00Z",
        "sentAt": "2026-01-05T10:00:01Z",
    }
    with live.client(auth=(ws.write_key, "")) as client:
        assert client.post("/v1/track", json=first).status_code == 200
        # A retry of the same event (another sentAt, so another corrected timestamp): a plain repeat.
        assert client.post("/v1/track", json={**first, "sentAt": "2026-01-05T10:00:09Z"}).status_code == 200
        # The same id for another event: accepted (200, as every repeat) and not stored.
        assert client.post("/v1/track", json={**first, "properties": {"total": 99}}).status_code == 200
        # Inside one batch: the second m-2 differs from the first.
        batch = {
            "batch": [
                {"type": "track", "userId": "u", "event": "A", "messageId": "m-2"},
                {"type": "track", "userId": "u", "event": "B", "messageId": "m-2"},
                {"type": "track", "userId": "u", "event": "A", "messageId": "m-2"},
            ]
        }
        assert client.post("/v1/batch", json=batch).status_code == 200
    samples = scrape(live)
    assert value(samples, "nudgeflow_events_accepted_total") == 2
    assert value(samples, "nudgeflow_events_duplicate_total") == 4
    assert value(samples, "nudgeflow_events_duplicate_conflict_total") == 2
    with live.state.engine.connect() as conn:
        rows = conn.execute(
            select(events.c.message_id, events.c.event, events.c.payload)
            .where(events.c.workspace_id == ws.workspace_id)
            .order_by(events.c.seq)
        ).all()
    assert [(r.message_id, r.event) for r in rows] == [("m-1", "Order Completed"), ("m-2", "A")]
    assert '"total":10' in rows[0].payload  # the first one stored wins
