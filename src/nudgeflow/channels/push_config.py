"""Credentials of the mobile push services, per workspace, and what the FCM and APNs senders share.

Each workspace may hold its own credentials in its settings (store/workspace_settings.py):

    "fcm":  {"project_id", "service_account": {…the JSON Google gives…}, "token_uri"?, "api_base"?}
    "apns": {"team_id", "key_id", "private_key": "-----BEGIN PRIVATE KEY-----…", "topic",
             "sandbox": false, "base_url"?}

Without them, a workspace uses the server's defaults from the environment (settings.py):
NUDGEFLOW_FCM_SERVICE_ACCOUNT_FILE (+ NUDGEFLOW_FCM_API_BASE) and NUDGEFLOW_APNS_KEY_FILE,
NUDGEFLOW_APNS_KEY_ID, NUDGEFLOW_APNS_TEAM_ID, NUDGEFLOW_APNS_TOPIC (+ NUDGEFLOW_APNS_BASE_URL),
which channels/wiring.py reads (`fcm_default`, `apns_default`) and hands to the senders.

The private keys are secrets: `masked()` is what the CLI, the API and the logs see, and the
dataclasses keep them out of their repr.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import Connection

from nudgeflow.channels.base import PermanentError
from nudgeflow.channels.common import WorkspaceCache
from nudgeflow.core.clock import Clock
from nudgeflow.errors import DeliveryError
from nudgeflow.store.workspace_settings import get_section, set_section

FCM_SECTION = "fcm"
APNS_SECTION = "apns"
MASK = "********"

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_API_BASE = "https://fcm.googleapis.com"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
APNS_PRODUCTION = "https://api.push.apple.com"
APNS_SANDBOX = "https://api.sandbox.push.apple.com"

_APPLE_ID = re.compile(r"^[A-Za-z0-9]{1,20}$")  # team and key ids are 10 such characters


class PushConfigError(DeliveryError, ValueError):
    """Credentials that cannot be used: the message names the field (never its value)."""


def _url(value: Any, name: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise PushConfigError(f"{name}: expected an http(s) URL")
    return value.rstrip("/")


def read_key_file(path: str, what: str) -> str:
    """A key file's text; the error names the file as `what` (never quotes its content)."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise PushConfigError(f"cannot read {what}: {exc.strerror}") from None


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


