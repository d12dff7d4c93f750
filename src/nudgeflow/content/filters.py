"""Liquid filters for money and dates in the person's locale and timezone (babel), and `json`.

`register_filters(env)` adds them to a python-liquid Environment (content/templates.py
calls it for every environment it makes). Each filter reads the render context
(python-liquid's `with_context`): the locale from `profile.locale` (en_US when missing or
unknown; "fr-FR" and "fr_FR" both work), the timezone from `profile.timezone` (UTC when
missing or unknown), and "now" from the context's `now` (the send time) when there is one.

    {{ 19.99 | money: "EUR" }}            fr_FR: 19,99 €     en_US: €19.99
    {{ item | money }}                    a product: its price in its currency
    {{ item.price | money }}              the currency: profile.currency, else USD
    {{ event.timestamp | date }}          medium: Jan 5, 2026 / 5 janv. 2026
    {{ profile.trial_ends_at | date: "long" }}      short | medium | long | full
    {{ run.entered_at | date: "EEEE d MMMM" }}      a CLDR pattern (babel)
    {{ run.entered_at | date: "%Y-%m-%d" }}         a strftime format (Shopify's date filter)
    {{ event.timestamp | datetime: "short" }}       date and time in the person's timezone
    {{ profile.trial_ends_at | days_until }}        whole local days from now (negative: past)
    {{ cart.items | json }}               the value as JSON text (a webhook body)

Values that are dates: ISO 8601 strings (with an offset or Z; without one they are local
time in the person's timezone), a date alone, epoch milliseconds or seconds, datetime and
date objects, and "now"/"today". A value that is not a date is returned as it is; an
undefined value is passed through, so strict undefined still reports it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any

import orjson
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency
from liquid import Environment
from liquid.filter import with_context
from liquid.undefined import Undefined

from nudgeflow.core.timecalc import parse_instant, zone_of
from nudgeflow.model.numbers import as_number

DEFAULT_LOCALE = "en_US"
DEFAULT_CURRENCY = "USD"
NAMED_FORMATS = ("short", "medium", "long", "full")
_locales: dict[str, Locale] = {}


def _profile(context: Any) -> Mapping[str, Any]:
    if context is None:
        return {}
    profile = context.resolve("profile", default=None)
    return profile if isinstance(profile, Mapping) else {}


def locale_of(value: Any) -> Locale:
    """A babel Locale from "fr_FR", "fr-FR" or "fr"; en_US for anything unknown."""
    key = value.strip() if isinstance(value, str) else ""
    found = _locales.get(key)
    if found is not None:
        return found
    try:
        found = Locale.parse(key.replace("-", "_")) if key and len(key) <= 40 else Locale.parse(DEFAULT_LOCALE)
    except (UnknownLocaleError, ValueError, TypeError):
        found = Locale.parse(DEFAULT_LOCALE)
    if len(_locales) < 1000:
        _locales[key] = found
    return found


def _context_locale(context: Any) -> Locale:
    return locale_of(_profile(context).get("locale"))


def _context_zone(context: Any) -> tzinfo:
    return zone_of(dict(_profile(context)))


def _now(context: Any, tz: tzinfo) -> datetime:
    if context is not None:
        now = context.resolve("now", default=None)
        parsed = parse_instant(now, tz) if not isinstance(now, Undefined) else None
        if parsed is not None:
            return parsed
    return datetime.now(UTC).astimezone(tz)


def _instant(value: Any, tz: tzinfo, context: Any) -> datetime | None:
    if isinstance(value, str) and value.strip().lower() in ("now", "today"):
        return _now(context, tz)
    return parse_instant(value, tz)


@with_context
def money(value: Any, currency: Any = None, *, context: Any = None) -> Any:
    """The amount in the person's locale: `{{ 19.99 | money: "EUR" }}` is "19,99 €" in fr_FR.

    A product (a mapping with `price`) is its price in its own currency. The currency is
    the argument, else the product's, else `profile.currency`, else USD.
    """
    if isinstance(value, Undefined):
        return value
    own_currency = None
    if isinstance(value, Mapping):
        own_currency = value.get("currency")
        value = value.get("price")
    amount = as_number(value, lenient=True)
    if amount is None:
        return "" if value is None else value
    code = (
        currency
        if isinstance(currency, str) and currency.strip()
        else (own_currency or _profile(context).get("currency") or DEFAULT_CURRENCY)
    )
    code = str(code).strip().upper()
    return _format_money(amount, code, _context_locale(context))


@functools.lru_cache(maxsize=4096)
def _format_money(amount: float, code: str, locale: Locale) -> str:
    # Cached: an email renders the same prices in its HTML and again in its text part, and
    # a campaign the same catalog for every person; babel's formatting is ~35 us a call.
    try:
        return format_currency(amount, code, locale=locale)
    except Exception:  # an unknown currency code: still readable
        return f"{amount:.2f} {code}"


def _format(value: Any, fmt: Any, context: Any, with_time: bool) -> Any:
    if isinstance(value, Undefined):
        return value
    tz = _context_zone(context)
    moment = _instant(value, tz, context)
    if moment is None:
        return value
    locale = _context_locale(context)
    pattern = fmt if isinstance(fmt, str) and fmt.strip() else "medium"
    if "%" in pattern:
        return moment.strftime(pattern)
    if with_time:
        return format_datetime(moment, pattern, tzinfo=tz, locale=locale)
    return format_date(moment.date(), pattern, locale=locale)


@with_context
def date_filter(value: Any, fmt: Any = None, *, context: Any = None) -> Any:
    """The local date: short, medium (default), long, full, a CLDR pattern or a strftime format."""
    return _format(value, fmt, context, with_time=False)


@with_context
def datetime_filter(value: Any, fmt: Any = None, *, context: Any = None) -> Any:
    """The local date and time: short, medium (default), long, full or a pattern."""
    return _format(value, fmt, context, with_time=True)


@with_context
def days_until(value: Any, *, context: Any = None) -> Any:
    """Whole local calendar days from now to the value's date (0 today, negative if past)."""
    if isinstance(value, Undefined):
        return value
    tz = _context_zone(context)
    moment = _instant(value, tz, context)
    if moment is None:
        return None
    today: date = _now(context, tz).date()
    return (moment.date() - today).days


def json_filter(value: Any) -> str:
    """The value as JSON text (Shopify's `json` filter): `{{ cart.items | json }}` inside a
    webhook body written as one template. An undefined value fails as it would in output."""
    if isinstance(value, Undefined):
        str(value)  # strict undefined raises here, naming the variable
        return "null"
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()


def _json_default(value: Any) -> Any:
    # What a Liquid expression can make beyond JSON's types: a Decimal (arithmetic filters),
    # a range, a date; anything else is written as its text.
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, range):
        return list(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def register_filters(env: Environment) -> None:
    """Add money, date, datetime, days_until and json to the environment (date replaces Liquid's)."""
    env.filters["money"] = money
    env.filters["date"] = date_filter
    env.filters["datetime"] = datetime_filter
    env.filters["days_until"] = days_until
    env.filters["json"] = json_filter
