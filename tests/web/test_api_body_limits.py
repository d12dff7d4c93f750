"""The admin API's bodies are bounded before they are read: FastAPI parses a route's JSON
body before the admin token is checked, so without a limit anyone could make the server read
and parse any amount. Over the limit is 413 naming it, declared or streamed; the documents
the API takes (templates, journeys, catalog imports) keep their own larger limits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nudgeflow.store.workspaces import NewWorkspace
from nudgeflow.web.body_limits import API_BYTES
from nudgeflow.web.templates_api import MAX_TEMPLATE_BYTES
from tests.support import LiveServer

# Every admin route with a JSON body that FastAPI parses before its dependencies run.
JSON_ROUTES = [
    ("PATCH", "/api/settings"),
    ("PUT", "/api/settings/smtp"),
    ("PUT", "/api/settings/fcm"),
    ("PUT", "/api/settings/apns"),
    ("PUT", "/api/settings/webpush"),
    ("PUT", "/api/settings/webhooks/destinations/shop"),
    ("POST", "/api/settings/webhooks/secret"),
    ("PUT", "/api/profiles/ada/consent"),
    ("POST", "/api/profiles/ada/consent/confirmation"),
    ("POST", "/api/profiles/ada/devices"),
    ("POST", "/api/suppressions"),
    ("POST", "/api/keys"),
]
TOO_LARGE = {"detail": f"Request body too large: this endpoint takes at most {API_BYTES} bytes."}


def _chunks(total: int) -> Iterator[bytes]:
    """A JSON body sent without a Content-Length (chunked), as a client that hides its size would."""
    yield b'{"x": "'
    for _ in range(total // 4096):
        yield b"x" * 4096
    yield b'"}'


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_a_json_body_over_the_limit_is_refused_before_the_token_is_checked(
    live: LiveServer, method: str, path: str
) -> None:
    body = b'{"x": "' + b"x" * API_BYTES + b'"}'
    with live.client() as anyone:
        declared = anyone.request(method, path, content=body, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413, declared.text
        assert declared.json() == TOO_LARGE
    with live.client() as anyone:
        streamed = anyone.request(
            method, path, content=_chunks(API_BYTES + 8192), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413, streamed.text
        assert streamed.json() == TOO_LARGE


def test_a_body_within_the_limit_is_answered_as_before(live: LiveServer, ws: NewWorkspace) -> None:
    with live.client() as anyone:
        assert anyone.patch("/api/settings", json={"x": "x" * 1000}).status_code == 401
    with live.admin(ws.admin_token) as admin:
        answer = admin.post("/api/suppressions", json={"address": "ada@example.com", "detail": "d" * 2000})
        assert answer.status_code in (200, 201), answer.text


def test_a_template_keeps_its_own_larger_limit(live: LiveServer, ws: NewWorkspace) -> None:
    """A template body past the API's default but within the template's limit is read (by the
    endpoint, after the token); past the template's limit it is refused at the door."""
    within = b'{"x": "' + b"x" * (API_BYTES * 2) + b'"}'
    with live.client() as anyone:
        assert anyone.put("/api/templates/t", content=within).status_code == 401
        over = anyone.put("/api/templates/t", content=b"x" * (MAX_TEMPLATE_BYTES + 1))
        assert over.status_code == 413, over.text
        assert f"at most {MAX_TEMPLATE_BYTES} bytes" in over.json()["detail"]
    with live.admin(ws.admin_token) as admin:
        answer = admin.put("/api/templates/t", content=within, headers={"Content-Type": "application/json"})
        assert answer.status_code not in (401, 413), answer.text
