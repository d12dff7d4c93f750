"""Receiving bounces by SMTP: an aiosmtpd handler for the bounce address of outbound mail.

Outbound mail's envelope sender (Return-Path) is `bounces+<workspace_id>@<bounce domain>`;
mailbox providers send their delivery status notifications (RFC 3464) there, and feedback
loops their ARF complaints (RFC 5965). This handler:
- accepts RCPT only for the configured bounce domains, and names the workspace by the
  `+tag` of the local part (or the default workspace, when one is configured);
- parses each message with content/bounce_parse and applies what it reports through
  runtime/bounces (hard bounce and abuse complaint: suppression and an event; soft
  bounce: an event only);
- answers 250 for a message that is no report (an auto-reply, a person writing back):
  refusing it would only bounce a bounce. A failure to record answers 451, so the
  sending server tries again later.

`nudgeflow serve --bounce-smtp HOST:PORT --bounce-domain DOMAIN` runs it next to the API,
recording through the server's one writer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from nudgeflow.content.bounce_parse import Bounce, Complaint, ReportError, parse_report
from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.runtime.bounces import Applied, Feedback, apply_feedback

log = logging.getLogger("nudgeflow.bounces.smtp")

T = TypeVar("T")
RunJob = Callable[[Callable[[Connection], Any]], Awaitable[Any]]

MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # a DSN returning a big original is still far below this


def engine_jobs(engine: Engine) -> RunJob:
    """Run each job in its own transaction on `engine`, off the event loop (no shared writer)."""

    async def run(fn: Callable[[Connection], T]) -> T:
        def work() -> T:
            with engine.begin() as conn:
                return fn(conn)

        return await asyncio.to_thread(work)

    return run


def committer_jobs(committer: Any) -> RunJob:
    """Run each job through the server's GroupCommitter (thread-safe from any loop)."""

    async def run(fn: Callable[[Connection], T]) -> T:
        return await asyncio.wrap_future(committer.submit_job(fn))

    return run


def feedback_from_report(item: Bounce | Complaint, raw: bytes) -> Feedback:
    # Without our key, the report itself is the identity of the notification.
    event_id = item.message_id or hashlib.sha256(raw).hexdigest()
    if isinstance(item, Complaint):
        return Feedback(
            "complaint", item.address, "smtp", event_id, message_key=item.message_key, feedback_type=item.feedback_type
        )
    return Feedback(item.kind, item.address, "smtp", event_id, item.status, item.diagnostic, item.message_key)


@dataclass
class BounceHandler:
    """aiosmtpd handler: `Controller(BounceHandler(...), hostname=..., port=...)`."""

    run_job: RunJob
    clock: Clock
    domains: frozenset[str]
    default_workspace: str | None = None
    received: list[Applied] = field(default_factory=list)  # what each accepted message applied (tests, stats)

    def workspace_for(self, address: str) -> str | None:
        local, _, domain = address.rpartition("@")
        if domain.lower() not in self.domains:
            return None
        _, plus, tag = local.partition("+")
        return tag if plus and tag else self.default_workspace

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        workspace = self.workspace_for(address)
        if workspace is None:
            return "550 5.1.1 not a bounce address of this server"
        known = {self.workspace_for(a) for a in envelope.rcpt_tos}
        if known and workspace not in known:
            return "452 4.5.3 one workspace per message; send the rest separately"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if len(raw) > MAX_MESSAGE_BYTES:
            return "552 5.3.4 message too big for a bounce report"
        workspace = self.workspace_for(envelope.rcpt_tos[0]) if envelope.rcpt_tos else None
        if workspace is None:
            return "554 5.5.1 no valid recipients"
        try:
            items = parse_report(raw)
        except ReportError as exc:
            log.info("not a bounce or complaint report; ignored", extra={"reason": str(exc)})
            return "250 OK: not a delivery or feedback report, ignored"
        feedback = [feedback_from_report(item, raw) for item in items]
        now_ms = to_ms(self.clock.now())
        try:
            applied: Applied = await self.run_job(lambda conn: apply_feedback(conn, workspace, feedback, now_ms))
        except Exception as exc:
            log.error("could not record a bounce report", extra={"error": type(exc).__name__}, exc_info=True)
            return "451 4.3.0 could not record the report now; try again later"
        self.received.append(applied)
        return (
            f"250 OK: {applied.bounces} bounce(s), {applied.complaints} complaint(s), {applied.suppressed} suppressed"
        )


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) -> (host, port); ValueError naming what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--bounce-smtp wants HOST:PORT, not {value!r}")
    return host.strip("[]"), int(port)


def start_bounce_smtp(
    run_job: RunJob, clock: Clock, host: str, port: int, domains: list[str], default_workspace: str | None = None
) -> Any:
    """Start the handler in aiosmtpd's own thread; returns the Controller (call .stop())."""
    from aiosmtpd.controller import Controller

    if not domains:
        raise ValueError("a bounce SMTP server needs at least one --bounce-domain")
    handler = BounceHandler(run_job, clock, frozenset(d.lower() for d in domains), default_workspace)
    controller = Controller(handler, hostname=host, port=port, data_size_limit=MAX_MESSAGE_BYTES, ready_timeout=10)
    controller.start()
    return controller
