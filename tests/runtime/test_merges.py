"""An anonymous profile merged into a known one brings its engine state, timers and runs."""

from __future__ import annotations

from datetime import timedelta

from nudgeflow.content.compiled_templates import save_template
from nudgeflow.core.clock import to_ms
from nudgeflow.core.state import ProfileState, Run
from nudgeflow.model.journeys import Journey
from nudgeflow.runtime.merges import merge_state
from nudgeflow.runtime.processor import EngineCache
from nudgeflow.store import consent, rollups
from nudgeflow.store import journeys as journey_store
from tests.runtime.harness import FakeEngine, Harness

CART = {
    "id": "cart",
    "name": "Cart reminder",
    "trigger": {"type": "event", "event": "Product Added"},
    "exit": {"events": [{"event": "Order Completed"}]},
    "steps": {
        "wait": {"type": "wait", "duration": "1h", "next": "remind"},
        "remind": {"type": "send", "channel": "email", "template": "cart-reminder"},
    },
}


def run(run_id: str, journey: str) -> Run:
    return Run(id=run_id, journey_id=journey, version=1, entered_at=1, trigger={"event": "x", "at": 1})


def test_merge_state_keeps_both_peoples_runs_and_adds_up_what_they_did() -> None:
    known = ProfileState(
        "b",
        traits={"email": "ada@example.com", "plan": "pro"},
        runs={"run_b": run("run_b", "welcome")},
        entries={"welcome": {"count": 1, "last_at": 100}},
        counters={"streak:days": 3, "m:count": 2, "geo:inside": True},
        activity={"winback": {"last": 500, "armed": True}},
        history={"Product Viewed": [[10, {}], [30, {}]]},
        run_seq=4,
    )
    anon = ProfileState(
        "a",
        traits={"plan": "free", "utm": "ads"},
        runs={"run_a": run("run_a", "cart")},
        entries={"welcome": {"count": 1, "last_at": 200}, "cart": {"count": 1, "last_at": 300}},
        counters={"m:count": 5, "geo:inside": False, "other": {"x": 1}},
        activity={"winback": {"last": 900, "armed": False}},
        history={"Product Viewed": [[20, {}]], "Product Added": [[25, {"cart_id": "c1"}]]},
        last_location={"lat": 1.0},
        run_seq=9,
    )
    merge_state(known, anon)
    assert known.traits == {"email": "ada@example.com", "plan": "pro", "utm": "ads"}  # the known person's win
    assert set(known.runs) == {"run_a", "run_b"}
    assert known.entries == {"welcome": {"count": 2, "last_at": 200}, "cart": {"count": 1, "last_at": 300}}
    assert known.counters == {"streak:days": 3, "m:count": 7, "geo:inside": True, "other": {"x": 1}}
    assert known.activity == {"winback": {"last": 900, "armed": True}}
    assert known.history == {
        "Product Viewed": [[10, {}], [20, {}], [30, {}]],
        "Product Added": [[25, {"cart_id": "c1"}]],
    }
    assert known.last_location == {"lat": 1.0} and known.run_seq == 4


def test_merge_state_interleaves_the_send_ledgers_and_keeps_the_newer_frequency_choice() -> None:
    known = ProfileState("b", sends=[[10, "email", "welcome", 0, None]], frequency={"value": "normal", "at": 5})
    anon = ProfileState("a", sends=[[7, "email", "cart", 0, None]], frequency={"value": "fewer", "at": 9})
    merge_state(known, anon)
    assert known.sends == [[7, "email", "cart", 0, None], [10, "email", "welcome", 0, None]]
    assert known.frequency == {"value": "fewer", "at": 9}
    older = ProfileState("c", frequency={"value": "normal", "at": 1})
    merge_state(known, older)
    assert known.frequency == {"value": "fewer", "at": 9}


def test_merge_state_keeps_the_latest_instant_either_persons_segments_were_decided_at() -> None:
    # The merged person's segments are all decided again on their next event, never at an
    # instant before one either of them was decided at (core/segments.py: never backwards).
    known = ProfileState("b", segment_facts={"at": 100, "device": True})
    anon = ProfileState("a", segment_facts={"at": 900, "email_off": True})
    merge_state(known, anon)
    assert known.segment_facts == {"at": 900, "device": True, "email_off": True, "redecide": True}
    older = ProfileState("c", segment_facts={"at": 50})
    merge_state(known, older)
    assert known.segment_facts["at"] == 900


def test_merge_state_keeps_each_push_endpoints_latest_time() -> None:
    known = ProfileState("b", segment_facts={"webpush": ["h1"], "webpush_at": {"h1": 500, "h2": 100}})
    anon = ProfileState("a", segment_facts={"webpush": ["h2"], "webpush_at": {"h1": 300, "h2": 700}})
    merge_state(known, anon)
    assert known.segment_facts["webpush"] == ["h1", "h2"]
    assert known.segment_facts["webpush_at"] == {"h1": 500, "h2": 700}


