"""A local Web Push service: what a browser's push service does, on loopback.

For development, the demo, the tests and the benchmark: it accepts `POST /push/<id>` as a
real push service does (RFC 8030) and checks what a real one checks:

- `Authorization: vapid t=<JWT>, k=<public key>` (RFC 8292): an ES256 signature that
  verifies against `k`, `aud` equal to this service's origin, `exp` in the future and at
  most 24 h ahead, a `sub`; a subscription made with an applicationServerKey accepts only
  that key (403 otherwise, which is what a browser subscription does after a rotation);
- `TTL` present (RFC 8030 §5.2), `Urgency` and `Topic` well formed when present;
- `Content-Encoding: aes128gcm` and a body of at most 4096 bytes that decrypts (RFC 8291)
  with the subscription's private key and auth secret.

It records each message, decrypted, with its TTL, Urgency and Topic (`received`, and the
`on_push` callbacks: the dev inbox's push sink hooks in there), and answers 201. It can be
told to answer otherwise for a subscription (`respond`: 404, 410, 429 with Retry-After,
500...) and to forget one (`unsubscribe`: 410 from then on), which is how the sender's
handling of each answer is tested.

A subscription can be put `offline` (its browser away): the service then keeps what it
accepts for it until `online`, and a message with the Topic of one it still keeps replaces
that one (RFC 8030 §5.4), as push services do. And the service can take a subscription's
next message and keep its answer back until `release` (`hold`: the answer late or lost, so
that the sender's timeout cancels a send the service accepted).

Subscriptions are made here (`subscribe`: a P-256 key pair and a 16-byte auth secret, as a
browser makes them), since only their holder can decrypt: the result's `info()` is the
PushSubscription JSON a browser would hand the SDK. Over HTTP, `POST /subscriptions` does
the same for another process (the benchmark, the demo).

Never for production: it accepts anything for anyone. It listens on loopback by default.
Run on its own: `python -m nudgeflow.runtime.dev_push [--port N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import itertools
import logging
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import http_ece
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import jwt as vapid_jwt

from nudgeflow.core.clock import Clock, SystemClock, to_ms
from nudgeflow.errors import EngineRuntimeError

log = logging.getLogger("nudgeflow.dev_push")

MAX_BODY = 4096  # RFC 8291 §4: what every push service must take, and what we take
MAX_JWT_AHEAD = timedelta(hours=24)  # RFC 8292 §2
URGENCIES = ("very-low", "low", "normal", "high")
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_PUSH_PATH = re.compile(r"^/push/([A-Za-z0-9_-]{1,128})$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- subscriptions ---------------------------------------------------------------------------------


@dataclass
class BrowserSubscription:
    """A push subscription as a browser holds it: the endpoint, and the keys only it knows."""

    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    auth: bytes = field(repr=False)
    application_server_key: str | None = None  # the VAPID public key it was made with, if restricted

    @property
    def p256dh(self) -> str:
        return _b64(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    def info(self) -> dict[str, Any]:
        """The PushSubscription JSON (`subscription.toJSON()` in a browser)."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": _b64(self.auth)}}

    def decrypt(self, body: bytes) -> bytes:
        return http_ece.decrypt(
            body,
            private_key=self.private_key,
            auth_secret=self.auth,
            version="aes128gcm",
        )


def new_subscription(
    endpoint_base: str, sub_id: str | None = None, application_server_key: str | None = None
) -> BrowserSubscription:
    """A browser-like subscription: a fresh P-256 key pair and a 16-byte auth secret."""
    sub_id = sub_id or _b64(os.urandom(12))
    return BrowserSubscription(
        sub_id,
        endpoint_base.rstrip("/") + "/push/" + sub_id,
        ec.generate_private_key(ec.SECP256R1()),
        os.urandom(16),
        application_server_key,
    )


# -- what it records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedPush:
    subscription_id: str
    notification: Any  # the decrypted JSON (None when the plaintext is not JSON)
    plaintext: bytes
    ttl: int
    urgency: str | None
    topic: str | None
    subject: str  # the JWT's sub
    vapid_key: str  # the k= of the Authorization header
    jwt_exp: int
    http_version: str
    received_at_ms: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "subscription_id": self.subscription_id,
            "notification": self.notification,
            "ttl": self.ttl,
            "urgency": self.urgency,
            "topic": self.topic,
            "subject": self.subject,
            "http_version": self.http_version,
            "received_at_ms": self.received_at_ms,
        }


