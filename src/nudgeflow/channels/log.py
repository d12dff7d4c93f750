"""The `log` channel: records what would be sent, for development, tests and simulations.

It is a database sink: each message becomes a row of `log_channel_messages` in the same
transaction that marks its outbox row `logged` (not `sent`: nobody received it; the
engagement event is "Message Logged", never "Message Sent" or "Message Delivered"). That
table has no unique key on purpose, so a message recorded twice would show there rather than
be hidden by a constraint: it is how the tests (and the crash tests) check that nothing is
ever sent twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection

from nudgeflow.channels.base import DatabaseSink, PermanentError
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.store import log_channel

# The traits a real channel would address or greet the person with.
ADDRESS_TRAITS = (
    "email",
    "phone",
    "name",
    "first_name",
    "last_name",
    "firstName",
    "lastName",
    "locale",
    "timezone",
)


class LogChannel(DatabaseSink):
    name = "log"
    logs_only = True

    def __init__(self, templates: Iterable[str] | None = None, address_traits: Sequence[str] = ADDRESS_TRAITS) -> None:
        # With a set of known templates, an unknown one fails like a real channel would.
        self.templates: frozenset[str] | None = frozenset(templates) if templates is not None else None
        self.address_traits = tuple(address_traits)

    def check(self, message: OutboundMessage) -> None:
        if self.templates is not None and message.template not in self.templates:
            raise PermanentError(f"template {message.template!r} not found")

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        return {
            "to": {name: message.traits[name] for name in self.address_traits if name in message.traits},
            "channel": message.channel,
            "template": message.template,
            "variant": message.variant,
            "marketing": message.marketing,
            "journey_id": message.journey_id,
            "step": message.step,
            "run_id": message.run_id,
            "context": message.context,
        }

    def sink_in_transaction(self, conn: Connection, messages: Sequence[OutboundMessage], now_ms: int) -> None:
        log_channel.record(
            conn,
            (
                (
                    m.workspace_id,
                    m.key,
                    m.profile_id,
                    m.channel,
                    m.template,
                    orjson.dumps(self.body(m), default=str).decode(),
                    now_ms,
                )
                for m in messages
            ),
        )
