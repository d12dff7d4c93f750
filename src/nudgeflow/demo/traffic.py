"""Generated shop and app traffic for the demo: pure, seeded, Segment-shaped.

People arrive anonymously on the web or in the mobile app during the first `days`, browse,
sometimes sign up (a `Signed Up` track and an `identify` that carries both ids, which
merges the anonymous profile into the known one), and come back over those days to view
products, save some to a wishlist, fill carts, start checkouts and order, with Segment's
e-commerce spec names and properties. Then life goes on until `horizon_days`, as the
example journeys (examples/journeys) expect to find it:

- the shop's backend reports `Order Delivered` a few days after most orders (not all: a
  parcel lost in the post is a review request after the timeout);
- app users open the app (`Application Opened`, with `context.location` when they allow
  it: some near one of the New York stores, most not), complete levels of the app's
  "Style Quest" game (`Level Completed`; a few flushed late from an offline queue, with a
  `sentAt` after their `timestamp`), and a few open it every morning for a week or more
  (some miss a day and break the streak);
- some people upgrade to the pro plan (an `identify` with `plan: pro` from the billing
  backend, and `Subscription Upgraded`), some of them downgrade or cancel later, and a few
  of those upgrade again the next day;
- everyone else goes silent, and a few come back a month later, after a win-back email.

Nothing here reads the clock or does I/O: the same seed and start give the same messages.
Messages come in the order they reach the server: by `sentAt` when a message has one (an
offline queue flushed late), else by `timestamp`.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from nudgeflow.model.event_names import APPLICATION_OPENED
from nudgeflow.model.iso_time import iso_utc

VIEWED = "Product Viewed"
ADDED = "Product Added"
WISHLISTED = "Product Added to Wishlist"
CHECKOUT = "Checkout Started"
ORDERED = "Order Completed"
DELIVERED = "Order Delivered"
SIGNED_UP = "Signed Up"
OPENED = APPLICATION_OPENED
LEVEL = "Level Completed"
UPGRADED = "Subscription Upgraded"
DOWNGRADED = "Subscription Downgraded"
CANCELLED = "Subscription Cancelled"

CURRENCY = "USD"
PRO_PRICE = 12.0


@dataclass(frozen=True)
class Product:
    product_id: str
    sku: str
    name: str
    category: str
    brand: str
    price: float


CATALOG: tuple[Product, ...] = tuple(
    Product(f"prod_{i:03d}", f"{cat[:3].upper()}-{1000 + i}", name, cat, brand, price)
    for i, (name, cat, brand, price) in enumerate(
        [
            ("Trail Running Shoes", "Shoes", "Northpeak", 119.0),
            ("Everyday Sneakers", "Shoes", "Loop", 74.5),
            ("Leather Ankle Boots", "Shoes", "Harlow", 159.0),
            ("Merino Crew Sweater", "Apparel", "Fjell", 89.0),
            ("Organic Cotton Tee", "Apparel", "Loop", 24.0),
            ("Rain Shell Jacket", "Apparel", "Northpeak", 139.0),
            ("Slim Chinos", "Apparel", "Harlow", 59.9),
            ("Canvas Backpack", "Bags", "Fjell", 79.0),
            ("Weekender Duffel", "Bags", "Harlow", 129.0),
            ("Insulated Bottle", "Outdoor", "Northpeak", 29.0),
            ("Ultralight Tent", "Outdoor", "Northpeak", 349.0),
            ("Camping Stove", "Outdoor", "Ember", 64.0),
            ("Wireless Earbuds", "Electronics", "Pulse", 99.0),
            ("Smart Watch", "Electronics", "Pulse", 249.0),
            ("Portable Speaker", "Electronics", "Pulse", 59.0),
            ("Ceramic Pour-Over Set", "Home", "Ember", 42.0),
            ("Linen Duvet Cover", "Home", "Fjell", 119.0),
            ("Scented Candle Trio", "Home", "Ember", 32.0),
            ("Yoga Mat", "Fitness", "Loop", 38.0),
            ("Adjustable Dumbbells", "Fitness", "Pulse", 199.0),
        ]
    )
)

FIRST_NAMES = (
    "Ada",
    "Ben",
    "Chloé",
    "Dmitri",
    "Emma",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemi",
    "Lucas",
    "Maya",
    "Noah",
    "Olga",
    "Priya",
    "Quentin",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Vera",
    "Wen",
    "Yusuf",
    "Zoé",
)
LAST_NAMES = (
    "Andersen",
    "Bakker",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "García",
    "Hoffmann",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Martin",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Vogel",
    "Walsh",
)
# (timezone, locale, country, (latitude, longitude) of the city) people live in; the shop
# is in New York, so more of its people are.
PLACES = (
    ("America/New_York", "en-US", "US", (40.7306, -73.9866)),
    ("America/Los_Angeles", "en-US", "US", (34.0522, -118.2437)),
    ("America/Chicago", "en-US", "US", (41.8781, -87.6298)),
    ("Europe/London", "en-GB", "GB", (51.5072, -0.1276)),
    ("Europe/Paris", "fr-FR", "FR", (48.8566, 2.3522)),
    ("Europe/Berlin", "de-DE", "DE", (52.5200, 13.4050)),
    ("Europe/Madrid", "es-ES", "ES", (40.4168, -3.7038)),
    ("Asia/Tokyo", "ja-JP", "JP", (35.6762, 139.6503)),
    ("Australia/Sydney", "en-AU", "AU", (-33.8688, 151.2093)),
    ("America/Sao_Paulo", "pt-BR", "BR", (-23.5505, -46.6333)),
)
PLACE_WEIGHTS = (4, 2, 1, 2, 1, 1, 1, 1, 1, 1)
# The shop's stores: the places of examples/journeys/push-near-store.yaml.
STORES = (("Flagship Store", 40.7411, -73.9897), ("Brooklyn Store", 40.7033, -73.9881))
PAGES = (("Home", "/"), ("New Arrivals", "/new"), ("Sale", "/sale"), ("About", "/about"))
SCREENS = ("Home", "Search", "Wishlist", "Account")
COUPONS = ("WELCOME10", "SPRING15")
GAME = "Style Quest"

PLATFORMS = ("web", "ios", "android")
SERVER_CONTEXT = {"library": {"name": "analytics-python", "version": "2.3.3"}}

# How much of life after the first days the generator makes (shares of people).
DELIVERED_SHARE = 0.85  # orders whose delivery the backend reports
HABIT_SHARE = 0.3  # app users who open the app every morning for a while
BROKEN_HABIT_SHARE = 0.35  # of those, who miss a day
LOCATION_SHARE = 0.6  # app users who share their location
NEAR_STORE_SHARE = 0.35  # app opens of a New Yorker that happen near a store
OFFLINE_SHARE = 0.15  # Level Completed events queued offline and sent late
PRO_SHARE = 0.25  # known people who upgrade to pro
DOWNGRADE_SHARE = 0.6  # of those, who downgrade or cancel later
REGRET_SHARE = 0.3  # of those, who upgrade again the next day
COMEBACK_SHARE = 0.3  # known people who come back a month after going silent
RETURN_SHARE = 0.5  # carts known people left that they come back to and order
LATE_SIGN_UP_SHARE = 0.5  # visitors who left a cart and sign up most of an hour later


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Metres between two nearby points (an equirectangular approximation: fine within a city)."""
    d_lat = (b[0] - a[0]) * 111_195
    d_lon = (b[1] - a[1]) * 111_195 * math.cos(math.radians((a[0] + b[0]) / 2))
    return math.hypot(d_lat, d_lon)


