"""Time as the layers exchange it: epoch milliseconds (to_ms, from_ms) and the one ISO 8601
formatter: UTC, with a "Z" rather than "+00:00".

Two precisions, as the callers have always written them:
- by default three decimals, always ("2026-01-01T00:00:00.000Z"): the events Nudgeflow
  appends itself, planned messages, the demo's Segment messages;
- `milliseconds=False`: none for a whole second and six otherwise ("2026-01-01T00:00:00Z",
  "2026-01-01T00:00:00.250000Z"): the admin API, the profile views, the render context.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


def iso_utc(when: datetime, *, milliseconds: bool = True) -> str:
    """`when` in UTC (a naive one is read as local time, as astimezone does)."""
    text = when.astimezone(UTC).isoformat(timespec="milliseconds" if milliseconds else "auto")
    return text.replace("+00:00", "Z")


def to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


@overload
def iso(ms: int, *, milliseconds: bool = True) -> str: ...
@overload
def iso(ms: None, *, milliseconds: bool = True) -> None: ...
@overload
def iso(ms: int | None, *, milliseconds: bool = True) -> str | None: ...


def iso(ms: int | None, *, milliseconds: bool = True) -> str | None:
    """Epoch milliseconds as ISO 8601 in UTC; None stays None (a time not set yet)."""
    if ms is None:
        return None
    return iso_utc(from_ms(ms), milliseconds=milliseconds)


def parse_instant(text: str) -> int:
    """Epoch ms of a date (`2026-12-01`: its midnight UTC) or an ISO 8601 date-time (`Z` or an
    offset; without one, UTC). ValueError names the text when it is neither."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError as exc:
        raise ValueError(
            f"not a date or ISO 8601 date-time: {text!r} (use 2026-12-01 or 2026-12-01T09:00:00Z)"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return to_ms(parsed)
