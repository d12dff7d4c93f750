#!/usr/bin/env python
"""Engine benchmark: what the journey engine decides per second, next to what SQLite can store.

    .venv/bin/python benchmarks/engine.py [--quick] [--no-record] [--profiles N] [--events N] ...

One run, on one set of generated events, measures:

  L         raw SQLite batched inserts, rows/s, of the very events the engine then decides:
            Python sqlite3, WAL, synchronous=FULL, 1,000-row transactions, into the events
            table of a nudgeflow database (its indexes included), with the page cache and
            checkpoint threshold nudgeflow sets on its own connections, as
            benchmarks/ingest.py measures it. These inserts are also how the event log of
            the next phase is loaded: the events are committed before the engine starts.
            (Also shown: L over the first 200,000 rows, the size ingest.py uses; L falls as
            the table's random-key indexes outgrow the page cache.)
  engine    events/s from "committed to the event log" to "decisions, profile state,
            timers, runs and outbox committed": every journey of examples/journeys live,
            100,000 profiles, 1,000,000 generated events of a shop and its app (Product
            Viewed, Product Added with a cart_id, Order Completed with revenue and products,
            Order Delivered, Application Opened with a location, Level Completed, wishlist,
            identify with traits and plan changes, page, screen…), decided by
            `process_events` as `nudgeflow serve` runs it: batches of
            Settings.engine_batch_events, each one transaction, run as a job of the group
            committer's writer thread (with the WAL checkpointer beside it), SQLite WAL,
            synchronous=FULL, the collector set as serve sets it (runtime/heap.settle_heap),
            until the cursor reaches the last event. Target >= 0.8 x L (issue 18 item 5; it
            was 0.25). With it, the engine's decision: the writer thread's CPU per event
            (time.thread_time read in that thread before and after: reading the event,
            loading the person's state, deciding, writing, the commit), which another
            process's load does not add to. Target <= 30 us (issue 18 item 3).
            L is measured on a table of the run's size: at --quick's 20,000 rows it fits
            the page cache and runs 3-4 x its full-size rate, so the quick ratio (~0.2-0.3)
            says little about the full run's (0.6-0.8); compare quick runs with each other.
  journeys  the engine phase's events again, decided on a copy of its database taken before
            the engine ran, with --journeys (100) live journeys of the example kinds: the 11
            examples and copies of each (`journey_variants`: own id and name, the trigger
            varied — longer windows and waits, more occurrences, a wider geofence, a later
            level, a dearer cart or order, other plans — and an entry filter on one
            market, the person's country). Target: events/s >= 0.7 x the engine phase's
            rate with the 11 examples, in the same run (issue 18 item 6); the ratio of the
            writer thread's CPU per event is shown beside it. Runs with the engine phase.
  matching  trigger matching alone, in the pure core, no database: 1,000 live journeys over
            100 event names, with property filters of every operator; events/s through the
            catalog's trigger index and each candidate trigger's filters (target >= 100,000
            events/s); and, for contrast, a naive scan of all 1,000 triggers per event.
            The events go through five times; the best pass is the figure (as timeit takes
            the best of its repeats: a slower pass measured the machine's other work), the
            median pass is shown beside it.
  timers    pending timers of cart-abandonment runs waiting in their 23-hour wait (each
            firing sends the second email, arms the next wait and updates the run), written
            in bulk, all due; fired by `fire_timers` in batches of
            Settings.engine_batch_timers, one transaction each, through the writer thread,
            at 10,000, 100,000 and 1,000,000 pending timers: the firing rate (targets
            >= 20,000/s at 10,000 pending and >= 15,000/s at 1.1M, issue 18; the
            firing thread's CPU per timer, its commits included, is shown beside it, for
            comparing versions on a busy machine) and the resident memory of the firing process (it must stay flat: timers are rows,
            not RAM; flat means under 50 bytes of RSS per timer added, where a timer
            held in Python would take ~200). Each round fires in a fresh
            process, so that its memory is not the rest of the benchmark's; the Python
            objects it holds are counted too (sys.getallocatedblocks), apart from SQLite's
            page cache, which grows up to its fixed cap.
  latency   from an event accepted by a real `nudgeflow serve` (engine on, every example
            journey live) to the log channel's send of the message it triggers at once,
            computed in the database (log channel sent_at_ms - event received_at_ms):
            paced open-loop /v1/track, /v1/identify, /v1/page and /v1/screen requests at
            half the lower of the engine rate of phase 2 and the server's own saturation
            (measured first, closed loop, engine on). Targets p50 <= 100 ms, p99 <= 1 s.
  backfill  publishing a journey over the people already known (docs/journeys.md, "Publishing
            and the past"): 100,000 profiles and 1,000,000 stored events over the last 120
            days, decided by the engine beforehand (every example journey live), served by a
            real `nudgeflow serve`. A new inactivity journey (30 days without opening the
            app, browsing or buying; entry: an order within 180 days, read from the stored
            events) is published with `nudgeflow journeys publish --yes`, which counts who
            would enter at once first; the figure is the time from that command to the
            backfill done (every profile decided, its entries written). Target <= 30 s.
            Meanwhile a paced open-loop ingest load (/v1/track…, --backfill-rate req/s) keeps
            going; its HTTP p99 over the requests sent during the backfill: target <= 100 ms.
            Its results go to their own section of RESULTS.md.
  segments  (docs/segments.md) two measures. Apply: `recent-buyers` (examples/segments: an
            Order Completed in 30 days) applied with `nudgeflow segments apply` over the
            backfill phase's stored past (the same 100,000 profiles and 1,000,000 events,
            prepared once per run), `nudgeflow serve` running, under the same paced ingest
            load; the figure is the time from the command to the computation done (every
            profile decided, the size recorded). Target <= 30 s. Engine: --segment-events
            events of --segment-profiles people (the engine phase's kind of workload, default
            the same sizes) decided by process_events in this run, every example journey live,
            without segments and with --segments (50) live ones of every kind (counts and sums
            in windows, filters, lapsed, engagement, reachability, traits, segments on
            segments), in two parts each decided to the end: the first half of the events
            (most people act for the first time and enter their segments), then the second
            (people known). Target, on the second: with >= 0.8 x without, the rate counting
            the events given (the Segment Entered / Exited the engine appends are decided
            within the time); the first part's ratio is shown beside it. Its results go to
            their own section of RESULTS.md.
  rollups   (only when asked: --phases rollups) what keeping the report rollups costs the
            engine (issue 15: <= 10 % of its events/s). The engine phase's work, prepared once
            per size (--rollup-sizes, default 2,000 x 20,000 and 20,000 x 200,000; the first
            alone with --quick), decided on identical copies of that database with the rollups
            counted (on) and not (off: EffectsBatch(count_rollups=False), which exists for this
            alone), alternated on, off, on, off… for --rollup-rounds rounds (3). The figure is
            the median events/s on over the median off (target >= 0.90), each round's ratio and
            the CPU per event beside it; the target is met when every round's ratio meets it,
            and rounds on both sides of it settle nothing. Both modes must decide the same messages, runs and
            timers, and only "on" may write rollups, or the run stops. The load average before
            and after is recorded with it, and a run on a busy machine says so. Its results go
            to their own section of RESULTS.md.

Ratios are the figures that travel: the machine is shared and noisy, and both sides of a
ratio come from the same run. Results go to the "Engine benchmark" section of
benchmarks/RESULTS.md (the ingest benchmark's sections are kept as they are).
"""

from __future__ import annotations

import sys

# Python puts this script's directory first on sys.path, where benchmarks/email.py would
# shadow the standard library's email package (which importlib.metadata needs).
if sys.path and sys.path[0] and __file__.startswith(sys.path[0].rstrip("/") + "/"):
    sys.path.pop(0)

import argparse
import os
import asyncio
import gc
import json
import random
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "src"))  # when nudgeflow is not installed


# The repository root on the path (not benchmarks/, where email.py would shadow the
# standard library's `email`): the scripts share benchmarks/ingest.py as a package module.
sys.path.insert(0, str(ROOT))
from benchmarks import ingest as ingest_bench  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
EXAMPLES = ROOT / "examples" / "journeys"

console = Console(width=None if sys.stdout.isatty() else 130)


# -- the generated events -------------------------------------------------------------------

WEB, IOS, ANDROID = "web", "ios", "android"
STORES = ((40.7411, -73.9897), (40.7033, -73.9881))  # push-near-store.yaml's places
PLANS = ("free", "free", "free", "pro", "pro", "business")

# A shop's products and where its customers live: kept here, so that the workload stays
# the same while the demo's own generator changes.
@dataclass(frozen=True)
class Product:
    product_id: str
    sku: str
    name: str
    category: str
    brand: str
    price: float


