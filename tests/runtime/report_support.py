"""What the report tests share: the journeys they run, a channel that accepts and reports
delivery, and a script of who opens, clicks, unsubscribes and buys (the ground truth)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


# The global control group's tests (program lift, simulated parity): journeys of one send step,
# on a trigger, with the shop's goal. Two on sign-up share the goal (a purchase converts both:
# counted once for the program), one has a goal of its own (an upgrade: a second goal event,
# its revenue added to the person's), and one on another trigger excludes the group.
PROGRAM_GOAL = {"event": "Order Completed", "within": "7d", "revenue": "revenue"}


def program_journey(journey_id: str, trigger: str, **top: Any) -> dict[str, Any]:
    return {
        "id": journey_id,
        "name": journey_id,
        "trigger": {"type": "event", "event": trigger},
        "entry": {"reentry": "once"},
        "goal": PROGRAM_GOAL,
        "steps": {"hello": {"type": "send", "channel": "email", "template": f"{journey_id}-hello"}},
        **top,
    }


PROGRAM_PROMO = program_journey("promo", "Signed Up", holdout=0.3)
PROGRAM_SALE = program_journey("sale", "Signed Up")
PROGRAM_UPSELL = {
    **program_journey("upsell", "Signed Up"),
    "goal": {"event": "Upgraded", "within": "7d", "revenue": "amount"},
}
PROGRAM_VIP = program_journey("vip", "Joined VIP", control_group="exclude")
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
