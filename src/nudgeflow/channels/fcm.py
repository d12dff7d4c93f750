"""FCM HTTP v1: push messages to Android (and FCM-registered iOS) devices.

    POST {api_base}/v1/projects/{project_id}/messages:send
    Authorization: Bearer <OAuth2 access token of a service account>

The access token comes from the service account's token endpoint by the JWT-bearer grant
(RFC 7523): an assertion signed with the service account's key through google-auth's signer
and JWT encoder, with the claims google-auth itself makes (iss = the account's email,
scope = firebase.messaging, aud = the token endpoint, iat and exp an hour apart). We post
it with our own async HTTP client rather than google-auth's synchronous refresh, so a
refresh neither blocks the event loop nor reads the wall clock: times come from the
injected clock. A token is reused until five minutes before it expires, and one refresh
serves every send waiting for it.

Outcomes (FCM's error details, `google.firebase.fcm.v1.FcmError` errorCode):
- UNREGISTERED, and INVALID_ARGUMENT about the token -> TargetGone (the token is deleted);
- QUOTA_EXCEEDED / 429, UNAVAILABLE / 503, INTERNAL / 500 and other 5xx -> TransientError,
  after Retry-After when the service gives one;
- a 401 for our access token -> one fresh token and one more try; after that, and for
  SENDER_ID_MISMATCH, THIRD_PARTY_AUTH_ERROR, 403 and any other 4xx (an INVALID_ARGUMENT
  about the message) -> PermanentError: the service says another try will fail the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson

from nudgeflow.channels.base import PermanentError, TransientError, reason_text, retry_after_s
from nudgeflow.channels.common import TargetGone
from nudgeflow.channels.push_config import (
    FCM_SCOPE,
    FCM_SECTION,
    FcmConfig,
    WorkspaceCredentials,
    keep_tokens_out_of_http_logs,
)
from nudgeflow.channels.push_limits import FCM_MAX_PAYLOAD, PayloadTooLarge, apns_collapse_id
from nudgeflow.content.push_render import PushContent
from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.store.push_targets import PushTarget

log = logging.getLogger("nudgeflow.push.fcm")

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 3600  # what google-auth asks for, and the most Google accepts
REFRESH_MARGIN = timedelta(minutes=5)  # a token is replaced this long before it expires
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
TRANSIENT = {"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"}
# FCM refuses data keys that collide with its own fields.
RESERVED_DATA_KEYS = {"from", "message_type", "notification"}
RESERVED_DATA_PREFIXES = ("google", "gcm")
LOW_URGENCY = ("low", "very-low")
APPLE_PLATFORMS = ("ios", "ipados", "macos", "tvos", "watchos")


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: datetime  # on the injected clock
    refresh_at: datetime  # a little before it expires: no send goes out with a dying token

    @classmethod
    def issued(cls, value: str, now: datetime, lifetime_s: float) -> AccessToken:
        lifetime = timedelta(seconds=max(0.0, lifetime_s))
        return cls(value, now + lifetime, now + lifetime - min(REFRESH_MARGIN, lifetime / 2))

    def fresh(self, now: datetime) -> bool:
        return now < self.refresh_at


@dataclass(frozen=True)
class FcmFailure:
    """An error answer from FCM, as far as its body says."""

    status_code: int
    status: str | None  # the google.rpc status: NOT_FOUND, INVALID_ARGUMENT, …
    error_code: str | None  # FcmError.errorCode: UNREGISTERED, QUOTA_EXCEEDED, …
    message: str
    about_token: bool  # the error names the registration token (not the message)

    @property
    def code(self) -> str:
        return self.error_code or self.status or f"HTTP {self.status_code}"


def parse_failure(response: httpx.Response) -> FcmFailure:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return FcmFailure(response.status_code, None, None, reason_text(response.text), False)
    message = str(error.get("message") or "")
    error_code = None
    about_token = "registration token" in message.lower()
    for detail in error.get("details") or ():
        if not isinstance(detail, dict):
            continue
        if detail.get("@type") == FCM_ERROR_TYPE and detail.get("errorCode"):
            error_code = str(detail["errorCode"])
        elif detail.get("@type") == BAD_REQUEST_TYPE:
            for violation in detail.get("fieldViolations") or ():
                if isinstance(violation, dict) and violation.get("field") == "message.token":
                    about_token = True
    status = error.get("status")
    return FcmFailure(
        response.status_code, str(status) if status else None, error_code, reason_text(message), about_token
    )


def classify(failure: FcmFailure, retry_after: float | None) -> Exception:
    """The channel error an FCM failure means (see the module docstring)."""
    code = failure.code
    reason = f"FCM {failure.status_code} {code}: {failure.message}".rstrip(": ")
    if failure.error_code == "UNREGISTERED":
        return TargetGone(reason)
    if code == "INVALID_ARGUMENT" and failure.about_token:
        return TargetGone(reason)
    if code in TRANSIENT or failure.status_code == 429 or failure.status_code >= 500:
        return TransientError(reason, retry_after_s=retry_after)
    return PermanentError(reason)


def _check_data(data: dict[str, str]) -> None:
    for key in data:
        if key.lower() in RESERVED_DATA_KEYS or key.lower().startswith(RESERVED_DATA_PREFIXES):
            raise PermanentError(
                f"FCM: the data key {key!r} is reserved by FCM (from, message_type, notification, google…, gcm…): "
                "rename it in the template"
            )


def fcm_message(target: PushTarget, content: PushContent, now_ms: int) -> dict[str, Any]:
    """The `messages:send` body for one device; PayloadTooLarge past FCM's 4 KB."""
    notification: dict[str, str] = {"title": content.title, "body": content.body}
    if content.image:
        notification["image"] = content.image
    # Data values must be strings: what the app reads beside the notification.
    data = {str(k): str(v) for k, v in content.data.items()}
    _check_data(data)
    data["key"] = content.message_key
    for name in ("url", "report_url", "image", "icon"):
        value = getattr(content, name)
        if value:
            data[name] = value
    if content.actions:
        data["actions"] = orjson.dumps(list(content.actions)).decode()
    size = len(orjson.dumps({"notification": notification, "data": data}))
    if size > FCM_MAX_PAYLOAD:
        raise PayloadTooLarge("FCM", size, FCM_MAX_PAYLOAD)
    low = content.urgency in LOW_URGENCY
    android: dict[str, Any] = {"ttl": f"{content.ttl_at(now_ms)}s", "priority": "normal" if low else "high"}
    if content.collapse_key:
        # Not the message key when there is none: FCM keeps at most 4 collapse keys per device.
        android["collapse_key"] = content.collapse_key
    # FCM has no idempotency key: a retry of a send accepted but unanswered (a timeout) is a
    # second message. The tag makes Android show it in place of the first.
    android["notification"] = {"tag": content.replace_id}
    message: dict[str, Any] = {"token": target.address, "notification": notification, "data": data, "android": android}
    if (target.platform or "").lower() in APPLE_PLATFORMS:
        # An iOS app registered with FCM: FCM relays to APNs, which reads these headers.
        headers = {
            "apns-expiration": str(content.expires_at_ms // 1000),
            "apns-priority": "5" if low else "10",
            "apns-collapse-id": apns_collapse_id(content),
        }
        message["apns"] = {"headers": headers}
        if content.image:
            message["apns"]["payload"] = {"aps": {"mutable-content": 1}}
    return {"message": message}


class FcmSender:
    """Sends push messages to FCM device tokens (provider "fcm"); see the module docstring."""

    provider = "fcm"

    def __init__(
        self,
        engine: Any,
        clock: Clock,
        *,
        default: Callable[[], FcmConfig | None] | None = None,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.clock = clock
        self.credentials: WorkspaceCredentials[FcmConfig] = WorkspaceCredentials(
            engine, FCM_SECTION, "FCM", default, clock
        )
        self._client = client
        self._owns_client = client is None
        self._timeout_s = timeout_s
        self._tokens: dict[str, AccessToken] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # the one the client and the locks belong to
        self._google: dict[str, Any] = {}  # google-auth credentials (the loaded key) per fingerprint
        keep_tokens_out_of_http_logs()

    def _bind(self) -> None:
        """The HTTP client's connections and the token locks belong to the event loop they
        were made in, and run_until_idle sends each round in a loop of its own: in another
        loop, new ones (the old loop's connections went with it). A client given to the
        sender is the caller's, used as it is."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        self._locks = {}
        if self._owns_client:
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        self._bind()
        if self._client is None:  # made on first use, inside the loop that uses it
            self._client = httpx.AsyncClient(http2=True, timeout=self._timeout_s)
        return self._client

    async def send(self, workspace_id: str, target: PushTarget, content: PushContent) -> None:
        config = await self.credentials.for_workspace(workspace_id)
        body = orjson.dumps(fcm_message(target, content, to_ms(self.clock.now())))
        for attempt in (1, 2):
            token = await self.access_token(config)
            try:
                response = await self.client.post(
                    config.send_url,
                    content=body,
                    headers={
                        "authorization": f"Bearer {token.value}",
                        "content-type": "application/json; charset=utf-8",
                    },
                )
            except httpx.TransportError as exc:  # timeouts, refused and lost connections
                raise TransientError(f"FCM: {type(exc).__name__}") from exc
            if response.status_code == 200:
                return
            failure = parse_failure(response)
            if response.status_code == 401 and failure.error_code != "THIRD_PARTY_AUTH_ERROR" and attempt == 1:
                # Our access token was refused (revoked, or the clocks disagree): one new one.
                self._forget(config, token)
                continue
            error = classify(failure, retry_after_s(response.headers.get("retry-after"), self.clock.now()))
            if isinstance(error, TargetGone):
                log.info("FCM token gone", extra={"target": target.redacted(), "code": failure.code})
            raise error

    # -- OAuth2 access tokens -------------------------------------------------------------------

    def _forget(self, config: FcmConfig, token: AccessToken) -> None:
        key = config.fingerprint()
        if self._tokens.get(key) is token:
            del self._tokens[key]

    async def access_token(self, config: FcmConfig) -> AccessToken:
        """The cached token while it is fresh; otherwise one refresh for all who wait."""
        key = config.fingerprint()
        token = self._tokens.get(key)
        if token is not None and token.fresh(self.clock.now()):
            return token
        self._bind()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            token = self._tokens.get(key)
            if token is not None and token.fresh(self.clock.now()):
                return token  # another send refreshed it while we waited
            token = await self._fetch_token(config)
            self._tokens[key] = token
            return token

    def _assertion(self, config: FcmConfig, now: datetime) -> str:
        from google.auth import jwt

        credentials = self._google.get(config.fingerprint())
        if credentials is None:
            credentials = self._google[config.fingerprint()] = config.google_credentials()
        iat = int(now.timestamp())
        claims = {
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME_S,
            "iss": credentials.service_account_email,
            "aud": config.effective_token_uri,
            "scope": FCM_SCOPE,
        }
        assertion = jwt.encode(credentials.signer, claims)
        return assertion.decode() if isinstance(assertion, bytes) else str(assertion)

    async def _fetch_token(self, config: FcmConfig) -> AccessToken:
        now = self.clock.now()
        try:
            response = await self.client.post(
                config.effective_token_uri,
                data={"grant_type": JWT_BEARER, "assertion": self._assertion(config, now)},
                headers={"accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise TransientError(f"FCM: the OAuth token endpoint: {type(exc).__name__}") from exc
        if response.status_code != 200:
            reason = _token_error(response)
            if response.status_code == 429 or response.status_code >= 500:
                raise TransientError(
                    f"FCM: the OAuth token endpoint answered {response.status_code}: {reason}",
                    retry_after_s=retry_after_s(response.headers.get("retry-after"), now),
                )
            # invalid_grant and friends: a deleted key, a disabled account, a wrong token_uri.
            raise PermanentError(f"FCM: the service account was refused a token ({response.status_code}): {reason}")
        try:
            body = response.json()
            value = body["access_token"]
            lifetime = float(body.get("expires_in", ASSERTION_LIFETIME_S))
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientError("FCM: the OAuth token endpoint answered without an access token") from exc
        if not isinstance(value, str) or not value:
            raise TransientError("FCM: the OAuth token endpoint answered without an access token")
        log.info("FCM access token refreshed", extra={"account": config.client_email, "expires_in": lifetime})
        return AccessToken.issued(value, now, lifetime)

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            if self._loop is asyncio.get_running_loop():  # else its loop, and its connections, are gone
                await client.aclose()


def _token_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return reason_text(response.text) or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        parts = [str(body.get("error") or ""), str(body.get("error_description") or "")]
        return ": ".join(p for p in parts if p) or f"HTTP {response.status_code}"
    return f"HTTP {response.status_code}"
