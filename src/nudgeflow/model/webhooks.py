"""Webhooks: the words a webhook step, its destinations and its signature share.

A send step with `channel: webhook` (model/journeys.py `WebhookCall`) names either a `url`
or a `destination`: a named entry of the workspace's settings, section "webhooks":

    {"secret": "whsec_…",                       the signing secret of steps that give a url
     "destinations": {"crm": {"url": "https://crm.example/hooks/nudgeflow",
                              "method": "POST",
                              "headers": {"Authorization": "Bearer …"},
                              "secret": "whsec_…",
                              "allow_private": false,
                              "allow_networks": ["10.20.0.0/16"],
                              "timeout_s": 15}}}

Secrets follow Standard Webhooks: `whsec_` and the base64 of 24 to 64 random bytes; the
HMAC key is those bytes. A destination's header values are secrets too (they usually carry
credentials): `masked()` is what the API and the CLI show.

Pure: no I/O. The store reads and writes the section (store/webhook_destinations.py), the
channel (channels/webhook.py) delivers, the SSRF guard (channels/url_guard.py) decides
which addresses a URL may reach.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from nudgeflow.errors import ModelError

SECTION = "webhooks"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # what a new secret holds; Standard Webhooks asks for 24 to 64
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
METHODS = ("POST", "PUT")
DEFAULT_METHOD = "POST"
MAX_TIMEOUT_S = 30.0  # Standard Webhooks recommends 15 to 30 s; a slower receiver holds a dispatcher slot
MASK = "********"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")  # an HTTP header name (RFC 9110 token)
# Headers the channel sets itself: a destination may not replace them (the signature, the
# idempotency key and the body's framing must be ours).
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "accept-encoding",
        "idempotency-key",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "te",
        "upgrade",
        "keep-alive",
        "proxy-authorization",
    }
)
# Liquid markup: a step's URL may hold it only after its origin (scheme://host:port/).
_LIQUID = re.compile(r"\{\{|\{%")
_LIQUID_MARKUP = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


class WebhookSettingsError(ModelError, ValueError):
    """A destination or secret that cannot be used; the message says which and why."""


# -- secrets -----------------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh signing secret: `whsec_` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_…` secret stands for (its base64-decoded bytes)."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise WebhookSettingsError("a webhook secret starts with whsec_ (then the base64 of 24 to 64 random bytes)")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSettingsError("a webhook secret is whsec_ then base64: this one is not base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise WebhookSettingsError(
            f"a webhook secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes; this one holds {len(key)}"
        )
    return key


def check_secret(secret: Any) -> str:
    secret_key(secret)
    return str(secret)


# -- URLs ----------------------------------------------------------------------------------------


def check_url(value: Any, *, liquid: bool = False) -> str:
    """An absolute http(s) URL with a host, no user or password, no fragment, no spaces or
    control characters. With `liquid`, Liquid markup may appear after the origin (in the path
    and the query), never in the scheme, host or port: where a request goes is fixed when the
    journey is written, only which resource it names may come from the person's data.
    Raises ValueError saying what is wrong."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an absolute http:// or https:// URL")
    text = value.strip()
    if not liquid and _LIQUID.search(text):
        raise ValueError("may not hold Liquid here")
    outside = _LIQUID_MARKUP.sub("", text) if liquid else text
    if any(ord(c) < 32 or ord(c) == 127 for c in text) or " " in outside:
        raise ValueError("must not contain spaces or control characters")
    if len(text) > 2000:
        raise ValueError("is longer than 2000 characters")
    marker = _LIQUID.search(text)
    if marker is not None:
        fixed = text[: marker.start()]
        origin = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#{}]+[/?]", fixed)
        if origin is None:
            raise ValueError(
                "may hold Liquid only after its scheme, host and port (in the path or query): "
                "where a webhook goes is fixed in the journey"
            )
        text_to_check = origin.group(0) + "x"
    else:
        text_to_check = text
    try:
        parts = urlsplit(text_to_check)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"is not a URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL (e.g. https://hooks.example.com/nudgeflow)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user or password (a destination's headers can carry credentials)")
    if parts.fragment or "#" in text_to_check:
        raise ValueError("must not have a fragment (#…)")
    if port == 0:
        raise ValueError("has port 0")
    return text


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise WebhookSettingsError(
            f"{value!r} is not a destination name (letters, digits, _ . -, starting with a letter or digit, at most 64)"
        )
    return value


