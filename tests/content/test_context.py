"""build_context on both databases: every key, and the empty cases."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nudgeflow.content import recommend as rec
from nudgeflow.content.context import build_context, trial_days_left
from nudgeflow.core.clock import to_ms
from tests.content.context_rows import DAY, NOW, add_event, add_profile
from tests.support import make_workspace


def test_a_cart_journey_sees_everything(engine: Any, catalog_wsid: str) -> None:
    with engine.begin() as conn:
        add_profile(
            conn,
            catalog_wsid,
            "p1",
            {
                "first_name": "Ada",
                "email": "ada@example.com",
                "timezone": "America/New_York",
                "locale": "en_US",
                "trial_ends_at": "2026-01-04T10:00:00Z",
            },
            state={"last_location": {"latitude": 40.758, "longitude": -73.9855}},
        )
        add_event(conn, catalog_wsid, "p1", "Order Completed", NOW - 5 * DAY, products=[{"product_id": "socks"}])
        add_event(conn, catalog_wsid, "p1", "Product Viewed", NOW - 4 * DAY, product_id="oxford")
        add_event(conn, catalog_wsid, "p1", None, NOW - 3 * DAY, kind="page", product_id="polo", name="Polo page")
        add_event(conn, catalog_wsid, "p1", "Product Viewed", NOW - 2 * DAY, product_id="shirt")
        add_event(conn, catalog_wsid, "p1", "Product Added", NOW - DAY, cart_id="c9", product_id="shirt", quantity=2)
    trigger = {
        "event": "Product Added",
        "message_id": "x",
        "at": NOW - DAY,
        "properties": {"cart_id": "c9", "product_id": "shirt"},
    }
    message_context = {
        "trigger": trigger,
        "journey": {"id": "cart", "version": 2, "name": "Cart"},
        "run": {"id": "r1", "entered_at": NOW - DAY},
    }
    cache = rec.BoughtTogetherCache()
    with engine.connect() as conn:
        ctx = build_context(conn, catalog_wsid, f"p1.{catalog_wsid}", message_context, NOW, cache=cache)
    assert ctx["profile"]["first_name"] == "Ada" and ctx["profile"]["id"] == f"p1.{catalog_wsid}"
    assert ctx["event"] == {
        "name": "Product Added",
        "timestamp": "2025-12-31T12:00:00Z",
        "timestamp_ms": NOW - DAY,
        "message_id": "x",
        "properties": {"cart_id": "c9", "product_id": "shirt"},
    }
    assert ctx["journey"]["name"] == "Cart" and ctx["run"]["entered_at"] == "2025-12-31T12:00:00Z"
    assert [(i["id"], i["quantity"], i["name"]) for i in ctx["cart"]["items"]] == [("shirt", 2, "Linen shirt")]
    assert ctx["cart"]["subtotal"] == 100.0 and ctx["cart"]["currency"] == "EUR" and ctx["cart"]["id"] == "c9"
    assert [v["id"] for v in ctx["recently_viewed"]] == ["shirt", "polo", "oxford"]
    # belt: ordered with the shirt twice; socks: bought already; flannel: out of stock
    assert [b["id"] for b in ctx["recommendations"]["bought_together"]] == ["belt"]
    assert [s["id"] for s in ctx["recommendations"]["similar"]] == ["oxford", "polo"]
    assert ctx["nearest_place"]["id"] == "fifth" and ctx["nearest_place"]["distance_km"] < 2
    # Jan 1 07:00 in New York to Jan 4 05:00 there: 3 local days
    assert ctx["trial_days_left"] == 3
    assert ctx["now"] == "2026-01-01T12:00:00Z"
    assert ctx["products"]["belt"]["name"] == "Belt"
    orjson.dumps(ctx)  # plain data


def test_nobody_known_nothing_happened(engine: Any, catalog_wsid: str) -> None:
    with engine.connect() as conn:
        ctx = build_context(conn, catalog_wsid, "ghost", {}, NOW)
    assert ctx["profile"] == {"id": "ghost"}
    assert ctx["event"]["name"] is None and ctx["event"]["properties"] == {}
    assert ctx["cart"] == {"id": None, "items": [], "count": 0, "subtotal": 0.0, "currency": None}
    assert ctx["recently_viewed"] == [] and ctx["recommendations"] == {"bought_together": [], "similar": []}
    assert ctx["nearest_place"] is None and ctx["trial_days_left"] is None
    assert ctx["journey"] == {} and ctx["run"] == {}


def test_an_empty_catalog(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:
        add_profile(conn, ws, "p1", {"first_name": "Bo"})
        add_event(
            conn,
            ws,
            "p1",
            "Product Viewed",
            NOW - DAY,
            product_id="x",
            name="Thing",
            price=3,
            context={"location": {"latitude": 1.0, "longitude": 2.0}},
        )
        add_event(conn, ws, "other", "Order Completed", NOW - DAY, products=[{"product_id": "x"}, {"product_id": "y"}])
    with engine.connect() as conn:
        ctx = build_context(
            conn,
            ws,
            f"p1.{ws}",
            {"trigger": {"event": "Product Viewed", "at": NOW - DAY, "properties": {"product_id": "x"}}},
            NOW,
            cache=rec.BoughtTogetherCache(),
        )
    assert [(v["id"], v["name"], v["in_catalog"]) for v in ctx["recently_viewed"]] == [("x", "Thing", False)]
    assert [b["id"] for b in ctx["recommendations"]["bought_together"]] == ["y"]
    assert ctx["recommendations"]["similar"] == []
    assert ctx["nearest_place"] is None  # a location, but no places


def test_location_from_the_latest_event_when_the_state_has_none(engine: Any, catalog_wsid: str) -> None:
    with engine.begin() as conn:
        add_profile(conn, catalog_wsid, "p1", {}, state={"last_location": None})
        add_event(
            conn,
            catalog_wsid,
            "p1",
            "App Opened",
            NOW - 2 * DAY,
            context={"location": {"latitude": 40.76, "longitude": -73.98}},
        )
        add_event(conn, catalog_wsid, "p1", "App Opened", NOW - DAY, latitude=48.85, longitude=2.35)
        add_profile(conn, catalog_wsid, "p2", {}, state={"last_location": {"lat": 48.86, "lon": 2.35}})
    with engine.connect() as conn:
        assert build_context(conn, catalog_wsid, f"p1.{catalog_wsid}", {}, NOW)["nearest_place"]["id"] == "paris"
        assert build_context(conn, catalog_wsid, f"p2.{catalog_wsid}", {}, NOW)["nearest_place"]["id"] == "paris"
        trigger = {"event": "App Opened", "at": NOW, "properties": {"latitude": 40.76, "longitude": -73.98}}
        assert (
            build_context(conn, catalog_wsid, f"p1.{catalog_wsid}", {"trigger": trigger}, NOW)["nearest_place"]["id"]
            == "fifth"
        )


def test_the_trigger_s_own_products_make_the_cart(engine: Any, catalog_wsid: str) -> None:
    trigger = {
        "event": "Checkout Started",
        "at": NOW,
        "properties": {
            "products": [{"product_id": "polo", "quantity": 1}, {"product_id": "nope", "name": "Gone", "price": 2}]
        },
    }
    with engine.connect() as conn:
        ctx = build_context(conn, catalog_wsid, f"p9.{catalog_wsid}", {"trigger": trigger}, NOW)
    assert [(i["id"], i["name"]) for i in ctx["cart"]["items"]] == [("polo", "Polo"), ("nope", "Gone")]
    assert ctx["cart"]["subtotal"] == 42.0


@pytest.mark.parametrize(
    "value,tz,expected",
    [
        (None, "UTC", None),
        ("not a date", "UTC", None),
        ("2025-12-31", "UTC", None),  # past
        ("2026-01-01T18:00:00Z", "UTC", 0),  # later today
        ("2026-01-02T01:00:00Z", "UTC", 1),
        ("2026-01-02T01:00:00Z", "America/Los_Angeles", 0),  # still Jan 1 there
        ("2026-01-11", "Asia/Tokyo", 10),  # Jan 1 21:00 in Tokyo; ends at local midnight of Jan 11
        (to_ms(__import__("datetime").datetime(2026, 1, 8, tzinfo=__import__("datetime").timezone.utc)), "UTC", 7),
    ],
)
def test_trial_days_left(value: Any, tz: str, expected: int | None) -> None:
    assert trial_days_left({"trial_ends_at": value, "timezone": tz}, NOW) == expected


def test_absurd_quantities_leave_the_cart_without_a_subtotal_not_the_message_unsent(
    engine: Any, catalog_wsid: str
) -> None:
    # Two Product Added of 1e308 each (any client with the public write key can send them)
    # summed to an integer no float holds: building the context raised OverflowError, and
    # every message to the person failed, whatever its template.
    with engine.begin() as conn:
        add_profile(conn, catalog_wsid, "p10", {"email": "huge@example.com"})
        for at in (NOW - 2 * DAY, NOW - DAY):
            add_event(conn, catalog_wsid, "p10", "Product Added", at, product_id="shirt", quantity=1e308)
        add_profile(conn, catalog_wsid, "p11", {"email": "inf@example.com"})
        add_event(conn, catalog_wsid, "p11", "Product Added", NOW - DAY, product_id="shirt", quantity=1e308)
    with engine.connect() as conn:
        summed = build_context(conn, catalog_wsid, f"p10.{catalog_wsid}", {}, NOW)
        one = build_context(conn, catalog_wsid, f"p11.{catalog_wsid}", {}, NOW)
    assert [i["id"] for i in summed["cart"]["items"]] == ["shirt"] and summed["cart"]["subtotal"] is None
    assert summed["cart"]["count"] == 2 * int(1e308)
    assert one["cart"]["subtotal"] is None  # 1e308 x the price: past any float too
