"""The local Web Push service, checked with pywebpush as an independent sender.

Everything a real push service refuses, it refuses: a missing TTL, a JWT that does not
verify, is for another origin, has expired or lives more than 24 h, has no sub; a payload
that is not aes128gcm, too large, or does not decrypt; a key other than the one a
restricted subscription was made with. And it answers what it is told to (404, 410, 429).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from py_vapid import Vapid02
from pywebpush import WebPusher, webpush

from nudgeflow.core.clock import VirtualClock
from nudgeflow.runtime.dev_push import DevPushService, RunningDevPush, new_subscription, serve_dev_push
from nudgeflow.store.vapid import b64url


def public_key(key: Vapid02) -> str:
    from cryptography.hazmat.primitives import serialization

    return b64url(
        key.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


def post(
    service: DevPushService,
    sub: Any,
    key: Vapid02,
    *,
    data: bytes = b'{"title":"hi"}',
    claims: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    encoding: str = "aes128gcm",
) -> httpx.Response:
    """One push request built by hand (pywebpush encrypts and signs), so tests can spoil any part."""
    claims = {"aud": service.origin, "exp": int(time.time()) + 3600, "sub": "mailto:ops@shop.example", **(claims or {})}
    encoded = WebPusher(sub.info()).encode(data, encoding)
    sent = {**key.sign(claims), "TTL": "60", "Content-Encoding": encoding}
    sent.pop("Crypto-Key", None)
    if encoding == "aesgcm":
        sent["Crypto-Key"] = "dh=" + encoded["crypto_key"].decode()
        sent["Encryption"] = "salt=" + encoded["salt"].decode()
    sent.update(headers or {})
    return httpx.post(sub.endpoint, content=encoded["body"], headers={k: v for k, v in sent.items() if v is not None})


def test_pywebpush_delivers_and_the_message_is_decrypted(dev_push_service: DevPushService, vapid_key: Vapid02) -> None:
    sub = dev_push_service.subscribe()
    answer = webpush(
        sub.info(),
        data=json.dumps({"title": "Your cart", "body": "2 items"}),
        vapid_private_key=vapid_key,
        vapid_claims={"sub": "mailto:ops@shop.example"},
        ttl=120,
        headers={"Urgency": "high", "Topic": "cart-1"},
    )
    assert answer.status_code == 201 and answer.headers["Location"].startswith("/message/")
    [got] = dev_push_service.received_for(sub.id)
    assert got.notification == {"title": "Your cart", "body": "2 items"}
    assert (got.ttl, got.urgency, got.topic, got.subject) == (120, "high", "cart-1", "mailto:ops@shop.example")
    assert got.vapid_key == public_key(vapid_key) and got.http_version == "1.1"


def test_subscription_looks_like_a_browsers() -> None:
    sub = new_subscription("https://push.example", "abc")
    info = sub.info()
    assert info["endpoint"] == "https://push.example/push/abc"
    assert len(info["keys"]["auth"]) == 22 and len(info["keys"]["p256dh"]) == 87  # 16 bytes, a 65-byte point
    assert "private" not in repr(sub) and info["keys"]["auth"] not in repr(sub)


@pytest.mark.parametrize(
    "spoil, status, words",
    [
        ({"headers": {"TTL": None}}, 400, "TTL"),
        ({"headers": {"Authorization": None}}, 401, "vapid"),
        ({"claims": {"aud": "https://other.example"}}, 403, "aud"),
        ({"claims": {"exp": int(time.time()) - 5}}, 403, "expired"),
        ({"claims": {"exp": int(time.time()) + 25 * 3600}}, 403, "24 hours"),
        ({"headers": {"Urgency": "urgent"}}, 400, "Urgency"),
        ({"headers": {"Topic": "x" * 33}}, 400, "Topic"),
        ({"encoding": "aesgcm"}, 415, "aes128gcm"),
        ({"data": b"x" * 4000}, 413, "4096"),
    ],
)
def test_refuses_what_a_push_service_refuses(
    dev_push_service: DevPushService, vapid_key: Vapid02, spoil: dict[str, Any], status: int, words: str
) -> None:
    sub = dev_push_service.subscribe()
    answer = post(dev_push_service, sub, vapid_key, **spoil)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
    assert dev_push_service.received_for(sub.id) == []


def test_a_signature_by_another_key_or_no_sub_is_refused(dev_push_service: DevPushService, vapid_key: Vapid02) -> None:
    sub = dev_push_service.subscribe()
    other = Vapid02()
    other.generate_keys()
    signed_by_other = other.sign(
        {"aud": dev_push_service.origin, "exp": int(time.time()) + 60, "sub": "mailto:a@b.example"}
    )
    forged = signed_by_other["Authorization"].split(",k=")[0] + ",k=" + public_key(vapid_key)
    answer = post(dev_push_service, sub, vapid_key, headers={"Authorization": forged})
    assert answer.status_code == 401 and "signature" in answer.json()["error"]
    no_sub = Vapid02.from_raw(
        b64url(vapid_key.private_key.private_numbers().private_value.to_bytes(32, "big")).encode()
    )
    no_sub.conf["no-strict"] = True
    header = no_sub.sign({"aud": dev_push_service.origin, "exp": int(time.time()) + 60, "sub": "ops"})["Authorization"]
    assert post(dev_push_service, sub, vapid_key, headers={"Authorization": header}).status_code == 403


def test_a_payload_for_another_subscription_does_not_decrypt(
    dev_push_service: DevPushService, vapid_key: Vapid02
) -> None:
    mine, theirs = dev_push_service.subscribe(), dev_push_service.subscribe()
    encoded = WebPusher(theirs.info()).encode(b'{"title":"x"}')
    headers = {
        **vapid_key.sign({"aud": dev_push_service.origin, "exp": int(time.time()) + 60, "sub": "mailto:a@b.example"}),
        "TTL": "0",
        "Content-Encoding": "aes128gcm",
    }
    answer = httpx.post(mine.endpoint, content=encoded["body"], headers=headers)
    assert answer.status_code == 400 and "decrypt" in answer.json()["error"]


def test_a_restricted_subscription_takes_only_its_key(dev_push_service: DevPushService, vapid_key: Vapid02) -> None:
    sub = dev_push_service.subscribe(application_server_key=public_key(vapid_key))
    assert post(dev_push_service, sub, vapid_key).status_code == 201
    other = Vapid02()
    other.generate_keys()
    answer = post(dev_push_service, sub, other)
    assert answer.status_code == 403 and "VAPID key" in answer.json()["error"]


def test_unknown_gone_and_scripted_answers(dev_push_service: DevPushService, vapid_key: Vapid02) -> None:
    stranger = new_subscription(dev_push_service.origin or "", "nobody")
    assert post(dev_push_service, stranger, vapid_key).status_code == 404
    sub = dev_push_service.subscribe()
    dev_push_service.respond(sub.id, 429, retry_after=7, times=1)
    first = post(dev_push_service, sub, vapid_key)
    assert first.status_code == 429 and first.headers["Retry-After"] == "7"
    assert post(dev_push_service, sub, vapid_key).status_code == 201  # only once
    dev_push_service.respond(sub.id, 500)
    assert [post(dev_push_service, sub, vapid_key).status_code for _ in range(2)] == [500, 500]
    dev_push_service.clear_responses()
    dev_push_service.unsubscribe(sub.id)
    assert post(dev_push_service, sub, vapid_key).status_code == 410
    assert len(dev_push_service.received_for(sub.id)) == 1


def test_over_http_for_other_processes(module_dev_push: RunningDevPush, vapid_key: Vapid02) -> None:
    made = httpx.post(module_dev_push.url + "/subscriptions", json={}).json()
    assert made["endpoint"].startswith(module_dev_push.url + "/push/") and set(made["keys"]) == {"p256dh", "auth"}
    answer = webpush(
        {"endpoint": made["endpoint"], "keys": made["keys"]},
        data='{"title":"over http"}',
        vapid_private_key=vapid_key,
        vapid_claims={"sub": "mailto:ops@shop.example"},
        ttl=5,
    )
    assert answer.status_code == 201
    got = httpx.get(module_dev_push.url + "/received", params={"subscription": made["id"]}).json()
    assert [g["notification"] for g in got] == [{"title": "over http"}]
    stats = httpx.get(module_dev_push.url + "/stats").json()
    assert stats["accepted"] >= 1 and stats["cpu_s"] > 0


def test_jwt_time_checks_use_the_injected_clock(vapid_key: Vapid02) -> None:
    clock = VirtualClock()  # 2026-01-01, whatever the wall clock says
    srv = serve_dev_push(DevPushService(clock))
    try:
        sub = srv.service.subscribe()
        now = int(clock.now().timestamp())
        assert post(srv.service, sub, vapid_key, claims={"exp": now + 3600}).status_code == 201
        clock.advance(2 * 3600)
        assert post(srv.service, sub, vapid_key, claims={"exp": now + 3600}).status_code == 403
    finally:
        srv.stop()