def test_a_merged_profiles_timers_runs_and_state_move_to_the_known_person(h: Harness) -> None:
    engine = FakeEngine()
    rt = h.runtime(engine)
    h.track("ada", "Product Viewed")
    h.send({"type": "track", "anonymousId": "anon-1", "event": "Signed Up"})
    rt.run_until_idle()
    anon = h.scalar("SELECT profile_id FROM identities WHERE key = 'a:anon-1'")
    ada = h.profile_id("ada")
    assert anon != ada and [t.profile_id for t in h.timers()] == [anon]

    h.send({"type": "identify", "userId": "ada", "anonymousId": "anon-1"})  # ingest merges anon into ada
    rt.run_until_idle()
    assert h.scalar("SELECT profile_id FROM identities WHERE key = 'a:anon-1'") == ada
    assert h.q("SELECT * FROM profile_state WHERE profile_id = :p", p=anon) == []
    state = h.state("ada")
    assert state.counters["events"] == 4  # ada's view, anon's sign-up and its delivery, the identify
    assert [t.profile_id for t in h.timers()] == [ada]
    assert [r.profile_id for r in h.q("SELECT profile_id FROM journey_runs")] == [ada]
    assert {r.profile_id for r in h.outbox()} == {ada}

    h.clock.advance(timedelta(days=1))
    rt.run_until_idle()
    assert [c[:2] for c in engine.calls if c[0] == "timer"] == [("timer", ada)]  # fired for the known person
    reminder = [r for r in h.outbox() if r.step == "reminder"]
    assert [r.profile_id for r in reminder] == [ada]


def test_a_cart_started_anonymously_exits_on_the_known_persons_order(h: Harness) -> None:
    now = to_ms(h.clock.now())
    with h.db.begin() as conn:
        journey_store.apply_draft(conn, h.ws, Journey.model_validate(CART), now)
        journey_store.publish(conn, h.ws, "cart", now)
    rt = h.runtime(engines=EngineCache())
    h.identify("ada", email="ada@example.com")
    h.send({"type": "track", "anonymousId": "anon-2", "event": "Product Added", "properties": {"cart_id": "c9"}})
    rt.run_until_idle()
    assert len(h.timers()) == 1
    h.send({"type": "identify", "userId": "ada", "anonymousId": "anon-2"})
    h.track("ada", "Order Completed", cart_id="c9")
    rt.run_until_idle()
    [run_row] = h.q("SELECT profile_id, status, exit_reason FROM journey_runs")
    assert (run_row.profile_id, run_row.status, run_row.exit_reason) == (
        h.profile_id("ada"),
        "exited",
        "exit_event:Order Completed",
    )
    assert h.timers() == []
    h.clock.advance(timedelta(hours=2))
    rt.run_until_idle()
    assert h.log_messages() == []


# -- consent follows the merge ------------------------------------------------------------------

TIPS = {
    "id": "tips",
    "name": "Tips",
    "trigger": {"type": "event", "event": "Tip Requested"},
    "steps": {"mail": {"type": "send", "channel": "email", "template": "tip"}},
}


def subscriptions_of(h: Harness, profile_id: str) -> dict[str, tuple[bool, str, int]]:
    rows = h.q(
        "SELECT topic, subscribed, frequency, updated_at_ms FROM subscriptions WHERE profile_id = :p", p=profile_id
    )
    return {r.topic: (bool(r.subscribed), r.frequency, r.updated_at_ms) for r in rows}


def test_an_anonymous_visitors_consent_follows_the_merge_and_the_newer_choice_wins(h: Harness) -> None:
    h.identify("ada", email="ada@example.com")
    h.send({"type": "track", "anonymousId": "anon-7", "event": "Page Viewed"})
    ada = h.profile_id("ada")
    anon = h.scalar("SELECT profile_id FROM identities WHERE key = 'a:anon-7'")
    t0 = to_ms(h.clock.now())

    def choose(pid: str, topic: str, subscribed: bool, at: int, frequency: str | None = None) -> None:
        h.in_transaction(lambda conn: consent.set_subscription(conn, h.ws, pid, topic, subscribed, at, frequency))

    choose(ada, "offers", True, t0 + 1, "normal")  # ada's own, older than the visitor's
    choose(ada, "offers", False, t0 + 2)
    choose(ada, "offers", True, t0 + 3)
    choose(anon, "offers", False, t0 + 10)  # newer: wins
    choose(anon, "product_news", True, t0 + 5, "normal")
    choose(anon, "product_news", False, t0 + 6)  # older than ada's: loses
    choose(ada, "product_news", True, t0 + 20, "normal")
    choose(ada, "product_news", False, t0 + 21)
    choose(ada, "product_news", True, t0 + 22)
    choose(anon, "reminders", False, t0 + 7)  # only the visitor chose: moves over
    choose(anon, consent.ALL, True, t0 + 8, "fewer")  # all marketing, with its frequency: newer, wins
    choose(ada, "news_tie", False, t0 + 9)
    choose(anon, "news_tie", True, t0 + 9, "fewer")  # a tie: the known person's own choice stays
    assert subscriptions_of(h, ada)["offers"][0] is True

    h.send({"type": "identify", "userId": "ada", "anonymousId": "anon-7"})  # ingest merges anon into ada

    assert subscriptions_of(h, anon) == {}
    merged = subscriptions_of(h, ada)
    assert merged == {
        "offers": (False, "normal", t0 + 10),
        "product_news": (True, "normal", t0 + 22),
        "reminders": (False, "normal", t0 + 7),
        consent.ALL: (True, "fewer", t0 + 8),
        "news_tie": (False, "normal", t0 + 9),
    }


