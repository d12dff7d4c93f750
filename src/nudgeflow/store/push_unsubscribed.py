"""The Push Unsubscribed event of a Web Push subscription that left a person: removed by
the SDK's DELETE, replaced by the per-person cap at a registration, or dropped by the cap
when a merge brought more subscriptions than it allows (store/push_targets.keep_within_cap).
The person's history says where it went, and `reachable: push` stops counting it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from nudgeflow.model.event_names import PUSH_UNSUBSCRIBED
from nudgeflow.store.event_log import event_row

# The library the event is recorded under: the SDK's subscription endpoints record it.
LIBRARY = "nudgeflow-push-subscriptions"
# The `reason` of one the cap replaced when the person registered another.
REPLACED = "replaced"
# The `reason` of one a merge left over the cap (the merged people held more between them).
MERGED_OVER_CAP = "merged_over_cap"


def push_service(endpoint: str) -> str:
    """The push service's origin (fcm.googleapis.com, updates.push.services.mozilla.com...):
    which browser family subscribed, without the part of the URL that addresses the device."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def unsubscribed_row(
    workspace_id: str,
    who: tuple[str, str | None],
    digest: str,
    endpoint: str,
    now_ms: int,
    reason: str | None = None,
) -> tuple[Any, ...]:
    """A Push Unsubscribed event (an `event_row`) of the person `who` (profile id, userId)
    for this subscription."""
    properties: dict[str, Any] = {
        "provider": "webpush",
        "endpoint_hash": digest,
        "push_service": push_service(endpoint),
    }
    if reason is not None:
        properties["reason"] = reason
    message_id = f"push-unsubscribed-{digest[:32]}-{now_ms}"
    return event_row(workspace_id, who[0], who[1], PUSH_UNSUBSCRIBED, message_id, properties, now_ms, LIBRARY)
