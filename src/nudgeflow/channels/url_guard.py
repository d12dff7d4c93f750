"""Where a webhook may go: the guard against server-side request forgery (SSRF).

A journey author, or whoever writes a destination, chooses a URL our server will call. Left
alone, `http://169.254.169.254/` reads the cloud's instance credentials, and
`http://localhost:5432/` talks to our own database. So before any request:

- only `http` and `https`, with a host, and no user or password in the URL;
- the host is turned into addresses the way a browser does (WHATWG URL): a bracketed IPv6
  literal, a dotted quad, and the legacy numeric forms resolvers still accept
  (`0177.0.0.1`, `0x7f.1`, `2130706433`, `127.1`) read as the IPv4 address they mean;
  `localhost` and `*.localhost` are loopback (RFC 6761); any other name is resolved
  (getaddrinfo, off the event loop);
- every address must be public. Refused: unspecified, loopback, private (RFC 1918, unique
  local fc00::/7), link-local (169.254/16 with the metadata service, fe80::/10), CGNAT
  (100.64/10), multicast, broadcast, documentation, benchmarking, reserved (240/4) and the
  other special-purpose blocks of the IANA registries; an IPv6 address that carries an
  IPv4 one (IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96, 6to4 2002::/16, NAT64
  64:ff9b::/96) is judged by the IPv4 address it carries. A name with one bad address among
  good ones is refused;
- unless the destination allows it: `allow_private` lets it reach any such unicast address,
  `allow_networks` only those in the networks it lists (the unspecified address and
  multicast never);
- the request then goes to the address that was checked (`CheckedUrl.pinned_url`), with the
  URL's host kept in the Host header and as the TLS server name (SNI, and the certificate
  is verified against it): nothing resolves the name a second time, so a DNS answer that
  changes between the check and the connection (DNS rebinding) cannot lead anywhere else.
  Redirects are never followed (the channel treats a 3xx as a failure).

`UrlRefused` is permanent: no retry makes a private address public. A name that does not
resolve is transient (DNS outages pass).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from nudgeflow.channels.base import PermanentError, TransientError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses the name resolves to, as text (what getaddrinfo gives)
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

DEFAULT_PORTS = {"http": 80, "https": 443}

# The special-purpose blocks (IANA's registries), each with what a refusal calls it; the
# first that holds an address names it.
_V4_BLOCKED = tuple(
    (ipaddress.IPv4Network(n), why)
    for n, why in (
        ("0.0.0.0/8", "unspecified"),  # "this network"
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),  # the cloud metadata service lives here
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "reserved"),  # 6to4 relay anycast
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6_BLOCKED = tuple(
    (ipaddress.IPv6Network(n), why)
    for n, why in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "reserved"),  # local-use IPv4/IPv6 translation
        ("100::/64", "reserved"),  # discard-only
        ("2001:db8::/32", "documentation"),
        ("2001::/23", "reserved"),  # IETF protocol assignments (Teredo, benchmarking, ORCHID…)
        ("3fff::/20", "documentation"),
        ("5f00::/16", "reserved"),  # segment routing
        ("fc00::/7", "unique local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (private)"),
        ("ff00::/8", "multicast"),
    )
)
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_COMPAT = ipaddress.IPv6Network("::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NUMERIC_LABEL = re.compile(r"^(0[xX][0-9a-fA-F]*|\d+)$")


class UrlRefused(PermanentError):
    """The URL may not be called: a scheme other than http(s), or an address that is not
    public (and not allowed for this destination)."""


@dataclass(frozen=True)
class Allowance:
    """What a destination may reach besides public addresses."""

    private: bool = False  # any unicast address
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, private: bool = False, networks: Sequence[str] = ()) -> Allowance:
        return cls(private, tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def allows(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # reached as the IPv4 address it carries
        if address.is_unspecified or address.is_multicast:
            return False
        if self.private:
            return True
        return any(address.version == net.version and address in net for net in self.networks)


NOTHING_PRIVATE = Allowance()


@dataclass(frozen=True)
class CheckedUrl:
    """A URL the guard let through, and the one address to connect to."""

    url: str
    scheme: str
    host: str  # as the URL names it, IDNA-encoded, lower case, without brackets or a final dot
    port: int
    target: str  # path and query, "/" at least
    address: IPAddress
    host_is_address: bool  # the URL named an address, not a name

    @property
    def pinned_url(self) -> str:
        shown = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{self.scheme}://{shown}:{self.port}{self.target}"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def sni(self) -> str | None:
        """The TLS server name: the URL's host name (none for an address)."""
        return None if self.host_is_address or self.scheme != "https" else self.host


