"""The dev inbox's SMTP sink: an aiosmtpd server in the process that keeps every message it
receives in `inbox_messages` (shown at /dev/inbox). For `serve --dev` and the demo only:
it accepts mail from anyone for anyone, without TLS or authentication, so it listens on
loopback by default and is never started in production mode."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import Engine

from nudgeflow.core.clock import Clock, SystemClock, to_ms
from nudgeflow.store import dev_inbox

log = logging.getLogger("nudgeflow.dev_inbox")

DEV_FROM = "nudgeflow@dev.localhost"


def decode_subject(raw: bytes) -> str | None:
    headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    subject = headers.get("Subject")
    if subject is None:
        return None
    try:
        return str(make_header(decode_header(str(subject))))
    except Exception:
        return str(subject)


class InboxHandler:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        row = {
            "mail_from": envelope.mail_from or "",
            "rcpt_to": ", ".join(envelope.rcpt_tos),
            "subject": decode_subject(raw),
            "raw": raw.decode("utf-8", "replace"),
            "received_at_ms": to_ms(self.clock.now()),
        }
        try:
            with self.engine.begin() as conn:
                dev_inbox.keep(conn, row)
        except Exception:
            log.exception("the dev inbox could not store a message")
            return "451 4.3.0 Could not store the message, try again"
        self.received += 1
        return "250 2.0.0 Stored in the dev inbox"


@dataclass
class DevSmtp:
    controller: Controller
    handler: InboxHandler
    host: str
    port: int

    @property
    def url(self) -> str:
        """The SMTP URL that sends here (what `serve --dev` makes the default)."""
        return f"smtp://{self.host}:{self.port}?tls=none&from={DEV_FROM}&from_name=Nudgeflow%20dev"

    def stop(self) -> None:
        self.controller.stop()


def dev_smtp_url(host: str, port: int) -> str:
    return f"smtp://{host}:{port}?tls=none&from={DEV_FROM}&from_name=Nudgeflow%20dev"


def start_dev_smtp(engine: Engine, host: str = "127.0.0.1", port: int = 1025, clock: Clock | None = None) -> DevSmtp:
    """Start the sink in a thread of its own; `.stop()` stops it."""
    handler = InboxHandler(engine, clock or SystemClock())
    controller = Controller(handler, hostname=host, port=port, server_hostname="nudgeflow-dev-inbox")
    controller.start()
    log.info("dev inbox SMTP sink listening", extra={"host": host, "port": port})
    return DevSmtp(controller, handler, host, port)
