"""Reserved traits: recognized in either spelling, validated, and reported when wrong."""

from __future__ import annotations

from typing import Any

import pytest

from nudgeflow.model.traits import RESERVED_TRAITS, clean_traits


def test_valid_reserved_traits_are_applied_as_given() -> None:
    traits = {
        "email": "ada@example.com",
        "phone": "+33 6 12 34 56 78",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "timezone": "Europe/Paris",
        "locale": "fr-FR",
        "created_at": "2024-02-29T10:00:00Z",
    }
    assert set(traits) == set(RESERVED_TRAITS)
    assert clean_traits(traits) == (traits, {})


def test_other_traits_pass_through_untouched() -> None:
    traits = {"plan": "pro", "seats": 3, "tags": ["a", "b"], "address": {"city": "Lyon"}, "Email": "not checked"}
    assert clean_traits(traits) == (traits, {})


def test_camel_case_spellings_are_stored_snake_case() -> None:
    good, bad = clean_traits({"firstName": "Ada", "lastName": "Lovelace", "createdAt": 1_700_000_000})
    assert good == {"first_name": "Ada", "last_name": "Lovelace", "created_at": 1_700_000_000}
    assert bad == {}
    # A bad value is reported under the canonical name, whichever spelling carried it.
    good, bad = clean_traits({"createdAt": "last tuesday"})
    assert good == {} and set(bad) == {"created_at"}


def test_a_bad_timezone_is_reported_not_applied() -> None:
    good, bad = clean_traits({"timezone": "Mars/Olympus", "plan": "pro"})
    assert good == {"plan": "pro"}
    assert bad["timezone"]["value"] == "Mars/Olympus"
    assert "IANA time zone" in bad["timezone"]["reason"]


def test_null_clears_a_trait_even_a_reserved_one() -> None:
    # In Segment, null means "unset": it is passed on, not validated as a bad value.
    good, bad = clean_traits({"email": None, "timezone": None, "plan": None})
    assert good == {"email": None, "timezone": None, "plan": None}
    assert bad == {}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("email", "not-an-address"),
        ("email", "a@b"),
        ("email", "two words@example.com"),
        ("email", 42),
        ("email", "x" * 250 + "@example.com"),
        ("phone", "call me"),
        ("phone", "123"),
        ("phone", "+1234567890123456"),
        ("phone", 33612345678),
        ("first_name", ["Ada"]),
        ("last_name", "x" * 257),
        ("timezone", "CET+1"),
        ("timezone", "europe/paris"),
        ("timezone", 2),
        ("locale", "english"),
        ("locale", "e"),
        ("locale", 1),
        ("created_at", "2024-13-01"),
        ("created_at", True),
        ("created_at", -1),
        ("created_at", 1e13),
        ("created_at", {"at": 1}),
    ],
)
def test_each_bad_reserved_trait_is_reported_with_a_reason(name: str, value: Any) -> None:
    good, bad = clean_traits({name: value, "kept": 1})
    assert good == {"kept": 1}
    assert bad[name]["value"] == value
    assert isinstance(bad[name]["reason"], str) and bad[name]["reason"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("phone", "(555) 010-9999"),
        ("timezone", "America/Argentina/Buenos_Aires"),
        ("timezone", "UTC"),
        ("locale", "en"),
        ("locale", "zh_Hant_TW"),
        ("created_at", 0),
        ("created_at", 1_700_000_000.5),
        ("created_at", "2024-01-01"),
        ("created_at", "2024-01-01T10:00:00+05:30"),
    ],
)
def test_accepted_variants_of_reserved_traits(name: str, value: Any) -> None:
    assert clean_traits({name: value}) == ({name: value}, {})


@pytest.mark.parametrize(
    "email",
    [
        "a\u0000b@example.com",
        "ada@example.com\n",
        "ada@exa\u0007mple.com",
        "ada\u202e@example.com",
        "ada@example.com\u200b",
        "a\u0085b@example.com",
    ],
)
def test_an_email_with_a_control_character_is_refused(email: str) -> None:
    good, bad = clean_traits({"email": email})
    assert good == {} and bad["email"]["value"] == email
    assert bad["email"]["reason"].startswith("not an email address")


@pytest.mark.parametrize("phone", ["+33612345678\n", "+336\u00001234567", "+33 6\t12 34 56 78"])
def test_a_phone_with_a_control_character_is_refused(phone: str) -> None:
    good, bad = clean_traits({"phone": phone})
    assert good == {} and "control character" in bad["phone"]["reason"]


def test_a_locale_with_a_trailing_line_break_is_refused() -> None:
    assert "locale" in clean_traits({"locale": "fr-FR\n"})[1]
    assert clean_traits({"email": "zoë@exämple.com"})[1] == {}  # international addresses stay valid
