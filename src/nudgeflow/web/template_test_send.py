"""A test send of an email template: POST /api/templates/{name}/test-send.

The template's version (the current one by default) is rendered with the sample context,
or with a chosen person's, and sent to an address, or to that person's own `email`,
through an EmailChannel of the workspace's SMTP settings (or the server's default), as a
journey's email is composed, signed and delivered (channels/email). It is no journey's
message: nothing is queued or recorded as a message, its links are not tracked, and its
subject starts with "[Test] " so no one takes it for the real thing.
"""

from __future__ import annotations

import dataclasses
import uuid

from nudgeflow.channels.base import PermanentError, TransientError
from nudgeflow.channels.email.channel import EmailChannel, WorkspaceConfigs
from nudgeflow.content.rendered import RenderedEmail
from nudgeflow.core.clock import Clock
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.model.smtp_config import parse_smtp_url
from nudgeflow.settings import Settings

TEST_PREFIX = "[Test] "


class TestSendFailed(Exception):
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
