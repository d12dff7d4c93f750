"""Errors an ingest request can end in, each a 4xx with a JSON body Segment clients read."""

from __future__ import annotations

from typing import Any

from nudgeflow.model.events import InvalidEvent


class IngestError(Exception):
    """`code` and `message` are the keys Segment's libraries read from an error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        errors: list[InvalidEvent] | None = None,
        headers: dict[str, str] | None = None,
        reason: str | None = None,
        events: int = 1,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        # A refusal about one thing (the body, the write key, a header) names it like a field.
        self.errors = errors or ([InvalidEvent(field, message)] if field else [])
        self.headers = headers or {}
        self.reason = reason or code  # the metrics label
        self.events = events  # how many events the refusal dropped, for the metrics

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"success": False, "code": self.code, "message": self.message}
        if self.errors:
            out["errors"] = [e.as_dict() for e in self.errors[:50]]
        return out


def invalid(errors: list[InvalidEvent]) -> IngestError:
    first = errors[0]
    where = f"event {first.index}: " if first.index is not None else ""
    return IngestError(400, "invalid_request", f"{where}{first.field}: {first.message}", errors=errors, reason="invalid")
