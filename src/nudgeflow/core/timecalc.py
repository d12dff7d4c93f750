"""Calendar arithmetic in the person's timezone, as pure functions.

All instants are int milliseconds since the epoch (UTC). Nothing here reads the wall clock:
"now" is always an argument.

Local times are wall-clock times in the profile's IANA timezone (`traits["timezone"]`,
UTC when absent or unknown), and they stay right across daylight-saving changes:
- a local time that does not exist (the spring-forward gap, 02:30 on the night clocks jump
  from 02:00 to 03:00) moves forward by the length of the gap, to 03:30: the message goes
  out as soon after the intended time as the clock allows, never a day late; but the end of
  a stretch of local time (at_local_time_after: quiet hours ending at 02:30) is the jump
  itself, 03:00, the first instant the clock reads 02:30 or later;
- a local time that happens twice (the fall-back hour) means its first occurrence, so a
  message is not sent an hour later than the person would expect.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from nudgeflow.core.inputs import EventInput
from nudgeflow.model.numbers import NUMERIC

UTC_ZONE = ZoneInfo("UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_MS = 86_400_000
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
_LOCAL_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
# Epoch numbers above this are milliseconds: 1e11 seconds is the year 5138, 1e11 ms is 1973.
_MS_THRESHOLD = 1e11
EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius: the usual choice for haversine distances


# --- zones ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _zones_by_lower_name() -> dict[str, str]:
    # Scans the tz database once, and only when some profile spells a zone in another case
    # ("america/new_york", "utc"): the file lookup is case-sensitive on Linux.
    return {name.lower(): name for name in available_timezones()}


@lru_cache(maxsize=2048)
def _zone(name: str) -> ZoneInfo | None:
    # Bounded cache: the names come from user-supplied traits, failures are cached too.
    for candidate in (name, _zones_by_lower_name().get(name.lower())):
        if not candidate:
            continue
        try:
            return ZoneInfo(candidate)
        except (ValueError, KeyError, OSError):
            # ValueError: "../x", "", a non-TZif file such as "zone.tab";
            # KeyError (ZoneInfoNotFoundError): no such zone; OSError: names the OS rejects.
            continue
    return None


def zone_of(traits: dict[str, Any], default: ZoneInfo = UTC_ZONE) -> ZoneInfo:
    """The profile's timezone: `traits["timezone"]` when it is a known IANA name, else
    `default` (UTC; send policies pass the workspace's zone)."""
    name = traits.get("timezone") if isinstance(traits, dict) else None
    if isinstance(name, str) and 0 < len(name) <= 64:
        zone = _zone(name.strip())
        if zone is not None:
            return zone
    return default


def named_zone(name: str) -> ZoneInfo:
    """An IANA zone by name (any case), UTC when unknown; cached."""
    return _zone(name.strip()) or UTC_ZONE


# --- instants ------------------------------------------------------------------------------


def _to_ms(moment: datetime) -> int:
    # Exact integer arithmetic: timestamp() goes through a float and can land 1 ms short.
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _from_ms(ms: int, tz: tzinfo) -> datetime:
    return (_EPOCH + timedelta(milliseconds=ms)).astimezone(tz)


def _localize(wall: datetime, tz: tzinfo) -> datetime:
    """A naive wall-clock time in `tz`, with the gap and fold rules of this module.

    With fold=0, zoneinfo gives a time in the gap the offset from before the transition
    (PEP 495), which converts to the instant "the gap's length later": 02:30 EST is 03:30
    EDT. An ambiguous time with fold=0 is its first occurrence. So no special cases here.
    """
    return wall.replace(tzinfo=tz, fold=0)


def parse_instant(value: Any, tz: tzinfo) -> datetime | None:
    """A trait value as an aware datetime expressed in `tz`, or None when it is not a time.

    ISO 8601 with an offset or Z is that instant; without an offset it is local time in `tz`;
    a date alone is local midnight. Numbers are epoch milliseconds when above 1e11 in
    magnitude, epoch seconds otherwise. datetime and date objects are taken as they are
    (naive ones as local time). Anything else, or a time out of range, is None.
    """
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            if not math.isfinite(value):
                return None
            ms = value if abs(value) > _MS_THRESHOLD else value * 1000
            return _from_ms(int(ms), tz)
        if isinstance(value, datetime):
            return value.astimezone(tz) if value.tzinfo is not None else _localize(value, tz)
        if isinstance(value, date):
            return _localize(datetime.combine(value, time()), tz)
        if isinstance(value, str):
            text = value.strip()
            if not text or len(text) > 64:
                return None
            if _DATE_ONLY.fullmatch(text):
                return _localize(datetime.combine(date.fromisoformat(text), time()), tz)
            # RFC 3339 allows "t" and "z"; fromisoformat on 3.11 takes only capitals.
            parsed = datetime.fromisoformat(text.upper())
            return parsed.astimezone(tz) if parsed.tzinfo is not None else _localize(parsed, tz)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _parse_at(at: str) -> time:
    match = _LOCAL_TIME.fullmatch(at.strip()) if isinstance(at, str) else None
    if not match:
        raise ValueError(f"not a local time of day: {at!r} (use HH:MM)")
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"not a local time of day: {at!r} (use HH:MM)")
    return time(hour, minute, second)


