"""Signed links in messages: the open pixel, tracked clicks, unsubscribe and the preference center.

Pure: no database, no clock. Every link carries a token

    <payload>.<mac>

where `payload` is the urlsafe base64 (no padding) of a small JSON object binding the
workspace (`w`), the message key (`m`, the outbox idempotency key), the profile (`p`), the
kind of link (`k`: o open, c click, u unsubscribe, p preferences, n push report, s
subscription confirmation) and, for a click, the destination URL (`u`); an unsubscribe
link may carry a topic (`t`). A confirmation link (double opt-in) binds the channel (`ch`),
the topic (`t`), a digest of the address it was sent to (`a`) and when it expires (`e`,
ms): it records consent, so it is refused after that time, and for a person whose address
has changed since. `mac` is HMAC-SHA256
of the payload under the workspace's tracking secret, urlsafe base64, compared in constant
time. Changing any byte of either part (another destination, another profile, another
kind) makes the token invalid, so a tracked link can only ever redirect where its message
said, and an unsubscribe link only unsubscribes the person it was sent to.

The workspace is read from the payload before the MAC is checked (to know which secret to
use): `peek_workspace` says which, `verify` then decides.

Which destinations get a click link (`LinkPolicy`). A signed link redirects wherever it
was signed for, so only URLs the workspace trusts are signed: the template's own literal
links, the catalog's product URLs, and hosts on the workspace's allowlist (settings
section "links": {"allowed_domains": ["shop.example", "*.shop.example"]}). Anything else,
such as a `url` property an event brought in with the public write key, is left in the
message untracked: our server never redirects to it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from nudgeflow.errors import ContentError

OPEN, CLICK, UNSUBSCRIBE, PREFERENCES, PUSH, CONFIRM = "o", "c", "u", "p", "n", "s"
KINDS = (OPEN, CLICK, UNSUBSCRIBE, PREFERENCES, PUSH, CONFIRM)
CONFIRM_TTL_MS = 7 * 86_400_000  # a confirmation link works for a week after its message was queued
MAX_TOKEN_CHARS = 8192  # a click token holds its URL; anything longer is not one of ours
ONE_CLICK = "List-Unsubscribe=One-Click"
LINKS_SECTION = "links"  # the workspace settings section: {"allowed_domains": [...]}


class InvalidToken(ContentError, ValueError):
    """Malformed, tampered with, of another kind, or signed with another secret."""


class ExpiredToken(InvalidToken):
    """Signed by us, but past its time (a confirmation link): raised only after the MAC is right."""


@dataclass(frozen=True, slots=True)
class LinkToken:
    kind: str
    workspace_id: str
    message_key: str
    profile_id: str
    destination: str | None = None  # clicks only
    topic: str | None = None  # unsubscribe links for one topic; the topic a confirmation confirms
    channel: str | None = None  # confirmations: the channel consented to
    address: str | None = None  # confirmations: address_digest() of the address it was sent to
    expires_ms: int | None = None  # confirmations: refused from this instant on


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _unb64(text: str) -> bytes:
    """Strict base64url without padding: the one spelling `_b64` writes. The standard
    decoders also take `=` padding, `+` and `/` for `-` and `_`, and unused low bits in the
    last character; each would give a token several spellings, and a changed byte that
    still verifies."""
    if len(text) % 4 == 1 or not _B64URL.fullmatch(text):
        raise InvalidToken("not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("not base64url") from exc
    if _b64(data) != text:  # stray low bits in the last character
        raise InvalidToken("not base64url")
    return data


def _mac(secret: str, payload: str) -> bytes:
    # hmac.digest is OpenSSL's one-shot HMAC: a few times cheaper than an hmac.new object,
    # and an email signs a link per tracked URL.
    return hmac.digest(secret.encode("utf-8"), b"nudgeflow-link-v1." + payload.encode("ascii"), "sha256")


def sign(secret: str, token: LinkToken) -> str:
    if token.kind not in KINDS:
        raise ValueError(f"unknown link kind {token.kind!r}")
    if token.kind == CLICK and not token.destination:
        raise ValueError("a click link needs its destination")
    body: dict[str, Any] = {"k": token.kind, "w": token.workspace_id, "m": token.message_key, "p": token.profile_id}
    if token.destination is not None:
        body["u"] = token.destination
    if token.topic is not None:
        body["t"] = token.topic
    if token.kind == CONFIRM:
        if not (token.channel and token.topic and token.address and token.expires_ms is not None):
            raise ValueError("a confirmation link needs its channel, topic, address and expiry")
        body.update({"ch": token.channel, "a": token.address, "e": token.expires_ms})
    payload = _b64(orjson.dumps(body))
    return f"{payload}.{_b64(_mac(secret, payload))}"


def _decode(token: str) -> tuple[str, str, dict[str, Any]]:
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise InvalidToken("not a link token")
    payload, mac = token.split(".")
    try:
        body = orjson.loads(_unb64(payload))
    except orjson.JSONDecodeError as exc:
        raise InvalidToken("not a link token") from exc
    if not isinstance(body, dict) or not all(isinstance(body.get(f), str) for f in ("k", "w", "m", "p")):
        raise InvalidToken("not a link token")
    return payload, mac, body


def peek_workspace(token: str) -> str:
    """The workspace a token claims, unverified: only to pick the secret that `verify` needs."""
    return str(_decode(token)[2]["w"])


def verify(secret: str, token: str, kind: str | None = None, now_ms: int | None = None) -> LinkToken:
    """The token's content if its MAC is right (and it is of `kind`, when given); else
    InvalidToken. A confirmation link needs `now_ms`: past its expiry it is ExpiredToken."""
    payload, mac, body = _decode(token)
    if not hmac.compare_digest(_unb64(mac), _mac(secret, payload)):
        raise InvalidToken("bad signature")
    if body["k"] not in KINDS or (kind is not None and body["k"] != kind):
        raise InvalidToken("another kind of link")
    destination, topic = body.get("u"), body.get("t")
    if body["k"] == CLICK and not (isinstance(destination, str) and is_trackable(destination)):
        raise InvalidToken("no destination")
    channel, address, expires = body.get("ch"), body.get("a"), body.get("e")
    if body["k"] == CONFIRM:
        if not (
            isinstance(channel, str) and isinstance(topic, str) and isinstance(address, str) and type(expires) is int
        ):
            raise InvalidToken("not a confirmation link")
        if now_ms is None:
            raise ValueError("verifying a confirmation link needs the time")
        if now_ms >= expires:
            raise ExpiredToken("expired")
    return LinkToken(
        kind=body["k"],
        workspace_id=body["w"],
        message_key=body["m"],
        profile_id=body["p"],
        destination=destination if isinstance(destination, str) else None,
        topic=topic if isinstance(topic, str) else None,
        channel=channel if isinstance(channel, str) else None,
        address=address if isinstance(address, str) else None,
        expires_ms=expires if type(expires) is int else None,
    )


# -- URLs ---------------------------------------------------------------------------------------


def _base(base: str) -> str:
    return base.rstrip("/")


def click_url(base: str, secret: str, ws: str, message_key: str, profile_id: str, destination: str) -> str:
    if not is_trackable(destination):
        raise ValueError("only http(s) destinations are tracked")
    token = sign(secret, LinkToken(CLICK, ws, message_key, profile_id, destination=destination))
    return f"{_base(base)}/t/c/{token}"


def open_pixel_url(base: str, secret: str, ws: str, message_key: str, profile_id: str) -> str:
    return f"{_base(base)}/t/o/{sign(secret, LinkToken(OPEN, ws, message_key, profile_id))}.gif"


def unsubscribe_url(
    base: str, secret: str, ws: str, message_key: str, profile_id: str, topic: str | None = None
) -> str:
    """The one-click unsubscribe URL (List-Unsubscribe, and the footer link: a GET shows a
    confirmation page). With `topic`, it unsubscribes from that topic only."""
    token = sign(secret, LinkToken(UNSUBSCRIBE, ws, message_key, profile_id, topic=topic))
    return f"{_base(base)}/u/{token}"


def preferences_url(base: str, secret: str, ws: str, message_key: str, profile_id: str) -> str:
    return f"{_base(base)}/p/{sign(secret, LinkToken(PREFERENCES, ws, message_key, profile_id))}"


def address_digest(channel: str, address: str) -> str:
    """What a confirmation link holds of the address it was sent to: enough to tell that
    the person's address is still that one, without putting the address in a URL."""
    return _b64(hashlib.sha256(f"{channel}\0{address.strip().lower()}".encode()).digest()[:16])


