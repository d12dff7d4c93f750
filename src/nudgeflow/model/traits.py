"""Reserved profile traits: recognized, validated, and reported when wrong.

An invalid reserved trait is not applied to the profile; it is kept in the profile's
`trait_errors` with the reason, and named in the ingest response, so a bad timezone is
visible instead of silently breaking quiet hours later.
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any

RESERVED_TRAITS = ("email", "phone", "first_name", "last_name", "timezone", "locale", "created_at")

# Segment's spec spells these in camelCase; both spellings are accepted and stored snake_case.
ALIASES = {"firstName": "first_name", "lastName": "last_name", "createdAt": "created_at"}

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE_CHARS = re.compile(r"\+?[0-9 ().\-]+")
_LOCALE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*")


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _has_control(value: str) -> bool:
    """Any control, format or unassigned character (NUL, a line break, a bidi override): an
    address holding one would reach an SMTP envelope, a header or a provider's API."""
    return not value.isprintable() and any(unicodedata.category(c)[0] == "C" for c in value)


def _email(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL.fullmatch(value):
        return "not an email address"
    if _has_control(value):
        return "not an email address: it contains a control character"
    return None


def _phone(value: Any) -> str | None:
    if isinstance(value, str) and _has_control(value):
        return "not a phone number: it contains a control character"
    # fullmatch: `$` alone also matches before a final line break.
    if not isinstance(value, str) or not _PHONE_CHARS.fullmatch(value):
        return "not a phone number (digits, optional leading +)"
    digits = sum(c.isdigit() for c in value)
    if not 5 <= digits <= 15:
        return f"a phone number has 5 to 15 digits, not {digits}"
    return None


def _name(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 256:
        return "must be a string of at most 256 characters"
    return None


def _timezone(value: Any) -> str | None:
    if not isinstance(value, str) or value not in _zones():
        return "not an IANA time zone name (such as Europe/Paris)"
    return None


def _locale(value: Any) -> str | None:
    if not isinstance(value, str) or not _LOCALE.fullmatch(value):
        return "not a locale tag (such as en-US or fr_FR)"
    return None


def _created_at(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if 0 <= value < 1e13 else "not a plausible epoch time"
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
            return None
        except ValueError:
            pass
    return "not an ISO 8601 date-time or epoch seconds"


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "email": _email,
    "phone": _phone,
    "first_name": _name,
    "last_name": _name,
    "timezone": _timezone,
    "locale": _locale,
    "created_at": _created_at,
}


NUL_REASON = "contains a NUL (\\u0000) character, which cannot be stored"


def _holds_nul(value: Any) -> bool:
    """Whether a NUL character is anywhere in the value (strings, list items, keys, values)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def clean_traits(traits: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split traits into those to apply and those that failed, with reasons: reserved ones
    that fail their check, and any that holds a NUL character (PostgreSQL's JSON cannot
    hold one, and the profile's traits are read as JSON by an index: one such trait would
    fail the whole commit). A reserved trait's own check comes first; another trait holding a
    NUL is reported without its value, its name made printable.

    A null value is kept: in Segment it clears the trait.
    """
    good: dict[str, Any] = {}
    bad: dict[str, dict[str, Any]] = {}
    for key, value in traits.items():
        name = ALIASES.get(key, key)
        check = _CHECKS.get(name)
        if check is not None and value is not None:
            reason = check(value)
            if reason is not None:
                bad[name] = {"value": value, "reason": reason}  # trait_errors is plain text: a NUL is kept
                continue
        if _holds_nul(key) or _holds_nul(value):
            bad[name.replace("\x00", "\ufffd")] = {"value": None, "reason": NUL_REASON}
            continue
        good[name] = value
    return good, bad
