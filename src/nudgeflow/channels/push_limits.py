"""What each push service accepts, and the error for a payload over it.

Each sender (channels/webpush.py, fcm.py, apns.py) shapes the same rendered content into
its service's payload and checks its size here, before sending.
"""

from __future__ import annotations

import hashlib

from nudgeflow.channels.base import PermanentError
from nudgeflow.content.push_render import PushContent

# What each service accepts at most, in bytes of the payload it carries (checked before
# sending, so the message fails with a clear reason instead of a 413 from the service).
WEBPUSH_MAX_PLAINTEXT = 3993  # 4096-byte record, minus the aes128gcm header (86), tag (16), delimiter (1)
FCM_MAX_PAYLOAD = 4096
APNS_MAX_PAYLOAD = 4096
APNS_MAX_COLLAPSE_ID = 64  # bytes of apns-collapse-id


def apns_collapse_id(content: PushContent) -> str:
    """apns-collapse-id (for APNs, and for iOS devices through FCM): the template's
    collapse_key as it is (the APNs sender refuses one over 64 bytes), else the message key,
    hashed when it is longer than APNs allows. Without a collapse_key, a retry of a send that
    was accepted but never answered (a timeout) would show a second notification."""
    if content.collapse_key:
        return content.collapse_key
    key = content.message_key
    if len(key.encode()) <= APNS_MAX_COLLAPSE_ID:
        return key
    return "k-" + hashlib.blake2b(key.encode(), digest_size=24).hexdigest()


class PayloadTooLarge(PermanentError):
    def __init__(self, service: str, size: int, limit: int) -> None:
        super().__init__(
            f"the {service} payload is {size:,} bytes, over the service's limit of {limit:,}: "
            "shorten the template's text or data"
        )
        self.size, self.limit = size, limit