def confirm_url(
    base: str,
    secret: str,
    ws: str,
    message_key: str,
    profile_id: str,
    channel: str,
    topic: str,
    address: str,
    expires_ms: int,
) -> str:
    """The double opt-in link: a GET shows a page whose button POSTs; the POST records the
    person's consent to `topic` ("*": all marketing) on `channel`, source double_opt_in."""
    token = sign(
        secret,
        LinkToken(
            CONFIRM,
            ws,
            message_key,
            profile_id,
            topic=topic,
            channel=channel,
            address=address_digest(channel, address),
            expires_ms=expires_ms,
        ),
    )
    return f"{_base(base)}/s/{token}"


def push_report_url(base: str, secret: str, ws: str, message_key: str, profile_id: str) -> str:
    """Where a notification reports itself shown or clicked (the service worker POSTs
    {"event": "delivered" | "clicked", "action": ...}): signed like every link we hand out,
    so no write key has to live in the service worker."""
    return f"{_base(base)}/t/n/{sign(secret, LinkToken(PUSH, ws, message_key, profile_id))}"


def list_unsubscribe_headers(
    base: str, secret: str, ws: str, message_key: str, profile_id: str, topic: str | None = None
) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe headers for a marketing message. Sign both with DKIM.
    List-Unsubscribe-Post only when the URL is https: RFC 8058 §3 says the one-click URI
    MUST be HTTPS, and a mailbox provider would not POST to a plain http one. The
    List-Unsubscribe link itself is kept (RFC 2369 allows http), and still unsubscribes."""
    url = unsubscribe_url(base, secret, ws, message_key, profile_id, topic)
    headers = {"List-Unsubscribe": f"<{url}>"}
    if one_click_allowed(base):
        headers["List-Unsubscribe-Post"] = ONE_CLICK
    return headers


def one_click_allowed(base: str) -> bool:
    """Whether the public base URL is https, as RFC 8058's one-click unsubscribe requires."""
    return _base(base).lower().startswith("https://")


