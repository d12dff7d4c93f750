"""How big a push message is for each service, shaped as that service's sender shapes it.

A template's preview (the console's push preview, POST /api/templates/{name}/preview)
asks before anything is sent whether the rendered notification fits each service's 4 KB:
Web Push's encrypted record (WEBPUSH_MAX_PLAINTEXT of plaintext), FCM's and APNs's
payloads. The sizes come from the senders' own payload functions (webpush.py's
notification JSON, fcm.fcm_message, apns.apns_payload), so the check cannot drift from
what a send would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from nudgeflow.channels.apns import apns_payload
from nudgeflow.channels.base import PermanentError
from nudgeflow.channels.fcm import fcm_message
from nudgeflow.channels.push_limits import (
    APNS_MAX_PAYLOAD,
    FCM_MAX_PAYLOAD,
    WEBPUSH_MAX_PLAINTEXT,
    PayloadTooLarge,
)
from nudgeflow.content.push_render import PushContent
from nudgeflow.store.push_targets import PushTarget


@dataclass(frozen=True)
class PayloadCheck:
    service: str  # "Web Push" | "FCM" | "APNs"
    size: int | None  # bytes; None when the service refuses the message for another reason
    limit: int
    ok: bool
    problem: str | None = None


def payload_checks(content: PushContent) -> list[PayloadCheck]:
    """The size of `content`'s payload for Web Push, FCM and APNs, against each one's limit."""
    web = len(orjson.dumps(content.notification()))
    out = [
        PayloadCheck(
            "Web Push",
            web,
            WEBPUSH_MAX_PLAINTEXT,
            web <= WEBPUSH_MAX_PLAINTEXT,
            None if web <= WEBPUSH_MAX_PLAINTEXT else str(PayloadTooLarge("Web Push", web, WEBPUSH_MAX_PLAINTEXT)),
        )
    ]
    try:
        message = fcm_message(PushTarget("fcm", "preview"), content, content.expires_at_ms)["message"]
        size = len(orjson.dumps({"notification": message["notification"], "data": message["data"]}))
        out.append(PayloadCheck("FCM", size, FCM_MAX_PAYLOAD, True))
    except PayloadTooLarge as exc:
        out.append(PayloadCheck("FCM", exc.size, FCM_MAX_PAYLOAD, False, str(exc)))
    except PermanentError as exc:  # a reserved data key: FCM refuses it whatever the size
        out.append(PayloadCheck("FCM", None, FCM_MAX_PAYLOAD, False, str(exc)))
    try:
        out.append(PayloadCheck("APNs", len(apns_payload(content)), APNS_MAX_PAYLOAD, True))
    except PayloadTooLarge as exc:
        out.append(PayloadCheck("APNs", exc.size, APNS_MAX_PAYLOAD, False, str(exc)))
    return out