def local_time(at: str) -> time:
    """A local time of day "HH:MM" (or "HH:MM:SS") as a time; ValueError when it is not one."""
    return _parse_at(at)


def local_moment(ms: int, tz: tzinfo) -> datetime:
    """An instant as an aware datetime in `tz` (its local date and wall-clock time)."""
    return _from_ms(ms, tz)


def at_local_time(day: date, at: str, tz: tzinfo) -> int:
    """`at` ("HH:MM") on the local date `day`, as epoch ms (gap: forward; fold: first)."""
    return _to_ms(_localize(datetime.combine(day, _parse_at(at)), tz))


def at_local_time_after(day: date, at: str, tz: tzinfo, after_ms: int) -> int:
    """The end of a stretch of local time that ends at `at` on the local date `day` and
    contains `after_ms`: the first instant the clock reads `at` or later. So a time the
    clocks skip (02:30 on the night they jump from 02:00 to 03:00) ends at the jump, 03:00,
    not the gap's length later as at_local_time has it; a time that happens twice (the
    fall-back hour) ends at its first occurrence, or at its second when the first is not
    after `after_ms`."""
    wall = datetime.combine(day, _parse_at(at))
    first = _to_ms(_localize(wall, tz))
    shown = _from_ms(first, tz).replace(tzinfo=None)
    if shown != wall:
        # In the gap: `first` is `at` moved forward by the gap's length. The jump lies within
        # that length before it (a rare path: a gap a few nights a year, not the hot one).
        return _jump_before(first, shown - wall, wall, tz)
    if first > after_ms:
        return first
    # fold=1 is the second occurrence of a repeated time; elsewhere it is the same instant.
    return max(first, _to_ms(wall.replace(tzinfo=tz, fold=1)))


