"""The ingest endpoints driven in-process, as an ASGI server drives them, so that a test sees
every message the app sends and every log record, and can send what uvicorn would refuse:
a client that goes away mid-body, a database that cannot be reached, a malformed header,
a middleware that changes the messages it is handed."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from nudgeflow.settings import Settings
from nudgeflow.web.app import create_app
from tests.support import make_workspace

Message = dict[str, Any]
WRITE_KEY = "wk_not_a_real_key_but_shaped_like_one"
BODY = orjson.dumps({"userId": "u-secret-body-value", "event": "Signed Up", "properties": {"plan": "pro"}})


def call(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], incoming: list[Message], *, on_send: Any = None
) -> list[Message]:
    """Run one request through the ASGI app; the messages it sent (each handed to `on_send` first)."""
    sent: list[Message] = []
    queue = list(incoming)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)  # a server's receive waits for the client
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if on_send is not None:
            on_send(message)
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    return sent


def auth() -> tuple[bytes, bytes]:
    return (b"authorization", b"Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()))


HEADERS = [(b"content-type", b"application/json"), auth()]


def unreachable_database(tmp_path: Path) -> Settings:
    """Settings whose SQLite file cannot be opened (its directory does not exist)."""
    return Settings(database_url=f"sqlite:///{tmp_path}/gone/nudgeflow.db", ingest_rate_per_second=0, log_requests=True)


def test_a_client_gone_mid_body_is_sent_nothing_and_logged_as_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(unreachable_database(tmp_path))
    gone = [{"type": "http.request", "body": BODY[:10], "more_body": True}, {"type": "http.disconnect"}]
    with caplog.at_level(logging.DEBUG):
        for path in ("/v1/track", "/v1/batch"):
            assert call(app, path, HEADERS, gone) == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    cuts = [r for r in caplog.records if r.getMessage() == "request" and getattr(r, "status", None) == 499]
    assert len(cuts) == 2  # the request log tells a cut request apart (nginx's 499)


@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
def test_a_database_that_cannot_be_reached_is_a_503_logged_without_body_or_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    app = create_app(unreachable_database(tmp_path))
    body = BODY if path == "/v1/track" else orjson.dumps({"batch": [orjson.loads(BODY) | {"type": "track"}]})
    with caplog.at_level(logging.DEBUG):
        sent = call(app, path, HEADERS, [{"type": "http.request", "body": body, "more_body": False}])
    start, answer = sent
    assert start["status"] == 503
    assert (b"retry-after", b"1") in start["headers"]
    assert orjson.loads(answer["body"]) == {
        "success": False,
        "code": "unavailable",
        "message": "the server could not take the request; retry",
    }
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1 and failures[0].error == "OperationalError"  # type: ignore[attr-defined]
    for record in caplog.records:
        logged = orjson.dumps(vars(record), default=str).decode() + record.getMessage()
        assert record.exc_info is None
        assert WRITE_KEY not in logged and "u-secret-body-value" not in logged


def test_a_content_length_that_is_no_number_is_a_400_naming_the_header(tmp_path: Path) -> None:
    """uvicorn refuses such a header before the app sees it; another server may not."""
    app = create_app(unreachable_database(tmp_path))
    headers = [*HEADERS, (b"content-length", "²".encode("latin-1"))]
    start, answer = call(app, "/v1/track", headers, [{"type": "http.request", "body": BODY, "more_body": False}])
    assert start["status"] == 400
    body = orjson.loads(answer["body"])
    assert body["code"] == "invalid_request" and body["errors"][0]["field"] == "Content-Length"


def test_each_answer_is_sent_in_messages_of_its_own(settings: Settings, engine: Any) -> None:
    """A middleware adding a header to the start message it is handed must not add it to the
    next request's answer (the common 200 was once one dict, sent to every request)."""
    app = create_app(settings)
    state = app.state.nudgeflow
    ws = make_workspace(engine)  # the engine fixture has upgraded the settings' database
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", b"Basic " + base64.b64encode(f"{ws.write_key}:".encode())),
    ]

    def add_header(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"].append((b"x-added", b"1"))

    state.committer.start()
    try:
        starts = []
        for i in range(3):
            body = orjson.dumps({"userId": "u", "event": "E", "messageId": f"m{i}"})
            sent = call(app, "/v1/track", headers, [{"type": "http.request", "body": body}], on_send=add_header)
            starts.append(sent[0])
    finally:
        state.committer.stop()
        state.engine.dispose()
    assert [s["status"] for s in starts] == [200, 200, 200]
    assert [s["headers"].count((b"x-added", b"1")) for s in starts] == [1, 1, 1]
