"""The People search (store/people_search.py) on SQLite and PostgreSQL: by userId, anonymousId,
email (without case) and profile id, exactly and by prefix, within the workspace only, and on
indexes (the query plans name them)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import insert, select, text

from nudgeflow.store import people_search
from nudgeflow.store.people_search import search_people
from nudgeflow.store.schema import EmailTrait, identities, profiles
from nudgeflow.store.workspaces import create_workspace

T0 = 1_800_000_000_000


def add_person(conn: Any, wsid: str, pid: str, user_id: str | None, anon: str, email: str | None) -> None:
    traits = {"email": email} if email else {}
    conn.execute(
        insert(profiles).values(
            id=pid,
            workspace_id=wsid,
            user_id=user_id,
            traits=orjson.dumps(traits).decode(),
            created_at_ms=T0,
            updated_at_ms=T0,
        )
    )
    keys = [f"a:{anon}"] + ([f"u:{user_id}"] if user_id else [])
    conn.execute(
        insert(identities), [{"workspace_id": wsid, "key": k, "profile_id": pid, "created_at_ms": T0} for k in keys]
    )


@pytest.fixture
def people(engine: Any, wsid: str) -> dict[str, str]:
    tail = wsid.removeprefix("ws_")
    ids = {name: f"prf_{name}_{tail}" for name in ("ada", "adam", "bob", "pct")}
    with engine.begin() as conn:
        add_person(conn, wsid, ids["ada"], "ada", "anon-1", "Ada.Lovelace@Example.com")
        add_person(conn, wsid, ids["adam"], "adam", "anon-2", "adam@example.com")
        add_person(conn, wsid, ids["bob"], None, "visitor-ada", None)
        add_person(conn, wsid, ids["pct"], "50%_off", "anon-3", "a_b@example.com")
    return ids


def names(found: list[dict[str, Any]], ids: dict[str, str]) -> list[str]:
    back = {v: k for k, v in ids.items()}
    return [back[f["profile_id"]] for f in found]


@pytest.fixture(params=["range", "like"])
def prefix_by(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each search test twice: id prefixes as a range of the primary key (a database that
    orders text by code point) and as a LIKE (one with a language's collation)."""
    if request.param == "like":
        monkeypatch.setattr(people_search, "orders_by_code_point", lambda conn: False)
    return str(request.param)


def test_the_test_databases_order_text_by_code_point(engine: Any) -> None:
    with engine.connect() as conn:
        assert people_search.orders_by_code_point(conn) is True


def test_exact_matches_come_first_then_prefixes(engine: Any, wsid: str, people: dict[str, str], prefix_by: str) -> None:
    with engine.connect() as conn:
        found = search_people(conn, wsid, "ada")
        assert names(found, people) == ["ada", "adam"]
        assert found[0]["matched"] == "userId ada" and found[0]["email"] == "Ada.Lovelace@Example.com"
        assert names(search_people(conn, wsid, "visitor-"), people) == ["bob"]
        assert search_people(conn, wsid, "visitor-")[0]["matched"] == "anonymousId visitor-ada"
        assert names(search_people(conn, wsid, "ADA.LOVELACE@example.com"), people) == ["ada"]
        assert names(search_people(conn, wsid, "ada.l"), people) == ["ada"]
        assert names(search_people(conn, wsid, people["adam"]), people) == ["adam"]
        assert search_people(conn, wsid, "  ") == [] and search_people(conn, wsid, "zzz") == []
        assert names(search_people(conn, wsid, "ada", limit=1), people) == ["ada"]


def test_like_s_wildcards_are_plain_characters(engine: Any, wsid: str, people: dict[str, str], prefix_by: str) -> None:
    with engine.connect() as conn:
        assert names(search_people(conn, wsid, "50%"), people) == ["pct"]
        assert search_people(conn, wsid, "5_%") == []
        assert names(search_people(conn, wsid, "a_"), people) == ["pct"]  # a_b@, not ada or adam
        assert search_people(conn, wsid, "%") == []


def test_another_workspace_finds_no_one(engine: Any, wsid: str, people: dict[str, str]) -> None:
    with engine.begin() as conn:
        other = create_workspace(conn, "other", T0).workspace_id
    with engine.connect() as conn:
        for q in ("ada", "anon-1", "adam@example.com", people["ada"]):
            assert search_people(conn, other, q) == []


def test_the_email_search_uses_its_index(engine: Any, wsid: str, people: dict[str, str]) -> None:
    p = profiles.c
    with engine.connect() as conn:
        exact = select(p.id).where(p.workspace_id == wsid, EmailTrait() == "adam@example.com")
        compiled = exact.compile(conn, compile_kwargs={"literal_binds": True})
        if conn.dialect.name == "sqlite":
            plan = " ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
        else:
            conn.execute(text("SET LOCAL enable_seqscan = off"))  # a handful of rows: the planner would scan
            plan = " ".join(r[0] for r in conn.execute(text(f"EXPLAIN {compiled}")))
    assert "ix_profiles_email" in plan, plan
