"""Identity resolution, merging, traits and dedupe, through write_events on a real database.

Each test writes in its own transactions, as the group committer does, and reads the
rows back, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import func, select

from nudgeflow.store.profiles import event_owners, get_profile, resolve_profile_id
from nudgeflow.store.schema import events, identities, profile_merges, profiles
from nudgeflow.store.workspaces import create_workspace
from tests.store.ingest_support import NOW_MS, alias, identify, profile_of, track, write


def make_workspace(engine: Any, name: str = "test") -> Any:
    with engine.begin() as conn:
        return create_workspace(conn, name, NOW_MS)


def profile_rows(engine: Any, workspace_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(profiles).where(profiles.c.workspace_id == workspace_id)))


def events_of(engine: Any, profile_id: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(events.c.message_id).where(events.c.profile_id == profile_id).order_by(events.c.seq)
            ).scalars()
        )


def person_events(engine: Any, profile_id: str) -> list[str]:
    """The person's events, also those still stored under a profile merged into it (ingest
    leaves them there; the engine's fold re-points them: tests/store/test_partition_log.py)."""
    with engine.connect() as conn:
        owners = event_owners(conn, profile_id)
        return list(
            conn.execute(
                select(events.c.message_id).where(events.c.profile_id.in_(owners)).order_by(events.c.seq)
            ).scalars()
        )


def view(engine: Any, workspace_id: str, ref: str) -> dict[str, Any]:
    pid = profile_of(engine, workspace_id, ref)
    assert pid is not None, f"no profile for {ref!r}"
    with engine.connect() as conn:
        profile = get_profile(conn, workspace_id, pid)
    assert profile is not None
    return profile


# -- identity resolution -----------------------------------------------------------------


def test_events_of_one_anonymous_id_share_a_profile(engine: Any, wsid: str) -> None:
    e1, e2 = track(anonymousId="anon-1"), track(anonymousId="anon-1")
    result = write(engine, wsid, e1)
    assert (result.accepted, result.profiles_created) == (1, 1)
    result = write(engine, wsid, e2, track(anonymousId="anon-2"))
    assert (result.accepted, result.profiles_created) == (2, 1)
    pid = profile_of(engine, wsid, "anon-1")
    assert events_of(engine, pid) == [e1.message_id, e2.message_id]
    assert profile_of(engine, wsid, "anon-2") not in (None, pid)
    assert len(profile_rows(engine, wsid)) == 2


def test_identify_with_both_ids_merges_anonymous_profile_into_known_one(engine: Any, wsid: str) -> None:
    known = [identify(userId="u-1", traits={"plan": "pro"}), track(userId="u-1", event="Signed Up")]
    write(engine, wsid, *known)
    anon = [track(anonymousId="device-9"), track(anonymousId="device-9", event="Product Added")]
    write(engine, wsid, *anon)
    known_pid = profile_of(engine, wsid, "u-1")
    anon_pid = profile_of(engine, wsid, "device-9")
    assert known_pid != anon_pid

    link = identify(userId="u-1", anonymousId="device-9")
    result = write(engine, wsid, link)
    assert result.merges == 1
    assert result.profiles_created == 0

    # The anonymous profile is gone; its id, its anonymousId and the userId all find the survivor.
    assert [r.id for r in profile_rows(engine, wsid)] == [known_pid]
    assert profile_of(engine, wsid, "device-9") == known_pid
    assert profile_of(engine, wsid, anon_pid) == known_pid
    assert sorted(person_events(engine, known_pid)) == sorted(r.message_id for r in [*known, *anon, link])
    # Not re-pointed by ingest: the engine folds them over (store/engine_state.move_merged).
    assert events_of(engine, anon_pid) == [r.message_id for r in anon]
    profile = view(engine, wsid, "u-1")
    assert profile["identities"] == {"user_ids": ["u-1"], "anonymous_ids": ["device-9"]}
    assert profile["merged_from"] == [anon_pid]
    assert profile["event_count"] == 5
    assert profile["user_id"] == "u-1"

    # Later anonymous events of that device go straight to the known person.
    later = track(anonymousId="device-9", event="Order Completed")
    write(engine, wsid, later)
    assert events_of(engine, known_pid)[-1] == later.message_id


def test_identify_gives_an_anonymous_profile_its_first_user_id(engine: Any, wsid: str) -> None:
    first = track(anonymousId="anon-7")
    write(engine, wsid, first)
    pid = profile_of(engine, wsid, "anon-7")
    result = write(engine, wsid, identify(userId="u-7", anonymousId="anon-7"))
    assert (result.merges, result.profiles_created) == (0, 0)
    assert profile_of(engine, wsid, "u-7") == pid
    [row] = profile_rows(engine, wsid)
    assert row.user_id == "u-7"
    assert len(events_of(engine, pid)) == 2


