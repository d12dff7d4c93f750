"""Where email goes: an SMTP server, how to reach it, and how the messages are signed.

One URL says most of it (`NUDGEFLOW_SMTP_URL`, the default of every workspace):

    smtp://user:pass@host:587            STARTTLS when the server offers it, else plain
                                         (then the user and password are never sent)
    smtp+starttls://user:pass@host:587   STARTTLS required (no plain fallback)
    smtps://user:pass@host:465           implicit TLS
    smtp://host:25?tls=none              never TLS (a local relay, the dev inbox)

Query options: pool (idle connections kept open, default 4), concurrency (sends at once,
default = pool), rate (messages per second, 0 = no limit), from, from_name, reply_to,
timeout (seconds), verify (0: accept any certificate; only for a local test server), ca
(a CA bundle file to trust), dkim_selector, dkim_domain, dkim_key (a PEM file path: an
RSA key, or an Ed25519 one), and for a second signature with Ed25519 beside the RSA one
(RFC 8463 dual signing) dkim_ed25519_selector and dkim_ed25519_key.
User and password are percent-decoded, so a password may hold any character.

A workspace may override it all (`workspace_settings`, section "smtp": see
store/workspace_settings.py). Secrets (the password, a DKIM private key) are never shown:
`masked()` is what the API, the CLI and the logs see.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from nudgeflow.errors import DeliveryError, ModelError
from nudgeflow.model import bounce_address

AUTO = "auto"  # STARTTLS when offered
STARTTLS = "starttls"  # STARTTLS required
TLS = "tls"  # implicit TLS (smtps)
NONE = "none"  # never TLS
TLS_MODES = (AUTO, STARTTLS, TLS, NONE)

MASK = "********"
SECRET_FIELDS = ("password", "dkim_private_key", "dkim_ed25519_private_key")
# The values made of lines (PEM): every other text field is one line.
_PEM_FIELDS = ("dkim_private_key", "dkim_ed25519_private_key")

_SCHEMES = {"smtp": AUTO, "smtp+starttls": STARTTLS, "smtps": TLS, "smtp+tls": TLS}
_DEFAULT_PORTS = {AUTO: 587, STARTTLS: 587, TLS: 465, NONE: 25}


class SmtpConfigError(ModelError, DeliveryError, ValueError):
    # A model error now that SmtpConfig is part of the model; still a DeliveryError (and a
    # ValueError) for every except clause written when it lived in channels/.
    """An SMTP URL or setting that cannot be used (the message says which part)."""


def _flag(value: str) -> bool:
    return value.strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    tls: str = AUTO
    username: str | None = field(default=None)
    password: str | None = field(default=None, repr=False)
    pool_size: int = 4
    concurrency: int = 0  # 0: as many as pool_size
    rate_per_second: float = 0.0  # 0: no limit
    from_address: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    timeout_s: float = 30.0
    verify_tls: bool = True
    ca_file: str | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_key_path: str | None = None
    dkim_private_key: str | None = field(default=None, repr=False)  # PEM text, when stored inline
    # A second signature, Ed25519 (RFC 8463), beside the first (dual signing): same domain,
    # a selector of its own (its DNS record says k=ed25519).
    dkim_ed25519_selector: str | None = None
    dkim_ed25519_key_path: str | None = None
    dkim_ed25519_private_key: str | None = field(default=None, repr=False)  # PEM text, when stored inline
    # The domain of the bounce address: the envelope sender (Return-Path) becomes the signed
    # bounces+<workspace_id>.<ref>.<mac>@bounce_domain (model/bounce_address.py), where
    # `serve --bounce-smtp` receives the DSNs (docs/bounces.md). Without it, the envelope
    # sender is the From address.
    bounce_domain: str | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            # A line break would end up in a header or an SMTP command, a NUL in the
            # database; the PEM of a DKIM key is the one value made of lines.
            if isinstance(value, str) and name not in _PEM_FIELDS and any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise SmtpConfigError(f"{name} must not contain control characters (a line break, a NUL)")
        if not self.host:
            raise SmtpConfigError("the SMTP URL has no host")
        if self.tls not in TLS_MODES:
            raise SmtpConfigError(f"tls must be one of {', '.join(TLS_MODES)}")
        if not (0 < self.port < 65536):
            raise SmtpConfigError("the SMTP port must be between 1 and 65535")
        if self.pool_size < 1 or self.concurrency < 0 or self.rate_per_second < 0 or self.timeout_s <= 0:
            raise SmtpConfigError("pool must be at least 1; concurrency, rate and timeout cannot be negative")
        if bool(self.password) and not self.username:
            raise SmtpConfigError("an SMTP password needs a user name")
        if self.bounce_domain is not None and (
            not self.bounce_domain or "@" in self.bounce_domain or any(c.isspace() for c in self.bounce_domain)
        ):
            raise SmtpConfigError("bounce_domain must be a domain name (a signed bounces+...@ local part is prepended)")
        dkim = (self.dkim_selector, self.dkim_domain, self.dkim_key_path or self.dkim_private_key)
        if any(dkim) and not all(dkim):
            raise SmtpConfigError("DKIM needs a selector, a domain and a private key together")
        ed25519 = (self.dkim_ed25519_selector, self.dkim_ed25519_key_path or self.dkim_ed25519_private_key)
        if any(ed25519) and not all(ed25519):
            raise SmtpConfigError("an Ed25519 DKIM signature needs its own selector and its private key together")
        if any(ed25519) and not all(dkim):
            raise SmtpConfigError(
                "an Ed25519 DKIM signature is a second one, beside the first: set dkim_selector, dkim_domain "
                "and dkim_key (an RSA key) too"
            )
        if any(ed25519) and self.dkim_ed25519_selector == self.dkim_selector:
            raise SmtpConfigError("the Ed25519 DKIM key needs a selector of its own (one DNS record per key)")

    # -- derived ----------------------------------------------------------------------------

    @property
    def max_connections(self) -> int:
        return self.concurrency or self.pool_size

    @property
    def dkim_enabled(self) -> bool:
        return bool(self.dkim_selector and self.dkim_domain and (self.dkim_key_path or self.dkim_private_key))

    def envelope_sender(
        self, workspace_id: str, message_key: str, recipient: str, tracking_secret: str | None
    ) -> str | None:
        """MAIL FROM for one message: its signed bounce address (model/bounce_address.py),
        else the From address. The signature needs the workspace's tracking secret."""
        if self.bounce_domain:
            if not tracking_secret:
                raise SmtpConfigError("bounce_domain is set but the workspace has no secret to sign bounce addresses")
            key = bounce_address.bounce_key(tracking_secret)
            return bounce_address.signed_address(key, workspace_id, message_key, recipient, self.bounce_domain)
        return self.from_address

    def dkim_key(self) -> bytes | None:
        """The PEM private key (read from its file each time it is asked for: callers cache)."""
        return _pem(self.dkim_private_key, self.dkim_key_path, "DKIM key")

    def dkim_ed25519_key(self) -> bytes | None:
        """The second signature's PEM private key (Ed25519), or None."""
        return _pem(self.dkim_ed25519_private_key, self.dkim_ed25519_key_path, "Ed25519 DKIM key")

    def dkim_keys(self) -> tuple[tuple[str, str, bytes], ...]:
        """(selector, domain, PEM) of each signature a message gets: none, one, or the
        first and the Ed25519 one. Reads key files: callers cache."""
        if not self.dkim_enabled:
            return ()
        domain = self.dkim_domain or ""
        keys = [(self.dkim_selector or "", domain, self.dkim_key() or b"")]
        if self.dkim_ed25519_selector:
            keys.append((self.dkim_ed25519_selector, domain, self.dkim_ed25519_key() or b""))
        return tuple(keys)

    def identity(self) -> tuple[Any, ...]:
        """What a connection pool is keyed by: equal identities may share connections."""
        return (self.host, self.port, self.tls, self.username, self.password, self.verify_tls, self.ca_file)

    def masked(self) -> dict[str, Any]:
        """Every field, secrets replaced by a mask (or None when unset): safe to show and log."""
        out = asdict(self)
        for name in SECRET_FIELDS:
            out[name] = MASK if out[name] else None
        out["url"] = self.url(masked=True)
        return out

    def url(self, masked: bool = False) -> str:
        scheme = {AUTO: "smtp", STARTTLS: "smtp+starttls", TLS: "smtps", NONE: "smtp"}[self.tls]
        auth = ""
        if self.username:
            auth = quote(self.username, safe="")
            if self.password:
                auth += ":" + (MASK if masked else quote(self.password, safe=""))
            auth += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "?tls=none" if self.tls == NONE else ""
        return f"{scheme}://{auth}{host}:{self.port}{query}"

    def __str__(self) -> str:  # never the password, whoever formats it
        return self.url(masked=True)

    def with_(self, **changes: Any) -> SmtpConfig:
        return replace(self, **changes)

    # -- stored form --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The stored form (secrets included: store/workspace_settings.py keeps it)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SmtpConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise SmtpConfigError(f"unknown SMTP settings: {', '.join(sorted(unknown))}")
        return cls(**dict(data))


