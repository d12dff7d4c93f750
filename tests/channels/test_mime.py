"""channels/mime.py writes what the email package would: parsed back, the same message."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nudgeflow.channels.email.mime import compose, compose_raw, fold
from nudgeflow.content.rendered import RenderedEmail

DATE = datetime(2026, 11, 29, 8, 30, tzinfo=UTC)
HTML = (
    "<html><body><p>Hi Zoë — your cart: <a href='https://shop.example.com/c?x=1&y=2'>open</a></p>"
    + "<p>"
    + "é" * 300
    + "</p></body></html>"
)


def both(
    rendered: RenderedEmail,
    to: str = "ana@example.com",
    from_: str = "Nudgeshop <shop@nudgeshop.example>",
    **kw: object,
) -> tuple[email.message.EmailMessage, email.message.EmailMessage, bytes]:
    slow = compose(rendered, to, from_, message_key="ws:k1", date=DATE, **kw).as_bytes(policy=policy.SMTP)  # type: ignore[arg-type]
    fast = compose_raw(rendered, to, from_, message_key="ws:k1", date=DATE, **kw)  # type: ignore[arg-type]
    parse = lambda raw: email.message_from_bytes(raw, policy=policy.default)  # noqa: E731
    return parse(slow), parse(fast), fast


def same(a: email.message.EmailMessage, b: email.message.EmailMessage) -> None:
    strip = lambda m: [(k, str(v)) for k, v in m.items() if k != "Content-Type"]  # noqa: E731
    assert strip(a) == strip(b)
    assert a.get_content_type() == b.get_content_type() == "multipart/alternative"
    pa, pb = list(a.iter_parts()), list(b.iter_parts())
    assert [p.get_content_type() for p in pa] == [p.get_content_type() for p in pb] == ["text/plain", "text/html"]
    for x, y in zip(pa, pb, strict=True):
        assert x.get_content() == y.get_content()
        assert y["Content-Transfer-Encoding"] == "quoted-printable" and y.get_content_charset() == "utf-8"


@pytest.mark.parametrize(
    "subject,from_,headers",
    [
        ("Your cart", "Nudgeshop <shop@nudgeshop.example>", {}),
        ("Zoë, ton panier t'attend — 10 % de remise 🎁", "Boutique Été <shop@nudgeshop.example>", {}),
        (
            "A long subject " * 12,
            "shop@nudgeshop.example",
            {
                "List-Unsubscribe": "<https://nudge.example.com/u/"
                + "t" * 240
                + ">, <mailto:unsub@nudgeshop.example?subject=u>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "X-Empty": None,
            },
        ),
    ],
)
def test_the_fast_path_composes_what_the_email_package_composes(subject: str, from_: str, headers: dict) -> None:
    rendered = RenderedEmail(subject=subject, html=HTML, text=None, preheader="Still there", headers=headers)
    slow, fast, raw = both(rendered, from_=from_, reply_to="Service Client <help@nudgeshop.example>")
    same(slow, fast)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()


def test_a_non_ascii_address_goes_through_the_email_package() -> None:
    rendered = RenderedEmail(subject="Hi", html="<p>x</p>")
    slow, fast, _ = both(rendered, to="zoë@exämple.com")
    same(slow, fast)


def test_a_line_break_in_a_header_value_cannot_add_a_header() -> None:
    rendered = RenderedEmail(
        subject="Hi\r\nBcc: a@example.com", html="<p>x</p>", headers={"X-Evil": "a\r\nBcc: victim@example.com"}
    )
    slow, fast, _ = both(rendered)
    same(slow, fast)
    assert fast["Bcc"] is None and fast["X-Evil"] == "a Bcc: victim@example.com"
    with pytest.raises(ValueError):
        fold("X-Evil", "a\r\nBcc: b@example.com")


@pytest.mark.parametrize("subject", ["Hi Ana\x00\x1b[2J\x07\x7f, your cart", "Hi Zoë\x00\x1b[2J\x07\x7f, your cart"])
def test_a_control_character_from_a_trait_never_reaches_a_header(subject: str) -> None:
    # A subject rendered from a trait can hold NUL or ESC; RFC 5322 allows no control
    # character in a header (and servers refuse NUL), ASCII or RFC 2047-encoded.
    rendered = RenderedEmail(subject=subject, html="<p>x</p>", headers={"X-Tag": "a\x00b"})
    slow, fast, raw = both(rendered)
    same(slow, fast)
    head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"")
    assert not any((byte < 0x20 and byte != 0x09) or byte == 0x7F for byte in head)
    assert fast["Subject"] == subject.replace("\x00\x1b", "").replace("\x07\x7f", "")
    assert fast["X-Tag"] == "ab"


@given(st.lists(st.text(alphabet="abcdefghij<>@.:/=-,", min_size=1, max_size=120), min_size=1, max_size=30))
def test_folding_keeps_the_value_and_the_line_length(words: list[str]) -> None:
    value = " ".join(words)
    folded = fold("List-Unsubscribe", value)
    lines = folded.split("\r\n")
    assert all(len(line) <= 78 or " " not in line.strip() for line in lines)
    assert folded.replace("\r\n", "") == "List-Unsubscribe: " + value
