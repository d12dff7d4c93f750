"""Recently viewed items, carts and recommendations: pure functions over plain data.

Events here are plain dicts as stored (`{"type", "event", "properties", "timestamp_ms"}`,
the Segment message with its corrected time); the catalog is a mapping of product id to
the catalog store's product dict (`nudgeflow.store.catalog`). Nothing in this module
touches the database except the thin loaders at the end, so each rule is testable alone.

Every list of recommendations leaves out what the person already bought (their Order
Completed products) and what is out of stock (catalog `stock` <= 0; an unknown stock,
None, is allowed).

Bought-together counts come from every Order Completed of the workspace. They are built
once per workspace and kept in a cache for a TTL (`BoughtTogetherCache`): a send reads
them, it never recomputes them.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection

from nudgeflow.core.timecalc import haversine_m
from nudgeflow.model.numbers import as_number
from nudgeflow.store.profiles import latest_track_payloads

VIEWED = "Product Viewed"
ADDED = "Product Added"
REMOVED = "Product Removed"
ORDERED = "Order Completed"
VIEW_TYPES = ("page", "screen")
PRODUCT_ID_KEYS = ("product_id", "productId", "sku", "id")
Catalog = Mapping[str, Mapping[str, Any]]


# --- products in events ---------------------------------------------------------------------


def product_id_of(props: Any) -> str | None:
    """The product a property bag is about: product_id (Segment's name), else sku, else id."""
    if not isinstance(props, Mapping):
        return None
    for key in PRODUCT_ID_KEYS:
        value = props.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def product_view(
    product_id: str, props: Mapping[str, Any] | None = None, catalog: Catalog | None = None
) -> dict[str, Any]:
    """What templates see of a product: the catalog's entry when it has one, else the event's.

    Keys: id, product_id (the same), name, price, currency, image, url, category, stock,
    attributes, in_catalog; plus quantity when the event gives one.
    """
    props = props or {}
    entry = (catalog or {}).get(product_id)
    out: dict[str, Any] = {
        "id": product_id,
        "product_id": product_id,
        "name": props.get("name"),
        "price": as_number(props.get("price"), lenient=True),
        "currency": props.get("currency"),
        "image": props.get("image_url") or props.get("image"),
        "url": props.get("url"),
        "category": props.get("category"),
        "stock": None,
        "attributes": {},
        "in_catalog": entry is not None,
    }
    if entry is not None:
        for key in ("name", "price", "currency", "image", "url", "category", "stock"):
            if entry.get(key) is not None:
                out[key] = entry[key]
        out["attributes"] = dict(entry.get("attributes") or {})
    quantity = as_number(props.get("quantity"), lenient=True)
    if quantity is not None:
        out["quantity"] = int(quantity) if quantity == int(quantity) else quantity
    return out


def in_stock(product_id: str, catalog: Catalog | None) -> bool:
    entry = (catalog or {}).get(product_id)
    stock = None if entry is None else entry.get("stock")
    return stock is None or stock > 0


def _props(event: Mapping[str, Any]) -> Mapping[str, Any]:
    props = event.get("properties")
    return props if isinstance(props, Mapping) else {}


def _name(event: Mapping[str, Any]) -> str | None:
    return event.get("event") if event.get("type", "track") == "track" else event.get("type")


def _newest_first(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(events, key=lambda e: e.get("timestamp_ms") or 0, reverse=True)


def order_products(event: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(product id, line) for each product of an Order Completed event's `products` list."""
    lines = _props(event).get("products")
    if not isinstance(lines, list):
        return []
    out = []
    for line in lines:
        pid = product_id_of(line)
        if pid is not None:
            out.append((pid, line))
    return out


def purchased_ids(events: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every product the person has ordered (their Order Completed events)."""
    bought: set[str] = set()
    for event in events:
        if _name(event) == ORDERED:
            bought.update(pid for pid, _ in order_products(event))
    return bought


def _allowed(pid: str, catalog: Catalog | None, exclude: Collection[str]) -> bool:
    return pid not in exclude and in_stock(pid, catalog)


# --- recently viewed ------------------------------------------------------------------------


def recently_viewed(
    events: Iterable[Mapping[str, Any]], limit: int = 4, catalog: Catalog | None = None, exclude: Collection[str] = ()
) -> list[dict[str, Any]]:
    """Products the person looked at, newest first, each once.

    From Product Viewed track events and page/screen events whose properties name a
    product (product_id, sku or id). Products in `exclude` (what the person bought) and
    out of stock are left out. `viewed_at` is the latest view's epoch ms.
    """
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    if limit <= 0:
        return out
    for event in _newest_first(events):
        kind = event.get("type", "track")
        if not ((kind == "track" and event.get("event") == VIEWED) or kind in VIEW_TYPES):
            continue
        props = _props(event)
        pid = (
            product_id_of(props)
            if kind == "track"
            else (product_id_of({k: props.get(k) for k in ("product_id", "productId", "sku")}))
        )
        if pid is None or pid in seen:
            continue
        seen.add(pid)
        if not _allowed(pid, catalog, exclude):
            continue
        item = product_view(pid, props, catalog)
        item["viewed_at"] = event.get("timestamp_ms")
        out.append(item)
        if len(out) >= limit:
            break
    return out


# --- the cart -------------------------------------------------------------------------------


def cart_items(
    trigger_properties: Mapping[str, Any] | None, events: Iterable[Mapping[str, Any]], catalog: Catalog | None = None
) -> list[dict[str, Any]]:
    """What is in the person's cart, for cart journeys.

    The trigger's own `products` list when it has one (Cart Viewed, Checkout Started);
    else the person's Product Added items for the trigger's `cart_id` (all of their
    Product Added since their latest order when the trigger names no cart), minus Product
    Removed, the latest add of a product first. Quantities of repeated adds are summed.
    """
    props = trigger_properties or {}
    lines = props.get("products")
    if isinstance(lines, list) and lines:
        items = []
        for line in lines:
            pid = product_id_of(line)
            if pid is not None:
                items.append(product_view(pid, line, catalog))
        return items
    cart_id = props.get("cart_id")
    chosen: dict[str, dict[str, Any]] = {}
    removed: set[str] = set()
    for event in _newest_first(events):
        name = _name(event)
        eprops = _props(event)
        if cart_id is None and name == ORDERED:
            break  # the cart before the latest order was bought
        if name not in (ADDED, REMOVED):
            continue
        if cart_id is not None and eprops.get("cart_id") != cart_id:
            continue
        pid = product_id_of(eprops)
        if pid is None:
            continue
        if name == REMOVED:
            if pid not in chosen:
                removed.add(pid)
            continue
        if pid in removed:
            continue
        quantity = as_number(eprops.get("quantity"), lenient=True)
        quantity = 1 if quantity is None else quantity
        if pid in chosen:
            chosen[pid]["quantity"] += int(quantity) if quantity == int(quantity) else quantity
        else:
            item = product_view(pid, eprops, catalog)
            item["quantity"] = int(quantity) if quantity == int(quantity) else quantity
            chosen[pid] = item
    return list(chosen.values())


def cart_summary(items: Sequence[Mapping[str, Any]], cart_id: Any = None) -> dict[str, Any]:
    """The cart as templates see it: items, count (units), subtotal and currency. The
    subtotal is None when it is past any number (quantities an event made absurd): the
    cart is still there, and the message still goes."""
    subtotal = 0.0
    currency = None
    count = 0
    for item in items:
        quantity = item.get("quantity") or 1
        count += int(quantity) if isinstance(quantity, (int, float)) else 1
        if isinstance(item.get("price"), (int, float)):
            try:
                subtotal += float(item["price"]) * float(quantity)
            except OverflowError:  # repeated adds summed to an integer no float holds
                subtotal = math.inf
        currency = currency or item.get("currency")
    total = round(subtotal, 2) if math.isfinite(subtotal) else None
    return {"id": cart_id, "items": list(items), "count": count, "subtotal": total, "currency": currency}


# --- bought together ------------------------------------------------------------------------


# An order counts a pair for every two of its products: n products cost n*(n-1) counts.
# One Order Completed of 32 KB (the event limit) names ~1,500 products, 2.2 million counts
# and ~0.9 s of a send's thread; twenty of them, from anyone with the public write key,
# made the cache's rebuild take minutes and gigabytes. So an order counts for its first
# MAX_ORDER_PRODUCTS products, and a build stops counting past MAX_PAIR_COUNTS (the newest
# orders come first): far beyond a shop's real orders (20,000 orders of 5 products: 400,000).
MAX_ORDER_PRODUCTS = 50
MAX_PAIR_COUNTS = 2_000_000


@dataclass
class BoughtTogether:
    """How often each pair of products was ordered together, across a workspace's orders."""

    pairs: dict[str, Counter[str]] = field(default_factory=dict)
    lines: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # the latest order line seen per product
    orders: int = 0

    @classmethod
    def build(cls, order_histories: Iterable[Iterable[Any]]) -> BoughtTogether:
        """From orders, newest first, each a list of product ids or of order lines (dicts
        with product_id); bounded by MAX_ORDER_PRODUCTS and MAX_PAIR_COUNTS."""
        index = cls()
        budget = MAX_PAIR_COUNTS
        for order in order_histories:
            ids: dict[str, Mapping[str, Any]] = {}
            for line in order:
                if len(ids) >= MAX_ORDER_PRODUCTS:
                    break
                if isinstance(line, Mapping):
                    pid = product_id_of(line)
                    if pid is not None:
                        ids.setdefault(pid, line)
                elif isinstance(line, (str, int)) and not isinstance(line, bool):
                    ids.setdefault(str(line), {})
            budget -= len(ids) * (len(ids) - 1)
            if budget < 0:
                break
            index.orders += 1
            for pid, line in ids.items():
                if line:
                    index.lines[pid] = line
            for a in ids:
                counter = index.pairs.get(a)
                for b in ids:
                    if a != b:
                        if counter is None:
                            counter = index.pairs[a] = Counter()
                        counter[b] += 1
        return index


def bought_together(
    order_histories: BoughtTogether | Iterable[Iterable[Any]],
    product_ids: Iterable[str],
    limit: int = 4,
    catalog: Catalog | None = None,
    exclude: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Products most often ordered with `product_ids`, most often first (ties by id).

    `order_histories` is a prebuilt BoughtTogether (what production passes, from the
    cache) or the orders themselves. `times` is how many orders had both.
    """
    index = order_histories if isinstance(order_histories, BoughtTogether) else BoughtTogether.build(order_histories)
    seeds = [str(p) for p in product_ids]
    scores: Counter[str] = Counter()
    for seed in seeds:
        scores.update(index.pairs.get(seed, {}))
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    out: list[dict[str, Any]] = []
    for pid, times in ranked:
        if len(out) >= limit:
            break
        if pid in seeds or not _allowed(pid, catalog, exclude):
            continue
        item = product_view(pid, index.lines.get(pid), catalog)
        item.pop("quantity", None)
        item["times"] = times
        out.append(item)
    return out


# --- similar --------------------------------------------------------------------------------


def similar(
    product: Mapping[str, Any] | None,
    catalog: Catalog | Iterable[Mapping[str, Any]],
    limit: int = 4,
    exclude: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Catalog products like `product`: the same category, most shared attributes, closest price.

    With a category, only products of that category; without one, products sharing at
    least one attribute (key and value). Then more shared attributes first, then the
    closest price, then id.
    """
    if not product or limit <= 0:
        return []
    by_id: dict[str, Mapping[str, Any]] = (
        dict(catalog) if isinstance(catalog, Mapping) else {str(p["id"]): p for p in catalog}
    )
    own_id = str(product.get("id") or product.get("product_id") or "")
    category = product.get("category")
    attrs = product.get("attributes") or {}
    own_pairs = {(k, _hashable(v)) for k, v in attrs.items()}
    price = as_number(product.get("price"), lenient=True)
    scored = []
    for pid, other in by_id.items():
        if pid == own_id or not _allowed(pid, by_id, exclude):
            continue
        shared = len(own_pairs & {(k, _hashable(v)) for k, v in (other.get("attributes") or {}).items()})
        if category is not None:
            if other.get("category") != category:
                continue
        elif shared == 0:
            continue
        other_price = as_number(other.get("price"), lenient=True)
        distance = abs(other_price - price) if price is not None and other_price is not None else math.inf
        scored.append((-shared, distance, pid))
    scored.sort()
    out = []
    for neg_shared, _distance, pid in scored[:limit]:
        item = product_view(pid, None, by_id)
        item["shared_attributes"] = -neg_shared
        out.append(item)
    return out


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return value


# --- places ---------------------------------------------------------------------------------


def nearest_place(latitude: float, longitude: float, places: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The closest place with `distance_m` and `distance_km` (one decimal), or None without places."""
    best: tuple[float, Mapping[str, Any]] | None = None
    for place in places:
        metres = haversine_m(latitude, longitude, float(place["latitude"]), float(place["longitude"]))
        if best is None or metres < best[0] or (metres == best[0] and str(place["id"]) < str(best[1]["id"])):
            best = (metres, place)
    if best is None:
        return None
    out = {k: v for k, v in best[1].items() if k != "updated_at_ms"}
    out["distance_m"] = round(best[0])
    out["distance_km"] = round(best[0] / 1000, 1)
    return out


# --- loaders --------------------------------------------------------------------------------


MAX_ORDERS = 20_000  # the latest orders a workspace's bought-together counts are built from


def load_orders(conn: Connection, workspace_id: str, limit: int = MAX_ORDERS) -> list[list[Mapping[str, Any]]]:
    """The `products` of the workspace's latest Order Completed events."""
    rows = latest_track_payloads(conn, workspace_id, ORDERED, limit)
    orders = []
    for payload in rows:
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        lines = [line for _, line in order_products(message)]
        if lines:
            orders.append(lines)
    return orders


class BoughtTogetherCache:
    """Bought-together counts per workspace, rebuilt at most once per `ttl_ms`.

    Keyed by (database, workspace). A rebuild reads the latest MAX_ORDERS orders once;
    recipients in between share the result. `invalidate` drops a workspace's entry (after
    a bulk import of orders, say).
    """

    def __init__(self, ttl_ms: int = 15 * 60 * 1000) -> None:
        self.ttl_ms = ttl_ms
        self._entries: dict[tuple[str, str], tuple[int, BoughtTogether]] = {}
        self._lock = threading.Lock()
        self.builds = 0

    def get(self, conn: Connection, workspace_id: str, now_ms: int) -> BoughtTogether:
        key = (conn.engine.url.render_as_string(hide_password=True), workspace_id)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and 0 <= now_ms - entry[0] < self.ttl_ms:
            return entry[1]
        index = BoughtTogether.build(load_orders(conn, workspace_id))
        with self._lock:
            self._entries[key] = (now_ms, index)
            self.builds += 1
        return index

    def invalidate(self, workspace_id: str | None = None) -> None:
        with self._lock:
            if workspace_id is None:
                self._entries.clear()
            else:
                for key in [k for k in self._entries if k[1] == workspace_id]:
                    del self._entries[key]


BOUGHT_TOGETHER = BoughtTogetherCache()