def refusal(address: IPAddress) -> str | None:
    """Why this address is not public ("loopback", "private", …), or None when it is."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_v4(address)
        if embedded is not None:
            why = refusal(embedded)
            return f"{why} (IPv4 {embedded} inside IPv6)" if why else None
        table: Sequence[tuple[IPNetwork, str]] = _V6_BLOCKED
    else:
        table = _V4_BLOCKED
    for network, why in table:
        if address.version == network.version and address in network:
            return why
    # What the tables may have missed (a block IANA adds later): public means global.
    if not address.is_global or address.is_multicast or address.is_reserved:
        return "not a public address"
    return None


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    if address in _NAT64 or (address in _COMPAT and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host written as numbers means (WHATWG URL's IPv4 parser: 1 to 4
    parts, each decimal, 0x-hex or 0-octal, the last filling the remaining bytes), or None
    when the host is a name. ValueError when it is numbers that make no address."""
    labels = host.split(".")
    if labels and labels[-1] == "" and len(labels) > 1:
        labels = labels[:-1]
    if not labels or not _NUMERIC_LABEL.match(labels[-1]):
        return None
    if len(labels) > 4:
        raise ValueError("more than four parts")
    numbers = []
    for label in labels:
        if not _NUMERIC_LABEL.match(label):
            raise ValueError(f"{label!r} is not a number")
        if label[:2].lower() == "0x":
            numbers.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            if any(c not in "01234567" for c in label):
                raise ValueError(f"{label!r} is not an octal number")
            numbers.append(int(label, 8))
        else:
            numbers.append(int(label))
    *first, last = numbers
    if any(n > 255 for n in first) or last >= 256 ** (5 - len(numbers)):
        raise ValueError("a part is too large")
    value = last
    for i, n in enumerate(first):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """The addresses the system's resolver gives for `host` (getaddrinfo, off the loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _host_of(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UrlRefused(f"only http and https URLs are called, not {repr(scheme) if scheme else 'a relative URL'}")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("a URL with a user or password is not called (put credentials in a destination's headers)")
    host = parts.hostname or ""
    if not host:
        raise UrlRefused("the URL has no host")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme], target


def _literal(host: str) -> IPAddress | None:
    if ":" in host:  # urlsplit took the brackets off an IPv6 literal
        if "%" in host:
            raise UrlRefused(f"an IPv6 address with a zone ({host}) is not called")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise UrlRefused(f"{host!r} is not an IPv6 address") from None
    try:
        return legacy_ipv4(host)
    except ValueError as exc:
        raise UrlRefused(f"the host {host!r} is numbers that make no IPv4 address ({exc})") from None


def _ascii_host(host: str) -> str:
    try:
        return httpx.URL(f"http://{host}/").raw_host.decode("ascii").rstrip(".")
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise UrlRefused(f"the host {host!r} is not a valid name: {exc}") from None


def _refuse(host: str, address: IPAddress, why: str) -> UrlRefused:
    shown = host if host == str(address) else f"{host} ({address})"
    return UrlRefused(
        f"the URL's host {shown} is {why}: webhooks go to public addresses only "
        "(a destination with allow_private or allow_networks may reach it)"
    )


async def check_url(url: str, allowance: Allowance = NOTHING_PRIVATE, resolver: Resolver | None = None) -> CheckedUrl:
    """The URL and the address to call it at, or UrlRefused (see the module docstring);
    TransientError when the name does not resolve now."""
    scheme, host, port, target = _host_of(url)
    literal = _literal(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
        name = str(literal)
    else:
        name = _ascii_host(host)
        if name == "localhost" or name.endswith(".localhost"):
            addresses = [ipaddress.IPv4Address("127.0.0.1")]
        else:
            try:
                found = await (resolver or system_resolver)(name, port)
            except (OSError, UnicodeError) as exc:
                raise TransientError(f"the webhook's host {name} does not resolve: {exc}") from None
            addresses = []
            for text in found:
                try:
                    addresses.append(ipaddress.ip_address(text.split("%", 1)[0]))
                except ValueError:
                    raise TransientError(f"the resolver gave {text!r} for {name}: not an address") from None
            if not addresses:
                raise TransientError(f"the webhook's host {name} resolves to no address")
    for address in addresses:
        why = refusal(address)
        if why is not None and not allowance.allows(address):
            raise _refuse(name, address, why)
    # IPv4 first: a server without IPv6 routes would fail every call to an AAAA-first name.
    chosen = next((a for a in addresses if a.version == 4), addresses[0])
    if isinstance(chosen, ipaddress.IPv6Address) and chosen.ipv4_mapped is not None:
        chosen = chosen.ipv4_mapped  # connect to the IPv4 address it carries
    return CheckedUrl(url, scheme, name, port, target, chosen, literal is not None)