def _offset(lat: float, lon: float, metres: float, bearing: float) -> tuple[float, float]:
    """A point `metres` away in direction `bearing` (radians from north): fine for short hops."""
    d_lat = metres * math.cos(bearing) / 111_195
    d_lon = metres * math.sin(bearing) / (111_195 * math.cos(math.radians(lat)))
    return round(lat + d_lat, 6), round(lon + d_lon, 6)


class _Person:
    """One simulated person: their ids, device and the messages they produce."""

    def __init__(self, rng: random.Random, index: int, start: datetime, days: float, end: datetime) -> None:
        self.rng = rng
        self.index = index
        self.anonymous_id = _uuid(rng)
        self.user_id: str | None = None
        self.platform = rng.choices(PLATFORMS, weights=(5, 3, 2))[0]
        self.place = rng.choices(PLACES, weights=PLACE_WEIGHTS)[0]
        self.first_name = rng.choice(FIRST_NAMES)
        self.last_name = rng.choice(LAST_NAMES)
        self.start = start
        self.window_end = start + timedelta(days=days)
        self.end = end
        self.now = start + timedelta(seconds=rng.uniform(0, days * 86400 * 0.6))
        self.messages: list[dict[str, Any]] = []
        self.viewed: list[Product] = []
        self.orders: list[tuple[datetime, str]] = []
        self.level = 0
        self.left_carts: list[tuple[datetime, str, dict[Product, int]]] = []  # a known person's abandoned carts
        self.anonymous_cart_at: datetime | None = None  # when a visitor last added to a cart they left
        self.shares_location = rng.random() < LOCATION_SHARE
        self.home = self._home()
        self.context = self._context()

    def _home(self) -> tuple[float, float]:
        """Where the person is when not at a store: somewhere in their city, well away from both."""
        while True:
            home = _offset(*self.place[3], self.rng.uniform(1500, 9000), self.rng.uniform(0, 2 * math.pi))
            if all(_distance_m(home, (lat, lon)) > 1500 for _name, lat, lon in STORES):
                return home

    @property
    def in_app(self) -> bool:
        return self.platform != "web"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.place[0])

    def _context(self) -> dict[str, Any]:
        tz, locale = self.place[0], self.place[1]
        ip = (
            f"{self.rng.randint(11, 223)}.{self.rng.randint(0, 255)}."
            f"{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"
        )
        ctx: dict[str, Any] = {"locale": locale, "timezone": tz, "ip": ip}
        if self.platform == "web":
            ctx["library"] = {"name": "analytics.js", "version": "5.2.0"}
            ctx["userAgent"] = self.rng.choice(
                (
                    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15",
                    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
                    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
                )
            )
        else:
            ios = self.platform == "ios"
            ctx["library"] = {"name": "analytics-ios" if ios else "analytics-android", "version": "4.1.8"}
            ctx["app"] = {"name": "Nudgeshop", "version": "3.4.1", "build": "341", "namespace": "com.nudgeshop.app"}
            ctx["device"] = (
                {"type": "ios", "manufacturer": "Apple", "model": self.rng.choice(("iPhone15,2", "iPhone14,5"))}
                if ios
                else {"type": "android", "manufacturer": self.rng.choice(("Google", "Samsung")), "model": "Pixel 8"}
            )
            ctx["os"] = {"name": "iOS", "version": "17.4"} if ios else {"name": "Android", "version": "14"}
            ctx["network"] = {"wifi": self.rng.random() < 0.6, "cellular": True}
        return ctx

    # -- building messages ------------------------------------------------------------

    def _tick(self, low: float, high: float) -> None:
        self.now += timedelta(seconds=self.rng.uniform(low, high))

    def _emit(self, type_: str, *, context: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"type": type_, "messageId": _uuid(self.rng), "timestamp": iso_utc(self.now)}
        if self.user_id is not None:
            message["userId"] = self.user_id
        # Client libraries keep sending the anonymousId after identify, as Segment's do.
        message["anonymousId"] = self.anonymous_id
        message.update(fields)
        message["context"] = context if context is not None else self.context
        self.messages.append(message)
        return message

    def _from_backend(self, type_: str, **fields: Any) -> dict[str, Any]:
        """A message the shop's own servers send (deliveries, billing): the userId only."""
        message: dict[str, Any] = {
            "type": type_,
            "messageId": _uuid(self.rng),
            "timestamp": iso_utc(self.now),
            "userId": self.user_id,
        }
        message.update(fields)
        message["context"] = SERVER_CONTEXT
        self.messages.append(message)
        return message

    def _track(self, event: str, properties: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._emit("track", event=event, properties=properties or {})

    def _product_properties(self, product: Product, position: int | None = None) -> dict[str, Any]:
        props: dict[str, Any] = {
            "product_id": product.product_id,
            "sku": product.sku,
            "name": product.name,
            "category": product.category,
            "brand": product.brand,
            "price": product.price,
            "currency": CURRENCY,
            "url": f"https://shop.example.com/p/{product.product_id}",
            "image_url": f"https://cdn.shop.example.com/{product.sku}.jpg",
        }
        if position is not None:
            props["position"] = position
        return props

    def _look_around(self) -> None:
        if self.platform == "web":
            title, path = self.rng.choice(PAGES)
            self._emit(
                "page",
                name=title,
                properties={
                    "path": path,
                    "url": f"https://shop.example.com{path}",
                    "title": f"{title} | Nudgeshop",
                    "referrer": self.rng.choice(("https://www.google.com/", "", "https://news.example.org/")),
                },
            )
        else:
            self._emit("screen", name=self.rng.choice(SCREENS))

    def _location(self) -> dict[str, Any] | None:
        """Where the app says the person is (Segment's context.location), if they allow it."""
        if not self.shares_location:
            return None
        if self.place[0] == "America/New_York" and self.rng.random() < NEAR_STORE_SHARE:
            _name, lat, lon = self.rng.choice(STORES)
            lat, lon = _offset(lat, lon, self.rng.uniform(20, 180), self.rng.uniform(0, 2 * math.pi))
        else:
            lat, lon = _offset(*self.home, self.rng.uniform(0, 400), self.rng.uniform(0, 2 * math.pi))
        return {"latitude": lat, "longitude": lon, "speed": 0}

    def open_app(self) -> None:
        context = self.context
        location = self._location()
        if location is not None:
            context = {**self.context, "location": location}
        self._emit(
            "track",
            event=OPENED,
            context=context,
            properties={"from_background": self.rng.random() < 0.5, "version": "3.4.1", "build": "341"},
        )

    def play(self) -> None:
        """Levels of the app's game; a few are queued offline and reach the server late."""
        for _ in range(self.rng.randint(1, 2)):
            self._tick(60, 400)
            self.level += 1
            message = self._track(
                LEVEL,
                {
                    "game": GAME,
                    "level": self.level,
                    "score": self.rng.randint(200, 990),
                    "duration_s": self.rng.randint(40, 380),
                },
            )
            if self.rng.random() < OFFLINE_SHARE:
                message["sentAt"] = iso_utc(self.now + timedelta(minutes=self.rng.uniform(20, 180)))

    def session(self) -> None:
        if self.in_app:
            self.open_app()
            if self.rng.random() < 0.2:
                self.play()
        self._look_around()
        cart: dict[Product, int] = {}
        cart_id = _uuid(self.rng)
        for _ in range(self.rng.randint(1, 5)):
            self._tick(10, 120)
            # Interest clusters around a category, and people look at a thing twice.
            if self.viewed and self.rng.random() < 0.2:
                product = self.viewed[-1]
            else:
                pool = [p for p in CATALOG if self.viewed and p.category == self.viewed[-1].category] or list(CATALOG)
                product = self.rng.choice(pool if self.rng.random() < 0.6 else CATALOG)
            self.viewed.append(product)
            self._track(VIEWED, self._product_properties(product, position=self.rng.randint(1, 24)))
            if self.rng.random() < 0.08:
                self._tick(3, 30)
                self._track(WISHLISTED, {**self._product_properties(product), "wishlist_id": f"wl_{self.index:05d}"})
            elif self.rng.random() < 0.35:
                self._tick(5, 60)
                quantity = self.rng.choices((1, 2, 3), weights=(8, 2, 1))[0]
                cart[product] = cart.get(product, 0) + quantity
                props = self._product_properties(product)
                props.update(cart_id=cart_id, quantity=quantity)
                self._track(ADDED, props)
            if self.rng.random() < 0.15:
                self._tick(5, 60)
                self._look_around()
        if not cart:
            return
        # Some carts are left behind: the "you left this in your cart" journey's audience.
        if self.user_id is None or self.rng.random() < 0.35:
            if self.user_id is not None:
                self.left_carts.append((self.now, cart_id, cart))
            else:
                self.anonymous_cart_at = self.now
            return
        self.check_out(cart_id, cart)

    def check_out(self, cart_id: str, cart: dict[Product, int]) -> None:
        self._tick(20, 300)
        order_id = f"ord_{self.index:04d}_{len(self.orders) + 1}"
        products = [
            {
                "product_id": p.product_id,
                "sku": p.sku,
                "name": p.name,
                "category": p.category,
                "brand": p.brand,
                "price": p.price,
                "quantity": q,
                "position": i + 1,
            }
            for i, (p, q) in enumerate(cart.items())
        ]
        subtotal = round(sum(p.price * q for p, q in cart.items()), 2)
        coupon = self.rng.choice(COUPONS) if self.rng.random() < 0.2 else None
        discount = round(subtotal * (0.1 if coupon == "WELCOME10" else 0.15), 2) if coupon else 0.0
        shipping = 0.0 if subtotal >= 100 else 6.95
        tax = round((subtotal - discount) * 0.08, 2)
        revenue = round(subtotal - discount, 2)
        checkout = {
            "checkout_id": _uuid(self.rng),
            "order_id": order_id,
            "cart_id": cart_id,
            "affiliation": "Nudgeshop",
            "value": subtotal,
            "revenue": revenue,
            "shipping": shipping,
            "tax": tax,
            "discount": discount,
            "currency": CURRENCY,
            "products": products,
        }
        if coupon:
            checkout["coupon"] = coupon
        self._track(CHECKOUT, checkout)
        if self.rng.random() < 0.25:  # an abandoned checkout
            return
        self._tick(30, 240)
        completed = {k: v for k, v in checkout.items() if k != "value"}
        completed.update(subtotal=subtotal, total=round(revenue + shipping + tax, 2))
        self._track(ORDERED, completed)
        self.orders.append((self.now, order_id))

    def sign_up(self) -> None:
        self._tick(15, 180)
        tz, locale, country, _city = self.place
        self.user_id = f"user_{self.index:05d}"
        email = f"{self.first_name.lower()}.{self.last_name.lower()}.{self.index}@example.com"
        email = email.encode("ascii", "ignore").decode()  # é in a name, not in the demo's addresses
        method = self.rng.choice(("email", "google", "apple"))
        self._track(SIGNED_UP, {"method": method, "plan": "free"})
        traits: dict[str, Any] = {
            "email": email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "timezone": tz,
            "locale": locale,
            "created_at": iso_utc(self.now),
            "address": {"country": country},
            "plan": "free",
        }
        if self.rng.random() < 0.4:
            traits["phone"] = f"+1 555 01{self.rng.randint(10, 99)}"
        self._emit("identify", traits=traits)

    def new_device(self) -> None:
        """Browse anonymously on a second device, then log in there: its profile is merged."""
        user_id, self.user_id = self.user_id, None
        self.anonymous_id = _uuid(self.rng)
        self.platform = self.rng.choice([p for p in PLATFORMS if p != self.platform])
        self.context = self._context()
        self.session()
        self._tick(20, 120)
        self.user_id = user_id
        if self.rng.random() < 0.5:
            self._emit("alias", previousId=self.anonymous_id)
        else:
            self._emit("identify", traits={"last_login_platform": self.platform})

    # -- after the first days -----------------------------------------------------------

    def return_to_carts(self) -> None:
        """Back to a cart left behind, hours or days later (after the reminder, perhaps)."""
        for left_at, cart_id, cart in self.left_carts:
            if self.rng.random() >= RETURN_SHARE:
                continue
            self.now = left_at + timedelta(hours=self.rng.uniform(2, 60))
            if self.in_app:
                self.open_app()
            self._emit("screen", name="Cart") if self.in_app else self._emit(
                "page", name="Cart", properties={"path": "/cart", "url": "https://shop.example.com/cart"}
            )
            self._tick(20, 200)
            self.check_out(cart_id, cart)

    def deliveries(self) -> None:
        for ordered_at, order_id in self.orders:
            if self.rng.random() < DELIVERED_SHARE:
                self.now = ordered_at + timedelta(days=self.rng.uniform(1.5, 5))
                self._from_backend(
                    "track",
                    event=DELIVERED,
                    properties={"order_id": order_id, "carrier": self.rng.choice(("UPS", "USPS", "DHL"))},
                )

    def habit(self) -> None:
        """Open the app every morning, about the same local time, for a week or more."""
        days = self.rng.randint(7, 11)
        skip = self.rng.randint(2, 5) if self.rng.random() < BROKEN_HABIT_SHARE else None
        wake = time(self.rng.randint(6, 8), self.rng.randint(0, 59))
        first = (self.now.astimezone(self.zone) + timedelta(days=1)).date()
        for n in range(days):
            if n == skip:
                continue
            local = datetime.combine(first + timedelta(days=n), wake, tzinfo=self.zone)
            self.now = local.astimezone(UTC) + timedelta(minutes=self.rng.uniform(0, 20))
            self.open_app()
            self._tick(20, 200)
            if self.rng.random() < 0.3:
                self.play()
            self._emit("screen", name=self.rng.choice(SCREENS))

    def plan_changes(self) -> None:
        """Billing: an upgrade to pro; later perhaps a downgrade or a cancellation, and regret."""
        self.now += timedelta(hours=self.rng.uniform(6, 48))
        self._plan(
            "pro", UPGRADED, {"plan": "pro", "previous_plan": "free", "revenue": PRO_PRICE, "currency": CURRENCY}
        )
        if self.rng.random() >= DOWNGRADE_SHARE:
            return
        self.now += timedelta(days=self.rng.uniform(1, 8))
        to = self.rng.choice(("free", "cancelled"))
        self._plan(to, DOWNGRADED if to == "free" else CANCELLED, {"plan": to, "previous_plan": "pro"})
        if self.rng.random() < REGRET_SHARE:
            self.now += timedelta(hours=self.rng.uniform(2, 20))
            self._plan(
                "pro", UPGRADED, {"plan": "pro", "previous_plan": to, "revenue": PRO_PRICE, "currency": CURRENCY}
            )

    def _plan(self, plan: str, event: str, properties: dict[str, Any]) -> None:
        self._from_backend("identify", traits={"plan": plan})
        self._tick(1, 5)
        self._from_backend("track", event=event, properties=properties)

    def come_back(self) -> None:
        """Silent for a month: back some days after the win-back email (sent after 30 days)."""
        active = [m["timestamp"] for m in self.messages if m.get("event") in (OPENED, VIEWED, ORDERED)]
        if not active:
            return
        last = datetime.fromisoformat(max(active).replace("Z", "+00:00"))
        self.now = last + timedelta(days=30, hours=self.rng.uniform(3, 6 * 24))
        self.session()

    def live(self) -> list[dict[str, Any]]:
        self.session()
        if self.rng.random() < 0.6:
            if self.anonymous_cart_at is not None and self.rng.random() < LATE_SIGN_UP_SHARE:
                # Back to the tab most of an hour later, an account made to check out, then
                # distracted again: the welcome email and the cart reminder (an hour after the
                # last item) are due minutes apart, where the send policies' collision window
                # holds the second one back.
                self.now = max(self.now, self.anonymous_cart_at + timedelta(minutes=self.rng.uniform(45, 56)))
            self.sign_up()
            if self.rng.random() < 0.5:
                self.session()  # shop right after signing up
        while True:
            # Come back hours or a day or two later, a few times, until the window ends.
            self.now += timedelta(hours=self.rng.expovariate(1 / 14))
            if self.now >= self.window_end or self.rng.random() < 0.3:
                break
            if self.user_id is not None and self.rng.random() < 0.12:
                self.new_device()
            else:
                self.session()
            if self.user_id is None and self.rng.random() < 0.25:
                self.sign_up()
        after = self.now
        self.return_to_carts()
        self.deliveries()
        self.now = after
        if self.in_app and self.rng.random() < HABIT_SHARE:
            self.habit()
        if self.user_id is not None and self.rng.random() < PRO_SHARE:
            self.plan_changes()
        if self.user_id is not None and self.rng.random() < COMEBACK_SHARE:
            self.come_back()
        return [m for m in self.messages if _arrival(m) < iso_utc(self.end)]


def _arrival(message: dict[str, Any]) -> str:
    """When a message reaches the server: its sentAt (a queue flushed late), else its time."""
    return message.get("sentAt") or message["timestamp"]


def generate_traffic(
    users: int = 300,
    seed: int = 7,
    *,
    start: datetime = datetime(2026, 1, 5, 8, 0, tzinfo=UTC),
    days: float = 3.0,
    horizon_days: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Segment messages for `users` people who arrive and shop during `days` from `start`,
    and what follows until `horizon_days` (default: `days`, only the shopping), in the
    order they reach the server (`sentAt`, else `timestamp`)."""
    if users < 0:
        raise ValueError("users must be 0 or more")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    horizon = days if horizon_days is None else horizon_days
    if horizon < days:
        raise ValueError("horizon_days must be at least days")
    end = start + timedelta(days=horizon)
    rng = random.Random(seed)
    everyone: list[dict[str, Any]] = []
    for index in range(users):
        person = _Person(random.Random(rng.getrandbits(64)), index, start, days, end)
        everyone.extend(person.live())
    # ISO strings of one format sort as their times; the sort is stable, so a person's
    # messages at the same millisecond keep their order.
    everyone.sort(key=_arrival)
    yield from everyone
