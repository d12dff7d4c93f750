"""Errors an ingest request can end in, each a 4xx with a JSON body Segment clients read."""

from __future__ import annotations

from typing import Any

from nudgeflow.errors import IntakeError
from nudgeflow.model.events import EventTooLarge, InvalidEvent


class IngestError(IntakeError):
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


def invalid(errors: list[InvalidEvent], code: str = "invalid_request", reason: str = "invalid") -> IngestError:
    first = errors[0]
    if isinstance(first, EventTooLarge) and code == "invalid_request":
        code, reason = "event_too_large", "too_large"
    where = f"event {first.index}: " if first.index is not None else ""
    return IngestError(400, code, f"{where}{first.field}: {first.message}", errors=errors, reason=reason)


def event_too_large(message: str, field: str, index: int | None = None) -> IngestError:
    """An event over the per-event limit, alone or in a batch: 400 naming it (and its index),
    so that a client drops that event and keeps the rest of its batch."""
    return invalid([EventTooLarge(field, message, index)], code="event_too_large", reason="too_large")