def check_headers(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WebhookSettingsError('headers are an object of names to values, e.g. {"Authorization": "Bearer …"}')
    out: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise WebhookSettingsError(f"header {name!r} is not a header name")
        if name.lower() in RESERVED_HEADERS:
            raise WebhookSettingsError(f"header {name!r} is set by Nudgeflow itself and cannot be replaced")
        if not isinstance(text, str) or any(not (32 <= ord(c) < 127 or c == "\t") for c in text):
            raise WebhookSettingsError(f"header {name!r}: the value must be printable ASCII text, without line breaks")
        if len(text) > 4000:
            raise WebhookSettingsError(f"header {name!r}: the value is longer than 4000 characters")
        out[name] = text
    return out


def check_networks(value: Any) -> tuple[str, ...]:
    """Networks (CIDR, or one address) a destination may reach although they are private."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise WebhookSettingsError('allow_networks is a list of networks, e.g. ["10.20.0.0/16", "127.0.0.1"]')
    out: list[str] = []
    for item in value:
        try:
            network = ipaddress.ip_network(str(item).strip(), strict=False)
        except ValueError:
            raise WebhookSettingsError(f"allow_networks: {item!r} is not a network (10.20.0.0/16, fd00::/8)") from None
        if str(network) not in out:
            out.append(str(network))
    return tuple(out)


# -- the section ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """Where a webhook step that names this destination sends, and how."""

    name: str
    url: str
    secret: str
    method: str = DEFAULT_METHOD
    headers: Mapping[str, str] = field(default_factory=dict)
    # Reaching private, loopback or link-local addresses is refused unless the destination
    # says so: every such address, or only those in `allow_networks`.
    allow_private: bool = False
    allow_networks: tuple[str, ...] = ()
    timeout_s: float | None = None

    @classmethod
    def build(cls, name: str, data: Mapping[str, Any]) -> Destination:
        """Checked: WebhookSettingsError names the field that is wrong."""
        unknown = set(data) - {
            "url",
            "secret",
            "method",
            "headers",
            "allow_private",
            "allow_networks",
            "timeout_s",
        }
        if unknown:
            raise WebhookSettingsError(f"destination {name!r}: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            url = check_url(data.get("url"))
        except ValueError as exc:
            raise WebhookSettingsError(f"destination {name!r}: url {exc}") from None
        method = str(data.get("method") or DEFAULT_METHOD).upper()
        if method not in METHODS:
            raise WebhookSettingsError(f"destination {name!r}: method {method!r} is not one of {', '.join(METHODS)}")
        timeout = data.get("timeout_s")
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT_S:
                raise WebhookSettingsError(
                    f"destination {name!r}: timeout_s must be a number of seconds above 0, at most {MAX_TIMEOUT_S:g}"
                )
            timeout = float(timeout)
        allow_private = data.get("allow_private", False)
        if not isinstance(allow_private, bool):
            raise WebhookSettingsError(f"destination {name!r}: allow_private is true or false")
        try:
            secret = check_secret(data.get("secret"))
        except WebhookSettingsError as exc:
            raise WebhookSettingsError(f"destination {name!r}: {exc}") from None
        return cls(
            name=check_name(name),
            url=url,
            secret=secret,
            method=method,
            headers=check_headers(data.get("headers")),
            allow_private=allow_private,
            allow_networks=check_networks(data.get("allow_networks")),
            timeout_s=timeout,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "method": self.method, "secret": self.secret}
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.allow_private:
            out["allow_private"] = True
        if self.allow_networks:
            out["allow_networks"] = list(self.allow_networks)
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        return out

    def masked(self) -> dict[str, Any]:
        """What may be shown: the secret and every header value masked."""
        out = self.to_dict()
        out["secret"] = MASK
        if self.headers:
            out["headers"] = {name: MASK for name in self.headers}
        return {"name": self.name, **out}


@dataclass(frozen=True)
class WebhookSettings:
    """A workspace's section "webhooks": the default secret and the named destinations."""

    secret: str | None = None
    destinations: Mapping[str, Destination] = field(default_factory=dict)

    @classmethod
    def from_section(cls, section: Any) -> WebhookSettings:
        if not section:
            return cls()
        if not isinstance(section, Mapping):
            raise WebhookSettingsError("the workspace's webhooks settings are not an object")
        secret = section.get("secret")
        if secret is not None:
            check_secret(secret)
        raw = section.get("destinations") or {}
        if not isinstance(raw, Mapping):
            raise WebhookSettingsError("the workspace's webhook destinations are not an object")
        destinations = {name: Destination.build(name, data or {}) for name, data in raw.items()}
        return cls(secret, destinations)

    def to_section(self) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        if self.secret is not None:
            out["secret"] = self.secret
        if self.destinations:
            out["destinations"] = {name: d.to_dict() for name, d in sorted(self.destinations.items())}
        return out or None

    def masked(self) -> dict[str, Any]:
        return {
            "secret": MASK if self.secret else None,
            "destinations": [d.masked() for _, d in sorted(self.destinations.items())],
        }


# -- reading an answer -------------------------------------------------------------------------

_PATH_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")


def json_path_get(document: Any, path: str) -> tuple[bool, Any]:
    """(found, value) at `path` in a decoded JSON document: `$` is the whole of it, `.name`
    a member of an object, `[n]` an item of a list (model/journeys.JSON_PATH_PATTERN)."""
    if not path.startswith("$"):
        return False, None
    node = document
    position = 1
    while position < len(path):
        step = _PATH_STEP.match(path, position)
        if step is None:
            return False, None
        member, index = step.groups()
        if member is not None:
            if not isinstance(node, Mapping) or member not in node:
                return False, None
            node = node[member]
        else:
            if not isinstance(node, list) or int(index) >= len(node):
                return False, None
            node = node[int(index)]
        position = step.end()
    return True, node
