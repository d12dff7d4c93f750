"""Fixtures of the content tests: a workspace with a catalog, a server that mails a real SMTP sink."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from nudgeflow.core.clock import VirtualClock
from nudgeflow.settings import Settings
from nudgeflow.store import catalog
from tests.channels.smtp_support import Sink
from tests.content.context_rows import DAY, NOW, add_event
from tests.support import LiveServer, start_server

PRODUCTS = [
    {
        "id": "shirt",
        "name": "Linen shirt",
        "price": 50,
        "currency": "EUR",
        "category": "shirts",
        "stock": 3,
        "color": "blue",
    },
    {"id": "oxford", "name": "Oxford shirt", "price": 55, "currency": "EUR", "category": "shirts", "color": "blue"},
    {"id": "flannel", "name": "Flannel", "price": 80, "currency": "EUR", "category": "shirts", "stock": 0},
    {"id": "polo", "name": "Polo", "price": 40, "currency": "EUR", "category": "shirts"},
    {"id": "belt", "name": "Belt", "price": 20, "currency": "EUR", "category": "accessories", "stock": 5},
    {"id": "socks", "name": "Socks", "price": 8, "currency": "EUR", "category": "accessories"},
]
PLACES = [
    {"id": "fifth", "name": "Fifth Avenue", "latitude": 40.7616, "longitude": -73.9747, "address": "5th Ave"},
    {"id": "paris", "name": "Paris", "latitude": 48.8566, "longitude": 2.3522},
]


@pytest.fixture
def catalog_wsid(engine: Any, wsid: str) -> str:
    """A workspace of its own whose catalog holds PRODUCTS and PLACES, and other people's orders."""
    with engine.begin() as conn:
        catalog.import_rows(conn, wsid, "products", [(str(i), p) for i, p in enumerate(PRODUCTS)], 1)
        catalog.import_rows(conn, wsid, "places", [(str(i), p) for i, p in enumerate(PLACES)], 1)
        # other people's orders: shirt goes with belt (twice) and socks (once)
        for n, ids in enumerate([["shirt", "belt"], ["shirt", "belt", "socks"], ["flannel", "shirt"]]):
            add_event(
                conn,
                wsid,
                f"other{n}",
                "Order Completed",
                NOW - 10 * DAY,
                products=[{"product_id": i} for i in ids],
            )
    return wsid


@pytest.fixture
def mail_server(own_settings: Settings, sink: Sink) -> Iterator[tuple[LiveServer, VirtualClock]]:
    """A live server on a virtual clock and a database of its own whose email goes to `sink`
    over SMTP (on the session's shared database it would also send other tests' leftovers)."""
    clock = VirtualClock()
    url = f"smtp://127.0.0.1:{sink.port}?tls=none&from=shop@shop.example.com&from_name=Shop"  # type: ignore[attr-defined]
    # An https public URL, as in production (RFC 8058 one-click needs it); the tests aim the
    # links the messages carry at the test server.
    srv = start_server(dataclasses.replace(own_settings, smtp_url=url, public_url="https://links.example.net"), clock)
    yield srv, clock
    srv.stop()
