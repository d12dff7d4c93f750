"""The one small interface every way out implements, and the registry that names them.

A channel is one of two kinds:

- a `RemoteChannel` sends outside the database (`async def send(message)`: SMTP, Web Push,
  FCM, APNs, a webhook). The dispatcher claims the message, sends it, then records the
  outcome; a crash in between sends it again later, with the same idempotency key for
  providers that honour one (at least once, as no remote peer can share our transaction).
- a `DatabaseSink` records the message in our own database, in the very transaction that
  marks its outbox row sent (`sink_in_transaction`), so a crash can neither record a send
  twice nor lose one: exactly once. The `log` channel is one.

Both signal failure the same way: `TransientError` (try again later, with backoff, perhaps
after `retry_after_s`) or `PermanentError` (record the message failed, with the reason).
`NoTarget`, a PermanentError, says the person has nothing to send to on the channel (no
address, no device): the message is not failed but `suppressed`, reason `no_target`.
`ChannelProblem`, a PermanentError, says the refusal is about our side (a relay that denies
relaying, a login refused, a sender policy, the wrong APNs environment), not the person: the
message fails with the reason, nothing is held against the person (no bounce, no opt-out,
no target deleted), and the dispatcher reports it as the channel's problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime

from sqlalchemy import Connection

from nudgeflow.errors import DeliveryError
from nudgeflow.model.outbound import OutboundMessage


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def reason_text(text: str, limit: int = 300) -> str:
    """A service's error text, short and on one line, for a message's failure reason."""
    return " ".join(text.split())[:limit]


class ChannelError(DeliveryError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(ChannelError):
    """Worth another try later: a timeout, a 429 or 5xx, a greylisting SMTP server."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class NotStarted(TransientError):
    """The send was never begun: the message's `send_by_ms` passed while it waited its turn (a
    connection, the rate limit). Nothing reached the provider; the dispatcher hands the
    message back, due at once, without counting an attempt."""


class PermanentError(ChannelError):
    """No retry will help: an unknown template, a rejected address, a revoked token."""


class ChannelProblem(PermanentError):
    """The service refused for a reason of the channel's own, not the person's: a relay that
    denies relaying or asks for a login, a policy about the sender, a token sent to the wrong
    APNs environment. Another try fails the same way until an operator fixes the settings, so
    the message fails with the reason; the person's address or device is not blamed (no
    bounce recorded, nothing suppressed or deleted). The dispatcher logs each one as a
    channel problem (a warning naming the channel) and counts it."""


class PushOptedOut(PermanentError):
    """Every push target the person had on this channel was reported gone (the app
    uninstalled, notifications turned off): the message failed, and reports count it as
    the person's push opt-out (store/rollups.py)."""


class NoTarget(PermanentError):
    """The person has no address or device on this channel: nothing was tried, nothing failed.

    The dispatcher records the message `suppressed` with reason `no_target`
    (model/reasons.py); `reason` keeps the channel's own words for its log line."""


class Channel:
    """What all channels share. Subclass RemoteChannel or DatabaseSink, not this."""

    name: str = ""
    # True when handing the message over is its delivery (our own sink): the engagement
    # event is "Message Delivered". A remote provider's acceptance is only "Message Sent";
    # its delivery report comes back later as an event of its own.
    delivered_on_send: bool = False
    # True for the `log` channel: it stands in for a channel that is not configured, so what
    # it takes was never sent to anyone. Recorded as `logged` (outbox status and a "Message
    # Logged" event), never as sent or delivered, so no report counts it as delivered.
    logs_only: bool = False

    def check(self, message: OutboundMessage) -> None:
        """Refuse a message before any attempt (raise TransientError or PermanentError)."""


class RemoteChannel(Channel):
    async def send(self, message: OutboundMessage) -> None:
        raise NotImplementedError


class DatabaseSink(Channel):
    def sink_in_transaction(self, conn: Connection, messages: Sequence[OutboundMessage], now_ms: int) -> None:
        """Record these messages (each already passed `check`) in the caller's transaction."""
        raise NotImplementedError


class ChannelRegistry:
    """Channel names, as journeys use them, to the channel that serves each.

    Several names may share one channel: in development "email" and "push" are served by
    the `log` channel until real ones are configured.
    """

    def __init__(self, channels: Mapping[str, Channel] | None = None) -> None:
        self._channels: dict[str, Channel] = dict(channels or {})

    def register(self, name: str, channel: Channel) -> None:
        self._channels[name] = channel

    def get(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def names(self) -> list[str]:
        return sorted(self._channels)

    @classmethod
    def development(
        cls, aliases: Iterable[str] = ("email", "push"), templates: Iterable[str] | None = None
    ) -> ChannelRegistry:
        """`log`, and each alias, served by one log channel."""
        from nudgeflow.channels.log import LogChannel

        log_channel = LogChannel(templates=templates)
        registry = cls({"log": log_channel})
        for alias in aliases:
            registry.register(alias, log_channel)
        return registry
