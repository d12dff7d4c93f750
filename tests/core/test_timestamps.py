from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from nudgeflow.model.timestamps import corrected_timestamp

UTC = UTC
aware = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


def test_skewed_device_clock_is_corrected() -> None:
    received = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    # The device clock is 3 hours behind; the event happened 5 s before it was sent.
    original = datetime(2026, 11, 28, 8, 59, 55, tzinfo=UTC)
    sent = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)
    assert corrected_timestamp(received, original, sent) == received - timedelta(seconds=5)


def test_without_sent_at_the_device_timestamp_is_kept() -> None:
    original = datetime(2026, 1, 1, tzinfo=UTC)
    assert corrected_timestamp(datetime(2026, 2, 1, tzinfo=UTC), original, None) == original


def test_without_any_timestamp_the_event_happened_when_received() -> None:
    received = datetime(2026, 2, 1, tzinfo=UTC)
    assert corrected_timestamp(received, None, None) == received


@given(received=aware, original=aware, sent=aware)
def test_correction_preserves_the_device_measured_gap(received: datetime, original: datetime, sent: datetime) -> None:
    corrected = corrected_timestamp(received, original, sent)
    assert received - corrected == sent - original
    assert corrected.tzinfo is not None


@given(received=aware, original=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_naive_timestamps_are_read_as_utc(received: datetime, original: datetime) -> None:
    assert corrected_timestamp(received, original, None) == original.replace(tzinfo=UTC)
