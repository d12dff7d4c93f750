"""Recommendations as pure functions over plain data, and the bought-together cache."""

from __future__ import annotations

from typing import Any

import orjson

from nudgeflow.content import recommend as rec
from tests.support import make_workspace

CATALOG: dict[str, dict[str, Any]] = {
    "shirt": {
        "id": "shirt",
        "name": "Linen shirt",
        "price": 50.0,
        "currency": "EUR",
        "image": "i/shirt.jpg",
        "url": "u/shirt",
        "category": "shirts",
        "stock": 4,
        "attributes": {"color": "blue", "fabric": "linen"},
    },
    "oxford": {
        "id": "oxford",
        "name": "Oxford shirt",
        "price": 60.0,
        "currency": "EUR",
        "image": None,
        "url": None,
        "category": "shirts",
        "stock": None,
        "attributes": {"color": "blue", "fabric": "cotton"},
    },
    "flannel": {
        "id": "flannel",
        "name": "Flannel",
        "price": 45.0,
        "currency": "EUR",
        "image": None,
        "url": None,
        "category": "shirts",
        "stock": 2,
        "attributes": {"color": "red"},
    },
    "tee": {
        "id": "tee",
        "name": "Tee",
        "price": 52.0,
        "currency": "EUR",
        "image": None,
        "url": None,
        "category": "shirts",
        "stock": 0,
        "attributes": {"color": "blue", "fabric": "linen"},
    },
    "belt": {
        "id": "belt",
        "name": "Belt",
        "price": 20.0,
        "currency": "EUR",
        "image": None,
        "url": None,
        "category": "accessories",
        "stock": 9,
        "attributes": {"color": "blue"},
    },
}


def track(event_name: str, ts: int, /, **props: Any) -> dict[str, Any]:
    return {"type": "track", "event": event_name, "timestamp_ms": ts, "properties": props}


def order(ts: int, *ids: str) -> dict[str, Any]:
    return track("Order Completed", ts, products=[{"product_id": i, "price": 1} for i in ids])


def test_recently_viewed_newest_first_distinct_joined_with_the_catalog() -> None:
    events = [
        track("Product Viewed", 1, product_id="shirt", name="old name"),
        {
            "type": "page",
            "timestamp_ms": 2,
            "properties": {"product_id": "unknown", "name": "Mystery", "price": "9.5", "image_url": "m.jpg"},
        },
        {"type": "page", "timestamp_ms": 3, "properties": {"path": "/home", "id": "not-a-product"}},
        track("Product Viewed", 4, product_id="belt"),
        track("Product Viewed", 5, product_id="shirt"),
        track("Product Viewed", 6, product_id="tee"),  # out of stock
        track("Product Clicked", 7, product_id="oxford"),
    ]
    viewed = rec.recently_viewed(events, limit=5, catalog=CATALOG)
    assert [v["id"] for v in viewed] == ["shirt", "belt", "unknown"]
    assert viewed[0]["name"] == "Linen shirt" and viewed[0]["viewed_at"] == 5 and viewed[0]["in_catalog"]
    assert viewed[2] == {**viewed[2], "name": "Mystery", "price": 9.5, "image": "m.jpg", "in_catalog": False}
    assert [v["id"] for v in rec.recently_viewed(events, limit=1, catalog=CATALOG)] == ["shirt"]
    assert [v["id"] for v in rec.recently_viewed(events, 5, CATALOG, exclude={"belt"})] == ["shirt", "unknown"]


def test_recently_viewed_empty_cases() -> None:
    assert rec.recently_viewed([], 4) == []
    assert rec.recently_viewed([track("Product Viewed", 1)], 4) == []  # no product id
    assert rec.recently_viewed([track("Product Viewed", 1, product_id="x")], 0) == []
    assert rec.recently_viewed([track("Product Viewed", 1, product_id="x")], 4, catalog={})[0]["name"] is None


def test_purchased_ids() -> None:
    assert rec.purchased_ids(
        [order(1, "a", "b"), track("Product Viewed", 2, product_id="c"), track("Order Completed", 3, products="nope")]
    ) == {"a", "b"}
    assert rec.purchased_ids([]) == set()


