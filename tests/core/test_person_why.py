"""core/person_why.py: "why did or didn't this person get X", from stored facts only."""

from __future__ import annotations

from typing import Any

from nudgeflow.core.person_why import NO, YES, JourneyFacts, explain, reason_text
from nudgeflow.model.journeys import Journey

HOUR = 3_600_000
T0 = 1_800_000_000_000

CART = Journey.model_validate(
    {
        "id": "cart",
        "name": "Cart",
        "trigger": {
            "type": "event_not_followed",
            "event": "Product Added",
            "not_followed_by": {"event": "Order Completed", "within": "1h"},
            "max_lateness": "2h",
        },
        "entry": {"filter": [{"trait": "email", "op": "exists"}], "reentry": "once"},
        "holdout": 0.1,
        "steps": {"remind": {"type": "send", "channel": "email", "template": "cart-reminder"}},
    }
)


def facts(**changes: Any) -> JourneyFacts:
    base: dict[str, Any] = {
        "journey_id": "cart",
        "status": "live",
        "definition": CART,
        "first_published_ms": T0,
        "trigger_event": "Product Added",
        "trigger_events": [],
        "events_limit": 20,
        "runs": [],
        "entries": None,
        "messages": [],
    }
    return JourneyFacts(**{**base, **changes})


def run(**changes: Any) -> dict[str, Any]:
    return {
        "id": "run_1",
        "version": 1,
        "status": "active",
        "step": "remind",
        "holdout": 0,
        "control": 0,
        "entered_at_ms": T0 + HOUR,
        "ended_at_ms": None,
        "exit_reason": None,
        "converted_at_ms": None,
        **changes,
    }


def message(status: str, reason: str | None = None, template: str = "cart-reminder") -> dict[str, Any]:
    return {
        "template": template,
        "channel": "email",
        "step": "remind",
        "status": status,
        "reason": reason,
        "error": None,
        "attempts": 0,
        "created_at_ms": T0 + 2 * HOUR,
        "sent_at_ms": T0 + 2 * HOUR if status == "sent" else None,
        "next_attempt_at_ms": T0 + 9 * HOUR,
    }


def texts(found: JourneyFacts) -> str:
    return "\n".join(f"{f.verdict}: {f.text}" for f in explain(found).findings)


def test_no_trigger_event_means_they_never_triggered_it() -> None:
    answer = explain(facts())
    assert answer.headline == "No: the person never entered this journey."
    assert any(f.verdict == NO and "No 'Product Added' event is stored" in f.text for f in answer.findings)


def test_a_trigger_without_a_run_names_what_can_stop_an_entry_and_the_facts_that_show_it() -> None:
    events = [
        {"at_ms": T0 + 5 * HOUR, "received_at_ms": T0 + 9 * HOUR, "message_id": "late"},
        {"at_ms": T0 - HOUR, "received_at_ms": T0 - HOUR, "message_id": "early"},
    ]
    got = texts(facts(trigger_events=events, entries={"count": 1, "last_at": T0}))
    assert "2 'Product Added' event(s) stored, the latest at 2027-01-15T13:00:00Z" in got
    assert "1 of them happened before the journey was first published" in got
    assert "1 of them arrived more than 2h after they happened" in got
    assert "the entry filter (1 condition(s)" in got and "the re-entry rule (once)" in got
    assert "The engine counts 1 entry(ies)" in got


def test_a_held_out_run_and_where_a_run_is_now() -> None:
    answer = explain(
        facts(
            trigger_events=[{"at_ms": T0 + HOUR, "received_at_ms": T0 + HOUR, "message_id": "m"}],
            runs=[run(holdout=1, status="exited", exit_reason="exit_event:Order Completed", ended_at_ms=T0 + 3 * HOUR)],
        )
    )
    assert answer.headline == "No: the person's run was held out; held-out runs are sent nothing."
    got = "\n".join(f.text for f in answer.findings)
    assert "held out (holdout share 10%)" in got
    assert "exited at 2027-01-15T11:00:00Z at step 'remind', reason 'exit_event:Order Completed'" in got


def test_each_message_not_sent_says_why_and_a_sent_one_answers_yes() -> None:
    found = facts(
        runs=[run()],
        messages=[message("dropped", "frequency_cap:daily"), message("deferred", "quiet_hours"), message("sent")],
    )
    answer = explain(found)
    assert answer.headline.startswith("Yes: 1 message(s) of a message")
    verdicts = [(f.verdict, f.text) for f in answer.findings if f.topic == "message"]
    assert verdicts[0][0] == NO and "the frequency cap rule 'daily' was reached (frequency_cap:daily)" in verdicts[0][1]
    assert "deferred until 2027-01-15T17:00:00Z: it fell in the person's quiet hours" in verdicts[1][1]
    assert verdicts[2][0] == YES
    only = explain(facts(runs=[run()], messages=[message("dropped", "collision:welcome")], template="cart-reminder"))
    assert only.headline.startswith("No: 1 message(s) of template 'cart-reminder' were decided but none went out")


def test_reasons_in_words_and_a_journey_that_does_not_exist() -> None:
    assert "unsubscribed from all marketing" in reason_text("unsubscribed:*")
    assert "topic 'news'" in reason_text("unsubscribed:news")
    assert "suppression list (hard_bounce)" in reason_text("suppressed:hard_bounce")
    assert reason_text("something:else") == "something:else"
    assert explain(facts(status=None, definition=None)).headline == "There is no journey 'cart' in this workspace."
    assert "The journey is paused" in texts(facts(status="paused"))