def test_the_known_person_gets_no_message_the_visitor_opted_out_of(h: Harness) -> None:
    """End to end: the opt-out made before logging in holds for the journey's send after it."""
    now = to_ms(h.clock.now())
    with h.db.begin() as conn:
        save_template(conn, h.ws, "tip", {"channel": "email", "subject": "A tip", "body": "<p>Hi</p>"}, now)
        consent.update_settings(
            conn, h.ws, {consent.TOPICS: ["reminders"], consent.TOPIC_BY_TEMPLATE: {"tip": "reminders"}}, now
        )
        journey_store.apply_draft(conn, h.ws, Journey.model_validate(TIPS), now)
        journey_store.publish(conn, h.ws, "tips", now)
    rt = h.runtime(engines=EngineCache())
    h.identify("ada", email="ada@example.com")
    h.send({"type": "track", "anonymousId": "anon-8", "event": "Page Viewed"})
    anon = h.scalar("SELECT profile_id FROM identities WHERE key = 'a:anon-8'")
    h.in_transaction(lambda conn: consent.set_subscription(conn, h.ws, anon, "reminders", False, now + 1))
    h.send({"type": "identify", "userId": "ada", "anonymousId": "anon-8"})
    h.track("ada", "Tip Requested")
    rt.run_until_idle()
    [row] = [r for r in h.outbox() if r.journey_id == "tips"]
    assert (row.profile_id, row.status, row.reason) == (
        h.profile_id("ada"),
        "suppressed",
        "unsubscribed:reminders",
    )


# -- one run at a time, after the merge too ------------------------------------------------------

WELCOME = {
    "id": "welcome",
    "name": "Welcome series",
    "trigger": {"type": "event", "event": "Signed Up"},
    "entry": {"reentry": "one_active"},
    "steps": {
        "w1": {"type": "wait", "duration": "1d", "next": "day1"},
        "day1": {"type": "send", "channel": "email", "template": "day1", "next": "w2"},
        "w2": {"type": "wait", "duration": "2d", "next": "day3"},
        "day3": {"type": "send", "channel": "email", "template": "day3"},
    },
}


def test_two_welcome_runs_merged_leave_one_series_the_earlier_one(h: Harness) -> None:
    now = to_ms(h.clock.now())
    with h.db.begin() as conn:
        journey_store.apply_draft(conn, h.ws, Journey.model_validate(WELCOME), now)
        journey_store.publish(conn, h.ws, "welcome", now)
    rt = h.runtime(engines=EngineCache())
    h.send({"type": "track", "anonymousId": "anon-9", "event": "Signed Up"})  # the visitor first
    rt.run_until_idle()
    h.clock.advance(timedelta(hours=1))
    h.identify("ada", email="ada@example.com")
    h.track("ada", "Signed Up")  # then the account, an hour later
    rt.run_until_idle()
    first, second = h.q("SELECT id, entered_at_ms FROM journey_runs ORDER BY entered_at_ms")
    assert len(h.timers()) == 2

    h.clock.advance(timedelta(minutes=5))
    h.send({"type": "identify", "userId": "ada", "anonymousId": "anon-9"})  # ingest merges them
    rt.run_until_idle()
    runs = {r.id: r for r in h.q("SELECT id, profile_id, status, exit_reason FROM journey_runs")}
    ada = h.profile_id("ada")
    assert (runs[first.id].profile_id, runs[first.id].status) == (ada, "active")
    assert (runs[second.id].profile_id, runs[second.id].status, runs[second.id].exit_reason) == (
        ada,
        "exited",
        "merged",
    )
    assert [(t.profile_id, t.key) for t in h.timers()] == [(ada, f"run:{first.id}")]

    for _ in range(2):  # the first wait, then the second
        h.clock.advance(timedelta(days=2))
        rt.run_until_idle()
    sent = [(r.run_id, r.step) for r in h.outbox() if r.journey_id == "welcome"]
    assert sent == [(first.id, "day1"), (first.id, "day3")]  # one series, on the visitor's schedule
    with h.db.connect() as conn:
        [counters], _ = rollups.read(conn, h.ws, journey_id="welcome")
    assert counters["entered"] == 2  # both entered; the report keeps the run that ended
