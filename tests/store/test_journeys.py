"""Journeys in the database, on SQLite and PostgreSQL: drafts, versions, lifecycle, catalog."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import func, insert, select, update

from nudgeflow.core.catalog import ARCHIVED, DRAFT, LIVE, PAUSED
from nudgeflow.model.journeys import Journey
from nudgeflow.model.partitions import partition_of
from nudgeflow.store import journeys as store
from nudgeflow.store.schema import journey_runs, journey_versions, journeys, timers
from tests.store.pg_race import second_after_first
from tests.support import make_workspace


def definition(journey_id: str = "cart", template: str = "cart-1", **extra: Any) -> Journey:
    doc: dict[str, Any] = {
        "id": journey_id,
        "name": "Cart abandonment",
        "trigger": {
            "type": "event_not_followed",
            "event": "Product Added",
            "not_followed_by": {"event": "Order Completed", "within": "1h", "match": "cart_id"},
        },
        "exit": {"events": [{"event": "Order Completed", "match": "cart_id"}]},
        "steps": {
            "remind": {"type": "send", "channel": "log", "template": template, "next": "wait"},
            "wait": {"type": "wait", "duration": "1d", "next": "check"},
            "check": {
                "type": "branch",
                "cases": [{"when": [{"message": "remind", "status": "opened"}], "next": "offer"}],
            },
            "offer": {
                "type": "send",
                "channel": "log",
                "variants": [
                    {"name": "a", "template": "offer-a", "weight": 1},
                    {"name": "b", "template": "offer-b", "weight": 1},
                ],
                "next": "update",
            },
            "update": {"type": "update_profile", "set": {"last_cart": {"ref": "trigger.cart_id"}}},
        },
        **extra,
    }
    return Journey.model_validate(doc)


def apply(engine: Any, wsid: str, journey: Journey, now: int = 1_000) -> bool:
    with engine.begin() as conn:
        return store.apply_draft(conn, wsid, journey, now)


def call(engine: Any, fn: Any, wsid: str, journey_id: str = "cart", now: int = 2_000) -> Any:
    with engine.begin() as conn:
        return fn(conn, wsid, journey_id, now)


def info(engine: Any, wsid: str, journey_id: str = "cart") -> dict[str, Any]:
    with engine.connect() as conn:
        found = store.get_journey(conn, wsid, journey_id)
    assert found is not None
    return found


def test_apply_creates_a_draft_then_updates_it(engine: Any, wsid: str) -> None:
    assert apply(engine, wsid, definition()) is True
    first = info(engine, wsid)
    assert first["status"] == DRAFT and first["live_version"] is None and first["versions"] == []
    assert first["draft_changed"] is True
    assert Journey.model_validate(first["draft"]) == definition()

    assert apply(engine, wsid, definition(template="cart-2"), now=1_500) is False
    second = info(engine, wsid)
    assert second["draft"]["steps"]["remind"]["template"] == "cart-2"
    assert second["updated_at_ms"] == 1_500 and second["created_at_ms"] == 1_000


def test_definitions_round_trip_to_an_equal_journey(engine: Any, wsid: str) -> None:
    journey = definition(
        holdout=0.1, priority=5, goal={"event": "Order Completed", "within": "7d", "revenue": "revenue"}
    )
    journey = journey.model_copy(update={"trigger": journey.trigger.model_copy(update={"max_lateness": None})})
    apply(engine, wsid, journey)
    call(engine, store.publish, wsid)
    with engine.connect() as conn:
        assert store.load_version(conn, wsid, "cart", 1) == journey
        assert store.load_version(conn, wsid, "cart", 2) is None
    assert Journey.model_validate(info(engine, wsid)["draft"]) == journey


def test_publish_makes_numbered_immutable_versions(engine: Any, wsid: str) -> None:
    apply(engine, wsid, definition())
    assert call(engine, store.publish, wsid, now=2_000) == 1
    assert info(engine, wsid)["status"] == LIVE
    assert info(engine, wsid)["draft_changed"] is False

    # Editing the draft of a live journey leaves it live on version 1.
    apply(engine, wsid, definition(template="cart-2"), now=3_000)
    edited = info(engine, wsid)
    assert edited["status"] == LIVE and edited["live_version"] == 1 and edited["draft_changed"] is True
    with engine.connect() as conn:
        v1 = store.load_version(conn, wsid, "cart", 1)
    assert v1 is not None and v1.steps["remind"].template == "cart-1"  # type: ignore[union-attr]

    assert call(engine, store.publish, wsid, now=4_000) == 2
    with engine.connect() as conn:
        v1_again = store.load_version(conn, wsid, "cart", 1)
        v2 = store.load_version(conn, wsid, "cart", 2)
    assert v1_again == v1
    assert v2 is not None and v2.steps["remind"].template == "cart-2"  # type: ignore[union-attr]
    assert [v["version"] for v in info(engine, wsid)["versions"]] == [1, 2]
    assert [v["published_at_ms"] for v in info(engine, wsid)["versions"]] == [2_000, 4_000]


def test_publishing_an_unchanged_draft_makes_no_new_version(engine: Any, wsid: str) -> None:
    apply(engine, wsid, definition())
    assert call(engine, store.publish, wsid) == 1
    apply(engine, wsid, definition())  # the same file applied again, as CI does
    assert call(engine, store.publish, wsid) == 1
    with engine.connect() as conn:
        count = conn.execute(
            select(func.count()).select_from(journey_versions).where(journey_versions.c.workspace_id == wsid)
        ).scalar_one()
    assert count == 1


def test_an_invalid_draft_never_goes_live(engine: Any, wsid: str) -> None:
    apply(engine, wsid, definition())
    call(engine, store.publish, wsid)
    # A draft that went bad behind the store's back (an older release, a manual edit):
    # publishing checks it again and refuses, and version 1 stays the live one.
    broken = orjson.loads(store.definition_json(definition(template="cart-2")))
    broken["steps"]["wait"]["next"] = "nowhere"
    with engine.begin() as conn:
        conn.execute(
            update(journeys)
            .where(journeys.c.workspace_id == wsid, journeys.c.id == "cart")
            .values(draft=orjson.dumps(broken).decode())
        )
    with pytest.raises(store.InvalidDefinition) as refused:
        call(engine, store.publish, wsid)
    assert "steps.wait.next: no step named 'nowhere'" in str(refused.value)
    assert any(p.path == "steps.wait.next" for p in refused.value.problems)
    after = info(engine, wsid)
    assert after["live_version"] == 1 and [v["version"] for v in after["versions"]] == [1]


def test_apply_refuses_a_definition_with_errors(engine: Any, wsid: str) -> None:
    bad = definition().model_copy(update={"start": "missing"})
    with pytest.raises(store.InvalidDefinition) as refused:
        apply(engine, wsid, bad)
    assert refused.value.problems[0].path == "start"
    with engine.connect() as conn:
        assert store.list_journeys(conn, wsid) == []


def test_apply_needs_an_existing_workspace(engine: Any) -> None:
    with pytest.raises(store.JourneyError, match="no workspace"):
        apply(engine, "ws_nope", definition())


def test_lifecycle_transitions(engine: Any, wsid: str) -> None:
    apply(engine, wsid, definition())
    with pytest.raises(store.InvalidTransition, match="never published"):
        call(engine, store.pause, wsid)
    with pytest.raises(store.InvalidTransition, match="publish it instead"):
        call(engine, store.resume, wsid)
    call(engine, store.publish, wsid)

    paused = call(engine, store.pause, wsid)
    assert (paused.status, paused.changed) == (PAUSED, True)
    assert call(engine, store.pause, wsid).changed is False  # pausing twice is harmless

    # Publishing a paused journey makes the new version, and it stays paused.
    apply(engine, wsid, definition(template="cart-2"))
    assert call(engine, store.publish, wsid) == 2
    assert info(engine, wsid)["status"] == PAUSED

    resumed = call(engine, store.resume, wsid)
    assert (resumed.status, resumed.changed, resumed.runs_woken) == (LIVE, True, 0)
    assert call(engine, store.resume, wsid).changed is False

    archived = call(engine, store.archive, wsid)
    assert (archived.status, archived.changed) == (ARCHIVED, True)
    assert call(engine, store.archive, wsid).changed is False
    for fn, words in (
        (store.publish, "cannot be published"),
        (store.pause, "cannot be paused"),
        (store.resume, "cannot be resumed"),
    ):
        with pytest.raises(store.InvalidTransition, match=words):
            call(engine, fn, wsid)
    with pytest.raises(store.InvalidTransition, match="archived"):
        apply(engine, wsid, definition(template="cart-3"))


def test_operations_on_an_unknown_journey(engine: Any, wsid: str) -> None:
    for fn in (store.publish, store.pause, store.resume, store.archive):
        with pytest.raises(store.JourneyNotFound, match="no journey 'ghost'"):
            call(engine, fn, wsid, "ghost")
    with engine.connect() as conn:
        assert store.get_journey(conn, wsid, "ghost") is None


def add_run(engine: Any, wsid: str, run_id: str, profile_id: str, status: str, journey_id: str = "cart") -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(journey_runs).values(
                id=run_id,
                workspace_id=wsid,
                journey_id=journey_id,
                version=1,
                profile_id=profile_id,
                status=status,
                step="wait",
                holdout=0,
                entered_at_ms=1,
                updated_at_ms=1,
            )
        )


def timer_rows(engine: Any, wsid: str) -> dict[tuple[str, str], tuple[int, dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(select(timers).where(timers.c.workspace_id == wsid))
        return {(r.profile_id, r.key): (r.due_at_ms, orjson.loads(r.payload)) for r in rows}


def test_resume_gives_each_held_run_a_timer_in_the_same_transaction(engine: Any, wsid: str) -> None:
    apply(engine, wsid, definition())
    apply(engine, wsid, definition("other"))
    call(engine, store.publish, wsid)
    call(engine, store.publish, wsid, "other")
    call(engine, store.pause, wsid)
    prefix = wsid
    add_run(engine, wsid, f"{prefix}-r1", f"{prefix}-p1", "held")
    add_run(engine, wsid, f"{prefix}-r2", f"{prefix}-p2", "held")
    add_run(engine, wsid, f"{prefix}-r3", f"{prefix}-p3", "active")  # not held: no timer
    add_run(engine, wsid, f"{prefix}-r4", f"{prefix}-p4", "held", journey_id="other")  # another journey

    resumed = call(engine, store.resume, wsid, now=9_000)
    assert resumed.runs_woken == 2
    assert timer_rows(engine, wsid) == {
        (f"{prefix}-p1", f"resume:{prefix}-r1"): (9_000, {"kind": "resume", "run_id": f"{prefix}-r1"}),
        (f"{prefix}-p2", f"resume:{prefix}-r2"): (9_000, {"kind": "resume", "run_id": f"{prefix}-r2"}),
    }
    # Each wake timer is in its person's partition (the worker owning it fires it).
    with engine.connect() as conn:
        found = conn.execute(select(timers.c.profile_id, timers.c.partition).where(timers.c.workspace_id == wsid))
        assert {pid: p for pid, p in found} == {
            pid: partition_of(wsid, pid) for pid in (f"{prefix}-p1", f"{prefix}-p2")
        }

    # Paused and resumed again before the engine woke them: the timers are re-armed, not doubled.
    call(engine, store.pause, wsid)
    assert call(engine, store.resume, wsid, now=9_500).runs_woken == 2
    assert {due for due, _ in timer_rows(engine, wsid).values()} == {9_500}
    assert len(timer_rows(engine, wsid)) == 2


def test_a_failed_resume_leaves_no_timers_and_the_journey_paused(engine: Any, wsid: str) -> None:
    apply(engine, wsid, definition())
    call(engine, store.publish, wsid)
    call(engine, store.pause, wsid)
    add_run(engine, wsid, f"{wsid}-r1", f"{wsid}-p1", "held")
    with pytest.raises(RuntimeError), engine.begin() as conn:
        store.resume(conn, wsid, "cart", 5_000)
        raise RuntimeError("the transaction fails after resume")
    assert timer_rows(engine, wsid) == {}
    assert info(engine, wsid)["status"] == PAUSED


def test_archiving_a_paused_journey_wakes_held_runs_so_they_end(engine: Any, wsid: str) -> None:
    apply(engine, wsid, definition())
    call(engine, store.publish, wsid)
    call(engine, store.pause, wsid)
    add_run(engine, wsid, f"{wsid}-r1", f"{wsid}-p1", "held")
    assert call(engine, store.archive, wsid).runs_woken == 1
    assert list(timer_rows(engine, wsid)) == [(f"{wsid}-p1", f"resume:{wsid}-r1")]


def test_list_journeys(engine: Any, wsid: str) -> None:
    apply(engine, wsid, definition("b-live"))
    apply(engine, wsid, definition("a-draft"))
    call(engine, store.publish, wsid, "b-live")
    with engine.connect() as conn:
        listed = store.list_journeys(conn, wsid)
    assert [(j["id"], j["status"], j["live_version"], j["draft_changed"]) for j in listed] == [
        ("a-draft", DRAFT, None, True),
        ("b-live", LIVE, 1, False),
    ]


def test_workspaces_are_isolated(engine: Any, wsid: str) -> None:
    other = make_workspace(engine, "other").workspace_id
    apply(engine, wsid, definition())
    call(engine, store.publish, wsid)
    with engine.connect() as conn:
        assert store.list_journeys(conn, other) == []
        assert store.get_journey(conn, other, "cart") is None
        assert store.load_version(conn, other, "cart", 1) is None
        assert store.load_catalog(conn, other).live == {}
    with pytest.raises(store.JourneyNotFound):
        call(engine, store.publish, other)
    # The same id in another workspace is another journey.
    assert apply(engine, other, definition(template="theirs")) is True
    assert info(engine, wsid)["draft"]["steps"]["remind"]["template"] == "cart-1"


def test_load_catalog(engine: Any, wsid: str) -> None:
    for jid in ("live-one", "paused-one", "archived-one", "draft-one"):
        apply(engine, wsid, definition(jid))
    for jid in ("live-one", "paused-one", "archived-one"):
        call(engine, store.publish, wsid, jid)
    apply(engine, wsid, definition("live-one", template="v2"))
    call(engine, store.publish, wsid, "live-one")
    call(engine, store.pause, wsid, "paused-one")
    call(engine, store.archive, wsid, "archived-one")

    for source in (engine, None):
        if source is None:
            with engine.connect() as conn:
                catalog = store.load_catalog(conn, wsid)
        else:
            catalog = store.load_catalog(source, wsid)
        assert sorted(catalog.live) == ["live-one", "paused-one"]
        assert catalog.live["live-one"].version == 2
        assert catalog.live["live-one"].definition.steps["remind"].template == "v2"  # type: ignore[union-attr]
        assert catalog.statuses == {
            "live-one": LIVE,
            "paused-one": PAUSED,
            "archived-one": ARCHIVED,
            "draft-one": DRAFT,
        }
        # Only live journeys are in the trigger index.
        assert [jv.journey_id for jv in catalog.candidates("Product Added", False)] == ["live-one"]
        # Older versions are read on demand, after the connection that built the catalog closed.
        old = catalog.version("live-one", 1)
        assert old is not None and old.steps["remind"].template == "cart-1"  # type: ignore[union-attr]
        assert catalog.version("archived-one", 1) is not None
        assert catalog.version("live-one", 7) is None


def test_catalog_fingerprint_moves_on_every_change_even_within_one_millisecond(engine: Any, wsid: str) -> None:
    def mark() -> Any:
        with engine.connect() as conn:
            return store.catalog_fingerprint(conn, wsid)

    seen = [mark()]
    now = 5_000  # a clock that stands still, as a virtual clock does
    apply(engine, wsid, definition("one"), now)
    seen.append(mark())
    apply(engine, wsid, definition("two"), now)
    seen.append(mark())
    for fn in (store.publish, store.pause, store.resume, store.archive):
        call(engine, fn, wsid, "one", now)
        seen.append(mark())
    call(engine, store.publish, wsid, "two", now)
    seen.append(mark())
    assert len(set(seen)) == len(seen)
    # Reading changes nothing.
    with engine.connect() as conn:
        store.list_journeys(conn, wsid)
        store.load_catalog(conn, wsid)
    assert mark() == seen[-1]
    # A no-op changes nothing either: the engine need not reload.
    call(engine, store.archive, wsid, "one", now)
    apply(engine, wsid, definition("two"), now)
    assert mark() == seen[-1]


def test_two_first_applies_of_a_journey_at_once_keep_the_last_draft_not_an_error(engine: Any) -> None:
    # Two `journeys apply` runs (or API processes) create the same new journey at once. On
    # PostgreSQL the second's insert waited for the first and failed on the primary key (a
    # 500); it replaces the first's draft now, as an apply after it would.
    wsid = make_workspace(engine).workspace_id
    second = second_after_first(
        engine,
        lambda conn: store.apply_draft(conn, wsid, definition(), 1000),
        lambda conn: store.apply_draft(conn, wsid, definition(template="cart-2"), 2000),
        "journeys",
    )
    assert second is False  # created by the first
    with engine.connect() as conn:
        draft = conn.execute(
            select(journeys.c.draft).where(journeys.c.workspace_id == wsid, journeys.c.id == "cart")
        ).scalar_one()
    assert orjson.loads(draft)["steps"]["remind"]["template"] == "cart-2"


# --- draft revisions: two editors of one draft ---------------------------------------------------


def revision(engine: Any, wsid: str, journey_id: str = "cart") -> int:
    with engine.connect() as conn:
        found = store.get_journey(conn, wsid, journey_id)
    assert found is not None
    return int(found["draft_revision"])


def test_every_change_of_a_draft_raises_its_revision_and_nothing_else_does(engine: Any) -> None:
    wsid = make_workspace(engine).workspace_id
    apply(engine, wsid, definition())
    assert revision(engine, wsid) == 1
    apply(engine, wsid, definition(), now=1_500)  # the same draft again: no change
    assert revision(engine, wsid) == 1
    apply(engine, wsid, definition(template="cart-2"), now=2_000)
    assert revision(engine, wsid) == 2
    call(engine, store.publish, wsid, now=3_000)
    call(engine, store.pause, wsid, now=4_000)
    assert revision(engine, wsid) == 2  # the status is not the draft
    with engine.connect() as conn:
        assert [j["draft_revision"] for j in store.list_journeys(conn, wsid)] == [2]


def test_a_draft_saved_against_a_stale_revision_is_refused_and_changes_nothing(engine: Any) -> None:
    wsid = make_workspace(engine).workspace_id
    apply(engine, wsid, definition())
    with engine.begin() as conn:  # the first editor saves on revision 1: fine
        assert store.apply_draft(conn, wsid, definition(template="mine"), 2_000, expected_revision=1) is False
    with pytest.raises(store.DraftConflict) as refused, engine.begin() as conn:  # the second, also on 1
        store.apply_draft(conn, wsid, definition(template="theirs"), 3_000, expected_revision=1)
    assert (refused.value.expected, refused.value.current) == (1, 2)
    assert "at revision 2, not 1" in str(refused.value)
    with engine.connect() as conn:
        found = store.get_journey(conn, wsid, "cart")
    assert found is not None and found["draft"]["steps"]["remind"]["template"] == "mine"
    assert found["draft_revision"] == 2 and found["updated_at_ms"] == 2_000
    with engine.begin() as conn:  # on the current revision, unchanged: accepted, no new revision
        store.apply_draft(conn, wsid, definition(template="mine"), 4_000, expected_revision=2)
    assert revision(engine, wsid) == 2
    with pytest.raises(store.DraftConflict) as missing, engine.begin() as conn:
        store.apply_draft(conn, wsid, definition("nope"), 4_000, expected_revision=1)
    assert missing.value.current is None
    with engine.connect() as conn:
        assert store.get_journey(conn, wsid, "nope") is None


def test_two_saves_of_one_draft_revision_at_once_the_second_is_refused(engine: Any) -> None:
    # Two editors read revision 1 and save at once. On PostgreSQL the second's read finds
    # revision 1 too (the first has not committed): its UPDATE waits for the first's row,
    # then finds the revision moved, and is refused, rather than overwriting the first's draft.
    wsid = make_workspace(engine).workspace_id
    apply(engine, wsid, definition())
    second = second_after_first(
        engine,
        lambda conn: store.apply_draft(conn, wsid, definition(template="first"), 2_000, expected_revision=1),
        lambda conn: store.apply_draft(conn, wsid, definition(template="second"), 3_000, expected_revision=1),
        "journeys",
    )
    assert isinstance(second, store.DraftConflict) and second.current == 2, second
    with engine.connect() as conn:
        found = store.get_journey(conn, wsid, "cart")
    assert found is not None and found["draft"]["steps"]["remind"]["template"] == "first"
    assert found["draft_revision"] == 2


def test_two_creations_of_one_journey_at_once_create_only_refuses_the_second(engine: Any) -> None:
    # If-None-Match: *. The second's insert waits for the first's (PostgreSQL), finds the id
    # taken, and is refused rather than replacing the new draft.
    wsid = make_workspace(engine).workspace_id
    second = second_after_first(
        engine,
        lambda conn: store.apply_draft(conn, wsid, definition(template="first"), 1_000, create_only=True),
        lambda conn: store.apply_draft(conn, wsid, definition(template="second"), 2_000, create_only=True),
        "journeys",
    )
    assert isinstance(second, store.DraftConflict) and second.expected is None and second.current == 1
    with engine.connect() as conn:
        found = store.get_journey(conn, wsid, "cart")
    assert found is not None and found["draft"]["steps"]["remind"]["template"] == "first"


def updated_at(engine: Any, wsid: str, journey_id: str = "cart") -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(journeys.c.updated_at_ms).where(journeys.c.workspace_id == wsid, journeys.c.id == journey_id)
            ).scalar_one()
        )


def test_a_draft_saved_while_a_pause_commits_still_moves_the_change_mark_on(engine: Any) -> None:
    """The engine notices changes by a sum of updated_at_ms (catalog_fingerprint), so two
    changes committed one after the other must not write the same value: a draft save that
    read the row before a pause committed computes its mark from the row as the UPDATE finds
    it, not from its earlier read (the clock stands still here, as a virtual clock may)."""
    wsid = make_workspace(engine).workspace_id
    apply(engine, wsid, definition())
    with engine.begin() as conn:
        store.publish(conn, wsid, "cart", 1_000)
    before = updated_at(engine, wsid)
    second_after_first(
        engine,
        lambda conn: store.pause(conn, wsid, "cart", 1_000),
        lambda conn: store.apply_draft(conn, wsid, definition(template="cart-2"), 1_000),
        "journeys",
    )
    assert updated_at(engine, wsid) == before + 2  # one step for each of the two changes
