"""The profile state document: watches of one event written with its properties once.

Several "not followed by" journeys on the same event each keep a watch holding the event
(its properties included); the document writes those properties once, by message id
(core/state.py, SHARED_PROPERTIES). Reading it back must give the same state, and the same
decisions as a state that never went through JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

from nudgeflow.core.state import SHARED_PROPERTIES, ProfileState
from tests.core.engine_driver import Driver, H, journey

PROPS = {"cart_id": "c1", "sku": "A", "price": 139.0, "name": "Rain Shell Jacket"}


def carts(count: int) -> list[Any]:
    return [
        journey(
            f"cart_{n}",
            {
                "type": "event_not_followed",
                "event": "Product Added",
                "not_followed_by": {"event": "Order Completed", "within": f"{n + 1}h", "match": "cart_id"},
            },
            {"remind": {"type": "send", "channel": "email", "template": "cart_reminder"}},
        )
        for n in range(count)
    ]


def test_watches_of_one_event_write_its_properties_once() -> None:
    d = Driver(*carts(3))
    d.track("Product Added", dict(PROPS))
    doc = orjson.loads(d.state.to_json())
    assert len(doc["pending"]) == 3
    assert all("properties" not in watch for watch in doc["pending"].values())
    [(message_id, props)] = doc[SHARED_PROPERTIES].items()
    assert props == PROPS and {w["message_id"] for w in doc["pending"].values()} == {message_id}
    back = ProfileState.from_json("ada", d.state.to_json())
    assert back.pending == d.state.pending  # each watch has its properties again
    assert back.to_json() == d.state.to_json()  # read and written unchanged: the same document


def test_one_watch_keeps_its_properties_inline() -> None:
    d = Driver(*carts(1))
    d.track("Product Added", dict(PROPS))
    doc = orjson.loads(d.state.to_json())
    assert SHARED_PROPERTIES not in doc
    assert next(iter(doc["pending"].values()))["properties"] == PROPS


def test_a_document_written_before_reads_and_writes_back_unchanged() -> None:
    # Every watch with its own copy, as documents were written before SHARED_PROPERTIES:
    # read, then written without a change, it is byte for byte the same (no rewrite).
    d = Driver(*carts(3))
    d.track("Product Added", dict(PROPS))
    old = orjson.loads(d.state.to_json())
    shared = old.pop(SHARED_PROPERTIES)
    for watch in old["pending"].values():
        watch["properties"] = dict(shared[watch["message_id"]])
    written = orjson.dumps(old)
    state = ProfileState.from_json("ada", written)
    assert state.pending == d.state.pending
    assert state.to_json() == written


def test_the_same_decisions_through_the_document() -> None:
    plain, through_json = Driver(*carts(3)), Driver(*carts(3), roundtrip=True)
    for d in (plain, through_json):
        d.track("Product Added", dict(PROPS))
        d.track("Product Added", {**PROPS, "cart_id": "c2"})
        d.advance(H // 2)
        d.track("Order Completed", {"cart_id": "c2"})
        d.advance(3 * H)
    assert through_json.effects() == plain.effects()
    assert through_json.sends() == plain.sends()
    assert len(plain.sends()) == 3  # cart c1 in each journey; c2 was ordered in time
    assert [s.context["trigger"]["properties"] for s in through_json.sends()] == [PROPS] * 3


# The document's keys in the order they were always written in (before SHARED_PROPERTIES).
OLD_ORDER = (
    "traits", "runs", "entries", "pending", "counters", "activity", "history", "last_location", "group",
    "run_seq", "identity", "membership", "segment_facts", "sends", "frequency", "hours",
)  # fmt: skip


def test_a_document_with_entries_and_watches_keeps_its_key_order() -> None:
    # A person who entered a journey (entries) and has watches open (pending): the document,
    # as written before, in its old key order, reads and writes back as the same bytes.
    d = Driver(*carts(3))
    d.track("Product Added", dict(PROPS))
    d.advance(2 * H)  # the first journey's watch has run out: a run, its entry
    d.track("Product Added", {**PROPS, "cart_id": "c2"})
    new = orjson.loads(d.state.to_json())
    assert new.get("entries") and new.get("pending")
    shared = new.pop(SHARED_PROPERTIES, {})
    for watch in new["pending"].values():
        if "properties" not in watch:
            watch["properties"] = dict(shared[watch["message_id"]])
    written = orjson.dumps({key: new[key] for key in OLD_ORDER if key in new})
    assert ProfileState.from_json("ada", written).to_json() == written
