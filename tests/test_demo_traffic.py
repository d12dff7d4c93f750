"""The demo's traffic generator: deterministic, Segment-shaped, e-commerce spec names."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from nudgeflow.demo_traffic import generate_traffic
from nudgeflow.model.events import normalize, parse_message

START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def _traffic(users: int = 120, seed: int = 11) -> list[dict]:
    return list(generate_traffic(users, seed, start=START, days=3))


def test_same_seed_same_messages_other_seed_other_messages() -> None:
    first = _traffic()
    assert orjson.dumps(first) == orjson.dumps(_traffic())
    assert orjson.dumps(first) != orjson.dumps(_traffic(seed=12))


def test_every_message_validates_as_http_ingest_would_take_it() -> None:
    messages = _traffic()
    received = START + timedelta(days=3)
    ids = set()
    for message in messages:
        # Through JSON, as it travels: the same model code as /v1/batch and import.
        parsed = parse_message(orjson.loads(orjson.dumps(message)))
        record = normalize(parsed, received, max_event_bytes=32 * 1024)
        assert record.trait_errors is None, (message, record.trait_errors)
        ids.add(record.message_id)
    assert len(ids) == len(messages), "every message has its own messageId"


def test_uses_the_ecommerce_spec_and_app_lifecycle_names() -> None:
    messages = _traffic()
    names = Counter(m["event"] for m in messages if m["type"] == "track")
    for name in ("Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Signed Up", "Application Opened"):
        assert names[name] > 0, name
    types = Counter(m["type"] for m in messages)
    assert types["identify"] > 0 and types["page"] > 0 and types["screen"] > 0
    # Funnel shape: more views than adds, more adds than checkouts, some carts abandoned.
    assert names["Product Viewed"] > names["Product Added"] > names["Checkout Started"] >= names["Order Completed"]
    carts_added = {m["properties"]["cart_id"] for m in messages if m.get("event") == "Product Added"}
    carts_checked_out = {m["properties"]["cart_id"] for m in messages if m.get("event") == "Checkout Started"}
    assert carts_checked_out < carts_added

    viewed = next(m for m in messages if m.get("event") == "Product Viewed")["properties"]
    assert {"product_id", "sku", "name", "price", "category", "currency"} <= set(viewed)
    added = next(m for m in messages if m.get("event") == "Product Added")["properties"]
    assert {"product_id", "sku", "name", "price", "quantity", "cart_id"} <= set(added)
    order = next(m for m in messages if m.get("event") == "Order Completed")["properties"]
    assert {"order_id", "revenue", "currency", "products", "cart_id"} <= set(order)
    assert order["products"] and {"product_id", "sku", "price", "quantity"} <= set(order["products"][0])
    assert order["revenue"] == pytest.approx(
        sum(p["price"] * p["quantity"] for p in order["products"]) - order["discount"], abs=0.01
    )


def test_people_browse_anonymously_then_sign_up_with_reserved_traits() -> None:
    messages = _traffic()
    identify = next(m for m in messages if m["type"] == "identify" and "email" in m.get("traits", {}))
    assert identify["userId"] and identify["anonymousId"]
    assert {"email", "first_name", "last_name", "timezone", "locale", "created_at"} <= set(identify["traits"])
    anon = identify["anonymousId"]
    before = [m for m in messages if m.get("anonymousId") == anon and m["timestamp"] < identify["timestamp"]]
    assert before and all("userId" not in m for m in before if m.get("event") == "Product Viewed")
    assert any(m.get("event") == "Signed Up" and m.get("userId") == identify["userId"] for m in messages)


def test_timestamps_are_ordered_and_within_the_window() -> None:
    messages = _traffic()
    stamps = [datetime.fromisoformat(m["timestamp"].replace("Z", "+00:00")) for m in messages]
    assert stamps == sorted(stamps)
    assert START <= stamps[0] and stamps[-1] < START + timedelta(days=3)
    # Spread over the days, not bunched in one hour.
    assert len({s.date() for s in stamps}) >= 3


def test_volume_grows_with_users_and_zero_users_is_empty() -> None:
    assert _traffic(users=0) == []
    small, large = len(_traffic(users=20)), len(_traffic(users=200))
    assert 5 * small < large
    assert 8 <= large / 200 <= 60, "a realistic handful of events per person"
