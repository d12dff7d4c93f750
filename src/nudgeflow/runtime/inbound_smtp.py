"""Receiving bounces by SMTP: an aiosmtpd handler for the bounce address of outbound mail.

Outbound mail's envelope sender (Return-Path) is a signed bounce address,
`bounces+<workspace_id>.<ref>.<mac>@<bounce domain>` (model/bounce_address.py); mailbox
providers send their delivery status notifications (RFC 3464) there, and feedback loops
their ARF complaints (RFC 5965) to `fbl+<workspace_id>@<bounce domain>`. This handler:
- accepts RCPT only for the configured bounce domains, and there only a signed address or a
  feedback-loop one (an unsigned `bounces+<workspace>@` is refused with 550: the workspace
  id is public, so it vouches for nothing);
- parses each message with content/bounce_parse and believes an item only when the signed
  address was made for the recipient it names (runtime/bounce_auth); a report of which
  nothing is believed is refused with 550 and recorded nowhere, and the reason is logged;
- applies what it believes through runtime/bounces (hard bounce and abuse complaint:
  suppression and an event; soft bounce: an event only);
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
from nudgeflow.model.bounce_address import SignedTag, parse_signed
from nudgeflow.runtime.bounce_auth import check_items
from nudgeflow.runtime.bounces import Applied, Feedback, apply_feedback
from nudgeflow.store.consent import existing_tracking_secret

log = logging.getLogger("nudgeflow.bounces.smtp")

T = TypeVar("T")
RunJob = Callable[[Callable[[Connection], Any]], Awaitable[Any]]

MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # a DSN returning a big original is still far below this
FBL_PREFIX = "fbl"  # the local part registered with feedback loops: fbl+<workspace>@<bounce domain>


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


@dataclass(frozen=True)
class BounceRecipient:
    """A RCPT address of ours: its workspace, and its signed tag (None: a feedback-loop address)."""

    workspace_id: str
    tag: SignedTag | None


@dataclass
class BounceHandler:
    """aiosmtpd handler: `Controller(BounceHandler(...), hostname=..., port=...)`."""

    run_job: RunJob
    clock: Clock
    domains: frozenset[str]
    default_workspace: str | None = None  # the workspace of a feedback-loop address without a +tag
    received: list[Applied] = field(default_factory=list)  # what each accepted message applied (tests, stats)

    def recipient_for(self, address: str) -> BounceRecipient | str:
        """Whose bounce address this is, or the SMTP answer refusing it."""
        local, _, domain = address.rpartition("@")
        if domain.lower() not in self.domains:
            return "550 5.1.1 not a bounce address of this server"
        tag = parse_signed(address)
        if tag is not None:
            return BounceRecipient(tag.workspace_id, tag)
        prefix, plus, workspace = local.partition("+")
        if prefix.lower() == FBL_PREFIX:
            workspace = workspace if plus and workspace else self.default_workspace or ""
            if workspace:
                return BounceRecipient(workspace, None)
            return "550 5.1.1 a feedback-loop address needs fbl+<workspace>@ (no default workspace here)"
        # An unsigned bounces+<workspace>@ names a workspace anyone can read off a Return-Path.
        log.warning("bounce report refused at RCPT", extra={"reason": "unsigned bounce address"})
        return "550 5.7.1 not a signed bounce address; reports are taken only at the Return-Path of our mail"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        found = self.recipient_for(address)
        if isinstance(found, str):
            return found
        if envelope.rcpt_tos:
            # Each signed address vouches for its own message only: one per transaction.
            return "452 4.5.3 one bounce address per message; send the rest separately"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if len(raw) > MAX_MESSAGE_BYTES:
            return "552 5.3.4 message too big for a bounce report"
        found = self.recipient_for(envelope.rcpt_tos[0]) if envelope.rcpt_tos else None
        if not isinstance(found, BounceRecipient):
            return "554 5.5.1 no valid recipients"
        try:
            items = parse_report(raw)
        except ReportError as exc:
            log.info("not a bounce or complaint report; ignored", extra={"reason": str(exc)})
            return "250 OK: not a delivery or feedback report, ignored"
        now_ms = to_ms(self.clock.now())
        workspace = found.workspace_id

        def record(conn: Connection) -> tuple[Applied | None, list[str]]:
            # Read only: a report never creates the secret its address should have been signed with.
            checked = check_items(items, workspace, found.tag, existing_tracking_secret(conn, workspace))
            if not checked.accepted:
                return None, checked.refused
            feedback = [feedback_from_report(item, raw) for item in checked.accepted]
            return apply_feedback(conn, workspace, feedback, now_ms), checked.refused

        try:
            applied, refused = await self.run_job(record)
        except Exception as exc:
            log.error("could not record a bounce report", extra={"error": type(exc).__name__}, exc_info=True)
            return "451 4.3.0 could not record the report now; try again later"
        for reason in refused:
            log.warning("bounce report item refused", extra={"workspace_id": workspace, "reason": reason})
        if applied is None:
            return f"550 5.7.1 report refused: {refused[0] if refused else 'it names no recipient'}"
        self.received.append(applied)
        counts = f"{applied.bounces} bounce(s), {applied.complaints} complaint(s), {applied.suppressed} suppressed"
        return f"250 OK: {counts}" + (f", {len(refused)} refused" if refused else "")


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
