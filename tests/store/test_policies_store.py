"""The workspace's send policies in the database, on SQLite and PostgreSQL: versions, history,
and the catalog the engine loads (and reloads) with them."""

from __future__ import annotations

from typing import Any

from nudgeflow.model.policies import EMPTY, Policies
from nudgeflow.store import journeys as journey_store
from nudgeflow.store import policies as store
from tests.support import make_workspace

DAILY = Policies.model_validate({"frequency_caps": [{"id": "daily", "channel": "email", "limit": 2, "window": "24h"}]})
WEEKLY = Policies.model_validate(
    {"frequency_caps": [{"id": "weekly", "channel": "email", "limit": 5, "calendar": "week"}]}
)


def put(engine: Any, wsid: str, policies: Policies, now: int, who: str = "cli (ada)") -> store.PutResult:
    with engine.begin() as conn:
        return store.put(conn, wsid, policies, "# as written\n", who, now)


def test_each_change_is_a_new_version_and_the_earlier_ones_stay(engine: Any, wsid: str) -> None:
    with engine.connect() as conn:
        assert (
            store.get(conn, wsid) is None and store.load(conn, wsid) == EMPTY and store.latest_version(conn, wsid) == 0
        )
    assert put(engine, wsid, DAILY, 1_000) == store.PutResult(1, changed=True)
    assert put(engine, wsid, WEEKLY, 2_000, "api (admin token nfa_abcd…)") == store.PutResult(2, changed=True)
    with engine.connect() as conn:
        current = store.get(conn, wsid)
        assert current is not None
        assert (current.version, current.policies, current.created_by, current.created_at_ms) == (
            2,
            WEEKLY,
            "api (admin token nfa_abcd…)",
            2_000,
        )
        assert current.source == "# as written\n"
        first = store.get(conn, wsid, 1)
        assert first is not None and first.policies == DAILY
        assert store.history(conn, wsid) == [
            {"version": 2, "created_by": "api (admin token nfa_abcd…)", "created_at_ms": 2_000},
            {"version": 1, "created_by": "cli (ada)", "created_at_ms": 1_000},
        ]
        assert store.get(conn, wsid, 3) is None


def test_applying_what_is_in_force_stores_nothing(engine: Any, wsid: str) -> None:
    put(engine, wsid, DAILY, 1_000)
    # The same meaning, spelled differently (a default written out): no new version.
    same = Policies.model_validate(
        {"frequency_caps": [{"id": "daily", "channel": "email", "limit": 2, "window": "24h", "category": "marketing"}]}
    )
    assert put(engine, wsid, same, 2_000) == store.PutResult(1, changed=False)
    with engine.connect() as conn:
        assert len(store.history(conn, wsid)) == 1


def test_defaults_are_stored_spelled_out_and_the_schema_hint_is_not(engine: Any, wsid: str) -> None:
    hinted = Policies.model_validate({"$schema": "../schema/policies.schema.json", "collision": {"window": "10m"}})
    put(engine, wsid, hinted, 1_000)
    with engine.connect() as conn:
        stored = store.get(conn, wsid)
    assert stored is not None
    assert stored.policies.max_deferral == "7d" and stored.policies.schema_ is None
    assert stored.policies.collision is not None and stored.policies.collision.window == "10m"


def test_workspaces_are_apart(engine: Any, wsid: str) -> None:
    other = make_workspace(engine).workspace_id
    put(engine, wsid, DAILY, 1_000)
    with engine.connect() as conn:
        assert store.load(conn, other) == EMPTY and store.history(conn, other) == []


def test_the_catalog_carries_the_policies_in_force_and_its_fingerprint_moves_with_them(engine: Any, wsid: str) -> None:
    def loaded() -> tuple[Any, Policies]:
        with engine.connect() as conn:
            return journey_store.catalog_fingerprint(conn, wsid), journey_store.load_catalog(conn, wsid).policies

    before, policies = loaded()
    assert policies == EMPTY
    put(engine, wsid, DAILY, 1_000)
    after, policies = loaded()
    assert after != before and policies == DAILY
    put(engine, wsid, DAILY, 2_000)  # unchanged: the engine need not reload
    assert loaded() == (after, DAILY)
    # From an Engine too (the catalog reads through a connection of its own).
    assert journey_store.load_catalog(engine, wsid).policies == DAILY