def test_alias_merges_anonymous_profile_into_user(engine: Any, wsid: str) -> None:
    write(engine, wsid, track(userId="u-2", event="Signed Up"))
    write(engine, wsid, track(anonymousId="anon-2"), track(anonymousId="anon-2"))
    known_pid = profile_of(engine, wsid, "u-2")
    anon_pid = profile_of(engine, wsid, "anon-2")

    result = write(engine, wsid, alias(previousId="anon-2", userId="u-2"))
    assert result.merges == 1
    assert profile_of(engine, wsid, "anon-2") == known_pid
    assert profile_of(engine, wsid, anon_pid) == known_pid
    assert len(person_events(engine, known_pid)) == 4
    assert [r.id for r in profile_rows(engine, wsid)] == [known_pid]


def test_alias_to_a_new_user_id_adopts_the_anonymous_profile(engine: Any, wsid: str) -> None:
    write(engine, wsid, track(anonymousId="anon-3"))
    pid = profile_of(engine, wsid, "anon-3")
    result = write(engine, wsid, alias(previousId="anon-3", userId="u-3"))
    assert (result.merges, result.profiles_created) == (0, 0)
    assert profile_of(engine, wsid, "u-3") == pid
    assert len(events_of(engine, pid)) == 2


def test_alias_with_unknown_previous_id_invents_no_identity(engine: Any, wsid: str) -> None:
    write(engine, wsid, alias(previousId="never-seen", userId="u-4"))
    assert profile_of(engine, wsid, "never-seen") is None
    assert view(engine, wsid, "u-4")["identities"] == {"user_ids": ["u-4"], "anonymous_ids": []}


def test_profile_with_another_user_id_is_never_merged(engine: Any, wsid: str) -> None:
    """A shared device: two customers log in on it in turn and must stay two people."""
    alice_events = [identify(userId="alice", anonymousId="shared-tablet", traits={"email": "alice@example.com"})]
    write(engine, wsid, *alice_events)
    alice = profile_of(engine, wsid, "alice")

    bob_login = identify(userId="bob", anonymousId="shared-tablet", traits={"email": "bob@example.com"})
    result = write(engine, wsid, bob_login, track(userId="bob", event="Order Completed"))
    assert result.merges == 0
    assert result.profiles_created == 1
    bob = profile_of(engine, wsid, "bob")
    assert bob != alice
    assert len(profile_rows(engine, wsid)) == 2

    alice_view, bob_view = view(engine, wsid, "alice"), view(engine, wsid, "bob")
    assert alice_view["traits"] == {"email": "alice@example.com"}
    assert bob_view["traits"] == {"email": "bob@example.com"}
    assert alice_view["user_id"] == "alice" and bob_view["user_id"] == "bob"
    assert alice_view["event_count"] == 1 and bob_view["event_count"] == 2
    # The device stays with the profile that first claimed it.
    assert profile_of(engine, wsid, "shared-tablet") == alice

    # An alias between two known users does not fuse them either.
    assert write(engine, wsid, alias(previousId="alice", userId="bob")).merges == 0
    assert {r.id for r in profile_rows(engine, wsid)} == {alice, bob}


def test_two_anonymous_devices_merge_into_one_user(engine: Any, wsid: str) -> None:
    write(engine, wsid, track(anonymousId="phone"), track(anonymousId="laptop"))
    phone, laptop = profile_of(engine, wsid, "phone"), profile_of(engine, wsid, "laptop")
    write(engine, wsid, identify(userId="carol", anonymousId="phone"))
    result = write(engine, wsid, identify(userId="carol", anonymousId="laptop"))
    assert result.merges == 1
    carol = profile_of(engine, wsid, "carol")
    assert carol == phone
    assert profile_of(engine, wsid, laptop) == carol
    assert view(engine, wsid, "carol")["identities"] == {"user_ids": ["carol"], "anonymous_ids": ["laptop", "phone"]}
    assert len(person_events(engine, carol)) == 4


def test_merges_inside_one_batch(engine: Any, wsid: str) -> None:
    batch = [
        track(anonymousId="anon-b", event="Product Viewed"),
        track(userId="u-b", event="Signed Up"),
        identify(userId="u-b", anonymousId="anon-b", traits={"first_name": "Dana"}),
        track(anonymousId="anon-b", event="Product Added"),
        track(anonymousId="other-anon"),
    ]
    result = write(engine, wsid, *batch)
    assert result.accepted == 5
    assert result.merges == 1
    pid = profile_of(engine, wsid, "u-b")
    assert profile_of(engine, wsid, "anon-b") == pid
    assert events_of(engine, pid) == [r.message_id for r in batch[:4]]
    assert len(profile_rows(engine, wsid)) == 2
    profile = view(engine, wsid, "u-b")
    assert profile["traits"] == {"first_name": "Dana"}
    assert profile["identities"] == {"user_ids": ["u-b"], "anonymous_ids": ["anon-b"]}
    # Every identity points at a profile that exists.
    with engine.connect() as conn:
        dangling = conn.execute(
            select(func.count())
            .select_from(identities.outerjoin(profiles, profiles.c.id == identities.c.profile_id))
            .where(identities.c.workspace_id == wsid, profiles.c.id.is_(None))
        ).scalar_one()
        dangling_events = conn.execute(
            select(func.count())
            .select_from(events.outerjoin(profiles, profiles.c.id == events.c.profile_id))
            .where(events.c.workspace_id == wsid, profiles.c.id.is_(None))
        ).scalar_one()
    assert dangling == dangling_events == 0


