"""What the report tests share: the journeys they run, a channel that accepts and reports
delivery, and a script of who opens, clicks, unsubscribes and buys (the ground truth)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nudgeflow.channels.base import PushOptedOut, RemoteChannel
from nudgeflow.model.outbound import OutboundMessage

# Two journeys on the same trigger and the same goal: a conversion both claim.
PROMO = {
    "id": "promo",
    "name": "Promo",
    "trigger": {"type": "event", "event": "Sale Started"},
    "entry": {"reentry": "once"},
    "holdout": 0.3,
    "goal": {"event": "Order Completed", "within": "7d", "revenue": "revenue"},
    "steps": {
        "mail": {
            "type": "send",
            "channel": "email",
            "variants": [
                {"name": "a", "template": "promo-a", "weight": 1},
                {"name": "b", "template": "promo-b", "weight": 1},
            ],
            "next": "wait",
        },
        "wait": {"type": "wait", "duration": "1d", "next": "reminder"},
        "reminder": {"type": "send", "channel": "email", "template": "promo-reminder"},
    },
}
SALE_B = {
    "id": "sale-b",
    "name": "Sale B",
    "trigger": {"type": "event", "event": "Sale Started"},
    "entry": {"reentry": "once"},
    "goal": {"event": "Order Completed", "within": "7d", "revenue": "revenue"},
    "steps": {"mail": {"type": "send", "channel": "email", "template": "sale-b"}},
}

USERS = [f"user-{i:02d}" for i in range(24)]


class Delivering(RemoteChannel):
    """A provider that takes every message and reports it delivered."""

    name = "delivering"
    delivered_on_send = True

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: OutboundMessage) -> None:
        self.sent.append(message.key)


class AllGone(RemoteChannel):
    """A push provider for whom every device of the person is gone (app uninstalled)."""

    name = "all-gone"

    async def send(self, message: OutboundMessage) -> None:
        raise PushOptedOut("fcm:…: UNREGISTERED")


NUDGE = {
    "id": "nudge",
    "name": "Nudge",
    "trigger": {"type": "event", "event": "Level Completed"},
    "steps": {"push": {"type": "send", "channel": "push", "template": "nudge"}},
}


@dataclass
class Truth:
    """What the test did, counted by the test itself."""

    opened: set[str] = field(default_factory=set)  # message keys opened (by a person)
    clicked: set[str] = field(default_factory=set)
    unsubscribed: set[str] = field(default_factory=set)
    bounced: set[str] = field(default_factory=set)
    complained: set[str] = field(default_factory=set)
    bought: dict[str, float] = field(default_factory=dict)  # user -> revenue
    attributed: dict[str, str] = field(default_factory=dict)  # user -> message key (promo)
