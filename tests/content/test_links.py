"""Signed links: tokens, click URLs bound to their destination, HTML rewriting, RFC 8058 headers."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from typing import Any

import orjson
import pytest

from nudgeflow.content import links
from nudgeflow.content.email_text import html_to_text
from nudgeflow.content.links import (
    CLICK,
    OPEN,
    PREFERENCES,
    UNSUBSCRIBE,
    InvalidToken,
    LinkToken,
    click_url,
    list_unsubscribe_headers,
    open_pixel_url,
    preferences_url,
    rewrite_links,
    unsubscribe_url,
    verify,
)

BASE = "https://mail.example.com"
SECRET = "s3cret-for-tests"


def token_of(url: str, prefix: str) -> str:
    assert url.startswith(BASE + prefix), url
    return url[len(BASE + prefix) :].removesuffix(".gif")


def test_every_kind_round_trips() -> None:
    for url, prefix, kind in [
        (open_pixel_url(BASE, SECRET, "w1", "run:step:1", "p1"), "/t/o/", OPEN),
        (unsubscribe_url(BASE, SECRET, "w1", "run:step:1", "p1"), "/u/", UNSUBSCRIBE),
        (preferences_url(BASE, SECRET, "w1", "run:step:1", "p1"), "/p/", PREFERENCES),
    ]:
        got = verify(SECRET, token_of(url, prefix), kind)
        assert got == LinkToken(kind, "w1", "run:step:1", "p1")
    assert open_pixel_url(BASE, SECRET, "w1", "k", "p").endswith(".gif")
    topic = verify(SECRET, token_of(unsubscribe_url(BASE, SECRET, "w", "k", "p", topic="offers"), "/u/"))
    assert topic.topic == "offers"
    assert links.peek_workspace(token_of(unsubscribe_url(BASE, SECRET, "w9", "k", "p"), "/u/")) == "w9"


def test_click_url_binds_the_destination() -> None:
    url = click_url(BASE + "/", SECRET, "w1", "k1", "p1", "https://shop.example/item?id=3&x=é")
    token = token_of(url, "/t/c/")
    got = verify(SECRET, token, CLICK)
    assert got.destination == "https://shop.example/item?id=3&x=é" and got.profile_id == "p1"
    # Another destination signed elsewhere does not verify with this token's MAC.
    other = token_of(click_url(BASE, SECRET, "w1", "k1", "p1", "https://evil.example/"), "/t/c/")
    forged = other.split(".")[0] + "." + token.split(".")[1]
    with pytest.raises(InvalidToken):
        verify(SECRET, forged)
    with pytest.raises(ValueError):
        click_url(BASE, SECRET, "w1", "k1", "p1", "javascript:alert(1)")


@pytest.mark.parametrize("mutate", ["payload", "mac", "secret", "kind", "garbage"])
def test_tampered_tokens_are_invalid(mutate: str) -> None:
    token = token_of(click_url(BASE, SECRET, "w1", "k1", "p1", "https://shop.example/"), "/t/c/")
    payload, mac = token.split(".")
    secret, kind = SECRET, None
    if mutate == "payload":
        # Another person in well-formed JSON, under the original MAC: only the MAC can
        # refuse it (a payload that is not JSON would be refused before the MAC is checked).
        body = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert body["p"] == "p1"
        body["p"] = "p2"
        payload = base64.urlsafe_b64encode(orjson.dumps(body)).rstrip(b"=").decode("ascii")
        token = payload + "." + mac
        assert links.peek_workspace(token) == "w1"  # it decodes
    elif mutate == "mac":
        token = payload + "." + mac[:-3] + ("x" if mac[-3] != "x" else "y") + mac[-2:]
    elif mutate == "secret":
        secret = "another secret"
    elif mutate == "kind":
        kind = UNSUBSCRIBE
    else:
        token = "not-a-token"
    with pytest.raises(InvalidToken):
        verify(secret, token, kind)


def _spellings(token: str) -> set[str]:
    """Other spellings a loose base64 decoder reads as the same bytes: padding, the
    standard alphabet's + and /, and unused low bits in each part's last character."""
    out: set[str] = set()
    payload, mac = token.split(".")
    for p_pad in ("", "=", "==", "==="):
        for m_pad in ("", "=", "==", "==="):
            out.add(f"{payload}{p_pad}.{mac}{m_pad}")
    for part in (0, 1):
        pieces = token.split(".")
        pieces[part] = pieces[part].replace("-", "+").replace("_", "/")
        out.add(".".join(pieces))
        for i, ch in enumerate(token.split(".")[part]):
            if ch in "-_":
                pieces = token.split(".")
                pieces[part] = pieces[part][:i] + ("+" if ch == "-" else "/") + pieces[part][i + 1 :]
                out.add(".".join(pieces))
        # The last character of a part whose length is not a multiple of 4 carries unused
        # bits: the next characters of the alphabet decode to the same bytes.
        pieces = token.split(".")
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(pieces[part][-1])
        for other in alphabet[last + 1 : last + 16]:
            pieces2 = list(pieces)
            pieces2[part] = pieces[part][:-1] + other
            out.add(".".join(pieces2))
    out.discard(token)
    return out


def test_every_other_spelling_and_every_changed_byte_is_invalid() -> None:
    token = token_of(click_url(BASE, SECRET, "w1", "k-_?", "p1", "https://shop.example/a?b=c~d"), "/t/c/")
    assert verify(SECRET, token, CLICK).destination == "https://shop.example/a?b=c~d"
    variants = _spellings(token)
    assert len(variants) >= 20
    for variant in variants:
        with pytest.raises(InvalidToken):
            verify(SECRET, variant, CLICK)
    for i, original in enumerate(token):
        for code in range(32, 127):
            if chr(code) == original:
                continue
            changed = token[:i] + chr(code) + token[i + 1 :]
            with pytest.raises(InvalidToken):
                verify(SECRET, changed, CLICK)


def test_a_token_of_one_kind_is_not_another() -> None:
    token = token_of(preferences_url(BASE, SECRET, "w", "k", "p"), "/p/")
    with pytest.raises(InvalidToken):
        verify(SECRET, token, UNSUBSCRIBE)


def test_list_unsubscribe_headers_follow_rfc_8058() -> None:
    headers = list_unsubscribe_headers(BASE, SECRET, "w1", "k1", "p1")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    value = headers["List-Unsubscribe"]
    assert value.startswith("<https://mail.example.com/u/") and value.endswith(">")
    assert verify(SECRET, value[len("<https://mail.example.com/u/") : -1], UNSUBSCRIBE).profile_id == "p1"


def test_one_click_is_left_out_when_the_unsubscribe_url_is_plain_http() -> None:
    # RFC 8058 §3: the one-click URI MUST be https. The Post header was sent for an http
    # public URL too; the List-Unsubscribe link itself stays (it still unsubscribes).
    headers = list_unsubscribe_headers("http://mail.example.com", SECRET, "w1", "k1", "p1")
    assert "List-Unsubscribe-Post" not in headers
    assert headers["List-Unsubscribe"].startswith("<http://mail.example.com/u/")
    assert "List-Unsubscribe-Post" in list_unsubscribe_headers("HTTPS://mail.example.com/", SECRET, "w", "k", "p")


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[tuple[str | None, str]] = []
        self._href: str | None = None
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href, self._text = dict(attrs).get("href"), []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._text is not None:
            self.anchors.append((self._href, "".join(self._text)))
            self._text = None


def anchors(html_text: str) -> list[tuple[str | None, str]]:
    parser = _Anchors()
    parser.feed(html_text)
    return parser.anchors


def test_rewrite_links_wraps_http_links_and_leaves_the_rest() -> None:
    unsub = unsubscribe_url(BASE, SECRET, "w1", "k1", "p1")
    prefs = preferences_url(BASE, SECRET, "w1", "k1", "p1")
    source = (
        "<!DOCTYPE html><html><head><style>a > b { color: red }</style></head><body>"
        "<!-- header --><p>Tom &amp; Jerry &#8212; "
        '<a href="https://shop.example/p?a=1&amp;b=2" class="btn" title="Go &quot;now&quot;">Shop <b>now</b></a> '
        '<a href="HTTP://Shop.Example/Caps">caps</a> '
        '<a href="mailto:help@example.com">Write to us</a> <a href="tel:+123">Call</a> <a href="#top">Top</a> '
        f'<a href="{unsub}">Unsubscribe</a> <a href="{prefs}">Preferences</a> '
        '<a data-nf-notrack href="https://untracked.example/">raw</a><br/><img src="x.png" alt="a"></p></body></html>'
    )
    out = rewrite_links(source, BASE, SECRET, "w1", "k1", "p1")
    got = anchors(out)
    texts = [text for _, text in got]
    assert texts == ["Shop now", "caps", "Write to us", "Call", "Top", "Unsubscribe", "Preferences", "raw"]
    hrefs = [href for href, _ in got]
    first = verify(SECRET, token_of(hrefs[0] or "", "/t/c/"), CLICK)
    assert first.destination == "https://shop.example/p?a=1&b=2"
    assert verify(SECRET, token_of(hrefs[1] or "", "/t/c/")).destination == "HTTP://Shop.Example/Caps"
    assert hrefs[2:] == ["mailto:help@example.com", "tel:+123", "#top", unsub, prefs, "https://untracked.example/"]
    # Everything else is as it was: the text, the entities, the comment, the other attributes.
    assert 'class="btn"' in out and "Tom &amp; Jerry &#8212; " in out and "<!-- header -->" in out
    assert "a > b { color: red }" in out and '<img src="x.png" alt="a">' in out and out.startswith("<!DOCTYPE html>")
    assert re.sub(r'href="[^"]*"', "", out).count("<a ") == 8


def test_rewrite_links_without_links_is_the_identity() -> None:
    source = "<p>No links &lt;here&gt;, <em>only</em> text.</p>"
    assert rewrite_links(source, BASE, SECRET, "w", "k", "p") == source


def test_track_html_adds_the_pixel_before_body_end() -> None:
    out = links.track_html("<html><body><p>x</p></body></html>", BASE, SECRET, "w", "k", "p")
    assert re.search(r'<img src="https://mail\.example\.com/t/o/[^"]+\.gif" width="1" height="1" alt=""', out)
    assert out.endswith("</body></html>")


import html  # noqa: E402
from html.parser import HTMLParser  # noqa: E402

NO_TRACK_ATTRIBUTE = "data-nf-notrack"


class _Rewriter(HTMLParser):
    """Re-emits the document as it came, except the href of trackable <a> tags."""

    def __init__(self, wrap: Any) -> None:
        super().__init__(convert_charrefs=False)
        self.wrap = wrap
        self.out: list[str] = []
        self.rewritten = 0

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], closing: bool) -> None:
        raw = self.get_starttag_text() or ""
        names = {name.lower() for name, _ in attrs}
        href = next((value for name, value in attrs if name.lower() == "href"), None)
        if tag != "a" or href is None or NO_TRACK_ATTRIBUTE in names:
            self.out.append(raw)
            return
        new = self.wrap(href)
        if new is None:
            self.out.append(raw)
            return
        self.rewritten += 1
        parts = [f"<{tag}"]
        for name, value in attrs:
            if name.lower() == "href":
                value = new
            parts.append(f" {name}" if value is None else f' {name}="{html.escape(value, quote=True)}"')
        parts.append(" />" if closing else ">")
        self.out.append("".join(parts))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, closing=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, closing=True)

    def handle_endtag(self, tag: str) -> None:
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.out.append(data)

    def handle_entityref(self, name: str) -> None:
        self.out.append(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.out.append(f"&#{name};")

    def handle_comment(self, data: str) -> None:
        self.out.append(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self.out.append(f"<!{decl}>")

    def handle_pi(self, data: str) -> None:
        self.out.append(f"<?{data}>")

    def unknown_decl(self, data: str) -> None:
        self.out.append(f"<![{data}]>")


def _full_parse_rewrite(html_text: str, wrap: Any) -> str:
    """The reference: the whole document through the HTML parser."""
    parser = _Rewriter(wrap)
    parser.feed(html_text)
    parser.close()
    return "".join(parser.out)


class _Events(HTMLParser):
    """What a browser would see: tags with their attributes (names lowered, values
    unescaped), text, comments; not how the attributes were spelled."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.seen: list[tuple] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(("start", tag, tuple((n.lower(), v) for n, v in attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.seen.append(("end", tag))

    def handle_data(self, data: str) -> None:
        self.seen.append(("data", data))

    def handle_comment(self, data: str) -> None:
        self.seen.append(("comment", data))


