"""DKIM signatures made through OpenSSL (channels/email/signing.py), checked by two
verifiers that share nothing with the signer: dkimpy, and OpenDKIM's opendkim-testmsg
(tests/channels/dkim_verifiers.py). RSA, Ed25519 (RFC 8463), and both on one message."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dkim.canonicalization import Relaxed
from hypothesis import given, settings
from hypothesis import strategies as st

from nudgeflow.channels.base import TransientError
from nudgeflow.channels.email import signing
from nudgeflow.channels.email.build import finish
from nudgeflow.channels.email.channel import EmailChannel
from nudgeflow.channels.email.mime import compose_raw
from nudgeflow.content.rendered import RenderedEmail
from nudgeflow.model.smtp_config import MASK, SmtpConfig, SmtpConfigError, parse_smtp_url
from tests.channels.dkim_verifiers import dkimpy_verify, opendkim_available, opendkim_verify
from tests.channels.email_support import FixedRenderer, outbound
from tests.channels.smtp_support import Sink

DOMAIN = "shop.example.com"
DATE = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def _pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


RSA_PEM = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
ED_PEM = _pem(ed25519.Ed25519PrivateKey.generate())
RECORDS = {
    f"rsa1._domainkey.{DOMAIN}": signing.public_record(RSA_PEM),
    f"ed1._domainkey.{DOMAIN}": signing.public_record(ED_PEM),
}
KEYS = {
    "rsa": [("rsa1", DOMAIN, RSA_PEM)],
    "ed25519": [("ed1", DOMAIN, ED_PEM)],
    "dual": [("rsa1", DOMAIN, RSA_PEM), ("ed1", DOMAIN, ED_PEM)],
}
ALGORITHMS = {"rsa": ["rsa-sha256"], "ed25519": ["ed25519-sha256"], "dual": ["rsa-sha256", "ed25519-sha256"]}

UNSUB = (
    b"List-Unsubscribe: <https://t.example.com/u/abc?ws=1&k=2>,\r\n <mailto:unsub@shop.example.com?subject=u>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
)


def composed() -> bytes:
    """A marketing message as the channel writes it (mime.py), with the RFC 8058 headers."""
    rendered = RenderedEmail(
        subject="Your cart, Ada",
        html="<p>You left <b>2 items</b>   in your cart.</p>\n<p>Voil\u00e0 \u2014 \u20ac 42</p>",
        headers={
            "List-Unsubscribe": "<https://t.example.com/u/abc>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        marketing=True,
    )
    return compose_raw(rendered, "ada@example.org", "Shop <news@shop.example.com>", message_key="ws_1:k1", date=DATE)


def folded() -> bytes:
    """Headers folded with spaces and tabs, runs of whitespace, a name in odd case, and a
    List-Unsubscribe over two lines."""
    return (
        b"From: Shop <news@shop.example.com>\r\n"
        b'To: "Ada   Lovelace"\r\n\t<ada@example.org>\r\n'
        b"SUBJECT:   Your cart,\r\n   still   waiting \t \r\n\tfor you  \r\n"
        b"Date: Mon, 07 Dec 2026 06:00:00 +0000\r\n"
        b"Message-ID: <k1@shop.example.com>\r\n" + UNSUB + b"MIME-Version: 1.0\r\n"
        b'Content-Type: text/plain;\r\n charset="us-ascii"\r\n'
        b"\r\n"
        b"Hello  Ada,\t\r\n\r\nyour cart is   waiting. \r\n\r\n\r\n"
    )


def eight_bit() -> bytes:
    """An 8-bit UTF-8 body (8BITMIME), with whitespace at line ends and empty lines at the end."""
    body = (
        "Bonjour Zo\u00eb,\r\n  votre panier   vous attend : 42 \u20ac \t\r\n"
        "\u65e5\u672c\u8a9e\u3067\u3082 \r\n \r\n\r\n"
    )
    return (
        b"From: Shop <news@shop.example.com>\r\nTo: zoe@example.fr\r\nSubject: Votre panier\r\n"
        b"Date: Mon, 07 Dec 2026 06:00:00 +0000\r\nMessage-ID: <k2@shop.example.com>\r\n"
        + UNSUB
        + b"MIME-Version: 1.0\r\n"
        b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n' + body.encode("utf-8")
    )


def empty_body() -> bytes:
    # With a Date: OpenDKIM, like RFC 5322, refuses a message without one ("Syntax error").
    return (
        b"From: news@shop.example.com\r\nTo: ada@example.org\r\nSubject: (none)\r\n"
        b"Date: Mon, 07 Dec 2026 06:00:00 +0000\r\n\r\n"
    )


MESSAGES = {"composed": composed, "folded": folded, "8bit": eight_bit, "empty body": empty_body}
T = int(DATE.timestamp())


@pytest.fixture(scope="module")
def opendkim() -> None:
    """OpenDKIM can verify here: installed if need be (tests/debian.py); otherwise the test
    fails, saying why. The independent verifier is never skipped silently."""
    problem = opendkim_available()
    if problem:
        pytest.fail(problem, pytrace=False)


needs_opendkim = pytest.mark.usefixtures("opendkim")


def signatures(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    fields = head.replace(b"\r\n\t", b"\t").replace(b"\r\n ", b" ").split(b"\r\n")
    return [f for f in fields if f.lower().startswith(b"dkim-signature:")]


def tags(signature: bytes) -> dict[str, str]:
    value = b"".join(signature.split(b":", 1)[1].split()).decode()
    return dict(t.split("=", 1) for t in value.split(";") if t)


def without_signature(raw: bytes, index: int) -> bytes:
    """`raw` less its index-th DKIM-Signature (a signature covers none of the others)."""
    lines = raw.split(b"\r\n")
    starts = [i for i, line in enumerate(lines) if line.lower().startswith(b"dkim-signature:")]
    start = starts[index]
    end = start + 1
    while lines[end][:1] in (b" ", b"\t"):
        end += 1
    return b"\r\n".join(lines[:start] + lines[end:])


# -- both verifiers, every kind of message, every kind of key -------------------------------------


@pytest.mark.parametrize("kind", sorted(KEYS))
@pytest.mark.parametrize("message", sorted(MESSAGES))
def test_dkimpy_verifies_every_signature(kind: str, message: str) -> None:
    signed = signing.dkim_sign_all(MESSAGES[message](), KEYS[kind], T)
    assert dkimpy_verify(signed, RECORDS) == [True] * len(KEYS[kind])
    found = [tags(s) for s in signatures(signed)]
    assert [t["a"] for t in found] == ALGORITHMS[kind]
    assert all(t["c"] == "relaxed/relaxed" and t["d"] == DOMAIN and t["t"] == str(T) for t in found)


@needs_opendkim
@pytest.mark.parametrize("kind", sorted(KEYS))
@pytest.mark.parametrize("message", sorted(MESSAGES))
def test_opendkim_verifies_every_signature(kind: str, message: str) -> None:
    signed = signing.dkim_sign_all(MESSAGES[message](), KEYS[kind], T)
    ok, said = opendkim_verify(signed, RECORDS)
    assert ok, said
    if kind == "dual":  # each signature on its own: OpenDKIM's verdict is on the message
        for index in (0, 1):
            ok, said = opendkim_verify(without_signature(signed, index), RECORDS)
            assert ok, f"without signature {index}: {said}"


@pytest.mark.parametrize("message", ["composed", "folded"])
def test_the_unsubscribe_headers_are_signed(message: str) -> None:
    signed = signing.dkim_sign_all(MESSAGES[message](), KEYS["dual"], T)
    for found in map(tags, signatures(signed)):
        names = found["h"].split(":")
        for name in ("from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"):
            assert name in names


def test_a_message_without_one_click_signs_its_list_unsubscribe_and_verifies() -> None:
    # An http public URL: List-Unsubscribe alone (content/links.list_unsubscribe_headers).
    raw = folded().replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b"")
    signed = signing.dkim_sign_all(raw, KEYS["dual"], T)
    assert dkimpy_verify(signed, RECORDS) == [True, True]
    for found in map(tags, signatures(signed)):
        names = found["h"].split(":")
        assert "list-unsubscribe" in names and "list-unsubscribe-post" not in names


@needs_opendkim
@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_a_changed_one_click_header_fails_both_verifiers(kind: str) -> None:
    signed = signing.dkim_sign_all(folded(), KEYS[kind], T)
    tampered = signed.replace(b"List-Unsubscribe=One-Click", b"List-Unsubscribe=One-Clack")
    assert dkimpy_verify(tampered, RECORDS) == [False]
    ok, said = opendkim_verify(tampered, RECORDS)
    assert not ok and "Bad signature" in said
    # a changed body too
    tampered = signed.replace(b"waiting", b"wasting")
    assert dkimpy_verify(tampered, RECORDS) == [False]
    assert not opendkim_verify(tampered, RECORDS)[0]


@needs_opendkim
def test_relaxed_survives_a_relay_that_refolds_and_pads() -> None:
    signed = signing.dkim_sign_all(eight_bit(), KEYS["dual"], T)
    relayed = signed.replace(b"Subject: Votre panier", b"Subject:  Votre\r\n\t panier ").replace(
        b"attend : 42", b"attend  :\t42"
    )
    assert relayed != signed
    assert dkimpy_verify(relayed, RECORDS) == [True, True]
    assert opendkim_verify(relayed, RECORDS)[0]


# -- canonicalization, against dkimpy's ---------------------------------------------------------

_LINE = st.lists(st.sampled_from([b"a", b"Z", b" ", b"\t", b"  ", "\u00e9".encode(), b"=20", b":"]), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE.map(b"".join), max_size=8))
def test_relaxed_body_is_dkimpys(lines: list[bytes]) -> None:
    body = b"".join(line + b"\r\n" for line in lines)  # SMTP carries whole lines
    assert signing.relaxed_body(body) == Relaxed.canonicalize_body(body)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE.map(b"".join), min_size=1, max_size=4))
def test_relaxed_header_is_dkimpys(parts: list[bytes]) -> None:
    value = b"\r\n ".join(parts)  # folded at each part
    [(name, expected)] = Relaxed.canonicalize_headers([(b"X-Thing", value)])
    assert signing.relaxed_header(b"X-Thing", value) + b"\r\n" == name + b":" + expected


def test_an_empty_body_and_trailing_lines() -> None:
    assert signing.relaxed_body(b"") == b""
    assert signing.relaxed_body(b"\r\n\r\n") == b""
    assert signing.relaxed_body(b"a \t\r\n\r\n \r\n") == b"a\r\n"  # a line of spaces is empty
    assert signing.relaxed_body(b"a \t\r\n\r\n\r\n") == b"a\r\n"
    assert signing.relaxed_body(b"a  b\t c") == b"a b c\r\n"


# -- keys ----------------------------------------------------------------------------------------


def test_bad_keys_say_what_is_wrong_and_never_show_the_key() -> None:
    small = _pem(rsa.generate_private_key(public_exponent=65537, key_size=768 + 256))
    assert signing.load_key(small)  # 1024 bits: the floor
    with pytest.raises(signing.DkimKeyError, match="not an unencrypted PEM private key") as info:
        signing.dkim_sign(
            folded(), "s", DOMAIN, b"-----BEGIN PRIVATE KEY-----\nnot-base64\n-----END PRIVATE KEY-----\n"
        )
    assert "not-base64" not in str(info.value)
    p256 = _pem(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(signing.DkimKeyError, match="must be RSA or Ed25519"):
        signing.dkim_sign(folded(), "s", DOMAIN, p256)
    for selector in ("s1; x=y", "s1\n", ""):
        with pytest.raises(signing.DkimKeyError, match="cannot be a tag value"):
            signing.dkim_sign(folded(), selector, DOMAIN, RSA_PEM)


def test_a_key_that_cannot_sign_makes_the_message_wait() -> None:
    rendered = RenderedEmail(subject="Hi", html="<p>Hi</p>")
    with pytest.raises(TransientError, match="DKIM signing failed: the DKIM key is not an unencrypted PEM"):
        finish(rendered, "ada@example.org", "news@shop.example.com", "ws:k", None, DATE, [("s", DOMAIN, b"junk")])


def test_the_public_records_are_what_dns_should_hold() -> None:
    assert RECORDS[f"ed1._domainkey.{DOMAIN}"].startswith("v=DKIM1; k=ed25519; p=")
    assert len(RECORDS[f"ed1._domainkey.{DOMAIN}"].split("p=")[1]) == 44  # 32 bytes, base64
    assert RECORDS[f"rsa1._domainkey.{DOMAIN}"].startswith("v=DKIM1; k=rsa; p=MII")


# -- the settings and the channel ----------------------------------------------------------------


def _keys(tmp_path: Path) -> tuple[str, str]:
    rsa_path, ed_path = tmp_path / "rsa.pem", tmp_path / "ed.pem"
    rsa_path.write_bytes(RSA_PEM)
    ed_path.write_bytes(ED_PEM)
    return str(rsa_path), str(ed_path)


def test_dual_signing_settings(tmp_path: Path) -> None:
    rsa_path, ed_path = _keys(tmp_path)
    config = parse_smtp_url(
        f"smtp://127.0.0.1:25?tls=none&dkim_selector=rsa1&dkim_domain={DOMAIN}&dkim_key={rsa_path}"
        f"&dkim_ed25519_selector=ed1&dkim_ed25519_key={ed_path}"
    )
    assert config.dkim_keys() == (("rsa1", DOMAIN, RSA_PEM), ("ed1", DOMAIN, ED_PEM))
    inline = SmtpConfig(
        "127.0.0.1",
        25,
        dkim_selector="rsa1",
        dkim_domain=DOMAIN,
        dkim_private_key=RSA_PEM.decode(),
        dkim_ed25519_selector="ed1",
        dkim_ed25519_private_key=ED_PEM.decode(),
    )
    assert inline.masked()["dkim_ed25519_private_key"] == MASK
    assert "PRIVATE" not in repr(inline)
    assert SmtpConfig.from_dict(inline.to_dict()) == inline
    with pytest.raises(SmtpConfigError, match="its own selector and its private key together"):
        SmtpConfig("h", 25, dkim_selector="rsa1", dkim_domain=DOMAIN, dkim_key_path=rsa_path, dkim_ed25519_selector="e")
    with pytest.raises(SmtpConfigError, match="beside the first"):
        SmtpConfig("h", 25, dkim_ed25519_selector="ed1", dkim_ed25519_key_path=ed_path)
    with pytest.raises(SmtpConfigError, match="a selector of its own"):
        inline.with_(dkim_ed25519_selector="rsa1")


def test_the_channel_signs_twice_and_both_verify(sink: Sink, tmp_path: Path) -> None:
    rsa_path, ed_path = _keys(tmp_path)
    url = (
        f"smtp://127.0.0.1:{sink.port}?tls=none&from=news@shop.example.com"
        f"&dkim_selector=rsa1&dkim_domain={DOMAIN}&dkim_key={rsa_path}&dkim_ed25519_selector=ed1&dkim_ed25519_key={ed_path}"
    )
    asyncio.run(EmailChannel(parse_smtp_url(url), renderer=FixedRenderer()).send(outbound()))
    raw = sink.received[0].raw
    assert [tags(s)["a"] for s in signatures(raw)] == ["rsa-sha256", "ed25519-sha256"]
    assert dkimpy_verify(raw, RECORDS) == [True, True]
    if not opendkim_available():
        assert opendkim_verify(raw, RECORDS)[0]


def test_a_wrong_key_in_the_ed25519_place_is_a_clear_error(tmp_path: Path) -> None:
    rsa_path, _ = _keys(tmp_path)
    url = (
        f"smtp://127.0.0.1:25?tls=none&from=news@shop.example.com&dkim_selector=rsa1&dkim_domain={DOMAIN}"
        f"&dkim_key={rsa_path}&dkim_ed25519_selector=ed1&dkim_ed25519_key={rsa_path}"
    )
    channel = EmailChannel(parse_smtp_url(url), renderer=FixedRenderer())
    with pytest.raises(TransientError, match="needs an RSA dkim_key and an Ed25519 dkim_ed25519_key"):
        asyncio.run(channel.build(outbound(), parse_smtp_url(url)))