# -- FCM -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FcmConfig:
    project_id: str
    service_account: dict[str, Any] = field(repr=False)  # holds the private key
    token_uri: str | None = None  # None: the service account's own token_uri
    api_base: str | None = None  # None: https://fcm.googleapis.com

    def __post_init__(self) -> None:
        if not isinstance(self.project_id, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", self.project_id):
            raise PushConfigError("fcm.project_id: required (the Firebase project id, e.g. my-app-1234)")
        sa = self.service_account
        if not isinstance(sa, dict):
            raise PushConfigError("fcm.service_account: expected the service account JSON object")
        if sa.get("type", "service_account") != "service_account":
            raise PushConfigError("fcm.service_account: not a service account key (its type is not service_account)")
        for name in ("client_email", "private_key"):
            if not isinstance(sa.get(name), str) or not sa[name].strip():
                raise PushConfigError(f"fcm.service_account.{name}: required")
        _url(self.token_uri, "fcm.token_uri")
        _url(self.api_base, "fcm.api_base")
        if not self.effective_token_uri:
            raise PushConfigError("fcm.service_account.token_uri: required (or give token_uri)")
        self.google_credentials()  # the private key must load: fail when set, not at the first send

    @property
    def effective_token_uri(self) -> str:
        return _url(self.token_uri or self.service_account.get("token_uri") or GOOGLE_TOKEN_URI, "fcm.token_uri") or ""

    @property
    def send_url(self) -> str:
        return f"{_url(self.api_base, 'fcm.api_base') or FCM_API_BASE}/v1/projects/{self.project_id}/messages:send"

    @property
    def client_email(self) -> str:
        return str(self.service_account["client_email"])

    def fingerprint(self) -> str:
        """What access tokens are cached by: the same key and endpoint share one token."""
        return _fingerprint(self.client_email, str(self.service_account["private_key"]), self.effective_token_uri)

    def google_credentials(self) -> Any:
        """google-auth's service account credentials (they load the key and sign assertions)."""
        from google.oauth2 import service_account

        info = {**self.service_account, "token_uri": self.effective_token_uri}
        try:
            return service_account.Credentials.from_service_account_info(info, scopes=[FCM_SCOPE])
        except (ValueError, KeyError, TypeError) as exc:
            # google-auth's message may quote the key material: name the field only.
            raise PushConfigError(
                f"fcm.service_account: the private key does not load ({type(exc).__name__})"
            ) from None

    def masked(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "client_email": self.client_email,
            "private_key_id": self.service_account.get("private_key_id"),
            "service_account": MASK,
            "token_uri": self.effective_token_uri,
            "api_base": self.api_base or FCM_API_BASE,
        }

    def to_dict(self) -> dict[str, Any]:
        """The stored form (secrets included: workspace settings keep it)."""
        out: dict[str, Any] = {"project_id": self.project_id, "service_account": dict(self.service_account)}
        if self.token_uri:
            out["token_uri"] = self.token_uri
        if self.api_base:
            out["api_base"] = self.api_base
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FcmConfig:
        if not isinstance(data, Mapping):
            raise PushConfigError("fcm: expected an object with project_id and service_account")
        unknown = set(data) - {"project_id", "service_account", "token_uri", "api_base"}
        if unknown:
            raise PushConfigError(f"fcm: unknown settings: {', '.join(sorted(unknown))}")
        sa = parse_service_account(data.get("service_account"))
        return cls(
            project_id=data.get("project_id") or sa.get("project_id") or "",
            service_account=sa,
            token_uri=data.get("token_uri") or None,
            api_base=data.get("api_base") or None,
        )


def parse_service_account(value: Any) -> dict[str, Any]:
    """A service account key as Google hands it out: a JSON object (or its text)."""
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            raise PushConfigError("fcm.service_account: not JSON") from None
    if not isinstance(value, dict):
        raise PushConfigError("fcm.service_account: expected the service account JSON object")
    return dict(value)


def fcm_from_file(
    path: str,
    *,
    project_id: str | None = None,
    token_uri: str | None = None,
    api_base: str | None = None,
    what: str = "the service account file",
) -> FcmConfig:
    sa = parse_service_account(read_key_file(path, what))
    return FcmConfig(
        project_id=project_id or sa.get("project_id") or "", service_account=sa, token_uri=token_uri, api_base=api_base
    )


# -- APNs ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ApnsConfig:
    team_id: str
    key_id: str
    private_key: str = field(repr=False)  # the .p8 file's PEM text (an EC P-256 key)
    topic: str | None = None  # the app's bundle id, when a device does not say its own
    sandbox: bool = False
    base_url: str | None = None  # None: Apple's production or sandbox host

    def __post_init__(self) -> None:
        for name in ("team_id", "key_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _APPLE_ID.match(value):
                raise PushConfigError(f"apns.{name}: required (the 10-character id Apple shows)")
        if self.topic is not None and (
            not isinstance(self.topic, str) or not self.topic.strip() or len(self.topic) > 200
        ):
            raise PushConfigError("apns.topic: the app's bundle id (e.g. com.example.app)")
        if not isinstance(self.sandbox, bool):
            raise PushConfigError("apns.sandbox: true or false")
        _url(self.base_url, "apns.base_url")
        self.signing_key()

    @property
    def base(self) -> str:
        return _url(self.base_url, "apns.base_url") or (APNS_SANDBOX if self.sandbox else APNS_PRODUCTION)

    def signing_key(self) -> Any:
        """The loaded EC key (PyJWT signs ES256 with it)."""
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        if not isinstance(self.private_key, str) or "PRIVATE KEY" not in self.private_key:
            raise PushConfigError("apns.private_key: the .p8 key's PEM text is required")
        try:
            key = load_pem_private_key(self.private_key.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise PushConfigError(f"apns.private_key: does not load ({type(exc).__name__})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise PushConfigError("apns.private_key: not an EC P-256 key (APNs signs ES256)")
        return key

    def fingerprint(self) -> str:
        """What provider tokens are cached by."""
        return _fingerprint(self.team_id, self.key_id, self.private_key)

    def masked(self) -> dict[str, Any]:
        return {
            "team_id": self.team_id,
            "key_id": self.key_id,
            "private_key": MASK,
            "topic": self.topic,
            "sandbox": self.sandbox,
            "base_url": self.base,
        }

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "team_id": self.team_id,
            "key_id": self.key_id,
            "private_key": self.private_key,
            "sandbox": self.sandbox,
        }
        if self.topic:
            out["topic"] = self.topic
        if self.base_url:
            out["base_url"] = self.base_url
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApnsConfig:
        if not isinstance(data, Mapping):
            raise PushConfigError("apns: expected an object with team_id, key_id, private_key and topic")
        unknown = set(data) - {"team_id", "key_id", "private_key", "topic", "sandbox", "base_url"}
        if unknown:
            raise PushConfigError(f"apns: unknown settings: {', '.join(sorted(unknown))}")
        return cls(
            team_id=data.get("team_id") or "",
            key_id=data.get("key_id") or "",
            private_key=data.get("private_key") or "",
            topic=data.get("topic") or None,
            sandbox=data.get("sandbox", False),
            base_url=data.get("base_url") or None,
        )


def apns_from_file(
    path: str,
    *,
    team_id: str,
    key_id: str,
    topic: str | None = None,
    base_url: str | None = None,
    what: str = "the key file",
) -> ApnsConfig:
    """APNs credentials with the .p8 key read from `path` (`what` names it in the error)."""
    key = read_key_file(path, what)
    return ApnsConfig(team_id=team_id, key_id=key_id, private_key=key, topic=topic, base_url=base_url)


# -- stored per workspace --------------------------------------------------------------------


def get_fcm(conn: Connection, workspace_id: str) -> FcmConfig | None:
    data = get_section(conn, workspace_id, FCM_SECTION)
    return FcmConfig.from_dict(data) if data else None


def set_fcm(conn: Connection, workspace_id: str, config: FcmConfig | None, now_ms: int) -> None:
    set_section(conn, workspace_id, FCM_SECTION, config.to_dict() if config else None, now_ms)


def get_apns(conn: Connection, workspace_id: str) -> ApnsConfig | None:
    data = get_section(conn, workspace_id, APNS_SECTION)
    return ApnsConfig.from_dict(data) if data else None


def set_apns(conn: Connection, workspace_id: str, config: ApnsConfig | None, now_ms: int) -> None:
    set_section(conn, workspace_id, APNS_SECTION, config.to_dict() if config else None, now_ms)


def masked(
    conn: Connection, workspace_id: str, section: str, default: Callable[[], Any] | None = None
) -> dict[str, Any]:
    """What the CLI shows: the effective credentials, secrets masked, and where they come from."""
    getter = get_fcm if section == FCM_SECTION else get_apns
    try:
        own = getter(conn, workspace_id)
    except PushConfigError as exc:
        return {"source": "workspace", "error": str(exc), "config": None}
    if own is not None:
        return {"source": "workspace", "config": own.masked()}
    try:
        fallback = default() if default else None
    except PushConfigError as exc:
        return {"source": "default", "error": str(exc), "config": None}
    return {"source": "default", "config": fallback.masked()} if fallback else {"source": None, "config": None}


C = TypeVar("C", FcmConfig, ApnsConfig)


class WorkspaceCredentials(Generic[C]):
    """A workspace's own credentials, else the server's default; cached for `ttl_s`.

    Read per send from a cache, not the database: a change made in the CLI takes effect
    within `ttl_s` (or at once after `invalidate`). `default` loads the server's (None:
    there are none), once, at the first send that needs them.
    """

    def __init__(
        self,
        engine: Any,
        section: str,
        service: str,
        default: Callable[[], C | None] | None,
        clock: Clock,
        ttl_s: float = 30.0,
    ) -> None:
        self.engine, self.section, self.service, self.clock, self.ttl_s = engine, section, service, clock, ttl_s
        self._default_loader: Callable[[], C | None] | None = default
        self._default: tuple[C | None, str | None] | None = None  # loaded once: (config, error)
        self._own: WorkspaceCache[C] = WorkspaceCache(
            self._load if engine is not None else None, clock, f"{service} credentials", PushConfigError, ttl_s
        )

    def invalidate(self, workspace_id: str | None = None) -> None:
        self._own.invalidate(workspace_id)

    def _load(self, workspace_id: str) -> C | None:
        getter = get_fcm if self.section == FCM_SECTION else get_apns
        with self.engine.connect() as conn:
            return getter(conn, workspace_id)  # type: ignore[return-value]

    def default(self) -> C | None:
        if self._default is None:
            try:
                self._default = (self._default_loader() if self._default_loader else None, None)
            except PushConfigError as exc:
                self._default = (None, str(exc))
        config, error = self._default
        if error:
            raise PermanentError(f"the server's {self.service} credentials are invalid: {error}")
        return config

    async def for_workspace(self, workspace_id: str) -> C:
        own = await self._own.get(workspace_id)
        config = own or self.default()
        if config is None:
            raise PermanentError(f"no {self.service} credentials configured for this workspace")
        return config


# -- shared by both senders ------------------------------------------------------------------


class _RedactRequestUrls(logging.Filter):
    """httpx (the FCM and APNs senders' client) logs every request's full URL at INFO; an
    APNs URL ends in a device token, an FCM one names the project. Keep the origin, drop
    the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(record.msg, str)
            and record.msg.startswith("HTTP Request:")
            and isinstance(args, tuple)
            and len(args) > 1
        ):
            parts = urlsplit(str(args[1]))
            record.args = (args[0], f"{parts.scheme}://{parts.netloc}/…", *args[2:])
        return True


def redact_httpx_request_logs() -> None:
    """Install the filter on httpx's logger, once (keep_tokens_out_of_http_logs calls it
    when an FCM or APNs sender is made, not on import)."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactRequestUrls) for f in logger.filters):
        logger.addFilter(_RedactRequestUrls())


def keep_tokens_out_of_http_logs() -> None:
    """Called when a sender is made (not on import): httpx logs every request URL at INFO, and
    an APNs URL ends in the device token; hpack logs every header at DEBUG, the bearer
    tokens included. URLs keep their origin only, and hpack stays quiet below INFO unless
    an operator has set its level on purpose."""
    redact_httpx_request_logs()
    hpack = logging.getLogger("hpack")
    if hpack.level == logging.NOTSET:
        hpack.setLevel(logging.INFO)