def _events(doc: str) -> list[tuple]:
    parser = _Events()
    parser.feed(doc)
    parser.close()
    return parser.seen


def test_rewriting_only_a_tags_matches_a_full_parse_of_real_mjml_output() -> None:
    from pathlib import Path

    import yaml

    from nudgeflow.content.links import rewrite_links
    from nudgeflow.content.sample import sample_context
    from nudgeflow.content.templates import compile_template, render

    base, secret = "https://t.example", "s" * 32
    root = Path(__file__).resolve().parents[2] / "examples" / "templates"
    tricky = (
        '<p><a title="a > b" href="https://x.example/?q=1&amp;r=2">x</a>'
        '<A HREF=\'https://y.example/\'>y</a><a href="mailto:a@b.c">m</a><abbr title="t">t</abbr>'
        '<a data-nf-notrack href="https://z.example">z</a><a\nhref="https://w.example">w</a></p>'
    )
    docs = [tricky]
    for path in sorted(root.glob("*.yaml")):
        source = yaml.safe_load(path.read_text())
        if source.get("channel", "email") == "email":
            rendered = render(compile_template(source), sample_context())
            docs.append(rendered.html)  # type: ignore[union-attr]
    assert len(docs) > 5
    for doc in docs:

        def wrap(href: str) -> str | None:
            from nudgeflow.content.links import click_url, is_ours, is_trackable

            url = href.strip()
            if not is_trackable(url) or is_ours(url, base):
                return None
            return click_url(base, secret, "ws", "k", "p", url)

        assert _events(rewrite_links(doc, base, secret, "ws", "k", "p")) == _events(_full_parse_rewrite(doc, wrap))