def test_profile_merges_lets_an_old_profile_id_find_the_survivor(engine: Any, wsid: str) -> None:
    write(engine, wsid, identify(userId="u-m", traits={"plan": "pro"}))
    old_ids = []
    for device in ("d1", "d2", "d3"):
        write(engine, wsid, track(anonymousId=device))
        old_ids.append(profile_of(engine, wsid, device))
        write(engine, wsid, alias(previousId=device, userId="u-m"))
    survivor = profile_of(engine, wsid, "u-m")
    assert survivor not in old_ids
    with engine.connect() as conn:
        rows = conn.execute(
            select(profile_merges.c.from_profile_id, profile_merges.c.into_profile_id).where(
                profile_merges.c.workspace_id == wsid
            )
        ).all()
        assert sorted(rows) == sorted((old, survivor) for old in old_ids)
        for old in old_ids:
            assert resolve_profile_id(conn, wsid, old) == survivor
        # Another workspace does not see these merges.
    other = make_workspace(engine, "other").workspace_id
    assert all(profile_of(engine, other, old) is None for old in old_ids)


def test_merge_keeps_known_traits_and_fills_gaps_from_anonymous_ones(engine: Any, wsid: str) -> None:
    write(engine, wsid, identify(userId="u-t", traits={"plan": "pro", "email": "t@example.com"}))
    write(engine, wsid, identify(anonymousId="anon-t", traits={"plan": "trial", "favourite_colour": "green"}))
    write(engine, wsid, identify(userId="u-t", anonymousId="anon-t"))
    assert view(engine, wsid, "u-t")["traits"] == {
        "plan": "pro",
        "email": "t@example.com",
        "favourite_colour": "green",
    }


# -- traits ------------------------------------------------------------------------------


def test_identify_merges_traits_later_wins_and_null_clears(engine: Any, wsid: str) -> None:
    write(engine, wsid, identify(userId="u-tr", traits={"plan": "free", "name": "Eve", "company": "Acme"}))
    write(engine, wsid, identify(userId="u-tr", traits={"plan": "pro", "seats": 5}))
    assert view(engine, wsid, "u-tr")["traits"] == {"plan": "pro", "name": "Eve", "company": "Acme", "seats": 5}

    write(engine, wsid, identify(userId="u-tr", traits={"company": None}))
    traits = view(engine, wsid, "u-tr")["traits"]
    assert traits.get("company") is None
    assert {k: v for k, v in traits.items() if v is not None} == {"plan": "pro", "name": "Eve", "seats": 5}


def test_later_identify_in_the_same_batch_wins(engine: Any, wsid: str) -> None:
    write(
        engine,
        wsid,
        identify(userId="u-o", traits={"plan": "free", "a": 1}),
        identify(userId="u-o", traits={"plan": "pro"}),
        identify(userId="u-o", traits={"plan": "enterprise", "b": 2}),
    )
    assert view(engine, wsid, "u-o")["traits"] == {"plan": "enterprise", "a": 1, "b": 2}


def test_track_does_not_touch_traits(engine: Any, wsid: str) -> None:
    write(engine, wsid, identify(userId="u-k", traits={"plan": "pro"}))
    write(engine, wsid, track(userId="u-k", properties={"plan": "free"}))
    assert view(engine, wsid, "u-k")["traits"] == {"plan": "pro"}


def test_reserved_traits_are_validated_and_bad_ones_reported_not_applied(engine: Any, wsid: str) -> None:
    write(
        engine,
        wsid,
        identify(
            userId="u-r",
            traits={"email": "r@example.com", "timezone": "Europe/Paris", "firstName": "Rita", "locale": "fr-FR"},
        ),
    )
    bad = identify(userId="u-r", traits={"timezone": "Mars/Olympus", "email": "not-an-email", "plan": "pro"})
    assert bad.trait_errors is not None and set(bad.trait_errors) == {"timezone", "email"}
    write(engine, wsid, bad)
    profile = view(engine, wsid, "u-r")
    # The good values stay; the bad ones are reported with a reason, not stored as traits.
    assert profile["traits"] == {
        "email": "r@example.com",
        "timezone": "Europe/Paris",
        "first_name": "Rita",
        "locale": "fr-FR",
        "plan": "pro",
    }
    assert set(profile["trait_errors"]) == {"timezone", "email"}
    assert profile["trait_errors"]["timezone"]["value"] == "Mars/Olympus"
    assert "time zone" in profile["trait_errors"]["timezone"]["reason"]

    # A later valid value clears the reported error.
    write(engine, wsid, identify(userId="u-r", traits={"timezone": "America/New_York"}))
    profile = view(engine, wsid, "u-r")
    assert profile["traits"]["timezone"] == "America/New_York"
    assert set(profile["trait_errors"]) == {"email"}