@dataclass
class _Scripted:
    status: int
    retry_after: str | None
    body: str
    times: int | None  # None: until told otherwise


class _Refused(EngineRuntimeError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


# -- the service ---------------------------------------------------------------------------------------


class DevPushService:
    """The push service itself, as an ASGI app (serve it with `serve_dev_push`)."""

    def __init__(
        self, clock: Clock | None = None, origin: str | None = None, *, keep: int = 10_000, cache_tokens: bool = True
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.origin = origin  # set by serve_dev_push; None: taken from each request's Host
        # A real service verifies a JWT once and remembers it until it expires; the benchmark
        # turns this off so that every message costs the service the same.
        self.cache_tokens = cache_tokens
        self.on_push: list[Callable[[ReceivedPush], None]] = []
        self._subs: dict[str, BrowserSubscription] = {}
        self._gone: set[str] = set()
        self._scripted: dict[str, _Scripted] = {}
        self._received: deque[ReceivedPush] = deque(maxlen=keep)
        self._offline: dict[str, list[ReceivedPush]] = {}  # kept for a browser away, in order
        self._holding: set[str] = set()
        self._gates: list[tuple[Any, Any]] = []  # (event loop, asyncio.Event) of answers held back
        self.held = threading.Event()  # set once an answer is held back
        self._tokens: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.accepted = 0
        self.refused: dict[int, int] = {}

    # -- set up by tests and the demo --

    def subscribe(self, sub_id: str | None = None, application_server_key: str | None = None) -> BrowserSubscription:
        if self.origin is None:
            raise RuntimeError("serve the service first (its endpoints carry its origin)")
        sub = new_subscription(self.origin, sub_id, application_server_key)
        self.add(sub)
        return sub

    def add(self, sub: BrowserSubscription) -> None:
        with self._lock:
            self._subs[sub.id] = sub
            self._gone.discard(sub.id)

    def unsubscribe(self, sub_id: str) -> None:
        """The browser dropped it: 410 Gone from now on."""
        with self._lock:
            self._subs.pop(sub_id, None)
            self._gone.add(sub_id)

    def respond(
        self,
        sub_id: str,
        status: int,
        *,
        retry_after: str | int | None = None,
        body: str = "",
        times: int | None = None,
    ) -> None:
        """Answer `status` to messages for `sub_id` (the next `times` of them, or all)."""
        with self._lock:
            self._scripted[sub_id] = _Scripted(status, None if retry_after is None else str(retry_after), body, times)

    def clear_responses(self) -> None:
        with self._lock:
            self._scripted.clear()

    def offline(self, sub_id: str) -> None:
        """The browser is away: what is accepted for it is kept (a newer message with the same
        Topic replacing an older one) until `online`."""
        with self._lock:
            self._offline.setdefault(sub_id, [])

    def online(self, sub_id: str) -> list[ReceivedPush]:
        """The browser is back: it receives what was kept for it, in order."""
        with self._lock:
            kept = self._offline.pop(sub_id, [])
            self._received.extend(kept)
        for received in kept:
            self._delivered(received)
        return kept

    def hold(self, sub_id: str) -> None:
        """Take the subscription's next message, and answer only on `release`."""
        with self._lock:
            self._holding.add(sub_id)

    def release(self) -> None:
        with self._lock:
            gates, self._gates = self._gates, []
        for loop, gate in gates:
            if not loop.is_closed():
                loop.call_soon_threadsafe(gate.set)

    @property
    def received(self) -> list[ReceivedPush]:
        with self._lock:
            return list(self._received)

    def received_for(self, sub_id: str) -> list[ReceivedPush]:
        return [r for r in self.received if r.subscription_id == sub_id]

    # -- ASGI --

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        body = await _read(receive, MAX_BODY + 1)
        if method == "POST" and (match := _PUSH_PATH.match(path)):
            status, headers, payload = self._push(scope, match.group(1), body)
            await self._held_back(match.group(1), status)
        elif method == "GET" and path == "/healthz":
            status, headers, payload = 200, {}, b'{"status":"ok"}'
        elif method == "POST" and path == "/subscriptions":
            status, headers, payload = self._new_subscription(body)
        elif method == "GET" and path == "/stats":
            status, headers, payload = 200, {}, orjson.dumps(self.stats())
        elif method == "GET" and path == "/received":
            wanted = parse_qs(scope.get("query_string", b"").decode()).get("subscription", [None])[0]
            found = [r.as_dict() for r in self.received if wanted is None or r.subscription_id == wanted]
            status, headers, payload = 200, {}, orjson.dumps(found)
        else:
            status, headers, payload = 404, {}, b'{"error":"not found"}'
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})

    async def _held_back(self, sub_id: str, status: int) -> None:
        with self._lock:
            if status != 201 or sub_id not in self._holding:
                return
            self._holding.discard(sub_id)
            gate = asyncio.Event()
            self._gates.append((asyncio.get_running_loop(), gate))
        self.held.set()
        await gate.wait()

    def stats(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "refused": {str(k): v for k, v in sorted(self.refused.items())},
            "subscriptions": len(self._subs),
            "cpu_s": time.process_time(),
        }

    def _new_subscription(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            asked = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            return 400, {}, b'{"error":"not JSON"}'
        key = asked.get("applicationServerKey") if isinstance(asked, dict) else None
        sub = self.subscribe(application_server_key=key if isinstance(key, str) and key else None)
        return 201, {}, orjson.dumps({"id": sub.id, **sub.info()})

    def _push(self, scope: dict[str, Any], sub_id: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            received, delivered = self._accept(scope, sub_id, body)
        except _Refused as exc:
            with self._lock:
                self.refused[exc.status] = self.refused.get(exc.status, 0) + 1
            return exc.status, {}, orjson.dumps({"error": exc.reason})
        except _ScriptedAnswer as answer:
            with self._lock:
                self.refused[answer.status] = self.refused.get(answer.status, 0) + 1
            headers = {"Retry-After": answer.retry_after} if answer.retry_after is not None else {}
            return answer.status, headers, orjson.dumps({"error": answer.body or "scripted answer"})
        if delivered:
            self._delivered(received)
        return 201, {"Location": f"/message/{next(self._ids)}", "TTL": str(received.ttl)}, b"{}"

    def _delivered(self, received: ReceivedPush) -> None:
        for callback in list(self.on_push):
            try:
                callback(received)
            except Exception:
                log.exception("a dev push callback failed")

    def _accept(self, scope: dict[str, Any], sub_id: str, body: bytes) -> tuple[ReceivedPush, bool]:
        """The message, once accepted, and whether it was delivered (not kept for an offline
        browser)."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        with self._lock:
            sub = self._subs.get(sub_id)
            gone = sub_id in self._gone
        if sub is None:
            raise _Refused(410 if gone else 404, "no such subscription")
        claims, key = self._verify_vapid(scope, headers)
        if sub.application_server_key and key != sub.application_server_key:
            raise _Refused(403, "the VAPID key is not the one this subscription was made with")
        ttl_text = headers.get("ttl")
        if ttl_text is None or not ttl_text.strip().isdigit():
            raise _Refused(400, "TTL header missing or not a number of seconds")
        urgency, topic = headers.get("urgency"), headers.get("topic")
        if urgency is not None and urgency not in URGENCIES:
            raise _Refused(400, f"Urgency must be one of {', '.join(URGENCIES)}")
        if topic is not None and not _TOPIC.match(topic):
            raise _Refused(400, "Topic must be 1 to 32 characters of the URL-safe base64 alphabet")
        self._scripted_answer(sub_id)
        if headers.get("content-encoding", "").lower() != "aes128gcm":
            raise _Refused(415, "Content-Encoding must be aes128gcm")
        if len(body) > MAX_BODY:
            raise _Refused(413, f"payload over {MAX_BODY} bytes")
        try:
            plaintext = sub.decrypt(body)
        except (http_ece.ECEException, ValueError, binascii.Error) as exc:
            raise _Refused(
                400, f"the payload does not decrypt: {getattr(exc, 'message', type(exc).__name__)}"
            ) from None
        try:
            notification = orjson.loads(plaintext)
        except orjson.JSONDecodeError:
            notification = None
        received = ReceivedPush(
            sub_id,
            notification,
            plaintext,
            int(ttl_text),
            urgency,
            topic,
            str(claims["sub"]),
            key,
            int(claims["exp"]),
            str(scope.get("http_version", "1.1")),
            to_ms(self.clock.now()),
        )
        with self._lock:
            self.accepted += 1
            kept = self._offline.get(sub_id)
            if kept is not None:
                # RFC 8030 §5.4: a message with a Topic replaces one with the same Topic that
                # is still kept for the browser.
                if topic is not None:
                    kept[:] = [k for k in kept if k.topic != topic]
                kept.append(received)
                return received, False
            self._received.append(received)
        return received, True

    def _scripted_answer(self, sub_id: str) -> None:
        with self._lock:
            scripted = self._scripted.get(sub_id)
            if scripted is None:
                return
            if scripted.times is not None:
                scripted.times -= 1
                if scripted.times <= 0:
                    del self._scripted[sub_id]
        raise _ScriptedAnswer(scripted.status, scripted.retry_after, scripted.body)

    def _own_origin(self, scope: dict[str, Any], headers: dict[str, str]) -> str:
        if self.origin:
            return self.origin
        return f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"

    def _verify_vapid(self, scope: dict[str, Any], headers: dict[str, str]) -> tuple[dict[str, Any], str]:
        auth = headers.get("authorization", "")
        scheme, _, rest = auth.partition(" ")
        if scheme.lower() != "vapid":
            raise _Refused(401, "Authorization must be `vapid t=<JWT>, k=<key>` (RFC 8292)")
        params = dict(p.strip().partition("=")[::2] for p in rest.split(","))
        token, key = params.get("t", ""), params.get("k", "")
        if not token or not key:
            raise _Refused(401, "the vapid Authorization needs both t= and k=")
        claims = self._tokens.get(token) if self.cache_tokens else None
        if claims is None or claims.get("__k") != key:
            claims = self._decode(token, key)
            if self.cache_tokens:
                if len(self._tokens) > 10_000:
                    self._tokens.clear()
                self._tokens[token] = {**claims, "__k": key}
        if claims.get("aud") != self._own_origin(scope, headers):
            raise _Refused(403, "the JWT's aud is not this push service's origin")
        exp = claims.get("exp")
        now = self.clock.now()
        if not isinstance(exp, int) or exp <= now.timestamp():
            raise _Refused(403, "the JWT has expired (or has no exp)")
        if exp > (now + MAX_JWT_AHEAD).timestamp():
            raise _Refused(403, "the JWT's exp is more than 24 hours ahead")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
            raise _Refused(403, "the JWT's sub must be a mailto: or https: contact")
        return claims, key

    @staticmethod
    def _decode(token: str, key: str) -> dict[str, Any]:
        try:
            header = orjson.loads(_unb64(token.split(".", 1)[0]))
        except (ValueError, binascii.Error, orjson.JSONDecodeError):
            raise _Refused(401, "the JWT is malformed") from None
        if not isinstance(header, dict) or header.get("alg") != "ES256":
            raise _Refused(401, "the JWT must be signed with ES256")
        try:
            raw_key = _unb64(key)
            if len(raw_key) != 65 or raw_key[0] != 4:
                raise ValueError("not an uncompressed P-256 point")
            claims = vapid_jwt.decode(token, key)
        except (InvalidSignature, ValueError, binascii.Error):
            raise _Refused(401, "the JWT's signature does not verify against k") from None
        if not isinstance(claims, dict):
            raise _Refused(401, "the JWT's claims are not an object")
        return claims


class _ScriptedAnswer(EngineRuntimeError):
    def __init__(self, status: int, retry_after: str | None, body: str) -> None:
        super().__init__(status)
        self.status, self.retry_after, self.body = status, retry_after, body


async def _read(receive: Any, limit: int) -> bytes:
    """The request body, cut at `limit` bytes (more is a 413 anyway)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        if size < limit:
            chunks.append(chunk[: limit - size])
        size += len(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


# -- serving -------------------------------------------------------------------------------------------


@dataclass
class RunningDevPush:
    service: DevPushService
    url: str  # the origin: http://127.0.0.1:port (https:// with TLS)
    _stop: Callable[[], None]
    thread: threading.Thread

    def stop(self) -> None:
        self._stop()
        self.thread.join(timeout=30)


def serve_dev_push(
    service: DevPushService | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
    timeout: float = 30.0,
) -> RunningDevPush:
    """Serve `service` in a background thread: uvicorn (HTTP/1.1), or with a certificate
    hypercorn (HTTP/2 over TLS, as real push services speak; hypercorn is a test extra)."""
    service = service or DevPushService()
    # Bind first and hand the socket over: no window in which another process takes the port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    bound = sock.getsockname()[1]
    service.origin = f"{'https' if certfile else 'http'}://{host}:{bound}"
    started = threading.Event()
    if certfile:
        stop, thread = _hypercorn_thread(service, sock, certfile, keyfile, started)
    else:
        stop, thread = _uvicorn_thread(service, sock, started)
    thread.start()
    if not started.wait(timeout):
        stop()
        raise RuntimeError(f"the dev push service did not start within {timeout:g} s")
    return RunningDevPush(service, service.origin, stop, thread)


def _uvicorn_thread(
    app: Any, sock: socket.socket, started: threading.Event
) -> tuple[Callable[[], None], threading.Thread]:
    import uvicorn

    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)

    def run() -> None:
        import asyncio

        async def main() -> None:
            task = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started and not task.done():
                await asyncio.sleep(0.005)
            started.set()
            await task

        asyncio.run(main())

    def stop() -> None:
        server.should_exit = True

    return stop, threading.Thread(target=run, name="nudgeflow-dev-push", daemon=True)


def _hypercorn_thread(
    app: Any, sock: socket.socket, certfile: str, keyfile: str | None, started: threading.Event
) -> tuple[Callable[[], None], threading.Thread]:
    import asyncio

    try:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config
    except ImportError as exc:  # pragma: no cover - a test extra
        raise RuntimeError("HTTP/2 with TLS needs hypercorn (pip install 'nudgeflow[test]')") from exc
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) the descriptor from here
    config.certfile, config.keyfile = certfile, keyfile or certfile
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = config.errorlog = None
    config.graceful_timeout = 1.0
    config.keep_alive_max_requests = 1_000_000  # hypercorn's default (1,000) sends GOAWAY mid-test
    loop = asyncio.new_event_loop()
    shutdown = asyncio.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_until_complete(serve(app, config, shutdown_trigger=shutdown.wait))
        finally:
            loop.close()

    def stop() -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(shutdown.set)

    return stop, threading.Thread(target=run, name="nudgeflow-dev-push-h2", daemon=True)


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground; prints `URL <origin>` once it listens."""
    parser = argparse.ArgumentParser(description="A local Web Push service (development and benchmarks only).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-token-cache", action="store_true", help="verify every JWT (the benchmark's setting)")
    parser.add_argument("--keep", type=int, default=10_000, help="messages kept for /received")
    parser.add_argument("--certfile", help="PEM certificate (and key): HTTPS with HTTP/2, served by hypercorn")
    parser.add_argument("--keyfile", help="PEM key, when not in --certfile")
    args = parser.parse_args(argv)
    import asyncio

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    service = DevPushService(cache_tokens=not args.no_token_cache, keep=args.keep)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    service.origin = f"{'https' if args.certfile else 'http'}://{args.host}:{sock.getsockname()[1]}"
    print(f"URL {service.origin}", flush=True)
    if args.certfile:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"fd://{sock.detach()}"]
        config.certfile, config.keyfile = args.certfile, args.keyfile or args.certfile
        config.alpn_protocols = ["h2", "http/1.1"]
        config.accesslog = config.errorlog = None
        config.keep_alive_max_requests = 1_000_000
        asyncio.run(serve(service, config))  # type: ignore[arg-type]
        return
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(service, log_config=None, access_log=False, lifespan="on", log_level="warning", backlog=2048)
    )
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
