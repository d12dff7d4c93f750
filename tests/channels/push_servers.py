"""Local servers that speak the mobile push protocols, for the FCM and APNs tests.

Real servers on loopback, no mocks: hypercorn serves each small ASGI app over TLS (a trustme
certificate) with HTTP/2 offered by ALPN, in a thread of its own.

- `ApnsServer`: `POST /3/device/<token>` over HTTP/2 only; checks the headers APNs checks
  (topic, push type, priority, expiration, collapse id, apns-id), verifies the provider
  token's ES256 signature with the team's public key, refuses a token older than an hour
  (ExpiredProviderToken) and, on one connection, a new token within 20 minutes of the last
  (TooManyProviderTokenUpdates), as Apple does; answers what a test scripts for a device
  (410, BadDeviceToken, 429, 500…), and BadDeviceToken to a token of the other environment.
- `FcmServer`: an OAuth2 token endpoint (`POST /token`) that verifies the JWT-bearer grant
  (RS256 assertion signed by the service account key, iss, aud, scope, iat/exp), and the
  FCM v1 endpoint (`POST /v1/projects/<id>/messages:send`) that checks the bearer token it
  issued and the message's shape, and answers UNREGISTERED, QUOTA_EXCEEDED… when scripted.

Both take `now()` (seconds), which tests tie to their virtual clock. Both can take a
notification and hold back their answer (`hold`), as a service does whose answer is lost or
late: the sender's timeout then cancels a send the service has accepted. And both say what a
device shows (`shown`): a notification with the same collapse id (APNs apns-collapse-id,
Android's notification tag) replaces the one shown before, as iOS and Android do.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import trustme
from hypercorn.asyncio import serve
from hypercorn.config import Config

from tests.support import free_port

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    """What an httpx client needs to trust the servers' certificates."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


