"""Is an open or a click a person's? What the tracking routes can tell from one request.

Pure: no I/O, no clock. web/tracking.py hands in what the server saw (method, user agent,
client address, seconds since the message was sent, whether a person's open was recorded
before) and records the answer on the engagement event's properties:

- an open fetched by a machine: `machine: true`, `machine_reason: <reason>`;
- a click made by a machine (a link scanner): `bot: true`, `bot_reason: <reason>`.

A request none of the rules below flags records exactly what it did before these rules.
The engine (core/engine.py, core/segments.py, core/triggers.py) does not count a flagged
open or click as the person's engagement; docs/consent.md has the table of what counts where.

The rules, and where each comes from:

- `head_request` (opens and clicks): a HEAD fetches headers only. A mail client showing an
  image, or a browser following a link, sends GET (RFC 9110 §9.3.2); link checkers and
  scanners send HEAD to see where a link leads.
- `apple_mpp` (opens): Apple Mail Privacy Protection loads every remote image of a message
  through Apple's proxies in the background when the message arrives, whether or not the
  person opens it (Apple: "Mail Privacy Protection … prevents senders from knowing when
  you open an email"; ESPs' write-ups, e.g. SocketLabs' "Identifying Apple MPP opens"). Its
  proxies send the bare user agent `Mozilla/5.0` — Apple Mail itself, loading images from
  the device, sends a full WebKit one. With Apple's list of iCloud Private Relay egress
  ranges configured (Apple publishes it, "Prepare your network or web server for iCloud
  Private Relay"; MPP's fetches use the same relays), a pixel fetched from those
  addresses is flagged too (`apple_relay`). The list is never fetched at run time.
- `scanner_user_agent` (opens and clicks): a user agent naming a mail security scanner or
  link preview service (SCANNER_AGENTS). Most scanners pretend to be a browser, hence the
  timing rule below.
- `automated_user_agent` (opens and clicks): no user agent at all, a crawler's (`bot/`,
  `crawler`, `spider`, a `+http` contact URL), a headless browser, or an HTTP library's
  (curl, python-requests, Go's…). A person's mail client and browser send neither.
- `fast_click` (clicks): a click within `bot_click_seconds` (default 10) of the message
  being sent, with no open of the person recorded before it. Security gateways (Microsoft
  Defender Safe Links, Mimecast, Proofpoint, Barracuda) follow the links of a message as it
  is delivered, before anyone could have read it; a person who clicks that soon has
  usually loaded the message's images first.

Image proxies that fetch when a person opens the message are NOT flagged: Gmail's
(`GoogleImageProxy`), Yahoo's (`YahooMailProxy`) and Outlook's fetch the pixel the first
time the message is shown, so the open is a person's (they hide the address and device,
and a later open of the same message may not reach us, as the image is cached).
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from nudgeflow.model import event_names

# The properties a flagged engagement event carries.
MACHINE: Final = "machine"
MACHINE_REASON: Final = "machine_reason"
BOT: Final = "bot"
BOT_REASON: Final = "bot_reason"

# The reasons.
HEAD_REQUEST: Final = "head_request"
APPLE_MPP: Final = "apple_mpp"
APPLE_RELAY: Final = "apple_relay"
SCANNER_USER_AGENT: Final = "scanner_user_agent"
AUTOMATED_USER_AGENT: Final = "automated_user_agent"
FAST_CLICK: Final = "fast_click"

DEFAULT_BOT_CLICK_SECONDS: Final = 10.0

# The engagement events whose flags the engine reads: opens and clicks, email and push.
FLAGGABLE: Final[frozenset[str]] = frozenset(
    {
        event_names.EMAIL_OPENED,
        event_names.EMAIL_LINK_CLICKED,
        event_names.PUSH_OPENED,
        event_names.PUSH_CLICKED,
        event_names.PUSH_NOTIFICATION_TAPPED,
    }
)

# The user agent Apple's Mail Privacy Protection proxies send: this and nothing more.
APPLE_MPP_AGENT: Final = "Mozilla/5.0"

# Lower-case substrings of user agents that mail security scanners and link preview
# services send when they say who they are, with whose they are.
SCANNER_AGENTS: Final[tuple[tuple[str, str], ...]] = (
    ("bingpreview", "Microsoft (Bing link preview, used for Outlook and Defender link checks)"),
    ("microsoft-urlanalyzer", "Microsoft Defender for Office 365"),
    ("safelinks", "Microsoft Defender for Office 365 Safe Links"),
    ("barracuda", "Barracuda Email Security"),
    ("proofpoint", "Proofpoint"),
    ("mimecast", "Mimecast"),
    ("forcepoint", "Forcepoint"),
    ("symantec", "Symantec / Broadcom email security"),
    ("trendmicro", "Trend Micro"),
    ("trend micro", "Trend Micro"),
    ("sophos", "Sophos"),
    ("fortiguard", "Fortinet"),
    ("ironport", "Cisco Secure Email (IronPort)"),
    ("zscaler", "Zscaler"),
    ("virustotal", "VirusTotal"),
    ("urlscan", "urlscan.io"),
)

# Crawlers, headless browsers and HTTP libraries: what no person's mail client or browser sends.
_AUTOMATED = re.compile(
    r"bot/|bot;|crawler|spider|\+https?://|headlesschrome|phantomjs|"
    r"^curl/|^wget/|python-requests|python-urllib|python-httpx|aiohttp|go-http-client|"
    r"^java/|apache-httpclient|okhttp|libwww-perl|node-fetch|axios/",
)

Kind = Literal["open", "click"]


@dataclass(frozen=True, slots=True)
class Networks:
    """IP ranges as sorted, merged [first, last] integer intervals per address family:
    a lookup is one binary search, whatever the list's length."""

    v4: tuple[tuple[int, int], ...] = ()
    v6: tuple[tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, lines: Iterable[str]) -> Networks:
        """Ranges from lines whose first comma-separated field is a CIDR prefix (Apple's
        egress-ip-ranges.csv: `prefix,country,region,city,`). Blank lines and lines starting
        with `#` are skipped; a line that is not a prefix raises ValueError naming it."""
        spans: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            prefix = text.split(",", 1)[0].strip()
            try:
                net = ipaddress.ip_network(prefix, strict=False)
            except ValueError as exc:
                raise ValueError(f"line {number}: {prefix!r} is not an IP prefix") from exc
            spans[net.version].append((int(net.network_address), int(net.broadcast_address)))
        return cls(_merged(spans[4]), _merged(spans[6]))

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # an IPv4 client seen on a dual-stack socket
        spans = self.v4 if ip.version == 4 else self.v6
        value = int(ip)
        i = bisect_right(spans, (value, 1 << 129)) - 1
        return i >= 0 and spans[i][0] <= value <= spans[i][1]

    def __len__(self) -> int:
        return len(self.v4) + len(self.v6)


