"""Segment's clock-skew correction, as a pure function."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime) -> datetime:
    # A timestamp without an offset is read as UTC, which is what Segment's libraries send.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def corrected_timestamp(
    received_at: datetime,
    original_timestamp: datetime | None,
    sent_at: datetime | None,
) -> datetime:
    """timestamp = receivedAt - (sentAt - originalTimestamp).

    The device clock may be wrong, but the gap between when the event happened and when it
    was sent is measured on that same clock, so subtracting the gap from our receive time
    gives the event time on our clock. Without sentAt there is no gap to trust and the
    device's own timestamp is used; without any timestamp the event happened when received.
    """
    received_at = as_utc(received_at)
    if original_timestamp is None:
        return received_at
    original = as_utc(original_timestamp)
    if sent_at is None:
        return original
    return received_at - (as_utc(sent_at) - original)
