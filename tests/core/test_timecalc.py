"""Local-time arithmetic: zones, DST gaps and folds, weekdays, anniversaries, distances."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nudgeflow.core.inputs import EventInput
from nudgeflow.core.timecalc import (
    EARTH_RADIUS_M,
    at_local_time,
    at_local_time_after,
    date_relative_due,
    event_coordinates,
    haversine_m,
    local_day,
    next_time_of_day,
    parse_instant,
    zone_of,
)
from nudgeflow.model.journeys import duration_ms

UTC = UTC
NY = ZoneInfo("America/New_York")  # 2026: spring forward Mar 8 02:00, fall back Nov 1 02:00
BERLIN = ZoneInfo("Europe/Berlin")  # 2026: spring forward Mar 29 02:00, fall back Oct 25 03:00
HOUR = 3_600_000
DAY = 24 * HOUR


def ms(*args: int) -> int:
    """Epoch ms of a UTC wall time."""
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


# --- zones -------------------------------------------------------------------------------------


def test_zone_of_valid_names() -> None:
    assert zone_of({"timezone": "Europe/Berlin"}) == BERLIN
    assert zone_of({"timezone": "America/New_York"}) is zone_of({"timezone": "America/New_York"})
    assert zone_of({"timezone": " Asia/Tokyo "}).key == "Asia/Tokyo"


def test_zone_of_forgives_case() -> None:
    assert zone_of({"timezone": "america/new_york"}).key == "America/New_York"
    assert zone_of({"timezone": "utc"}).key == "UTC"


@pytest.mark.parametrize(
    "traits",
    [
        {},
        {"timezone": None},
        {"timezone": ""},
        {"timezone": "Mars/Olympus_Mons"},
        {"timezone": "../../etc/passwd"},
        {"timezone": "/etc/passwd"},
        {"timezone": "zone.tab"},  # a file in the tz directory that is not a zone
        {"timezone": "America"},  # a directory
        {"timezone": "x" * 5000},
        {"timezone": "Europe/Berlin\x00"},
        {"timezone": "+02:00"},
        {"timezone": 2},
        {"timezone": ["Europe/Berlin"]},
    ],
)
def test_zone_of_bad_or_missing_timezone_is_utc(traits: dict[str, Any]) -> None:
    assert zone_of(traits).key == "UTC"


def test_zone_of_non_dict_is_utc() -> None:
    assert zone_of(None).key == "UTC"  # type: ignore[arg-type]


# --- parse_instant -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tz", "expected_utc_ms"),
    [
        ("2026-03-10T15:00:00Z", NY, ms(2026, 3, 10, 15)),
        ("2026-03-10t15:00:00z", NY, ms(2026, 3, 10, 15)),
        ("2026-03-10T15:00:00.250+01:00", NY, ms(2026, 3, 10, 14) + 250),
        ("2026-03-10T09:00:00", NY, ms(2026, 3, 10, 13)),  # naive: local, EDT
        ("2026-03-06T09:00:00", NY, ms(2026, 3, 6, 14)),  # naive: local, EST
        ("2026-03-10 09:00", BERLIN, ms(2026, 3, 10, 8)),
        ("2026-03-10", NY, ms(2026, 3, 10, 4)),  # a date alone: local midnight
        ("2026-07-01", BERLIN, ms(2026, 6, 30, 22)),
        (" 2026-07-01 ", UTC, ms(2026, 7, 1)),
        ("2026-03-08T02:30:00", NY, ms(2026, 3, 8, 7, 30)),  # in the gap: 03:30 EDT
        ("2026-11-01T01:30:00", NY, ms(2026, 11, 1, 5, 30)),  # ambiguous: first (EDT)
        (1_780_000_000, UTC, 1_780_000_000_000),  # epoch seconds
        (1_780_000_000_000, UTC, 1_780_000_000_000),  # epoch ms
        (1_780_000_000.5, UTC, 1_780_000_000_500),
        (-315_619_200_000, UTC, ms(1960, 1, 1)),  # before 1970, in ms
        (-315_619_200, UTC, ms(1960, 1, 1)),  # before 1970, in seconds
        (0, UTC, 0),
        (datetime(2026, 3, 10, 15, tzinfo=UTC), NY, ms(2026, 3, 10, 15)),
        (datetime(2026, 3, 10, 9), NY, ms(2026, 3, 10, 13)),
        (date(2026, 3, 10), NY, ms(2026, 3, 10, 4)),
    ],
)
def test_parse_instant(value: Any, tz: Any, expected_utc_ms: int) -> None:
    parsed = parse_instant(value, tz)
    assert parsed is not None
    assert parsed.tzinfo is not None
    assert int(parsed.timestamp() * 1000) == expected_utc_ms


def test_parse_instant_is_expressed_in_the_zone() -> None:
    parsed = parse_instant("2026-03-10T15:00:00Z", NY)
    assert parsed is not None and (parsed.hour, parsed.utcoffset()) == (11, timedelta(hours=-4))


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        "",
        "soon",
        "2026-02-30",
        "2026-13-01",
        "99999-01-01",
        "10/03/2026",
        "1780000000",
        float("nan"),
        float("inf"),
        1e300,
        [2026, 3, 10],
        {"date": "2026-03-10"},
        "0001-01-01T00:00:00+05:00",
        "2026-03-10T25:00:00",
        "x" * 1000,
    ],
)
def test_parse_instant_rejects(value: Any) -> None:
    assert parse_instant(value, UTC) is None


def test_parse_instant_out_of_range_after_conversion_is_none() -> None:
    assert parse_instant("9999-12-31T23:00:00-05:00", UTC) is None  # past year 9999 in UTC
    assert parse_instant(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))), UTC) is None


# --- at_local_time -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "at", "tz", "expected"),
    [
        (date(2026, 3, 7), "09:00", NY, ms(2026, 3, 7, 14)),  # EST
        (date(2026, 3, 8), "09:00", NY, ms(2026, 3, 8, 13)),  # EDT, the day of the change
        (date(2026, 3, 8), "01:59", NY, ms(2026, 3, 8, 6, 59)),  # just before the gap
        (date(2026, 3, 8), "02:00", NY, ms(2026, 3, 8, 7)),  # gap start -> 03:00 EDT
        (date(2026, 3, 8), "02:30", NY, ms(2026, 3, 8, 7, 30)),  # gap -> 03:30 EDT
        (date(2026, 3, 8), "03:30", NY, ms(2026, 3, 8, 7, 30)),  # the same instant, legitimately
        (date(2026, 11, 1), "01:30", NY, ms(2026, 11, 1, 5, 30)),  # fold: first occurrence, EDT
        (date(2026, 11, 1), "02:30", NY, ms(2026, 11, 1, 7, 30)),  # after the fold: EST
        (date(2026, 3, 29), "02:30", BERLIN, ms(2026, 3, 29, 1, 30)),  # gap -> 03:30 CEST
        (date(2026, 3, 29), "09:00", BERLIN, ms(2026, 3, 29, 7)),
        (date(2026, 3, 28), "09:00", BERLIN, ms(2026, 3, 28, 8)),
        (date(2026, 10, 25), "02:30", BERLIN, ms(2026, 10, 25, 0, 30)),  # fold: first, CEST
        (date(2026, 10, 25), "03:00", BERLIN, ms(2026, 10, 25, 2)),  # after the fold: CET
        (date(2026, 6, 1), "23:59", UTC, ms(2026, 6, 1, 23, 59)),
        (date(2026, 6, 1), "00:00", timezone(timedelta(hours=5, minutes=30)), ms(2026, 5, 31, 18, 30)),
    ],
)
def test_at_local_time(day: date, at: str, tz: Any, expected: int) -> None:
    assert at_local_time(day, at, tz) == expected


@pytest.mark.parametrize("at", ["24:00", "9", "09:60", "nine", ""])
def test_at_local_time_rejects_bad_times_by_name(at: str) -> None:
    with pytest.raises(ValueError, match="local time"):
        at_local_time(date(2026, 1, 1), at, UTC)


# --- at_local_time_after: the end of a stretch of local time ------------------------------------

LONDON = ZoneInfo("Europe/London")  # 2026: spring forward Mar 29 01:00 GMT -> 02:00 BST (01:00Z)
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # 2026: Oct 4 02:00 +10:30 -> 02:30 +11 (15:30Z Oct 3)


@pytest.mark.parametrize(
    ("day", "at", "tz", "after", "expected"),
    [
        # An end the clocks skip is the first instant the clock reads later: the jump itself.
        (date(2026, 3, 8), "02:30", NY, ms(2026, 3, 8, 4), ms(2026, 3, 8, 7)),  # 03:00 EDT, not 03:30
        (date(2026, 3, 8), "02:00", NY, ms(2026, 3, 8, 4), ms(2026, 3, 8, 7)),  # the gap's first minute
        (date(2026, 3, 8), "02:59:59", NY, ms(2026, 3, 8, 4), ms(2026, 3, 8, 7)),
        (date(2026, 3, 29), "01:30", LONDON, ms(2026, 3, 28, 23), ms(2026, 3, 29, 1)),  # 02:00 BST
        (date(2026, 3, 29), "02:30", BERLIN, ms(2026, 3, 28, 23), ms(2026, 3, 29, 1)),  # 03:00 CEST
        (date(2026, 10, 4), "02:15", LORD_HOWE, ms(2026, 10, 3, 12), ms(2026, 10, 3, 15, 30)),  # 02:30 +11
        # Times the clock shows are unchanged: just before and after the gap, an ordinary day.
        (date(2026, 3, 8), "01:59", NY, ms(2026, 3, 8, 4), ms(2026, 3, 8, 6, 59)),
        (date(2026, 3, 8), "03:00", NY, ms(2026, 3, 8, 4), ms(2026, 3, 8, 7)),
        (date(2026, 10, 4), "02:30", LORD_HOWE, ms(2026, 10, 3, 12), ms(2026, 10, 3, 15, 30)),
        (date(2026, 3, 7), "02:30", NY, ms(2026, 3, 7, 4), ms(2026, 3, 7, 7, 30)),
        # The repeated fall-back hour: the first occurrence, or the second once that has passed.
        (date(2026, 11, 1), "01:30", NY, ms(2026, 11, 1, 4), ms(2026, 11, 1, 5, 30)),
        (date(2026, 11, 1), "01:30", NY, ms(2026, 11, 1, 6, 10), ms(2026, 11, 1, 6, 30)),
        (date(2026, 4, 5), "01:45", LORD_HOWE, ms(2026, 4, 4, 14, 20), ms(2026, 4, 4, 14, 45)),  # first
        (date(2026, 4, 5), "01:45", LORD_HOWE, ms(2026, 4, 4, 14, 50), ms(2026, 4, 4, 15, 15)),  # second
    ],
)
def test_at_local_time_after_ends_at_the_first_instant_at_or_after_the_wall_clock_time(
    day: date, at: str, tz: ZoneInfo, after: int, expected: int
) -> None:
    assert at_local_time_after(day, at, tz, after) == expected


DST_ZONES = (NY, LONDON, BERLIN, LORD_HOWE, ZoneInfo("America/Santiago"), ZoneInfo("America/Havana"))


def offset(at_ms: int, tz: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(at_ms / 1000, tz).utcoffset()


@cache
def transitions(tz: ZoneInfo) -> tuple[int, ...]:
    """The instants (epoch ms, to the minute) its offset changes at, 2024 to 2028."""
    found = []
    day = ms(2024, 1, 1)
    while day < ms(2029, 1, 1):
        lo, hi = day, day + DAY
        if offset(lo, tz) != offset(hi, tz):
            while hi - lo > 60_000:
                mid = (lo + hi) // 2 // 60_000 * 60_000
                mid = mid if lo < mid < hi else lo + 60_000
                same = offset(mid, tz) == offset(lo, tz)
                lo, hi = (mid, hi) if same else (lo, mid)
            found.append(hi)
        day += DAY
    return tuple(found)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(DST_ZONES), st.integers(0, 10**6), st.integers(-120, 120), st.integers(-36 * 60, 36 * 60))
# Found by CI: 01:00 on New York's fall-back night, from the instant the clock goes back to it.
@example(NY, 1, -60, 0)
def test_at_local_time_after_near_dst_changes_is_the_first_instant_the_clock_shows_it(
    tz: ZoneInfo, pick: int, at_delta: int, after_delta: int
) -> None:
    """Near a change of offset (gaps of an hour and of 30 minutes, the repeated hour, a change
    at midnight): the clock reads `at` or later at the result, and less than `at` a millisecond
    before (in a repeated hour, the second pass reads less again), unless the clock went back
    to `at` at the result itself: then a millisecond before it read the end of the first pass."""
    found = transitions(tz)
    change = found[pick % len(found)]
    before_change = datetime.fromtimestamp((change - 1) / 1000, tz).replace(tzinfo=None)
    wall = (before_change + timedelta(milliseconds=1) + timedelta(minutes=at_delta)).replace(second=0, microsecond=0)
    day, at = wall.date(), wall.strftime("%H:%M")
    due = at_local_time_after(day, at, tz, change + after_delta * 60_000)
    shown = datetime.fromtimestamp(due / 1000, tz).replace(tzinfo=None)
    just_before = datetime.fromtimestamp((due - 1) / 1000, tz).replace(tzinfo=None)
    went_back_to_it = shown == wall and just_before > shown
    assert wall <= shown
    assert just_before < wall or went_back_to_it


# --- next_time_of_day --------------------------------------------------------------------------

FRI_10AM_NY = ms(2026, 3, 6, 15)  # Friday 6 March 2026, 10:00 EST


def test_next_time_of_day_later_today_or_tomorrow() -> None:
    assert next_time_of_day(FRI_10AM_NY, "11:00", None, NY) == ms(2026, 3, 6, 16)
    assert next_time_of_day(FRI_10AM_NY, "09:00", None, NY) == ms(2026, 3, 7, 14)  # Saturday
    assert next_time_of_day(FRI_10AM_NY, "10:00", None, NY) == FRI_10AM_NY  # exactly now counts
    assert next_time_of_day(FRI_10AM_NY + 1, "10:00", None, NY) == ms(2026, 3, 7, 15)


def test_next_time_of_day_with_weekdays() -> None:
    assert next_time_of_day(FRI_10AM_NY, "09:00", ["mon"], NY) == ms(2026, 3, 9, 13)  # Monday, now EDT
    assert next_time_of_day(FRI_10AM_NY, "09:00", ["mon", "tue", "wed", "thu", "fri"], NY) == ms(2026, 3, 9, 13)
    assert next_time_of_day(FRI_10AM_NY, "11:00", ["fri"], NY) == ms(2026, 3, 6, 16)
    assert next_time_of_day(FRI_10AM_NY + 1, "10:00", ["fri"], NY) == ms(2026, 3, 13, 14)  # a week on, EDT
    assert next_time_of_day(FRI_10AM_NY, "09:00", ["sat", "sun"], NY) == ms(2026, 3, 7, 14)


def test_next_time_of_day_without_usable_weekdays_allows_every_day() -> None:
    assert next_time_of_day(FRI_10AM_NY, "09:00", [], NY) == ms(2026, 3, 7, 14)
    assert next_time_of_day(FRI_10AM_NY, "09:00", ["funday"], NY) == ms(2026, 3, 7, 14)


def test_next_time_of_day_across_spring_forward() -> None:
    saturday_noon = ms(2026, 3, 7, 17)  # 12:00 EST
    due = next_time_of_day(saturday_noon, "09:00", None, NY)
    assert due == ms(2026, 3, 8, 13)  # 09:00 EDT
    assert due - saturday_noon == 20 * HOUR  # the night is an hour short
    # Aimed into the gap: as soon after as the clock allows.
    assert next_time_of_day(ms(2026, 3, 7, 8), "02:30", None, NY) == ms(2026, 3, 8, 7, 30)


def test_next_time_of_day_across_fall_back() -> None:
    saturday_noon = ms(2026, 10, 24, 10)  # 12:00 CEST
    due = next_time_of_day(saturday_noon, "09:00", None, BERLIN)
    assert due == ms(2026, 10, 25, 8)  # 09:00 CET
    assert due - saturday_noon == 22 * HOUR  # the night is an hour long
    # Inside the repeated hour, the first 02:30 has passed: the second one is not "again".
    between = ms(2026, 10, 25, 0, 45)  # 02:45 CEST, the first pass
    assert next_time_of_day(between, "02:30", None, BERLIN) == ms(2026, 10, 26, 1, 30)


def test_next_time_of_day_local_midnight_in_a_far_east_zone() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    # 2026-03-06 23:30 in Tokyo is 14:30 UTC; "08:00" is the next morning there.
    assert next_time_of_day(ms(2026, 3, 6, 14, 30), "08:00", None, tokyo) == ms(2026, 3, 6, 23)


# Lord Howe shifts by 30 minutes; Havana and Santiago change at midnight (local 00:00 can be
# missing); Casablanca suspends DST during Ramadan.
ZONES = [
    NY,
    BERLIN,
    ZoneInfo("Australia/Lord_Howe"),
    ZoneInfo("Asia/Kolkata"),
    ZoneInfo("America/Havana"),
    ZoneInfo("America/Santiago"),
    ZoneInfo("Africa/Casablanca"),
    ZoneInfo("UTC"),
]


@settings(max_examples=150, deadline=None)
@given(
    now=st.integers(min_value=ms(2020, 1, 1), max_value=ms(2035, 1, 1)),
    tz=st.sampled_from(ZONES),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 15, 30, 59]),
    days=st.none() | st.sets(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1),
)
def test_next_time_of_day_properties(now: int, tz: Any, hour: int, minute: int, days: set[str] | None) -> None:
    at = f"{hour:02d}:{minute:02d}"
    names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    due = next_time_of_day(now, at, sorted(days) if days else None, tz)
    assert now <= due < now + 8 * DAY
    local = datetime.fromtimestamp(due / 1000, tz)
    if days:
        assert names[local.weekday()] in days
    # It is `at` on its day (or the moment a gap pushed `at` to).
    assert at_local_time(local.date(), at, tz) == due
    # And no earlier allowed day still had `at` ahead of now.
    for back in range(1, 9):
        day = local.date() - timedelta(days=back)
        if days is None or names[day.weekday()] in days:
            assert at_local_time(day, at, tz) < now
            break


# --- date_relative_due -------------------------------------------------------------------------

TRIAL_END = "2026-03-10T15:00:00Z"  # 11:00 EDT on Tuesday 10 March, after NY's spring forward
NOW = ms(2026, 1, 1)


def test_days_before_a_date_keep_local_time_across_dst() -> None:
    # Three days before is Saturday 7 March, still EST: 09:00 local is 14:00 UTC, not 13:00.
    due = date_relative_due(TRIAL_END, duration_ms("-3d"), "09:00", NY, False, NOW)
    assert due == ms(2026, 3, 7, 14)
    # The same in Berlin: 31 March is CEST, 28 March still CET.
    assert date_relative_due("2026-03-31", duration_ms("-3d"), "10:00", BERLIN, False, NOW) == ms(2026, 3, 28, 9)
    assert date_relative_due("2026-03-31", duration_ms("-1w"), "10:00", BERLIN, False, NOW) == ms(2026, 3, 24, 9)


def test_without_at_the_traits_local_time_of_day_is_kept() -> None:
    # 11:00 EDT three days earlier is 11:00 EST: 71 hours before, not 72.
    due = date_relative_due(TRIAL_END, duration_ms("-3d"), None, NY, False, NOW)
    assert due == ms(2026, 3, 7, 16)
    # A date alone is local midnight.
    assert date_relative_due("2026-03-10", duration_ms("-3d"), None, NY, False, NOW) == ms(2026, 3, 7, 5)
    assert date_relative_due("2026-03-10", 0, None, NY, False, NOW) == ms(2026, 3, 10, 4)


def test_partial_days_of_an_offset_are_absolute_time() -> None:
    # -36h = one calendar day back (09:00 EDT on 9 March = 13:00 UTC), then 12 hours earlier.
    assert date_relative_due(TRIAL_END, duration_ms("-36h"), "09:00", NY, False, NOW) == ms(2026, 3, 9, 1)
    assert date_relative_due(TRIAL_END, duration_ms("2h"), "09:00", NY, False, NOW) == ms(2026, 3, 10, 15)
    assert date_relative_due(TRIAL_END, duration_ms("1d"), "09:00", NY, False, NOW) == ms(2026, 3, 11, 13)
    assert date_relative_due(TRIAL_END, duration_ms("90m"), "09:00", NY, False, NOW) == ms(2026, 3, 10, 14, 30)


def test_the_local_date_of_an_instant_is_in_the_profiles_zone() -> None:
    # 02:00 UTC on 10 March is still 9 March in New York.
    assert date_relative_due("2026-03-10T02:00:00Z", 0, "09:00", NY, False, NOW) == ms(2026, 3, 9, 13)
    assert date_relative_due("2026-03-10T02:00:00Z", 0, "09:00", UTC, False, NOW) == ms(2026, 3, 10, 9)


def test_not_yearly_returns_past_due_times() -> None:
    later = ms(2030, 1, 1)
    assert date_relative_due(TRIAL_END, duration_ms("-3d"), "09:00", NY, False, later) == ms(2026, 3, 7, 14)


def test_due_landing_in_a_gap_moves_forward() -> None:
    # 8 March at 02:30 does not exist in New York.
    assert date_relative_due("2026-03-10", duration_ms("-2d"), "02:30", NY, False, NOW) == ms(2026, 3, 8, 7, 30)


@pytest.mark.parametrize("value", [None, "", "someday", "2026-02-30", True, {"d": 1}, float("nan")])
def test_unparseable_dates_have_no_due_time(value: Any) -> None:
    assert date_relative_due(value, 0, "09:00", NY, False, NOW) is None
    assert date_relative_due(value, 0, "09:00", NY, True, NOW) is None


def test_epoch_traits_work_in_seconds_and_milliseconds() -> None:
    seconds = int(datetime(2026, 3, 10, 15, tzinfo=UTC).timestamp())
    expected = ms(2026, 3, 7, 14)
    assert date_relative_due(seconds, -3 * DAY, "09:00", NY, False, NOW) == expected
    assert date_relative_due(seconds * 1000, -3 * DAY, "09:00", NY, False, NOW) == expected


def test_yearly_birthday() -> None:
    birthday = "1990-07-15"
    due_2026 = ms(2026, 7, 15, 13)  # 09:00 EDT
    assert date_relative_due(birthday, 0, "09:00", NY, True, ms(2026, 3, 1)) == due_2026
    assert date_relative_due(birthday, 0, "09:00", NY, True, due_2026) == due_2026
    assert date_relative_due(birthday, 0, "09:00", NY, True, due_2026 + 1) == ms(2027, 7, 15, 13)
    # A winter birthday is 09:00 EST: the local hour holds, the UTC hour moves.
    assert date_relative_due("1990-01-15", 0, "09:00", NY, True, ms(2026, 3, 1)) == ms(2027, 1, 15, 14)


def test_yearly_birthday_as_a_datetime_trait() -> None:
    # A birthday stored as a UTC midnight instant falls on the day before in New York...
    assert date_relative_due("1990-07-15T00:00:00Z", 0, "09:00", NY, True, ms(2026, 1, 1)) == ms(2026, 7, 14, 13)
    # ... which is why birthdays belong in date-only traits.
    assert date_relative_due("1990-07-15T00:00:00Z", 0, "09:00", UTC, True, ms(2026, 1, 1)) == ms(2026, 7, 15, 9)


def test_yearly_birthday_on_the_day_of_a_dst_change() -> None:
    # 25 October 2026 in Berlin: 02:30 happens twice; the first one (CEST) is taken.
    assert date_relative_due("1985-10-25", 0, "02:30", BERLIN, True, ms(2026, 1, 1)) == ms(2026, 10, 25, 0, 30)
    assert date_relative_due("1985-10-25", 0, "09:00", BERLIN, True, ms(2026, 1, 1)) == ms(2026, 10, 25, 8)


def test_yearly_leap_day_birthday() -> None:
    leapling = "2000-02-29"
    assert date_relative_due(leapling, 0, "09:00", UTC, True, ms(2026, 1, 1)) == ms(2026, 2, 28, 9)
    assert date_relative_due(leapling, 0, "09:00", UTC, True, ms(2027, 3, 1)) == ms(2028, 2, 29, 9)
    assert date_relative_due(leapling, 0, "09:00", UTC, True, ms(2028, 2, 28, 10)) == ms(2028, 2, 29, 9)
    # A week before: from 28 February in common years, from the 29th in leap years.
    week = duration_ms("-1w")
    assert date_relative_due(leapling, week, "09:00", UTC, True, ms(2026, 1, 1)) == ms(2026, 2, 21, 9)
    assert date_relative_due(leapling, week, "09:00", UTC, True, ms(2027, 3, 1)) == ms(2028, 2, 22, 9)


def test_yearly_offsets_that_cross_new_year() -> None:
    early_january = "1990-01-02"
    before = duration_ms("-3d")
    assert date_relative_due(early_january, before, "09:00", UTC, True, ms(2025, 12, 29)) == ms(2025, 12, 30, 9)
    assert date_relative_due(early_january, before, "09:00", UTC, True, ms(2025, 12, 31)) == ms(2026, 12, 30, 9)
    late_december = "1990-12-30"
    after = duration_ms("5d")
    # Last year's anniversary is still ahead once the offset is applied.
    assert date_relative_due(late_december, after, "09:00", UTC, True, ms(2026, 1, 2)) == ms(2026, 1, 4, 9)
    assert date_relative_due(late_december, after, "09:00", UTC, True, ms(2026, 1, 5)) == ms(2027, 1, 4, 9)


def test_yearly_with_an_offset_longer_than_a_year() -> None:
    assert date_relative_due("1990-06-01", duration_ms("-400d"), "09:00", UTC, True, ms(2026, 1, 1)) == ms(
        2026, 4, 27, 9
    )


def test_yearly_starts_at_the_date_itself() -> None:
    assert date_relative_due("2030-05-01", 0, "09:00", UTC, True, ms(2026, 1, 1)) == ms(2030, 5, 1, 9)
    assert date_relative_due("2026-05-01", 0, "09:00", UTC, True, ms(2026, 5, 2)) == ms(2027, 5, 1, 9)


def test_yearly_near_the_end_of_the_calendar_is_none_not_an_error() -> None:
    assert date_relative_due("9999-12-01", 0, "09:00", UTC, True, ms(9999, 12, 31)) is None


# --- local_day ---------------------------------------------------------------------------------


def test_local_day_is_the_local_calendar_date() -> None:
    assert local_day(ms(2026, 3, 8, 4, 59), NY) == date(2026, 3, 7).toordinal()  # 23:59 EST
    assert local_day(ms(2026, 3, 8, 5), NY) == date(2026, 3, 8).toordinal()
    assert local_day(ms(2026, 3, 8, 5), UTC) == date(2026, 3, 8).toordinal()
    assert local_day(ms(2026, 3, 7, 23), BERLIN) == date(2026, 3, 8).toordinal()


def test_local_days_of_a_streak_across_dst_are_consecutive() -> None:
    evenings = [at_local_time(date(2026, 3, d), "23:30", NY) for d in range(6, 11)]
    days = [local_day(t, NY) for t in evenings]
    assert days == list(range(days[0], days[0] + 5))
    mornings = [at_local_time(date(2026, 10, d), "00:15", BERLIN) for d in range(23, 28)]
    days = [local_day(t, BERLIN) for t in mornings]
    assert days == list(range(days[0], days[0] + 5))


# --- places ------------------------------------------------------------------------------------

PARIS = (48.8566, 2.3522)
LONDON = (51.5074, -0.1278)


def test_haversine_paris_london() -> None:
    distance = haversine_m(*PARIS, *LONDON)
    assert distance == pytest.approx(343_500, abs=500)
    assert haversine_m(*LONDON, *PARIS) == pytest.approx(distance)


def test_haversine_edges() -> None:
    assert haversine_m(*PARIS, *PARIS) == 0
    assert haversine_m(0, 0, 0, 180) == pytest.approx(math.pi * EARTH_RADIUS_M)
    assert haversine_m(90, 0, -90, 0) == pytest.approx(math.pi * EARTH_RADIUS_M)
    assert haversine_m(0, 179.9995, 0, -179.9995) == pytest.approx(111.2, abs=0.5)  # across the date line
    one_degree_of_latitude = haversine_m(0, 0, 1, 0)
    assert one_degree_of_latitude == pytest.approx(111_195, abs=5)


def track(properties: dict[str, Any] | None = None, context: dict[str, Any] | None = None) -> EventInput:
    return EventInput(
        message_id="m",
        type="track",
        event="Store Visited",
        timestamp_ms=0,
        properties=properties or {},
        context=context or {},
    )


@pytest.mark.parametrize(
    ("properties", "context", "expected"),
    [
        ({"latitude": 48.8566, "longitude": 2.3522}, {}, PARIS),
        ({"latitude": "48.8566", "longitude": "2.3522"}, {}, PARIS),
        ({"latitude": 48, "longitude": 2}, {}, (48.0, 2.0)),
        ({}, {"location": {"latitude": 51.5074, "longitude": -0.1278}}, LONDON),
        ({"latitude": 48.8566}, {"location": {"latitude": 51.5074, "longitude": -0.1278}}, LONDON),
        ({"latitude": 91, "longitude": 0}, {"location": {"latitude": 51.5074, "longitude": -0.1278}}, LONDON),
        ({"latitude": 48.8566, "longitude": 2.3522}, {"location": {"latitude": 1, "longitude": 1}}, PARIS),
        ({"latitude": -90, "longitude": 180}, {}, (-90.0, 180.0)),
        ({"latitude": 90.0001, "longitude": 0}, {}, None),
        ({"latitude": 0, "longitude": -180.5}, {}, None),
        ({"latitude": True, "longitude": 0}, {}, None),
        ({"latitude": "north", "longitude": "2"}, {}, None),
        ({"latitude": "nan", "longitude": "2"}, {}, None),
        ({"latitude": float("nan"), "longitude": 2}, {}, None),
        ({"latitude": None, "longitude": None}, {}, None),
        ({"latitude": [48], "longitude": [2]}, {}, None),
        ({}, {"location": "Paris"}, None),
        ({}, {"location": {"city": "Paris"}}, None),
        ({}, {}, None),
    ],
)
def test_event_coordinates(properties: dict[str, Any], context: dict[str, Any], expected: Any) -> None:
    assert event_coordinates(track(properties, context)) == expected


@settings(max_examples=150, deadline=None)
@given(
    birthday=st.dates(min_value=date(1900, 1, 1), max_value=date(2020, 12, 31)),
    now=st.integers(min_value=ms(2020, 1, 1), max_value=ms(2040, 1, 1)),
    tz=st.sampled_from(ZONES),
    offset_days=st.integers(-60, 60),
    at=st.sampled_from(["00:00", "02:30", "09:00", "23:59"]),
)
def test_yearly_due_is_the_next_one(birthday: date, now: int, tz: Any, offset_days: int, at: str) -> None:
    offset = offset_days * DAY
    due = date_relative_due(birthday.isoformat(), offset, at, tz, True, now)
    assert due is not None and now <= due < now + 367 * DAY
    # Asked again at that moment, the answer is the same; a moment later, about a year later.
    assert date_relative_due(birthday.isoformat(), offset, at, tz, True, due) == due
    following = date_relative_due(birthday.isoformat(), offset, at, tz, True, due + 1)
    assert following is not None and 364 * DAY < following - due < 367 * DAY
