"""The `email` channel: messages composed, DKIM-signed and delivered over SMTP.

- Content comes from the default renderer (`prepare_email(message) -> EmailJob`: the
  templates and personalization of content/, built here or in worker processes, see
  content/email_jobs.py), or from any `Renderer` (`render_email(message) ->
  RenderedEmail`). `compose` turns the rendered email into a
  multipart/alternative message: a text part (given, or derived from the HTML by
  `html_to_text`), the HTML part with the preheader as hidden text at its top, a
  Message-ID that is a function of the message's idempotency key (a resend after a crash
  carries the same one, so receivers and our own bounce handling can tell), a Date, and
  the headers the renderer asks for (List-Unsubscribe, List-Unsubscribe-Post, ...).
- DKIM (dkimpy) when the configuration has a key, over the headers that matter,
  List-Unsubscribe-Post included.
- Delivery through a pool of SMTP connections per configuration (reused across messages,
  replaced when they fail), at most `concurrency` sends at once and at most `rate` a second
  (a token bucket on the injected clock).
- Outcomes: a 4xx answer, a timeout or a lost connection is a TransientError (the
  dispatcher retries with backoff); a 5xx answer to RCPT or DATA is a `BounceError` (a
  PermanentError carrying the code and text: the dispatcher records the message failed
  and appends an "Email Bounced" event).
"""

from __future__ import annotations

import asyncio
import binascii
import dataclasses
import functools
import hashlib
import html
import importlib
import logging
import re
import ssl
from dataclasses import dataclass, field
from email import policy as email_policy
from email.contentmanager import ContentManager
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from html.parser import HTMLParser
from typing import Any, Awaitable, Callable, Mapping, Protocol

import aiosmtplib

from nudgeflow.channels.base import ChannelRegistry, PermanentError, RemoteChannel, TransientError
from nudgeflow.channels.smtp_config import NONE, STARTTLS, TLS, SmtpConfig, SmtpConfigError, parse_smtp_url
from nudgeflow.core.clock import Clock, SystemClock
from nudgeflow.model.outbound import OutboundMessage

log = logging.getLogger("nudgeflow.email")

# The headers a DKIM signature covers, when present. dkimpy's default list
# (dkim.DKIM.SHOULD) does not include List-Unsubscribe-Post, and RFC 8058 §4 requires both
# List-Unsubscribe and List-Unsubscribe-Post to be covered by a valid DKIM signature for a
# one-click unsubscribe to be honoured: we name them ourselves.
DKIM_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Id",
    "Feedback-ID",
)

# -- content ------------------------------------------------------------------------------


@dataclass
class RenderedEmail:
    subject: str
    html: str
    text: str | None = None  # None: derived from the HTML
    preheader: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # List-Unsubscribe, List-Unsubscribe-Post, ...
    to: str | None = None  # None: the profile's email trait
    marketing: bool = False


class Renderer(Protocol):
    async def render_email(self, message: OutboundMessage) -> RenderedEmail:
        """The content of one message; raise PermanentError when it cannot be rendered."""


class DefaultRenderer:
    """The templates of content/ (looked up at call time, so this module loads without the
    content stack): `nudgeflow.content.email_render.prepare_email(engine, message)` reads
    what a message needs and returns an EmailJob, which the channel builds (render, MIME,
    DKIM) here or in a worker process. Without that module, every message fails with "no
    template renderer"."""

    def __init__(self, engine: Any = None) -> None:
        self.engine = engine

    async def prepare_email(self, message: OutboundMessage) -> Any:
        try:
            templates = importlib.import_module("nudgeflow.content.email_render")
        except ImportError:
            raise PermanentError("no template renderer") from None
        return templates.prepare_email(self.engine, message)