@functools.lru_cache(maxsize=4096)  # the same catalog URLs recur in every email
def is_trackable(url: str) -> bool:
    """An http(s) URL with a host, and no backslash or control character: also checked when
    a click token is verified, so no token, however old, redirects to such a URL."""
    if _UNSAFE_URL.search(url.strip()):
        return False
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


# -- which destinations are trusted -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """The destinations one message may wrap in click links.

    `urls`: exact URLs (catalog product URLs, the template's literal links); `prefixes`: a
    template literal that Liquid continues (`https://shop.example/p/{{ item.id }}`), kept
    only when its host is complete; `domains`: the allowlist, "shop.example" for that host,
    "*.shop.example" for its subdomains."""

    urls: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()

    def trusts(self, url: str) -> bool:
        if url in self.urls:
            return True
        if self.prefixes and url.startswith(self.prefixes) and _host(url) is not None:
            return True
        if not self.domains:
            return False
        host = _host(url)
        if host is None:
            return False
        for domain in self.domains:
            if domain.startswith("*."):
                if host.endswith(domain[1:]):
                    return True
            elif host == domain:
                return True
        return False

    def with_urls(self, urls: frozenset[str], prefixes: tuple[str, ...] = ()) -> LinkPolicy:
        return LinkPolicy(self.urls | urls, self.prefixes + prefixes, self.domains)


_UNSAFE_URL = re.compile(r"[\x00-\x20\x7f\\]")


def _host(url: str) -> str | None:
    """The lower-case host of an http(s) URL, or None. A backslash, a space or a control
    character anywhere refuses the URL: browsers read `https://evil\\@shop.example/` as a
    link to evil, where urlsplit finds shop.example."""
    if _UNSAFE_URL.search(url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return host.rstrip(".")


def allowed_domains_of(settings: Any) -> tuple[str, ...]:
    """The allowlist of a workspace's settings document (section "links"); entries that
    are not host names are ignored."""
    section = settings.get(LINKS_SECTION) if isinstance(settings, dict) else None
    values = section.get("allowed_domains") if isinstance(section, dict) else None
    out: list[str] = []
    for value in values if isinstance(values, list) else ():
        if not isinstance(value, str):
            continue
        domain = value.strip().lower().rstrip(".")
        bare = domain[2:] if domain.startswith("*.") else domain
        if bare and _DOMAIN.fullmatch(bare):
            out.append(domain)
    return tuple(out)


_DOMAIN = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
_LITERAL_URL = re.compile(r"https?://[^\s\"'<>{}`\\]+", re.IGNORECASE)


def template_links(texts: Any) -> tuple[frozenset[str], tuple[str, ...]]:
    """The literal http(s) links written in a template's parts (their Liquid string
    literals too, as in `default: "https://shop.example"`): (exact URLs, prefixes). A
    literal that Liquid markup continues is a prefix, kept only once its host is complete
    (a `/`, `?` or `#` after it): `https://{{ host }}` trusts nothing."""
    urls: set[str] = set()
    prefixes: set[str] = set()
    for text in texts:
        if not text:
            continue
        for match in _LITERAL_URL.finditer(text):
            url = match.group(0)
            if text.startswith("{", match.end()):
                rest = url.split("://", 1)[1]
                if any(c in rest for c in "/?#"):
                    prefixes.add(url)
                    prefixes.add(html.unescape(url))
                continue
            for form in (url, html.unescape(url)):
                urls.add(form)
                urls.add(form.rstrip(".,;:!?)"))
    return frozenset(urls), tuple(sorted(prefixes))


def is_ours(url: str, base: str) -> bool:
    """A link to our own unsubscribe, preference, confirmation or tracking pages: never wrapped."""
    root = _base(base)
    return any(url.startswith(f"{root}{prefix}") for prefix in ("/u/", "/p/", "/s/", "/t/"))


# -- rewriting HTML ---------------------------------------------------------------------------


NO_TRACK_ATTRIBUTE = "data-nf-notrack"


# An <a ...> start tag: attribute values may hold ">" inside quotes. Only these tags are
# looked into; the rest of the document is copied as is. Parsing a whole 30 KB email with
# html.parser cost ~5 ms per recipient, most of an email's CPU; finding the few <a> tags
# first is what keeps tracking cheap.
_A_TAG = re.compile(
    r"""<a(?=[\s/>])(?:[^>"']|"[^"]*"|'[^']*')*>""",
    re.IGNORECASE,
)


def _clicks(
    base: str,
    secret: str,
    ws: str,
    message_key: str,
    profile_id: str,
    memo: dict[str, str | None] | None,
    policy: LinkPolicy | None,
) -> Callable[[str], str | None]:
    """URL -> its signed click URL (None: left as it is), each URL signed once per message:
    a product's link appears on its image, its name and in the text part. With a `policy`,
    only the URLs it trusts are signed."""
    memo = {} if memo is None else memo

    def wrap(url: str) -> str | None:
        if url in memo:
            return memo[url]
        new = (
            None
            if (not is_trackable(url) or is_ours(url, base) or (policy is not None and not policy.trusts(url)))
            else click_url(base, secret, ws, message_key, profile_id, url)
        )
        memo[url] = new
        return new

    return wrap


def rewrite_links(
    html_text: str,
    base: str,
    secret: str,
    ws: str,
    message_key: str,
    profile_id: str,
    memo: dict[str, str | None] | None = None,
    policy: LinkPolicy | None = None,
) -> str:
    """Every http(s) `<a href>` of the HTML through a signed click link, anchor text and
    other attributes kept. Left alone: mailto:, tel:, anchors and other schemes, our own
    unsubscribe / preference / tracking links, and any `<a data-nf-notrack>`; taken out: a
    javascript:, vbscript: or data: href (`is_script_url`), the link's text kept. `memo`, shared
    with `rewrite_text_links` for the same message, signs each URL once. With a `policy`
    (every message sent does), a URL it does not trust is left as it is, untracked."""
    signed = _clicks(base, secret, ws, message_key, profile_id, memo, policy)

    def wrap(href: str) -> str | None:
        return signed(href.strip())

    def one(match: re.Match[str]) -> str:
        tag = match.group(0)
        href: re.Match[str] | None = None
        track = True
        for attr in _ATTRIBUTE.finditer(tag, 2, len(tag) - 1):
            name = attr.group(1).lower()
            if name == NO_TRACK_ATTRIBUTE:
                track = False
            elif name == "href" and href is None:
                href = attr
        if href is None:
            return tag
        raw = next((v for v in href.group(2, 3, 4) if v is not None), None)
        if raw is None:
            return tag
        url = html.unescape(raw)
        new = wrap(url) if track else None
        if new is None:
            if is_script_url(url):  # only untracked links pay for this check
                # The link goes, its text stays: no email needs a script or an inline document.
                return f"{tag[: href.start()].rstrip()}{tag[href.end() :]}"
            return tag
        # Only the href changes; the tag's other attributes stay byte for byte.
        return f'{tag[: href.start()]}href="{html.escape(new, quote=True)}"{tag[href.end() :]}'

    return _A_TAG.sub(one, html_text)


# Schemes that run script or show a document made up by whoever wrote the URL. A value a
# template renders into an href (an event's `url`, a trait) may be one; browsers read the
# scheme case-insensitively after dropping leading spaces and control characters and every
# tab and line break (WHATWG URL parsing), and so does this.
_SCRIPT_SCHEME = re.compile(r"(?:javascript|vbscript|data):", re.IGNORECASE)
_URL_LEADING = "".join(map(chr, range(0x21)))


def is_script_url(url: str) -> bool:
    """A javascript:, vbscript: or data: URL, spelled any way a browser still reads as one."""
    return bool(_SCRIPT_SCHEME.match(url.lstrip(_URL_LEADING).replace("\t", "").replace("\n", "").replace("\r", "")))


# One attribute of a start tag: its name, and its value double-quoted, single-quoted or bare
# (as html.parser reads them). Scanning the few <a> tags with this instead of an HTMLParser
# per tag took link tracking from ~1.1 ms to ~0.3 ms a message.
_ATTRIBUTE = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")


_TEXT_URL = re.compile(r"https?://[^\s()<>\"']+")


def rewrite_text_links(
    text: str,
    base: str,
    secret: str,
    ws: str,
    message_key: str,
    profile_id: str,
    memo: dict[str, str | None] | None = None,
    policy: LinkPolicy | None = None,
) -> str:
    """The plain-text part's http(s) URLs through signed click links, as the HTML's: a click
    from a text-only mail client counts too. Our own links are left as they are."""
    signed = _clicks(base, secret, ws, message_key, profile_id, memo, policy)

    def one(match: re.Match[str]) -> str:
        url = match.group(0).rstrip(".,;:!?")
        tail = match.group(0)[len(url) :]
        new = signed(url)
        return match.group(0) if new is None else new + tail

    return _TEXT_URL.sub(one, text)


def add_open_pixel(html_text: str, pixel_url: str) -> str:
    """The 1x1 open pixel, just before </body> (or at the end)."""
    img = (
        f'<img src="{html.escape(pixel_url, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px" />'
    )
    lower = html_text.lower()
    at = lower.rfind("</body>")
    return html_text + img if at < 0 else html_text[:at] + img + html_text[at:]


def track_html(html_text: str, base: str, secret: str, ws: str, message_key: str, profile_id: str) -> str:
    """Both: links rewritten, then the open pixel added."""
    out = rewrite_links(html_text, base, secret, ws, message_key, profile_id)
    return add_open_pixel(out, open_pixel_url(base, secret, ws, message_key, profile_id))
