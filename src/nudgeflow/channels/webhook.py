"""The `webhook` channel: a journey's send step calls an HTTP endpoint with a JSON body.

A send step with `channel: webhook` (model/journeys.py `WebhookCall`) names a `url` or a
workspace `destination` (model/webhooks.py). For each message this channel:

1. reads the step from the journey version the run is on (immutable, so kept once read);
2. renders the body, and the URL when it holds Liquid, with the person's context
   (content/webhook_render.py); a render error fails the message for good;
3. checks the URL against the SSRF guard (channels/url_guard.py) and connects to the very
   address it checked, Host header and TLS server name kept;
4. signs it the Standard Webhooks way, with the destination's secret, or the workspace's
   webhook secret for a step that gives a `url` (made on first use):

       webhook-id: the message key, with `.` and `%` percent-encoded (the id may hold no dot)
       webhook-timestamp: seconds since the epoch, at this attempt (on the injected clock)
       webhook-signature: v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>
       Idempotency-Key: the message key, as it is

   The id and the key stay the same on every retry, so the receiver can drop repeats;
5. POSTs (or PUTs) it with a timeout over the whole exchange, never following a redirect,
   and reads at most `max_response_bytes` of the answer (then stops reading).

Outcomes, through the dispatcher's retries (runtime/dispatcher.py):
- 2xx: sent. The receiver's answer is the delivery, so the event is "Message Delivered";
- 429 and 5xx, a timeout, a connection refused or reset, a name that does not resolve:
  TransientError, retried with backoff, after the Retry-After the receiver gave, if any;
- 3xx (redirects are not followed), every other 4xx, a refused address, a missing
  destination, a body that does not render: PermanentError, with the reason.

The answer mapped into traits (`response_traits`): from a 2xx JSON answer, each path found
is a trait of the person. They are recorded as an identify (store/identify_writer.py) with a
message id derived from the message key, so a retry records them once, and the engine
applies them in order with the person's other events, as it applies any identify: this
channel never writes the engine's state itself. A database error while recording them is
transient (the call is made again, with the same webhook-id for the receiver to drop). An
answer that is not JSON, is cut at the size limit, or lacks a path leaves those traits as
they are, with a warning in the log: the call itself succeeded.

Neither a secret nor a destination's header is ever logged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from nudgeflow.channels.base import PermanentError, RemoteChannel, TransientError, reason_text, retry_after_s
from nudgeflow.channels.common import WorkspaceCache, permanent_from_render
from nudgeflow.channels.url_guard import NOTHING_PRIVATE, Allowance, CheckedUrl, Resolver, check_url
from nudgeflow.content.errors import RenderError
from nudgeflow.content.webhook_render import RenderedWebhook, render_webhook
from nudgeflow.core.clock import Clock, SystemClock, to_ms
from nudgeflow.errors import ModelError
from nudgeflow.model.journeys import WEBHOOK, SendStep, WebhookCall
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.model.webhooks import (
    DEFAULT_METHOD,
    WebhookSettings,
    WebhookSettingsError,
    json_path_get,
    secret_key,
)
from nudgeflow.store import webhook_destinations
from nudgeflow.store.identify_writer import write_identify
from nudgeflow.store.journeys import load_version

log = logging.getLogger("nudgeflow.webhook")

DEFAULT_TIMEOUT_S = 15.0  # Standard Webhooks recommends 15 to 30 s
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "Nudgeflow-Webhooks/1"
LIBRARY = "nudgeflow-webhook"  # context.library.name of the identify an answer's traits make
MAX_STEPS_KEPT = 4096


def webhook_id(message_key: str) -> str:
    """The `webhook-id` of a message: its key, with `%` and `.` percent-encoded (Standard
    Webhooks signs "{id}.{timestamp}.{body}", so the id must hold no dot)."""
    return message_key.replace("%", "%25").replace(".", "%2E")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: v1, and the base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Route:
    """Where one message goes and how, before its URL is rendered and checked."""

    url: str | None  # the destination's; None: the step's (rendered)
    secret: str
    method: str
    headers: Mapping[str, str]
    allowance: Allowance
    timeout_s: float
    what: str  # "destination crm" or "the step's url", for reasons


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool


class WebhookChannel(RemoteChannel):
    name = WEBHOOK
    # The receiver's 2xx is the delivery: no report comes later.
    delivered_on_send = True

    def __init__(
        self,
        engine: Any,
        clock: Clock | None = None,
        *,
        resolver: Resolver | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        verify: ssl.SSLContext | bool = True,
        settings_ttl_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        self.resolver = resolver
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        self.verify = verify
        self.settings: WorkspaceCache[WebhookSettings] = WorkspaceCache(
            self._load_settings if engine is not None else None,
            self.clock,
            "webhook settings",
            invalid=WebhookSettingsError,
            ttl_s=settings_ttl_s,
        )
        self._steps: dict[tuple[str, str, int, str], WebhookCall] = {}

    def invalidate(self, workspace_id: str | None = None) -> None:
        """A destination or the secret changed: read them again at the next send."""
        self.settings.invalidate(workspace_id)

    # -- one message --------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> None:
        call = await self._call(message)
        route = await self._route(message, call)
        rendered = await self._render(message, call)
        url = rendered.url or route.url
        assert url is not None  # a call has a url or a destination (WebhookCall checks it)
        checked = await check_url(url, route.allowance, self.resolver)
        answer = await self._exchange(checked, route, message, rendered.body)
        self._raise_for(answer, route)
        if call.response_traits:
            await self._record_traits(message, call, answer)

    async def _call(self, message: OutboundMessage) -> WebhookCall:
        """The step's call, from the journey version the run is on."""
        key = (message.workspace_id, message.journey_id, message.version, message.step)
        found = self._steps.get(key)
        if found is not None:
            return found
        if self.engine is None:
            raise PermanentError("no database to read the webhook step from")

        def read() -> Any:
            with self.engine.connect() as conn:
                return load_version(conn, message.workspace_id, message.journey_id, message.version)

        try:
            journey = await asyncio.to_thread(read)
        except Exception as exc:
            raise TransientError(f"cannot read the journey's webhook step: {type(exc).__name__}") from None
        step = journey.steps.get(message.step) if journey is not None else None
        if not isinstance(step, SendStep) or step.webhook is None:
            raise PermanentError(
                f"journey {message.journey_id!r} version {message.version} has no webhook step {message.step!r}"
            )
        if len(self._steps) >= MAX_STEPS_KEPT:
            self._steps.clear()
        self._steps[key] = step.webhook
        return step.webhook

    async def _route(self, message: OutboundMessage, call: WebhookCall) -> Route:
        settings = await self.settings.get(message.workspace_id) or WebhookSettings()
        method = call.method
        if call.destination is not None:
            destination = settings.destinations.get(call.destination)
            if destination is None:
                raise PermanentError(
                    f"no webhook destination {call.destination!r} in this workspace "
                    f"(nudgeflow workspace webhooks destinations set {call.destination} --url …)"
                )
            return Route(
                destination.url,
                destination.secret,
                method or destination.method,
                destination.headers,
                Allowance.of(destination.allow_private, destination.allow_networks),
                destination.timeout_s or self.timeout_s,
                f"destination {destination.name}",
            )
        secret = settings.secret or await self._make_secret(message.workspace_id)
        return Route(None, secret, method or DEFAULT_METHOD, {}, NOTHING_PRIVATE, self.timeout_s, "the step's url")

    async def _make_secret(self, workspace_id: str) -> str:
        def make() -> str:
            with self.engine.begin() as conn:
                return webhook_destinations.ensure_secret(conn, workspace_id, to_ms(self.clock.now()))

        try:
            secret = await asyncio.to_thread(make)
        except Exception as exc:
            raise TransientError(f"cannot make the workspace's webhook secret: {type(exc).__name__}") from None
        self.settings.invalidate(workspace_id)
        return secret

    async def _render(self, message: OutboundMessage, call: WebhookCall) -> RenderedWebhook:
        try:
            return await asyncio.to_thread(render_webhook, self.engine, message, call, to_ms(self.clock.now()))
        except RenderError as exc:
            raise permanent_from_render(exc) from exc
        except Exception as exc:
            raise PermanentError(f"render failed: {type(exc).__name__}: {exc}") from None

    # -- the exchange -------------------------------------------------------------------------

    def _headers(self, checked: CheckedUrl, route: Route, message: OutboundMessage, body: bytes) -> dict[str, str]:
        timestamp = int(self.clock.now().timestamp())
        msg_id = webhook_id(message.key)
        return {
            **route.headers,
            "Host": checked.host_header,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "identity",  # the size limit counts what is read, not what it inflates to
            "User-Agent": USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(route.secret, msg_id, timestamp, body),
            "Idempotency-Key": message.key,
        }

    async def _exchange(self, checked: CheckedUrl, route: Route, message: OutboundMessage, body: bytes) -> Answer:
        headers = self._headers(checked, route, message, body)
        extensions = {"sni_hostname": checked.sni} if checked.sni else None
        where = f"webhook to {checked.host_header}"
        try:
            # A client of its own per call: its connection is to one checked address with one
            # TLS server name, and must not be reused for another host on the same address.
            # No proxy from the environment: it would resolve the name again.
            async with httpx.AsyncClient(
                trust_env=False, follow_redirects=False, verify=self.verify, timeout=route.timeout_s
            ) as client:
                request = client.build_request(
                    route.method, checked.pinned_url, content=body, headers=headers, extensions=extensions
                )
                async with asyncio.timeout(route.timeout_s):
                    response = await client.send(request, stream=True)
                    try:
                        data, truncated = await self._read(response)
                    finally:
                        await response.aclose()
        except TimeoutError:
            raise TransientError(f"{where}: no answer within {route.timeout_s:g} s") from None
        except httpx.TimeoutException:
            raise TransientError(f"{where}: no answer within {route.timeout_s:g} s") from None
        except httpx.InvalidURL as exc:  # a path or query httpx will not send, whatever the retry
            raise PermanentError(f"{where}: the URL cannot be called: {reason_text(str(exc), 200)}") from None
        except httpx.TransportError as exc:  # refused, reset, TLS failures
            raise TransientError(f"{where}: {type(exc).__name__}: {reason_text(str(exc), 200)}") from None
        return Answer(response.status_code, response.headers, data, truncated)

    async def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        """At most max_response_bytes of the answer; True when there was more (then the
        rest is never read: the connection is closed)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            room = self.max_response_bytes - size
            if len(chunk) > room:
                chunks.append(chunk[:room])
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), False

    def _raise_for(self, answer: Answer, route: Route) -> None:
        status = answer.status
        if 200 <= status < 300:
            return
        text = reason_text(answer.body.decode("utf-8", "replace"), 200)
        reason = f"webhook ({route.what}) answered {status}" + (f": {text}" if text else "")
        if 300 <= status < 400:
            location = reason_text(answer.headers.get("location", ""), 200)
            raise PermanentError(
                f"webhook ({route.what}) answered {status}, a redirect"
                + (f" to {location}" if location else "")
                + ": redirects are not followed; give the final URL"
            )
        if status == 429 or status >= 500:
            raise TransientError(
                reason, retry_after_s=retry_after_s(answer.headers.get("retry-after"), self.clock.now())
            )
        raise PermanentError(reason)

    # -- the answer into traits ---------------------------------------------------------------

    def _traits(self, call: WebhookCall, answer: Answer, message: OutboundMessage) -> dict[str, Any]:
        def skip(why: str) -> dict[str, Any]:
            log.warning(
                "webhook answer not mapped to traits",
                extra={"message_key": message.key, "journey_id": message.journey_id, "step": message.step, "why": why},
            )
            return {}

        if answer.truncated:
            return skip(f"the answer is longer than {self.max_response_bytes} bytes")
        try:
            document = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            return skip("the answer is not JSON")
        traits: dict[str, Any] = {}
        missing = []
        for trait, path in call.response_traits.items():
            found, value = json_path_get(document, path)
            if found:
                traits[trait] = value
            else:
                missing.append(path)
        if missing:
            skip(f"not in the answer: {', '.join(missing)}")
        return traits

    async def _record_traits(self, message: OutboundMessage, call: WebhookCall, answer: Answer) -> None:
        traits = self._traits(call, answer, message)
        if not traits:
            return
        context = {"nudgeflow": {"message_key": message.key, "journey_id": message.journey_id, "step": message.step}}

        def write() -> bool:
            with self.engine.begin() as conn:
                return write_identify(
                    conn,
                    message.workspace_id,
                    message.profile_id,
                    f"nudgeflow:{message.key}:webhook-answer",
                    traits,
                    to_ms(self.clock.now()),
                    context,
                    library=LIBRARY,
                )

        try:
            await asyncio.to_thread(write)
        except ModelError as exc:  # the traits make no event (too large, not an identify)
            log.warning(
                "webhook answer not mapped to traits",
                extra={"message_key": message.key, "why": reason_text(str(exc), 200)},
            )
        except Exception as exc:
            raise TransientError(
                f"the webhook's answer could not be recorded as traits: {type(exc).__name__}"
            ) from None

    def _load_settings(self, workspace_id: str) -> WebhookSettings:
        with self.engine.connect() as conn:
            return webhook_destinations.load(conn, workspace_id)
