"""The demo's traffic generator: deterministic, Segment-shaped, e-commerce spec names."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from nudgeflow.demo.traffic import generate_traffic
from nudgeflow.model.events import normalize, parse_message
from tests.demo_traffic_support import START


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
    for name in (
        "Product Viewed",
        "Product Added",
        "Checkout Started",
        "Order Completed",
        "Signed Up",
        "Application Opened",
    ):
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


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_messages_come_in_arrival_order_within_the_window() -> None:
    messages = _traffic()
    arrivals = [_when(m.get("sentAt") or m["timestamp"]) for m in messages]
    assert arrivals == sorted(arrivals)
    stamps = [_when(m["timestamp"]) for m in messages]
    assert min(stamps) >= START and max(arrivals) < START + timedelta(days=3)
    # Spread over the days, not bunched in one hour.
    assert len({s.date() for s in stamps}) >= 3
    # Only a message flushed late from an offline queue arrives after it happened.
    late = [m for m in messages if "sentAt" in m]
    assert late and all(m["event"] == "Level Completed" for m in late)
    assert all(timedelta(minutes=20) <= _when(m["sentAt"]) - _when(m["timestamp"]) <= timedelta(hours=3) for m in late)


def test_volume_grows_with_users_and_zero_users_is_empty() -> None:
    assert _traffic(users=0) == []
    small, large = len(_traffic(users=20)), len(_traffic(users=200))
    assert 5 * small < large
    assert 8 <= large / 200 <= 60, "a realistic handful of events per person"


# --- what the example journeys need --------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "journeys"


def test_the_later_days_bring_deliveries_habits_plan_changes_and_comebacks(month_of_traffic: list[dict]) -> None:
    names = Counter(m["event"] for m in month_of_traffic if m["type"] == "track")
    for name in (
        "Order Delivered",
        "Level Completed",
        "Product Added to Wishlist",
        "Subscription Upgraded",
        "Application Opened",
    ):
        assert names[name] > 0, name
    assert names["Subscription Downgraded"] + names["Subscription Cancelled"] > 0
    orders = {m["properties"]["order_id"] for m in month_of_traffic if m.get("event") == "Order Completed"}
    delivered = {m["properties"]["order_id"] for m in month_of_traffic if m.get("event") == "Order Delivered"}
    assert delivered < orders, "most orders are delivered, not all"
    # Deliveries and billing come from the shop's backend: the userId only.
    backend = [m for m in month_of_traffic if m.get("event") in ("Order Delivered", "Subscription Upgraded")]
    assert all(m.get("userId") and "anonymousId" not in m for m in backend)
    plans = {m["traits"]["plan"] for m in month_of_traffic if m["type"] == "identify" and "plan" in m.get("traits", {})}
    assert plans == {"free", "pro", "cancelled"}
    # Some people come back after a month of silence.
    stamps = [_when(m["timestamp"]) for m in month_of_traffic]
    assert max(stamps) > START + timedelta(days=30)
    assert max(_when(m.get("sentAt") or m["timestamp"]) for m in month_of_traffic) < START + timedelta(days=40)


def test_app_locations_are_near_a_store_or_far_from_both(month_of_traffic: list[dict]) -> None:
    from nudgeflow.core.timecalc import haversine_m
    from nudgeflow.demo.traffic import STORES

    located = [m["context"]["location"] for m in month_of_traffic if "location" in m.get("context", {})]
    assert located and all(m for m in located)
    nearest = [min(haversine_m(p["latitude"], p["longitude"], lat, lon) for _n, lat, lon in STORES) for p in located]
    near = [d for d in nearest if d <= 200]
    assert near and all(d <= 180.5 for d in near)
    assert sum(1 for d in nearest if d > 1000) > len(near), "most reports are nowhere near a store"
    assert not [d for d in nearest if 200 < d < 1000], "nothing ambiguous around the 200 m radius"


def test_some_people_open_the_app_seven_local_days_in_a_row(month_of_traffic: list[dict]) -> None:
    from zoneinfo import ZoneInfo

    zone = {
        m["userId"]: m["traits"]["timezone"]
        for m in month_of_traffic
        if m["type"] == "identify" and "timezone" in m.get("traits", {})
    }
    days: dict[str, set] = {}
    for m in month_of_traffic:
        if m.get("event") == "Application Opened" and m.get("userId") in zone:
            days.setdefault(m["userId"], set()).add(
                _when(m["timestamp"]).astimezone(ZoneInfo(zone[m["userId"]])).date()
            )

    def longest(dates: set) -> int:
        best = run = 0
        for d in sorted(dates):
            run = run + 1 if run and d - timedelta(days=1) in dates else 1
            best = max(best, run)
        return best

    streaks = [longest(d) for d in days.values()]
    assert sum(1 for n in streaks if n >= 7) >= 3


def test_through_the_example_journeys_every_journey_and_step_sends(month_of_traffic: list[dict]) -> None:
    """In arrival order, as the demo sends it: late events count as late."""
    from nudgeflow.runtime.replay import load_journeys
    from nudgeflow.runtime.simulation import Simulation

    journeys = load_journeys([EXAMPLES])
    sim = Simulation(journeys)
    for message in month_of_traffic:
        sim.feed(message)
    sim.advance_to(START + timedelta(days=40))
    summary = sim.summary()["journeys"]
    for journey in journeys:
        row = summary[journey.id]
        assert row["entered"] > 0, journey.id
        sent_steps = set(row["messages"])
        send_steps = {sid for sid, step in journey.steps.items() if step.type == "send"}
        assert sent_steps == send_steps, (journey.id, sent_steps, send_steps)
    assert summary["cart-abandonment"]["holdout"] > 0
    assert summary["cart-abandonment"]["exited"].get("exit_event:Order Completed", 0) > 0
    assert summary["welcome"]["exited"].get("exit_event:Order Completed", 0) > 0
    assert summary["plan-downgrade-save"]["messages"]["ask"] > summary["plan-downgrade-save"]["messages"]["offer"]
    assert summary["win-back"]["messages"]["incentive"] > summary["win-back"]["messages"]["fewer-emails"]
    # A level completed offline and flushed late gets no congratulations.
    fresh = sum(1 for m in month_of_traffic if m.get("event") == "Level Completed" and "sentAt" not in m)
    assert summary["push-level-completed"]["entered"] <= fresh
