"""One push message, from outbox message to content: template, personalization, expiry, report link.

The push channel (channels/push.py) renders a message once and hands the same `PushContent`
to every target's sender (Web Push, FCM, APNs), which shapes it into its service's payload
and checks that service's size limit. Rendering uses the email's personalization context
(content/context.py): profile, trigger event, run, recently viewed items, recommendations,
the nearest place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from nudgeflow.content.errors import RenderError
from nudgeflow.content.rendered import RenderedPush
from nudgeflow.core.clock import Clock, SystemClock, to_ms
from nudgeflow.model.outbound import OutboundMessage


@dataclass(frozen=True)
class PushContent:
    """A rendered push message, the same for every target of the person."""

    message_key: str
    title: str
    body: str
    image: str | None = None
    icon: str | None = None
    url: str | None = None
    data: dict[str, str] = field(default_factory=dict)
    actions: tuple[dict[str, str], ...] = ()
    ttl_s: int = 4 * 3600
    urgency: str | None = None  # very-low | low | normal | high
    collapse_key: str | None = None
    expires_at_ms: int = 0  # never shown after this: the services drop it, we do not send it
    report_url: str | None = None  # where the service worker reports delivered / clicked
    marketing: bool = True

    def ttl_at(self, now_ms: int) -> int:
        """Seconds left to live at `now_ms` (what TTL / apns-expiration say), at least 0."""
        return max(0, (self.expires_at_ms - now_ms) // 1000)

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_at_ms

    @property
    def replace_id(self) -> str:
        """What makes a second copy of this message replace the first rather than show beside
        it: the template's collapse_key, else the message key. A send cancelled by its timeout
        may have been accepted, and its retry then reaches the device again; each sender
        hands this to its service's replacing mechanism (APNs apns-collapse-id, FCM's Android
        notification tag, Web Push's Topic: docs/push.md, "A retry replaces, not repeats")."""
        return self.collapse_key or self.message_key

    def notification(self) -> dict[str, Any]:
        """The service-neutral notification (what the service worker and the apps read)."""
        out: dict[str, Any] = {"title": self.title, "body": self.body, "key": self.message_key}
        for name in ("image", "icon", "url", "report_url"):
            value = getattr(self, name)
            if value:
                out[name] = value
        if self.actions:
            out["actions"] = list(self.actions)
        if self.data:
            out["data"] = dict(self.data)
        return out


def render_push(
    engine: Engine, message: OutboundMessage, clock: Clock | None = None, created_at_ms: int | None = None
) -> PushContent:
    """Render `message` with its template and the person's context, or raise RenderError
    (template missing, of another channel, a Liquid error with its part, line and column)."""
    from nudgeflow.content import links
    from nudgeflow.content.prepare import prepare
    from nudgeflow.content.templates import TemplateError, render

    now_ms = to_ms((clock or SystemClock()).now())
    ws, key, pid = message.workspace_id, message.key, message.profile_id
    ready = prepare(engine, message, "push", now_ms)
    try:
        rendered = render(ready.compiled, ready.context)
    except TemplateError as exc:
        raise RenderError(f"template '{message.template}': {exc}") from exc
    assert isinstance(rendered, RenderedPush)
    return content_from(
        rendered,
        key,
        created_at_ms if created_at_ms is not None else (message.created_at_ms or now_ms),
        report_url=links.push_report_url(ready.base, ready.secret, ws, key, pid),
        marketing=message.marketing,
    )


def content_from(
    rendered: Any, message_key: str, created_at_ms: int, *, report_url: str | None = None, marketing: bool = True
) -> PushContent:
    """PushContent from a rendered template; it expires `ttl` seconds after the message was queued."""
    return PushContent(
        message_key=message_key,
        title=rendered.title,
        body=rendered.body,
        image=rendered.image,
        icon=rendered.icon,
        url=rendered.url,
        data=dict(rendered.data),
        actions=tuple(rendered.actions),
        ttl_s=rendered.ttl_s,
        urgency=rendered.urgency,
        collapse_key=rendered.collapse_key,
        expires_at_ms=created_at_ms + rendered.ttl_s * 1000,
        report_url=report_url,
        marketing=marketing,
    )
