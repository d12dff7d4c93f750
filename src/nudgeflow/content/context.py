"""What a template sees: the render context of one message to one person.

`build_context(conn, workspace_id, profile_id, message_context, now_ms)` returns a plain
dict (JSON-friendly values) with these keys — every one is always present, so a template
can test `{% if nearest_place %}` under strict undefined:

- `profile`: the person's traits as given (`profile.first_name`, `profile.email`, …), plus
  `id` (the profile id) when the traits have none;
- `event`: the trigger — `name`, `timestamp` (ISO 8601, UTC), `timestamp_ms`, `properties`;
- `journey` and `run`: as the engine sent them (`journey.id`, `journey.name`, `run.id`,
  `run.entered_at` as ISO 8601);
- `cart`: `{id, items, count, subtotal, currency}` (items empty when there is no cart);
- `recently_viewed`: up to 4 products, newest first;
- `recommendations`: `{bought_together: [...], similar: [...]}`, up to 4 each;
- `products`: every product above by id (a lookup table: `products["sku-1"].name`);
- `nearest_place`: the closest catalog place to the last known location, with
  `distance_km` and `distance_m`; None without a location or without places;
- `group`: the traits of the person's group (the group of their latest `group` call), with
  `id` (the groupId); merged from every member's group calls; `{}` without a group;
- `trial_days_left`: whole days until `trial_ends_at` in the person's timezone; None when
  missing, unreadable or past;
- `now`: the send time (ISO 8601, UTC).

Queries: the profile, its engine state, its latest RECENT_EVENTS events, its latest
orders, the catalog products named, the products of their categories (for `similar`),
and the places (only with a location); bought-together counts come from a per-workspace
cache (recommend.BOUGHT_TOGETHER).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import Connection

from nudgeflow.content import recommend as rec
from nudgeflow.core.clock import from_ms
from nudgeflow.core.inputs import EventInput
from nudgeflow.core.timecalc import coordinate_pair, event_coordinates, parse_instant, zone_of
from nudgeflow.model.iso_time import iso
from nudgeflow.model.numbers import is_number
from nudgeflow.store import catalog as catalog_store
from nudgeflow.store import groups as groups_store
from nudgeflow.store.engine_state import stored_state
from nudgeflow.store.profiles import recent_events, recent_named_events, stored_traits

RECENT_EVENTS = 200  # the latest events of the person read for viewed items, cart and location
RECENT_ORDERS = 100  # the latest orders of the person read for "already bought"
SIMILAR_POOL = 500  # at most this many products per category considered for `similar`
LIMIT = 4


def _iso_if_number(ms: Any) -> str | None:
    # A trigger's or run's time comes from stored JSON: anything not a number has no time.
    return iso(int(ms), milliseconds=False) if is_number(ms) else None


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _event(row: Any) -> dict[str, Any]:
    message = _loads(row.payload)
    message = message if isinstance(message, dict) else {}
    message["type"] = row.type
    message["event"] = row.event
    message["timestamp_ms"] = row.timestamp_ms
    return message


def _group(conn: Connection, workspace_id: str, link: Any) -> dict[str, Any]:
    """The person's group as templates see it: the stored traits (every member's calls
    merged), else those the engine saw, and `id`; {} when the person has no group."""
    if not isinstance(link, Mapping) or not isinstance(link.get("id"), str):
        return {}
    stored = groups_store.get_group(conn, workspace_id, link["id"])
    traits = stored["traits"] if stored is not None else link.get("traits")
    return {**(traits if isinstance(traits, Mapping) else {}), "id": link["id"]}


def trial_days_left(traits: Mapping[str, Any], now_ms: int) -> int | None:
    """Whole local days from today to the day of `trial_ends_at` (0 on that day); None if past."""
    tz = zone_of(dict(traits))
    ends = parse_instant(traits.get("trial_ends_at"), tz)
    if ends is None:
        return None
    now = from_ms(now_ms).astimezone(tz)
    if ends <= now:
        return None
    return (ends.date() - now.date()).days


def _location(value: Any) -> tuple[float, float] | None:
    if not isinstance(value, Mapping):
        return None
    pair = coordinate_pair(value)
    if pair is not None:
        return pair
    lon = value.get("lon", value.get("lng"))
    return coordinate_pair({"latitude": value.get("lat"), "longitude": lon})


def last_location(
    trigger: Mapping[str, Any], state_location: Any, recent: list[dict[str, Any]]
) -> tuple[float, float] | None:
    """The trigger's coordinates, else the engine state's last_location, else the latest event's."""
    found = _location(trigger.get("properties"))
    if found is not None:
        return found
    found = _location(state_location)
    if found is not None:
        return found
    for message in recent:  # newest first
        found = event_coordinates(EventInput.from_message(message, message["timestamp_ms"]))
        if found is not None:
            return found
    return None


def _event_context(trigger: Mapping[str, Any]) -> dict[str, Any]:
    props = trigger.get("properties")
    at = trigger.get("at")
    return {
        "name": trigger.get("event"),
        "timestamp": _iso_if_number(at),
        "timestamp_ms": at if isinstance(at, int) else None,
        "message_id": trigger.get("message_id"),
        "properties": dict(props) if isinstance(props, Mapping) else {},
    }