def test_text_part_links_are_tracked_too() -> None:
    from nudgeflow.content.links import rewrite_text_links, verify

    base, secret = "https://t.example", "s" * 32
    text = (
        "Back to your cart (https://shop.example/cart?c=1&x=2).\nShoes: https://shop.example/p/1, then\n"
        "Unsubscribe (https://t.example/u/abc) · mailto:help@shop.example\n"
    )
    out = rewrite_text_links(text, base, secret, "ws", "k", "p")
    lines = out.splitlines()
    assert lines[0].startswith("Back to your cart (https://t.example/t/c/") and lines[0].endswith(").")
    token = lines[0][len("Back to your cart (https://t.example/t/c/") : -2]
    assert verify(secret, token).destination == "https://shop.example/cart?c=1&x=2"
    assert lines[1].startswith("Shoes: https://t.example/t/c/") and lines[1].endswith(", then")
    assert lines[2] == "Unsubscribe (https://t.example/u/abc) · mailto:help@shop.example"


def test_only_trusted_destinations_get_a_click_link() -> None:
    urls, prefixes = links.template_links(
        [
            '<a href="https://shop.example.com/cart">Cart</a> {{ item.url | default: "https://shop.example.com" }}',
            '<a href="https://shop.example.com/p/{{ item.id }}">x</a> <a href="https://{{ host }}/x">y</a>',
        ]
    )
    domains = links.allowed_domains_of(
        {"links": {"allowed_domains": ["Partner.Example", "*.cdn.example", "not a host", 7]}}
    )
    assert domains == ("partner.example", "*.cdn.example")
    policy = links.LinkPolicy(frozenset({"https://catalog.example/p/1"}), (), domains).with_urls(urls, prefixes)
    trusted = [
        "https://shop.example.com/cart",
        "https://shop.example.com",
        "https://shop.example.com/p/42",
        "https://catalog.example/p/1",
        "https://partner.example/a",
        "https://img.cdn.example/a.png",
    ]
    untrusted = [
        "https://evil.example/phish",
        "https://catalog.example/p/2",
        "https://www.partner.example/a",
        "https://cdn.example/a",
        "https://evil.example\\@partner.example/",
        "https://partner.example@evil.example/",
        "https://partner.example.evil.example/",
        "https://evil.example/x",
        "https://x.cdn.example\t.evil/",
    ]
    assert [u for u in trusted if not policy.trusts(u)] == []
    assert [u for u in untrusted if policy.trusts(u)] == []
    html = "".join(f'<a href="{u}">x</a>' for u in trusted + untrusted)
    out = rewrite_links(html, BASE, SECRET, "w", "k", "p", policy=policy)
    assert out.count("/t/c/") == len(trusted)
    assert all(f'href="{u}"' in out for u in untrusted if "\t" not in u)  # left as they were, untracked
    text = links.rewrite_text_links(
        "see https://evil.example/phish and https://partner.example/a.", BASE, SECRET, "w", "k", "p", policy=policy
    )
    assert "https://evil.example/phish" in text and text.count("/t/c/") == 1


