"""Fixtures of the web tests: an admin API client, a customer, the workspaces the tracking,
push report and privacy tests work in, the keys and certificate host of the bounce webhooks."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from nudgeflow.store import consent
from nudgeflow.store.push_targets import record_deliveries
from nudgeflow.store.workspaces import NewWorkspace
from tests.support import LiveServer, start_server
from tests.web.batch_messages import msg, send
from tests.web.privacy_shop import Shop, b64url
from tests.web.push_report_ctx import PushReportCtx
from tests.web.sns_cert_server import SnsCertServer
from tests.web.tracking_ctx import TrackingCtx


@pytest.fixture
def api_only(settings: Any, clock: Any) -> Iterator[LiveServer]:
    """A server without the engine: what the API wrote stays as written. With the engine
    on, a timer due now may fire (and be deleted) before the test reads it; a test that
    needs the engine runs one of its own, only when it says (`EmbeddedRuntime(...)
    .run_until_idle()` on the server's database)."""
    server = start_server(settings.with_(engine_enabled=False), clock)
    yield server
    server.stop()


@pytest.fixture
def api(live: LiveServer, ws: NewWorkspace) -> Iterator[httpx.Client]:
    """A client of the admin API of the live server's workspace."""
    with live.admin(ws.admin_token) as client:
        yield client


@pytest.fixture
def customer(live: LiveServer, ws: NewWorkspace) -> dict[str, Any]:
    """A customer who browsed anonymously on two devices, then signed up and bought."""
    send(
        live,
        ws.write_key,
        msg("track", anonymousId="phone-1", event="Product Viewed", properties={"sku": "A"}),
        msg("page", anonymousId="phone-1", name="Pricing"),
        msg("track", anonymousId="laptop-1", event="Product Viewed", properties={"sku": "B"}),
    )
    with live.admin(ws.admin_token) as client:
        phone_pid = client.get("/api/profiles/phone-1").json()["id"]
        laptop_pid = client.get("/api/profiles/laptop-1").json()["id"]
    send(
        live,
        ws.write_key,
        msg(
            "identify",
            userId="user-42",
            anonymousId="phone-1",
            traits={"email": "jo@example.com", "first_name": "Jo", "plan": "free", "timezone": "Europe/Berlin"},
        ),
        msg("track", userId="user-42", event="Signed Up"),
    )
    send(
        live,
        ws.write_key,
        msg("alias", previousId="laptop-1", userId="user-42"),
        msg("track", userId="user-42", event="Order Completed", properties={"revenue": 42.5}),
        msg("identify", userId="user-42", traits={"plan": "pro"}),
    )
    return {"phone_pid": phone_pid, "laptop_pid": laptop_pid, "events": 8}


@pytest.fixture
def push_report(live: LiveServer) -> PushReportCtx:
    """A workspace on the live server with Ada and a push message sent to her."""
    return PushReportCtx(live)


@pytest.fixture
def tracking(live: LiveServer) -> TrackingCtx:
    """A workspace on the live server with topics, email journeys and Ada, its email on the log channel."""
    # These tests read what "email" recorded from the log channel. On the shared PostgreSQL
    # database another test's workspace may have SMTP settings, which makes the runtime
    # serve "email" over SMTP: pin it to the log channel here.
    runtime = live.state.runtime
    runtime.run_until_idle()  # the runtime picks its email channel on its first run
    runtime.channels.register("email", runtime.channels.get("log"))
    return TrackingCtx(live)


@pytest.fixture
def privacy_shop(live: LiveServer) -> Shop:
    """A shop's workspace on the live server with its marketing journeys, email on the log channel."""
    return Shop(live)


@pytest.fixture
def ada(privacy_shop: Shop) -> dict[str, Any]:
    """A customer with something in every place a person's data is kept."""
    endpoint = f"https://push.example.net/send/{secrets.token_urlsafe(24)}"
    keys = {"p256dh": b64url(b"\x04" + secrets.token_bytes(64)), "auth": b64url(secrets.token_bytes(16))}
    token = "fcm-" + secrets.token_hex(40)
    privacy_shop.send(
        {"type": "page", "anonymousId": "laptop-1", "name": "Pricing"},
        {"type": "identify", "userId": "ada", "traits": {"email": "Ada@Example.com", "first_name": "Ada"}},
    )
    with privacy_shop.admin() as client:
        laptop = client.get("/api/profiles/laptop-1").json()["id"]
    privacy_shop.send(
        {"type": "identify", "userId": "ada", "anonymousId": "laptop-1"},  # merges the laptop's visitor
        {"type": "track", "userId": "ada", "event": "Sale Started"},
        {"type": "track", "userId": "ada", "event": "Signed Up"},
    )
    privacy_shop.run()
    with privacy_shop.write() as client:
        answer = client.post(
            "/v1/push/subscriptions",
            json={"userId": "ada", "userAgent": "Test/1.0", "subscription": {"endpoint": endpoint, "keys": keys}},
        )
        assert answer.status_code == 200, answer.text
    with privacy_shop.admin() as client:
        answer = client.post("/api/profiles/ada/devices", json={"token": token, "type": "android"})
        assert answer.status_code == 201, answer.text
        pid = client.get("/api/profiles/ada").json()["id"]
        answer = client.post(
            "/api/suppressions",
            json={"channel": "email", "address": "ada@example.com", "reason": "complaint", "detail": "feedback loop"},
        )
        assert answer.status_code == 201, answer.text
    with privacy_shop.live.state.engine.begin() as conn:
        consent.set_subscription(conn, privacy_shop.wid, pid, "offers", False, privacy_shop.now())
        record_deliveries(conn, privacy_shop.wid, "run-x:mail:1", pid, ["a" * 64], privacy_shop.now())
    privacy_shop.send({"type": "track", "userId": "ada", "event": "News Published"})
    privacy_shop.run()
    return {"pid": pid, "laptop": laptop, "endpoint": endpoint, "keys": keys, "token": token}


@pytest.fixture(scope="module")
def sns_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    """SNS's signing key and its self-signed certificate (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def sns(live: LiveServer, sns_key: Any) -> Iterator[SnsCertServer]:
    """The certificate server, the only SigningCertURL/SubscribeURL host the live server trusts meanwhile."""
    server = SnsCertServer(sns_key[1])
    live.state.bounces.sns_test_url_prefixes = (server.url + "/",)
    yield server
    live.state.bounces.sns_test_url_prefixes = ()
    server.stop()


@pytest.fixture(scope="module")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    """The key SendGrid signs its event webhooks with."""
    return ec.generate_private_key(ec.SECP256R1())
