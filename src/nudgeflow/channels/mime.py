"""The bytes of a multipart/alternative email, written directly.

`channels.email.compose` builds an `EmailMessage`; serializing it went through the email
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
goes through `compose(...).as_bytes()` instead. The tests parse both back with the email
package and compare.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
from email.header import Header
from email.utils import formataddr, parseaddr
from typing import Any, Mapping

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
    boundary = "===============nf" + hashlib.blake2b(
        text_part + html_part + message_id.encode(), digest_size=10
    ).hexdigest() + "=="
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
            lines.append(_header(name, " ".join(str(value).split())))
    lines.append("MIME-Version: 1.0")
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    part_head = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    return b"".join((
        head,
        f"--{boundary}\r\n".encode(), part_head.format("plain").encode(), text_part,
        f"\r\n--{boundary}\r\n".encode(), part_head.format("html").encode(), html_part,
        f"\r\n--{boundary}--\r\n".encode(),
    ))
