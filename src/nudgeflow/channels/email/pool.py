"""Delivery over SMTP: a pool of connections to one server, and what its answers mean.

Connections are reused across messages and replaced when they fail, at most
`max_connections` sends at once and at most `rate_per_second` a second (a token bucket on
the injected clock). A 4xx answer, a timeout or a lost connection is a TransientError; an
address that cannot be written on the command line (not ASCII) is an `UnsendableAddress`.

A 5xx answer to RCPT or DATA is read by its enhanced status code (RFC 3463), else its reply
code (`refusal`): only one about the recipient's address or mailbox (5.1.x, 5.2.x; a bare
550/551/553 at RCPT) is the person's `BounceError`. Relaying denied, a login asked for or
refused, a policy about the sender (5.7.x), a system or network problem (5.3.x, 5.4.x) or
a protocol one (5.5.x) is our side's: a `ChannelProblem`, never a bounce, so a relay that is
set up wrong does not mark every recipient bounced. One about the message itself (too
large, 5.2.3; its content, 5.6.x) fails that message, with no bounce.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Any

import aiosmtplib

from nudgeflow.channels.base import ChannelProblem, NotStarted, PermanentError, TransientError
from nudgeflow.channels.common import Sleep, TokenBucket
from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.model.smtp_config import AUTO, NONE, STARTTLS, TLS, SmtpConfig


class BounceError(PermanentError):
    """The server refused the recipient or the message for good (a 5xx answer)."""

    def __init__(self, code: int, text: str, phase: str, recipient: str) -> None:
        status = _enhanced_status(text)
        super().__init__(f"{code} {text} ({phase})".strip())
        self.code = code
        self.text = text
        self.phase = phase
        self.bounce = {
            "code": code,
            "status": status,
            "text": text,
            "phase": phase,
            "recipient": recipient,
            "kind": "hard",
        }


class UnsendableAddress(PermanentError):
    """An address that cannot be written on an SMTP command line: aiosmtplib refuses one
    with a line break, and a non-ASCII one would need SMTPUTF8, which this channel does not
    use. No retry changes the address, so the message fails (not a bounce: no server said so)."""

    def __init__(self, phase: str, exc: ValueError) -> None:
        why = "not ASCII (it would need SMTPUTF8)" if isinstance(exc, UnicodeError) else str(exc)
        super().__init__(f"the address cannot be sent over SMTP: {why} ({phase})")


def _enhanced_status(text: str) -> str | None:
    match = re.match(r"\s*([245]\.\d{1,3}\.\d{1,3})\b", text or "")
    return match.group(1) if match else None


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
        # "STARTTLS when offered" (AUTO) goes on in plain text when no offer comes, and
        # aiosmtplib would then log in all the same: the user and password in clear, to the
        # server or to whoever stripped the offer. So AUTO logs in here, over TLS only.
        login_here = c.tls == AUTO and c.username is not None
        client = aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            use_tls=c.tls == TLS,
            start_tls=True if c.tls == STARTTLS else (False if c.tls in (NONE, TLS) else None),
            tls_context=self._tls,
            validate_certs=c.verify_tls,
            timeout=c.timeout_s,
            username=None if login_here else c.username,
            password=None if login_here else c.password,
        )
        await client.connect()
        if login_here:
            try:
                await _login_over_tls(client, c.username or "", c.password or "")
            except BaseException:
                _drop(client)
                raise
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
                except (TimeoutError, aiosmtplib.SMTPException, OSError):
                    _drop(client)
                    continue
            return client
        return await self._connect()

    def _give_back(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected and len(self._idle) < self.config.pool_size:
            self._idle.append((client, self.clock.monotonic()))
        else:
            _close_later(client)

    async def send(self, mail_from: str, rcpt: str, raw: bytes, send_by_ms: int | None = None) -> None:
        """Send one message on a pooled connection; with `send_by_ms`, raise NotStarted rather
        than begin after it (the wait for a connection or the rate limit outlasted it)."""
        slots = self._bind()
        await self.bucket.take()
        async with slots:
            if send_by_ms is not None and to_ms(self.clock.now()) > send_by_ms:
                raise NotStarted("its dispatcher's lease was about to run out before a connection was free")
            try:
                client = await self._take()
            except aiosmtplib.SMTPAuthenticationError as exc:
                raise TransientError(f"SMTP authentication failed: {exc.code} {exc.message}") from None
            except aiosmtplib.SMTPNotSupported as exc:
                raise TransientError(f"SMTP server: {exc}") from None
            except aiosmtplib.SMTPResponseException as exc:
                raise TransientError(f"SMTP server refused the connection: {exc.code} {exc.message}") from None
            except (TimeoutError, aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
                raise TransientError(f"cannot connect to the SMTP server: {type(exc).__name__}: {exc}") from None
            try:
                await _transaction(client, mail_from, rcpt, raw)
            except UnsendableAddress:
                await self._after_refusal(client)
                raise
            except aiosmtplib.SMTPRecipientRefused as exc:
                await self._after_refusal(client)
                raise _answer(exc.code, exc.message, "RCPT", rcpt) from None
            except aiosmtplib.SMTPSenderRefused as exc:
                await self._after_refusal(client)
                if 400 <= exc.code < 500:
                    raise TransientError(f"{exc.code} {exc.message} (MAIL FROM)") from None
                raise ChannelProblem(
                    f"sender refused: {exc.code} {exc.message} (MAIL FROM): check the SMTP settings' from "
                    "and bounce_domain, and what the server lets this account send as"
                ) from None
            except aiosmtplib.SMTPDataError as exc:
                await self._after_refusal(client)
                raise _answer(exc.code, exc.message, "DATA", rcpt) from None
            except aiosmtplib.SMTPResponseException as exc:
                _drop(client)
                raise _answer(exc.code, exc.message, "SMTP", rcpt, bounce=False) from None
            except (TimeoutError, aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
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
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
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


async def _login_over_tls(client: aiosmtplib.SMTP, username: str, password: str) -> None:
    if client.get_transport_info("sslcontext") is None:
        raise TransientError(
            "the SMTP server offered no STARTTLS: the user and password are not sent in clear text "
            "(tls=none in the SMTP settings sends them so)"
        )
    await client.login(username, password)


async def _transaction(client: aiosmtplib.SMTP, mail_from: str, rcpt: str, raw: bytes) -> None:
    """MAIL FROM, RCPT TO, DATA: what `client.sendmail` does for one recipient, less its
    extra pass over the message to count the SIZE it declares (a regex substitution over
    all of a 35 KB message, a tenth of a message's CPU). The size here is the same figure:
    the length once line endings are CRLF, as DATA sends it."""
    options = [f"SIZE={wire_size(raw)}"] if client.supports_extension("size") else []
    try:
        await client.mail(mail_from, options=options)
    except ValueError as exc:  # raised before the command is written
        raise UnsendableAddress("MAIL FROM", exc) from None
    try:
        await client.rcpt(rcpt)
    except ValueError as exc:
        raise UnsendableAddress("RCPT", exc) from None
    await client.data(raw)


def wire_size(raw: bytes) -> int:
    crlf = raw.count(b"\r\n")
    size = len(raw) + (raw.count(b"\n") - crlf) + (raw.count(b"\r") - crlf)  # lone LF / CR become CRLF
    return size if raw.endswith((b"\n", b"\r")) else size + 2  # DATA ends the message with CRLF


def _answer(code: int, text: str, phase: str, rcpt: str, bounce: bool = True) -> Exception:
    if 400 <= code < 500:
        return TransientError(f"{code} {text} ({phase})")
    if bounce and 500 <= code < 600:
        return refusal(code, text, phase, rcpt)
    return PermanentError(f"{code} {text} ({phase})")


# Reply codes that, with no enhanced status to say more, mean the mailbox at RCPT (RFC 5321
# §4.2.2): unavailable, not local, name not allowed.
_MAILBOX_REPLIES = (550, 551, 553)
# Authentication required (530), refused (535): always about us (RFC 4954).
_AUTH_REPLIES = (530, 535)
# Words with which a server that gives no enhanced status says the refusal is about us.
_ABOUT_US = re.compile(r"\b(relay\w*|auth\w*|not permitted to send|sender)\b", re.IGNORECASE)
# 5.1.x that are about the sender, not the recipient (RFC 3463: bad sender's mailbox syntax,
# bad sender's system address).
_SENDER_ADDRESSING = ("5.1.7", "5.1.8")
_OURS = {
    "3": "a problem of the mail system",
    "4": "a network or routing problem",
    "5": "a protocol problem",
    "7": "refused by policy or security (relaying, authentication, the sender's reputation or domain)",
}
_CHECK = "; not a bounce, the address is kept: check the SMTP settings (server, login, from address)"


def refusal(code: int, text: str, phase: str, rcpt: str) -> PermanentError:
    """What a 5xx answer at RCPT or DATA means, by whose it is (see the module docstring):
    the recipient's (`BounceError`), the message's (a PermanentError), or our side's (a
    `ChannelProblem`: the message fails, the address is not held against the person)."""
    status = _enhanced_status(text)
    said = f"{code} {text} ({phase})".strip()
    subject = status.split(".")[1] if status and status.startswith("5.") else None
    if status == "5.2.3" or subject == "6":
        return PermanentError(f"{said}: the server refused this message (its size or content), not the address")
    if status in _SENDER_ADDRESSING:
        return ChannelProblem(f"{said}: the sender's address was refused{_CHECK}")
    if subject in ("1", "2"):
        return BounceError(code, text, phase, rcpt)
    if subject in _OURS:
        return ChannelProblem(f"{said}: {_OURS[subject]}{_CHECK}")
    # No enhanced status (or 5.0.0, "other"): the reply code and the words decide.
    if code in _AUTH_REPLIES or _ABOUT_US.search(text or ""):
        return ChannelProblem(f"{said}: refused for the sender or the relay, not the recipient{_CHECK}")
    if phase == "RCPT" and code in _MAILBOX_REPLIES:
        return BounceError(code, text, phase, rcpt)  # the classic "no such mailbox"
    return PermanentError(f"{said}: not a bounce (the answer does not say the address is bad)")


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