def _merged(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for first, last in sorted(spans):
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Rules:
    """What the classification may be tuned with (settings: NUDGEFLOW_BOT_CLICK_SECONDS,
    NUDGEFLOW_APPLE_RELAY_RANGES)."""

    bot_click_seconds: float = DEFAULT_BOT_CLICK_SECONDS  # 0: the fast_click rule is off
    apple_relay: Networks = Networks()


@dataclass(frozen=True, slots=True)
class Sample:
    """One open or click request as the server saw it."""

    kind: Kind
    method: str = "GET"
    user_agent: str | None = None
    client_ip: str | None = None
    # Since the message was sent (the SMTP server took it); None when not known.
    seconds_since_sent: float | None = None
    # A person's open (not a flagged one) of the same message was recorded before.
    opened_before: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    flag: Literal["machine", "bot"] | None = None
    reason: str | None = None

    @property
    def properties(self) -> dict[str, Any]:
        """What the engagement event carries: nothing for a person's."""
        if self.flag == MACHINE:
            return {MACHINE: True, MACHINE_REASON: self.reason}
        if self.flag == BOT:
            return {BOT: True, BOT_REASON: self.reason}
        return {}


HUMAN: Final = Verdict()


def classify(sample: Sample, rules: Rules = Rules()) -> Verdict:
    """The first rule that holds, in the order of the module's list; HUMAN if none does."""
    reason = _reason(sample, rules)
    if reason is None:
        return HUMAN
    return Verdict(MACHINE if sample.kind == "open" else BOT, reason)


def _reason(sample: Sample, rules: Rules) -> str | None:
    if sample.method.upper() == "HEAD":
        return HEAD_REQUEST
    agent = (sample.user_agent or "").strip()
    if sample.kind == "open":
        if agent == APPLE_MPP_AGENT:
            return APPLE_MPP
        if sample.client_ip is not None and rules.apple_relay and sample.client_ip in rules.apple_relay:
            return APPLE_RELAY
    lowered = agent.lower()
    if any(token in lowered for token, _who in SCANNER_AGENTS):
        return SCANNER_USER_AGENT
    if not agent or _AUTOMATED.search(lowered):
        return AUTOMATED_USER_AGENT
    if (
        sample.kind == "click"
        and rules.bot_click_seconds > 0
        and sample.seconds_since_sent is not None
        and sample.seconds_since_sent < rules.bot_click_seconds
        and not sample.opened_before
    ):
        return FAST_CLICK
    return None


def is_flagged(properties: Mapping[str, Any]) -> bool:
    """The event's properties say a machine made it (`machine: true` or `bot: true`)."""
    return properties.get(MACHINE) is True or properties.get(BOT) is True


def machine_engagement(name: str | None, properties: Mapping[str, Any]) -> bool:
    """An open or click (FLAGGABLE) flagged as a machine's: not the person's engagement."""
    return name in FLAGGABLE and is_flagged(properties)
