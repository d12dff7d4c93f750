"""Fixtures of the channel tests: a certificate authority, the local FCM and APNs servers and
the settings that point senders at them, a person with devices, email build workers, a
database of a test's own for the tests that run a runtime."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nudgeflow.channels.workers import WorkerPool
from nudgeflow.content.compiled_templates import save_template
from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.model.events import normalize, parse_message
from nudgeflow.settings import Settings
from nudgeflow.store import database
from nudgeflow.store.ingest_writer import write_events
from nudgeflow.store.profiles import resolve_profile_id
from tests.channels.push_accounts import (
    APNS_KEY_ID,
    EMAIL,
    FCM_KEY_ID,
    IPHONE,
    OLD_IPAD,
    PIXEL,
    PROJECT,
    TEAM,
    TOPIC,
    service_account,
)
from tests.channels.push_servers import ApnsServer, FcmServer, Hypercorn, p8_pem
from tests.support import make_workspace


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A certificate authority for the loopback TLS servers of one test module."""
    return trustme.CA()


@pytest.fixture(scope="module")
def p8() -> ec.EllipticCurvePrivateKey:
    """The APNs key (a .p8 file's P-256 key)."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def sa_key() -> rsa.RSAPrivateKey:
    """The FCM service account's key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def apns(p8: ec.EllipticCurvePrivateKey, ca: trustme.CA, clock: VirtualClock) -> Iterator[tuple[ApnsServer, str]]:
    """A local APNs for TOPIC and its beta app, and its URL."""
    server = ApnsServer(
        TEAM, APNS_KEY_ID, p8.public_key(), now=lambda: clock.now().timestamp(), topics={TOPIC, "com.example.shop.beta"}
    )
    running = Hypercorn(server, ca).start()
    server.url = running.url
    yield server, running.url
    server.release()
    running.stop()


@pytest.fixture
def apns_server(apns: tuple[ApnsServer, str]) -> ApnsServer:
    return apns[0]


@pytest.fixture
def apns_defaults(apns: tuple[ApnsServer, str], p8: ec.EllipticCurvePrivateKey, tmp_path: Path) -> Settings:
    """The server's default APNs credentials, from the environment as an operator sets them."""
    key_file = tmp_path / f"AuthKey_{APNS_KEY_ID}.p8"
    key_file.write_text(p8_pem(p8))
    return Settings.from_env(
        {
            "NUDGEFLOW_APNS_KEY_FILE": str(key_file),
            "NUDGEFLOW_APNS_KEY_ID": APNS_KEY_ID,
            "NUDGEFLOW_APNS_TEAM_ID": TEAM,
            "NUDGEFLOW_APNS_TOPIC": TOPIC,
            "NUDGEFLOW_APNS_BASE_URL": apns[1],
        },
        database_url="sqlite://",
    )


@pytest.fixture
def fcm(sa_key: rsa.RSAPrivateKey, ca: trustme.CA, clock: VirtualClock) -> Iterator[FcmServer]:
    """A local FCM and token endpoint for the service account."""
    server = FcmServer(PROJECT, EMAIL, FCM_KEY_ID, sa_key.public_key(), now=lambda: clock.now().timestamp())
    running = Hypercorn(server, ca).start()
    server.url = running.url
    yield server
    server.release()
    running.stop()


@pytest.fixture
def fcm_defaults(tmp_path: Path, sa_key: rsa.RSAPrivateKey, fcm: FcmServer) -> Settings:
    """The server's default FCM credentials, as NUDGEFLOW_FCM_SERVICE_ACCOUNT_FILE gives them."""
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(service_account(sa_key, fcm.url + "/token")))
    return Settings.from_env(
        {"NUDGEFLOW_FCM_SERVICE_ACCOUNT_FILE": str(path), "NUDGEFLOW_FCM_API_BASE": fcm.url}, database_url="sqlite://"
    )


@pytest.fixture
def fcm_and_apns(fcm: FcmServer, apns_server: ApnsServer) -> tuple[FcmServer, ApnsServer]:
    """Both local push services, for a push channel that sends to each."""
    return fcm, apns_server


@pytest.fixture
def push_settings(
    fcm_and_apns: tuple[FcmServer, ApnsServer],
    sa_key: rsa.RSAPrivateKey,
    p8: ec.EllipticCurvePrivateKey,
    tmp_path: Path,
) -> Settings:
    """The server's default FCM and APNs credentials, for the local services."""
    fcm, apns = fcm_and_apns
    sa = tmp_path / "sa.json"
    sa.write_text(json.dumps(service_account(sa_key, fcm.url + "/token")))
    key_file = tmp_path / "key.p8"
    key_file.write_text(p8_pem(p8))
    return Settings(
        database_url="sqlite://",
        fcm_service_account_file=str(sa),
        fcm_api_base=fcm.url,
        apns_key_file=str(key_file),
        apns_key_id=APNS_KEY_ID,
        apns_team_id=TEAM,
        apns_topic=TOPIC,
        apns_base_url=apns.url,
    )


_ids = itertools.count(1)


def _ingest(engine: Any, ws: str, clock: VirtualClock, *messages: dict[str, Any]) -> None:
    records = [
        normalize(parse_message({"messageId": f"mp-{next(_ids)}", **m}), clock.now(), max_event_bytes=32 * 1024)
        for m in messages
    ]
    with engine.begin() as conn:
        write_events(conn, ws, records, to_ms(clock.now()))


@pytest.fixture
def person_with_devices(engine: Any, clock: VirtualClock) -> tuple[str, str]:
    """Ada, with an iPhone, an old iPad and an Android phone, as her apps reported them."""
    ws = make_workspace(engine, "mobile-push", clock).workspace_id
    with engine.begin() as conn:
        save_template(
            conn,
            ws,
            "streak",
            {
                "channel": "push",
                "title": "Day {{ event.properties.day }}, {{ profile.first_name }}!",
                "body": "Keep your streak going",
                "url": "https://app.example.com/streak",
                "collapse_key": "streak",
                "ttl": 7200,
            },
            to_ms(clock.now()),
        )
    app = {"name": "Shop", "namespace": TOPIC}
    _ingest(
        engine,
        ws,
        clock,
        {
            "type": "identify",
            "userId": "ada",
            "traits": {"first_name": "Ada"},
            "context": {"device": {"type": "ios", "token": OLD_IPAD}, "app": app},
        },
        {
            "type": "track",
            "userId": "ada",
            "event": "App Opened",
            "context": {"device": {"type": "ios", "token": IPHONE}, "app": app},
        },
        {
            "type": "track",
            "userId": "ada",
            "event": "App Opened",
            "context": {
                "device": {"type": "android", "token": PIXEL},
                "app": {"namespace": "com.example.shop.android"},
            },
        },
    )
    with engine.connect() as conn:
        pid = resolve_profile_id(conn, ws, "ada")
    assert pid is not None
    return ws, pid


@pytest.fixture(scope="module")
def worker_pool() -> Iterator[WorkerPool]:
    """One email build worker process for the test module."""
    workers = WorkerPool(1)
    yield workers
    workers.close()


@pytest.fixture
def own_engine(own_database_url: str) -> Iterator[Any]:
    """An engine on a database of this test's own (own_database_url), for the tests that run
    a runtime into a sink: on the session's shared database it would also send what other
    tests left queued."""
    engine = database.create_db_engine(own_database_url, sqlite_synchronous="NORMAL")
    yield engine
    engine.dispose()
