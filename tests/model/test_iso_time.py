"""The one ISO 8601 formatter writes what each of its former copies wrote, byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from nudgeflow.core.clock import from_ms
from nudgeflow.model.iso_time import iso, iso_utc

TIMES_MS = [
    0,
    1,
    999,
    1_000,
    1_767_225_600_000,
    1_767_225_600_250,
    1_767_225_601_001,
    -1,
    -86_400_001,
    253_402_300_799_999,
]


@pytest.mark.parametrize("ms", TIMES_MS)
def test_milliseconds_as_the_dispatcher_bounces_and_simulation_wrote(ms: int) -> None:
    assert iso(ms) == from_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize("ms", TIMES_MS)
def test_auto_precision_as_the_admin_api_profiles_and_context_wrote(ms: int) -> None:
    assert iso(ms, milliseconds=False) == from_ms(ms).isoformat().replace("+00:00", "Z")


def test_examples_and_none() -> None:
    assert iso(1_767_225_600_000) == "2026-01-01T00:00:00.000Z"
    assert iso(1_767_225_600_000, milliseconds=False) == "2026-01-01T00:00:00Z"
    assert iso(1_767_225_600_250, milliseconds=False) == "2026-01-01T00:00:00.250000Z"
    assert iso(None) is None and iso(None, milliseconds=False) is None


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 30, 5, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 3, 1, 12, 30, 5, 999999),  # naive: local time, as astimezone reads it
    ],
)
def test_datetimes_as_the_demo_wrote(when: datetime) -> None:
    assert iso_utc(when) == when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert iso_utc(when, milliseconds=False) == when.astimezone(UTC).isoformat().replace("+00:00", "Z")