def test_bought_together_counts_excludes_bought_and_out_of_stock() -> None:
    orders = [
        ["shirt", "belt"],
        ["shirt", "belt", "tee"],
        ["shirt", "oxford"],
        ["shirt", "tee"],
        ["flannel"],
        [{"product_id": "shirt"}, {"product_id": "socks", "name": "Socks", "price": 5}],
    ]
    index = rec.BoughtTogether.build(orders)
    assert index.orders == 6 and index.pairs["shirt"]["belt"] == 2
    got = rec.bought_together(index, ["shirt"], limit=4, catalog=CATALOG)
    assert [(g["id"], g["times"]) for g in got] == [("belt", 2), ("oxford", 1), ("socks", 1)]  # tee: stock 0
    assert got[2]["name"] == "Socks" and not got[2]["in_catalog"]
    assert [g["id"] for g in rec.bought_together(orders, ["shirt"], 4, CATALOG, exclude={"belt"})] == [
        "oxford",
        "socks",
    ]
    assert [g["id"] for g in rec.bought_together(orders, ["shirt"], 1, CATALOG)] == ["belt"]
    # several seeds add up; the seeds themselves are never recommended
    assert [g["id"] for g in rec.bought_together(orders, ["belt", "oxford"], 4)] == ["shirt", "tee"]


def test_bought_together_empty_cases() -> None:
    assert rec.bought_together([], ["shirt"]) == []
    assert rec.bought_together([["shirt", "belt"]], []) == []
    assert rec.bought_together([["flannel"]], ["flannel"]) == []


def test_similar_same_category_shared_attributes_then_closest_price() -> None:
    got = rec.similar(CATALOG["shirt"], CATALOG, limit=4)
    # oxford shares color; flannel none; tee shares both but is out of stock; belt is another category
    assert [(g["id"], g["shared_attributes"]) for g in got] == [("oxford", 1), ("flannel", 0)]
    assert [g["id"] for g in rec.similar(CATALOG["shirt"], CATALOG, 4, exclude={"oxford"})] == ["flannel"]
    equal = {
        "a": {"id": "a", "category": "c", "price": 10, "attributes": {}},
        "b": {"id": "b", "category": "c", "price": 14, "attributes": {}},
        "d": {"id": "d", "category": "c", "price": 7, "attributes": {}},
        "e": {"id": "e", "category": "c", "price": None, "attributes": {}},
    }
    assert [g["id"] for g in rec.similar(equal["a"], list(equal.values()))] == ["d", "b", "e"]
    no_category = {"id": "x", "category": None, "attributes": {"color": "blue"}}
    assert {g["id"] for g in rec.similar(no_category, CATALOG, 10)} == {"shirt", "oxford", "belt"}


def test_similar_empty_cases() -> None:
    assert rec.similar(None, CATALOG) == []
    assert rec.similar(CATALOG["shirt"], {}) == []
    assert rec.similar({"id": "lonely", "category": "hats"}, CATALOG) == []


def test_cart_from_the_trigger_or_product_added_events() -> None:
    trigger = {"cart_id": "c1", "products": [{"product_id": "shirt", "quantity": 2}, {"sku": "zz", "name": "Zed"}]}
    items = rec.cart_items(trigger, [], CATALOG)
    assert [(i["id"], i.get("quantity"), i["name"]) for i in items] == [
        ("shirt", 2, "Linen shirt"),
        ("zz", None, "Zed"),
    ]
    events = [
        track("Product Added", 1, cart_id="c1", product_id="belt"),
        track("Product Added", 2, cart_id="c0", product_id="oxford"),
        track("Product Added", 3, cart_id="c1", product_id="shirt", quantity=1),
        track("Product Added", 4, cart_id="c1", product_id="flannel"),
        track("Product Removed", 5, cart_id="c1", product_id="flannel"),
        track("Product Added", 6, cart_id="c1", product_id="shirt", quantity=2),
    ]
    items = rec.cart_items({"cart_id": "c1", "product_id": "shirt"}, events, CATALOG)
    assert [(i["id"], i["quantity"]) for i in items] == [("shirt", 3), ("belt", 1)]
    summary = rec.cart_summary(items, "c1")
    assert summary["count"] == 4 and summary["subtotal"] == 170.0 and summary["currency"] == "EUR"
    # no cart id: what was added since the latest order
    since = [*events, order(7, "shirt"), track("Product Added", 8, product_id="belt")]
    assert [i["id"] for i in rec.cart_items({}, since, CATALOG)] == ["belt"]
    assert rec.cart_items(None, [], CATALOG) == []
    assert rec.cart_summary([]) == {"id": None, "items": [], "count": 0, "subtotal": 0.0, "currency": None}


