"""The text of an email besides its template's parts: a plain-text version of its HTML,
and the preheader put at the top of its HTML as hidden text.

Both are rendering, so they live here; the email channel calls them when it composes a
`RenderedEmail` that lacks a text part or carries a preheader to inject, and
content/templates.py derives a template's text part with `html_to_text` and puts its
preheader in with `inject_preheader`: the one place a preheader goes into HTML.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser

from nudgeflow.content.links import is_script_url

_BLOCK = {
    "address",
    "article",
    "aside",
    "blockquote",
    "center",
    "dd",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tbody",
    "thead",
    "tfoot",
    "tr",
    "ul",
    "li",
    "body",
    "html",
}
_SKIP = {"script", "style", "head", "title", "template", "noscript", "svg"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_HIDDEN = re.compile(r"display\s*:\s*none|mso-hide\s*:\s*all", re.I)


class _TextMaker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip: list[str] = []  # open tags whose content is not text
        self.links: list[tuple[str | None, int]] = []  # open <a>: href, where its text starts

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if self.skip:
            if tag not in _VOID:
                self.skip.append(tag)
            return
        if tag in _SKIP or _HIDDEN.search(a.get("style") or "") or "hidden" in a:
            if tag not in _VOID:
                self.skip.append(tag)
            return
        if tag == "br":
            self.out.append("\n")
        elif tag == "hr":
            self.out.append("\n\n----\n\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag in _BLOCK:
            self.out.append("\n\n" if tag in ("p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote") else "\n")
        elif tag == "img":
            alt = (a.get("alt") or "").strip()
            if alt:
                self.out.append(f" {alt} ")
        if tag == "a":
            self.links.append((a.get("href"), len(self.out)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag in self.skip:  # tolerate unclosed inner tags
                while self.skip and self.skip.pop() != tag:
                    pass
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            label = " ".join("".join(self.out[start:]).split())
            href = (href or "").strip()
            if href and not href.startswith("#") and not is_script_url(href):
                shown = href[7:] if href.startswith("mailto:") else href
                if not label:
                    self.out.append(shown)
                elif label != shown and label != href:
                    self.out.append(f" ({shown})")
        elif tag in _BLOCK and tag != "li":  # the next item starts its own line
            self.out.append("\n\n" if tag in ("p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote") else "\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


def html_to_text(source: str) -> str:
    """A readable text version of an HTML email: no tags, no hidden text (scripts, styles,
    display:none), links as "text (url)", list items as "- ", whitespace collapsed within
    lines, at most one blank line in a row."""
    maker = _TextMaker()
    maker.feed(source)
    maker.close()
    return tidy_text("".join(maker.out))


_BLANK_LINES = re.compile(r"\n{3,}")


def tidy_text(text: str) -> str:
    """Whitespace collapsed within lines, at most one blank line in a row, one final newline."""
    lines = [" ".join(line.split()) for line in text.replace("\xa0", " ").replace("\u200c", "").split("\n")]
    text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    return text + "\n" if text else ""


_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def _markup_escape(text: str) -> str:
    from markupsafe import escape  # Liquid's own escaping (&#34; and &#39; for quotes)

    return str(escape(text))


@dataclass(frozen=True)
class PreheaderForm:
    """How the hidden block is written. Two forms have always been sent and are kept byte
    for byte: a template's render writes TEMPLATE_PREHEADER, and composing an email whose
    HTML lacks its preheader (a renderer other than the templates') writes PADDED_PREHEADER."""

    style: str
    padding: str  # after the text, so that the body's first words do not follow it into the preview
    escape: Callable[[str], str]


TEMPLATE_PREHEADER = PreheaderForm(
    style="display:none;font-size:1px;color:#ffffff;line-height:1px;max-height:0px;max-width:0px;opacity:0;"
    "overflow:hidden;",
    padding="",
    escape=_markup_escape,
)
PADDED_PREHEADER = PreheaderForm(
    style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;overflow:hidden;"
    "mso-hide:all;color:transparent",
    padding="&#8199;&#65279;&#847; " * 40,
    escape=html.escape,
)


def inject_preheader(source: str, preheader: str | None, form: PreheaderForm = PADDED_PREHEADER) -> str:
    """The preheader as hidden text at the top of the body (what inboxes show after the
    subject); the HTML as it is when there is no preheader."""
    if not preheader:
        return source
    block = f'<div style="{form.style}">{form.escape(preheader)}{form.padding}</div>'
    match = _BODY_TAG.search(source)
    if match:
        return source[: match.end()] + block + source[match.end() :]
    return block + source
