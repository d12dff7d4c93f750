"""One message to deliver: what the engine queues and the dispatcher hands to a channel.

Plain data shared by the layers around it: content renders it, channels deliver it, the
runtime claims and records it. It lives here so that none of them imports another for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class OutboundMessage:
    """One message to deliver, as the dispatcher hands it to a channel."""

    key: str  # idempotency key: run, step, visit. Providers that take one get this.
    workspace_id: str
    profile_id: str
    run_id: str
    journey_id: str
    step: str
    channel: str  # the name the journey used ("email"), which may be served by another channel
    template: str
    variant: str | None
    marketing: bool
    context: dict[str, Any] = field(default_factory=dict)  # trigger event, journey, run
    traits: dict[str, Any] = field(default_factory=dict)  # the profile's traits at send time
    version: int = 0
    attempt: int = 1  # 1 for the first try
    # Which claim of the message this is (1 for the first; 0 outside the dispatcher): the
    # dispatcher's lease token. Above `attempt` when an earlier claim ran out with no outcome
    # (its dispatcher died) or was handed back: that one may have begun to send.
    claim: int = 0
    # No retry follows this try, whatever it raises (the dispatcher's max_attempts): a
    # channel that reached part of its targets reports the message sent rather than lost.
    last_attempt: bool = False
    created_at_ms: int = 0  # when the engine queued it: a push message expires relative to this
    # The dispatcher's lease, less a margin: a channel that queues sends (a connection pool,
    # a rate limit) starts none after this and raises channels.base.NotStarted instead, so a
    # send never begins once another dispatcher may have taken the message over.
    send_by_ms: int | None = None