@pytest.mark.parametrize(
    "url",
    ["https://evil.example\\@shop.example/", "https://shop.example/\r\nSet-Cookie: a=b", "https://shop.example/\x00"],
)
def test_a_token_signed_for_a_url_browsers_read_otherwise_does_not_redirect(url: str) -> None:
    token = links.sign(SECRET, LinkToken(CLICK, "w", "k", "p", destination=url))  # as an old message may hold
    with pytest.raises(InvalidToken):
        verify(SECRET, token, CLICK)
    with pytest.raises(ValueError):
        click_url(BASE, SECRET, "w", "k", "p", url)


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        " \x01java\tscript:alert(1)",
        "&#106;avascript&#58;alert(1)",
        "java&#x0A;script:alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    ],
)
def test_a_script_or_data_url_rendered_into_an_href_is_taken_out(href: str) -> None:
    # A product's `url` from an event sent with the public write key, rendered into
    # <a href="{{ item.url }}">: the link goes, its text and other attributes stay.
    policy = links.LinkPolicy(frozenset({"https://shop.example/cart"}))
    html = (
        f'<p><a class="btn" href="{href}" title="t">Your item</a> '
        f'<a href="{href}" data-nf-notrack>raw</a> <a href="https://shop.example/cart">Cart</a> '
        '<a href="mailto:help@shop.example">Help</a> <a href="myapp://open">App</a></p>'
    )
    out = rewrite_links(html, BASE, SECRET, "w", "k", "p", policy=policy)
    assert anchors(out)[:2] == [(None, "Your item"), (None, "raw")]
    assert '<a class="btn" title="t">Your item</a>' in out
    assert [href for href, _ in anchors(out)[3:]] == ["mailto:help@shop.example", "myapp://open"]
    assert out.count("/t/c/") == 1
    assert not links.is_script_url("https://shop.example/javascript:x") and not links.is_script_url("#data:")
    text = html_to_text(html)  # the text part derived from the HTML does not show it either
    assert "Your item raw Cart (https://shop.example/cart)" in text and "script" not in text and "data:" not in text
