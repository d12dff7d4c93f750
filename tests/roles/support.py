"""What the roles tests and their fixtures share: messages queued straight into the outbox,
an email channel on a loopback sink, a sink that can hold DATA unanswered, and `serve
--role` processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import orjson
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import Engine, insert, text

from nudgeflow.channels.base import ChannelRegistry
from nudgeflow.channels.email.channel import EmailChannel
from nudgeflow.channels.email.mime import message_id_for
from nudgeflow.content.compiled_templates import save_template
from nudgeflow.content.rendered import RenderedEmail
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.model.smtp_config import parse_smtp_url
from nudgeflow.store.schema import outbox, profiles
from tests.channels.smtp_support import Sink
from tests.runtime.serve_process import wait_healthy
from tests.support import NUDGEFLOW, free_port

FROM = "n@shop.example.com"  # the Message-ID's domain is the From address's
TEMPLATE = {"channel": "email", "subject": "Your order", "body": "<p>Thank you, {{ profile.first_name }}.</p>"}


def smtp_url(port: int) -> str:
    return f"smtp://127.0.0.1:{port}?tls=none&from={FROM}"


def queue_messages(engine: Engine, ws: str, count: int, now_ms: int, prefix: str = "m") -> list[str]:
    """`count` transactional emails to as many people, due at `now_ms`; their keys. The
    workspace gets the template "order" (the engine's work is not what these tests are
    about: the rows are what an engine would have queued)."""
    keys = [f"{prefix}{i:04d}" for i in range(count)]
    with engine.begin() as conn:
        save_template(conn, ws, "order", TEMPLATE, now_ms)
        conn.execute(
            insert(profiles),
            [
                {
                    "id": f"p_{k}",
                    "workspace_id": ws,
                    "user_id": f"u_{k}",
                    "traits": orjson.dumps({"email": f"{k}@example.org", "first_name": k}).decode(),
                    "created_at_ms": now_ms,
                    "updated_at_ms": now_ms,
                }
                for k in keys
            ],
        )
        conn.execute(
            insert(outbox),
            [
                {
                    "workspace_id": ws,
                    "idempotency_key": k,
                    "profile_id": f"p_{k}",
                    "run_id": f"r_{k}",
                    "journey_id": "orders",
                    "journey_version": 1,
                    "step": "thanks",
                    "channel": "email",
                    "template": "order",
                    "variant": None,
                    "marketing": 0,
                    "payload": "{}",
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at_ms": now_ms,
                    "created_at_ms": now_ms,
                    "updated_at_ms": now_ms,
                }
                for k in keys
            ],
        )
    return keys


def outbox_rows(engine: Engine, ws: str) -> dict[str, Any]:
    """The workspace's outbox rows by key."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT idempotency_key, status, attempts, claims, lost_claims, next_attempt_at_ms, leased_until_ms"
                " FROM outbox"
                " WHERE workspace_id = :ws"
            ),
            {"ws": ws},
        ).all()
    return {r.idempotency_key: r for r in rows}


class FixedRenderer:
    """Renders every message alike (the dispatcher and the channel are under test, not content)."""

    async def render_email(self, message: OutboundMessage) -> RenderedEmail:
        return RenderedEmail(subject=f"Order {message.key}", html="<p>Thank you.</p>", marketing=message.marketing)


def email_registry(port: int, clock: Any) -> ChannelRegistry:
    registry = ChannelRegistry.development(())
    registry.register("email", EmailChannel(parse_smtp_url(smtp_url(port)), renderer=FixedRenderer(), clock=clock))
    return registry


def expected_message_id(ws: str, key: str) -> str:
    """The Message-ID the email channel gives a message: a function of its workspace and key."""
    return message_id_for(f"{ws}:{key}", FROM.split("@")[1])


def message_ids(sink: Sink) -> list[tuple[str, str]]:
    """(recipient, Message-ID) of every message the sink accepted, in order."""
    out = []
    for received in list(sink.received):
        parsed = message_from_bytes(received.raw, policy=policy.default)
        out.append((received.rcpt_tos[0], str(parsed["Message-ID"])))
    return out


class HoldingSink(Sink):
    """Accepts the first `hold_after` messages (None: all); the DATA of any after those is
    held unanswered until `release` is set, then refused with a 451 (never recorded)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_after: int | None = None
        self.release = threading.Event()
        self.held = 0  # DATA commands being held
        self.port = 0

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.hold_after is not None and len(self.received) >= self.hold_after:
            self.held += 1
            while not self.release.is_set():
                await asyncio.sleep(0.02)
            return "451 4.3.0 held by the test"
        return await super().handle_DATA(server, session, envelope)


class RoleProcess:
    """`nudgeflow serve --role ROLE` on a free port (or `port`), with `options` after those,
    its output in `log`."""

    def __init__(
        self, role: str, database_url: str, log: Path, *options: str, port: int | None = None, **env: str
    ) -> None:
        self.port = free_port() if port is None else port
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [NUDGEFLOW, "serve", "--role", role, "--database", database_url, "--port", str(self.port), *options],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NUDGEFLOW_LOG_LEVEL": "INFO", **env},
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, seconds: float = 60) -> None:
        wait_healthy(self.proc, self.port, self.log, seconds)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def wait_for(what: str, check: Any, seconds: float = 30) -> None:
    """Poll `check()` (another process's doing) until it is true, within a deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {seconds} s")
