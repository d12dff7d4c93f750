"""Messages a send policy withheld, in the outbox, on SQLite and PostgreSQL: deferred rows wait
unclaimed with their reason, and the decision at their release replaces them; nothing else is
ever replaced."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from nudgeflow.core.effects import DEFERRED, DROPPED, Effect, MessageFailed, MessageWithheld, ScheduleTimer, SendMessage
from nudgeflow.store import outbox
from nudgeflow.store.effects_writer import EffectsBatch, WriteCounts

KEY = "run1:welcome:1"


def send(at_ms: int, key: str = KEY, channel: str = "email") -> SendMessage:
    return SendMessage(
        key=key,
        run_id="run1",
        journey_id="welcome",
        version=1,
        step="welcome",
        channel=channel,
        template="welcome",
        variant=None,
        marketing=True,
        at_ms=at_ms,
        context={"trigger": {"event": "Signed Up"}},
    )


def withheld(status: str, reason: str, at_ms: int, until_ms: int | None = None, key: str = KEY) -> MessageWithheld:
    return MessageWithheld(
        key=key,
        run_id="run1",
        journey_id="welcome",
        version=1,
        step="welcome",
        channel="email",
        template="welcome",
        variant=None,
        marketing=True,
        status=status,
        reason=reason,
        at_ms=at_ms,
        until_ms=until_ms,
    )


def write(engine: Any, wsid: str, *decisions: list[Effect], now: int = 1_000) -> WriteCounts:
    batch = EffectsBatch()
    for effects in decisions:
        batch.add(wsid, "prf_1", effects, now)
    with engine.begin() as conn:
        return batch.write(conn, now)


def rows(engine: Any, wsid: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT idempotency_key, status, reason, next_attempt_at_ms, created_at_ms, updated_at_ms FROM outbox"
                " WHERE workspace_id = :w ORDER BY idempotency_key"
            ),
            {"w": wsid},
        )
        return [tuple(r) for r in found]


def claimable(engine: Any, now: int) -> list[str]:
    with engine.connect() as conn:
        return [r[2] for r in outbox.claim_due(conn, now, 100)]


def test_a_deferred_message_waits_unclaimed_with_its_reason_then_its_release_makes_it_pending(
    engine: Any, wsid: str
) -> None:
    counts = write(engine, wsid, [withheld(DEFERRED, "quiet_hours", 1_000, until_ms=50_000)])
    assert counts.messages_queued == 0 and counts.messages_withheld == {(DEFERRED, "quiet_hours", "email"): 1}
    assert rows(engine, wsid) == [(KEY, DEFERRED, "quiet_hours", 50_000, 1_000, 1_000)]
    assert KEY not in claimable(engine, 10**12)  # never claimed by dispatch, however late
    # The release: the SendMessage with the same key replaces the row, and it is queued now:
    # created_at_ms is the release (a push's time to live counts from it, not from the deferral).
    counts = write(engine, wsid, [send(50_000)], now=50_000)
    assert counts.messages_queued == 1
    assert rows(engine, wsid) == [(KEY, "pending", None, 50_000, 50_000, 50_000)]
    assert KEY in claimable(engine, 50_000)


def test_a_deferred_message_can_be_deferred_again_or_dropped_at_its_release(engine: Any, wsid: str) -> None:
    write(engine, wsid, [withheld(DEFERRED, "frequency_cap:daily", 1_000, until_ms=5_000)])
    write(engine, wsid, [withheld(DEFERRED, "collision:winback", 5_000, until_ms=9_000)], now=5_000)
    assert rows(engine, wsid) == [(KEY, DEFERRED, "collision:winback", 9_000, 5_000, 5_000)]
    write(engine, wsid, [withheld(DROPPED, "max_deferral", 9_000)], now=9_000)
    assert rows(engine, wsid) == [(KEY, DROPPED, "max_deferral", 9_000, 9_000, 9_000)]
    # Dropped is final: a batch decided again does not bring the message back.
    write(engine, wsid, [send(9_500)], now=9_500)
    assert rows(engine, wsid)[0][1:3] == (DROPPED, "max_deferral")


def test_a_deferred_message_that_cannot_be_built_at_its_release_is_failed(engine: Any, wsid: str) -> None:
    write(engine, wsid, [withheld(DEFERRED, "quiet_hours", 1_000, until_ms=5_000)])
    failed = MessageFailed(key=KEY, run_id="run1", journey_id="welcome", step="welcome", reason="no template")
    write(engine, wsid, [failed], now=5_000)
    with engine.connect() as conn:
        status, reason, error = conn.execute(
            text("SELECT status, reason, error FROM outbox WHERE workspace_id = :w"), {"w": wsid}
        ).one()
    assert (status, reason, error) == ("failed", None, "no template")


def test_rows_that_are_not_deferred_are_never_replaced(engine: Any, wsid: str) -> None:
    write(engine, wsid, [send(1_000)])
    # A batch decided twice, or a confused decision: the pending (or sent) row stays as it is.
    write(engine, wsid, [withheld(DEFERRED, "quiet_hours", 2_000, until_ms=9_000)], now=2_000)
    write(engine, wsid, [withheld(DROPPED, "collision:other", 2_000)], now=2_000)
    assert rows(engine, wsid) == [(KEY, "pending", None, 1_000, 1_000, 1_000)]


def test_in_one_batch_the_later_decision_on_a_deferred_key_wins_as_in_the_table(engine: Any, wsid: str) -> None:
    counts = write(
        engine,
        wsid,
        [withheld(DEFERRED, "quiet_hours", 1_000, until_ms=5_000), withheld(DROPPED, "run_ended", 1_000, key="k2")],
        [send(1_000), withheld(DEFERRED, "quiet_hours", 1_000, until_ms=7_000, key="k2")],
    )
    assert [r[:3] for r in rows(engine, wsid)] == [("k2", DROPPED, "run_ended"), (KEY, "pending", None)]
    assert counts.messages_queued == 1
    # Every decision to withhold counts, the ones a later decision overtook too.
    assert counts.messages_withheld == {(DEFERRED, "quiet_hours", "email"): 2, (DROPPED, "run_ended", "email"): 1}


def test_the_metrics_label_is_the_reason_family_never_the_workspace_s_ids(engine: Any, wsid: str) -> None:
    counts = write(
        engine,
        wsid,
        [
            withheld(DROPPED, "frequency_cap:daily", 1_000, key="a"),
            withheld(DROPPED, "frequency_cap:weekly", 1_000, key="b"),
            withheld(DEFERRED, "collision:winback", 1_000, until_ms=2_000, key="c"),
            withheld(DEFERRED, "something new", 1_000, until_ms=2_000, key="d"),
        ],
    )
    assert counts.messages_withheld == {
        (DROPPED, "frequency_cap", "email"): 2,
        (DEFERRED, "collision", "email"): 1,
        (DEFERRED, "other", "email"): 1,
    }
    # The row keeps the whole reason.
    assert [r[2] for r in rows(engine, wsid)] == [
        "frequency_cap:daily",
        "frequency_cap:weekly",
        "collision:winback",
        "something new",
    ]


def test_a_withheld_message_must_be_deferred_or_dropped(engine: Any, wsid: str) -> None:
    with pytest.raises(ValueError, match="deferred or dropped"):
        EffectsBatch().add(wsid, "prf_1", [withheld("pending", "quiet_hours", 1_000)], 1_000)


def test_the_profile_s_messages_show_status_reason_and_when_a_deferred_one_is_decided_again(
    engine: Any, wsid: str
) -> None:
    write(
        engine,
        wsid,
        [withheld(DEFERRED, "quiet_hours", 1_000, until_ms=86_400_000, key="a"), send(1_000, key="b")],
    )
    with engine.connect() as conn:
        page, cursor = outbox.profile_messages(conn, wsid, ["prf_1"], limit=1)
        assert cursor is not None and [m["key"] for m in page] == ["b"]
        assert (page[0]["status"], page[0]["reason"], page[0]["deferred_until"]) == ("pending", None, None)
        rest, end = outbox.profile_messages(conn, wsid, ["prf_1"], limit=1, before=cursor)
    assert end is None and [m["key"] for m in rest] == ["a"]
    assert (rest[0]["status"], rest[0]["reason"], rest[0]["deferred_until"]) == (
        DEFERRED,
        "quiet_hours",
        "1970-01-02T00:00:00Z",
    )


def test_a_release_timer_armed_anew_earlier_in_the_batch_survives_its_stale_row_firing(engine: Any, wsid: str) -> None:
    """Releases due together are decided on the first of their timers, which re-arms the
    others' keys when it defers them again; those timers, claimed in the same batch as they
    were stored, then fire: their deletion must not take the new arm with it."""
    key = "release:run2:hello:1"
    batch = EffectsBatch()
    batch.delete_timer("prf_1", "release:run1:hello:1")  # the first fires, and re-arms the second
    batch.add(wsid, "prf_1", [ScheduleTimer(key, 20_000, {"kind": "release"})], 10_000)
    batch.delete_timer("prf_1", key)  # the second, as it was stored (due 10_000), fires
    batch.add(wsid, "prf_1", [], 10_000)
    batch.delete_timer("prf_1", "release:run3:hello:1")  # a plain fired timer is still deleted
    with engine.begin() as conn:
        counts = batch.write(conn, 10_000)
        due = conn.execute(text('SELECT "key", due_at_ms FROM timers WHERE workspace_id = :w'), {"w": wsid}).all()
    assert [tuple(r) for r in due] == [(key, 20_000)]
    assert (counts.timers_scheduled, counts.timers_deleted) == (1, 2)