def _run_context(run: Any) -> dict[str, Any]:
    if not isinstance(run, Mapping):
        return {}
    out = dict(run)
    if isinstance(out.get("entered_at"), int):
        out["entered_at_ms"] = out["entered_at"]
        out["entered_at"] = _iso_if_number(out["entered_at"])
    return out


def _seed_ids(event: Mapping[str, Any], cart: list[dict[str, Any]], viewed: list[dict[str, Any]]) -> list[str]:
    """The products recommendations start from: the trigger's, else the cart's, else the latest viewed."""
    props = event["properties"]
    seeds: list[str] = []
    own = rec.product_id_of(props) if event.get("name") not in (rec.ORDERED,) else None
    if own is not None:
        seeds.append(own)
    lines = props.get("products")
    if isinstance(lines, list):
        seeds.extend(pid for pid in (rec.product_id_of(line) for line in lines) if pid is not None)
    if not seeds:
        seeds = [item["id"] for item in cart]
    if not seeds and viewed:
        seeds = [viewed[0]["id"]]
    return list(dict.fromkeys(seeds))


def build_context(
    conn: Connection,
    workspace_id: str,
    profile_id: str,
    message_context: Mapping[str, Any] | None,
    now_ms: int,
    *,
    cache: rec.BoughtTogetherCache | None = None,
    catalog_urls: set[str] | None = None,
) -> dict[str, Any]:
    """The render context of one message (see the module docstring for every key).
    `catalog_urls`, when given, receives the URLs of the catalog products read: those a
    message may track clicks to (content/links.py), unlike a URL an event brought."""
    message_context = message_context or {}
    trigger = message_context.get("trigger")
    trigger = trigger if isinstance(trigger, Mapping) else {}
    event = _event_context(trigger)

    stored = stored_traits(conn, workspace_id, profile_id)
    traits = _loads(stored) if stored is not None else None
    traits = traits if isinstance(traits, dict) else {}
    profile = dict(traits)
    profile.setdefault("id", profile_id)

    state = _loads(stored_state(conn, profile_id))
    state_location = state.get("last_location") if isinstance(state, dict) else None
    group = _group(conn, workspace_id, state.get("group") if isinstance(state, dict) else None)

    recent = [_event(r) for r in recent_events(conn, workspace_id, profile_id, RECENT_EVENTS)]
    orders = [_event(r) for r in recent_named_events(conn, workspace_id, profile_id, rec.ORDERED, RECENT_ORDERS)]
    bought = rec.purchased_ids(orders) | rec.purchased_ids(recent)

    # The products named anywhere above, from the catalog in one query.
    named: set[str] = set()
    for message in recent:
        props = message.get("properties")
        pid = (
            rec.product_id_of(props)
            if message.get("type") == "track"
            else rec.product_id_of({k: (props or {}).get(k) for k in ("product_id", "productId", "sku")})
        )
        if pid is not None:
            named.add(pid)
    sources: list[Any] = [event["properties"]]
    if isinstance(event["properties"].get("products"), list):
        sources.extend(event["properties"]["products"])
    for source in sources:
        pid = rec.product_id_of(source)
        if pid is not None:
            named.add(pid)
    known = catalog_store.get_items(conn, workspace_id, "products", named) if named else {}

    cart_id = event["properties"].get("cart_id")
    cart = rec.cart_summary(rec.cart_items(event["properties"], recent, known), cart_id)
    viewed = rec.recently_viewed(recent, LIMIT, known, exclude=bought)

    seeds = _seed_ids(event, cart["items"], viewed)
    together: list[dict[str, Any]] = []
    similar: list[dict[str, Any]] = []
    if seeds:
        index = (cache or rec.BOUGHT_TOGETHER).get(conn, workspace_id, now_ms)
        candidates = [pid for counter in (index.pairs.get(s, ()) for s in seeds) for pid in counter]
        missing = [pid for pid in dict.fromkeys(candidates) if pid not in known]
        if missing:
            known.update(catalog_store.get_items(conn, workspace_id, "products", missing))
        together = rec.bought_together(index, seeds, LIMIT, known, exclude=bought)
        seed = next((known[s] for s in seeds if s in known), None)
        if seed is not None and seed.get("category") is not None:
            pool = catalog_store.category_items(conn, workspace_id, seed["category"], SIMILAR_POOL)
            known.update(pool)
            similar = rec.similar(seed, pool, LIMIT, exclude=bought)

    place = None
    where = last_location(trigger, state_location, recent)
    if where is not None:
        place = rec.nearest_place(where[0], where[1], catalog_store.all_items(conn, workspace_id, "places"))

    if catalog_urls is not None:
        catalog_urls.update(url for item in known.values() if isinstance(url := item.get("url"), str))
    products = {item["id"]: item for item in [*cart["items"], *viewed, *together, *similar]}
    for pid in named:
        if pid in known and pid not in products:
            products[pid] = rec.product_view(pid, None, known)

    return {
        "profile": profile,
        "event": event,
        "journey": dict(message_context.get("journey") or {}),
        "run": _run_context(message_context.get("run")),
        "cart": cart,
        "recently_viewed": viewed,
        "recommendations": {"bought_together": together, "similar": similar},
        "products": products,
        "nearest_place": place,
        "group": group,
        "trial_days_left": trial_days_left(traits, now_ms),
        "now": _iso_if_number(now_ms),
    }
