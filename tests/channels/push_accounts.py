"""The accounts the local FCM and APNs servers (push_servers.py) play for, and Ada's devices:
shared by the push tests and their fixtures in conftest.py."""

from __future__ import annotations

from typing import Any

from tests.channels.push_servers import service_account_json

# FCM: a project and the service account that may send to it.
PROJECT = "nudgeflow-test"
EMAIL = "push@nudgeflow-test.iam.gserviceaccount.com"
FCM_KEY_ID = "3f0a9c1d2e"

# APNs: a team, its key, and the app (topic) the devices' tokens belong to.
TEAM = "TEAM123456"
APNS_KEY_ID = "KEY7654321"
TOPIC = "com.example.shop"

# Ada's devices (test_mobile_push.py), as her apps report their tokens.
IPHONE = "1a2b3c4d" * 8
OLD_IPAD = "9f8e7d6c" * 8
PIXEL = "cGl4ZWw:APA91bF-" + "p" * 100


def service_account(key: Any, token_uri: str) -> dict[str, Any]:
    """The service account's JSON key file, for the private key `key`."""
    return service_account_json(key, token_uri, PROJECT, EMAIL, FCM_KEY_ID)