PRODUCTS: tuple[Product, ...] = tuple(
    Product(f"prod_{i:03d}", f"{cat[:3].upper()}-{1000 + i}", name, cat, brand, price)
    for i, (name, cat, brand, price) in enumerate(
        [
            ("Trail Running Shoes", "Shoes", "Northpeak", 119.0), ("Everyday Sneakers", "Shoes", "Loop", 74.5),
            ("Leather Ankle Boots", "Shoes", "Harlow", 159.0), ("Merino Crew Sweater", "Apparel", "Fjell", 89.0),
            ("Organic Cotton Tee", "Apparel", "Loop", 24.0), ("Rain Shell Jacket", "Apparel", "Northpeak", 139.0),
            ("Slim Chinos", "Apparel", "Harlow", 59.9), ("Canvas Backpack", "Bags", "Fjell", 79.0),
            ("Weekender Duffel", "Bags", "Harlow", 129.0), ("Insulated Bottle", "Outdoor", "Northpeak", 29.0),
            ("Ultralight Tent", "Outdoor", "Northpeak", 349.0), ("Camping Stove", "Outdoor", "Ember", 64.0),
            ("Wireless Earbuds", "Electronics", "Pulse", 99.0), ("Smart Watch", "Electronics", "Pulse", 249.0),
            ("Portable Speaker", "Electronics", "Pulse", 59.0), ("Ceramic Pour-Over Set", "Home", "Ember", 42.0),
            ("Linen Duvet Cover", "Home", "Fjell", 119.0), ("Scented Candle Trio", "Home", "Ember", 32.0),
            ("Yoga Mat", "Fitness", "Loop", 38.0), ("Adjustable Dumbbells", "Fitness", "Pulse", 199.0),
        ]
    )
)
PLACES = (  # (timezone, locale, country)
    ("America/New_York", "en-US", "US"), ("America/Los_Angeles", "en-US", "US"), ("America/Chicago", "en-US", "US"),
    ("Europe/London", "en-GB", "GB"), ("Europe/Paris", "fr-FR", "FR"), ("Europe/Berlin", "de-DE", "DE"),
    ("Europe/Madrid", "es-ES", "ES"), ("Asia/Tokyo", "ja-JP", "JP"), ("Australia/Sydney", "en-AU", "AU"),
    ("America/Sao_Paulo", "pt-BR", "BR"),
)
FIRST_NAMES = ("Ada", "Ben", "Chloé", "Dmitri", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Lucas")
LAST_NAMES = ("Andersen", "Bakker", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Hoffmann", "Ito", "Jensen")

# (what, weight): what a person does next. Mobile-only actions fall back to a page view on
# the web; actions that need a cart or an order fall back to a product view.
ACTIONS = (
    ("viewed", 30.0),
    ("added", 9.0),
    ("cart_viewed", 3.0),
    ("checkout", 3.0),
    ("ordered", 3.0),
    ("delivered", 1.5),
    ("opened", 10.0),
    ("look", 14.0),
    ("identify", 6.0),
    ("signed_up", 2.0),
    ("level", 3.0),
    ("wishlist", 2.0),
    ("upgraded", 0.5),
    ("email_opened", 2.0),
    ("searched", 3.0),
)


@dataclass
class Person:
    index: int
    profile_id: str
    user_id: str
    anonymous_id: str
    platform: str
    context: dict[str, Any]
    traits: dict[str, Any]
    signed_up: bool = False
    cart_id: str | None = None
    cart: dict[str, int] = field(default_factory=dict)
    undelivered: list[str] = field(default_factory=list)
    orders: int = 0
    level: int = 0
    viewed: str | None = None


@dataclass
class Workload:
    """Generated Segment messages, each as the row the events table stores and as sent."""

    rows: list[tuple[Any, ...]]  # (workspace, message_id, profile, type, event, user, anon, ts, received, payload)
    sent: list[tuple[str, bytes]]  # (HTTP path, body) as a client sends each message
    profiles: list[tuple[str, str, str]]  # (profile id, user id, traits JSON)
    identities: list[tuple[str, str]]  # (identity key, profile id)
    counts: dict[str, int]
    payload_bytes: float


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


@lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    return datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")


def _iso(ms: int) -> str:
    return f"{_iso_second(ms // 1000)}{ms % 1000:03d}Z"


def _people(count: int, rng: random.Random, created_ms: int) -> list[Person]:
    people = []
    for i in range(count):
        platform = rng.choices((WEB, IOS, ANDROID), weights=(5, 3, 2))[0]
        tz, locale, country = rng.choice(PLACES)
        if platform == WEB:
            context: dict[str, Any] = {
                "library": {"name": "analytics.js", "version": "5.2.0"},
                "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15",
                "locale": locale,
                "timezone": tz,
                "ip": f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            }
        else:
            ios = platform == IOS
            context = {
                "library": {"name": "analytics-ios" if ios else "analytics-android", "version": "4.1.8"},
                "app": {"name": "Nudgeshop", "version": "3.4.1", "build": "341", "namespace": "com.nudgeshop.app"},
                "device": {"type": platform, "manufacturer": "Apple" if ios else "Google", "model": "iPhone15,2" if ios else "Pixel 8"},
                "os": {"name": "iOS" if ios else "Android", "version": "17.4" if ios else "14"},
                "locale": locale,
                "timezone": tz,
                "network": {"wifi": rng.random() < 0.6, "cellular": True},
            }
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        traits = {
            "email": f"customer{i}@example.com",
            "first_name": first,
            "last_name": last,
            "plan": rng.choice(PLANS),
            "timezone": tz,
            "locale": locale,
            "address": {"country": country},
            "created_at": _iso(created_ms - rng.randrange(400 * 86_400_000)),
        }
        people.append(
            Person(
                index=i,
                profile_id="prf_" + uuid.uuid5(uuid.NAMESPACE_OID, f"bench-{i}").hex[:24],
                user_id=f"user_{i:07d}",
                anonymous_id=_uuid(rng),
                platform=platform,
                context=context,
                traits=traits,
            )
        )
    return people


def _product_props(product: Any) -> dict[str, Any]:
    return {
        "product_id": product.product_id,
        "sku": product.sku,
        "name": product.name,
        "category": product.category,
        "brand": product.brand,
        "price": product.price,
        "currency": "USD",
        "url": f"https://shop.example.com/p/{product.product_id}",
        "image_url": f"https://cdn.shop.example.com/{product.sku}.jpg",
    }


def _location(rng: random.Random) -> dict[str, float]:
    if rng.random() < 0.15:  # near a store (within ~150 m)
        lat, lon = rng.choice(STORES)
        return {"latitude": lat + rng.uniform(-0.001, 0.001), "longitude": lon + rng.uniform(-0.001, 0.001)}
    return {"latitude": rng.uniform(40.55, 40.90), "longitude": rng.uniform(-74.10, -73.75)}


def next_message(p: Person, rng: random.Random, products: list[Any], action: str, first: bool = False) -> tuple[str, dict[str, Any]]:
    """One Segment message `p` sends next, as (type, fields besides ids, time and context)."""
    mobile = p.platform != WEB
    if action in ("opened", "level") and not mobile:
        action = "look"
    if action in ("checkout", "ordered", "cart_viewed") and not p.cart:
        action = "viewed"
    if action == "delivered" and not p.undelivered:
        action = "viewed"
    if action == "signed_up" and p.signed_up:
        action = "identify"
    if action == "viewed":
        pool = [x for x in products if p.viewed and x.category == p.viewed] if rng.random() < 0.6 else []
        product = rng.choice(pool or products)
        p.viewed = product.category
        props = _product_props(product)
        props["position"] = rng.randint(1, 24)
        return "track", {"event": "Product Viewed", "properties": props}
    if action == "added":
        if p.cart_id is None:
            p.cart_id = _uuid(rng)
        product = rng.choice(products)
        quantity = rng.choices((1, 2, 3), weights=(8, 2, 1))[0]
        p.cart[product.product_id] = p.cart.get(product.product_id, 0) + quantity
        props = _product_props(product)
        props.update(cart_id=p.cart_id, quantity=quantity)
        return "track", {"event": "Product Added", "properties": props}
    if action in ("cart_viewed", "checkout", "ordered"):
        by_id = {x.product_id: x for x in products}
        items = [
            {"product_id": pid, "sku": by_id[pid].sku, "name": by_id[pid].name, "price": by_id[pid].price, "quantity": q}
            for pid, q in p.cart.items()
        ]
        subtotal = round(sum(by_id[pid].price * q for pid, q in p.cart.items()), 2)
        if action == "cart_viewed":
            return "track", {"event": "Cart Viewed", "properties": {"cart_id": p.cart_id, "products": items}}
        p.orders += 1
        order_id = f"ord_{p.index}_{p.orders}"
        props = {
            "checkout_id": f"chk_{p.index}_{p.orders}",
            "order_id": order_id,
            "cart_id": p.cart_id,
            "affiliation": "Nudgeshop",
            "revenue": subtotal,
            "shipping": 0.0 if subtotal >= 100 else 6.95,
            "tax": round(subtotal * 0.08, 2),
            "currency": "USD",
            "products": items,
        }
        if action == "checkout":
            p.orders -= 1
            return "track", {"event": "Checkout Started", "properties": props}
        p.cart, p.cart_id = {}, None
        p.undelivered.append(order_id)
        return "track", {"event": "Order Completed", "properties": {**props, "subtotal": subtotal, "total": round(subtotal * 1.08, 2)}}
    if action == "delivered":
        return "track", {"event": "Order Delivered", "properties": {"order_id": p.undelivered.pop(0), "carrier": "UPS"}}
    if action == "opened":
        return "track", {"event": "Application Opened", "properties": {"from_background": rng.random() < 0.5, "version": "3.4.1", "build": "341"}}
    if action == "look":
        if mobile:
            return "screen", {"name": rng.choice(("Home", "Search", "Wishlist", "Account"))}
        title, path = rng.choice((("Home", "/"), ("New Arrivals", "/new"), ("Sale", "/sale"), ("About", "/about")))
        return "page", {"name": title, "properties": {"path": path, "url": "https://shop.example.com" + path, "title": f"{title} | Nudgeshop", "referrer": ""}}
    if action in ("identify", "signed_up", "upgraded"):
        if action == "signed_up":
            p.signed_up = True
            return "track", {"event": "Signed Up", "properties": {"method": rng.choice(("email", "google", "apple")), "plan": p.traits["plan"]}}
        if action == "upgraded":
            p.traits["plan"] = "pro"
            return "track", {"event": "Subscription Upgraded", "properties": {"plan": "pro", "revenue": 12.0, "currency": "USD"}}
        if not first and rng.random() < 0.15:  # a plan change: paid to free or cancelled, or free to paid
            p.traits["plan"] = rng.choice(("free", "cancelled")) if p.traits["plan"] in ("pro", "business") else "pro"
        p.traits["logins"] = p.traits.get("logins", 0) + 1
        return "identify", {"traits": dict(p.traits)}
    if action == "level":
        p.level += 1
        return "track", {"event": "Level Completed", "properties": {"level": p.level, "score": rng.randrange(100, 5000)}}
    if action == "wishlist":
        product = rng.choice(products)
        return "track", {"event": "Product Added to Wishlist", "properties": {**_product_props(product), "wishlist_id": f"wl_{p.index}"}}
    if action == "email_opened":
        key = f"run_{rng.getrandbits(96):024x}:welcome:1"
        return "track", {"event": "Email Opened", "properties": {"message_key": key, "email_subject": "Welcome!"}}
    return "track", {"event": "Products Searched", "properties": {"query": rng.choice(("shoes", "tent", "earbuds", "mug"))}}


PATHS = {"track": "/v1/track", "identify": "/v1/identify", "page": "/v1/page", "screen": "/v1/screen"}


def generate(
    profiles: int, events: int, seed: int, start_ms: int, end_ms: int, workspace_id: str, *, rows: bool = True, sent: bool = True
) -> Workload:
    """`events` messages from `profiles` people between start_ms and end_ms, in time order:
    as stored rows (for the database) and/or as request bodies (for the server)."""
    rng = random.Random(seed)
    people = _people(profiles, rng, start_ms)
    products = list(PRODUCTS)
    actions = [a for a, _ in ACTIONS]
    weights = [w for _, w in ACTIONS]
    # Everyone sends at least one message (so every profile exists), the rest go to anyone,
    # all in random order.
    picks = list(range(min(profiles, events))) + [rng.randrange(profiles) for _ in range(max(0, events - profiles))]
    rng.shuffle(picks)
    seen = bytearray(profiles)
    chosen = rng.choices(actions, weights=weights, k=events)
    span = max(1, end_ms - start_ms)
    out_rows: list[tuple[Any, ...]] = []
    out_sent: list[tuple[str, bytes]] = []
    counts: dict[str, int] = {}
    total_bytes = 0
    dumps = orjson.dumps
    for n in range(events):
        p = people[picks[n]]
        # Everyone's first message is an identify (an app launch, a login): the engine learns
        # the traits its entry filters look at (an email to write to) from the event stream.
        first = not seen[p.index]
        seen[p.index] = 1
        type_, fields = next_message(p, rng, products, "identify" if first else chosen[n], first=first)
        ts = start_ms + n * span // events
        context = p.context
        if p.platform != WEB and rng.random() < 0.3:
            context = {**context, "location": _location(rng)}
        message: dict[str, Any] = {
            "type": type_,
            "messageId": _uuid(rng),
            "userId": p.user_id,
            "anonymousId": p.anonymous_id,
            "timestamp": _iso(ts),
            **fields,
            "context": context,
        }
        sent_at = ts + 40 + rng.randrange(200)
        message["sentAt"] = _iso(sent_at)
        if sent:
            out_sent.append((PATHS[type_], dumps(message)))
        received = sent_at + 5
        # As ingest stores it: the original timestamp kept, receivedAt added (here clocks agree).
        stored = {**message, "originalTimestamp": message["timestamp"], "receivedAt": _iso(received)}
        payload = dumps(stored).decode()
        total_bytes += len(payload)
        counts[fields.get("event") or type_] = counts.get(fields.get("event") or type_, 0) + 1
        if rows:
            name = fields.get("event") if type_ == "track" else fields.get("name")
            out_rows.append((workspace_id, message["messageId"], p.profile_id, type_, name, p.user_id, p.anonymous_id, ts, received, payload))
    profile_rows = [(p.profile_id, p.user_id, dumps(p.traits).decode()) for p in people]
    identities = [(f"u:{p.user_id}", p.profile_id) for p in people] + [(f"a:{p.anonymous_id}", p.profile_id) for p in people]
    return Workload(out_rows, out_sent, profile_rows, identities, counts, total_bytes / max(1, events))


# -- a nudgeflow database with the example journeys live --------------------------------------

def new_database(path: Path) -> tuple[Any, str, str]:
    """A migrated nudgeflow SQLite database with one workspace and every example journey
    published; returns (SQLAlchemy engine, workspace id, write key)."""
    from nudgeflow.store import database

    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    db = database.create_db_engine(f"sqlite:///{path}")  # synchronous=FULL, as serve
    database.upgrade(db)
    workspace_id, write_key = publish_examples(db)
    return db, workspace_id, write_key


def publish_examples(db: Any) -> tuple[str, str]:
    """A workspace in the migrated database `db` (SQLite or PostgreSQL) with every example
    journey published; returns (workspace id, write key)."""
    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.runtime.replay import load_journeys
    from nudgeflow.store.workspaces import create_workspace

    now_ms = to_ms(SystemClock().now())
    with db.begin() as conn:
        created = create_workspace(conn, "benchmark", now_ms)
    publish_journeys(db, created.workspace_id, load_journeys([EXAMPLES]))
    return created.workspace_id, created.write_key


def publish_journeys(db: Any, workspace_id: str, journeys: list[Any]) -> None:
    """Publish `journeys` (model Journeys) in the workspace, without a backfill."""
    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.store.journeys import apply_draft, publish

    now_ms = to_ms(SystemClock().now())
    with db.begin() as conn:
        for journey in journeys:
            apply_draft(conn, workspace_id, journey, now_ms)
            # Before any event exists: nothing to look back on (and the latency phase's server
            # must not spend its time on a backfill).
            publish(conn, workspace_id, journey.id, now_ms, backfill=False)


# Countries of PLACES, for the copies' entry filters (a journey per market).
COUNTRIES = tuple(dict.fromkeys(country for _, _, country in PLACES))


def _longer(text: str, n: int) -> str:
    """A duration ("4h", "7d") made n units longer: each copy waits a little differently."""
    number, unit = text[:-1], text[-1]
    return f"{int(number) + n}{unit}"


def journey_variants(count: int) -> list[Any]:
    """`count` live journeys made from the example kinds of examples/journeys: the examples
    themselves first, then copies of each in turn, each with its own id and name, its trigger
    varied (longer windows and waits, more occurrences, a wider geofence, a later level, a
    dearer cart, other plans) and an entry filter on one market (the person's country), as
    a team that runs a journey per market would. Every copy is checked as `journeys
    validate` checks a file."""
    import yaml

    from nudgeflow.model.journey_checks import ERROR, check_journey

    examples = [yaml.safe_load(path.read_text(encoding="utf-8")) for path in sorted(EXAMPLES.glob("*.yaml"))]
    out: list[Any] = []
    for i in range(count):
        doc = json.loads(json.dumps(examples[i % len(examples)]))  # a deep copy
        n = i // len(examples)
        if n:
            doc["id"] = f"{doc['id']}-{n}"
            doc["name"] = f"{doc['name']} ({COUNTRIES[n % len(COUNTRIES)]} #{n})"
            trigger = doc["trigger"]
            kind = trigger["type"]
            if kind == "event_not_followed":
                trigger["not_followed_by"]["within"] = _longer(trigger["not_followed_by"]["within"], n)
                if "occurrences" in trigger:
                    trigger["occurrences"]["count"] += n % 3
                    trigger["occurrences"]["within"] = _longer(trigger["occurrences"]["within"], n)
                if trigger["event"] == "Product Added":
                    trigger["where"] = [{"property": "price", "op": "gte", "value": 10 * n}]
            elif kind == "inactivity":
                trigger["window"] = _longer(trigger["window"], n)
            elif kind == "location":
                trigger["radius_m"] += 50 * n
            elif kind == "milestone":
                trigger["streak"]["days"] += n
            elif kind == "attribute_change":
                trigger["from"] = [("pro", "business")[n % 2]]
            elif kind == "event" and trigger["event"] == "Level Completed":
                trigger["where"] = [{"property": "level", "op": "gte", "value": 1 + n}]
            elif kind == "event" and trigger["event"] == "Order Completed":
                trigger["where"] = [{"property": "revenue", "op": "gte", "value": 25 * n}]
            entry = doc.setdefault("entry", {})
            market = {"trait": "address.country", "op": "eq", "value": COUNTRIES[n % len(COUNTRIES)]}
            entry["filter"] = [*(entry.get("filter") or []), market]
        journey, problems = check_journey(doc)
        errors = [p for p in problems if p.severity == ERROR]
        if journey is None or errors:
            raise SystemExit(f"journey variant {doc['id']}: " + "; ".join(p.message for p in errors))
        out.append(journey)
    return out


def raw_connection(path: Path) -> sqlite3.Connection:
    """sqlite3 on the nudgeflow file with the settings L is measured with (see ingest.py)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for pragma in ingest_bench.sqlite_tuning():
        conn.execute(pragma)
    return conn


EARLY_ROWS = 200_000  # benchmarks/ingest.py measures L on a table of this size


def load_events(path: Path, work: Workload, workspace_id: str, advance: Callable[[int], None]) -> tuple[float, float]:
    """L: the events inserted into the events table in 1,000-row transactions; rows/s over
    all of them, and over the first 200,000 (or fifth) of them, as the table fills.

    Profiles and identities (which the engine does not read) are written afterwards,
    outside the measured time, so that the database looks like one ingest filled.
    """
    conn = raw_connection(path)
    early_rows = min(EARLY_ROWS, max(1000, len(work.rows) // 5 // 1000 * 1000))
    early = 0.0
    start = time.perf_counter()
    for offset in range(0, len(work.rows), 1000):
        chunk = work.rows[offset : offset + 1000]
        conn.execute("BEGIN")
        conn.executemany(ingest_bench.INSERT_ROW, chunk)
        conn.execute("COMMIT")
        advance(len(chunk))
        if offset + len(chunk) == early_rows:
            early = early_rows / (time.perf_counter() - start)
    elapsed = time.perf_counter() - start
    now_ms = int(time.time() * 1000)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO profiles (id, workspace_id, user_id, traits, trait_errors, created_at_ms, updated_at_ms) VALUES (?, ?, ?, ?, NULL, ?, ?)",
        [(pid, workspace_id, uid, traits, now_ms, now_ms) for pid, uid, traits in work.profiles],
    )
    conn.executemany(
        "INSERT INTO identities (workspace_id, key, profile_id, created_at_ms) VALUES (?, ?, ?, ?)",
        [(workspace_id, key, pid, now_ms) for key, pid in work.identities],
    )
    conn.execute("COMMIT")
    stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    if stored != len(work.rows):
        raise SystemExit(f"stored {stored} of {len(work.rows)} events")
    return len(work.rows) / elapsed, early or len(work.rows) / elapsed


# -- phase 2: engine throughput ---------------------------------------------------------------

@dataclass
class EngineFigures:
    events: int = 0
    profiles: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    batch: int = 0
    batches: int = 0
    messages_queued: int = 0
    messages_failed: int = 0
    timers_armed: int = 0
    runs: int = 0
    states: int = 0
    errors: int = 0
    cpu: float = 0.0  # cores busy in this process during the run
    by_journey: dict[str, int] = field(default_factory=dict)
    decided: int = 0  # events decided: `events`, and any the engine appended itself
    journeys: int = 0  # live journeys
    # CPU of the writer thread per event, in microseconds: everything the engine does for an
    # event (read it, load the person's state, decide, write, commit), another process's load
    # not included.
    writer_us: float = 0.0


def run_engine(
    db: Any, total: int, batch: int, advance: Callable[[int], None], appended: bool = False, count_rollups: bool = True
) -> EngineFigures:
    """Decide the `total` events of the log, batch after batch, until none is left. With
    `appended`, the engine may append events of its own as it goes (Segment Entered /
    Exited): they are decided too, and the rate is still `total` over the whole time.
    `count_rollups=False` leaves the report rollups uncounted (the rollups phase only)."""
    from nudgeflow.core.clock import SystemClock
    from nudgeflow.runtime.embedded import WriterRunner
    from nudgeflow.runtime.heap import settle_heap
    from nudgeflow.runtime.processor import EngineCache, RuntimeStats, process_events
    from nudgeflow.store.group_commit import GroupCommitter

    clock = SystemClock()
    # As `nudgeflow serve` sets the process before it serves: the loaded heap frozen, the
    # collector's thresholds raised (runtime/heap.py). Put back afterwards for the phases
    # that measure something else in this process.
    thresholds = settle_heap()
    writer = GroupCommitter(db, clock)  # its WAL checkpointer thread beside it, as in serve
    writer.start()
    runner = WriterRunner(writer)
    engines = EngineCache()
    stats = RuntimeStats()
    figures = EngineFigures(events=total, batch=batch)
    cpu0 = time.process_time()
    start = time.perf_counter()
    try:
        # The writer thread's own CPU clock, read in the thread by a job before and after.
        writer0 = runner.call(lambda conn: time.thread_time())
        while True:
            done = runner.call(
                lambda conn: process_events(conn, engines, clock, batch, stats, count_rollups=count_rollups)
            )
            if done == 0:
                break
            figures.batches += 1
            advance(done)
        figures.seconds = time.perf_counter() - start
        figures.cpu = (time.process_time() - cpu0) / figures.seconds
        figures.writer_us = (runner.call(lambda conn: time.thread_time()) - writer0) * 1e6 / total
    finally:
        writer.stop()
        gc.set_threshold(*thresholds)
    if stats.events_processed != total and not (appended and stats.events_processed > total):
        raise SystemExit(f"the engine decided {stats.events_processed} events of {total}")
    figures.decided = stats.events_processed
    figures.rate = total / figures.seconds
    figures.messages_queued = stats.messages_queued
    figures.messages_failed = stats.messages_failed_at_decision
    figures.errors = stats.event_errors + stats.catalog_errors
    with db.connect() as conn:
        q = lambda sql: int(conn.exec_driver_sql(sql).scalar_one())  # noqa: E731
        figures.timers_armed = q("SELECT count(*) FROM timers")
        figures.runs = q("SELECT count(*) FROM journey_runs")
        figures.states = q("SELECT count(*) FROM profile_state")
        figures.by_journey = {jid: int(n) for jid, n in conn.exec_driver_sql("SELECT journey_id, count(*) FROM outbox GROUP BY journey_id ORDER BY 2 DESC")}
        figures.journeys = q("SELECT count(*) FROM journeys WHERE status = 'live'")
    return figures


# -- phase 3: trigger matching alone ------------------------------------------------------------

NOUNS = ("Product", "Video", "Article", "Coupon", "Cart", "Order", "Level", "Playlist", "Course", "Ticket")
VERBS = ("Viewed", "Added", "Removed", "Shared", "Started", "Completed", "Rated", "Searched", "Saved", "Opened")
CATEGORIES = ("Shoes", "Apparel", "Bags", "Outdoor", "Electronics", "Home", "Fitness", "Books")
TAGS = ("new", "sale", "gift", "eco", "premium", "bundle", "limited", "clearance")
OPERATOR_FILTERS: tuple[Callable[[random.Random], dict[str, Any]], ...] = (
    lambda r: {"property": "category", "op": "eq", "value": r.choice(CATEGORIES)},
    lambda r: {"property": "category", "op": "ne", "value": r.choice(CATEGORIES)},
    lambda r: {"property": "category", "op": "in", "value": r.sample(CATEGORIES, 3)},
    lambda r: {"property": "plan", "op": "not_in", "value": ["free", "trial"]},
    lambda r: {"property": "price", "op": "gt", "value": r.choice((20, 50, 100, 200))},
    lambda r: {"property": "price", "op": "gte", "value": r.choice((10, 30, 75))},
    lambda r: {"property": "quantity", "op": "lt", "value": r.choice((2, 3, 5))},
    lambda r: {"property": "rating", "op": "lte", "value": r.choice((2, 3, 4))},
    lambda r: {"property": "coupon", "op": "exists"},
    lambda r: {"property": "referrer", "op": "not_exists"},
    lambda r: {"property": "tags", "op": "contains", "value": r.choice(TAGS)},
    lambda r: {"property": "title", "op": "not_contains", "value": r.choice(("Refurbished", "Used", "Sample"))},
)


def trigger_names(count: int = 100) -> list[str]:
    return [f"{noun} {verb}" for noun in NOUNS for verb in VERBS][:count]


def matching_catalog(journeys: int, names: list[str], seed: int) -> Any:
    """`journeys` live journeys, each an event trigger on one of `names` with 1 to 3 property
    filters; the operators go round all twelve, so each kind is as common as the others."""
    from nudgeflow.core.catalog import Catalog, JourneyVersion
    from nudgeflow.model.journeys import Journey

    rng = random.Random(seed)
    live = []
    for i in range(journeys):
        where = [OPERATOR_FILTERS[(i + k * 5) % len(OPERATOR_FILTERS)](rng) for k in range(1 + i % 3)]
        definition = Journey.model_validate(
            {
                "id": f"match-{i:04d}",
                "name": f"Matching {i}",
                "trigger": {"type": "event", "event": names[i % len(names)], "where": where},
                "steps": {"send": {"type": "send", "channel": "push", "template": f"t{i}"}},
            }
        )
        live.append(JourneyVersion(definition.id, 1, definition))
    return Catalog(live=live)


def matching_events(count: int, names: list[str], seed: int) -> list[Any]:
    """Events over the triggers' names (and one in ten over names no trigger listens to)."""
    from nudgeflow.core.inputs import EventInput

    rng = random.Random(seed)
    others = ("Page Viewed", "Screen Viewed", "Search Performed", "Notification Received")
    out = []
    for n in range(count):
        props: dict[str, Any] = {
            "category": rng.choice(CATEGORIES),
            "plan": rng.choice(("free", "pro", "trial", "business")),
            "price": round(rng.uniform(5, 300), 2),
            "quantity": rng.randint(1, 6),
            "rating": rng.randint(1, 5),
            "tags": rng.sample(TAGS, rng.randint(0, 3)),
            "title": rng.choice(("Trail Shoes", "Refurbished Phone", "Gift Card", "Yoga Mat", "Used Bike")),
            "sku": f"SKU-{rng.randrange(10_000)}",
        }
        if rng.random() < 0.3:
            props["coupon"] = "SPRING15"
        if rng.random() < 0.5:
            props["referrer"] = "https://www.google.com/"
        name = rng.choice(others) if rng.random() < 0.1 else rng.choice(names)
        out.append(EventInput(f"m{n}", "track", name, 1_700_000_000_000 + n, props))
    return out


@dataclass
class MatchFigures:
    journeys: int = 0
    names: int = 0
    events: int = 0
    passes: int = 0
    indexed_rate: float = 0.0  # the best pass, wall clock
    indexed_median_rate: float = 0.0  # the median pass
    indexed_cpu_rate: float = 0.0  # the best pass, per CPU second of this (single-threaded) process
    naive_rate: float = 0.0  # the best pass
    matches: int = 0
    candidates_per_event: float = 0.0


def run_matching(journeys: int, events: int, seed: int, passes: int, advance: Callable[[int], None]) -> MatchFigures:
    """The trigger index and filters of the core (catalog.candidates, then each candidate's
    name and `where` test as the engine applies it), and a naive scan for contrast."""
    from nudgeflow.core import triggers
    from nudgeflow.core.state import ProfileState
    from nudgeflow.core.turn import Turn

    names = trigger_names()
    catalog = matching_catalog(journeys, names, seed)
    inputs = matching_events(events, names, seed + 1)
    everything = list(catalog.live.values())
    turn = Turn(ProfileState("prf_matching"), catalog, 1_800_000_000_000)
    matches = triggers._matches
    figures = MatchFigures(journeys=journeys, names=len(names), events=events)

    def indexed(chunk: list[Any]) -> tuple[int, int]:
        found = looked = 0
        candidates = catalog.for_event  # as the engine looks them up
        for event in chunk:
            for jv in candidates(event.name, event.type == "identify", event.properties):
                looked += 1
                trigger = jv.definition.trigger
                if matches(turn, event, trigger.event, trigger.where):
                    found += 1
        return found, looked

    def naive(chunk: list[Any]) -> int:
        found = 0
        for event in chunk:
            for jv in everything:
                trigger = jv.definition.trigger
                if matches(turn, event, trigger.event, trigger.where):
                    found += 1
        return found

    step = max(1, events // 50)
    indexed(inputs[:step])  # compiles each trigger's filters, as the engine's first events do
    # Several passes over the same events; the best pass is the figure (as timeit takes the
    # best of its repeats: a slower pass measured the machine's other work, not this code).
    walls, cpus = [], []
    total = looked = 0
    for _ in range(passes):
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        total = looked = 0
        for offset in range(0, events, step):
            found, seen = indexed(inputs[offset : offset + step])
            total += found
            looked += seen
            advance(len(inputs[offset : offset + step]))
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    best = min(range(passes), key=lambda i: walls[i])
    figures.passes = passes
    figures.indexed_rate = events / walls[best]
    figures.indexed_median_rate = events / sorted(walls)[passes // 2]
    figures.indexed_cpu_rate = events / cpus[best]
    figures.matches = total
    figures.candidates_per_event = looked / events
    # The naive scan is some 30 times slower: a twentieth of the events is enough to time it.
    sample = inputs[: max(1, events // 20)]
    naive_walls = []
    naive_total = 0
    for _ in range(min(passes, 2)):
        start = time.perf_counter()
        naive_total = 0
        for offset in range(0, len(sample), step):
            naive_total += naive(sample[offset : offset + step])
            advance(len(sample[offset : offset + step]))
        naive_walls.append(time.perf_counter() - start)
    figures.naive_rate = len(sample) / min(naive_walls)
    expected, _ = indexed(sample)
    if naive_total != expected:
        raise SystemExit(f"the index found {expected} matches where a scan of every trigger found {naive_total}")
    return figures


# -- phase 4: a million pending timers -------------------------------------------------------

@dataclass
class TimerTemplate:
    """One person's state, timer and run row as the core leaves them when a cart-abandonment
    run has sent its first reminder and waits 23 hours; ids are replaced per person."""

    state: str
    timer_key: str
    timer_payload: str
    run_row: tuple[Any, ...]
    run_id: str
    message_id: str
    cart_id: str


def timer_template(workspace_id: str, now_ms: int) -> TimerTemplate:
    from nudgeflow.core.catalog import Catalog, JourneyVersion
    from nudgeflow.core.effects import RunChanged, ScheduleTimer
    from nudgeflow.core.engine import Engine
    from nudgeflow.core.inputs import EventInput, TimerInput
    from nudgeflow.core.state import ProfileState
    from nudgeflow.runtime.replay import load_journeys

    catalog = Catalog(live=[JourneyVersion(j.id, 1, j) for j in load_journeys([EXAMPLES])])
    engine = Engine(catalog)
    added_at = now_ms - 2 * 3_600_000
    for n in range(100):  # the first sample person outside the journey's 10 % holdout
        pid = f"prf_sample{n:015d}"
        state = ProfileState(pid)
        traits = {"email": "sample@example.com", "first_name": "Ada", "plan": "free", "timezone": "Europe/Paris"}
        engine.on_event(state, EventInput("msg-identify", "identify", None, added_at - 60_000, traits=traits), added_at - 60_000)
        props = {**_product_props(PRODUCTS[3]), "cart_id": "cart-sample-0000000000000000", "quantity": 1}
        event = EventInput("msg-sample-00000000000000000000000", "track", "Product Added", added_at, props)
        watch = next(e for e in engine.on_event(state, event, added_at) if isinstance(e, ScheduleTimer))
        effects = engine.on_timer(state, TimerInput(watch.key, watch.due_ms, watch.payload), watch.due_ms)
        waits = [e for e in effects if isinstance(e, ScheduleTimer) and e.payload.get("step") == "wait-23h"]
        if waits:
            break
    else:
        raise SystemExit("no sample person entered cart-abandonment")
    run = next(e.run for e in effects if isinstance(e, RunChanged))
    row = (run["id"], workspace_id, run["journey_id"], run["version"], "", run["status"], run["step"], int(run["holdout"]),
           run["entered_at_ms"], run["ended_at_ms"], run["exit_reason"], run["converted_at_ms"], run["revenue"], now_ms)
    return TimerTemplate(
        state=state.to_json().decode(),
        timer_key=waits[0].key,
        timer_payload=orjson.dumps(waits[0].payload).decode(),
        run_row=row,
        run_id=run["id"],
        message_id=event.message_id,
        cart_id=props["cart_id"],
    )


def add_due_timers(path: Path, template: TimerTemplate, workspace_id: str, first: int, count: int, advance: Callable[[int], None]) -> int:
    """`count` more people waiting in the template's wait, their timers all due; returns how
    many timers the table holds. Setup, not measured: bulk, synchronous=OFF."""
    from nudgeflow.core.steps import run_id_for
    from nudgeflow.core.turn import unit_hash
    from nudgeflow.model.partitions import partition_of

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    now_ms = int(time.time() * 1000)
    made = 0
    index = first
    chunk = 20_000
    while made < count:
        states, timers, runs = [], [], []
        while len(states) < min(chunk, count - made):
            index += 1
            pid = "prf_" + uuid.uuid5(uuid.NAMESPACE_OID, f"timer-{index}").hex[:24]
            if unit_hash("holdout", "cart-abandonment", pid) < 0.1:
                continue  # the core would have held this person out: no run, no timer
            # Due over the last minute, oldest first: what an outage or a campaign leaves.
            due = now_ms - 60_000 + (made + len(states) + 1) * 60_000 // max(1, count)
            # The run entered a day before its 23-hour wait ends (its id starts with that time).
            run_id = run_id_for(pid, 1, due - 24 * 3_600_000)
            message_id = f"msg-{index:029d}"
            cart_id = f"cart-{index:023d}"
            state = template.state.replace(template.run_id, run_id).replace(template.message_id, message_id).replace(template.cart_id, cart_id)
            states.append((pid, workspace_id, state, now_ms))
            timers.append((pid, template.timer_key.replace(template.run_id, run_id), workspace_id, due, template.timer_payload.replace(template.run_id, run_id), partition_of(workspace_id, pid)))
            runs.append((run_id, *template.run_row[1:4], pid, *template.run_row[5:]))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO profile_state (profile_id, workspace_id, state, updated_at_ms) VALUES (?, ?, ?, ?)", states)
        conn.executemany('INSERT INTO timers (profile_id, "key", workspace_id, due_at_ms, payload, partition) VALUES (?, ?, ?, ?, ?, ?)', timers)
        conn.executemany(
            "INSERT INTO journey_runs (id, workspace_id, journey_id, version, profile_id, status, step, holdout, entered_at_ms,"
            " ended_at_ms, exit_reason, converted_at_ms, revenue, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            runs,
        )
        conn.execute("COMMIT")
        made += len(states)
        advance(len(states))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return index


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fire_timers_phase(path: str, batch: int) -> None:
    """In a process of its own: fire every due timer, as the engine loop of `serve` does;
    prints progress lines, then one JSON object with the figures."""
    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.runtime.embedded import WriterRunner
    from nudgeflow.runtime.processor import EngineCache, RuntimeStats, fire_timers
    from nudgeflow.store import database
    from nudgeflow.store.group_commit import GroupCommitter

    gc.collect()
    rss_start = _rss_mb()  # the code loaded, before any page of the database is
    db = database.create_db_engine(f"sqlite:///{path}")
    clock = SystemClock()
    with db.connect() as conn:
        pending = int(conn.exec_driver_sql("SELECT count(*) FROM timers").scalar_one())
        due = int(conn.exec_driver_sql("SELECT count(*) FROM timers WHERE due_at_ms <= ?", (to_ms(clock.now()),)).scalar_one())
    writer = GroupCommitter(db, clock)
    writer.start()
    runner = WriterRunner(writer)
    engines = EngineCache()
    stats = RuntimeStats()
    # As `nudgeflow serve` does before it serves (cli.py): the heap loaded at start is
    # frozen, so the collector's full passes do not walk it again and again while each
    # batch allocates its thousands of state objects (without it: ~30 % slower here).
    gc.collect()
    gc.freeze()
    peak = rss_start
    blocks_start = blocks_peak = sys.getallocatedblocks()  # Python objects alive: where in-memory timers would show
    fired = 0
    # The firing thread's own CPU, its commits included: on a shared machine the figure to
    # compare two versions by (the wall clock's rate carries the neighbours' load).
    thread0 = runner.call(lambda conn: time.thread_time())
    last = start = time.perf_counter()
    cpu0 = time.process_time()
    while True:
        done = runner.call(lambda conn: fire_timers(conn, engines, clock, batch, stats))
        if done == 0:
            break
        fired += done
        peak = max(peak, _rss_mb())
        blocks_peak = max(blocks_peak, sys.getallocatedblocks())
        if time.perf_counter() - last > 0.25:
            last = time.perf_counter()
            print(json.dumps({"fired": fired}), flush=True)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    thread_cpu = runner.call(lambda conn: time.thread_time()) - thread0
    writer.stop()
    with db.connect() as conn:
        after = int(conn.exec_driver_sql("SELECT count(*) FROM timers").scalar_one())
    db.dispose()
    print(json.dumps({
        "pending": pending, "due": due, "fired": fired, "seconds": seconds, "rate": fired / seconds if seconds else 0.0,
        "cpu": cpu / seconds if seconds else 0.0, "rss_start_mb": rss_start, "rss_peak_mb": peak, "rss_end_mb": _rss_mb(),
        "pending_after": after, "messages_queued": stats.messages_queued, "errors": stats.timer_errors + stats.catalog_errors,
        "blocks_start": blocks_start, "blocks_peak": blocks_peak,
        "thread_cpu_us": thread_cpu / fired * 1e6 if fired else 0.0,
    }), flush=True)


@dataclass
class TimerRound:
    pending: int  # timers in the table when the round started (due and not yet due)
    due: int
    fired: int
    seconds: float
    rate: float
    cpu: float
    rss_start_mb: float
    rss_peak_mb: float
    rss_end_mb: float
    pending_after: int
    messages_queued: int
    errors: int
    blocks_start: int = 0
    blocks_peak: int = 0
    build_seconds: float = 0.0
    thread_cpu_us: float = 0.0  # the firing thread's CPU per timer fired, commits included


def run_timers(directory: Path, sizes: list[int], batch: int, progress: Progress) -> list[TimerRound]:
    """Rounds of: top the table up to `size` due timers (plus what earlier rounds left
    pending), then fire every due timer in a fresh process."""
    path = directory / "timers.db"
    db, workspace_id, _ = new_database(path)
    db.dispose()
    template = timer_template(workspace_id, int(time.time() * 1000))
    rounds = []
    index = 0
    for size in sizes:
        task = progress.add_task(f"timers: write {size:,} due", total=size, info="bulk, setup")
        started = time.perf_counter()
        index = add_due_timers(path, template, workspace_id, index, size, lambda n: progress.advance(task, n))
        build = time.perf_counter() - started
        progress.update(task, info=f"{build:.1f} s")
        task = progress.add_task(f"timers: fire {size:,} due", total=size, info="")
        proc = subprocess.Popen(
            [sys.executable, __file__, "--phase", "fire-timers", "--db", str(path), "--timer-batch", str(batch)],
            stdout=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None
        result: dict[str, Any] = {}
        for line in proc.stdout:
            data = json.loads(line)
            if "rate" in data:
                result = data
            else:
                progress.update(task, completed=data["fired"])
        if proc.wait() != 0 or not result:
            raise SystemExit(f"firing {size:,} timers failed (exit {proc.returncode})")
        if result["fired"] != result["due"] or result["errors"]:
            raise SystemExit(f"fired {result['fired']} of {result['due']} due timers, {result['errors']} errors")
        progress.update(task, completed=size, info=f"{result['rate']:,.0f}/s, RSS peak {result['rss_peak_mb']:.0f} MB")
        rounds.append(TimerRound(build_seconds=build, **result))
    return rounds


# -- phase 5: latency from accepted event to sent message --------------------------------------

class EngineServer(ingest_bench.Server):
    """`nudgeflow serve` (engine on, default settings) in a subprocess, on a fresh SQLite file
    with a workspace and every example journey live."""

    def __init__(self, directory: Path, name: str) -> None:
        super().__init__(directory, name)
        self.env["NUDGEFLOW_ENGINE"] = "1"
        self.stop_timeout = 60.0  # the engine finishes its batch first

    def start(self) -> "EngineServer":
        db, _, self.write_key = new_database(self.db_path)
        db.dispose()
        self.launch()
        return self

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def idle(self) -> bool:
        """Every event decided and no message due left in the outbox."""
        (newest, position, due), = self.query(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events),"
            " (SELECT COALESCE(MAX(position), 0) FROM engine_cursors WHERE name = 'events'),"
            " (SELECT count(*) FROM outbox WHERE status = 'pending' AND next_attempt_at_ms <= ?)",
            (int(time.time() * 1000),),
        )
        return position >= newest and due == 0

    def wait_idle(self, timeout: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.idle():
                time.sleep(0.3)  # the engagement events the last sends appended
                if self.idle():
                    return time.monotonic() - start
            time.sleep(0.2)
        raise SystemExit(f"the engine had not caught up {timeout:g} s after the load stopped")


@dataclass
class LatencyFigures:
    saturation: float = 0.0  # requests/s, closed loop, engine on
    saturation_conns: int = 0
    rate: float = 0.0  # the paced rate
    rate_basis: str = ""
    seconds: float = 0.0
    requests: int = 0
    achieved: float = 0.0
    http_p50: float = 0.0
    http_p99: float = 0.0
    messages: int = 0
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    catch_up: float = 0.0  # seconds from the last request to the engine being idle
    server_cpu: float = 0.0


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_latency(directory: Path, work: Workload, engine_rate: float, args: argparse.Namespace, progress: Progress) -> LatencyFigures:
    figures = LatencyFigures(saturation_conns=args.connections, seconds=args.latency_seconds)
    task = progress.add_task(f"serve: saturation, {args.connections} conns", total=None, info="starting server")
    with EngineServer(directory, "saturation") as server:
        requests = [ingest_bench.request_bytes(server.port, path, server.write_key, body) for path, body in work.sent]
        progress.update(task, info="")
        result = ingest_bench.run_async(
            ingest_bench.closed_loop(server.port, requests, args.connections, args.saturation_seconds, 1.0, lambda n: progress.advance(task, n))
        )
        server.stop()
        if result.errors:
            raise SystemExit(f"saturation run: {len(result.errors)} requests failed, first: {result.errors[0]}\n{server.log_tail()}")
    figures.saturation = result.rate
    progress.update(task, info=f"{result.rate:,.0f} req/s")

    half_engine, half_server = engine_rate / 2, figures.saturation / 2
    figures.rate = min(half_engine, half_server)
    figures.rate_basis = "half the engine rate of phase 2" if half_engine <= half_server else "half the server's saturation"
    total = min(len(work.sent), int(figures.rate * args.latency_seconds))
    task = progress.add_task(f"serve: paced at {figures.rate:,.0f}/s", total=total, info="starting server")
    with EngineServer(directory, "latency") as server:
        requests = [ingest_bench.request_bytes(server.port, path, server.write_key, body) for path, body in work.sent]
        progress.update(task, info="")
        cpu0 = server.cpu_seconds()
        started_ms = int(time.time() * 1000)
        paced = ingest_bench.run_async(
            ingest_bench.open_loop(server.port, requests[:total], figures.rate, args.latency_seconds, args.connections, lambda n: progress.advance(task, n))
        )
        if paced.errors:
            raise SystemExit(f"paced run: {len(paced.errors)} requests failed, first: {paced.errors[0]}\n{server.log_tail()}")
        progress.update(task, info="waiting for the engine to catch up")
        figures.catch_up = server.wait_idle(120)
        figures.server_cpu = (server.cpu_seconds() - cpu0) / (paced.elapsed + figures.catch_up)
        server.stop()
        # Each message sent at once on an event: from the event's receipt (before its commit
        # and the 200) to the log channel's record of the send, both on the server's clock.
        rows = server.query(
            "SELECT l.sent_at_ms - e.received_at_ms FROM log_channel_messages l"
            " JOIN outbox o ON o.workspace_id = l.workspace_id AND o.idempotency_key = l.idempotency_key"
            " JOIN events e ON e.workspace_id = o.workspace_id AND e.message_id = json_extract(o.payload, '$.trigger.message_id')"
            " WHERE e.received_at_ms >= ?",
            (started_ms - 1000,),
        )
    latencies = sorted(float(r[0]) for r in rows)
    figures.requests = paced.done
    figures.achieved = paced.rate
    figures.http_p50, figures.http_p99 = paced.pct(0.5), paced.pct(0.99)
    figures.messages = len(latencies)
    figures.p50, figures.p90, figures.p99 = _pct(latencies, 0.5), _pct(latencies, 0.9), _pct(latencies, 0.99)
    figures.max = latencies[-1] if latencies else float("nan")
    progress.update(task, info=f"p50 {figures.p50:.0f} ms, p99 {figures.p99:.0f} ms over {figures.messages:,} messages")
    if not latencies:
        raise SystemExit("the paced run sent no message at once on an event")
    return figures


# -- phase 6: publishing over the people already known (backfill) ---------------------------------

LAPSED = """\
# Lapsed buyers: 30 days without opening the app, browsing or buying, after an order in
# the last 180 days. Published over people already known, it reads their stored events.
id: lapsed-buyers
name: Lapsed buyers
trigger:
  type: inactivity
  events: [Application Opened, Product Viewed, Order Completed]
  window: 30d
entry:
  filter:
    - {trait: email, op: exists}
    - {event: Order Completed, within: 180d}
steps:
  mark:
    type: update_profile
    set: {lapsed_offer: 15-off}
    next: wait
  wait:
    type: wait
    duration: 7d
"""


def prepare_past(directory: Path, server: "BackfillServer", args: argparse.Namespace, progress: Progress,
                 label: str) -> tuple[str, str, int, str]:
    """The stored past the backfill and segments phases start from, copied to the server's
    database: --backfill-profiles people, --backfill-events events over the last
    --backfill-span-days days, decided by the engine with every example journey live, due
    timers fired and messages sent. Built once per run (and kept at --backfill-prepared when
    given, for later runs). Returns (workspace id, write key, end of the events in ms, what
    was reused, if anything)."""
    prepared: Path = args.backfill_prepared or directory / "past-prepared.db"
    reused = ""
    if prepared.exists():
        # A database an earlier phase or run prepared. Its events end when it was built, not
        # now: fine for comparing code, and a recorded run reused from another says so.
        meta = json.loads(prepared.with_suffix(".json").read_text())
        shutil.copyfile(prepared, server.db_path)
        shutil.copyfile(str(prepared) + ".key", str(server.db_path) + ".key")  # the secret key beside it
        os.sync()  # the copy's dirty pages written out now, not during the measurement
        if args.backfill_prepared is not None:
            reused = f"{prepared} (built {meta['built']})"
        return meta["workspace_id"], meta["write_key"], int(meta["end_ms"]), reused
    task = progress.add_task(f"{label}: stored events", total=args.backfill_events * 2, info="generating")
    end_ms = int(time.time() * 1000)
    db, workspace_id, write_key = new_database(server.db_path)
    work = generate(args.backfill_profiles, args.backfill_events, args.seed + 3,
                    end_ms - int(args.backfill_span_days * 86_400_000), end_ms, workspace_id, sent=False)
    progress.update(task, info="stored")
    load_events(server.db_path, work, workspace_id, lambda n: progress.advance(task, n))
    del work
    progress.update(task, info="decided by the engine")
    run_engine(db, args.backfill_events, args.batch, lambda n: progress.advance(task, n))
    progress.update(task, info="due timers fired, messages sent")
    settle(db, server.url)  # as a running server leaves it: nothing due in the background
    db.dispose()
    with sqlite3.connect(server.db_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(server.db_path, prepared)
    shutil.copyfile(str(server.db_path) + ".key", str(prepared) + ".key")
    prepared.with_suffix(".json").write_text(json.dumps({
        "workspace_id": workspace_id, "write_key": write_key, "end_ms": end_ms,
        "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}))
    return workspace_id, write_key, end_ms, reused


class BackfillServer(EngineServer):
    """`nudgeflow serve` on a database prepared beforehand (events decided, journeys live)."""

    def __init__(self, directory: Path, name: str, write_key: str, workspace_id: str) -> None:
        super().__init__(directory, name)
        self.write_key, self.workspace_id = write_key, workspace_id

    def start(self) -> "BackfillServer":
        self.launch()
        return self


@dataclass
class BackfillFigures:
    profiles: int = 0
    events: int = 0
    span_days: float = 0.0
    setup_seconds: float = 0.0
    publish_seconds: float = 0.0  # the publish command: its count of who would enter, then the publish
    backfill_seconds: float = 0.0  # from the command's start to the backfill done
    counted: int = 0  # "would enter at once", as the command printed it
    entered: int = 0  # as the backfill recorded it
    decided: int = 0  # profiles the backfill went through
    rate: float = 0.0  # requests/s of the ingest load
    requests: int = 0  # sent during the backfill
    http_p50: float = 0.0
    http_p99: float = 0.0
    http_max: float = 0.0
    http_p99_before: float = 0.0  # the same load in the seconds before the publish
    http_p99_counting: float = 0.0  # while the publish command counted (its own process)
    http_p99_engine: float = 0.0  # after it, while the server's engine ran the backfill
    errors: int = 0
    server_cpu: float = 0.0
    reused: str = ""  # the prepared database copied instead of built (--backfill-prepared)


async def _paced_until(port: int, requests: list[bytes], rate: float, stop: threading.Event,
                       out: list[tuple[float, float]], errors: list[str], connections: int) -> None:
    """Open-loop requests at `rate` until `stop` is set: (scheduled time, latency s) each, the
    latency from the scheduled time (a stall is charged to every request it delays)."""
    conns = await ingest_bench.connect(port, connections)
    idle: asyncio.Queue[Any] = asyncio.Queue()
    for conn in conns:
        idle.put_nowait(conn)
    pending: set[asyncio.Task[None]] = set()

    async def one(index: int, scheduled: float) -> None:
        conn = await idle.get()
        try:
            status, body = await conn.request(requests[index % len(requests)])
        except ConnectionError as exc:
            errors.append(str(exc))
            return
        out.append((scheduled, time.perf_counter() - scheduled))
        idle.put_nowait(conn)
        if status != 200:
            errors.append(f"{status}: {body[:200]!r}")

    start = time.perf_counter()
    interval = 1.0 / rate
    index = 0
    while not stop.is_set() and not errors:
        now = time.perf_counter()
        while start + index * interval <= now:
            task = asyncio.ensure_future(one(index, start + index * interval))
            pending.add(task)
            task.add_done_callback(pending.discard)
            index += 1
        await asyncio.sleep(max(0.0, start + index * interval - time.perf_counter()))
    if pending:
        await asyncio.wait(pending, timeout=30)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()


def settle(db: Any, url: str) -> None:
    """Fire the timers already due and deliver the queued messages (to the log channel), as
    a server that had been running would have: the backfill is then measured on its own."""
    from nudgeflow.core.clock import SystemClock
    from nudgeflow.runtime.embedded import EmbeddedRuntime
    from nudgeflow.settings import Settings
    from nudgeflow.store.group_commit import GroupCommitter

    clock = SystemClock()
    writer = GroupCommitter(db, clock)
    writer.start()
    try:
        runtime = EmbeddedRuntime(db, writer, clock, Settings(database_url=url))
        runtime.run_until_idle(max_rounds=1000)
        runtime.close_channels()
    finally:
        writer.stop()


def run_backfill(directory: Path, args: argparse.Namespace, progress: Progress) -> BackfillFigures:
    figures = BackfillFigures(profiles=args.backfill_profiles, events=args.backfill_events, span_days=args.backfill_span_days,
                              rate=args.backfill_rate)
    t0 = time.perf_counter()
    server = BackfillServer(directory, "backfill", "", "")
    workspace_id, write_key, end_ms, figures.reused = prepare_past(directory, server, args, progress, "backfill")
    server.write_key, server.workspace_id = write_key, workspace_id
    load = generate(2_000, 20_000, args.seed + 4, end_ms - 60_000, end_ms, "unused", rows=False)
    figures.setup_seconds = time.perf_counter() - t0
    (directory / "lapsed-buyers.yaml").write_text(LAPSED)

    task = progress.add_task("backfill: publish over the past", total=None, info="starting server")
    with server:
        cli = lambda *a: [sys.executable, "-m", "nudgeflow.cli", *a, "--database", server.url]  # noqa: E731
        subprocess.run(cli("journeys", "apply", str(directory / "lapsed-buyers.yaml"), "-w", workspace_id),
                       env=server.env, check=True, capture_output=True)
        requests = [ingest_bench.request_bytes(server.port, path, write_key, body) for path, body in load.sent]
        stop = threading.Event()
        timings: list[tuple[float, float]] = []
        errors: list[str] = []
        loader = threading.Thread(target=lambda: ingest_bench.run_async(
            _paced_until(server.port, requests, args.backfill_rate, stop, timings, errors, 16), limit=900))
        loader.start()
        try:
            time.sleep(BEFORE_S)  # the load runs alone first: the baseline
            progress.update(task, info="publishing")
            cpu0 = server.cpu_seconds()
            began = time.perf_counter()
            done = subprocess.run(cli("journeys", "publish", "lapsed-buyers", "-w", workspace_id, "--yes"),
                                  env=server.env, capture_output=True, text=True)
            figures.publish_seconds = time.perf_counter() - began
            if done.returncode != 0:
                raise SystemExit(f"publish failed: {done.stderr}")
            counted = [line for line in done.stdout.splitlines() if "would enter at once" in line]
            figures.counted = int(counted[0].split(": ", 1)[1].split(" ", 1)[0].replace(",", "")) if counted else -1
            progress.update(task, info="backfill running")
            while True:
                rows = server.query("SELECT status, profiles_done, entered FROM journey_backfills WHERE journey_id = 'lapsed-buyers'")
                if rows and rows[0][0] != "pending":
                    break
                if time.perf_counter() - began > 600:
                    raise SystemExit("the backfill had not finished 600 s after the publish")
                time.sleep(0.05)
            ended = time.perf_counter()
            figures.backfill_seconds = ended - began
            figures.server_cpu = (server.cpu_seconds() - cpu0) / figures.backfill_seconds
            figures.decided, figures.entered = int(rows[0][1]), int(rows[0][2])
        finally:
            stop.set()
            loader.join()
        server.stop()
    during = sorted(latency for scheduled, latency in timings if began <= scheduled <= ended)
    before = sorted(latency for scheduled, latency in timings if began - BEFORE_S + 0.5 <= scheduled < began)
    counting = sorted(lat for at, lat in timings if began <= at <= began + figures.publish_seconds)
    engine_side = sorted(lat for at, lat in timings if began + figures.publish_seconds < at <= ended)
    figures.http_p99_counting, figures.http_p99_engine = _pct(counting, 0.99) * 1000, _pct(engine_side, 0.99) * 1000
    figures.http_p99_before = _pct(before, 0.99) * 1000
    figures.requests = len(during)
    figures.errors = len(errors)
    if errors:
        raise SystemExit(f"the ingest load had {len(errors)} failed requests, first: {errors[0]}")
    figures.http_p50, figures.http_p99 = _pct(during, 0.5) * 1000, _pct(during, 0.99) * 1000
    figures.http_max = during[-1] * 1000 if during else float("nan")
    progress.update(task, info=f"{figures.backfill_seconds:.1f} s, ingest p99 {figures.http_p99:.1f} ms")
    return figures


BACKFILL_TARGET_S, BACKFILL_P99_TARGET = 30.0, 100.0
BEFORE_S = 3.0


def backfill_rows(b: BackfillFigures) -> list[tuple[str, str, str, str]]:
    return [
        (f"backfill: publish over {b.profiles:,} profiles / {b.events:,} stored events (command to done)",
         f"{b.backfill_seconds:.1f} s", f"target <= {BACKFILL_TARGET_S:g} s", _verdict(b.backfill_seconds <= BACKFILL_TARGET_S)),
        (f"backfill: ingest HTTP p99 during it ({b.requests:,} requests at {b.rate:g}/s)",
         f"{b.http_p99:.1f} ms", f"target <= {BACKFILL_P99_TARGET:g} ms; without the backfill {b.http_p99_before:.1f} ms",
         _verdict(b.http_p99 <= BACKFILL_P99_TARGET)),
    ]


def write_backfill_results(b: BackfillFigures, args: argparse.Namespace, info: dict[str, str]) -> None:
    """The backfill phase's own section of RESULTS.md (kept apart from the engine section,
    which takes only runs of every phase)."""
    results: Path = args.results
    command = "python benchmarks/engine.py --phases backfill" + "".join(
        f" --{name.replace('_', '-')} {getattr(args, name)}"
        for name in ("backfill_profiles", "backfill_events") if getattr(args, name) != FULL[name])
    lines = [
        f"## Latest backfill run: {info['date']}",
        "",
        f"`{command}`. {b.profiles:,} profiles, {b.events:,} stored events over the last {b.span_days:g} days, decided by "
        f"the engine beforehand with every example journey live (setup {b.setup_seconds:.0f} s, not measured"
        f"{'; the prepared database reused from ' + b.reused if b.reused else ''}); "
        "`nudgeflow serve` on SQLite (WAL, synchronous=FULL), default settings. Published: an inactivity journey "
        "(30 days) whose entry filter counts orders in the stored events (180 days).",
        "",
        "| measure | figure | target | |",
        "| --- | ---: | --- | --- |",
        *[f"| {m} | {f_} | {t} | {ok} |" for m, f_, t, ok in backfill_rows(b)],
        "",
        f"The publish command took {b.publish_seconds:.1f} s of it (it counts who would enter first: {b.counted:,}); "
        f"the backfill went through {b.decided:,} profiles and {b.entered:,} entered. Ingest during the backfill: "
        f"{b.requests:,} requests, p50 {b.http_p50:.1f} ms, max {b.http_max:.1f} ms; p99 {b.http_p99_counting:.1f} ms while "
        f"the command counted (in its own process), {b.http_p99_engine:.1f} ms while the server's engine ran the backfill "
        "(the same load alone, in the "
        f"{BEFORE_S:g} s before the publish: p99 {b.http_p99_before:.1f} ms). Server CPU {b.server_cpu:.2f} cores.",
        "",
        *ingest_bench.machine_lines(info, f"{info['os']}; Python {info['python']}; SQLite {info['sqlite']}", disk=True),
    ]
    start, end = "<!-- backfill benchmark: written by benchmarks/engine.py --phases backfill -->", "<!-- end of backfill benchmark -->"
    marker = "<!-- backfill history: one line per run, newest first; the benchmark adds them -->"
    text = results.read_text() if results.exists() else ""
    old = ingest_bench.between(text, start, end) or ""
    before = text.split(start, 1)[0].rstrip("\n") if start in text else text.rstrip("\n")
    after = text.split(end, 1)[1].strip("\n") if end in text else ""
    history = [line for line in old.split(marker, 1)[1].splitlines() if line.startswith("| 20")] if marker in old else []
    line = (f"| {info['date']} | {info['commit']} | {b.profiles:,} | {b.events:,} | {b.backfill_seconds:.1f} | "
            f"{b.entered:,} | {b.rate:g} | {b.http_p99:.1f} |")
    body = [start, "", *lines, "## All backfill runs", "", marker, "",
            "| date | commit | profiles | stored events | publish to done s | entered | ingest req/s | ingest p99 ms |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |", line, *history, "", end]
    results.write_text((before + "\n\n" if before else "") + "\n".join(body) + "\n" + (("\n" + after + "\n") if after else ""))
    console.print(f"backfill results written to {results}")


# -- phase 8 (on demand): what keeping the report rollups costs the engine -------------------------

ROLLUP_TARGET = 0.90  # issue 15 item 3: keeping the rollups costs <= 10 % of the engine's events/s


@dataclass
class RollupRun:
    rollups: bool
    rate: float
    cpu_us: float  # the process's CPU per event (busy cores / events per second), in microseconds
    rollup_rows: int


@dataclass
class RollupSize:
    profiles: int
    events: int
    runs: list[RollupRun] = field(default_factory=list)

    def rates(self, on: bool) -> list[float]:
        return [r.rate for r in self.runs if r.rollups == on]

    def cpus(self, on: bool) -> list[float]:
        return [r.cpu_us for r in self.runs if r.rollups == on]

    @property
    def ratio(self) -> float:
        """events/s with the rollups over events/s without, medians of the same run."""
        return statistics.median(self.rates(True)) / statistics.median(self.rates(False))

    @property
    def pair_ratios(self) -> list[float]:
        """Each round's on / off: the two runs of a round are next to each other in time."""
        return [a / b for a, b in zip(self.rates(True), self.rates(False), strict=True)]

    @property
    def cpu_ratio(self) -> float:
        """CPU per event with the rollups over without (more than 1 is the cost)."""
        return statistics.median(self.cpus(True)) / statistics.median(self.cpus(False))


@dataclass
class RollupFigures:
    rounds: int
    sizes: list[RollupSize] = field(default_factory=list)
    load_before: str = ""
    load_after: str = ""


def parse_rollup_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        profiles, sep, events = part.strip().partition("x")
        if not sep or not profiles.isdigit() or not events.isdigit() or int(profiles) < 1 or int(events) < 1:
            raise SystemExit(f"--rollup-sizes: {part.strip()!r} is not PROFILESxEVENTS (for example 2000x20000)")
        out.append((int(profiles), int(events)))
    return out


def run_rollups(tmp: Path, args: argparse.Namespace, progress: Progress) -> RollupFigures:
    """The engine phase's work decided with the report rollups counted (on) and not (off),
    on identical copies of one prepared database, alternated on, off, on, off… so that both
    see the same machine: the figure is the ratio of the two in the same run."""
    figures = RollupFigures(rounds=args.rollup_rounds, load_before=_load())
    for profiles, events in args.rollup_sizes:
        size = RollupSize(profiles, events)
        template = tmp / f"rollups-{profiles}x{events}.db"
        db, workspace_id, _ = new_database(template)
        db.dispose()
        end_ms = int(time.time() * 1000)
        work = generate(profiles, events, args.seed, end_ms - int(args.span * 1000), end_ms, workspace_id, sent=False)
        task = progress.add_task(f"rollups: load {events:,} events", total=len(work.rows), info="")
        load_events(template, work, workspace_id, lambda n: progress.advance(task, n))
        total = len(work.rows)
        del work
        gc.collect()
        outcomes: dict[bool, dict[str, int]] = {}
        for round_ in range(args.rollup_rounds):
            for on in (True, False):
                copy = tmp / "rollups-run.db"
                for suffix in ("", "-wal", "-shm", ".key"):
                    Path(str(copy) + suffix).unlink(missing_ok=True)
                    if Path(str(template) + suffix).exists():
                        shutil.copyfile(str(template) + suffix, str(copy) + suffix)
                from nudgeflow.store import database

                run_db = database.create_db_engine(f"sqlite:///{copy}")
                label = f"rollups {'on ' if on else 'off'} {profiles:,}x{events:,} round {round_ + 1}"
                task = progress.add_task(label, total=total, info="")
                e = run_engine(run_db, total, args.batch, lambda n, t=task: progress.advance(t, n), count_rollups=on)
                with run_db.connect() as conn:
                    rows = int(conn.exec_driver_sql("SELECT count(*) FROM report_rollups").scalar_one())
                run_db.dispose()
                # Both modes must decide the same work, and only "on" may write rollups.
                decided = {**e.by_journey, "runs": e.runs, "timers": e.timers_armed}
                if outcomes.setdefault(on, decided) != decided or (on and rows == 0) or (not on and rows != 0):
                    raise SystemExit(f"rollups {'on' if on else 'off'} decided differently: {decided}, {rows} rollup rows")
                size.runs.append(RollupRun(on, e.rate, 1e6 * e.cpu / e.rate, rows))
                progress.update(task, info=f"{e.rate:,.0f} events/s, {1e6 * e.cpu / e.rate:.0f} µs CPU/event")
        if outcomes[True] != outcomes[False]:
            raise SystemExit(f"rollups on and off decided differently: {outcomes}")
        figures.sizes.append(size)
        for suffix in ("", "-wal", "-shm", ".key"):
            Path(str(template) + suffix).unlink(missing_ok=True)
            Path(str(tmp / "rollups-run.db") + suffix).unlink(missing_ok=True)
    figures.load_after = _load()
    return figures


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def rollup_rows(f: RollupFigures) -> list[tuple[str, str, str, str]]:
    rows = []
    for size in f.sizes:
        on, off = size.rates(True), size.rates(False)
        pairs = size.pair_ratios
        rows.append(
            (
                f"rollups: engine events/s with / without ({size.profiles:,} profiles, {size.events:,} events, "
                f"{f.rounds} rounds alternated)",
                f"{size.ratio:.3f} (median {statistics.median(on):,.0f} / {statistics.median(off):,.0f} events/s; "
                f"rounds {', '.join(f'{r:.2f}' for r in pairs)})",
                f">= {ROLLUP_TARGET:.2f} (cost <= 10 %)",
                rollup_verdict(pairs),
            )
        )
        rows.append(
            (
                "  CPU per event with / without",
                f"{size.cpu_ratio:.3f} ({statistics.median(size.cpus(True)):.0f} / "
                f"{statistics.median(size.cpus(False)):.0f} µs)",
                "",
                "",
            )
        )
    return rows


def rollup_verdict(pairs: list[float]) -> str:
    """Met only when every round met the target, missed when none did: rounds on both sides
    of it (a busy machine) settle nothing."""
    if min(pairs) >= ROLLUP_TARGET:
        return _verdict(True)
    if max(pairs) < ROLLUP_TARGET:
        return _verdict(False)
    return "not settled: rounds on both sides"


def write_rollup_results(f: RollupFigures, args: argparse.Namespace, info: dict[str, str]) -> None:
    """The rollups phase's own section of RESULTS.md: each run, and the load the machine was
    under (a ratio taken on a busy machine says so in its heading)."""
    results: Path = args.results
    busy = max(float(x) for x in (f.load_before.split()[0], f.load_after.split()[0])) > 0.5
    sizes = ",".join(f"{s.profiles}x{s.events}" for s in f.sizes)
    command = f"python benchmarks/engine.py --phases rollups --rollup-sizes {sizes} --rollup-rounds {f.rounds}"
    lines = [
        f"## Latest rollups run: {info['date']}" + (" — TAKEN UNDER LOAD" if busy else ""),
        "",
        f"`{command}`: the engine phase's work (the example journeys, generated shop traffic), decided with the report "
        "rollups counted (on: store/effects_writer.py calls store/rollups.count_runs) and without (off), each run on "
        "an identical copy of one prepared database, alternated on, off, on, off… The dispatcher's counting of sends "
        "is not in this phase (the engine phase dispatches nothing). Load average (1, 5, 15 min, `uptime`): "
        f"{f.load_before} before, {f.load_after} after"
        + (": **the machine was busy, so these figures were taken under load**." if busy else "."),
        "",
        "| measure | figure | target | |",
        "| --- | ---: | --- | --- |",
        *[f"| {m} | {f_} | {t} | {ok} |" for m, f_, t, ok in rollup_rows(f)],
        "",
        "| size | round | on events/s | off events/s | on µs CPU/event | off µs CPU/event |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in f.sizes:
        on = [r for r in size.runs if r.rollups]
        off = [r for r in size.runs if not r.rollups]
        for i, (a, b) in enumerate(zip(on, off, strict=True)):
            lines.append(
                f"| {size.profiles:,} x {size.events:,} | {i + 1} | {a.rate:,.0f} | {b.rate:,.0f} | {a.cpu_us:.0f} | "
                f"{b.cpu_us:.0f} |"
            )
    lines += ["", *ingest_bench.machine_lines(info, f"{info['os']}; Python {info['python']}; SQLite {info['sqlite']}", disk=True)]
    start, end = "<!-- rollups benchmark: written by benchmarks/engine.py --phases rollups -->", "<!-- end of rollups benchmark -->"
    marker = "<!-- rollups history: one line per run, newest first; the benchmark adds them -->"
    text = results.read_text() if results.exists() else ""
    old = ingest_bench.between(text, start, end) or ""
    before = text.split(start, 1)[0].rstrip("\n") if start in text else text.rstrip("\n")
    after = text.split(end, 1)[1].strip("\n") if end in text else ""
    history = [line for line in old.split(marker, 1)[1].splitlines() if line.startswith("| 20")] if marker in old else []
    new_lines = [
        f"| {info['date']} | {info['commit']} | {s.profiles:,} x {s.events:,} | {f.rounds} | {s.ratio:.3f} | "
        f"{s.cpu_ratio:.3f} | {f.load_before} / {f.load_after} |"
        for s in f.sizes
    ]
    body = [start, "", *lines, "## All rollups runs", "", marker, "",
            "| date | commit | profiles x events | rounds | events/s on / off | CPU/event on / off | load before / after |",
            "| --- | --- | --- | ---: | ---: | ---: | --- |", *new_lines, *history, "", end]
    results.write_text((before + "\n\n" if before else "") + "\n".join(body) + "\n" + (("\n" + after + "\n") if after else ""))
    console.print(f"rollups results written to {results}")


# -- phase 7: segments: applying one over the stored past, and the engine with 50 live ---------------

SEGMENTS = ROOT / "examples" / "segments"
APPLIED_SEGMENT = "recent-buyers"  # examples/segments/recent-buyers.yaml: an Order Completed in 30 days


def bench_segments(count: int) -> list[dict[str, Any]]:
    """`count` segments of the kinds a shop writes, over the generated workload's events and
    traits: counts and sums in windows, property filters, lapsed (ordered, but not lately),
    engagement, reachability, traits, and segments built on others. Ten kinds, each taken
    with five different windows, events or values: the first 50 are 50 different
    definitions, so that work shared between identical conditions cannot flatter the figure."""
    names = ("Product Viewed", "Product Added", "Order Completed", "Application Opened", "Level Completed",
             "Product Added to Wishlist", "Products Searched", "Cart Viewed", "Checkout Started", "Order Delivered")
    windows = ("1d", "7d", "14d", "30d", "90d")
    plans = (["pro", "business"], ["pro"], ["business"], ["free", "trial"], ["trial", "pro"])
    reach: tuple[dict[str, Any], ...] = (
        {"reachable": "email"}, {"reachable": "push"}, {"reachable": "any"},
        {"all": [{"reachable": "email"}, {"not": {"reachable": "push"}}]},
        {"all": [{"reachable": "push"}, {"trait": "locale", "op": "in", "value": ["en-US", "en-GB", "en-AU"]}]},
    )
    out: list[dict[str, Any]] = []
    for i in range(count):
        kind, r = i % 10, (i // 10) % 5  # r: which of the kind's five
        name, window = names[(i + r) % len(names)], windows[r]
        if kind == 0:
            when: dict[str, Any] = {"performed": name, "within": window, "count": 1 + r % 4}
        elif kind == 1:
            when = {"performed": "Order Completed", "within": window, "sum": {"property": "revenue", "value": 50 * (1 + i % 5)}}
        elif kind == 2:
            when = {"performed": "Product Viewed", "where": [{"property": "category", "value": CATEGORIES[i % len(CATEGORIES)]}],
                    "within": window, "count": 2}
        elif kind == 3:
            when = {"all": [{"performed": name, "within": "365d"}, {"not": {"performed": name, "within": window}}]}
        elif kind == 4:
            when = {"all": [{"engaged": "opened", "channel": "email", "within": window}, {"reachable": "email"}]}
        elif kind == 5:
            when = reach[r]
        elif kind == 6:
            when = {"all": [{"trait": "plan", "op": "in", "value": plans[r]},
                            {"trait": "address.country", "value": PLACES[(3 * r) % len(PLACES)][2]}]}
        elif kind == 7:
            when = {"all": [{"segment": f"bench-{i - 7:02d}"}, {"trait": "plan", "op": "ne", "value": "free"}]}
        elif kind == 8:
            when = {"any": [{"performed": name, "within": window}, {"performed": names[(i + r + 3) % len(names)], "within": window}]}
        else:
            when = {"performed": "Product Viewed", "within": window, "op": "gte", "count": 5}
        out.append({"id": f"bench-{i:02d}", "name": f"Benchmark segment {i}", "when": when})
    return out


def apply_segments(db: Any, workspace_id: str, definitions: list[dict[str, Any]]) -> None:
    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.model.segments import Segment
    from nudgeflow.store import segments as segment_store

    now_ms = to_ms(SystemClock().now())
    with db.begin() as conn:
        for doc in definitions:
            segment_store.apply(conn, workspace_id, Segment.model_validate(doc), now_ms)


@dataclass
class SegmentFigures:
    profiles: int = 0
    events: int = 0
    span_days: float = 0.0
    setup_seconds: float = 0.0
    command_seconds: float = 0.0  # `segments apply` itself
    apply_seconds: float = 0.0  # from the command's start to the computation done
    decided: int = 0  # profiles the computation went through
    size: int = 0  # members it recorded
    as_of_seq: int = 0
    brute: int = 0  # people with an Order Completed in the 30 days before the end, counted in SQL
    rate: float = 0.0  # ingest requests/s during it
    requests: int = 0
    http_p50: float = 0.0
    http_p99: float = 0.0
    http_max: float = 0.0
    http_p99_before: float = 0.0
    server_cpu: float = 0.0
    reused: str = ""
    live: int = 0  # live segments in the engine comparison
    engine_events: int = 0
    engine_profiles: int = 0
    without: EngineFigures | None = None  # the steady part (people known): the target's figures
    with_segments: EngineFigures | None = None
    without_arriving: EngineFigures | None = None  # the first part (people acting for the first time)
    with_segments_arriving: EngineFigures | None = None
    members: int = 0  # members rows after the run with segments
    appended: int = 0  # Segment Entered / Exited events the engine appended


def run_segment_apply(directory: Path, args: argparse.Namespace, progress: Progress, figures: SegmentFigures) -> None:
    """One segment applied over the stored past with `nudgeflow serve` running and a paced
    ingest load: the time from `segments apply` to the computation done."""
    figures.profiles, figures.events, figures.span_days = args.backfill_profiles, args.backfill_events, args.backfill_span_days
    figures.rate = args.backfill_rate
    t0 = time.perf_counter()
    server = BackfillServer(directory, "segments", "", "")
    workspace_id, write_key, end_ms, figures.reused = prepare_past(directory, server, args, progress, "segments")
    server.write_key, server.workspace_id = write_key, workspace_id
    load = generate(2_000, 20_000, args.seed + 6, end_ms - 60_000, end_ms, "unused", rows=False)
    figures.setup_seconds = time.perf_counter() - t0
    definition = SEGMENTS / f"{APPLIED_SEGMENT}.yaml"

    task = progress.add_task("segments: apply over the past", total=None, info="starting server")
    with server:
        cli = lambda *a: [sys.executable, "-m", "nudgeflow.cli", *a, "--database", server.url]  # noqa: E731
        requests = [ingest_bench.request_bytes(server.port, path, write_key, body) for path, body in load.sent]
        stop = threading.Event()
        timings: list[tuple[float, float]] = []
        errors: list[str] = []
        loader = threading.Thread(target=lambda: ingest_bench.run_async(
            _paced_until(server.port, requests, args.backfill_rate, stop, timings, errors, 16), limit=900))
        loader.start()
        try:
            time.sleep(BEFORE_S)  # the load runs alone first: the baseline
            progress.update(task, info="applying")
            cpu0 = server.cpu_seconds()
            began = time.perf_counter()
            done = subprocess.run(cli("segments", "apply", str(definition), "-w", workspace_id),
                                  env=server.env, capture_output=True, text=True)
            figures.command_seconds = time.perf_counter() - began
            if done.returncode != 0:
                raise SystemExit(f"segments apply failed: {done.stderr}")
            progress.update(task, info="computing")
            while True:
                rows = server.query("SELECT status, profiles_done, size, as_of_seq, finished_at_ms FROM segment_applies"
                                    " WHERE segment_id = ?", (APPLIED_SEGMENT,))
                if rows and rows[0][0] != "pending":
                    break
                if time.perf_counter() - began > 600:
                    raise SystemExit("the segment had not been computed 600 s after it was applied")
                time.sleep(0.05)
            ended = time.perf_counter()
            figures.apply_seconds = ended - began
            figures.server_cpu = (server.cpu_seconds() - cpu0) / figures.apply_seconds
            status, figures.decided, size, as_of, finished = rows[0]
            if status != "done":
                raise SystemExit(f"the segment's computation ended {status}")
            figures.size, figures.as_of_seq = int(size), int(as_of)
            # The same question asked of the stored events in SQL, at the end: what it should hold,
            # give or take the people whose window edge fell between a batch and the end.
            (figures.brute,), = server.query(
                "SELECT count(DISTINCT profile_id) FROM events WHERE type = 'track' AND event = 'Order Completed'"
                " AND seq <= ? AND timestamp_ms > ? AND timestamp_ms <= ?",
                (figures.as_of_seq, int(finished) - 30 * 86_400_000, int(finished)),
            )
        finally:
            stop.set()
            loader.join()
        server.stop()
    during = sorted(latency for scheduled, latency in timings if began <= scheduled <= ended)
    before = sorted(latency for scheduled, latency in timings if began - BEFORE_S + 0.5 <= scheduled < began)
    figures.http_p99_before = _pct(before, 0.99) * 1000
    figures.requests = len(during)
    if errors:
        raise SystemExit(f"the ingest load had {len(errors)} failed requests, first: {errors[0]}")
    figures.http_p50, figures.http_p99 = _pct(during, 0.5) * 1000, _pct(during, 0.99) * 1000
    figures.http_max = during[-1] * 1000 if during else float("nan")
    progress.update(task, info=f"{figures.apply_seconds:.1f} s, {figures.size:,} members, ingest p99 {figures.http_p99:.1f} ms")


def _append_rows(path: Path, rows: list[tuple[Any, ...]]) -> None:
    """More events into the log of a database loaded before (its profiles are there already)."""
    conn = raw_connection(path)
    for offset in range(0, len(rows), 1000):
        conn.execute("BEGIN")
        conn.executemany(ingest_bench.INSERT_ROW, rows[offset : offset + 1000])
        conn.execute("COMMIT")
    conn.close()


def run_segment_engine(directory: Path, args: argparse.Namespace, progress: Progress, figures: SegmentFigures) -> None:
    """The engine phase's kind of workload decided twice in the same run, every example journey
    live in both: without segments, and with --segments live ones (applied before the events
    exist). In two parts, each decided to the end (the Segment Entered / Exited the engine
    appends included) before the next is stored: the first half of the events, when most people
    act for the first time and enter their segments (`arriving`), then the second half, when
    they are known (`steady`: the target's figure). Each part is run without then with, one after
    the other, so that the machine's drift falls on both."""
    figures.live, figures.engine_events, figures.engine_profiles = args.segments, args.segment_events, args.segment_profiles
    end_ms = int(time.time() * 1000)
    plain, segmented = directory / "engine-plain.db", directory / "engine-segments.db"
    db, workspace_id, _ = new_database(plain)
    work = generate(args.segment_profiles, args.segment_events, args.seed + 5, end_ms - int(args.span * 1000), end_ms,
                    workspace_id, sent=False)
    half = len(work.rows) // 2
    parts = [work.rows[:half], work.rows[half:]]
    task = progress.add_task("segments: events for the engine", total=half, info="")
    load_events(plain, Workload(parts[0], [], work.profiles, work.identities, {}, 0.0), workspace_id,
                lambda n: progress.advance(task, n))
    del work
    db.dispose()
    for suffix in ("", ".key"):
        shutil.copyfile(str(plain) + suffix, str(segmented) + suffix)
    from nudgeflow.store import database

    dbs = {"without": database.create_db_engine(f"sqlite:///{plain}"),
           "with": database.create_db_engine(f"sqlite:///{segmented}")}
    apply_segments(dbs["with"], workspace_id, bench_segments(args.segments))
    try:
        for index, rows in enumerate(parts):
            part = ("arriving", "steady")[index]
            for label, db in dbs.items():
                if index:
                    _append_rows(plain if label == "without" else segmented, rows)
                task = progress.add_task(f"segments: {part}, {label} segments", total=len(rows), info="")
                result = run_engine(db, len(rows), args.batch, lambda n: progress.advance(task, n), appended=label == "with")
                result.profiles = args.segment_profiles
                progress.update(task, info=f"{result.rate:,.0f} events/s")
                setattr(figures, f"{'with_segments' if label == 'with' else 'without'}{'' if index else '_arriving'}", result)
        with dbs["with"].connect() as conn:
            figures.members = int(conn.exec_driver_sql("SELECT count(*) FROM segment_members").scalar_one())
            figures.appended = int(conn.exec_driver_sql(
                "SELECT count(*) FROM events WHERE event IN ('Segment Entered', 'Segment Exited')").scalar_one())
    finally:
        for db in dbs.values():
            db.dispose()
        for path in (plain, segmented):
            for suffix in ("", "-wal", "-shm", ".key"):
                Path(str(path) + suffix).unlink(missing_ok=True)


def run_segments(directory: Path, args: argparse.Namespace, progress: Progress) -> SegmentFigures:
    figures = SegmentFigures()
    parts = set(args.segment_parts.split(","))
    if "apply" in parts:
        run_segment_apply(directory, args, progress, figures)
    if "engine" in parts:
        if args.segment_writes_off:
            _without_change_writes()
        run_segment_engine(directory, args, progress, figures)
    return figures


def _without_change_writes() -> None:
    """For --segment-writes-off: the members rows, daily sizes and Segment Entered / Exited
    rows a membership change writes are not written (the engine appends no other events in
    this phase), so that a run shows what deciding costs apart from writing. A breakdown:
    such a run is never recorded."""
    from nudgeflow.store import event_log, segments

    event_log.append_events = lambda conn, rows: None  # type: ignore[assignment]
    segments.write_changes = lambda conn, changes: (0, 0)  # type: ignore[assignment]


SEGMENT_APPLY_TARGET_S, SEGMENT_ENGINE_TARGET = 30.0, 0.8


def segment_rows(g: SegmentFigures) -> list[tuple[str, str, str, str]]:
    rows = [] if not g.profiles else [
        (f"segments: apply one over {g.profiles:,} profiles / {g.events:,} stored events (command to done)",
         f"{g.apply_seconds:.1f} s", f"target <= {SEGMENT_APPLY_TARGET_S:g} s", _verdict(g.apply_seconds <= SEGMENT_APPLY_TARGET_S)),
        (f"  {g.size:,} members as of event {g.as_of_seq:,} ({g.decided:,} profiles looked at); ingest p99 during it "
         f"({g.requests:,} requests at {g.rate:g}/s)",
         f"{g.http_p99:.1f} ms", f"without it {g.http_p99_before:.1f} ms; SQL count at the end {g.brute:,}", ""),
    ]
    if g.without is not None and g.with_segments is not None:
        ratio = g.with_segments.rate / g.without.rate
        rows.append(
            (f"segments: engine with {g.live} live segments, people known ({g.engine_profiles:,} profiles, "
             f"the second {g.without.events:,} of {g.engine_events:,} events)",
             f"{g.with_segments.rate:,.0f} events/s",
             f"{ratio:.2f} x the same events without ({g.without.rate:,.0f}/s; target >= {SEGMENT_ENGINE_TARGET})",
             _verdict(ratio >= SEGMENT_ENGINE_TARGET)))
    if g.without_arriving is not None and g.with_segments_arriving is not None:
        w, wo = g.with_segments_arriving, g.without_arriving
        rows.append(
            (f"  the first {wo.events:,} events, people arriving (each enters its segments: {w.decided - w.events:,} "
             "Segment Entered / Exited appended, passed undecided)",
             f"{w.rate:,.0f} events/s", f"{w.rate / wo.rate:.2f} x without ({wo.rate:,.0f}/s)", ""))
    return rows


def write_segment_results(g: SegmentFigures, args: argparse.Namespace, info: dict[str, str]) -> None:
    """The segments phase's own section of RESULTS.md, as the backfill's."""
    results: Path = args.results
    command = "python benchmarks/engine.py --phases segments" + "".join(
        f" --{name.replace('_', '-')} {getattr(args, name)}"
        for name in ("backfill_profiles", "backfill_events", "segment_profiles", "segment_events", "segments")
        if getattr(args, name) != {**DEFAULTS, **FULL}[name])
    rows = segment_rows(g)
    w, wo = g.with_segments, g.without
    lines = [
        f"## Latest segments run: {info['date']}",
        "",
        f"`{command}`. Apply: `{APPLIED_SEGMENT}` (examples/segments) over the backfill phase's stored past "
        f"({g.profiles:,} profiles, {g.events:,} events over {g.span_days:g} days, decided by the engine beforehand; "
        f"setup {g.setup_seconds:.0f} s, not measured{'; reused from ' + g.reused if g.reused else ''}), "
        f"`nudgeflow serve` on SQLite (WAL, synchronous=FULL) under a paced ingest load; the command took "
        f"{g.command_seconds:.1f} s of it; server CPU {g.server_cpu:.2f} cores. Engine: the engine phase's kind of "
        f"workload decided by process_events in this run, every example journey live, without and with "
        f"{g.live} live segments of every kind (benchmarks/engine.py, bench_segments), in two parts: the first half "
        "of the events (people acting for the first time, entering their segments), then the second (people known: "
        "the target's figure), each decided to the end before the next is stored.",
        "",
        "| measure | figure | target | |",
        "| --- | ---: | --- | --- |",
        *[f"| {m.strip()} | {f_} | {t} | {ok} |" for m, f_, t, ok in rows],
        "",
    ]
    if w is not None and wo is not None:
        lines += [
            f"With segments the engine appended {g.appended:,} Segment Entered / Exited in all ({g.appended / (2 * wo.events):.2f} "
            f"per event it was given; its cursor passes them undecided, and the rates count only the events it was given) "
            f"and left {g.members:,} members. Engine process CPU, people known: {wo.cpu:.2f} cores without, {w.cpu:.2f} with.",
            "",
        ]
    lines += ingest_bench.machine_lines(info, f"{info['os']}; Python {info['python']}; SQLite {info['sqlite']}", disk=True)
    start, end = "<!-- segments benchmark: written by benchmarks/engine.py --phases segments -->", "<!-- end of segments benchmark -->"
    marker = "<!-- segments history: one line per run, newest first; the benchmark adds them -->"
    text = results.read_text() if results.exists() else ""
    old = ingest_bench.between(text, start, end) or ""
    before = text.split(start, 1)[0].rstrip("\n") if start in text else text.rstrip("\n")
    after = text.split(end, 1)[1].strip("\n") if end in text else ""
    history = [line for line in old.split(marker, 1)[1].splitlines() if line.startswith("| 20")] if marker in old else []
    ratio = f"{w.rate / wo.rate:.2f}" if w and wo else "-"
    line = (f"| {info['date']} | {info['commit']} | {g.profiles:,} | {g.events:,} | {g.apply_seconds:.1f} | {g.size:,} | "
            f"{g.http_p99:.1f} | {g.live} | {ratio} |")
    body = [start, "", *lines, "## All segments runs", "", marker, "",
            "| date | commit | profiles | stored events | apply s | members | ingest p99 ms | live segments | engine with / without |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", line, *history, "", end]
    results.write_text((before + "\n\n" if before else "") + "\n".join(body) + "\n" + (("\n" + after + "\n") if after else ""))
    console.print(f"segments results written to {results}")


# -- the run ------------------------------------------------------------------------------------

@dataclass
class Figures:
    L: float = 0.0
    L_early: float = 0.0  # over the first rows only, as the table starts to fill
    L_early_rows: int = 0
    profiles: int = 0
    events: int = 0
    payload_bytes: float = 0.0
    mix: dict[str, int] = field(default_factory=dict)
    generate_seconds: float = 0.0
    engine: EngineFigures | None = None
    journeys: EngineFigures | None = None  # the engine phase's events with 100 live journeys
    matching: MatchFigures | None = None
    timers: list[TimerRound] = field(default_factory=list)
    latency: LatencyFigures | None = None
    backfill: BackfillFigures | None = None
    segments: SegmentFigures | None = None
    rollups: RollupFigures | None = None
    seconds: float = 0.0


def run(args: argparse.Namespace) -> Figures:
    figures = Figures(profiles=args.profiles, events=args.events)
    tmp = Path(tempfile.mkdtemp(prefix="nudgeflow-engine-bench-"))
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]{task.description:<36}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
        console=console,
    )
    try:
        path = tmp / "engine.db"
        db, workspace_id, _ = new_database(path)
        # Phase 2's events (only generated when it runs: a run of other phases needs none).
        work = Workload([], [], [], [], {}, 0.0)
        if "journeys" in args.phases and "engine" not in args.phases:
            args.phases.append("engine")  # the 100-journey rate is a ratio to the engine phase's
        if "engine" in args.phases:
            with console.status(f"generating {args.events:,} events for {args.profiles:,} profiles"):
                t0 = time.perf_counter()
                end_ms = int(time.time() * 1000)
                work = generate(args.profiles, args.events, args.seed, end_ms - int(args.span * 1000), end_ms, workspace_id, sent=False)
                figures.generate_seconds = time.perf_counter() - t0
            figures.payload_bytes, figures.mix = work.payload_bytes, work.counts
            console.print(
                f"{args.events:,} events for {args.profiles:,} profiles over the last {args.span:g} s, {work.payload_bytes:.0f} bytes "
                f"each as stored; generated in {figures.generate_seconds:.1f} s"
            )
        gc.collect()
        gc.freeze()  # the workload is long-lived: keep the collector off it while measuring
        with progress:
            if "engine" in args.phases:
                task = progress.add_task("L: raw SQLite 1,000-row txns", total=len(work.rows), info="")
                figures.L, figures.L_early = load_events(path, work, workspace_id, lambda n: progress.advance(task, n))
                figures.L_early_rows = min(EARLY_ROWS, max(1000, args.events // 5 // 1000 * 1000))
                progress.update(task, info=f"{figures.L:,.0f} rows/s")
                many = tmp / "journeys.db"
                if "journeys" in args.phases:  # the same events, decided again with 100 journeys live
                    for suffix in ("", ".key"):
                        if Path(str(path) + suffix).exists():
                            shutil.copyfile(str(path) + suffix, str(many) + suffix)
                task = progress.add_task("engine: process_events", total=len(work.rows), info="")
                figures.engine = run_engine(db, len(work.rows), args.batch, lambda n: progress.advance(task, n))
                figures.engine.profiles = args.profiles
                progress.update(task, info=f"{figures.engine.rate:,.0f} events/s, {figures.engine.rate / figures.L:.2f} x L")
                if "journeys" in args.phases:
                    from nudgeflow.store import database

                    many_db = database.create_db_engine(f"sqlite:///{many}")
                    publish_journeys(many_db, workspace_id, journey_variants(args.journeys)[len(list(EXAMPLES.glob("*.yaml"))) :])
                    task = progress.add_task(f"journeys: {args.journeys} live", total=len(work.rows), info="")
                    figures.journeys = run_engine(many_db, len(work.rows), args.batch, lambda n: progress.advance(task, n))
                    figures.journeys.profiles = args.profiles
                    progress.update(
                        task, info=f"{figures.journeys.rate:,.0f} events/s, {figures.journeys.rate / figures.engine.rate:.2f} x 11"
                    )
                    many_db.dispose()
            db.dispose()
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
            gc.unfreeze()
            del work  # a gigabyte of rows, no longer needed
            gc.collect()

            if "matching" in args.phases:
                work_units = args.match_passes * args.match_events + min(args.match_passes, 2) * max(1, args.match_events // 20)
                task = progress.add_task(f"matching: {args.triggers:,} triggers", total=work_units, info="")
                figures.matching = run_matching(
                    args.triggers, args.match_events, args.seed, args.match_passes, lambda n: progress.advance(task, n)
                )
                m = figures.matching
                progress.update(task, completed=work_units, info=f"{m.indexed_rate:,.0f} events/s (scan {m.naive_rate:,.0f})")

            if "timers" in args.phases:
                figures.timers = run_timers(tmp, args.timer_sizes, args.timer_batch, progress)

            if "latency" in args.phases:
                engine_rate = figures.engine.rate if figures.engine else float("inf")
                latency_work = generate(
                    args.latency_profiles, args.latency_events, args.seed + 2, int(time.time() * 1000) - 60_000,
                    int(time.time() * 1000), "unused", rows=False,
                )
                figures.latency = run_latency(tmp, latency_work, engine_rate, args, progress)

            if "backfill" in args.phases:
                figures.backfill = run_backfill(tmp, args, progress)

            if "segments" in args.phases:
                figures.segments = run_segments(tmp, args, progress)

            if "rollups" in args.phases:
                figures.rollups = run_rollups(tmp, args, progress)
        figures.seconds = time.perf_counter() - started
        return figures
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- the report -----------------------------------------------------------------------------------

ENGINE_TARGET, MATCH_TARGET, P50_TARGET, P99_TARGET = 0.8, 100_000, 100.0, 1000.0
DECISION_TARGET_US = 30.0  # issue 18 item 3: the engine's CPU per event
JOURNEYS_TARGET = 0.7  # issue 18 item 6: with 100 live journeys, x the rate with the 11 examples
# Timers (issue 18 item 4): >= 20,000 fired/s at 10,000 pending, >= 15,000/s at 1.1M pending.
TIMER_TARGET_SMALL, TIMER_SMALL_PENDING = 20_000, 20_000  # a round of up to 20,000 pending (--quick's 14,000)
TIMER_TARGET_LARGE, TIMER_LARGE_PENDING = 15_000, 1_000_000  # a round of 1,000,000 or more


def _verdict(ok: bool) -> str:
    return "met" if ok else "missed"


FLAT_BYTES_PER_TIMER = 50


def bytes_per_timer(rounds: list[TimerRound]) -> float:
    """How much the firing process's peak RSS grew per pending timer added, first round to last."""
    if len(rounds) < 2 or rounds[-1].pending == rounds[0].pending:
        return 0.0
    return (rounds[-1].rss_peak_mb - rounds[0].rss_peak_mb) * 2**20 / (rounds[-1].pending - rounds[0].pending)


def targeted_timer_rounds(rounds: list[TimerRound]) -> list[tuple[TimerRound, int | None]]:
    """The rounds the report rows show, each with its target: the largest round of up to
    20,000 pending (target 20,000/s) and the last round (15,000/s from 1,000,000 pending; no
    target between the two sizes, where the issue sets none)."""
    small = [r for r in rounds if r.pending <= TIMER_SMALL_PENDING]
    shown: list[tuple[TimerRound, int | None]] = [(small[-1], TIMER_TARGET_SMALL)] if small else []
    last = rounds[-1]
    if not small or small[-1] is not last:
        target = TIMER_TARGET_LARGE if last.pending >= TIMER_LARGE_PENDING else None
        shown.append((last, target))
    return shown


def timers_flat(rounds: list[TimerRound]) -> bool:
    """Flat: under 50 bytes of RSS per pending timer added. A timer kept in memory costs
    several times that (a heap entry, its key, its due time, its payload: ~200 bytes in
    Python); what does grow here is SQLite's page cache, up to its fixed cap."""
    return bytes_per_timer(rounds) < FLAT_BYTES_PER_TIMER


def report(f: Figures) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    if f.engine is not None:
        e = f.engine
        ratio = e.rate / f.L
        shown = f"{ratio:.2f}" if (round(ratio, 2) >= ENGINE_TARGET) == (ratio >= ENGINE_TARGET) else f"{ratio:.3f}"
        rows += [
            (
                f"L: raw SQLite batched inserts of the same {f.events:,} events (1,000-row txns, FULL)",
                f"{f.L:,.0f} rows/s",
                f"first {f.L_early_rows:,} rows: {f.L_early:,.0f} rows/s",
                "",
            ),
            (
                f"engine: event committed -> decisions + outbox committed ({e.profiles:,} profiles, {e.events:,} events, batches of {e.batch:,})",
                f"{e.rate:,.0f} events/s",
                f"{shown} x L (target >= {ENGINE_TARGET})",
                _verdict(ratio >= ENGINE_TARGET),
            ),
            (
                f"  the engine's decision: writer thread CPU per event (read, load state, decide, write, commit; {e.journeys} journeys)",
                f"{e.writer_us:.1f} us/event",
                f"target <= {DECISION_TARGET_US:.0f} us",
                _verdict(e.writer_us <= DECISION_TARGET_US),
            ),
            (
                "  what it decided",
                f"{e.messages_queued:,} messages queued",
                f"{e.timers_armed:,} timers armed, {e.runs:,} runs, {e.states:,} profile states",
                "",
            ),
        ]
    if f.engine is not None and f.journeys is not None:
        e, j = f.engine, f.journeys
        ratio = j.rate / e.rate
        rows += [
            (
                f"engine with {j.journeys} live journeys of the example kinds (the same events)",
                f"{j.rate:,.0f} events/s",
                f"{ratio:.2f} x the {e.journeys} examples' rate (target >= {JOURNEYS_TARGET}; by writer CPU "
                f"{e.writer_us / j.writer_us:.2f}: {j.writer_us:.1f} us/event)",
                _verdict(ratio >= JOURNEYS_TARGET),
            ),
            (
                "  what it decided",
                f"{j.messages_queued:,} messages queued",
                f"{j.timers_armed:,} timers armed, {j.runs:,} runs, {j.states:,} profile states",
                "",
            ),
        ]
    if f.matching is not None:
        m = f.matching
        rows += [
            (
                f"trigger matching, pure core: {m.journeys:,} live triggers over {m.names} event names, index + filters "
                f"({m.candidates_per_event:.1f} candidates per event; best of {m.passes} passes)",
                f"{m.indexed_rate:,.0f} events/s",
                f"target >= {MATCH_TARGET:,} (median pass {m.indexed_median_rate:,.0f})",
                _verdict(m.indexed_rate >= MATCH_TARGET),
            ),
            (
                f"  for contrast: a naive scan of all {m.journeys:,} triggers per event",
                f"{m.naive_rate:,.0f} events/s",
                f"the index is {m.indexed_rate / m.naive_rate:.0f} x faster",
                "",
            ),
        ]
    if f.timers:
        rows += [
            (
                f"timers: firing {r.fired:,} due of {r.pending:,} pending (fire_timers, batches)",
                f"{r.rate:,.0f} timers/s",
                f"target >= {target:,}" if target else "no target at this size",
                _verdict(r.rate >= target) if target else "",
            )
            for r, target in targeted_timer_rounds(f.timers)
        ]
        rows += [
            (
                "  resident memory of the firing process, " + " / ".join(f"{r.pending:,}" for r in f.timers) + " pending",
                " / ".join(f"{r.rss_peak_mb:.0f}" for r in f.timers) + " MB peak",
                f"{bytes_per_timer(f.timers):.0f} bytes per timer added (flat: < {FLAT_BYTES_PER_TIMER})",
                _verdict(timers_flat(f.timers)),
            ),
        ]
    if f.latency is not None:
        lat = f.latency
        rows += [
            (f"serve, engine on: /v1 saturation ({lat.saturation_conns} conns, closed loop)", f"{lat.saturation:,.0f} req/s", "", ""),
            (
                f"event accepted -> log channel send, paced at {lat.rate:,.0f} req/s ({lat.rate_basis})",
                f"p50 {lat.p50:,.0f} ms, p99 {lat.p99:,.0f} ms",
                f"p50 <= {P50_TARGET:.0f} ms, p99 <= {P99_TARGET:.0f} ms",
                _verdict(lat.p50 <= P50_TARGET and lat.p99 <= P99_TARGET),
            ),
        ]
    if f.backfill is not None:
        rows += backfill_rows(f.backfill)
    if f.segments is not None:
        rows += segment_rows(f.segments)
    if f.rollups is not None:
        rows += rollup_rows(f.rollups)
    return rows


def print_table(rows: list[tuple[str, str, str, str]], f: Figures, info: dict[str, str]) -> None:
    console.print(ingest_bench.results_table("Nudgeflow engine benchmark", rows))
    if f.timers:
        console.print(timers_table(f.timers))
    if f.latency is not None:
        lat = f.latency
        console.print(
            f"latency over {lat.messages:,} messages: p90 {lat.p90:.0f} ms, max {lat.max:.0f} ms; {lat.requests:,} requests "
            f"at {lat.achieved:,.0f}/s, HTTP p50 {lat.http_p50:.1f} ms / p99 {lat.http_p99:.1f} ms; the engine was idle "
            f"{lat.catch_up:.1f} s after the last request; server CPU {lat.server_cpu:.2f} cores"
        )
    if f.engine is not None:
        console.print(f"engine process CPU {f.engine.cpu:.2f} cores busy; messages by journey: {f.engine.by_journey}")
    if f.backfill is not None:
        b = f.backfill
        console.print(
            f"backfill: the publish command took {b.publish_seconds:.1f} s (it counted {b.counted:,} who would enter at once); "
            f"{b.decided:,} profiles decided, {b.entered:,} entered; ingest p50 {b.http_p50:.1f} ms, max {b.http_max:.1f} ms "
            f"during it (p99 while the command counted {b.http_p99_counting:.1f} ms, while the engine ran it "
            f"{b.http_p99_engine:.1f} ms); server CPU {b.server_cpu:.2f} cores; setup {b.setup_seconds:.0f} s"
        )
    console.print(
        f"[dim]{info['cpu']}, {info['cores']} cores, {info['ram']}, {info['disk']}; Python {info['python']}, "
        f"SQLite {info['sqlite']}; load {info['load']}; commit {info['commit']}; whole run {f.seconds:.0f} s[/]"
    )


def timers_table(rounds: list[TimerRound]) -> Table:
    table = Table(title="pending timers", title_justify="left")
    columns = ("pending", "due, fired", "firing rate", "firing thread CPU", "RSS at start", "RSS peak", "RSS at end",
               "Python objects peak")
    for name in columns:
        table.add_column(name, justify="right")
    for r in rounds:
        table.add_row(
            f"{r.pending:,}", f"{r.fired:,}", f"{r.rate:,.0f}/s", f"{r.thread_cpu_us:.1f} us a timer", f"{r.rss_start_mb:.0f} MB",
            f"{r.rss_peak_mb:.0f} MB", f"{r.rss_end_mb:.0f} MB", f"{r.blocks_peak:,}",
        )
    return table


def write_results(rows: list[tuple[str, str, str, str]], f: Figures, args: argparse.Namespace, info: dict[str, str]) -> None:
    """Rewrite the engine section of RESULTS.md (after the ingest sections, which are kept
    as they are), keeping its hand-written notes and one history line per run."""
    results: Path = args.results
    e, m, lat = f.engine, f.matching, f.latency
    big = f.timers[-1] if f.timers else None
    line = (
        f"| {info['date']} | {info['commit']} | {f.events:,} | {f.profiles:,} | "
        + (f"{f.L:,.0f} | {e.rate:,.0f} | {e.rate / f.L:.2f} | " if e else "- | - | - | ")
        + (f"{m.indexed_rate:,.0f} | " if m else "- | ")
        + (f"{big.pending:,} | {big.rate:,.0f} | " + " / ".join(f"{r.rss_peak_mb:.0f}" for r in f.timers) + " | " if big else "- | - | - | ")
        + (f"{lat.rate:,.0f} | {lat.p50:,.0f} / {lat.p99:,.0f} |" if lat else "- | - |")
    )
    defaults = {**DEFAULTS, **(QUICK if args.quick else {})}
    command = "python benchmarks/engine.py" + (" --quick" if args.quick else "") + "".join(
        f" --{name.replace('_', '-')} {getattr(args, name)}" for name in ("profiles", "events") if getattr(args, name) != defaults[name]
    )
    mix = ", ".join(f"{name} {n / f.events:.0%}" for name, n in sorted(f.mix.items(), key=lambda kv: -kv[1]) if n / f.events >= 0.005)
    lines = [
        "# Engine benchmark results",
        "",
        "Written by `benchmarks/engine.py` (its docstring says what each figure means). Ratios compare",
        "figures measured in the same run; the machine is shared, so absolute figures move with its load.",
        "",
        f"## Latest engine run: {info['date']}",
        "",
        f"`{command}`, {f.seconds / 60:.1f} minutes. Events: {f.events:,} generated Segment messages from "
        f"{f.profiles:,} people (web and app) over the last {args.span:g} s, {f.payload_bytes:.0f} bytes each as stored: {mix}. "
        "Every journey of examples/journeys is live. The engine runs as `nudgeflow serve` runs it: "
        f"process_events, {args.batch:,} events per transaction, through the writer thread, SQLite WAL synchronous=FULL.",
        "",
        "| measure | figure | ratio / target | |",
        "| --- | ---: | --- | --- |",
        *[f"| {measure.strip()} | {figure} | {ratio} | {ok} |" for measure, figure, ratio, ok in rows],
        "",
    ]
    if e is not None:
        lines += [
            f"Phase 2 queued {e.messages_queued:,} messages ("
            + ", ".join(f"{jid} {n:,}" for jid, n in e.by_journey.items())
            + f") and left {e.timers_armed:,} timers armed; {e.batches:,} transactions; the engine process kept "
            f"{e.cpu:.2f} cores busy; {e.errors} events failed.",
            "",
        ]
    if f.timers:
        lines += [
            "Pending timers (phase 4): cart-abandonment runs waiting in their 23-hour wait, all due; each firing "
            f"sends the 24-hour email, arms the 48-hour wait and updates the run; fire_timers in batches of {args.timer_batch:,}, "
            "in a fresh process per round. `pending` counts every timer in the table when the round began (the "
            "48-hour waits armed by earlier rounds included).",
            "",
            "| pending timers | fired | firing rate | firing process RSS at start | peak | at end | Python objects at peak |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *[
                f"| {r.pending:,} | {r.fired:,} | {r.rate:,.0f}/s | {r.rss_start_mb:.0f} MB | {r.rss_peak_mb:.0f} MB | "
                f"{r.rss_end_mb:.0f} MB | {r.blocks_peak:,} |"
                for r in f.timers
            ],
            "",
        ]
    if lat is not None:
        lines += [
            f"Latency (phase 5): `nudgeflow serve` with default settings (engine on, rate limit off) reached "
            f"{lat.saturation:,.0f} req/s from {lat.saturation_conns} closed-loop connections; the paced run sent "
            f"{lat.requests:,} requests at {lat.achieved:,.0f}/s ({lat.rate_basis}) for {lat.seconds:g} s, open loop. Over the "
            f"{lat.messages:,} messages sent at once on an event: p50 {lat.p50:.0f} ms, p90 {lat.p90:.0f} ms, p99 "
            f"{lat.p99:.0f} ms, max {lat.max:.0f} ms (log channel sent_at_ms - event received_at_ms). HTTP answers: p50 "
            f"{lat.http_p50:.1f} ms, p99 {lat.http_p99:.1f} ms. Server CPU {lat.server_cpu:.2f} cores.",
            "",
        ]
    lines += [
        *ingest_bench.machine_lines(info, f"{info['os']}; Python {info['python']}; SQLite {info['sqlite']}", disk=True),
    ]
    ingest_bench.write_section(results, "engine", lines, [
        "| date | commit | events | profiles | L rows/s | engine events/s | engine / L | matching events/s "
        "| pending timers | timers fired/s | firing RSS MB by round | paced req/s | p50 / p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ], line)
    console.print(f"results written to {results}")


DEFAULTS = {"profiles": 100_000, "events": 1_000_000}
QUICK = {
    "profiles": 2_000, "events": 20_000, "match_events": 20_000, "match_passes": 2, "timer_sizes": [1_000, 3_000, 10_000],
    "latency_profiles": 500, "latency_events": 20_000, "saturation_seconds": 2.0, "latency_seconds": 3.0,
    "backfill_profiles": 5_000, "backfill_events": 50_000, "segment_profiles": 2_000, "segment_events": 20_000,
}
FULL = {
    "match_events": 200_000, "match_passes": 5, "timer_sizes": [10_000, 100_000, 1_000_000], "latency_profiles": 2_000,
    "latency_events": 60_000, "saturation_seconds": 5.0, "latency_seconds": 20.0,
    "backfill_profiles": 100_000, "backfill_events": 1_000_000, "segment_profiles": 100_000, "segment_events": 1_000_000,
    "segments": 50,
}
PHASES = ("engine", "journeys", "matching", "timers", "latency", "backfill", "segments")
ON_DEMAND = ("rollups",)  # run only when named in --phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that it works (well under a minute)")
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/RESULTS.md")
    parser.add_argument("--profiles", type=int, help="people the events come from (default 100,000; 2,000 with --quick)")
    parser.add_argument("--events", type=int, help="events the engine decides (default 1,000,000; 20,000 with --quick)")
    parser.add_argument("--span", type=float, default=300.0, help="seconds of event time the events cover, ending now")
    parser.add_argument("--batch", type=int, help="events per transaction (default: Settings.engine_batch_events)")
    parser.add_argument("--journeys", type=int, default=100, help="live journeys in the journeys phase (default 100)")
    parser.add_argument("--triggers", type=int, default=1000, help="live triggers in the matching phase")
    parser.add_argument("--match-events", type=int, help="events through the matching phase (default 200,000)")
    parser.add_argument("--match-passes", type=int, help="passes over them; the best counts (default 5; 2 with --quick)")
    parser.add_argument("--timers", type=str, help="pending timers per round, comma-separated (default 10000,100000,1000000)")
    parser.add_argument("--timer-batch", type=int, help="timers per transaction (default: Settings.engine_batch_timers)")
    parser.add_argument("--latency-profiles", type=int, help="people behind the latency phase's requests")
    parser.add_argument("--latency-events", type=int, help="requests generated for the latency phase")
    parser.add_argument("--saturation-seconds", type=float, help="measured seconds of the closed-loop saturation run")
    parser.add_argument("--latency-seconds", type=float, help="seconds of the paced run (default 20; 3 with --quick)")
    parser.add_argument("--connections", type=int, default=64, help="client connections to the server")
    parser.add_argument("--backfill-profiles", type=int, help="profiles already known in the backfill phase (default 100,000; 5,000 with --quick)")
    parser.add_argument("--backfill-events", type=int, help="their stored events (default 1,000,000; 50,000 with --quick)")
    parser.add_argument("--backfill-span-days", type=float, default=120.0, help="days of event time the stored events cover")
    parser.add_argument("--backfill-rate", type=float, default=500.0, help="ingest requests/s sent during the backfill")
    parser.add_argument("--backfill-prepared", type=Path,
                        help="keep the backfill phase's prepared database here and copy it on later runs instead of "
                             "building it again (for a developer's loop; a recorded run says it was reused)")
    parser.add_argument("--segments", type=int, help="live segments in the segments phase's engine run (default 50)")
    parser.add_argument("--segment-parts", default="apply,engine",
                        help="the segments phase's parts to run: apply, engine or both (default apply,engine)")
    parser.add_argument("--segment-writes-off", action="store_true",
                        help="breakdown: the segments phase's engine run writes no members rows or Segment Entered / "
                             "Exited (implies --no-record)")
    parser.add_argument("--segment-profiles", type=int, help="people in the segments phase's engine runs (default 100,000)")
    parser.add_argument("--segment-events", type=int, help="events of those runs (default 1,000,000)")
    parser.add_argument("--rollup-sizes", help="the rollups phase's sizes, PROFILESxEVENTS comma-separated "
                        "(default 2000x20000,20000x200000; 2000x20000 with --quick)")
    parser.add_argument("--rollup-rounds", type=int, default=3, help="the rollups phase's rounds of on, off (default 3)")
    parser.add_argument("--phases", type=str, default=",".join(PHASES),
                        help=f"which phases to run (default {','.join(PHASES)}; also: {','.join(ON_DEMAND)})")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results file to update (default benchmarks/RESULTS.md)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # internal: a phase in a process of its own
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from nudgeflow.settings import Settings

    if args.phase == "fire-timers":
        fire_timers_phase(args.db, args.timer_batch or Settings().engine_batch_timers)
        return
    sizes = {**DEFAULTS, **FULL, **(QUICK if args.quick else {})}
    for name, value in sizes.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    args.timer_sizes = [int(x) for x in args.timers.split(",")] if args.timers else sizes["timer_sizes"]
    args.batch = args.batch or Settings().engine_batch_events
    args.timer_batch = args.timer_batch or Settings().engine_batch_timers
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not set(args.segment_parts.split(",")) or set(args.segment_parts.split(",")) - {"apply", "engine"}:
        parser.error(f"--segment-parts takes apply, engine or both, not {args.segment_parts!r}")
    if args.segment_writes_off:
        args.no_record = True  # a breakdown, never the recorded figure
    unknown = set(args.phases) - set(PHASES) - set(ON_DEMAND)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))} (choose from {', '.join(PHASES + ON_DEMAND)})")
    if args.rollup_rounds < 1:
        parser.error("--rollup-rounds must be at least 1")
    args.rollup_sizes = parse_rollup_sizes(args.rollup_sizes or ("2000x20000" if args.quick else "2000x20000,20000x200000"))
    if args.profiles < 1 or args.events < 1:
        parser.error("--profiles and --events must be at least 1")
    info = ingest_bench.machine()
    ingest_bench.announce("engine", info, console)
    figures = run(args)
    rows = report(figures)
    print_table(rows, figures, info)
    if figures.backfill is not None and not args.no_record:
        write_backfill_results(figures.backfill, args, info)
    if figures.segments is not None and not args.no_record:
        write_segment_results(figures.segments, args, info)
    if figures.rollups is not None and not args.no_record:
        write_rollup_results(figures.rollups, args, info)
    if not args.no_record and set(args.phases) >= set(PHASES):
        write_results(rows, figures, args, info)
    elif not args.no_record and set(args.phases) - set(ON_DEMAND):
        console.print("[yellow]not recorded: RESULTS.md takes only runs of every phase[/]")


if __name__ == "__main__":
    main()