# -- dedupe ------------------------------------------------------------------------------


def test_duplicates_within_a_batch_and_against_the_database_are_stored_once(engine: Any, wsid: str) -> None:
    first = track(userId="u-d", messageId="dup-1")
    again = track(userId="u-d", messageId="dup-1", event="Changed Name")
    second = track(userId="u-d", messageId="dup-2")
    result = write(engine, wsid, first, again, second)
    assert (result.accepted, result.duplicates) == (2, 1)

    retry = [
        track(userId="u-d", messageId="dup-1"),
        track(userId="u-d", messageId="dup-2"),
        track(userId="u-d", messageId="dup-3"),
    ]
    result = write(engine, wsid, *retry)
    assert (result.accepted, result.duplicates) == (1, 2)
    assert write(engine, wsid, *retry).accepted == 0

    with engine.connect() as conn:
        stored = conn.execute(
            select(events.c.message_id, events.c.payload).where(events.c.workspace_id == wsid).order_by(events.c.seq)
        ).all()
    assert [m for m, _ in stored] == ["dup-1", "dup-2", "dup-3"]
    # The first copy is the one kept.
    assert orjson.loads(stored[0].payload)["event"] == "Product Viewed"


def test_duplicate_identify_does_not_reapply_traits(engine: Any, wsid: str) -> None:
    write(engine, wsid, identify(userId="u-dt", messageId="id-1", traits={"plan": "free"}))
    write(engine, wsid, identify(userId="u-dt", messageId="id-2", traits={"plan": "pro"}))
    # A retry of the first identify arrives late: it is a duplicate and must not roll the plan back.
    assert write(engine, wsid, identify(userId="u-dt", messageId="id-1", traits={"plan": "free"})).duplicates == 1
    assert view(engine, wsid, "u-dt")["traits"] == {"plan": "pro"}


def test_duplicate_identify_does_not_merge(engine: Any, wsid: str) -> None:
    write(engine, wsid, track(userId="u-dm"), track(anonymousId="anon-dm"))
    write(engine, wsid, track(userId="u-dm", messageId="shared-id"))
    # The same messageId carrying linking ids is a duplicate: nothing is merged by it.
    result = write(engine, wsid, identify(userId="u-dm", anonymousId="anon-dm", messageId="shared-id"))
    assert (result.accepted, result.duplicates, result.merges) == (0, 1, 0)
    assert profile_of(engine, wsid, "anon-dm") != profile_of(engine, wsid, "u-dm")


def test_same_message_id_in_two_workspaces_is_stored_in_each(engine: Any, wsid: str) -> None:
    other = make_workspace(engine, "other").workspace_id
    assert write(engine, wsid, track(userId="u-w", messageId="same")).accepted == 1
    assert write(engine, other, track(userId="u-w", messageId="same")).accepted == 1
    assert profile_of(engine, wsid, "u-w") != profile_of(engine, other, "u-w")


def test_many_events_in_one_write(engine: Any, wsid: str) -> None:
    """More ids than one IN-list chunk: the bulk paths chunk their queries."""
    batch = [track(anonymousId=f"bulk-{i % 1200}", messageId=f"bulk-msg-{i}") for i in range(2500)]
    result = write(engine, wsid, *batch)
    assert (result.accepted, result.profiles_created) == (2500, 1200)
    result = write(engine, wsid, *batch[:1500], identify(userId="bulk-user", anonymousId="bulk-3"))
    assert (result.accepted, result.duplicates) == (1, 1500)
    with engine.connect() as conn:
        assert (
            conn.execute(select(func.count()).select_from(events).where(events.c.workspace_id == wsid)).scalar_one()
            == 2501
        )


def test_a_profile_created_and_merged_away_in_one_commit_is_not_counted(engine: Any, wsid: str) -> None:
    write(engine, wsid, identify(userId="known-1"))
    result = write(engine, wsid, track(anonymousId="new-device"), identify(userId="known-1", anonymousId="new-device"))
    assert (result.accepted, result.merges, result.profiles_created) == (2, 1, 0)
    assert len(profile_rows(engine, wsid)) == 1
