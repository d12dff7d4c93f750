"""What each push service accepts, and the error for a payload over it.

Each sender (channels/webpush.py, fcm.py, apns.py) shapes the same rendered content into
its service's payload and checks its size here, before sending.
"""

from __future__ import annotations

from nudgeflow.channels.base import PermanentError

# What each service accepts at most, in bytes of the payload it carries (checked before
# sending, so the message fails with a clear reason instead of a 413 from the service).
WEBPUSH_MAX_PLAINTEXT = 3993  # 4096-byte record, minus the aes128gcm header (86), tag (16), delimiter (1)
FCM_MAX_PAYLOAD = 4096
APNS_MAX_PAYLOAD = 4096


class PayloadTooLarge(PermanentError):
    def __init__(self, service: str, size: int, limit: int) -> None:
        super().__init__(
            f"the {service} payload is {size:,} bytes, over the service's limit of {limit:,}: "
            "shorten the template's text or data"
        )
        self.size, self.limit = size, limit
