"""The ingest endpoints read their headers and body straight from ASGI (ingest/body.py
`request_head`, `receive_body`); the SDK routes read them through a Starlette Request
(`read_body`). Both must take the same bodies and refuse the same ones with the same answer."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from nudgeflow.ingest.body import read_body as read_via_request
from nudgeflow.ingest.body import receive_body, request_head
from nudgeflow.ingest.errors import IngestError

LIMIT = 1024
Message = dict[str, Any]


def channel(messages: list[Message]) -> Callable[[], Awaitable[Message]]:
    """An ASGI receive callable that hands out `messages` in turn."""
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    return receive


def chunks(*parts: bytes) -> list[Message]:
    return [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]


def scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/v1/track", "headers": headers, "query_string": b""}


JSON_TYPE = (b"content-type", b"application/json")


def both(headers: list[tuple[bytes, bytes]], messages: list[Message], one_event: bool) -> list[Any]:
    """What each path answers: the body read, or the refusal's (status, code, message, errors)."""

    async def fast() -> bytes:
        return await receive_body(request_head(headers), channel(messages), LIMIT, one_event=one_event)

    async def slow() -> bytes:
        return await read_via_request(Request(scope(headers), channel(messages)), LIMIT, one_event=one_event)

    out: list[Any] = []
    for reader in (fast, slow):
        try:
            out.append(asyncio.run(reader()))
        except IngestError as exc:
            out.append((exc.status, exc.code, exc.message, exc.body()))
    return out


BIG = b"x" * (LIMIT + 1)
CASES = {
    "json": ([JSON_TYPE], chunks(b'{"event":"A"}')),
    "text/plain with a charset": ([(b"content-type", b"text/plain; charset=UTF-8")], chunks(b"{}")),
    "in three chunks": ([JSON_TYPE], chunks(b'{"ev', b"", b'ent":"A"}')),
    "no content type": ([], chunks(b"{}")),
    "form content type": ([(b"content-type", b"application/x-www-form-urlencoded")], chunks(b"a=1")),
    "deflate": ([JSON_TYPE, (b"content-encoding", b"deflate")], chunks(b"{}")),
    "empty encoding": ([JSON_TYPE, (b"content-encoding", b"")], chunks(b"{}")),
    "declared too large": ([JSON_TYPE, (b"content-length", str(LIMIT + 1).encode())], chunks(b"{}")),
    "streamed too large": ([JSON_TYPE], chunks(BIG[:600], BIG[600:])),
    "empty": ([JSON_TYPE], chunks(b"")),
    "gzip": ([JSON_TYPE, (b"content-encoding", b"gzip")], chunks(gzip.compress(b'{"a":1}'))),
    "not gzip": ([JSON_TYPE, (b"content-encoding", b"gzip")], chunks(b"{}")),
    "truncated gzip": ([JSON_TYPE, (b"content-encoding", b"GZIP")], chunks(gzip.compress(b'{"a":1}')[:-6])),
    "gzip inflating past the limit": ([JSON_TYPE, (b"content-encoding", b"gzip")], chunks(gzip.compress(BIG))),
    # Sent twice, a header counts with its first value (as Starlette's headers.get reads it).
    "content type twice": ([JSON_TYPE, (b"content-type", b"text/html")], chunks(b"{}")),
    "content type twice, bad first": ([(b"content-type", b"text/html"), JSON_TYPE], chunks(b"{}")),
    # A digit int() refuses ("²" is one to str.isdigit), and other lengths that are no number.
    "content length superscript": ([JSON_TYPE, (b"content-length", "²".encode("latin-1"))], chunks(b"{}")),
    "content length negative": ([JSON_TYPE, (b"content-length", b"-1")], chunks(b"{}")),
    "content length empty": ([JSON_TYPE, (b"content-length", b"")], chunks(b"{}")),
}


@pytest.mark.parametrize("one_event", [True, False], ids=["one event", "batch"])
@pytest.mark.parametrize("case", list(CASES))
def test_both_paths_answer_alike(case: str, one_event: bool) -> None:
    headers, messages = CASES[case]
    fast, slow = both(headers, messages, one_event)
    assert fast == slow


def test_the_refusals_are_the_documented_ones() -> None:
    """A few of the answers compared above, spelled out, so that alike cannot mean alike and wrong."""
    answer = both(*CASES["form content type"], True)[0]
    assert answer[:3] == (
        415,
        "unsupported_media_type",
        "Content-Type must be application/json, not application/x-www-form-urlencoded",
    )
    assert both(*CASES["declared too large"], True)[0][:2] == (400, "event_too_large")
    assert both(*CASES["streamed too large"], False)[0][:2] == (413, "request_too_large")
    assert both(*CASES["empty"], True)[0][:3] == (400, "invalid_request", "body: the request body is empty")
    assert both(*CASES["in three chunks"], True)[0] == b'{"event":"A"}'
    assert both(*CASES["gzip"], True)[0] == b'{"a":1}'
    for case in ("content length superscript", "content length negative", "content length empty"):
        status, code, _message, body = both(*CASES[case], False)[0]
        assert (status, code, body["errors"][0]["field"]) == (400, "invalid_request", "Content-Length")


def test_a_client_gone_mid_body_is_a_disconnect_on_both_paths() -> None:
    messages = [{"type": "http.request", "body": b'{"a"', "more_body": True}, {"type": "http.disconnect"}]
    with pytest.raises(ClientDisconnect):
        asyncio.run(receive_body(request_head([JSON_TYPE]), channel(list(messages)), LIMIT))
    with pytest.raises(ClientDisconnect):
        asyncio.run(read_via_request(Request(scope([JSON_TYPE]), channel(list(messages))), LIMIT))


def test_request_head_reads_the_four_headers_and_nothing_else() -> None:
    head = request_head(
        [
            (b"host", b"example.com"),
            (b"authorization", b"Basic d2tfMTIzOg=="),
            (b"content-type", b"application/json"),
            (b"content-length", b"12"),
            (b"content-encoding", b"gzip"),
            (b"authorization", b"Basic c2Vjb25kOg=="),
            (b"x-caf\xe9", b"caf\xe9"),
        ]
    )
    assert (head.content_type, head.content_encoding, head.content_length) == ("application/json", "gzip", "12")
    assert head.authorization == "Basic d2tfMTIzOg=="  # the first one sent
    empty = request_head([])
    assert (empty.content_type, empty.content_encoding, empty.content_length, empty.authorization) == (None,) * 4
