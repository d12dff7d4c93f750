"""A realistic render context for previews (`templates render --sample`) and tests.

It has the shape of nudgeflow.content.context.build_context's result (docs/templates.md
lists the variables): a person, the triggering event, the journey and run, a cart with two
items, recently viewed items, recommendations (bought together, similar), the nearest
store, trial days left, and `links` (unsubscribe, preferences, confirm_subscription) as the email channel adds them.
"""

from __future__ import annotations

import copy
from typing import Any

_MUG = {
    "id": "sku-mug-01",
    "name": "Stoneware Mug",
    "price": 18.0,
    "currency": "EUR",
    "image": "https://cdn.example.com/p/mug.jpg",
    "url": "https://shop.example.com/p/mug",
    "category": "kitchen",
    "quantity": 2,
}
_KETTLE = {
    "id": "sku-kettle-02",
    "name": "Gooseneck Kettle",
    "price": 64.9,
    "currency": "EUR",
    "image": "https://cdn.example.com/p/kettle.jpg",
    "url": "https://shop.example.com/p/kettle",
    "category": "kitchen",
    "quantity": 1,
}

SAMPLE: dict[str, Any] = {
    "profile": {
        "id": "prof_sample",
        "user_id": "u_1042",
        "email": "ana.silva@example.com",
        "first_name": "Ana",
        "last_name": "Silva",
        "plan": "pro",
        "locale": "en_GB",
        "timezone": "Europe/Lisbon",
        "level": 12,
        "streak_days": 7,
    },
    "event": {
        "name": "Product Added",
        "timestamp": "2025-03-14T09:26:53Z",
        "properties": {
            "product_id": "sku-kettle-02",
            "name": "Gooseneck Kettle",
            "price": 64.9,
            "currency": "EUR",
            "cart_id": "cart_77",
            "level": 12,
            "item_name": "Gooseneck Kettle",
        },
    },
    "journey": {"id": "cart-abandonment", "name": "Cart abandonment", "version": 1},
    "run": {"id": "run_sample", "step": "remind-1h", "entered_at": "2025-03-14T09:26:53Z"},
    "cart": {
        "id": "cart_77",
        "items": [_MUG, _KETTLE],
        "count": 3,
        "subtotal": 100.9,
        "currency": "EUR",
    },
    "recently_viewed": [
        {
            "id": "sku-grinder-03",
            "name": "Burr Coffee Grinder",
            "price": 129.0,
            "currency": "EUR",
            "image": "https://cdn.example.com/p/grinder.jpg",
            "url": "https://shop.example.com/p/grinder",
            "category": "coffee",
        },
        _KETTLE,
    ],
    "recommendations": {
        "bought_together": [
            {
                "id": "sku-filters-04",
                "name": "Paper Filters (100)",
                "price": 6.5,
                "currency": "EUR",
                "image": "https://cdn.example.com/p/filters.jpg",
                "url": "https://shop.example.com/p/filters",
                "category": "coffee",
            },
            {
                "id": "sku-scale-05",
                "name": "Pour-over Scale",
                "price": 39.0,
                "currency": "EUR",
                "image": "https://cdn.example.com/p/scale.jpg",
                "url": "https://shop.example.com/p/scale",
                "category": "coffee",
            },
        ],
        "similar": [
            {
                "id": "sku-beans-06",
                "name": "Single-origin Beans 250 g",
                "price": 14.0,
                "currency": "EUR",
                "image": "https://cdn.example.com/p/beans.jpg",
                "url": "https://shop.example.com/p/beans",
                "category": "coffee",
            },
        ],
    },
    "nearest_place": {
        "id": "store-lx-1",
        "name": "Nudgeshop Chiado",
        "address": "Rua Garrett 42, Lisboa",
        "distance_km": 0.4,
        "latitude": 38.7107,
        "longitude": -9.1424,
    },
    "group": {"id": "acme", "name": "Acme Coffee Co.", "plan": "team", "seats": 12},
    "trial_days_left": 3,
    "now": "2025-03-14T10:27:00Z",
    "links": {
        "unsubscribe": "https://nudge.example.com/u/sample-token",
        "preferences": "https://nudge.example.com/p/sample-token",
        "confirm_subscription": "https://nudge.example.com/s/sample-token",
        "app": "nudgeshop://home",
    },
}


def sample_context() -> dict[str, Any]:
    """A fresh copy (callers may change it)."""
    out = copy.deepcopy(SAMPLE)
    out["products"] = {
        p["id"]: p
        for p in [
            *out["cart"]["items"],
            *out["recently_viewed"],
            *out["recommendations"]["bought_together"],
            *out["recommendations"]["similar"],
        ]
    }
    return out
