"""Migration 0014 (consent per channel) on both databases: what old rows mean afterwards."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from nudgeflow.store import database

BEFORE = "0013"
OURS = "0014"


def _rows(engine: Any) -> set[tuple[Any, ...]]:
    with engine.connect() as conn:
        return {
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT profile_id, channel, topic, subscribed, frequency, updated_at_ms, source "
                    "FROM subscriptions ORDER BY profile_id, channel, topic"
                )
            )
        }


def test_old_rows_mean_email_refusals_also_hold_for_push_and_all_off_stays_on_top(new_engine: Any) -> None:
    database.upgrade(new_engine, BEFORE)
    with new_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscriptions (workspace_id, profile_id, topic, subscribed, frequency, updated_at_ms) "
                "VALUES (:w, :p, :t, :s, :f, :at)"
            ),
            [
                # ada left all marketing, then ticked offers in the same form later: still all off
                {"w": "ws", "p": "ada", "t": "*", "s": 0, "f": "fewer", "at": 100},
                {"w": "ws", "p": "ada", "t": "offers", "s": 1, "f": "normal", "at": 200},
                # bob left one topic; his "*" row only holds a frequency
                {"w": "ws", "p": "bob", "t": "*", "s": 1, "f": "fewer", "at": 300},
                {"w": "ws", "p": "bob", "t": "news", "s": 0, "f": "normal", "at": 250},
            ],
        )
    database.upgrade(new_engine, OURS)
    assert _rows(new_engine) == {
        ("ada", "email", "*", 0, "fewer", 200, None),
        ("ada", "email", "offers", 1, "normal", 200, None),
        ("ada", "push", "*", 0, "normal", 200, "migration"),
        ("bob", "email", "*", 1, "fewer", 300, None),
        ("bob", "email", "news", 0, "normal", 250, None),
        ("bob", "push", "news", 0, "normal", 250, "migration"),
    }
    # The key has the channel: the same topic on two channels is two rows.
    with new_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscriptions (workspace_id, profile_id, channel, topic, subscribed, frequency, "
                "updated_at_ms) VALUES ('ws', 'bob', 'sms', 'news', 1, 'normal', 1)"
            )
        )
    database.upgrade(new_engine)
    assert database.is_current(new_engine)


def test_the_migration_goes_down_again(new_engine: Any) -> None:
    database.upgrade(new_engine, OURS)
    with new_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscriptions (workspace_id, profile_id, channel, topic, subscribed, frequency, "
                "updated_at_ms) VALUES ('ws', 'ada', 'email', '*', 0, 'normal', 5), "
                "('ws', 'ada', 'push', '*', 1, 'normal', 6)"
            )
        )
    database.downgrade(new_engine, BEFORE)
    with new_engine.connect() as conn:
        rows = conn.execute(text("SELECT profile_id, topic, subscribed FROM subscriptions")).all()
    assert [tuple(r) for r in rows] == [("ada", "*", 0)]
    database.upgrade(new_engine)
