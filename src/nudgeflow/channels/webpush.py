"""Web Push (RFC 8030) to browser subscriptions: encrypted per RFC 8291, signed per RFC 8292.

The push channel (channels/push.py) hands one rendered message to `WebPushSender.send`
for each of the person's browser subscriptions. For each, the sender:

- serializes `content.notification()` as JSON (what the service worker reads) and refuses it
  with PayloadTooLarge when it exceeds WEBPUSH_MAX_PLAINTEXT: a push service takes one
  4096-byte aes128gcm record, and a 413 from it would say less;
- encrypts it for the subscription (aes128gcm, RFC 8188/8291: a fresh ephemeral P-256 key
  and salt per message, the browser's p256dh key and auth secret) with http_ece, the
  library pywebpush itself uses;
- signs a VAPID JWT (ES256; aud = the endpoint's origin, exp 12 h ahead on the injected
  clock, sub = the workspace's contact) with the workspace's VAPID key, and reuses it for
  every message to that origin until it has less than an hour to live: signing one costs
  about half as much CPU as encrypting a message, and push services accept a JWT for up
  to 24 h;
- POSTs it with `TTL` (the seconds the message has left to live), `Urgency` when the message
  sets it, and `Topic` (from the template's collapse_key, else the message key: a retry
  replaces a first copy the service has not delivered yet; the service worker's tag, the
  message key, replaces one already shown), over one aiohttp session per sender: HTTP/1.1 on pooled
  keep-alive connections (every push service takes HTTP/1.1: FCM's web push endpoint,
  Mozilla autopush, Apple's, Microsoft's). Not httpx: its request path cost 5.2 ms of CPU
  a message on the benchmark machine against 0.35 ms on aiohttp (benchmarks/RESULTS.md,
  "Push benchmark"), for HTTP/2's one connection that a push service does not need. The
  session belongs to the event loop it was made in (the dispatch thread's own loop): used
  from another loop, the sender makes a new one there and closes the old one in its own.

Answers: 201/200/202 taken. 404/410: the subscription is gone (TargetGone; the channel
deletes it). 429 and 5xx: TransientError with the Retry-After the service gave (seconds or
an HTTP date); the dispatcher retries with backoff. 413: PermanentError (too large). Any other 4xx
(400 malformed, 401/403 a JWT the service refuses, e.g. after a key rotation): PermanentError
with the status and a short excerpt of the body. A network error or timeout: TransientError.

Never logged: VAPID keys, JWTs, subscription keys, full endpoints (they address a device;
`PushTarget.redacted()` is what errors carry; aiohttp's client logs no request URLs).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import logging
import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import http_ece
import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import jwt as vapid_jwt

from nudgeflow.channels.base import PermanentError, TransientError, reason_text, retry_after_s
from nudgeflow.channels.common import Sleep, TargetGone, TokenBucket, WorkspaceCache
from nudgeflow.channels.push_limits import WEBPUSH_MAX_PLAINTEXT, PayloadTooLarge
from nudgeflow.content.push_render import PushContent
from nudgeflow.core.clock import Clock, SystemClock
from nudgeflow.store.push_targets import PushTarget
from nudgeflow.store.vapid import get_vapid_keys

log = logging.getLogger("nudgeflow.webpush")


URGENCIES = ("very-low", "low", "normal", "high")
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
JWT_LIFETIME_S = 12 * 3600  # RFC 8292 allows up to 24 h; half leaves room for clock skew
JWT_REFRESH_S = 3600  # sign anew when less than this is left
KEYS_TTL_S = 30.0  # how long a workspace's VAPID key is cached (a rotation shows within this)
TIMEOUT_S = 10.0  # the whole request: connect, send, the answer
KEEPALIVE_S = 30.0  # an idle pooled connection is closed after this


def topic_for(collapse_key: str) -> str:
    """RFC 8030 §5.4: a Topic is at most 32 characters of the URL-safe base64 alphabet. A key
    that is one already is sent as it is (readable in the service's logs); any other is
    hashed into one, so equal keys still replace each other."""
    if _TOPIC.match(collapse_key):
        return collapse_key
    digest = hashlib.sha256(collapse_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


def _b64decode(text: str) -> bytes:
    text = text.strip().replace("+", "-").replace("/", "_").rstrip("=")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def endpoint_origin(endpoint: str) -> str:
    """scheme://host[:port] of an endpoint: the VAPID `aud`. Only https, or http to a
    loopback address (the local push service of development and tests)."""
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise PermanentError("the subscription's endpoint is not a valid URL") from exc
    if not host:
        raise PermanentError("the subscription's endpoint has no host")
    if parts.scheme == "https":
        return f"https://{parts.netloc.rsplit('@', 1)[-1]}"
    if parts.scheme == "http" and _is_loopback(host):
        return f"http://{parts.netloc.rsplit('@', 1)[-1]}"
    raise PermanentError("the subscription's endpoint is not https://")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_closing: set[asyncio.Task[None]] = set()


def _close_in_its_loop(session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop) -> None:
    """Close a session of another event loop, in that loop: at once if it is running (in
    another thread), when it next runs otherwise. A loop already closed (`asyncio.run`
    returned, as in `run_until_idle`) cannot run that any more: the session and its pool are
    marked closed, and their sockets close when the transports are collected."""
    if not loop.is_closed():

        def close() -> None:
            task = loop.create_task(session.close())
            _closing.add(task)  # a task nothing refers to may be collected before it is done
            task.add_done_callback(_closing.discard)

        try:
            loop.call_soon_threadsafe(close)
            return
        except RuntimeError:  # closed in the meantime
            pass
    connector = session.connector
    session.detach()
    close_now = getattr(connector, "_close", None)  # sync, and a no-op for the loop's sockets once it is closed
    if close_now is not None:
        close_now()  # no "Unclosed connector" error logged when it is collected


@dataclass(frozen=True)
class _Signer:
    """A workspace's VAPID key, loaded."""

    public_key: str  # base64url, the `k=` of the Authorization header
    private: ec.EllipticCurvePrivateKey
    subject: str

    def __repr__(self) -> str:
        return f"_Signer(public_key={self.public_key[:12]}…, subject={self.subject!r})"


class WebPushSender:
    """The PushSender of provider "webpush" (see channels/push.py)."""

    provider = "webpush"

    def __init__(
        self,
        engine: Any,
        clock: Clock | None,
        *,
        session: aiohttp.ClientSession | None = None,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Sleep | None = None,
        rate_per_second: float = 0.0,
        max_connections: int = 100,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        """`session`: an aiohttp session of the caller's, used as it is and left open by
        `aclose` (it must belong to the loop the sends run in). Otherwise the sender makes
        its own, in the loop that first sends, with `ssl_context` for https:// endpoints
        (default: the system's CAs, verified), at most `max_connections` connections and
        `timeout_s` for a whole request."""
        self.engine = engine
        self.clock: Clock = clock or SystemClock()
        self.sleep: Sleep = sleep or asyncio.sleep
        self._given = session
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._rate = rate_per_second
        self._buckets: dict[str, TokenBucket] = {}  # origin -> TokenBucket, when rate_per_second > 0
        # A key that does not load (store.vapid.VapidError, a ValueError) fails the message for good.
        self._signers: WorkspaceCache[_Signer] = WorkspaceCache(
            self._load, self.clock, "VAPID keys", ValueError, KEYS_TTL_S
        )
        self._jwts: dict[tuple[str, str, str], tuple[str, int]] = {}  # (ws, origin, public key) -> (header, exp)
        self.sent = 0
        self.jwts_signed = 0

    # -- the HTTP session ---------------------------------------------------------------------

    def session(self) -> aiohttp.ClientSession:
        """The session for the running event loop. An aiohttp session (its connections, its
        timers) belongs to the loop it was made in, so it is made lazily, inside the loop,
        and made anew when the sender is used from another loop."""
        if self._given is not None:
            return self._given
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and self._session_loop is loop and not session.closed:
            return session
        if session is not None and self._session_loop is not None:
            _close_in_its_loop(session, self._session_loop)
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, keepalive_timeout=KEEPALIVE_S, ssl=self._ssl
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # push services set none; nothing carried between subscriptions
        )
        self._session_loop = loop
        return self._session

    async def aclose(self) -> None:
        """Close the sender's own session (a `session=` given to it stays open)."""
        session, loop = self._session, self._session_loop
        self._session = self._session_loop = None
        if session is None or session.closed or loop is None:
            return
        if loop is asyncio.get_running_loop():
            await session.close()
        else:
            _close_in_its_loop(session, loop)

    # -- VAPID ------------------------------------------------------------------------------

    def invalidate(self, workspace_id: str | None = None) -> None:
        """Forget cached keys and JWTs (after a rotation or a new subject)."""
        self._signers.invalidate(workspace_id)
        if workspace_id is None:
            self._jwts.clear()
            return
        for key in [k for k in self._jwts if k[0] == workspace_id]:
            del self._jwts[key]

    def _load(self, workspace_id: str) -> _Signer | None:
        with self.engine.connect() as conn:
            keys = get_vapid_keys(conn, workspace_id)
        if keys is None:
            return None
        return _Signer(keys.public_key, keys.signing_key(), keys.subject)

    async def signer(self, workspace_id: str) -> _Signer:
        if self.engine is None:
            raise PermanentError("no database to read the workspace's VAPID keys from")
        found = await self._signers.get(workspace_id)
        if found is None:
            raise PermanentError("the workspace has no VAPID keys (`nudgeflow workspace vapid show` makes them)")
        return found

    def authorization(self, workspace_id: str, origin: str, signer: _Signer) -> str:
        """`vapid t=<jwt>, k=<public key>` for this origin, signed anew when due."""
        now_s = int(self.clock.now().timestamp())
        key = (workspace_id, origin, signer.public_key)
        cached = self._jwts.get(key)
        if cached is not None and cached[1] - now_s > JWT_REFRESH_S:
            return cached[0]
        exp = now_s + JWT_LIFETIME_S
        token = vapid_jwt.sign({"aud": origin, "exp": exp, "sub": signer.subject}, signer.private)
        header = f"vapid t={token}, k={signer.public_key}"
        if len(self._jwts) > 10_000:  # bounded: workspaces x push services stays small in practice
            self._jwts.clear()
        self._jwts[key] = (header, exp)
        self.jwts_signed += 1
        return header

    # -- one message --------------------------------------------------------------------------

    def encrypt(self, target: PushTarget, payload: bytes) -> bytes:
        if not target.p256dh or not target.auth:
            raise PermanentError("the subscription has no p256dh or auth key")
        try:
            receiver = _b64decode(target.p256dh)
            auth = _b64decode(target.auth)
        except ValueError as exc:
            raise PermanentError("the subscription's keys are not base64url") from exc
        if len(receiver) != 65 or receiver[0] != 4 or len(auth) < 16:
            raise PermanentError("the subscription's keys are malformed (p256dh must be a P-256 point, auth 16 bytes)")
        try:
            return http_ece.encrypt(
                payload,
                private_key=ec.generate_private_key(ec.SECP256R1()),
                dh=receiver,
                auth_secret=auth,
                version="aes128gcm",
            )
        except (ValueError, http_ece.ECEException) as exc:
            raise PermanentError("the subscription's p256dh key is not a valid P-256 point") from exc

    def headers(self, content: PushContent, authorization: str) -> dict[str, str]:
        now_ms = int(self.clock.now().timestamp() * 1000)
        headers = {
            "Authorization": authorization,
            "TTL": str(content.ttl_at(now_ms)),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
        }
        if content.urgency in URGENCIES:
            headers["Urgency"] = content.urgency
        # The template's collapse_key, else the message key: a retry of a send accepted but
        # unanswered (a timeout) replaces the first copy while the service still holds it.
        headers["Topic"] = topic_for(content.replace_id)
        return headers

    async def send(self, workspace_id: str, target: PushTarget, content: PushContent) -> None:
        payload = orjson.dumps(content.notification())
        if len(payload) > WEBPUSH_MAX_PLAINTEXT:
            raise PayloadTooLarge("Web Push", len(payload), WEBPUSH_MAX_PLAINTEXT)
        origin = endpoint_origin(target.address)
        signer = await self.signer(workspace_id)
        body = self.encrypt(target, payload)
        headers = self.headers(content, self.authorization(workspace_id, origin, signer))
        if self._rate > 0:
            await self._bucket(origin).take()
        try:
            async with self.session().post(
                target.address, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                answer = await response.read()  # read to the end: the connection goes back to the pool
        except TimeoutError:  # TimeoutError; aiohttp's connect and read timeouts are ones too
            raise TransientError(f"{target.redacted()}: the push service did not answer in time") from None
        except aiohttp.InvalidURL as exc:
            raise PermanentError(f"{target.redacted()}: cannot send to this endpoint ({type(exc).__name__})") from None
        except aiohttp.ClientError as exc:  # connection refused or reset, DNS, TLS, a broken answer
            raise TransientError(f"{target.redacted()}: cannot reach the push service ({type(exc).__name__})") from None
        self._answer(target, status, retry_after, answer, len(body))
        self.sent += 1

    def _answer(self, target: PushTarget, status: int, retry_after: str | None, answer: bytes, size: int) -> None:
        if status in (200, 201, 202):
            return
        what = f"{target.redacted()}: push service answered {status}"
        if status in (404, 410):
            raise TargetGone(f"{what} (subscription expired or unsubscribed)")
        if status == 429 or status >= 500:
            wait = retry_after_s(retry_after, self.clock.now())
            raise TransientError(what + (f", retry after {wait:g} s" if wait is not None else ""), retry_after_s=wait)
        if status == 413:  # we checked 4 KB; a service with a smaller limit says so here
            raise PermanentError(
                f"{what}: it refused the {size:,}-byte payload as too large; shorten the template's text or data"
            )
        excerpt = reason_text(answer.decode("utf-8", "replace"), 200) if answer else ""
        raise PermanentError(f"{what}" + (f": {excerpt}" if excerpt else ""))

    def _bucket(self, origin: str) -> TokenBucket:
        bucket = self._buckets.get(origin)
        if bucket is None:
            bucket = self._buckets[origin] = TokenBucket(self._rate, None, self.clock, self.sleep)
        return bucket
