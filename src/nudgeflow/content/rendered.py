"""What rendering a template gives: an email's content, or a push message's.

`RenderedEmail` is the one class both ends use: content/templates.render returns it, the
email pipeline (content/email_render.build_email) adds tracking and headers to it, and any
renderer of the email channel may return one; channels/email composes it into MIME.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# How long a push service may hold a notification for an offline device when the template
# does not say: a stale "your cart is waiting" must not show up a day late.
DEFAULT_PUSH_TTL_S = 4 * 3600


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str | None = None  # None: derived from the HTML when the email is composed
    # What inboxes show after the subject. Composing puts it as hidden text at the top of
    # the HTML, unless `preheader_in_html` says the HTML has it already (a template's render
    # does that itself, and keeps the text here for previews).
    preheader: str | None = None
    preheader_in_html: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # List-Unsubscribe, List-Unsubscribe-Post, ...
    to: str | None = None  # None: the profile's email trait
    marketing: bool = False
    topic: str | None = None  # the template's subscription topic


@dataclass(frozen=True)
class RenderedPush:
    title: str
    body: str
    image: str | None
    url: str | None
    data: dict[str, str]
    icon: str | None = None
    actions: tuple[dict[str, str], ...] = ()
    ttl_s: int = DEFAULT_PUSH_TTL_S
    urgency: str | None = None
    collapse_key: str | None = None
