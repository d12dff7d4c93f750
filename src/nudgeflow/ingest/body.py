"""Reading a request body within Segment's limits: content type, gzip, size."""

from __future__ import annotations

import zlib

from starlette.requests import Request

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


async def read_body(request: Request, max_bytes: int, *, one_event: bool = False) -> bytes:
    """The body, inflated; over `max_bytes` it is a 413 (a batch), or a 400 when the body is
    `one_event` (the single-event calls)."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in ACCEPTED_TYPES:
        raise IngestError(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, not {media or 'missing'}",
            reason="content_type",
            field="Content-Type",
        )
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise IngestError(
            415,
            "unsupported_encoding",
            f"Content-Encoding {encoding} is not supported; use gzip",
            reason="content_type",
            field="Content-Encoding",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes, one_event)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes, one_event)
        chunks.append(chunk)
    body = b"".join(chunks)
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