class Hypercorn:
    """An ASGI app served by hypercorn on 127.0.0.1, TLS with h2 and http/1.1 by ALPN."""

    def __init__(self, app: Callable[..., Any], ca: trustme.CA) -> None:
        self.app = app
        self.ca = ca
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="nudgeflow-push-")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> Hypercorn:
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        certfile, keyfile = Path(self._dir.name, "cert.pem"), Path(self._dir.name, "key.pem")
        certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(keyfile))
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.certfile, config.keyfile = str(certfile), str(keyfile)
        config.alpn_protocols = ["h2", "http/1.1"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.5
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stop = asyncio.Event()
            ready.set()
            try:
                loop.run_until_complete(serve(self.app, config, shutdown_trigger=self._stop.wait))  # type: ignore[arg-type]
            except BaseException as exc:  # reported by start()/stop()
                self._error = exc
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="push-test-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._error is not None:
                raise RuntimeError(f"the test server did not start: {self._error!r}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("the test server did not start listening")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
        self._dir.cleanup()


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(send: Send, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
    raw = b"" if body is None else json.dumps(body).encode()
    head = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if body is not None:
        head.append((b"content-type", b"application/json"))
    head.append((b"content-length", str(len(raw)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})


def request_headers(scope: Scope) -> dict[str, str]:
    return {k.decode().lower(): v.decode() for k, v in scope["headers"]}


async def lifespan(scope: Scope, receive: Receive, send: Send) -> bool:
    if scope["type"] != "lifespan":
        return False
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return True


class Withholding:
    """Accept a device's next notification and answer it only on `release` (see the module
    docstring). `arrived` is set once such a notification has been taken."""

    def _init_withholding(self) -> None:
        self.holding: set[str] = set()
        self.arrived = threading.Event()
        self._gates: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def hold(self, device: str) -> None:
        self.holding.add(device)

    async def _withhold(self, device: str) -> None:
        if device not in self.holding:
            return
        self.holding.discard(device)
        gate = asyncio.Event()
        self._gates.append((asyncio.get_running_loop(), gate))
        self.arrived.set()
        await gate.wait()

    def release(self) -> None:
        for loop, gate in self._gates:
            if not loop.is_closed():
                loop.call_soon_threadsafe(gate.set)
        self._gates.clear()


def shown(accepted: list[tuple[str | None, Any]]) -> list[Any]:
    """What a device shows of the notifications it was given, in order: (collapse id,
    notification); one with the collapse id of one already shown replaces it."""
    out: list[tuple[str | None, Any]] = []
    for collapse, notification in accepted:
        out = [(c, n) for c, n in out if collapse is None or c != collapse]
        out.append((collapse, notification))
    return [n for _, n in out]


# -- APNs ------------------------------------------------------------------------------------

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")


@dataclass
class ApnsRequest:
    device: str
    http_version: str
    headers: dict[str, str]
    payload: Any
    provider_token: str | None
    claims: dict[str, Any] | None
    status: int = 0
    reason: str | None = None


@dataclass
class ApnsServer(Withholding):
    """Plays APNs for one team and key (see the module docstring)."""

    team_id: str
    key_id: str
    public_key: Any  # the EC public key of the .p8 key
    now: Callable[[], float]
    topics: set[str] = field(default_factory=lambda: {"com.example.shop"})
    requests: list[ApnsRequest] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)  # devices answered 410 Unregistered
    # Tokens of the other environment (a development build's, sent to this production
    # server, or the reverse): answered 400 BadDeviceToken, as Apple does.
    other_environment: set[str] = field(default_factory=set)
    scripted: dict[str, list[tuple[int, str, dict[str, str]]]] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)  # provider tokens answered ExpiredProviderToken
    provider_tokens: list[str] = field(default_factory=list)  # distinct, in the order first seen
    url: str = ""  # set once served, for the settings that point a sender at it
    _last_new_iat: dict[Any, int] = field(default_factory=dict)  # per connection
    _current: dict[Any, str] = field(default_factory=dict)  # the token a connection uses

    def __post_init__(self) -> None:
        self._init_withholding()

    def shown(self, device: str) -> list[Any]:
        """The payloads the device shows (collapsed by apns-collapse-id)."""
        return shown([(r.headers.get("apns-collapse-id"), r.payload) for r in self.sent() if r.device == device])

    def script(self, device: str, *answers: tuple[int, str] | tuple[int, str, dict[str, str]]) -> None:
        """The next answers for a device, in order (then 200 again)."""
        self.scripted.setdefault(device, []).extend((a[0], a[1], a[2] if len(a) > 2 else {}) for a in answers)  # type: ignore[misc]

    def expire_current_tokens(self) -> None:
        self.expired.update(self.provider_tokens)

    def sent(self) -> list[ApnsRequest]:
        return [r for r in self.requests if r.status == 200]

    def _check_token(self, value: str | None, connection: Any) -> tuple[int, str, dict[str, Any] | None]:
        if not value:
            return 403, "MissingProviderToken", None
        try:
            header = jwt.get_unverified_header(value)
            claims = jwt.decode(
                value,
                self.public_key,
                algorithms=["ES256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "require": ["iss", "iat"]},
            )
        except jwt.PyJWTError:
            return 403, "InvalidProviderToken", None
        if header.get("alg") != "ES256" or header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            return 403, "InvalidProviderToken", claims
        iat = int(claims["iat"])
        if value in self.expired or self.now() - iat > 3600:
            return 403, "ExpiredProviderToken", claims
        if value not in self.provider_tokens:
            last = self._last_new_iat.get(connection)
            if last is not None and iat - last < 20 * 60:
                return 429, "TooManyProviderTokenUpdates", claims
            self.provider_tokens.append(value)
        if value != self._current.get(connection):
            self._current[connection] = value
            self._last_new_iat[connection] = iat
        return 200, "", claims

    def _answer(
        self, scope: Scope, device: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, dict[str, str], ApnsRequest]:
        auth = headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else None
        req = ApnsRequest(device, scope.get("http_version", ""), headers, None, token, None)
        if req.http_version != "2":
            return 400, "HTTP2Required", {}, req  # Apple speaks HTTP/2 only
        status, reason, claims = self._check_token(token, tuple(scope.get("client") or ()))
        req.claims = claims
        if status != 200:
            return status, reason, {}, req
        topic = headers.get("apns-topic")
        if not topic:
            return 400, "MissingTopic", {}, req
        if topic not in self.topics:
            return 400, "TopicDisallowed", {}, req
        if headers.get("apns-push-type") not in (
            "alert",
            "background",
            "voip",
            "complication",
            "fileprovider",
            "mdm",
            "liveactivity",
        ):
            return 400, "InvalidPushType", {}, req
        if headers.get("apns-priority", "10") not in ("5", "10", "1"):
            return 400, "BadPriority", {}, req
        if not headers.get("apns-expiration", "0").isdigit():
            return 400, "BadExpirationDate", {}, req
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return 400, "BadCollapseId", {}, req
        if "apns-id" in headers and not _UUID.match(headers["apns-id"]):
            return 400, "BadMessageId", {}, req
        if not _HEX.match(device):
            return 400, "BadDeviceToken", {}, req
        if len(body) > 4096:
            return 413, "PayloadTooLarge", {}, req
        try:
            req.payload = json.loads(body)
        except ValueError:
            return 400, "BadPayload", {}, req
        if not isinstance(req.payload, dict) or not isinstance(req.payload.get("aps"), dict):
            return 400, "PayloadEmpty", {}, req
        if device in self.other_environment:
            return 400, "BadDeviceToken", {}, req
        if device in self.gone:
            return 410, "Unregistered", {}, req
        queue = self.scripted.get(device)
        if queue:
            status, reason, extra = queue.pop(0)
            return status, reason, extra, req
        return 200, "", {}, req

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await lifespan(scope, receive, send):
            return
        body = await read_body(receive)
        path = scope["path"]
        if scope["method"] != "POST" or not path.startswith("/3/device/"):
            await respond(
                send,
                405 if path.startswith("/3/device/") else 404,
                {"reason": "MethodNotAllowed" if path.startswith("/3/device/") else "BadPath"},
            )
            return
        headers = request_headers(scope)
        status, reason, extra, req = self._answer(scope, path[len("/3/device/") :], headers, body)
        req.status, req.reason = status, reason or None
        self.requests.append(req)
        answer_headers = {"apns-id": headers.get("apns-id") or str(uuid.uuid4()), **extra}
        if status == 200:
            await self._withhold(req.device)
            await respond(send, 200, None, answer_headers)
            return
        out: dict[str, Any] = {"reason": reason}
        if status == 410:
            out["timestamp"] = int(self.now() * 1000)
        await respond(send, status, out, answer_headers)


# -- FCM and its OAuth2 token endpoint -------------------------------------------------------


@dataclass
class FcmRequest:
    http_version: str
    project: str
    access_token: str | None
    body: Any
    status: int = 0
    error_code: str | None = None


def fcm_error(
    status: int, grpc: str, message: str, error_code: str | None = None, violations: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    details: list[dict[str, Any]] = []
    if error_code:
        details.append({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code})
    if violations:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations})
    return {"error": {"code": status, "message": message, "status": grpc, "details": details}}


# What FCM answers, by the name of its error code (as the FCM v1 reference documents them).
FCM_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "UNREGISTERED": (404, fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")),
    "INVALID_TOKEN": (
        400,
        fcm_error(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            "INVALID_ARGUMENT",
            [{"field": "message.token", "description": "Invalid registration token"}],
        ),
    ),
    "INVALID_MESSAGE": (
        400,
        fcm_error(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)",
            "INVALID_ARGUMENT",
            [{"field": "message.android.ttl", "description": "Invalid value"}],
        ),
    ),
    "QUOTA_EXCEEDED": (
        429,
        fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Send messages'.", "QUOTA_EXCEEDED"),
    ),
    "UNAVAILABLE": (503, fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE")),
    "INTERNAL": (500, fcm_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL")),
    "SENDER_ID_MISMATCH": (403, fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH")),
    "THIRD_PARTY_AUTH_ERROR": (
        401,
        fcm_error(401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", "THIRD_PARTY_AUTH_ERROR"),
    ),
}

_RESERVED_DATA = re.compile(r"^(from|message_type|notification|google.*|gcm.*)$", re.I)
_DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")
_MESSAGE_FIELDS = {
    "token",
    "topic",
    "condition",
    "name",
    "data",
    "notification",
    "android",
    "webpush",
    "apns",
    "fcm_options",
}


def check_message(body: Any) -> str | None:
    """What FCM would refuse in a messages:send body (None: nothing)."""
    if (
        not isinstance(body, dict)
        or set(body) - {"message", "validate_only"}
        or not isinstance(body.get("message"), dict)
    ):
        return 'Invalid JSON payload received: expected {"message": {...}}'
    message = body["message"]
    unknown = set(message) - _MESSAGE_FIELDS
    if unknown:
        return f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" at 'message'"
    if sum(1 for k in ("token", "topic", "condition") if k in message) != 1 or not isinstance(
        message.get("token"), str
    ):
        return "Exactly one of token, topic or condition must be given"
    notification = message.get("notification", {})
    if (
        not isinstance(notification, dict)
        or set(notification) - {"title", "body", "image"}
        or not all(isinstance(v, str) for v in notification.values())
    ):
        return "Invalid value at 'message.notification'"
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        return "Invalid value at 'message.data': values must be strings"
    if any(_RESERVED_DATA.match(k) for k in data):
        return "Invalid data payload key: reserved"
    if len(json.dumps({"notification": notification, "data": data}, separators=(",", ":")).encode()) > 4096:
        return "Message is too big"
    android = message.get("android", {})
    if not isinstance(android, dict) or set(android) - {
        "collapse_key",
        "priority",
        "ttl",
        "restricted_package_name",
        "data",
        "notification",
        "fcm_options",
        "direct_boot_ok",
    }:
        return "Invalid value at 'message.android'"
    if "ttl" in android and not (isinstance(android["ttl"], str) and _DURATION.match(android["ttl"])):
        return "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)"
    if "priority" in android and android["priority"] not in ("normal", "high", "NORMAL", "HIGH"):
        return "Invalid value at 'message.android.priority'"
    shown = android.get("notification", {})
    if not isinstance(shown, dict) or not all(isinstance(v, str) for k, v in shown.items() if k == "tag"):
        return "Invalid value at 'message.android.notification'"
    return None


@dataclass
class FcmServer(Withholding):
    """Plays Google's token endpoint and FCM v1 for one service account and project."""

    project_id: str
    client_email: str
    key_id: str
    public_key: Any  # the service account key's RSA public key
    now: Callable[[], float]
    url: str = ""  # set once served: the assertion's audience is url + "/token"
    requests: list[FcmRequest] = field(default_factory=list)
    assertions: list[dict[str, Any]] = field(default_factory=list)  # claims of every accepted grant
    issued: dict[str, float] = field(default_factory=dict)  # access token -> expires at (now())
    token_lifetime_s: int = 3599
    gone: set[str] = field(default_factory=set)
    scripted: dict[str, list[tuple[str, dict[str, str]]]] = field(default_factory=dict)
    token_endpoint_answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    _n: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self._init_withholding()

    def shown(self, device: str) -> list[Any]:
        """The messages an Android device shows (collapsed by android.notification.tag)."""
        return shown(
            [
                ((r.body["message"].get("android") or {}).get("notification", {}).get("tag"), r.body["message"])
                for r in self.sent()
                if r.body["message"]["token"] == device
            ]
        )

    def script(self, device: str, *answers: str | tuple[str, dict[str, str]]) -> None:
        """The next answers for a device, by FCM_ERRORS name (with extra headers), then 200."""
        self.scripted.setdefault(device, []).extend((a, {}) if isinstance(a, str) else a for a in answers)

    def revoke_tokens(self) -> None:
        self.issued.clear()

    def sent(self) -> list[FcmRequest]:
        return [r for r in self.requests if r.status == 200]

    async def _token(self, receive: Receive, send: Send) -> None:
        form = {k: v[-1] for k, v in parse_qs((await read_body(receive)).decode()).items()}
        if self.token_endpoint_answers:
            status, body = self.token_endpoint_answers.pop(0)
            await respond(send, status, body)
            return
        if form.get("grant_type") != JWT_BEARER:
            await respond(send, 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"})
            return
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256"],
                audience=self.url + "/token",
                options={"verify_exp": False, "verify_iat": False, "require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.PyJWTError as exc:
            await respond(
                send,
                400,
                {"error": "invalid_grant", "error_description": f"Invalid JWT Signature. ({type(exc).__name__})"},
            )
            return
        now = self.now()
        if header.get("kid") != self.key_id or claims["iss"] != self.client_email:
            await respond(
                send, 400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
            )
            return
        if FCM_SCOPE not in str(claims["scope"]).split():
            await respond(send, 400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope"})
            return
        if not (claims["exp"] - claims["iat"] <= 3600 and abs(claims["iat"] - now) <= 300 and claims["exp"] > now):
            await respond(
                send,
                400,
                {
                    "error": "invalid_grant",
                    "error_description": (
                        "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
                    ),
                },
            )
            return
        self.assertions.append(claims)
        token = f"ya29.test-{next(self._n)}-{uuid.uuid4().hex[:8]}"
        self.issued[token] = now + self.token_lifetime_s
        await respond(send, 200, {"access_token": token, "expires_in": self.token_lifetime_s, "token_type": "Bearer"})

    async def _send(self, scope: Scope, project: str, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        auth = headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        raw = await read_body(receive)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        req = FcmRequest(scope.get("http_version", ""), project, token, body)
        self.requests.append(req)

        async def answer(
            status: int, payload: Any, extra: dict[str, str] | None = None, code: str | None = None
        ) -> None:
            req.status, req.error_code = status, code
            await respond(send, status, payload, extra)

        if token is None or token not in self.issued or self.issued[token] <= self.now():
            await answer(
                401,
                fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
                code="UNAUTHENTICATED",
            )
            return
        if project != self.project_id:
            await answer(
                403,
                fcm_error(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied"),
                code="PERMISSION_DENIED",
            )
            return
        problem = check_message(body)
        if problem:
            await answer(400, fcm_error(400, "INVALID_ARGUMENT", problem, "INVALID_ARGUMENT"), code="INVALID_ARGUMENT")
            return
        device = body["message"]["token"]
        if device in self.gone:
            status, payload = FCM_ERRORS["UNREGISTERED"]
            await answer(status, payload, code="UNREGISTERED")
            return
        queue = self.scripted.get(device)
        if queue:
            name, extra = queue.pop(0)
            status, payload = FCM_ERRORS[name]
            await answer(status, payload, extra, code=name)
            return
        req.status = 200  # taken, whether or not its answer gets back
        await self._withhold(device)
        await answer(200, {"name": f"projects/{project}/messages/0:{next(self._n)}%{uuid.uuid4().hex[:12]}"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await lifespan(scope, receive, send):
            return
        path = scope["path"]
        if scope["method"] == "POST" and path == "/token":
            await self._token(receive, send)
            return
        match = re.fullmatch(r"/v1/projects/([^/]+)/messages:send", path)
        if scope["method"] == "POST" and match:
            await self._send(scope, match.group(1), receive, send)
            return
        await read_body(receive)
        await respond(send, 404, fcm_error(404, "NOT_FOUND", "Not found"))


# -- credentials the tests make ---------------------------------------------------------------


def service_account_json(key: Any, token_uri: str, project_id: str, client_email: str, key_id: str) -> dict[str, Any]:
    """A service account key file's content, as the Google Cloud console hands it out."""
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": key_id,
        "private_key": pem.decode(),
        "client_email": client_email,
        "client_id": "1234567890",
        "token_uri": token_uri,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    }


def p8_pem(key: Any) -> str:
    """An EC key as Apple's AuthKey_<key id>.p8 file holds it (PKCS#8 PEM)."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
