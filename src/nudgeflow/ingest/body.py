"""Reading a request body within Segment's limits: content type, gzip, size."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from nudgeflow.ingest.errors import IngestError, event_too_large

ACCEPTED_TYPES = ("application/json", "text/plain")  # text/plain: browser beacons avoid preflight


def _too_large(limit: int, one_event: bool) -> IngestError:
    if one_event:
        # The body is one event: 400, as for an event over the limit inside a batch (and as
        # Segment answers). Segment's Node library retries every other status but 2xx and
        # 400, and no retry or split of this request can succeed.
        return event_too_large(f"the event exceeds {limit} bytes", "body")
    # A whole batch: 413, and a client can split it (nudgeflow.js does).
    return IngestError(
        413, "request_too_large", f"request body exceeds {limit} bytes", reason="too_large", field="body"
    )


@dataclass(slots=True)
class RequestHead:
    """The request headers ingest reads (None: not sent), decoded as Starlette decodes them."""

    content_type: str | None = None
    content_encoding: str | None = None
    content_length: str | None = None
    authorization: str | None = None


_HEAD_FIELDS = {
    b"content-type": "content_type",
    b"content-encoding": "content_encoding",
    b"content-length": "content_length",
    b"authorization": "authorization",
}


def request_head(raw: Iterable[tuple[bytes, bytes]]) -> RequestHead:
    """The headers ingest reads, in one pass over the ASGI scope's list (names arrive in
    lower case). A header sent twice counts with its first value, as Starlette's
    `request.headers.get` reads it: the hot path builds no Headers object."""
    head = RequestHead()
    for name, value in raw:
        attribute = _HEAD_FIELDS.get(name)
        if attribute is not None and getattr(head, attribute) is None:
            setattr(head, attribute, value.decode("latin-1"))
    return head


def _checked_encoding(head: RequestHead, max_bytes: int, one_event: bool) -> str:
    """Refuse a body by its headers alone (type, encoding, declared size); its encoding."""
    media = (head.content_type or "").split(";", 1)[0].strip().lower()
    if media not in ACCEPTED_TYPES:
        raise IngestError(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, not {media or 'missing'}",
            reason="content_type",
            field="Content-Type",
        )
    encoding = (head.content_encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise IngestError(
            415,
            "unsupported_encoding",
            f"Content-Encoding {encoding} is not supported; use gzip",
            reason="content_type",
            field="Content-Encoding",
        )
    declared = head.content_length
    if declared is not None:
        # ASCII digits only: str.isdigit() takes "²" and other digits int() refuses.
        if not (declared.isascii() and declared.isdecimal()):
            raise IngestError(
                400,
                "invalid_request",
                "Content-Length must be a number of bytes",
                reason="invalid",
                field="Content-Length",
            )
        if int(declared) > max_bytes:
            raise _too_large(max_bytes, one_event)
    return encoding


async def read_body(request: Request, max_bytes: int, *, one_event: bool = False) -> bytes:
    """The body, inflated; over `max_bytes` it is a 413 (a batch), or a 400 when the body is
    `one_event` (the single-event calls)."""
    encoding = _checked_encoding(request_head(request.scope["headers"]), max_bytes, one_event)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes, one_event)
        chunks.append(chunk)
    return _finished(b"".join(chunks), encoding, max_bytes, one_event)


async def receive_body(head: RequestHead, receive: Receive, max_bytes: int, *, one_event: bool = False) -> bytes:
    """`read_body` straight from the ASGI receive channel, for the ingest endpoints (no
    Request object): the same checks, the same errors, ClientDisconnect as Starlette raises it."""
    encoding = _checked_encoding(head, max_bytes, one_event)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(max_bytes, one_event)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise ClientDisconnect()
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return _finished(body, encoding, max_bytes, one_event)


def _finished(body: bytes, encoding: str, max_bytes: int, one_event: bool) -> bytes:
    if encoding == "gzip":
        body = gunzip_limited(body, max_bytes, one_event)
    if not body:
        raise IngestError(400, "invalid_request", "body: the request body is empty", reason="invalid", field="body")
    return body


def gunzip_limited(data: bytes, max_bytes: int, one_event: bool = False) -> bytes:
    """Decompress, refusing to inflate past the limit (a small gzip can expand enormously)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise IngestError(
            400, "invalid_request", f"body: not valid gzip ({exc})", reason="invalid", field="body"
        ) from exc
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise _too_large(max_bytes, one_event)
    if not inflater.eof:
        raise IngestError(400, "invalid_request", "body: truncated gzip stream", reason="invalid", field="body")
    return out
