"""Logs are JSON, and no write key, admin token or credential ever reaches them."""

from __future__ import annotations

import base64
import io
import logging
import sys

import orjson
import pytest

from nudgeflow.core.clock import VirtualClock
from nudgeflow.logs import JsonFormatter, configure_logging, redact
from nudgeflow.settings import Settings
from tests.support import start_server

WRITE_KEY = "wk_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
ADMIN_TOKEN = "nfa_Zy9xWv8uTs7rQp6oNm5lKj4iHg3fEd2cBa1_-Q"


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("nudgeflow.test", logging.INFO, __file__, 1, msg, args or None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


@pytest.mark.parametrize(
    "text",
    [
        f"write key {WRITE_KEY} was used",
        f"token={ADMIN_TOKEN}",
        f"Authorization: Basic {base64.b64encode(f'{WRITE_KEY}:'.encode()).decode()}",
        "authorization: basic d2tfc2VjcmV0c2VjcmV0Og==",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "Authorization: bearer some.jwt-looking.token_value",
        '{"writeKey": "a-key-of-another-format", "userId": "u"}',
        "write_key=plain-key-value other=1",
        "admin_token: 'abcdefgh'",
        "password=hunter22",
    ],
)
def test_redact_removes_credentials(text: str) -> None:
    out = redact(text)
    assert "[REDACTED]" in out
    for secret in (
        WRITE_KEY,
        ADMIN_TOKEN,
        "d2tfc2VjcmV0",
        "some.jwt",
        "a-key-of-another",
        "plain-key-value",
        "abcdefgh",
        "hunter22",
    ):
        assert secret not in out


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "ingested 500 events for workspace ws_0123456789abcdef in 12 ms (wk_ prefix alone is fine)"
    assert redact(text) == text


def test_the_json_formatter_writes_one_object_and_redacts_message_and_extras() -> None:
    line = JsonFormatter().format(
        record("key %s rejected", WRITE_KEY, route="/v1/track", header=f"Bearer {ADMIN_TOKEN}", status=401)
    )
    out = orjson.loads(line)
    assert out["level"] == "info" and out["logger"] == "nudgeflow.test"
    assert out["msg"] == "key [REDACTED] rejected"
    assert out["route"] == "/v1/track" and out["status"] == 401
    assert ADMIN_TOKEN not in line and WRITE_KEY not in line
    assert out["ts"].endswith("+00:00")


def test_the_json_formatter_redacts_exception_text() -> None:
    try:
        raise ValueError(f"bad key {WRITE_KEY}")
    except ValueError:
        rec = logging.LogRecord("nudgeflow.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = JsonFormatter().format(rec)
    assert "ValueError" in orjson.loads(line)["exc"]
    assert WRITE_KEY not in line


def test_configure_logging_installs_the_json_formatter() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        configure_logging("INFO", stream)
        logging.getLogger("nudgeflow.test").info("hello %s", WRITE_KEY, extra={"n": 1})
        logging.getLogger("uvicorn.access").info("GET /v1/track?writeKey=x")  # ours replace these
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        logging.getLogger("uvicorn.access").disabled = False
    lines = stream.getvalue().splitlines()
    assert [orjson.loads(line)["msg"] for line in lines] == ["hello [REDACTED]"]
    assert orjson.loads(lines[0])["n"] == 1


def test_a_server_logging_every_request_never_logs_a_key_or_token(
    settings: Settings, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = start_server(settings.with_(log_requests=True, log_level="DEBUG"), clock)
    try:
        ws = server.workspace()
        body_key = {"userId": "u", "event": "E", "writeKey": ws.write_key}
        with server.client(auth=(ws.write_key, "")) as client:
            assert client.post("/v1/track", json={"userId": "u", "event": "E"}).status_code == 200
            assert client.post("/v1/batch", json={"batch": [{"type": "identify", "userId": "u"}]}).status_code == 200
            assert (
                client.post("/v1/identify", json={"userId": "u", "traits": {"timezone": "Nope/Nowhere"}}).status_code
                == 200
            )
            assert (
                client.post(
                    "/v1/track",
                    content=b"{bad json " + ws.write_key.encode(),
                    headers={"content-type": "application/json"},
                ).status_code
                == 400
            )
            assert client.post("/v1/track", json={"event": "E"}).status_code == 400
        with server.client() as client:
            assert client.post("/v1/track", json=body_key).status_code == 200
            assert client.post("/v1/track", json={**body_key, "writeKey": ws.write_key + "x"}).status_code == 401
            assert client.post("/v1/track", json=body_key, headers={"content-type": "text/html"}).status_code == 415
            bearer = {"authorization": f"Bearer {ws.admin_token}"}
            assert client.get("/api/profiles/u", headers=bearer).status_code == 200
            assert client.get("/api/profiles/nobody", headers=bearer).status_code == 404
            assert (
                client.get("/api/profiles/u", headers={"authorization": f"Bearer {ws.admin_token}x"}).status_code == 401
            )
            assert client.get("/metrics").status_code == 200
    finally:
        server.stop()

    requests = [r for r in caplog.records if r.getMessage() == "request"]
    assert len(requests) >= 12, "request logging was not on: the test would prove nothing"
    assert {"/v1/track", "/v1/batch", "/api"} <= {getattr(r, "route", None) for r in requests}
    formatter = JsonFormatter()
    for rec in caplog.records:
        raw = " ".join([rec.getMessage(), *(str(v) for v in vars(rec).values())])
        formatted = formatter.format(rec)
        for secret in (ws.write_key, ws.admin_token, ws.write_key[3:], ws.admin_token[4:]):
            assert secret not in raw, rec
            assert secret not in formatted, rec
