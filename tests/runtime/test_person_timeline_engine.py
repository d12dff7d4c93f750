"""A person's timeline and "why" (store/person_timeline.py, core/person_why.py) over what the
real engine and dispatch wrote, on SQLite and PostgreSQL: a message deferred by a collision
(with its release timer), one dropped by a frequency cap, and one suppressed at dispatch,
each with its reason."""

from __future__ import annotations

from datetime import timedelta

from nudgeflow.channels.base import ChannelRegistry
from nudgeflow.core.clock import to_ms
from nudgeflow.core.person_why import explain
from nudgeflow.runtime.processor import EngineCache
from nudgeflow.store import consent
from nudgeflow.store.person_timeline import journey_facts, person_card, timeline
from nudgeflow.store.privacy import person_ids
from tests.runtime.harness import Harness
from tests.runtime.policy_journeys import apply_policies, journey, publish

POLICIES = {
    "collision": {"window": "10m"},
    "frequency_caps": [{"id": "two-a-day", "channel": "email", "limit": 2, "window": "24h"}],
}


def test_the_engine_s_withheld_and_suppressed_messages_show_with_their_reasons(h: Harness) -> None:
    publish(
        h,
        journey("important", "Signed Up", priority=10),
        journey("later", "Signed Up"),
        journey("bonus", "Bonus Earned", on_cap="drop"),
    )
    apply_policies(h, POLICIES)
    h.identify("ada", email="ada@example.com")
    h.identify("bob", email="bob@example.com")
    h.track("ada", "Signed Up")
    rt = h.runtime(engines=EngineCache(), channels=ChannelRegistry.development())
    rt.run_until_idle()
    h.clock.advance(timedelta(minutes=11))  # "later" is released after the window, and sent
    rt.run_until_idle()
    h.track("ada", "Bonus Earned")  # the cap of two a day is spent: dropped
    # Bob's address is on the suppression list: dispatch suppresses his message.
    h.in_transaction(lambda conn: consent.suppress(conn, h.ws, "email", "bob@example.com", "manual", 1))
    h.track("bob", "Signed Up")
    rt.run_until_idle()

    with h.db.connect() as conn:
        ada = h.profile_id("ada")
        items, cursor = timeline(conn, h.ws, person_ids(conn, h.ws, ada))
        bob_items, _ = timeline(conn, h.ws, [h.profile_id("bob")])
        why_bonus = explain(journey_facts(conn, h.ws, ada, "bonus"))
        why_later = explain(journey_facts(conn, h.ws, ada, "later"))
    assert cursor is None
    messages = {i["journey_id"]: (i["status"], i["reason"]) for i in items if i["kind"] == "message"}
    assert messages == {
        "important": ("logged", None),
        "later": ("logged", None),
        "bonus": ("dropped", "frequency_cap:two-a-day"),
    }
    assert [i["event"] for i in items if i["kind"] == "event" and i["event"] in ("Signed Up", "Bonus Earned")] == [
        "Bonus Earned",
        "Signed Up",
    ]
    assert {i["journey_id"] for i in items if i["kind"] == "run_entered"} == {"important", "later", "bonus"}
    # Bob's higher-priority message reached dispatch and was suppressed; the other waits out the collision.
    assert {i["journey_id"]: (i["status"], i["reason"]) for i in bob_items if i["kind"] == "message"} == {
        "important": ("suppressed", "suppressed:manual"),
        "later": ("deferred", "collision:important"),
    }
    assert why_bonus.headline == "No: 1 message(s) of a message were decided but none went out; see each reason."
    assert any("the frequency cap rule 'two-a-day' was reached" in f.text for f in why_bonus.findings)
    assert why_later.headline.startswith("Yes: 1 message(s)")


def test_a_deferred_message_s_release_timer_says_when_and_what_for(h: Harness) -> None:
    publish(h, journey("important", "Signed Up", priority=10), journey("later", "Signed Up"))
    apply_policies(h, {"collision": {"window": "10m"}})
    h.identify("ada", email="ada@example.com")
    h.track("ada", "Signed Up")
    start = to_ms(h.clock.now())
    h.runtime(engines=EngineCache(), channels=ChannelRegistry.development()).run_until_idle()
    with h.db.connect() as conn:
        card = person_card(conn, h.ws, h.profile_id("ada"))
        items, _ = timeline(conn, h.ws, [h.profile_id("ada")])
        why = explain(journey_facts(conn, h.ws, h.profile_id("ada"), "later"))
    assert card is not None
    assert [(t["kind"], t["journey_id"], t["due_at_ms"]) for t in card["timers"]] == [
        ("release", "later", start + 10 * 60_000)
    ]
    assert "deferred message of step hello (template later-hello) is decided again" in card["timers"][0]["for"]
    deferred = next(i for i in items if i["kind"] == "message" and i["journey_id"] == "later")
    assert (deferred["status"], deferred["reason"]) == ("deferred", "collision:important")
    assert any("journey 'important' won the collision window" in f.text for f in why.findings)
