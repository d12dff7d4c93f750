"""The SSRF guard: which URLs a webhook may call, and the one address it then connects to.

Names are resolved by a resolver the test injects (no /etc/hosts, no network), except where
the system's own resolver is the point (`localhost`, the legacy numeric forms it accepts)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

import pytest

from nudgeflow.channels.base import PermanentError, TransientError
from nudgeflow.channels.url_guard import (
    NOTHING_PRIVATE,
    Allowance,
    CheckedUrl,
    UrlRefused,
    check_url,
    legacy_ipv4,
    refusal,
    system_resolver,
)

NAMES = {
    "rebind.test": ["127.0.0.1"],
    "public.test": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "v6only.test": ["2606:2800:220:1:248:1893:25c8:1946"],
    "mixed.test": ["93.184.216.34", "10.1.2.3"],
    "metadata.test": ["169.254.169.254"],
    "mapped.test": ["::ffff:10.0.0.1"],
}
asked: list[str] = []


async def resolver(host: str, port: int) -> Sequence[str]:
    asked.append(host)
    if host not in NAMES:
        raise OSError(-2, "Name or service not known")
    return NAMES[host]


def check(url: str, allowance: Allowance = NOTHING_PRIVATE) -> CheckedUrl:
    return asyncio.run(check_url(url, allowance, resolver))


def refused(url: str, allowance: Allowance = NOTHING_PRIVATE) -> str:
    with pytest.raises(UrlRefused) as info:
        check(url, allowance)
    assert isinstance(info.value, PermanentError)  # no retry makes a private address public
    return info.value.reason


@pytest.mark.parametrize(
    "url, shown, why",
    [
        ("http://0177.0.0.1/", "127.0.0.1", "loopback"),  # octal, as inet_aton reads it
        ("http://2130706433/", "127.0.0.1", "loopback"),  # one decimal number
        ("http://0x7f.1/", "127.0.0.1", "loopback"),  # hex, and a last part that fills three bytes
        ("http://127.1/", "127.0.0.1", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1", "loopback (IPv4 127.0.0.1 inside IPv6)"),
        ("http://[::127.0.0.1]/", "::7f00:1", "loopback (IPv4 127.0.0.1 inside IPv6)"),
        ("http://[2002:7f00:1::]/", "2002:7f00:1::", "loopback (IPv4 127.0.0.1 inside IPv6)"),  # 6to4
        ("http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe", "link-local (IPv4 169.254.169.254 inside IPv6)"),
        ("http://[::1]:8080/", "::1", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local"),
        ("http://10.0.0.1/", "10.0.0.1", "private"),
        ("http://172.16.5.4/", "172.16.5.4", "private"),
        ("http://192.168.1.1/", "192.168.1.1", "private"),
        ("http://100.64.0.1/", "100.64.0.1", "carrier-grade NAT"),
        ("http://0.0.0.0/", "0.0.0.0", "unspecified"),
        ("http://[::]/", "::", "unspecified"),
        ("http://224.0.0.251/", "224.0.0.251", "multicast"),
        ("http://255.255.255.255/", "255.255.255.255", "broadcast"),
        ("http://240.0.0.1/", "240.0.0.1", "reserved"),
        ("http://198.51.100.7/", "198.51.100.7", "documentation"),
        ("http://[fc00::1]/", "fc00::1", "unique local (private)"),
        ("http://[fe80::1]/", "fe80::1", "link-local"),
        ("http://[ff02::1]/", "ff02::1", "multicast"),
        ("http://[2001:db8::1]/", "2001:db8::1", "documentation"),
    ],
)
def test_addresses_that_are_not_public_are_refused(url: str, shown: str, why: str) -> None:
    assert refused(url) == (
        f"the URL's host {shown} is {why}: webhooks go to public addresses only "
        "(a destination with allow_private or allow_networks may reach it)"
    )


def test_names_are_judged_by_every_address_they_resolve_to() -> None:
    assert "rebind.test (127.0.0.1) is loopback" in refused("http://rebind.test/hook")
    assert "metadata.test (169.254.169.254) is link-local" in refused("https://metadata.test/")
    # One bad address among good ones is enough: the name is refused, not filtered.
    assert "mixed.test (10.1.2.3) is private" in refused("https://mixed.test/")
    assert "mapped.test (::ffff:a00:1) is private (IPv4 10.0.0.1 inside IPv6)" in refused("http://mapped.test/")


def test_localhost_is_loopback_whatever_a_resolver_says() -> None:
    asked.clear()
    assert "localhost (127.0.0.1) is loopback" in refused("http://localhost/")
    assert "api.localhost (127.0.0.1) is loopback" in refused("http://API.localhost./x")
    assert asked == []  # RFC 6761: never asked


def test_the_systems_resolver_is_judged_the_same_way() -> None:
    # The forms inet_aton reads: a resolver maps them to 127.0.0.1 too, and the guard
    # reads them itself before asking one.
    assert [str(a) for a in asyncio.run(system_resolver("0177.0.0.1", 80))][:1] == ["127.0.0.1"]
    for url in ("http://0177.0.0.1/", "http://2130706433/", "http://localhost/", "http://[::ffff:127.0.0.1]/"):
        with pytest.raises(UrlRefused, match="loopback"):
            asyncio.run(check_url(url))


def test_a_public_name_is_pinned_to_one_checked_address_ipv4_first() -> None:
    checked = check("https://Public.test:8443/a/b?c=1&d=%20")
    assert checked.address == ipaddress.ip_address("93.184.216.34")
    assert checked.pinned_url == "https://93.184.216.34:8443/a/b?c=1&d=%20"
    assert (checked.host, checked.host_header, checked.sni) == ("public.test", "public.test:8443", "public.test")
    v6 = check("http://v6only.test/")
    assert v6.pinned_url == "http://[2606:2800:220:1:248:1893:25c8:1946]:80/"
    assert (v6.host_header, v6.sni) == ("v6only.test", None)  # no SNI over plain http
    literal = check("https://8.8.8.8/dns")
    assert (literal.pinned_url, literal.host_header, literal.sni) == ("https://8.8.8.8:443/dns", "8.8.8.8", None)
    mapped = check("http://[::ffff:8.8.8.8]/")  # a public IPv4 inside IPv6 is reached over IPv4
    assert mapped.pinned_url == "http://8.8.8.8:80/"


def test_a_destination_may_allow_private_networks() -> None:
    loopback = Allowance.of(networks=["127.0.0.0/8"])
    assert check("http://rebind.test:9000/x", loopback).pinned_url == "http://127.0.0.1:9000/x"
    assert check("http://[::ffff:127.0.0.1]/", loopback).pinned_url == "http://127.0.0.1:80/"  # reached over IPv4
    assert "10.1.2.3" in refused("http://mixed.test/", loopback)  # only the networks it names
    anything_private = Allowance.of(private=True)
    assert check("http://10.9.8.7/", anything_private).pinned_url == "http://10.9.8.7:80/"
    # Never the unspecified address or multicast, allowed or not.
    assert "unspecified" in refused("http://0.0.0.0/", anything_private)
    assert "multicast" in refused("http://224.0.0.1/", Allowance.of(networks=["224.0.0.0/4"]))


@pytest.mark.parametrize(
    "url, reason",
    [
        ("ftp://public.test/", "only http and https URLs are called, not 'ftp'"),
        ("file:///etc/passwd", "only http and https URLs are called, not 'file'"),
        ("gopher://public.test/", "only http and https URLs are called, not 'gopher'"),
        ("//public.test/", "only http and https URLs are called, not a relative URL"),
        ("http://user:pw@public.test/", "a URL with a user or password is not called"),
        ("http:///path", "the URL has no host"),
        ("http://[fe80::1%25eth0]/", "an IPv6 address with a zone (fe80::1%25eth0) is not called"),
        ("http://1.2.3.4.5/", "the host '1.2.3.4.5' is numbers that make no IPv4 address (more than four parts)"),
        ("http://256.0.0.1/", "the host '256.0.0.1' is numbers that make no IPv4 address (a part is too large)"),
        ("http://08.0.0.1/", "the host '08.0.0.1' is numbers that make no IPv4 address ('08' is not an octal number)"),
    ],
)
def test_schemes_credentials_and_bad_hosts_are_refused(url: str, reason: str) -> None:
    assert refused(url).startswith(reason)


def test_a_name_that_does_not_resolve_is_transient() -> None:
    with pytest.raises(TransientError, match=r"the webhook's host nowhere\.test does not resolve"):
        check("https://nowhere.test/")


def test_legacy_ipv4_reads_what_browsers_read() -> None:
    assert str(legacy_ipv4("0300.0250.0.1")) == "192.168.0.1"
    assert str(legacy_ipv4("0xC0A80001")) == "192.168.0.1"
    assert str(legacy_ipv4("192.168.1")) == "192.168.0.1"
    assert str(legacy_ipv4("3232235521")) == "192.168.0.1"
    assert legacy_ipv4("example.com") is None and legacy_ipv4("1.2.3.com") is None
    assert str(legacy_ipv4("1.2.3.4.")) == "1.2.3.4"


def test_public_addresses_pass() -> None:
    for text in ("8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8"):
        assert refusal(ipaddress.ip_address(text)) is None, text
