"""One email, from outbox message to content: template, personalization, tracking, headers.

What the email channel's default renderer does for each message: `prepare_email` reads
(steps 1-2) into an EmailJob, and `build_email` (run by channels/email/build.build_raw, here or
in a worker process) does the rest:
1. the template version (compiled once per version, cached) — none: the message fails with
   "template 'x' not found";
2. the personalization context (content/context.py) plus `links` (signed unsubscribe,
   preference-center and double opt-in confirmation URLs);
3. the Liquid render — a missing variable or a syntax error fails the message with the
   error's part, line and column; nothing half-rendered leaves;
4. links the workspace trusts (content/links.LinkPolicy: the template's literal links,
   catalog URLs, the "links" allowlist) rewritten through signed click URLs, any other
   left untracked; an open pixel appended;
5. List-Unsubscribe + List-Unsubscribe-Post (RFC 8058) on marketing messages.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Engine

from nudgeflow.content.errors import RenderError
from nudgeflow.content.rendered import RenderedEmail
from nudgeflow.core.clock import Clock, SystemClock, to_ms
from nudgeflow.model.outbound import OutboundMessage


def prepare_email(engine: Engine, message: OutboundMessage, clock: Clock | None = None) -> Any:
    """Steps 1 and 2's reads, as an EmailJob (content/email_jobs.py) that builds the
    message's bytes here or in a worker process. Raises RenderError when the message
    cannot be rendered at all."""
    # Imported here: the channel module loads without the content stack (and its MJML
    # compiler) until an email is actually rendered.
    from nudgeflow.content.email_jobs import job_for
    from nudgeflow.content.prepare import prepare

    if engine is None:
        raise RenderError("no database to render templates from")
    now_ms = to_ms((clock or SystemClock()).now())
    to = message.traits.get("email")
    if not isinstance(to, str) or "@" not in to:
        raise RenderError("profile has no email")
    ready = prepare(engine, message, "email", now_ms)
    return job_for(ready.compiled, message, to, ready.context, ready.secret, ready.base, ready.links)


def build_email(
    compiled: Any,
    context: dict[str, Any],
    message: OutboundMessage,
    to: str,
    secret: str,
    base: str,
    policy: Any = None,
    *,
    budget_ms: float | None = None,
) -> Any:
    """Steps 2 (links) to 5 on a compiled template and a context already read: pure, no
    database (benchmarks/email.py times exactly this). `policy` (a links.LinkPolicy with
    the workspace's catalog URLs and allowlist; the template's literal links are added
    here) says which links are tracked; None tracks every http(s) link (tests, benchmarks).
    `budget_ms`: the render's wall-clock budget (the process's by default); past it, or past
    the value ceiling, the message fails with the TemplateError's reason."""
    from nudgeflow.content import links
    from nudgeflow.content.templates import TemplateError, render

    ws, key, pid = message.workspace_id, message.key, message.profile_id
    topic = compiled.source.topic if hasattr(compiled.source, "topic") else None
    context["links"] = {
        **(context.get("links") or {}),
        "unsubscribe": links.unsubscribe_url(base, secret, ws, key, pid, topic),
        "preferences": links.preferences_url(base, secret, ws, key, pid),
        "confirm_subscription": _confirm_link(message, to, topic, secret, base),
    }
    try:
        rendered = render(compiled, context, budget_ms=budget_ms)
    except TemplateError as exc:
        raise RenderError(f"template '{message.template}': {exc}") from exc
    assert isinstance(rendered, RenderedEmail)
    if policy is not None:
        policy = policy.with_urls(*compiled.literal_links)
    signed: dict[str, str | None] = {}  # each URL signed once, in both parts
    html = links.rewrite_links(rendered.html, base, secret, ws, key, pid, signed, policy)
    text = (
        links.rewrite_text_links(rendered.text, base, secret, ws, key, pid, signed, policy)
        if rendered.text
        else rendered.text
    )
    html = _append_pixel(html, links.open_pixel_url(base, secret, ws, key, pid))
    headers: dict[str, str] = {"X-Nudgeflow-Message-Key": key}
    if message.marketing:
        headers.update(links.list_unsubscribe_headers(base, secret, ws, key, pid, topic))
    # The preheader stays as it is: content/templates.py already put it at the top of the
    # HTML (`preheader_in_html`), so composing does not add it again.
    return dataclasses.replace(rendered, html=html, text=text, headers=headers, to=to, marketing=message.marketing)


def _confirm_link(message: OutboundMessage, to: str, template_topic: str | None, secret: str, base: str) -> str:
    """The double opt-in link of this email: consent to email marketing of the topic it
    names (an admin request's `consent.topic`, else the message's topic, else the
    template's, else all marketing), for this address, for CONFIRM_TTL_MS after the
    message was queued (a pure function of the message: every retry renders the same)."""
    from nudgeflow.content import links

    asked = message.context.get("consent")
    topic = asked.get("topic") if isinstance(asked, dict) else None
    if not isinstance(topic, str) or not topic:
        context_topic = message.context.get("topic")
        topic = context_topic if isinstance(context_topic, str) and context_topic else template_topic or "*"
    expires = message.created_at_ms + links.CONFIRM_TTL_MS
    return links.confirm_url(
        base, secret, message.workspace_id, message.key, message.profile_id, "email", topic, to, expires
    )


def _append_pixel(html: str, url: str) -> str:
    tag = f'<img src="{url}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">'
    at = html.lower().rfind("</body>")
    return html[:at] + tag + html[at:] if at >= 0 else html + tag