def _jump_before(moved_ms: int, gap: timedelta, wall: datetime, tz: tzinfo) -> int:
    """The first instant at which the clock reads `wall` or later, given `moved_ms`, an instant
    no more than `gap` after it at which the clock reads later than `wall`."""
    lo = moved_ms - gap // timedelta(milliseconds=1)  # the clock reads earlier than `wall` here
    hi = moved_ms
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _from_ms(mid, tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return hi


def next_time_of_day(now_ms: int, at: str, weekdays: Sequence[str] | None, tz: tzinfo) -> int:
    """The first instant >= now_ms that is `at` local time on an allowed weekday.

    `weekdays` holds "mon".."sun"; None, or a list naming no valid day, allows every day
    (a wait that could never end is worse than one that ignores a bad list).
    """
    allowed = {_WEEKDAYS.index(d) for d in (weekdays or ()) if isinstance(d, str) and d in _WEEKDAYS}
    if not allowed:
        allowed = set(range(7))
    at_time = _parse_at(at)
    today = _from_ms(now_ms, tz).date()
    # Start a day early: a time shifted forward over midnight by a gap can belong to the day
    # before. Nine days cover a full week after today whatever the allowed set.
    for delta in range(-1, 9):
        day = today + timedelta(days=delta)
        if day.weekday() not in allowed:
            continue
        due = _to_ms(_localize(datetime.combine(day, at_time), tz))
        if due >= now_ms:
            return due
    raise AssertionError("unreachable: every week has an allowed day")


def _split_offset(offset_ms: int) -> tuple[int, int]:
    """(whole days, remaining ms), both with the offset's sign: -36h is -1 day and -12h."""
    days = abs(offset_ms) // _DAY_MS
    if offset_ms < 0:
        days = -days
    return days, offset_ms - days * _DAY_MS


def _due_on(day: date, wall: time, days: int, rest_ms: int, tz: tzinfo) -> int:
    local = datetime.combine(day + timedelta(days=days), wall)
    return _to_ms(_localize(local, tz)) + rest_ms


def date_relative_due(value: Any, offset_ms: int, at: str | None, tz: tzinfo, yearly: bool, now_ms: int) -> int | None:
    """When something due relative to a date trait falls ("3 days before trial_ends_at at 09:00").

    Whole days of the offset move the local calendar date, so "-3d" at 09:00 is 09:00 local
    three days before even across a DST change; what is left of the offset (the "12h" of
    "-36h") is added as absolute time. With `at`, that local time on the shifted date;
    without, the trait's own local time of day (midnight for a date alone).

    yearly: the first anniversary (the trait's month and day; 29 February falls on the 28th
    in other years; the first anniversary is the date itself) whose due time is >= now_ms.
    Otherwise the due time itself, even in the past: whether a past one still counts is the
    caller's decision. None when the value is not a date, or the result is out of range.
    """
    moment = parse_instant(value, tz)
    if moment is None:
        return None
    wall = _parse_at(at) if at is not None else moment.timetz().replace(tzinfo=None, fold=0)
    days, rest_ms = _split_offset(offset_ms)
    try:
        if not yearly:
            return _due_on(moment.date(), wall, days, rest_ms, tz)
        now_year = _from_ms(now_ms, tz).year
        # An offset can carry an anniversary into another year (Jan 2 - 3 days is in December),
        # so start early enough that the offset cannot jump over now.
        reach = abs(days) // 365 + 1
        # Anniversaries start with the trait's own year: a yearly message about a date that
        # has not happened yet waits for it.
        # One spare year each way absorbs leap days and the part of the offset under a day.
        first = max(moment.year, now_year - reach - 1)
        for year in range(first, max(first, now_year + reach) + 3):
            due = _due_on(_anniversary(moment.date(), year), wall, days, rest_ms, tz)
            if due >= now_ms:
                return due
    except (ValueError, OverflowError):
        pass  # a year or date out of datetime's range: no due time rather than a crash
    return None


def _anniversary(original: date, year: int) -> date:
    if original.month == 2 and original.day == 29:
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 2, 28)  # the common choice for leap-day birthdays
    return original.replace(year=year)


def local_day(ms: int, tz: tzinfo) -> int:
    """The local calendar date of an instant as a day number: consecutive days differ by 1."""
    return _from_ms(ms, tz).date().toordinal()


# --- places --------------------------------------------------------------------------------


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres on a spherical Earth (error under 0.5 %, fine for geofences)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(lon2 - lon1)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    # Rounding can push `a` a hair past 1 for antipodal points; asin would then raise.
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, max(0.0, a))))


def _coordinate(value: Any, limit: float) -> float | None:
    if value is None:  # the common case: an event without a position
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 40 or not NUMERIC.fullmatch(text):
            return None
        value = float(text)
    if not isinstance(value, (int, float)):
        return None
    number = float(value)
    if not math.isfinite(number) or abs(number) > limit:
        return None
    return number


def coordinate_pair(source: Any) -> tuple[float, float] | None:
    """(latitude, longitude) of a mapping with valid `latitude` and `longitude`, else None."""
    if not isinstance(source, dict):
        return None
    lat = _coordinate(source.get("latitude"), 90.0)
    if lat is None:
        return None
    lon = _coordinate(source.get("longitude"), 180.0)
    return None if lon is None else (lat, lon)


def event_coordinates(event: EventInput) -> tuple[float, float] | None:
    """(latitude, longitude) of an event: its properties', else Segment's context.location."""
    from_properties = coordinate_pair(event.properties)
    if from_properties is not None:
        return from_properties
    context = event.context if isinstance(event.context, dict) else {}
    return coordinate_pair(context.get("location"))