def _pem(inline: str | None, path: str | None, what: str) -> bytes | None:
    if inline:
        return inline.encode()
    if path:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise SmtpConfigError(f"cannot read the {what} file: {exc.strerror}") from exc
    return None


_OPTION_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "pool": ("pool_size", int),
    "concurrency": ("concurrency", int),
    "rate": ("rate_per_second", float),
    "from": ("from_address", str),
    "from_name": ("from_name", str),
    "reply_to": ("reply_to", str),
    "timeout": ("timeout_s", float),
    "verify": ("verify_tls", _flag),
    "ca": ("ca_file", str),
    "dkim_selector": ("dkim_selector", str),
    "dkim_domain": ("dkim_domain", str),
    "dkim_key": ("dkim_key_path", str),
    "dkim_ed25519_selector": ("dkim_ed25519_selector", str),
    "dkim_ed25519_key": ("dkim_ed25519_key_path", str),
    "bounce_domain": ("bounce_domain", str),
}


def parse_smtp_url(url: str, **overrides: Any) -> SmtpConfig:
    """An SmtpConfig from a URL (see the module docstring); keyword overrides win."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise SmtpConfigError(f"not an SMTP URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise SmtpConfigError(f"unknown SMTP URL scheme {scheme!r}: use smtp, smtp+starttls or smtps")
    tls = _SCHEMES[scheme]
    values: dict[str, Any] = {}
    for name, items in parse_qs(parts.query, keep_blank_values=True).items():
        value = items[-1]
        if name == "tls":
            mode = value.strip().lower()
            if mode not in TLS_MODES:
                raise SmtpConfigError(f"tls must be one of {', '.join(TLS_MODES)}")
            tls = mode
            continue
        if name not in _OPTION_FIELDS:
            raise SmtpConfigError(f"unknown SMTP URL option {name!r}")
        target, kind = _OPTION_FIELDS[name]
        try:
            values[target] = kind(value)
        except ValueError:
            raise SmtpConfigError(f"SMTP URL option {name} is not a valid {kind.__name__}") from None
    values["tls"] = tls
    values["host"] = parts.hostname or ""
    values["port"] = port or _DEFAULT_PORTS[tls]
    if parts.username:
        values["username"] = unquote(parts.username)
    if parts.password:
        values["password"] = unquote(parts.password)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SmtpConfig(**values)


def smtp_config_from_env(env: Mapping[str, str] | None = None) -> SmtpConfig | None:
    """The default configuration, from NUDGEFLOW_SMTP_URL (None when unset)."""
    env = os.environ if env is None else env
    url = env.get("NUDGEFLOW_SMTP_URL", "").strip()
    return parse_smtp_url(url) if url else None
