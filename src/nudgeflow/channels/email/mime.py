"""The bytes of a multipart/alternative email: composed with the email package
(`compose`), or written directly (`compose_raw` through `compose_bytes`).

`compose` below builds an `EmailMessage`; serializing it went through the email
package's header registry (each header parsed into objects, then folded back) and its
generator, ~3.5 ms for a 28 KB MJML email: as much as rendering, tracking and sending it
together. What we send is always the same shape (a dozen headers we set ourselves, a text
and an HTML part in quoted-printable), so this module writes that shape:

- ASCII header values are folded at spaces to lines of at most 78 characters (RFC 5322
  §2.2.3); a value with other characters is RFC 2047-encoded by `email.header.Header`;
  an address's display name likewise, through `email.utils.formataddr`;
- the parts are UTF-8 in quoted-printable by binascii's C encoder, lines ending in CRLF;
- the boundary is derived from the message's content, so the same message is the same bytes.

Anything outside that shape (an address with non-ASCII characters, which needs SMTPUTF8)
goes through `compose(...).as_bytes()` instead (`compose_raw` does that itself). The tests
parse both back with the email package and compare.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
from collections.abc import Mapping
from email import policy as email_policy
from email.contentmanager import ContentManager
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, formatdate, parseaddr
from typing import Any

from nudgeflow.content.email_text import html_to_text, inject_preheader
from nudgeflow.content.rendered import RenderedEmail
from nudgeflow.errors import DeliveryError

_FOLD_AT = 78


class NeedsEmailPackage(DeliveryError):
    """This message is outside the fast path's shape; compose it with the email package."""


def _ascii(value: str) -> bool:
    return value.isascii()


