"""Generated shop and app traffic for the demo: pure, seeded, Segment-shaped.

People arrive anonymously on the web or in the mobile app, browse, sometimes sign up (a
`Signed Up` track and an `identify` that carries both ids, which merges the anonymous
profile into the known one), and come back over a few days to view products, fill carts,
start checkouts and order, with Segment's e-commerce spec names and properties. Some carts
are abandoned, some checkouts too: what the first journeys will react to.

Nothing here reads the clock or does I/O: the same seed and start give the same messages.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

VIEWED = "Product Viewed"
ADDED = "Product Added"
CHECKOUT = "Checkout Started"
ORDERED = "Order Completed"
SIGNED_UP = "Signed Up"
OPENED = "Application Opened"

CURRENCY = "USD"


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

FIRST_NAMES = ("Ada", "Ben", "Chloé", "Dmitri", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi",
               "Lucas", "Maya", "Noah", "Olga", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Vera",
               "Wen", "Yusuf", "Zoé")
LAST_NAMES = ("Andersen", "Bakker", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Hoffmann", "Ito",
              "Jensen", "Kowalski", "Lopez", "Martin", "Nakamura", "Okafor", "Petrov", "Rossi", "Schmidt",
              "Tanaka", "Vogel", "Walsh")
# (timezone, locale, country) people live in.
PLACES = (
    ("America/New_York", "en-US", "US"),
    ("America/Los_Angeles", "en-US", "US"),
    ("America/Chicago", "en-US", "US"),
    ("Europe/London", "en-GB", "GB"),
    ("Europe/Paris", "fr-FR", "FR"),
    ("Europe/Berlin", "de-DE", "DE"),
    ("Europe/Madrid", "es-ES", "ES"),
    ("Asia/Tokyo", "ja-JP", "JP"),
    ("Australia/Sydney", "en-AU", "AU"),
    ("America/Sao_Paulo", "pt-BR", "BR"),
)
PAGES = (("Home", "/"), ("New Arrivals", "/new"), ("Sale", "/sale"), ("About", "/about"))
SCREENS = ("Home", "Search", "Wishlist", "Account")
COUPONS = ("WELCOME10", "SPRING15")

PLATFORMS = ("web", "ios", "android")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Person:
    """One simulated person: their ids, device and the messages they produce, in time order."""

    def __init__(self, rng: random.Random, index: int, start: datetime, days: float) -> None:
        self.rng = rng
        self.index = index
        self.anonymous_id = _uuid(rng)
        self.user_id: str | None = None
        self.platform = rng.choices(PLATFORMS, weights=(5, 3, 2))[0]
        self.place = rng.choice(PLACES)
        self.first_name = rng.choice(FIRST_NAMES)
        self.last_name = rng.choice(LAST_NAMES)
        self.start = start
        self.end = start + timedelta(days=days)
        self.now = start + timedelta(seconds=rng.uniform(0, days * 86400 * 0.6))
        self.messages: list[dict[str, Any]] = []
        self.viewed: list[Product] = []
        self.orders = 0
        self.context = self._context()

    def _context(self) -> dict[str, Any]:
        tz, locale, _country = self.place
        ip = f"{self.rng.randint(11, 223)}.{self.rng.randint(0, 255)}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"
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

    def _emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"type": type_, "messageId": _uuid(self.rng), "timestamp": _iso(self.now)}
        if self.user_id is not None:
            message["userId"] = self.user_id
        # Client libraries keep sending the anonymousId after identify, as Segment's do.
        message["anonymousId"] = self.anonymous_id
        message.update(fields)
        message["context"] = self.context
        self.messages.append(message)
        return message

    def _track(self, event: str, properties: dict[str, Any] | None = None) -> None:
        self._emit("track", event=event, properties=properties or {})

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
                properties={"path": path, "url": f"https://shop.example.com{path}", "title": f"{title} | Nudgeshop",
                            "referrer": self.rng.choice(("https://www.google.com/", "", "https://news.example.org/"))},
            )
        else:
            self._emit("screen", name=self.rng.choice(SCREENS))

    def session(self) -> None:
        if self.platform != "web":
            self._track(OPENED, {"from_background": self.rng.random() < 0.5, "version": "3.4.1", "build": "341"})
        self._look_around()
        cart: dict[Product, int] = {}
        cart_id = _uuid(self.rng)
        for _ in range(self.rng.randint(1, 5)):
            self._tick(10, 120)
            # Interest clusters around a category: people compare similar things.
            pool = [p for p in CATALOG if self.viewed and p.category == self.viewed[-1].category] or list(CATALOG)
            product = self.rng.choice(pool if self.rng.random() < 0.6 else CATALOG)
            self.viewed.append(product)
            self._track(VIEWED, self._product_properties(product, position=self.rng.randint(1, 24)))
            if self.rng.random() < 0.35:
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
            return
        self._tick(20, 300)
        order_id = f"ord_{self.index:04d}_{self.orders + 1}"
        products = [
            {"product_id": p.product_id, "sku": p.sku, "name": p.name, "category": p.category,
             "brand": p.brand, "price": p.price, "quantity": q, "position": i + 1}
            for i, (p, q) in enumerate(cart.items())
        ]
        subtotal = round(sum(p.price * q for p, q in cart.items()), 2)
        coupon = self.rng.choice(COUPONS) if self.rng.random() < 0.2 else None
        discount = round(subtotal * (0.1 if coupon == "WELCOME10" else 0.15), 2) if coupon else 0.0
        shipping = 0.0 if subtotal >= 100 else 6.95
        tax = round((subtotal - discount) * 0.08, 2)
        revenue = round(subtotal - discount, 2)
        checkout = {"checkout_id": _uuid(self.rng), "order_id": order_id, "cart_id": cart_id, "affiliation": "Nudgeshop",
                    "value": subtotal, "revenue": revenue, "shipping": shipping, "tax": tax, "discount": discount,
                    "currency": CURRENCY, "products": products}
        if coupon:
            checkout["coupon"] = coupon
        self._track(CHECKOUT, checkout)
        if self.rng.random() < 0.25:  # an abandoned checkout
            return
        self._tick(30, 240)
        self.orders += 1
        completed = {k: v for k, v in checkout.items() if k != "value"}
        completed.update(subtotal=subtotal, total=round(revenue + shipping + tax, 2))
        self._track(ORDERED, completed)

    def sign_up(self) -> None:
        self._tick(15, 180)
        tz, locale, country = self.place
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
            "created_at": _iso(self.now),
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

    def live(self) -> list[dict[str, Any]]:
        self.session()
        if self.rng.random() < 0.6:
            self.sign_up()
            if self.rng.random() < 0.5:
                self.session()  # shop right after signing up
        while True:
            # Come back hours or a day or two later, a few times, until the window ends.
            self.now += timedelta(hours=self.rng.expovariate(1 / 14))
            if self.now >= self.end or self.rng.random() < 0.3:
                break
            if self.user_id is not None and self.rng.random() < 0.12:
                self.new_device()
            else:
                self.session()
            if self.user_id is None and self.rng.random() < 0.25:
                self.sign_up()
        return [m for m in self.messages if m["timestamp"] < _iso(self.end)]


def generate_traffic(
    users: int = 300,
    seed: int = 7,
    *,
    start: datetime = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc),
    days: float = 3.0,
) -> Iterator[dict[str, Any]]:
    """Segment messages for `users` people over `days` from `start`, in time order."""
    if users < 0:
        raise ValueError("users must be 0 or more")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = random.Random(seed)
    everyone: list[dict[str, Any]] = []
    for index in range(users):
        person = _Person(random.Random(rng.getrandbits(64)), index, start, days)
        everyone.extend(person.live())
    # ISO strings of one format sort as their times; the sort is stable, so a person's
    # messages at the same millisecond keep their order.
    everyone.sort(key=lambda m: m["timestamp"])
    yield from everyone
