"""A test send of a template: POST /api/templates/{name}/test-send.

Email: the template's version (the current one by default) is rendered with the sample
context, or with a chosen person's, and sent to an address, or to that person's own
`email`, through an EmailChannel of the workspace's SMTP settings (or the server's
default), as a journey's email is composed, signed and delivered (channels/email).

Push: rendered with a chosen person's context (a push goes to a person's devices, not to
an address) and handed to each of their push targets' senders, the same senders the push
channel uses (channels/wiring.push_senders), concurrently. Each target's answer is
reported (redacted); a target its service calls gone is reported, not deleted: the next
real message finds it gone again and deletes it.

Either is no journey's message: nothing is queued or recorded as a message or a delivery,
its links are not tracked, and its subject or title starts with "[Test] " so no one takes
it for the real thing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

from nudgeflow.channels.base import ChannelError, PermanentError, TransientError
from nudgeflow.channels.common import TargetGone
from nudgeflow.channels.email.channel import EmailChannel, WorkspaceConfigs
from nudgeflow.channels.wiring import push_senders
from nudgeflow.content.push_render import content_from
from nudgeflow.content.rendered import RenderedEmail, RenderedPush
from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.errors import WebError
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.model.smtp_config import parse_smtp_url
from nudgeflow.settings import Settings
from nudgeflow.store.push_targets import PushTarget

TEST_PREFIX = "[Test] "


class TestSendFailed(WebError):
    """The SMTP server refused or could not be reached; the message says why."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.status = status


class _Rendered:
    """The email channel's Renderer for one email already rendered."""

    def __init__(self, rendered: RenderedEmail) -> None:
        self.rendered = rendered

    async def render_email(self, message: OutboundMessage) -> RenderedEmail:
        return self.rendered


async def send_test(
    engine: object,
    settings: Settings,
    clock: Clock,
    workspace_id: str,
    name: str,
    rendered: RenderedEmail,
    to: str,
    profile_id: str | None,
) -> str:
    """Send it; returns the message key it went out with. Raises TestSendFailed."""
    default = parse_smtp_url(settings.smtp_url) if settings.smtp_url else None
    email = dataclasses.replace(rendered, subject=TEST_PREFIX + rendered.subject, to=to, marketing=False)
    channel = EmailChannel(WorkspaceConfigs(engine, default, clock), _Rendered(email), clock)
    key = f"test-{uuid.uuid4().hex}"
    message = OutboundMessage(
        key=key,
        workspace_id=workspace_id,
        profile_id=profile_id or "",
        run_id="",
        journey_id="",
        step="test-send",
        channel="email",
        template=name,
        variant=None,
        marketing=False,
        traits={"email": to},
    )
    try:
        await channel.send(message)
    except TransientError as exc:
        raise TestSendFailed(f"the SMTP server did not take it: {exc.reason}", 502) from exc
    except PermanentError as exc:
        status = 409 if "no SMTP server" in exc.reason or "From address" in exc.reason else 502
        raise TestSendFailed(exc.reason, status) from exc
    finally:
        await channel.aclose()
    return key


async def send_push_test(
    engine: Any, settings: Settings, clock: Clock, workspace_id: str, rendered: RenderedPush, targets: list[PushTarget]
) -> tuple[str, list[dict[str, str]]]:
    """Send it to each of `targets` (a person's); returns the key it went out with and, per
    target, {"target": redacted, "result": "sent" | "gone" | "failed" | "not configured",
    "reason"}. Raises TestSendFailed when the person has no target at all."""
    if not targets:
        raise TestSendFailed("the person has no push target (no push subscription or device token)", 409)
    key = f"test-{uuid.uuid4().hex}"
    test = dataclasses.replace(rendered, title=TEST_PREFIX + rendered.title)
    content = content_from(test, key, to_ms(clock.now()), marketing=False)
    senders = push_senders(engine, settings, clock)
    try:
        usable = [t for t in targets if t.provider in senders]
        results = await asyncio.gather(
            *(senders[t.provider].send(workspace_id, t, content) for t in usable), return_exceptions=True
        )
    finally:
        for sender in senders.values():
            await sender.aclose()
    answers = {t.key: result for t, result in zip(usable, results, strict=True)}
    out: list[dict[str, str]] = []
    for target in targets:
        if target.key not in answers:
            out.append({"target": target.redacted(), "result": "not configured", "reason": "no credentials"})
            continue
        result = answers[target.key]
        if result is None:
            out.append({"target": target.redacted(), "result": "sent", "reason": ""})
        elif isinstance(result, TargetGone):
            out.append({"target": target.redacted(), "result": "gone", "reason": result.reason})
        elif isinstance(result, ChannelError):
            out.append({"target": target.redacted(), "result": "failed", "reason": result.reason})
        else:  # an unexpected error: its type only (its text may carry a token)
            out.append({"target": target.redacted(), "result": "failed", "reason": type(result).__name__})
    return key, out
