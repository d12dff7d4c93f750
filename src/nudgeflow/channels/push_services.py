"""Which Web Push services a browser's subscription may point at.

A subscription's endpoint comes from the browser, through the public write key: anyone can
post one. Nudgeflow then POSTs to that URL from inside the operator's network, so an
endpoint at an internal host would make the server a proxy into it (server-side request
forgery). Registration therefore accepts only the push services browsers use, plus the
hosts an operator names (NUDGEFLOW_WEBPUSH_HOSTS, e.g. a self-hosted autopush); `serve
--dev` adds loopback for its local push service.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from nudgeflow.settings import Settings

# The services of Chrome, Edge, Opera and Samsung Internet (FCM), Firefox (Mozilla's
# autopush), Safari (Apple), and Edge / legacy Windows apps (WNS). "*." matches subdomains.
KNOWN_SERVICES = (
    "fcm.googleapis.com",
    "android.googleapis.com",
    "updates.push.services.mozilla.com",
    "push.services.mozilla.com",
    "web.push.apple.com",
    "*.push.apple.com",
    "*.notify.windows.com",
)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ANY = "*"  # in NUDGEFLOW_WEBPUSH_HOSTS: accept every https host (the check off)


def _matches(host: str, pattern: str) -> bool:
    pattern = pattern.strip().lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def allowed(endpoint: str, extra: Iterable[str] = ()) -> bool:
    """Is the endpoint's host a known push service or one of `extra`?"""
    extra = tuple(extra)
    if ANY in extra:
        return True
    try:
        host = (urlsplit(endpoint).hostname or "").lower()
    except ValueError:
        return False
    return bool(host) and any(_matches(host, p) for p in (*KNOWN_SERVICES, *extra))


def allowed_hosts(settings: Settings) -> tuple[str, ...]:
    """The operator's extra hosts from the settings, with loopback in dev mode."""
    extra = tuple(settings.webpush_hosts or ())
    return (*extra, *LOOPBACK) if settings.dev_mode else extra