_BLOCK = {
    "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt", "fieldset", "figcaption",
    "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "main", "nav", "ol", "p",
    "pre", "section", "table", "tbody", "thead", "tfoot", "tr", "ul", "li", "body", "html",
}
_SKIP = {"script", "style", "head", "title", "template", "noscript", "svg"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_HIDDEN = re.compile(r"display\s*:\s*none|mso-hide\s*:\s*all", re.I)


class _TextMaker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip: list[str] = []  # open tags whose content is not text
        self.links: list[tuple[str | None, int]] = []  # open <a>: href, where its text starts

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if self.skip:
            if tag not in _VOID:
                self.skip.append(tag)
            return
        if tag in _SKIP or _HIDDEN.search(a.get("style") or "") or "hidden" in a:
            if tag not in _VOID:
                self.skip.append(tag)
            return
        if tag == "br":
            self.out.append("\n")
        elif tag == "hr":
            self.out.append("\n\n----\n\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag in _BLOCK:
            self.out.append("\n\n" if tag in ("p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote") else "\n")
        elif tag == "img":
            alt = (a.get("alt") or "").strip()
            if alt:
                self.out.append(f" {alt} ")
        if tag == "a":
            self.links.append((a.get("href"), len(self.out)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag in self.skip:  # tolerate unclosed inner tags
                while self.skip and self.skip.pop() != tag:
                    pass
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            label = " ".join("".join(self.out[start:]).split())
            href = (href or "").strip()
            if href and not href.startswith(("#", "javascript:")):
                shown = href[7:] if href.startswith("mailto:") else href
                if not label:
                    self.out.append(shown)
                elif label != shown and label != href:
                    self.out.append(f" ({shown})")
        elif tag in _BLOCK and tag != "li":  # the next item starts its own line
            self.out.append("\n\n" if tag in ("p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote") else "\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


def html_to_text(source: str) -> str:
    """A readable text version of an HTML email: no tags, no hidden text (scripts, styles,
    display:none), links as "text (url)", list items as "- ", whitespace collapsed within
    lines, at most one blank line in a row."""
    maker = _TextMaker()
    maker.feed(source)
    maker.close()
    return tidy_text("".join(maker.out))


_BLANK_LINES = re.compile(r"\n{3,}")


def tidy_text(text: str) -> str:
    """Whitespace collapsed within lines, at most one blank line in a row, one final newline."""
    lines = [" ".join(line.split()) for line in text.replace("\xa0", " ").replace("\u200c", "").split("\n")]
    text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    return text + "\n" if text else ""


_PREHEADER_STYLE = (
    "display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;overflow:hidden;"
    "mso-hide:all;color:transparent"
)


def inject_preheader(source: str, preheader: str) -> str:
    """The preheader as hidden text at the top of the body (what inboxes show after the
    subject), padded so that the body's first words do not follow it into the preview."""
    block = (
        f'<div style="{_PREHEADER_STYLE}">{html.escape(preheader)}'
        + "&#8199;&#65279;&#847; " * 40
        + "</div>"
    )
    match = re.search(r"<body\b[^>]*>", source, re.I)
    if match:
        return source[: match.end()] + block + source[match.end() :]
    return block + source


def message_id_for(message_key: str, domain: str) -> str:
    """`<nf.HASH@domain>`: the same key gives the same Message-ID (email.utils.make_msgid
    is random by design, so it cannot be used for a resend)."""
    digest = hashlib.blake2b(message_key.encode(), digest_size=16).hexdigest()
    return f"<nf.{digest}@{domain or 'nudgeflow.invalid'}>"


def _one_line(value: str) -> str:
    return " ".join(str(value).split())


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
    body = inject_preheader(rendered.html, rendered.preheader) if rendered.preheader else rendered.html
    msg.set_content(text, subtype="plain", content_manager=_QP_TEXT)
    msg.add_alternative(body, subtype="html", content_manager=_QP_TEXT)
    return msg


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
    """What `compose(...).as_bytes(policy=SMTP)` gives, written by channels/mime.py without
    the email package's header objects (a sixth of the time); the email package still
    composes what that module does not take (non-ASCII addresses)."""
    from nudgeflow.channels import mime

    domain = _sender_domain(from_)
    extra: dict[str, str] = {"Reply-To": reply_to} if reply_to else {}
    extra.update(_extra_headers(rendered, headers, message_key))
    text = rendered.text if rendered.text is not None else html_to_text(rendered.html)
    body = inject_preheader(rendered.html, rendered.preheader) if rendered.preheader else rendered.html
    try:
        return mime.compose_bytes(
            from_=from_, to=to, subject=_one_line(rendered.subject),
            date=format_datetime(date) if date is not None else _now_header(),
            message_id=message_id_for(message_key or f"{to}:{rendered.subject}", domain),
            text=text, html=body, headers=extra,
        )
    except mime.NeedsEmailPackage:
        msg = compose(rendered, to, from_, headers, message_key, reply_to=reply_to, date=date)
        return msg.as_bytes(policy=email_policy.SMTP)


@functools.lru_cache(maxsize=256)
def _sender_domain(from_: str) -> str:
    _, sender = parseaddr(from_)
    if "@" not in sender:
        raise ValueError(f"not an email address: {from_!r}")
    return sender.rsplit("@", 1)[1]


def finish(rendered: RenderedEmail, to: str, sender: str, message_key: str, reply_to: str | None,
           date: Any, dkim: tuple[str, str, bytes] | None) -> bytes:
    """A rendered email's bytes as sent: composed, then DKIM-signed when there is a key.
    A message that cannot be composed fails for good; a signing failure waits (an operator
    can fix the key)."""
    try:
        raw = compose_raw(rendered, to, sender, message_key=message_key, reply_to=reply_to, date=date)
    except (ValueError, TypeError) as exc:
        raise PermanentError(f"cannot compose the message: {exc}") from None
    if dkim is not None:
        try:
            raw = dkim_sign(raw, *dkim)
        except Exception as exc:  # a malformed key: the operator must fix it
            raise TransientError(f"DKIM signing failed: {type(exc).__name__}") from None
    return raw


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
    from email.utils import formatdate

    return formatdate(usegmt=True)


def dkim_sign(raw: bytes, selector: str, domain: str, private_key: bytes) -> bytes:
    """`raw` with a DKIM-Signature header in front (relaxed/relaxed, rsa-sha256)."""
    import dkim

    present = {line.split(b":", 1)[0].strip().lower() for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n") if b":" in line and not line[:1].isspace()}
    include = [h.lower().encode() for h in DKIM_HEADERS if h.lower().encode() in present]
    signature = dkim.sign(
        raw,
        selector.encode(),
        domain.encode(),
        private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=include,
        linesep=b"\r\n",
    )
    return signature + raw


# -- sending ------------------------------------------------------------------------------


class BounceError(PermanentError):
    """The server refused the recipient or the message for good (a 5xx answer)."""

    def __init__(self, code: int, text: str, phase: str, recipient: str) -> None:
        status = _enhanced_status(text)
        super().__init__(f"{code} {text} ({phase})".strip())
        self.code = code
        self.text = text
        self.phase = phase
        self.bounce = {"code": code, "status": status, "text": text, "phase": phase, "recipient": recipient, "kind": "hard"}


def _enhanced_status(text: str) -> str | None:
    match = re.match(r"\s*([245]\.\d{1,3}\.\d{1,3})\b", text or "")
    return match.group(1) if match else None


Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """`rate` per second, bursts of up to `burst`; waiters are served in turn."""

    def __init__(self, rate: float, burst: float | None, clock: Clock, sleep: Sleep) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self.clock = clock
        self.sleep = sleep
        self.tokens = self.burst
        self.stamp = clock.monotonic()
        self._lock: asyncio.Lock | None = None
        self._loop: Any = None

    async def take(self) -> None:
        if self.rate <= 0:
            return
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._lock = loop, asyncio.Lock()
        assert self._lock is not None
        async with self._lock:
            while True:
                now = self.clock.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await self.sleep((1 - self.tokens) / self.rate)


def _tls_context(config: SmtpConfig) -> ssl.SSLContext | None:
    if config.tls == NONE:
        return None
    context = ssl.create_default_context(cafile=config.ca_file) if config.ca_file else ssl.create_default_context()
    if not config.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SmtpPool:
    """Connections to one server: up to `max_connections` at once, `pool_size` kept idle.

    Bound to the event loop that uses it; when another loop comes (run_until_idle runs each
    round in a loop of its own), the idle connections of the old one are dropped."""

    IDLE_CHECK_S = 5.0  # a connection idle for longer is checked with NOOP before reuse

    def __init__(self, config: SmtpConfig, clock: Clock, sleep: Sleep) -> None:
        self.config = config
        self.clock = clock
        self.bucket = TokenBucket(config.rate_per_second, None, clock, sleep)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._slots: asyncio.Semaphore | None = None
        self._loop: Any = None
        self._tls = _tls_context(config)
        self.connections_opened = 0
        self.sent = 0

    def _bind(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            self._loop = loop
            self._idle = []
            self._slots = asyncio.Semaphore(self.config.max_connections)
        return self._slots

    async def _connect(self) -> aiosmtplib.SMTP:
        c = self.config
        client = aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            use_tls=c.tls == TLS,
            start_tls=True if c.tls == STARTTLS else (False if c.tls in (NONE, TLS) else None),
            tls_context=self._tls,
            validate_certs=c.verify_tls,
            timeout=c.timeout_s,
            username=c.username,
            password=c.password,
        )
        await client.connect()
        self.connections_opened += 1
        return client

    async def _take(self) -> aiosmtplib.SMTP:
        while self._idle:
            client, since = self._idle.pop()
            if not client.is_connected:
                continue
            if self.clock.monotonic() - since > self.IDLE_CHECK_S:
                try:
                    await client.noop()
                except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                    _drop(client)
                    continue
            return client
        return await self._connect()

    def _give_back(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected and len(self._idle) < self.config.pool_size:
            self._idle.append((client, self.clock.monotonic()))
        else:
            _close_later(client)

    async def send(self, mail_from: str, rcpt: str, raw: bytes) -> None:
        slots = self._bind()
        await self.bucket.take()
        async with slots:
            try:
                client = await self._take()
            except aiosmtplib.SMTPAuthenticationError as exc:
                raise TransientError(f"SMTP authentication failed: {exc.code} {exc.message}") from None
            except aiosmtplib.SMTPNotSupported as exc:
                raise TransientError(f"SMTP server: {exc}") from None
            except aiosmtplib.SMTPResponseException as exc:
                raise TransientError(f"SMTP server refused the connection: {exc.code} {exc.message}") from None
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
                raise TransientError(f"cannot connect to the SMTP server: {type(exc).__name__}: {exc}") from None
            try:
                await _transaction(client, mail_from, rcpt, raw)
            except aiosmtplib.SMTPRecipientRefused as exc:
                await self._after_refusal(client)
                raise _answer(exc.code, exc.message, "RCPT", rcpt) from None
            except aiosmtplib.SMTPSenderRefused as exc:
                await self._after_refusal(client)
                if 400 <= exc.code < 500:
                    raise TransientError(f"{exc.code} {exc.message} (MAIL FROM)") from None
                raise PermanentError(f"sender refused: {exc.code} {exc.message} (MAIL FROM)") from None
            except aiosmtplib.SMTPDataError as exc:
                await self._after_refusal(client)
                raise _answer(exc.code, exc.message, "DATA", rcpt) from None
            except aiosmtplib.SMTPResponseException as exc:
                _drop(client)
                raise _answer(exc.code, exc.message, "SMTP", rcpt, bounce=False) from None
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
                _drop(client)
                raise TransientError(f"SMTP connection failed: {type(exc).__name__}") from None
            except BaseException:
                _drop(client)
                raise
            self.sent += 1
            self._give_back(client)

    async def _after_refusal(self, client: aiosmtplib.SMTP) -> None:
        """A refused transaction leaves the connection usable once reset."""
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
            _drop(client)
            return
        self._give_back(client)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for client, _ in idle:
            try:
                await client.quit()
            except Exception:
                _drop(client)


async def _transaction(client: aiosmtplib.SMTP, mail_from: str, rcpt: str, raw: bytes) -> None:
    """MAIL FROM, RCPT TO, DATA: what `client.sendmail` does for one recipient, less its
    extra pass over the message to count the SIZE it declares (a regex substitution over
    all of a 35 KB message, a tenth of a message's CPU). The size here is the same figure:
    the length once line endings are CRLF, as DATA sends it."""
    options = [f"SIZE={_wire_size(raw)}"] if client.supports_extension("size") else []
    await client.mail(mail_from, options=options)
    await client.rcpt(rcpt)
    await client.data(raw)


def _wire_size(raw: bytes) -> int:
    crlf = raw.count(b"\r\n")
    size = len(raw) + (raw.count(b"\n") - crlf) + (raw.count(b"\r") - crlf)  # lone LF / CR become CRLF
    return size if raw.endswith((b"\n", b"\r")) else size + 2  # DATA ends the message with CRLF


def _answer(code: int, text: str, phase: str, rcpt: str, bounce: bool = True) -> Exception:
    if 400 <= code < 500:
        return TransientError(f"{code} {text} ({phase})")
    if bounce and 500 <= code < 600:
        return BounceError(code, text, phase, rcpt)
    return PermanentError(f"{code} {text} ({phase})")


def _drop(client: aiosmtplib.SMTP) -> None:
    try:
        client.close()
    except Exception:
        pass


def _close_later(client: aiosmtplib.SMTP) -> None:
    async def quit_() -> None:
        try:
            await client.quit()
        except Exception:
            _drop(client)

    try:
        asyncio.get_running_loop().create_task(quit_())
    except RuntimeError:
        _drop(client)


# -- configuration per workspace ------------------------------------------------------------


class ConfigSource(Protocol):
    async def for_workspace(self, workspace_id: str) -> SmtpConfig | None: ...


class StaticConfig:
    def __init__(self, config: SmtpConfig | None) -> None:
        self.config = config

    async def for_workspace(self, workspace_id: str) -> SmtpConfig | None:
        return self.config


class WorkspaceConfigs:
    """A workspace's own SMTP settings, else the default; cached for `ttl_s`."""

    def __init__(self, engine: Any, default: SmtpConfig | None, clock: Clock, ttl_s: float = 30.0) -> None:
        self.engine = engine
        self.default = default
        self.clock = clock
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, SmtpConfig | None]] = {}

    def invalidate(self, workspace_id: str | None = None) -> None:
        if workspace_id is None:
            self._cache.clear()
        else:
            self._cache.pop(workspace_id, None)

    def _load(self, workspace_id: str) -> SmtpConfig | None:
        from nudgeflow.store.workspace_settings import get_smtp

        with self.engine.connect() as conn:
            return get_smtp(conn, workspace_id)

    async def for_workspace(self, workspace_id: str) -> SmtpConfig | None:
        now = self.clock.monotonic()
        hit = self._cache.get(workspace_id)
        if hit is not None and now - hit[0] < self.ttl_s:
            own = hit[1]
        else:
            try:
                own = await asyncio.to_thread(self._load, workspace_id)
            except SmtpConfigError as exc:
                raise PermanentError(f"the workspace's SMTP settings are invalid: {exc}") from None
            except Exception as exc:
                raise TransientError(f"cannot read the workspace's SMTP settings: {type(exc).__name__}") from None
            self._cache[workspace_id] = (now, own)
        return own or self.default


# -- the channel ----------------------------------------------------------------------------


class EmailChannel(RemoteChannel):
    name = "email"
    delivered_on_send = False  # the server's acceptance is "Message Sent"

    def __init__(
        self,
        configs: ConfigSource | SmtpConfig | None,
        renderer: Renderer | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        workers: Any = None,
    ) -> None:
        self.configs: ConfigSource = configs if hasattr(configs, "for_workspace") else StaticConfig(configs)  # type: ignore[arg-type]
        # channels/workers.WorkerPool: builds (render, MIME, DKIM) in other processes.
        # None: in this one.
        self.workers = workers
        self.renderer: Renderer = renderer or DefaultRenderer()
        self.clock = clock or SystemClock()
        self.sleep: Sleep = sleep or asyncio.sleep
        self.pools: dict[SmtpConfig, SmtpPool] = {}
        self._dkim_keys: dict[SmtpConfig, bytes] = {}

    def check(self, message: OutboundMessage) -> None:
        email = message.traits.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise PermanentError("profile has no email")

    def pool(self, config: SmtpConfig) -> SmtpPool:
        pool = self.pools.get(config)
        if pool is None:
            pool = self.pools[config] = SmtpPool(config, self.clock, self.sleep)
        return pool

    def _dkim(self, config: SmtpConfig) -> tuple[str, str, bytes] | None:
        if not config.dkim_enabled:
            return None
        key = self._dkim_keys.get(config)
        if key is None:
            try:
                key = self._dkim_keys[config] = config.dkim_key() or b""
            except SmtpConfigError as exc:
                raise TransientError(str(exc)) from None
        return config.dkim_selector or "", config.dkim_domain or "", key

    def _sender(self, config: SmtpConfig) -> str:
        if not config.from_address:
            raise PermanentError("no From address configured for email (the SMTP settings' from)")
        return formataddr((config.from_name, config.from_address)) if config.from_name else config.from_address

    async def build(self, message: OutboundMessage, config: SmtpConfig) -> tuple[str, str, bytes]:
        """(envelope sender, recipient, signed bytes) for one message."""
        prepare = getattr(self.renderer, "prepare_email", None)
        if prepare is not None:
            return await self._build_job(message, config, prepare)
        to = message.traits.get("email")
        try:
            rendered = await self.renderer.render_email(message)
        except (PermanentError, TransientError):
            raise
        except Exception as exc:
            raise PermanentError(f"render failed: {type(exc).__name__}: {exc}") from None
        recipient = rendered.to or to
        if not isinstance(recipient, str) or "@" not in recipient:
            raise PermanentError("profile has no email")
        raw = finish(rendered, recipient, self._sender(config), f"{message.workspace_id}:{message.key}",
                     config.reply_to, self.clock.now(), self._dkim(config))
        return config.envelope_sender(message.workspace_id) or config.from_address, recipient, raw

    async def _build_job(self, message: OutboundMessage, config: SmtpConfig,
                         prepare: Callable[[OutboundMessage], Awaitable[Any]]) -> tuple[str, str, bytes]:
        """The renderer's reads here; the build (content/email_jobs.build_raw) here or in
        a worker process, with the same errors either way."""
        from nudgeflow.content.email_jobs import TemplateNotLoaded, build_raw, slim

        try:
            job = await prepare(message)
        except (PermanentError, TransientError):
            raise
        except Exception as exc:
            raise PermanentError(f"render failed: {type(exc).__name__}: {exc}") from None
        job = dataclasses.replace(job, sender=self._sender(config), reply_to=config.reply_to,
                                  date=self.clock.now(), dkim=self._dkim(config))
        if self.workers is None:
            raw = build_raw(job)
        else:
            try:  # without the template: the worker has most likely parsed it already
                raw = await self.workers.run(build_raw, slim(job))
            except TemplateNotLoaded:
                raw = await self.workers.run(build_raw, job)
        return config.envelope_sender(message.workspace_id) or config.from_address, job.to, raw

    async def send(self, message: OutboundMessage) -> None:
        config = await self.configs.for_workspace(message.workspace_id)
        if config is None:
            raise PermanentError("no SMTP server configured for this workspace")
        mail_from, rcpt, raw = await self.build(message, config)
        await self.pool(config).send(mail_from, rcpt, raw)

    async def aclose(self) -> None:
        for pool in list(self.pools.values()):
            await pool.aclose()
        if self.workers is not None:
            await asyncio.to_thread(self.workers.close)


def configure_email(
    registry: ChannelRegistry, engine: Any, settings: Any, clock: Clock | None = None, renderer: Renderer | None = None
) -> EmailChannel | None:
    """Serve "email" with an EmailChannel when SMTP is configured (NUDGEFLOW_SMTP_URL, or a
    workspace's own settings); otherwise leave the registry as it is (the log channel).
    Returns the channel when there is one."""
    current = registry.get("email")
    if isinstance(current, EmailChannel):
        return current
    default = parse_smtp_url(settings.smtp_url) if getattr(settings, "smtp_url", None) else None
    if default is None and not _any_workspace_smtp(engine):
        return None
    processes = int(getattr(settings, "email_build_processes", 0) or 0)
    workers = None
    if processes > 0:
        from nudgeflow.channels.workers import WorkerPool

        workers = WorkerPool(processes)
    channel = EmailChannel(WorkspaceConfigs(engine, default, clock or SystemClock()), renderer or DefaultRenderer(engine),
                           clock, workers=workers)
    registry.register("email", channel)
    log.info("email goes out over SMTP", extra={"smtp": str(default) if default else "per workspace"})
    return channel


def _any_workspace_smtp(engine: Any) -> bool:
    from nudgeflow.store.workspace_settings import SMTP, any_workspace_has

    return any_workspace_has(engine, SMTP)