def test_nearest_place() -> None:
    places = [
        {"id": "nyc", "name": "Fifth Avenue", "latitude": 40.7616, "longitude": -73.9747, "updated_at_ms": 1},
        {"id": "bk", "name": "Brooklyn", "latitude": 40.6782, "longitude": -73.9442},
    ]
    near = rec.nearest_place(40.758, -73.9855, places)
    assert near is not None and near["id"] == "nyc" and 0.5 < near["distance_km"] < 1.5 and "updated_at_ms" not in near
    assert rec.nearest_place(40.65, -73.95, places)["id"] == "bk"  # type: ignore[index]
    assert rec.nearest_place(0, 0, []) is None


def test_the_cache_builds_once_per_ttl(engine: Any) -> None:
    from sqlalchemy import insert

    from nudgeflow.store.schema import events

    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:
        for n, ids in enumerate([["a", "b"], ["a", "b"], ["a", "c"]]):
            message = {
                "type": "track",
                "event": "Order Completed",
                "messageId": f"m{n}",
                "properties": {"products": [{"product_id": i} for i in ids]},
            }
            conn.execute(
                insert(events).values(
                    workspace_id=ws,
                    message_id=f"m{n}",
                    profile_id=f"p{n}",
                    type="track",
                    event="Order Completed",
                    timestamp_ms=n,
                    received_at_ms=n,
                    payload=orjson.dumps(message).decode(),
                )
            )
    cache = rec.BoughtTogetherCache(ttl_ms=1000)
    with engine.connect() as conn:
        first = cache.get(conn, ws, 10_000)
        assert cache.get(conn, ws, 10_500) is first and cache.builds == 1
        assert [g["id"] for g in rec.bought_together(first, ["a"])] == ["b", "c"]
        assert cache.get(conn, ws, 11_000) is not first and cache.builds == 2
        cache.invalidate(ws)
        cache.get(conn, ws, 11_001)
        assert cache.builds == 3
        assert cache.get(conn, "ws_none", 1).orders == 0


def test_bought_together_counts_are_bounded_whatever_the_orders() -> None:
    # One Order Completed within the 32 KB event limit names ~1,500 products: 2.2 million
    # pair counts and ~1 s of a send's thread each, and twenty of them (anyone with the
    # public write key) made the cache's rebuild take minutes and gigabytes.
    huge = [{"product_id": f"h{i}"} for i in range(1_500)]
    index = rec.BoughtTogether.build([huge, order(1, "shirt", "belt")["properties"]["products"]])
    counts = sum(len(c) for c in index.pairs.values())
    cap = rec.MAX_ORDER_PRODUCTS
    assert counts == cap * (cap - 1) + 2  # its first MAX_ORDER_PRODUCTS products, and the real order
    assert index.pairs["shirt"] == {"belt": 1} and len(index.pairs["h0"]) == cap - 1
    # Many full orders: counting stops at MAX_PAIR_COUNTS, the newest orders counted first.
    orders = [[f"o{n}-{i}" for i in range(cap)] for n in range(rec.MAX_PAIR_COUNTS // (cap * (cap - 1)) + 50)]
    index = rec.BoughtTogether.build(orders)
    assert sum(sum(c.values()) for c in index.pairs.values()) <= rec.MAX_PAIR_COUNTS
    assert "o0-1" in index.pairs["o0-0"] and "o1-0" in index.pairs and f"o{len(orders) - 1}-0" not in index.pairs
