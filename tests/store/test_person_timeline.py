"""The People page's reads (store/person_timeline.py) on SQLite and PostgreSQL: one person's
card, their timeline interleaving events, runs, decisions and messages with reasons (paged by
a cursor that loses and repeats nothing), their timers, and another workspace seeing none of it."""

from __future__ import annotations

from typing import Any

import pytest

from nudgeflow.store import person_timeline
from nudgeflow.store.person_timeline import BadCursor, journey_facts, person_card, timeline
from nudgeflow.store.privacy import person_ids
from nudgeflow.store.workspaces import create_workspace
from tests.store.person_seed import MIN, T0, Seeded, seed_person


@pytest.fixture
def seeded(engine: Any, wsid: str) -> Seeded:
    with engine.begin() as conn:
        return seed_person(conn, wsid)


def test_the_card_holds_identities_merges_timers_and_open_runs(engine: Any, wsid: str, seeded: Seeded) -> None:
    with engine.connect() as conn:
        card = person_card(conn, wsid, seeded.pid)
    assert card is not None
    assert card["user_id"] == "ada-1" and card["email"] == "ada@example.com"
    assert card["identities"] == {"user_ids": ["ada-1"], "anonymous_ids": ["anon-ada"]}
    assert [m["from_profile_id"] for m in card["merges"]] == [seeded.merged]
    assert card["consent"]["channels"]["email"]["all"]["allowed"] is True
    assert [(t["kind"], t["journey_id"], t["due_at_ms"]) for t in card["timers"]] == [
        ("release", "welcome", T0 + 600 * MIN),
        ("step", "welcome", T0 + 24 * 60 * MIN),
    ]
    assert "deferred message of step hello" in card["timers"][0]["for"]
    assert "wait at step wait ends" in card["timers"][1]["for"]
    assert [(r["run_id"], r["step"]) for r in card["open_runs"]] == [(seeded.run2, "wait")]


def test_the_timeline_interleaves_every_source_newest_first_with_reasons(
    engine: Any, wsid: str, seeded: Seeded
) -> None:
    with engine.connect() as conn:
        items, cursor = timeline(conn, wsid, person_ids(conn, wsid, seeded.pid), limit=50)
    assert cursor is None
    got = [(i["at_ms"] - T0, i["kind"], i.get("event") or i.get("template") or i.get("journey_id")) for i in items]
    assert items[-2]["from_profile_id"] == seeded.merged
    assert got == [
        (9 * MIN, "run_ended", "cart"),
        (9 * MIN, "run_converted", "cart"),
        (9 * MIN, "event", "Order Completed"),
        (8 * MIN, "message", "welcome-letter"),
        (7 * MIN, "message", "hello"),
        (5 * MIN, "message", "cart-nudge"),
        (3 * MIN, "message", "cart-reminder"),
        (2 * MIN, "decision", "cart"),
        (2 * MIN, "run_entered", "cart"),
        (2 * MIN, "event", "Product Added"),
        (1 * MIN, "event", "Product Viewed"),  # the merged-away profile's event is the person's
        (0, "merged", None),
        (0, "run_entered", "welcome"),
    ]
    by_template = {i["template"]: i for i in items if i["kind"] == "message"}
    assert (by_template["cart-nudge"]["status"], by_template["cart-nudge"]["reason"]) == (
        "dropped",
        "frequency_cap:daily",
    )
    assert by_template["hello"]["reason"] == "quiet_hours" and by_template["hello"]["deferred_until"] is not None
    ended = items[0]
    assert (ended["exit_reason"], ended["run_id"]) == ("converted", seeded.run)
    assert (by_template["welcome-letter"]["status"], by_template["welcome-letter"]["reason"]) == (
        "suppressed",
        "unsubscribed:*",
    )
    assert items[7]["arm"] == "b"


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_pages_of_any_size_give_every_item_once_in_order(engine: Any, wsid: str, seeded: Seeded, size: int) -> None:
    with engine.connect() as conn:
        ids = person_ids(conn, wsid, seeded.pid)
        whole, _ = timeline(conn, wsid, ids, limit=50)
        paged: list[dict[str, Any]] = []
        cursor = None
        for _ in range(20):
            items, cursor = timeline(conn, wsid, ids, limit=size, before=cursor)
            assert len(items) <= size
            paged += items
            if cursor is None:
                break
    assert paged == whole


def test_another_workspace_sees_nothing_and_a_bad_cursor_is_refused(engine: Any, wsid: str, seeded: Seeded) -> None:
    with engine.begin() as conn:
        other = create_workspace(conn, "other", T0).workspace_id
    with engine.connect() as conn:
        assert person_card(conn, other, seeded.pid) is None
        assert timeline(conn, other, [seeded.pid, seeded.merged]) == ([], None)
        for bad in ("nope", "[1,99,[1]]", '[1,0,["x"]]', "[true,0,[1]]", '{"a":1}'):
            with pytest.raises(BadCursor):
                timeline(conn, wsid, [seeded.pid], before=bad)


def test_journey_facts_gather_the_person_s_runs_and_messages_of_one_journey(
    engine: Any, wsid: str, seeded: Seeded
) -> None:
    with engine.connect() as conn:
        facts = journey_facts(conn, wsid, seeded.pid, "cart")
        only = journey_facts(conn, wsid, seeded.pid, "cart", template="cart-nudge")
        assert person_timeline.journeys_of_person(conn, wsid, seeded.pid) == ["cart", "welcome"]
        assert person_timeline.journey_ids(conn, wsid) == []  # the seed stores no journey documents
    assert facts.status is None  # no journey document stored by this seed: explain says so
    assert [r["id"] for r in facts.runs] == [seeded.run]
    assert [m["template"] for m in facts.messages] == ["cart-nudge", "cart-reminder"]
    assert [m["template"] for m in only.messages] == ["cart-nudge"]


def test_a_cursor_the_database_cannot_compare_is_refused_not_failed(engine: Any, wsid: str, seeded: Seeded) -> None:
    """A cursor comes back from the browser: an integer key beyond a 64-bit column, or a text
    key with a NUL (which PostgreSQL text cannot hold), would make the database driver fail
    the page (a 500) instead of refusing the cursor (a 400)."""
    with engine.connect() as conn:
        for bad in (f"[1,0,[{2**63}]]", f"[1,3,[{-(2**63) - 1}]]", '[1,1,["a\\u0000b"]]', '[1,2,["r","s\\u0000"]]'):
            with pytest.raises(BadCursor):
                timeline(conn, wsid, [seeded.pid], before=bad)
