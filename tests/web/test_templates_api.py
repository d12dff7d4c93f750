"""The templates admin API over HTTP on a live server, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx

from tests.content.template_samples import SLOW_SUBJECT
from tests.support import start_server

CART = {
    "subject": "{{ profile.first_name | default: 'Hey' }}, your cart is waiting",
    "preheader": "{{ cart.count }} items",
    "body": (
        "<mjml><mj-body>{% for item in cart.items %}<mj-section><mj-column>"
        "<mj-text>{{ item.name }}</mj-text></mj-column></mj-section>{% endfor %}</mj-body></mjml>"
    ),
}


def test_put_get_list_and_versions(api: httpx.Client) -> None:
    first = api.put("/api/templates/cart-1", json=CART)
    assert first.status_code == 201, first.text
    assert first.json() == {"name": "cart-1", "version": 1, "new_version": True}
    same = api.put("/api/templates/cart-1", json=CART)
    assert same.status_code == 200 and same.json()["new_version"] is False
    yaml_body = "subject: Second\nbody: |\n  <p>{{ profile.first_name | default: 'x' }}</p>\n"
    second = api.put("/api/templates/cart-1", content=yaml_body, headers={"Content-Type": "application/yaml"})
    assert second.status_code == 200 and second.json()["version"] == 2

    got = api.get("/api/templates/cart-1").json()
    assert got["version"] == 2 and got["current_version"] == 2 and got["source"]["subject"] == "Second"
    assert [v["version"] for v in got["versions"]] == [1, 2]
    old = api.get("/api/templates/cart-1", params={"version": 1}).json()
    assert old["source"]["subject"] == CART["subject"]
    assert api.get("/api/templates/cart-1", params={"version": 5}).status_code == 404
    deep = api.put(
        "/api/templates/cart-1",
        content="subject: " + "[" * 5000 + "]" * 5000,
        headers={"Content-Type": "application/yaml"},
    )  # was a 500: RecursionError in the YAML parser
    assert deep.status_code == 422 and "nested too deeply" in deep.json()["detail"], deep.text
    # A few hundred bytes whose aliases stand for 160,000 values: refused before anything can
    # walk it (as PUT /api/journeys and /api/policies refuse them).
    lines = ["a0: &a0 [" + ", ".join(["x"] * 20) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 20) + "]" for i in range(1, 5)]
    bomb = api.put(
        "/api/templates/cart-1",
        content="\n".join([*lines, "subject: Hi", "body: <p>x</p>", "extra: *a4"]),
        headers={"Content-Type": "application/yaml"},
    )
    assert bomb.status_code == 422 and "aliases expand" in bomb.json()["detail"], bomb.text
    for version in (2**31, 10**20):  # beyond the version column: a 422, not a driver's overflow
        bad = api.get("/api/templates/cart-1", params={"version": version})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "version", bad.text
    assert api.get("/api/templates/nope").status_code == 404
    listed = api.get("/api/templates").json()["templates"]
    assert [(t["name"], t["channel"], t["current_version"]) for t in listed] == [("cart-1", "email", 2)]


def test_put_invalid_answers_422_with_part_line_column(api: httpx.Client) -> None:
    bad = api.put("/api/templates/bad", json={"subject": "ok", "body": "<p>\n{{ profile. }}</p>"})
    assert bad.status_code == 422
    assert bad.json()["error"]["part"] == "body" and bad.json()["error"]["line"] == 2
    missing = api.put("/api/templates/bad", json={"body": "<p>x</p>"})
    assert missing.status_code == 422 and "subject" in missing.json()["detail"]
    assert api.put("/api/templates/bad", content="[1", headers={"Content-Type": "application/json"}).status_code == 422
    assert api.get("/api/templates").json()["templates"] == []


def test_render_sample_context_and_errors(api: httpx.Client) -> None:
    api.put("/api/templates/cart-1", json=CART)
    sample = api.post("/api/templates/cart-1/render", json={"sample": True})
    assert sample.status_code == 200, sample.text
    body = sample.json()
    assert body["subject"] == "Ana, your cart is waiting" and body["preheader"] == "3 items"
    assert "Stoneware Mug" in body["html"] and "Gooseneck Kettle" in body["html"]
    given = api.post(
        "/api/templates/cart-1/render", json={"context": {"cart": {"count": 1, "items": [{"name": "Tea"}]}}}
    )
    assert given.json()["subject"] == "Hey, your cart is waiting" and "Tea" in given.json()["html"]
    failed = api.post("/api/templates/cart-1/render", json={"context": {"cart": {"items": []}}})
    assert failed.status_code == 422 and failed.json()["error"]["part"] == "preheader"
    assert api.post("/api/templates/nope/render", json={"sample": True}).status_code == 404
    assert api.post("/api/templates/cart-1/render", json={"profile": "nobody"}).status_code == 404


def test_render_a_stored_profile(live: Any, ws: Any, api: httpx.Client) -> None:
    with live.client(auth=(ws.write_key, "")) as ingest:
        sent = ingest.post(
            "/v1/identify", json={"userId": "u-7", "traits": {"first_name": "Mia", "email": "mia@example.com"}}
        )
        assert sent.status_code == 200
        ingest.post(
            "/v1/track",
            json={
                "userId": "u-7",
                "event": "Product Added",
                "properties": {"product_id": "p1", "name": "Teapot", "price": 30},
            },
        )
    live.state.committer.flush() if hasattr(live.state.committer, "flush") else None
    api.put("/api/templates/cart-1", json=CART)
    for _ in range(50):
        rendered = api.post("/api/templates/cart-1/render", json={"profile": "u-7"})
        if rendered.status_code == 200 and "Teapot" in rendered.json()["html"]:
            break
    assert rendered.status_code == 200, rendered.text
    assert rendered.json()["subject"] == "Mia, your cart is waiting"
    assert "Teapot" in rendered.json()["html"]


def test_push_template_and_auth(live: Any, api: httpx.Client) -> None:
    push = {
        "channel": "push",
        "title": "Level {{ event.properties.level }}!",
        "body": "Well done",
        "url": "nudgeshop://levels/{{ event.properties.level }}",
        "data": {"level": "{{ event.properties.level }}"},
    }
    assert api.put("/api/templates/push-level-up", json=push).status_code == 201
    out = api.post("/api/templates/push-level-up/render", json={"sample": True}).json()
    assert out == {
        "name": "push-level-up",
        "context": "sample",
        "channel": "push",
        "title": "Level 12!",
        "body": "Well done",
        "image": None,
        "url": "nudgeshop://levels/12",
        "data": {"level": "12"},
    }
    assert (
        api.put(
            "/api/templates/push-level-up",
            json={**push, "channel": "email", "subject": "s", "title": None, "url": None, "data": {}},
        ).status_code
        == 409
    )
    with live.client() as anonymous:
        assert anonymous.get("/api/templates").status_code == 401


def _probe_seconds(probe: httpx.Client) -> float:
    """How long one /healthz takes to answer, in seconds."""
    import time

    started = time.perf_counter()
    assert probe.get("/healthz").status_code == 200
    return time.perf_counter() - started


def test_a_slow_preview_fails_at_its_budget_while_the_server_stays_responsive(api: httpx.Client, live: Any) -> None:
    """A preview used to render on the event loop: this template held /healthz for its whole
    run. It renders in a worker thread now, and stops at the 2 s budget with a clear error."""
    import threading
    import time

    assert api.put("/api/templates/slow", json={"subject": SLOW_SUBJECT, "body": "<p>x</p>"}).status_code == 201
    answer: dict[str, Any] = {}

    def preview() -> None:
        started = time.monotonic()
        answer["response"] = api.post("/api/templates/slow/render", json={"sample": True})
        answer["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=preview)
    latencies: list[float] = []
    with live.client() as probe:
        assert probe.get("/healthz").status_code == 200  # the connection, before the clock starts
        quiet = sorted(_probe_seconds(probe) for _ in range(20))[10]  # this machine's probe now, no render
        worker.start()
        while worker.is_alive():
            latencies.append(_probe_seconds(probe))
    worker.join()
    response = answer["response"]
    assert response.status_code == 422, response.text
    assert response.json()["error"]["part"] == "subject"
    assert "longer than its budget of 2000 ms" in response.json()["error"]["message"]
    assert 2.0 <= answer["seconds"] < 4.0
    assert len(latencies) >= 10
    # The old code gave no answer for the whole render (2 s): no probe comes near that. The
    # bounds leave room for a loaded machine (the suite runs on two workers over 2 cores,
    # and a pause of the whole process hits any thread), never for the render's seconds.
    # A probe is slow at 0.1 s, or at five times the machine's probe without a render when
    # the machine is that loaded (with two busy processes beside it, 5 of 30
    # probes took 0.11-0.18 s, none near 1 s, and the test failed).
    slow_at = max(0.1, 5 * quiet)
    slow = [t for t in latencies if t >= slow_at]
    assert len(slow) <= max(1, len(latencies) // 10) and max(latencies) < 1.0, (quiet, sorted(latencies)[-5:])
    # The typical probe is far below the bound (a few ms on a quiet machine; the render gives
    # up the interpreter every 2 ms), which a frozen loop would not be.
    assert sorted(latencies)[len(latencies) // 2] < slow_at, (quiet, sorted(latencies))


def test_the_render_budget_is_a_setting(settings: Any, clock: Any) -> None:
    from nudgeflow.content import templates
    from nudgeflow.settings import Settings

    assert Settings.from_env({"NUDGEFLOW_RENDER_TIMEOUT_MS": "300"}).render_timeout_ms == 300
    server = start_server(settings.with_(render_timeout_ms=300), clock)
    try:
        ws = server.workspace()
        with server.admin(ws.admin_token) as api:
            assert api.put("/api/templates/slow", json={"subject": SLOW_SUBJECT, "body": "<p>x</p>"}).status_code == 201
            answer = api.post("/api/templates/slow/render", json={"sample": True})
        assert answer.status_code == 422 and "budget of 300 ms" in answer.json()["detail"]
    finally:
        server.stop()
        templates.set_render_budget(templates.DEFAULT_RENDER_BUDGET_MS)
