"""The simulator: its clock, timers, identity and results, first around a scripted stand-in
for the core (so that what is tested is the simulator alone), then around the real core."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nudgeflow.core.clock import to_ms
from nudgeflow.core.effects import (
    CancelTimer,
    Effect,
    MessageFailed,
    RunChanged,
    ScheduleTimer,
    SendMessage,
    UpdateProfile,
)
from nudgeflow.core.inputs import EventInput, TimerInput
from nudgeflow.core.state import ProfileState
from nudgeflow.model.iso_time import iso
from nudgeflow.model.journeys import Journey
from nudgeflow.runtime.simulation import InvalidMessage, PlannedMessage, Simulation, message_time_ms

H = 3_600_000
D = 24 * H
T0 = "2026-03-02T09:00:00.000Z"  # a Monday
T0_MS = 1772442000000


def at(offset_ms: int) -> str:
    return iso(T0_MS + offset_ms)


def journey(doc: dict[str, Any]) -> Journey:
    return Journey.model_validate(doc)


# The stand-in needs journeys only for the catalog and summary.
STUB = journey(
    {
        "id": "stub",
        "name": "Stub",
        "trigger": {"type": "event", "event": "Start"},
        "steps": {"hello": {"type": "send", "channel": "email", "template": "t-hello"}},
    }
)


class ScriptedCore:
    """A stand-in core: records every call and answers from simple rules.

    track "Start"  -> a run enters; a timer "t:<n>" `delay` later (its payload names a step)
    track "Again"  -> re-arms the same timer key "t:1" `delay` from now
    track "Stop"   -> cancels timer "t:1"; the run exits with reason "stopped"
    timer          -> a message from the step in the payload; the run completes
    identify       -> UpdateProfile; a MessageFailed when traits say {"fail": true}
    """

    def __init__(self, delay: int = H) -> None:
        self.calls: list[tuple[str, str, str, int, int]] = []  # (kind, profile, what, event/due ms, now)
        self.delay = delay

    def _run(
        self,
        state: ProfileState,
        n: int,
        status: str = "active",
        reason: str | None = None,
        converted: int | None = None,
        holdout: bool = False,
    ) -> RunChanged:
        return RunChanged(
            {
                "id": f"{state.profile_id}-run{n}",
                "journey_id": "stub",
                "version": 1,
                "profile_id": state.profile_id,
                "status": status,
                "step": None,
                "holdout": int(holdout),
                "entered_at_ms": 0,
                "ended_at_ms": None,
                "exit_reason": reason,
                "converted_at_ms": converted,
                "revenue": 12.5 if converted else None,
            }
        )

    def on_event(self, state: ProfileState, event: EventInput, now_ms: int) -> list[Effect]:
        self.calls.append(("event", state.profile_id, event.name, event.timestamp_ms, now_ms))
        out: list[Effect] = []
        if event.name == "Start":
            state.run_seq += 1
            n = state.run_seq
            holdout = bool(event.properties.get("holdout"))
            out.append(
                self._run(
                    state,
                    n,
                    holdout=holdout,
                    status="done" if holdout else "active",
                    reason="holdout" if holdout else None,
                )
            )
            if not holdout:
                out.append(
                    ScheduleTimer(
                        f"t:{n}", now_ms + self.delay, {"step": event.properties.get("step", "hello"), "n": n}
                    )
                )
        elif event.name == "Again":
            out.append(ScheduleTimer("t:1", now_ms + self.delay, {"step": "again", "n": 1}))
        elif event.name == "Stop":
            out += [CancelTimer("t:1"), self._run(state, 1, "exited", "stopped")]
        elif event.name == "Buy":
            out += [CancelTimer("t:1"), self._run(state, 1, "done", "completed", converted=event.timestamp_ms)]
        elif event.type == "identify":
            out.append(UpdateProfile(set=dict(event.traits or {}), unset=[]))
            if (event.traits or {}).get("fail"):
                out.append(MessageFailed("k", "r", "stub", "hello", "no template"))
        return out

    def on_timer(self, state: ProfileState, timer: TimerInput, now_ms: int) -> list[Effect]:
        self.calls.append(("timer", state.profile_id, timer.key, timer.due_ms, now_ms))
        n = timer.payload["n"]
        step = timer.payload["step"]
        return [
            SendMessage(
                f"key-{state.profile_id}-{n}-{step}",
                f"{state.profile_id}-run{n}",
                "stub",
                1,
                step,
                "email",
                f"t-{step}",
                None,
                True,
                now_ms,
            ),
            self._run(state, n, "done", "completed"),
        ]


def sim_with(core: ScriptedCore | None = None, **kwargs: Any) -> tuple[Simulation, ScriptedCore]:
    core = core or ScriptedCore()
    return Simulation([STUB], engine=core, **kwargs), core


def track(user: str | None, event: str, when: str, anonymous_id: str | None = None, **props: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "track", "event": event, "timestamp": when, "properties": props}
    if user:
        message["userId"] = user
    if anonymous_id:
        message["anonymousId"] = anonymous_id
    return message


# --- clock and timers ----------------------------------------------------------------------


def test_an_event_is_processed_at_its_own_timestamp() -> None:
    sim, core = sim_with()
    sim.feed(track("ada", "Start", T0))
    assert core.calls == [("event", "ada", "Start", T0_MS, T0_MS)]
    assert sim.now_ms == T0_MS


def test_timers_due_before_an_event_fire_first_in_due_order_at_their_due_time() -> None:
    sim, core = sim_with()
    sim.feed(track("ada", "Start", at(0), step="a"))  # due +1h
    sim.feed(track("bob", "Start", at(10 * 60_000), step="b"))  # due +1h10
    sim.feed(track("cy", "Start", at(5 * 60_000), step="c"))  # late: processed at +10 min, due +1h10 too
    planned = sim.feed(track("dan", "Ping", at(2 * H)))

    fired = [c for c in core.calls if c[0] == "timer"]
    assert [(c[1], c[4]) for c in fired] == [
        ("ada", T0_MS + H),
        ("bob", T0_MS + H + 600_000),
        ("cy", T0_MS + H + 600_000),
    ]
    # feed returns what was planned meanwhile, in order, with the time the core gave.
    assert [(m.user_id, m.step, m.at_ms) for m in planned] == [
        ("ada", "a", T0_MS + H),
        ("bob", "b", T0_MS + H + 600_000),
        ("cy", "c", T0_MS + H + 600_000),
    ]
    assert core.calls[-1] == ("event", "dan", "Ping", T0_MS + 2 * H, T0_MS + 2 * H)


def test_a_timer_due_exactly_at_an_event_fires_before_it() -> None:
    sim, core = sim_with()
    sim.feed(track("ada", "Start", at(0)))
    sim.feed(track("ada", "Ping", at(H)))
    assert [c[0] for c in core.calls] == ["event", "timer", "event"]


def test_the_same_key_replaces_the_earlier_timer() -> None:
    sim, core = sim_with()
    sim.feed(track("ada", "Start", at(0)))  # t:1 due +1h
    sim.feed(track("ada", "Again", at(50 * 60_000)))  # t:1 now due +1h50
    assert sim.timers_of("ada") == {"t:1": T0_MS + 110 * 60_000}
    sim.advance_to(T0_MS + 3 * H)
    fired = [c for c in core.calls if c[0] == "timer"]
    assert fired == [("timer", "ada", "t:1", T0_MS + 110 * 60_000, T0_MS + 110 * 60_000)]
    assert [m.step for m in sim.messages] == ["again"]


def test_a_cancelled_timer_never_fires() -> None:
    sim, core = sim_with()
    sim.feed(track("ada", "Start", at(0)))
    sim.feed(track("ada", "Stop", at(30 * 60_000)))
    assert sim.pending_timers == 0
    sim.advance("2d")
    assert not [c for c in core.calls if c[0] == "timer"]
    assert sim.messages == []


def test_advance_and_advance_to_fire_what_falls_due_and_move_the_clock() -> None:
    sim, _core = sim_with()
    sim.feed(track("ada", "Start", at(0)))
    assert sim.advance("59m") == []
    assert sim.now_ms == T0_MS + 59 * 60_000
    planned = sim.advance(60_000)
    assert [m.step for m in planned] == ["hello"] and sim.now_ms == T0_MS + H
    sim.advance_to(at(5 * H))
    assert sim.now_ms == T0_MS + 5 * H
    sim.advance_to(T0_MS)  # the clock never goes back
    assert sim.now_ms == T0_MS + 5 * H


def test_drain_fires_up_to_the_horizon_and_leaves_the_clock_at_the_last_timer() -> None:
    core = ScriptedCore(delay=3 * D)
    sim, _ = sim_with(core)
    sim.feed(track("ada", "Start", at(0)))
    sim.feed(track("bob", "Start", at(H)))
    assert sim.drain(T0_MS + 3 * D) == sim.messages[:1]
    assert sim.now_ms == T0_MS + 3 * D and sim.pending_timers == 1
    sim.drain(T0_MS + 30 * D)
    assert sim.now_ms == T0_MS + 3 * D + H and sim.pending_timers == 0


def test_advance_before_any_event_needs_a_start() -> None:
    sim, _ = sim_with()
    with pytest.raises(ValueError, match="clock"):
        sim.advance("1h")
    started, _ = sim_with(start_ms=T0_MS)
    started.advance("1h")
    assert started.now_ms == T0_MS + H


def test_a_late_event_is_processed_now_with_its_own_event_time() -> None:
    sim, core = sim_with()
    sim.feed(track("ada", "Ping", at(2 * H)))
    sim.feed(track("bob", "Ping", at(0)))
    assert core.calls[-1] == ("event", "bob", "Ping", T0_MS, T0_MS + 2 * H)


def test_a_message_without_a_time_happens_now() -> None:
    sim, core = sim_with(start_ms=T0_MS)
    sim.feed({"type": "track", "userId": "ada", "event": "Ping"})
    assert core.calls == [("event", "ada", "Ping", T0_MS, T0_MS)]
    fresh, _ = sim_with()
    with pytest.raises(InvalidMessage, match="timestamp"):
        fresh.feed({"type": "track", "userId": "ada", "event": "Ping"})


def test_replay_sorts_by_time_and_keeps_file_order_within_a_millisecond() -> None:
    sim, core = sim_with()
    sim.replay(
        [
            track("ada", "Second", at(1000)),
            track("ada", "First-a", at(0)),
            track("ada", "First-b", at(0)),
            track("ada", "Start", at(500)),
        ],
        horizon="2h",
    )
    assert [c[2] for c in core.calls] == ["First-a", "First-b", "Start", "Second", "t:1"]


def test_heap_stays_small_when_a_timer_is_re_armed_on_every_event() -> None:
    sim, _ = sim_with()
    sim.feed(track("ada", "Start", at(0)))
    for i in range(80_000):
        sim.feed_checked(track("ada", "Again", ""), T0_MS + i)
    assert sim.pending_timers == 1
    assert len(sim._heap) < 70_000 + 4  # compacted, not 80,000 stale entries
    sim.advance("1d")
    assert [m.step for m in sim.messages] == ["again"]


# --- events in, as ingest accepts them -----------------------------------------------------


def test_invalid_messages_are_refused_with_the_field_named() -> None:
    sim, _ = sim_with()
    with pytest.raises(InvalidMessage, match="userId"):
        sim.feed({"type": "track", "event": "Ping", "timestamp": T0})
    with pytest.raises(InvalidMessage, match="type"):
        sim.feed({"type": "shout", "userId": "ada", "timestamp": T0})
    with pytest.raises(InvalidMessage, match="event"):
        sim.feed({"type": "track", "userId": "ada", "timestamp": T0})
    with pytest.raises(InvalidMessage, match="properties"):
        sim.feed({"type": "track", "userId": "ada", "event": "Ping", "properties": [1], "timestamp": T0})
    with pytest.raises(InvalidMessage, match="timestamp"):
        sim.feed({"type": "track", "userId": "ada", "event": "Ping", "timestamp": "yesterday"})
    with pytest.raises(InvalidMessage, match="previousId"):
        sim.feed({"type": "alias", "userId": "ada", "timestamp": T0})
    with pytest.raises(InvalidMessage, match="NUL"):
        sim.feed({"type": "track", "userId": "a\x00", "event": "Ping", "timestamp": T0})


def test_what_ingest_coerces_is_coerced() -> None:
    sim, core = sim_with()
    sim.feed({"type": "track", "userId": 42, "event": "Ping", "timestamp": "2026-03-02T10:00:00+01:00"})
    assert core.calls == [("event", "42", "Ping", T0_MS, T0_MS)]


def test_event_time_is_corrected_for_device_clock_skew_as_ingest_does() -> None:
    # The device clock is 10 minutes fast: it says it sent at 09:15 what it did at 09:05,
    # and the collector received it at 09:05:01.
    message = {
        "type": "track",
        "userId": "ada",
        "event": "Ping",
        "originalTimestamp": "2026-03-02T09:05:00Z",
        "sentAt": "2026-03-02T09:15:00Z",
        "receivedAt": "2026-03-02T09:05:01Z",
    }
    assert message_time_ms(message) == to_ms_iso("2026-03-02T08:55:01Z")
    # An export from Segment: `timestamp` is already the corrected one and comes back.
    exported = {**message, "timestamp": "2026-03-02T08:55:01Z"}
    assert message_time_ms(exported) == to_ms_iso("2026-03-02T08:55:01Z")
    assert message_time_ms({"timestamp": "2026-03-02T09:00:00Z", "sentAt": "2026-03-02T09:00:05Z"}) == T0_MS
    assert message_time_ms({"type": "track"}) is None
    with pytest.raises(InvalidMessage, match="sentAt"):
        message_time_ms({"timestamp": "2026-03-02T09:00:00Z", "sentAt": "2026-02-30T09:00:00Z"})


def to_ms_iso(text: str) -> int:
    from datetime import datetime

    return to_ms(datetime.fromisoformat(text))


# --- identity ------------------------------------------------------------------------------


def test_an_anonymous_persons_state_and_timers_become_the_users_on_identify() -> None:
    sim, core = sim_with()
    sim.feed(track(None, "Start", at(0), anonymous_id="anon-1"))
    assert sim.timers_of("anon-1") == {"t:1": T0_MS + H}
    sim.feed(
        {
            "type": "identify",
            "userId": "ada",
            "anonymousId": "anon-1",
            "traits": {"plan": "free"},
            "timestamp": at(60_000),
        }
    )
    assert "anon-1" not in sim.states and sim.states["ada"].run_seq == 1
    assert sim.state_of("anon-1") is sim.states["ada"] and sim.states["ada"].profile_id == "ada"
    assert sim.timers_of("ada") == {"t:1": T0_MS + H}
    sim.feed(track(None, "Ping", at(2 * 60_000), anonymous_id="anon-1"))  # the old device, still anonymous
    sim.advance("1h")
    assert core.calls[-1][:3] == ("timer", "ada", "t:1")
    assert core.calls[-2][:3] == ("event", "ada", "Ping")
    assert [(m.user_id, m.anonymous_id, m.profile) for m in sim.messages] == [("ada", None, "ada")]
    assert sim.merges == 1
    assert sim.messages_for("ada") == sim.messages_for("anon-1") == sim.messages


def test_alias_links_previous_id_to_the_user() -> None:
    sim, core = sim_with()
    sim.feed(track(None, "Ping", at(0), anonymous_id="anon-2"))
    sim.feed({"type": "alias", "userId": "bob", "previousId": "anon-2", "timestamp": at(1000)})
    sim.feed(track(None, "Ping", at(2000), anonymous_id="anon-2"))
    assert [c[1] for c in core.calls] == ["anon-2", "bob", "bob"]


def test_an_anonymous_id_linked_to_one_user_is_never_moved_to_another() -> None:
    sim, core = sim_with()
    sim.feed(track("ada", "Ping", at(0), anonymous_id="shared-tablet"))
    sim.feed(track("bob", "Ping", at(1000), anonymous_id="shared-tablet"))
    sim.feed(track(None, "Ping", at(2000), anonymous_id="shared-tablet"))
    assert [c[1] for c in core.calls] == ["ada", "bob", "ada"]


def test_when_both_have_state_the_anonymous_one_is_folded_in_as_the_runtime_does() -> None:
    sim, core = sim_with()
    sim.feed(track("ada", "Start", at(0)))  # ada's own run 1, timer t:1 due +1h
    sim.feed(track(None, "Start", at(1000), anonymous_id="phone"))  # the phone's run 1, timer t:1 due +1h+1s
    sim.feed(track(None, "Start", at(2000), anonymous_id="phone"))  # the phone's run 2, timer t:2
    sim.feed(
        {"type": "identify", "userId": "ada", "anonymousId": "phone", "traits": {"plan": "pro"}, "timestamp": at(3000)}
    )
    assert set(sim.states) == {"ada"} and sim.merges == 1
    assert set(sim.states["ada"].runs) == set()  # the scripted core keeps no runs; the real one is tested below
    # ada's own t:1 wins the key both had; the phone's t:2 comes along.
    assert sim.timers_of("ada") == {"t:1": T0_MS + H, "t:2": T0_MS + H + 2000} and sim.pending_timers == 2
    assert {r["id"]: r["profile_id"] for r in sim.runs_for("phone")} == {
        "ada-run1": "ada",
        "phone-run1": "ada",
        "phone-run2": "ada",
    }
    sim.advance("2h")
    assert [(c[1], c[2]) for c in core.calls if c[0] == "timer"] == [("ada", "t:1"), ("ada", "t:2")]
    assert [(m.user_id, m.anonymous_id, m.profile) for m in sim.messages] == [("ada", None, "ada")] * 2


def test_messages_planned_while_anonymous_are_the_persons_too() -> None:
    sim, _ = sim_with()
    sim.feed(track(None, "Start", at(0), anonymous_id="tablet"))
    sim.advance("1h")
    sim.feed(track("ada", "Ping", at(2 * H), anonymous_id="tablet"))
    assert [(m.user_id, m.anonymous_id) for m in sim.messages_for("ada")] == [(None, "tablet")]


def test_an_anonymous_persons_messages_have_no_user_id() -> None:
    sim, _ = sim_with()
    sim.feed(track(None, "Start", at(0), anonymous_id="anon-3"))
    sim.advance("1h")
    assert sim.messages[0].as_json()["user_id"] is None
    assert sim.messages[0].as_json()["anonymous_id"] == "anon-3"


# --- results -------------------------------------------------------------------------------


def test_planned_messages_are_frozen_and_give_json_in_utc_with_z() -> None:
    sim, _ = sim_with()
    sim.feed(track("ada", "Start", "2026-03-02T10:00:00.250+01:00"))
    sim.advance("1h")
    message = sim.messages[0]
    assert isinstance(message, PlannedMessage)
    with pytest.raises(AttributeError):
        message.step = "x"  # type: ignore[misc]
    assert message.as_json() == {
        "at": "2026-03-02T10:00:00.250Z",
        "user_id": "ada",
        "anonymous_id": None,
        "journey": "stub",
        "version": 1,
        "step": "hello",
        "channel": "email",
        "template": "t-hello",
        "variant": None,
        "run_id": "ada-run1",
    }
    assert message.at.isoformat() == "2026-03-02T10:00:00.250000+00:00"


def test_summary_counts_runs_by_their_latest_state_and_messages_by_step() -> None:
    sim, _ = sim_with()
    sim.feed(track("ada", "Start", at(0)))  # completes by its timer
    sim.feed(track("bob", "Start", at(0)))
    sim.feed(track("bob", "Stop", at(60_000)))  # exits
    sim.feed(track("cy", "Start", at(0), holdout=True))  # holdout
    sim.feed(track("dan", "Start", at(0)))
    sim.feed(track("dan", "Buy", at(120_000)))  # converts (and completes)
    sim.feed(track("eve", "Start", at(2 * H)))  # still waiting
    sim.feed({"type": "identify", "userId": "fay", "traits": {"fail": True}, "timestamp": at(2 * H)})
    summary = sim.summary()
    assert summary["journeys"]["stub"] == {
        "entered": 5,
        "holdout": 1,
        "active": 1,
        "completed": 2,
        "exited": {"stopped": 1},
        "converted": 1,
        "revenue": 12.5,
        "messages": {"hello": 1},
        "failed": {"hello": 1},
    }
    assert summary["events"] == 8 and summary["profiles"] == 6 and summary["messages"] == 1
    assert summary["timers_pending"] == 1 and summary["first_event"] == T0 and sim.profile_updates == 1
    assert [f.reason for f in sim.failures] == ["no template"]


def test_two_journeys_with_one_id_are_refused() -> None:
    with pytest.raises(ValueError, match="stub"):
        Simulation([STUB, STUB], engine=ScriptedCore())


# --- the real core -------------------------------------------------------------------------

WELCOME = journey(
    {
        "id": "welcome",
        "name": "Welcome",
        "trigger": {"type": "event", "event": "Signed Up"},
        "entry": {"reentry": "once"},
        "steps": {
            "hello": {"type": "send", "channel": "email", "template": "welcome-1", "next": "wait"},
            "wait": {"type": "wait", "duration": "2d", "next": "tips"},
            "tips": {"type": "send", "channel": "email", "template": "welcome-2"},
        },
    }
)

CART = journey(
    {
        "id": "cart",
        "name": "Cart abandonment",
        "trigger": {
            "type": "event_not_followed",
            "event": "Product Added",
            "not_followed_by": {"event": "Order Completed", "within": "1h", "match": "cart_id"},
        },
        "exit": {"events": [{"event": "Order Completed", "match": "cart_id"}]},
        "goal": {"event": "Order Completed", "within": "7d", "revenue": "revenue"},
        "steps": {
            "reminder": {"type": "send", "channel": "email", "template": "cart-1h", "next": "wait"},
            "wait": {"type": "wait", "duration": "23h", "next": "objections"},
            "objections": {"type": "send", "channel": "email", "template": "cart-24h"},
        },
    }
)


def test_welcome_series_two_messages_two_days_apart() -> None:
    sim = Simulation([WELCOME])
    sim.identify("ada", {"email": "ada@example.com"}, at=T0)
    first = sim.track("ada", "Signed Up", at=at(1000))
    assert [(m.step, m.template, m.at_ms) for m in first] == [("hello", "welcome-1", T0_MS + 1000)]
    assert sim.advance(2 * D - 1) == []  # the clock is at the sign-up: due 2 days after it
    second = sim.advance(1)
    assert [(m.step, m.template, m.at_ms) for m in second] == [("tips", "welcome-2", T0_MS + 2 * D + 1000)]
    sim.track("ada", "Signed Up", at=at(3 * D))  # once ever
    sim.advance("10d")
    assert [m.template for m in sim.messages_for("ada")] == ["welcome-1", "welcome-2"]
    run = sim.runs_for("ada")[0]
    assert (run["status"], run["exit_reason"]) == ("done", "completed")
    row = sim.summary()["journeys"]["welcome"]
    assert (row["entered"], row["completed"], row["messages"]) == (1, 1, {"hello": 1, "tips": 1})


def test_welcome_series_from_an_anonymous_visit_to_a_sign_up() -> None:
    sim = Simulation([WELCOME])
    sim.track(None, "Product Viewed", {"product_id": "p1"}, at=T0, anonymous_id="anon-9")
    sim.track("ada", "Signed Up", at=at(60_000), anonymous_id="anon-9")
    sim.advance("3d")
    assert [(m.user_id, m.step) for m in sim.messages] == [("ada", "hello"), ("ada", "tips")]


def test_a_cart_left_while_anonymous_is_followed_up_after_sign_up() -> None:
    sim = Simulation([CART, WELCOME])
    sim.track(None, "Product Added", {"cart_id": "c9", "price": 20}, at=T0, anonymous_id="anon-7")
    sim.advance("90m")  # the reminder goes to the anonymous visitor
    sim.track("ada", "Signed Up", at=at(2 * H), anonymous_id="anon-7")
    sim.track("ada", "Order Completed", {"cart_id": "c9", "revenue": 20.0}, at=at(3 * H))
    sim.advance("3d")
    assert [(m.user_id, m.anonymous_id, m.journey, m.step) for m in sim.messages] == [
        (None, "anon-7", "cart", "reminder"),
        ("ada", None, "welcome", "hello"),
        ("ada", None, "welcome", "tips"),
    ]
    cart_run = [r for r in sim.runs_for("ada") if r["journey_id"] == "cart"]
    assert [(r["status"], r["exit_reason"], r["revenue"]) for r in cart_run] == [
        ("exited", "exit_event:Order Completed", 20.0)
    ]
    assert sim.runs_for("anon-7") == sim.runs_for("ada")


def cart_added(sim: Simulation, user: str, cart: str, when: str) -> None:
    sim.track(user, "Product Added", {"cart_id": cart, "product_id": "p1", "price": 20}, at=when)


def test_cart_abandonment_reminds_after_an_hour_then_a_day() -> None:
    sim = Simulation([CART])
    cart_added(sim, "ada", "c1", T0)
    sim.advance("2d")
    assert [(m.step, m.at_ms) for m in sim.messages_for("ada")] == [
        ("reminder", T0_MS + H),
        ("objections", T0_MS + 24 * H),
    ]


def test_cart_abandonment_ends_at_once_on_an_order_of_that_cart() -> None:
    sim = Simulation([CART])
    cart_added(sim, "ada", "c1", T0)
    sim.advance("2h")
    sim.track("ada", "Order Completed", {"cart_id": "c1", "order_id": "o1", "revenue": 40.0}, at=at(5 * H))
    assert sim.timers_of("ada") == {}
    sim.advance("3d")
    assert [m.step for m in sim.messages_for("ada")] == ["reminder"]
    run = sim.runs_for("ada")[0]
    assert (run["status"], run["exit_reason"], run["converted_at_ms"], run["revenue"]) == (
        "exited",
        "exit_event:Order Completed",
        T0_MS + 5 * H,
        40.0,
    )
    row = sim.summary()["journeys"]["cart"]
    assert (row["entered"], row["exited"], row["converted"], row["revenue"]) == (
        1,
        {"exit_event:Order Completed": 1},
        1,
        40.0,
    )


def test_cart_abandonment_ignores_an_order_of_another_cart_and_never_starts_for_a_cart_ordered_in_time() -> None:
    sim = Simulation([CART])
    cart_added(sim, "ada", "c1", T0)
    sim.track("ada", "Order Completed", {"cart_id": "other", "revenue": 10.0}, at=at(2 * H))
    cart_added(sim, "bob", "c2", T0)
    sim.track("bob", "Order Completed", {"cart_id": "c2", "revenue": 20.0}, at=at(30 * 60_000))
    sim.advance("2d")
    assert [m.step for m in sim.messages_for("ada")] == ["reminder", "objections"]
    assert sim.messages_for("bob") == []
    assert sim.summary()["journeys"]["cart"]["entered"] == 1


def test_a_cart_from_a_second_device_is_folded_into_the_known_person_and_ends_on_their_order() -> None:
    sim = Simulation([CART, WELCOME])
    sim.track("ada", "Signed Up", at=T0)  # ada has a state of her own (a welcome run)
    sim.track(None, "Product Added", {"cart_id": "c5", "price": 20}, at=at(D), anonymous_id="phone-anon")  # on a phone
    sim.identify("ada", {"email": "ada@example.com"}, at=at(D + 30 * 60_000), anonymous_id="phone-anon")
    sim.advance("2h")  # the cart's 1 h reminder fires for ada
    sim.track("ada", "Order Completed", {"cart_id": "c5", "revenue": 20.0}, at=at(D + 3 * H))
    sim.advance("3d")
    assert set(sim.states) == {"ada"}
    assert [(m.journey, m.step, m.user_id) for m in sim.messages] == [
        ("welcome", "hello", "ada"),
        ("cart", "reminder", "ada"),
        ("welcome", "tips", "ada"),
    ]
    cart_run = [r for r in sim.runs_for("ada") if r["journey_id"] == "cart"]
    assert [(r["profile_id"], r["exit_reason"]) for r in cart_run] == [("ada", "exit_event:Order Completed")]


def test_the_simulator_and_a_hand_driven_core_agree() -> None:
    # The simulator adds nothing to the core's decisions: driving the core by hand with the
    # same inputs at the same times gives the same messages.
    from nudgeflow.core.catalog import Catalog, JourneyVersion
    from nudgeflow.core.engine import Engine

    sim = Simulation([CART, WELCOME])
    cart_added(sim, "ada", "c1", T0)
    sim.track("ada", "Signed Up", at=at(60_000))
    sim.advance("3d")

    core = Engine(Catalog([JourneyVersion("cart", 1, CART), JourneyVersion("welcome", 1, WELCOME)]))
    state = ProfileState("ada")
    sends: list[SendMessage] = []
    timers: dict[str, ScheduleTimer] = {}

    def take(effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, SendMessage):
                sends.append(e)
            elif isinstance(e, ScheduleTimer):
                timers[e.key] = e
            elif isinstance(e, CancelTimer):
                timers.pop(e.key, None)

    def event(name: str, props: dict[str, Any], ms: int) -> None:
        take(core.on_event(state, EventInput(f"m{ms}", "track", name, ms, props, user_id="ada"), ms))

    event("Product Added", {"cart_id": "c1", "product_id": "p1", "price": 20}, T0_MS)
    event("Signed Up", {}, T0_MS + 60_000)
    while timers:
        due = min(timers.values(), key=lambda t: t.due_ms)
        if due.due_ms > T0_MS + 3 * D:
            break
        del timers[due.key]
        take(core.on_timer(state, TimerInput(due.key, due.due_ms, due.payload), due.due_ms))
    assert [(m.key, m.at_ms) for m in sim.messages] == [(s.key, s.at_ms) for s in sends]


def test_a_replayed_line_far_over_the_limit_is_reported_without_being_held_in_memory(tmp_path: Any) -> None:
    # A stray 40 MB line (a binary, a file with no newlines) was read whole before being
    # refused; it is now skipped a chunk at a time, and the lines around it replayed.
    import io
    import tracemalloc

    from rich.console import Console

    from nudgeflow.runtime.replay import replay_file

    signed_up = {"type": "track", "userId": "ada", "event": "Signed Up", "timestamp": at(0)}
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as out:
        out.write(orjson.dumps(signed_up) + b"\n")
        out.write(b'{"type": "track", "event": "X", "userId": "u", "timestamp": "' + at(1).encode() + b'", "p": "')
        for _ in range(40):
            out.write(b"x" * (1 << 20))
        out.write(b'"}\n')
        out.write(orjson.dumps({**signed_up, "userId": "bob", "timestamp": at(2)}) + b"\n")
    tracemalloc.start()
    try:
        report = replay_file([WELCOME], str(path), console=Console(file=io.StringIO()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak:,} bytes"
    [bad] = report.bad_lines
    assert bad.line == 2 and "the limit is" in bad.reason
    assert (report.lines, report.sim.summary()["events"]) == (3, 2)