def fold(name: str, value: str) -> str:
    """`Name: value` folded at spaces into lines of at most 78 characters, CRLF-joined
    (continuation lines start with a space, so unfolding gives the value back). A word
    longer than a line stays whole: lines may reach 998 characters."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} contains a line break")
    first = f"{name}:"
    lines: list[str] = []
    line = first
    for word in value.split(" "):
        if not word:
            continue
        if line != first and len(line) + 1 + len(word) > _FOLD_AT:
            lines.append(line)
            line = " " + word
        else:
            line += " " + word
    lines.append(line)
    return "\r\n".join(lines)


def _header(name: str, value: str) -> str:
    if _ascii(value):
        return fold(name, value)
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}"


@functools.lru_cache(maxsize=1024)  # the From of a workspace recurs in every message
def _address(name: str, value: str) -> str:
    display, address = parseaddr(value)
    if not address or "@" not in address:
        raise ValueError(f"not an email address in {name}: {value!r}")
    if not _ascii(address):
        raise NeedsEmailPackage(name)
    if not display:
        return fold(name, address)
    return _header(name, formataddr((display, address), charset="utf-8"))


def _qp(text: str) -> bytes:
    data = b"\n".join(text.encode("utf-8").splitlines()) + b"\n"
    return binascii.b2a_qp(data, istext=True).replace(b"\n", b"\r\n")


def compose_bytes(
    *,
    from_: str,
    to: str,
    subject: str,
    date: str,
    message_id: str,
    text: str,
    html: str,
    headers: Mapping[str, Any],
) -> bytes:
    """The message as sent: headers in this order, then the two parts. `headers` are the
    others (Reply-To, List-Unsubscribe, ...), already checked by the caller; None values
    are left out. Raises ValueError on a header that cannot be written, NeedsEmailPackage
    when the message needs the email package (SMTPUTF8 addresses)."""
    text_part = _qp(text)
    html_part = _qp(html)
    boundary = (
        "===============nf"
        + hashlib.blake2b(text_part + html_part + message_id.encode(), digest_size=10).hexdigest()
        + "=="
    )
    lines = [
        _address("From", from_),
        _address("To", to),
        _header("Subject", subject),
        fold("Date", date),
        fold("Message-ID", message_id),
    ]
    for name, value in headers.items():
        if value is None:
            continue
        if name.lower() == "reply-to":
            lines.append(_address(name, str(value)))
        else:
            lines.append(_header(name, _one_line(value)))
    lines.append("MIME-Version: 1.0")
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    part_head = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    return b"".join(
        (
            head,
            f"--{boundary}\r\n".encode(),
            part_head.format("plain").encode(),
            text_part,
            f"\r\n--{boundary}\r\n".encode(),
            part_head.format("html").encode(),
            html_part,
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )


# -- composing a rendered email ---------------------------------------------------------------


def message_id_for(message_key: str, domain: str) -> str:
    """`<nf.HASH@domain>`: the same key gives the same Message-ID (email.utils.make_msgid
    is random by design, so it cannot be used for a resend)."""
    digest = hashlib.blake2b(message_key.encode(), digest_size=16).hexdigest()
    return f"<nf.{digest}@{domain or 'nudgeflow.invalid'}>"


# The control characters str.split() keeps (NUL, ESC, BEL, DEL, ...). RFC 5322 allows none
# in a header, servers refuse a message with NUL, and a subject rendered from a trait (an
# imported name, a public `identify`) can hold them: they are dropped, not sent.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")  # \t-\r and \x1c-\x1f are whitespace to split()


def _one_line(value: str) -> str:
    """The value on one line: whitespace runs (line breaks too) as one space, control
    characters left out."""
    return " ".join(_CONTROLS.sub("", str(value)).split())


def compose(
    rendered: RenderedEmail,
    to: str,
    from_: str,
    headers: Mapping[str, str] | None = None,
    message_key: str = "",
    *,
    reply_to: str | None = None,
    date: Any = None,
) -> EmailMessage:
    """The message to send (see the module docstring). `from_` is "Name <addr>" or an address.
    Raises ValueError on an address or header that cannot be put in a message."""
    _, sender = parseaddr(from_)
    if "@" not in sender:
        raise ValueError(f"not an email address: {from_!r}")
    domain = sender.rsplit("@", 1)[1]
    msg = EmailMessage(policy=email_policy.SMTP)
    msg["From"] = from_
    msg["To"] = to
    msg["Subject"] = _one_line(rendered.subject)
    msg["Date"] = format_datetime(date) if date is not None else _now_header()
    msg["Message-ID"] = message_id_for(message_key or f"{to}:{rendered.subject}", domain)
    if reply_to:
        msg["Reply-To"] = reply_to
    for name, value in _extra_headers(rendered, headers, message_key).items():
        del msg[name]
        msg[name] = _one_line(value)
    text = rendered.text if rendered.text is not None else html_to_text(rendered.html)
    body = _html_of(rendered)
    msg.set_content(text, subtype="plain", content_manager=_QP_TEXT)
    msg.add_alternative(body, subtype="html", content_manager=_QP_TEXT)
    return msg


def _html_of(rendered: RenderedEmail) -> str:
    """The HTML part: with the preheader as hidden text at its top, unless it has it already."""
    if rendered.preheader and not rendered.preheader_in_html:
        return inject_preheader(rendered.html, rendered.preheader)
    return rendered.html


_OWN_HEADERS = frozenset({"from", "to", "subject", "date", "message-id", "mime-version", "content-type"})


def _extra_headers(rendered: RenderedEmail, headers: Mapping[str, str] | None, message_key: str) -> dict[str, str]:
    """The renderer's and the caller's headers (List-Unsubscribe…), checked; None values left out."""
    given = dict(rendered.headers or {})
    given.update(headers or {})
    if message_key:
        given.setdefault("X-Nudgeflow-Message-Key", message_key)
    for name in given:
        if name.lower() in _OWN_HEADERS:
            raise ValueError(f"header {name} is set by compose")
    return {name: value for name, value in given.items() if value is not None}


def compose_raw(
    rendered: RenderedEmail,
    to: str,
    from_: str,
    headers: Mapping[str, str] | None = None,
    message_key: str = "",
    *,
    reply_to: str | None = None,
    date: Any = None,
) -> bytes:
    """What `compose(...).as_bytes(policy=SMTP)` gives, written by `compose_bytes` without
    the email package's header objects (a sixth of the time); the email package still
    composes what that does not take (non-ASCII addresses)."""
    domain = _sender_domain(from_)
    extra: dict[str, str] = {"Reply-To": reply_to} if reply_to else {}
    extra.update(_extra_headers(rendered, headers, message_key))
    text = rendered.text if rendered.text is not None else html_to_text(rendered.html)
    body = _html_of(rendered)
    try:
        return compose_bytes(
            from_=from_,
            to=to,
            subject=_one_line(rendered.subject),
            date=format_datetime(date) if date is not None else _now_header(),
            message_id=message_id_for(message_key or f"{to}:{rendered.subject}", domain),
            text=text,
            html=body,
            headers=extra,
        )
    except NeedsEmailPackage:
        msg = compose(rendered, to, from_, headers, message_key, reply_to=reply_to, date=date)
        return msg.as_bytes(policy=email_policy.SMTP)


@functools.lru_cache(maxsize=256)
def _sender_domain(from_: str) -> str:
    _, sender = parseaddr(from_)
    if "@" not in sender:
        raise ValueError(f"not an email address: {from_!r}")
    return sender.rsplit("@", 1)[1]


def _set_qp_text(msg: Any, string: str, subtype: str = "plain") -> None:
    """`set_content(string, subtype=…, charset="utf-8", cte="quoted-printable")` with the C
    encoder of binascii: the standard library's quoprimime encodes character by character
    in Python, which was a third of composing a 30 KB MJML email. Lines end in LF here (the
    generator writes CRLF); lines are at most 76 characters (RFC 2045)."""
    data = b"\n".join(string.encode("utf-8").splitlines()) + b"\n"
    msg["Content-Type"] = f"text/{subtype}"
    msg.set_payload(binascii.b2a_qp(data, istext=True).decode("ascii"))
    msg.set_param("charset", "utf-8", replace=True)
    msg["Content-Transfer-Encoding"] = "quoted-printable"


_QP_TEXT = ContentManager()
_QP_TEXT.add_set_handler(str, _set_qp_text)


def _now_header() -> str:
    return formatdate(usegmt=True)
