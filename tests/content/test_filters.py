"""Money and date filters in the person's locale and timezone."""

from __future__ import annotations

from typing import Any

import pytest
from liquid import Environment

from nudgeflow.content.filters import locale_of, register_filters

NBSP, NNBSP = "\xa0", "\u202f"
NOW = "2026-01-01T12:00:00Z"


def render(source: str, locale: str | None = "en_US", tz: str | None = "UTC", **data: Any) -> str:
    env = Environment()
    register_filters(env)
    profile = {k: v for k, v in (("locale", locale), ("timezone", tz)) if v is not None}
    return env.from_string(source).render(profile=profile, now=NOW, **data)


@pytest.mark.parametrize(
    "locale,expected",
    [
        ("en_US", "€19.99"),
        ("fr_FR", f"19,99{NBSP}€"),
        ("de_DE", f"19,99{NBSP}€"),
        ("ja_JP", "€19.99"),
        ("fr-FR", f"19,99{NBSP}€"),
        ("xx_YY", "€19.99"),  # unknown: en_US
        (None, "€19.99"),
    ],
)
def test_money_in_the_person_s_locale(locale: str | None, expected: str) -> None:
    assert render('{{ 19.99 | money: "EUR" }}', locale) == expected


@pytest.mark.parametrize(
    "locale,expected",
    [
        ("en_US", "$1,234.50|¥1,235|£5.00"),
        ("fr_FR", f"1{NNBSP}234,50{NBSP}$US|1{NNBSP}235{NBSP}JPY|5,00{NBSP}£GB"),
        ("de_DE", f"1.234,50{NBSP}$|1.235{NBSP}¥|5,00{NBSP}£"),
        ("ja_JP", "$1,234.50|￥1,235|£5.00"),
    ],
)
def test_money_defaults_and_products(locale: str, expected: str) -> None:
    source = '{{ 1234.5 | money }}|{{ "1234.6" | money: "jpy" }}|{{ item | money }}'
    assert render(source, locale, item={"price": 5, "currency": "GBP"}) == expected


def test_money_odd_values() -> None:
    assert render("{{ x | money }}", x=None) == ""
    assert render("{{ x | money }}", x="n/a") == "n/a"
    # Too large for a float: shown as it is, not an OverflowError that stops the render.
    assert render("{{ x | money }}", x=10**400) == str(10**400)
    assert render('{{ 3 | money: "ZZZ" }}') in ("ZZZ3.00", "3.00 ZZZ")
    env = Environment()
    register_filters(env)
    assert env.from_string("{{ 5 | money }}").render(profile={"locale": "de_DE", "currency": "EUR"}) == f"5,00{NBSP}€"
    assert env.from_string("{{ 5 | money }}").render() == "$5.00"  # no profile at all


@pytest.mark.parametrize(
    "tz,locale,expected",
    [
        ("UTC", "en_US", "Jan 1, 2026"),
        ("America/Los_Angeles", "en_US", "Dec 31, 2025"),  # 2026-01-01T02:30Z is still Dec 31 there
        ("Asia/Tokyo", "ja_JP", "2026/01/01"),
        ("Europe/Paris", "fr_FR", "1 janv. 2026"),
        ("Europe/Berlin", "de_DE", "01.01.2026"),
        ("Not/AZone", "en_US", "Jan 1, 2026"),
    ],
)
def test_date_across_timezones(tz: str, locale: str, expected: str) -> None:
    assert render("{{ t | date }}", locale, tz, t="2026-01-01T02:30:00Z") == expected


def test_date_formats() -> None:
    t = "2026-03-05T18:45:00Z"
    assert render('{{ t | date: "short" }}', t=t) == "3/5/26"
    assert render('{{ t | date: "long" }}', "fr_FR", "Europe/Paris", t=t) == "5 mars 2026"
    assert render('{{ t | date: "full" }}', "de_DE", "Europe/Berlin", t=t) == "Donnerstag, 5. März 2026"
    assert render('{{ t | date: "EEEE d MMMM" }}', "fr_FR", "Asia/Tokyo", t=t) == "vendredi 6 mars"
    assert render('{{ t | date: "%Y-%m-%d %H:%M" }}', tz="Asia/Tokyo", t=t) == "2026-03-06 03:45"
    assert render("{{ t | date }}", t=1_772_736_300_000) == "Mar 5, 2026"  # epoch ms
    assert render("{{ t | date }}", tz="America/New_York", t="2026-03-05") == "Mar 5, 2026"  # a local date
    assert render('{{ "now" | date }}', tz="Pacific/Kiritimati") == "Jan 2, 2026"
    assert render("{{ t | date }}", t="soon") == "soon"


def test_datetime_in_the_person_s_timezone() -> None:
    t = "2026-07-01T16:05:00Z"
    assert render('{{ t | datetime: "short" }}', "en_US", "America/New_York", t=t) == f"7/1/26, 12:05{NNBSP}PM"
    assert render('{{ t | datetime: "short" }}', "fr_FR", "Europe/Paris", t=t) == "01/07/2026 18:05"
    assert render('{{ t | datetime: "HH:mm zzzz" }}', "en_US", "Europe/London", t=t) == "17:05 British Summer Time"


@pytest.mark.parametrize(
    "value,tz,expected",
    [
        ("2026-01-10", "UTC", "9"),
        ("2026-01-01T23:00:00Z", "UTC", "0"),
        ("2026-01-02T01:00:00Z", "America/Los_Angeles", "0"),  # still Jan 1 there
        ("2026-01-02T01:00:00Z", "UTC", "1"),
        ("2025-12-25", "UTC", "-7"),
        ("nope", "UTC", ""),
    ],
)
def test_days_until(value: str, tz: str, expected: str) -> None:
    assert render("{{ v | days_until }}", tz=tz, v=value) == expected


def test_undefined_values_stay_undefined_for_strict_templates() -> None:
    from liquid import StrictUndefined
    from liquid.exceptions import UndefinedError

    env = Environment(undefined=StrictUndefined)
    register_filters(env)
    for source in ("{{ missing | money }}", "{{ missing | date }}", "{{ missing | days_until }}"):
        with pytest.raises(UndefinedError):
            env.from_string(source).render(profile={})


def test_locale_of() -> None:
    assert str(locale_of("pt-BR")) == "pt_BR" and str(locale_of("")) == "en_US" and str(locale_of(3)) == "en_US"


def test_templates_use_these_filters() -> None:
    from nudgeflow.content.templates import environment

    env = environment()
    out = env.from_string('{{ 19.99 | money: "EUR" }} {{ t | date: "long" }}').render(
        profile={"locale": "fr_FR", "timezone": "Europe/Paris"}, t="2026-01-01T00:30:00Z"
    )
    assert out == f"19,99{NBSP}€ 1 janvier 2026"
