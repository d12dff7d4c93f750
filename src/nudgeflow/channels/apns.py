"""APNs: push messages to Apple devices over HTTP/2, with token-based (ES256) authentication.

    POST {base}/3/device/<device token>        (HTTP/2 only; base: api.push.apple.com or
                                                api.sandbox.push.apple.com, or configured)
    authorization: bearer <provider token>      ES256 JWT: header kid = key id; claims iss =
                                                team id, iat
    apns-topic, apns-push-type: alert, apns-priority, apns-expiration, apns-collapse-id, apns-id

The provider token is made once and reused for every request until it is 50 minutes old
(Apple refuses tokens older than an hour, and answers TooManyProviderTokenUpdates to a
server that makes new ones more often than every 20 minutes). An ExpiredProviderToken
answer replaces it once, for every send that saw it, and the send is tried again at once.

apns-id is a UUID derived from the message's idempotency key and the device token: a retry
after a crash or a 5xx carries the same id, so it is one notification in Apple's reports.
Apple does not drop a second request with the same apns-id, though: what keeps a retry of a
send that was accepted but whose answer never came (a timeout) from showing twice is
apns-collapse-id, the template's collapse_key or else one derived from the message key, so
that the device shows the second copy in place of the first.

Outcomes: 200 sent; 410 (Unregistered, ExpiredToken) -> TargetGone (the token is deleted:
Apple says it is no longer active for the topic); 429, 500 and 503 -> TransientError (after
Retry-After when given); any other 4xx -> PermanentError with Apple's reason, never retried.

400 BadDeviceToken and DeviceTokenNotForTopic do not delete the token. Apple answers
BadDeviceToken to a token that does not match the environment it was sent to (a development
build's token sent to production, or the reverse), so a workspace whose `sandbox` setting is
wrong would have had every token deleted; DeviceTokenNotForTopic, likewise, to every token
when the topic is wrong. Both are a ChannelProblem naming the likely cause (the token is
kept and the message fails); once WRONG_ENVIRONMENT_ALERT distinct tokens of a workspace got
BadDeviceToken from one environment with none accepted since, the reason says the setting is
most likely wrong, and a warning is logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson

from nudgeflow.channels.base import ChannelProblem, PermanentError, TransientError, reason_text, retry_after_s
from nudgeflow.channels.common import TargetGone
from nudgeflow.channels.push_config import (
    APNS_SECTION,
    ApnsConfig,
    WorkspaceCredentials,
    keep_tokens_out_of_http_logs,
)
from nudgeflow.channels.push_limits import APNS_MAX_COLLAPSE_ID, APNS_MAX_PAYLOAD, PayloadTooLarge, apns_collapse_id
from nudgeflow.content.push_render import PushContent
from nudgeflow.core.clock import Clock
from nudgeflow.store.push_targets import PushTarget

log = logging.getLogger("nudgeflow.push.apns")

TOKEN_REFRESH_AFTER = timedelta(minutes=50)  # under Apple's hour, over its 20-minute minimum
MAX_COLLAPSE_ID = APNS_MAX_COLLAPSE_ID  # bytes
# Distinct tokens of a workspace answered BadDeviceToken by one environment, none accepted
# since, from which the sandbox setting is said to be most likely wrong.
WRONG_ENVIRONMENT_ALERT = 3
_MAX_TRACKED = 10_000  # tokens remembered per workspace and environment (memory stays bounded)
LOW_URGENCY = ("low", "very-low")
_APNS_ID_NAMESPACE = uuid.UUID("5b0a3c1e-8f2d-4d1a-9c67-0e4f6a2b7d10")  # Nudgeflow's, for apns-id
_HEX = re.compile(r"^[0-9A-Fa-f]{16,400}$")


@dataclass(frozen=True)
class ProviderToken:
    value: str
    issued_at: datetime  # the iat, on the injected clock


def apns_id(message_key: str, device_token: str) -> str:
    """The same message to the same device always has the same apns-id (retries included)."""
    return str(uuid.uuid5(_APNS_ID_NAMESPACE, f"{message_key}\n{device_token.lower()}"))


def apns_payload(content: PushContent) -> bytes:
    """The JSON payload: `aps` for the system, the rest for the app; PayloadTooLarge past 4 KB."""
    low = content.urgency in LOW_URGENCY
    aps: dict[str, Any] = {"alert": {"title": content.title, "body": content.body}}
    if not low:
        aps["sound"] = "default"
    if content.image:
        aps["mutable-content"] = 1  # the app's notification service extension attaches the image
    extra = {k: v for k, v in content.notification().items() if k not in ("title", "body")}
    payload = orjson.dumps({"aps": aps, **extra})
    if len(payload) > APNS_MAX_PAYLOAD:
        raise PayloadTooLarge("APNs", len(payload), APNS_MAX_PAYLOAD)
    return payload


def apns_headers(content: PushContent, topic: str, device_token: str) -> dict[str, str]:
    headers = {
        "apns-topic": topic,
        "apns-push-type": "alert",
        "apns-priority": "5" if content.urgency in LOW_URGENCY else "10",
        # APNs stores the notification for an offline device until then, and never after.
        "apns-expiration": str(content.expires_at_ms // 1000),
        "apns-id": apns_id(content.message_key, device_token),
    }
    if content.collapse_key:
        size = len(content.collapse_key.encode())
        if size > MAX_COLLAPSE_ID:
            raise PermanentError(
                f"APNs: the collapse_key is {size} bytes, over APNs' limit of {MAX_COLLAPSE_ID}: "
                "shorten it in the template"
            )
    headers["apns-collapse-id"] = apns_collapse_id(content)
    return headers


def classify(status: int, reason: str, retry_after: float | None) -> Exception:
    """The channel error an APNs answer means (see the module docstring)."""
    text = f"APNs {status} {reason}".strip()
    if status == 410:
        return TargetGone(text)
    if status == 400 and reason == "BadDeviceToken":
        return ChannelProblem(f"{text}: the token is not valid in this APNs environment; the token is kept")
    if status == 400 and reason == "DeviceTokenNotForTopic":
        return ChannelProblem(
            f"{text}: the token is of another app than the apns-topic (the device's app id, else the "
            "workspace's APNs topic); the token is kept"
        )
    if status in (429, 500, 503) or status >= 500:
        return TransientError(text, retry_after_s=retry_after)
    return PermanentError(text)


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return reason_text(response.text, 100)
    return reason_text(str(body.get("reason") or ""), 100) if isinstance(body, dict) else ""


class ApnsSender:
    """Sends push messages to APNs device tokens (provider "apns"); see the module docstring."""

    provider = "apns"

    def __init__(
        self,
        engine: Any,
        clock: Clock,
        *,
        default: Callable[[], ApnsConfig | None] | None = None,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.clock = clock
        self.credentials: WorkspaceCredentials[ApnsConfig] = WorkspaceCredentials(
            engine, APNS_SECTION, "APNs", default, clock
        )
        self._client = client
        self._owns_client = client is None
        self._timeout_s = timeout_s
        self._tokens: dict[str, ProviderToken] = {}
        self._keys: dict[str, Any] = {}  # loaded signing keys per credentials fingerprint
        self._loop: asyncio.AbstractEventLoop | None = None  # the one the client belongs to
        # (workspace, APNs base URL) -> hashes of the tokens answered BadDeviceToken since
        # the last one that environment accepted for the workspace.
        self._bad_tokens: dict[tuple[str, str], set[str]] = {}
        keep_tokens_out_of_http_logs()

    @property
    def client(self) -> httpx.AsyncClient:
        # The client's connections belong to the event loop they were made in, and
        # run_until_idle sends each round in a loop of its own: in another loop, a new
        # client (the old loop's connections went with it). A given client is used as it is.
        loop = asyncio.get_running_loop()
        if self._owns_client and self._loop is not loop:
            self._client = None
        self._loop = loop
        if self._client is None:  # APNs speaks HTTP/2 only
            self._client = httpx.AsyncClient(http2=True, timeout=self._timeout_s)
        return self._client

    async def send(self, workspace_id: str, target: PushTarget, content: PushContent) -> None:
        config = await self.credentials.for_workspace(workspace_id)
        device = target.address
        if not _HEX.match(device):
            raise TargetGone("APNs: not a device token (APNs device tokens are hexadecimal)")
        topic = target.app_id or config.topic
        if not topic:
            raise PermanentError(
                "APNs: no topic: the device gave no app id and the workspace has no APNs topic (bundle id)"
            )
        headers = apns_headers(content, topic, device)
        payload = apns_payload(content)
        url = f"{config.base}/3/device/{device}"
        token = self.provider_token(config)
        for attempt in (1, 2):
            try:
                response = await self.client.post(
                    url, content=payload, headers={**headers, "authorization": f"bearer {token.value}"}
                )
            except httpx.TransportError as exc:  # timeouts, refused and lost connections, GOAWAY
                raise TransientError(f"APNs: {type(exc).__name__}") from exc
            if response.status_code == 200:
                self._bad_tokens.pop((workspace_id, config.base), None)
                return
            reason = _reason(response)
            if response.status_code == 403 and reason == "ExpiredProviderToken":
                if attempt == 1:
                    token = self.renew(config, token)
                    continue
                raise PermanentError(
                    "APNs 403 ExpiredProviderToken, for a token made just now: check this machine's clock"
                )
            error = classify(
                response.status_code, reason, retry_after_s(response.headers.get("retry-after"), self.clock.now())
            )
            if isinstance(error, TargetGone):
                log.info("APNs token gone", extra={"target": target.redacted(), "reason": reason})
            if response.status_code == 400 and reason == "BadDeviceToken":
                error = self._wrong_environment(workspace_id, config, target)
            raise error

    def _wrong_environment(self, workspace_id: str, config: ApnsConfig, target: PushTarget) -> ChannelProblem:
        """BadDeviceToken: most likely a token of the other environment; many of them, with
        none accepted since, most likely the workspace's sandbox setting."""
        env, other = ("sandbox", "production") if config.sandbox else ("production", "development")
        where = f"APNs' {env} environment" if config.base_url is None else f"the APNs server at {config.base}"
        reason = (
            f"APNs 400 BadDeviceToken: the token is not valid in {where} (apns.sandbox is "
            f"{str(config.sandbox).lower()}); most likely a {other} build's token, or the sandbox setting "
            "is wrong; the token is kept"
        )
        bad = self._bad_tokens.setdefault((workspace_id, config.base), set())
        if len(bad) < _MAX_TRACKED:
            bad.add(target.key)
        if len(bad) >= WRONG_ENVIRONMENT_ALERT:
            reason += (
                f". {len(bad)} device tokens of this workspace got BadDeviceToken from {where} and none was "
                "accepted since: check the workspace's APNs sandbox setting"
            )
            if len(bad) == WRONG_ENVIRONMENT_ALERT:
                log.warning(
                    "APNs: many device tokens of a workspace answered BadDeviceToken; the sandbox setting is "
                    "most likely wrong",
                    extra={"workspace_id": workspace_id, "sandbox": config.sandbox, "tokens": len(bad)},
                )
        return ChannelProblem(reason)

    # -- provider tokens ------------------------------------------------------------------------

    def provider_token(self, config: ApnsConfig) -> ProviderToken:
        """The current token, replaced once it is 50 minutes old (no awaits: no two sends make one)."""
        key = config.fingerprint()
        now = self.clock.now()
        token = self._tokens.get(key)
        if token is None or now - token.issued_at >= TOKEN_REFRESH_AFTER:
            token = self._tokens[key] = self._sign(config, now)
        return token

    def renew(self, config: ApnsConfig, rejected: ProviderToken) -> ProviderToken:
        """After ExpiredProviderToken: a new token, unless another send has made one already."""
        key = config.fingerprint()
        current = self._tokens.get(key)
        if current is not None and current is not rejected:
            return current
        token = self._tokens[key] = self._sign(config, self.clock.now())
        return token

    def _sign(self, config: ApnsConfig, now: datetime) -> ProviderToken:
        import jwt

        key = config.fingerprint()
        signing_key = self._keys.get(key)
        if signing_key is None:
            signing_key = self._keys[key] = config.signing_key()
        iat = int(now.timestamp())
        value = jwt.encode(
            {"iss": config.team_id, "iat": iat}, signing_key, algorithm="ES256", headers={"kid": config.key_id}
        )
        log.info("APNs provider token made", extra={"key_id": config.key_id, "team_id": config.team_id})
        return ProviderToken(value, now)

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            if self._loop is asyncio.get_running_loop():  # else its loop, and its connections, are gone
                await client.aclose()
