"""store/consent.py on both databases: suppressions, subscriptions, the decision, settings."""

from __future__ import annotations

import threading
from typing import Any

from nudgeflow.store import consent
from nudgeflow.store.consent import ALL, OPT_IN, Choice, ConsentState, can_send, consent_state, decide
from tests.support import make_workspace

NOW = 1_800_000_000_000


def test_decide_suppression_stops_everything_consent_gates_marketing_only() -> None:
    assert decide("hard_bounce", {}, marketing=False, topic=None) == ConsentState(False, "suppressed:hard_bounce")
    off = {ALL: Choice(False)}
    assert decide(None, off, marketing=True, topic=None).reason == "unsubscribed:*"
    assert decide(None, off, marketing=False, topic=None).allowed
    topic_off = {"offers": Choice(False), ALL: Choice(True, "fewer")}
    assert decide(None, topic_off, True, "offers") == ConsentState(False, "unsubscribed:offers", "fewer", "offers")
    assert decide(None, topic_off, True, "reminders") == ConsentState(True, None, "fewer", "reminders")
    assert decide(None, {}, True, "anything").allowed  # no row: subscribed


def test_a_topic_said_yes_to_after_a_no_to_all_is_the_one_exception() -> None:
    later = {ALL: Choice(False, at_ms=10), "news": Choice(True, at_ms=20, source="double_opt_in")}
    assert decide(None, later, True, "news").allowed
    assert decide(None, later, True, "offers").reason == "unsubscribed:*"
    assert decide(None, later, True, None).reason == "unsubscribed:*"
    # Made at the same time (one form: "unsubscribe from all" with topics ticked): the no wins.
    same = {ALL: Choice(False, at_ms=10), "news": Choice(True, at_ms=10)}
    assert decide(None, same, True, "news").reason == "unsubscribed:*"
    # A yes to all never undoes a no to one topic.
    assert decide(None, {ALL: Choice(True, at_ms=30), "news": Choice(False, at_ms=5)}, True, "news").reason == (
        "unsubscribed:news"
    )


def test_opt_in_needs_a_recorded_yes_to_all_or_to_the_topic() -> None:
    assert decide(None, {}, True, "news", OPT_IN).reason == "no_consent"
    assert decide(None, {}, False, "news", OPT_IN).allowed  # transactional: consent does not gate it
    assert decide("complaint", {}, False, None, OPT_IN).reason == "suppressed:complaint"
    news = {"news": Choice(True, at_ms=1, source="double_opt_in")}
    assert decide(None, news, True, "news", OPT_IN).allowed
    assert decide(None, news, True, "offers", OPT_IN).reason == "no_consent"
    assert decide(None, news, True, None, OPT_IN).reason == "no_consent"
    everything = {ALL: Choice(True, at_ms=1, source="api")}
    assert decide(None, everything, True, "offers", OPT_IN).allowed
    # A yes recorded before choices had a source (a default the old preference center stored) is not consent.
    assert decide(None, {ALL: Choice(True, at_ms=1)}, True, None, OPT_IN).reason == "no_consent"
    # An explicit no still says so.
    assert decide(None, {"news": Choice(False, source="api")}, True, "news", OPT_IN).reason == ("unsubscribed:news")


def test_suppress_unsuppress_and_list(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:
        assert consent.suppress(conn, ws, "email", " Ada@Example.com ", "manual", NOW, "asked by phone")
        assert not consent.suppress(conn, ws, "email", "ada@example.com", "complaint", NOW + 1)
        consent.suppress(conn, ws, "email", "bob@example.com", "hard_bounce", NOW)
    with engine.connect() as conn:
        listed = consent.list_suppressions(conn, ws)
        assert [(s["address"], s["reason"]) for s in listed] == [
            ("ada@example.com", "complaint"),
            ("bob@example.com", "hard_bounce"),
        ]
        assert can_send(conn, ws, "p1", "email", "ADA@example.com", marketing=False) == (False, "suppressed:complaint")
        assert can_send(conn, ws, "p1", "sms", "ada@example.com", marketing=True) == (True, None)
    with engine.begin() as conn:
        assert consent.unsuppress(conn, ws, "email", "ada@EXAMPLE.com")
        assert not consent.unsuppress(conn, ws, "email", "ada@example.com")
    with engine.connect() as conn:
        assert can_send(conn, ws, "p1", "email", "ada@example.com", marketing=True) == (True, None)
        assert consent.suppression_of(conn, ws, "email", "bob@example.com")["reason"] == "hard_bounce"


def test_subscriptions_and_frequency(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    with engine.connect() as conn:
        assert consent.subscriptions_of(conn, ws, "p1", ["offers"]) == {
            "subscribed": True,
            "frequency": "normal",
            "topics": {"offers": True},
            "updated_at_ms": None,
        }
    with engine.begin() as conn:
        assert consent.set_subscription(conn, ws, "p1", "offers", False, NOW)
        assert not consent.set_subscription(conn, ws, "p1", "offers", False, NOW + 1)
        assert consent.set_subscription(conn, ws, "p1", ALL, True, NOW, frequency="fewer")
    with engine.connect() as conn:
        subs = consent.subscriptions_of(conn, ws, "p1", ["offers", "reminders"])
        assert subs["topics"] == {"offers": False, "reminders": True} and subs["frequency"] == "fewer"
        state = consent_state(conn, ws, "p1", "email", "p1@example.com", True, "offers")
        assert state == ConsentState(False, "unsubscribed:offers", "fewer", "offers")
        assert consent_state(conn, ws, "p1", "email", None, False, "offers").allowed
    with engine.begin() as conn:
        consent.set_subscription(conn, ws, "p1", ALL, False, NOW)
    with engine.connect() as conn:
        assert can_send(conn, ws, "p1", "email", None, True, "reminders") == (False, "unsubscribed:*")
        assert consent.subscriptions_of(conn, ws, "p1")["frequency"] == "fewer"  # kept


def test_tracking_secret_is_made_once_and_other_settings_are_kept(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:
        consent.update_settings(
            conn, ws, {"smtp": {"host": "x"}, consent.TOPICS: ["offers", {"id": "news", "label": "News"}]}, NOW
        )
        assert consent.existing_tracking_secret(conn, ws) is None
        secret = consent.tracking_secret(conn, ws, NOW)
    with engine.begin() as conn:
        assert consent.tracking_secret(conn, ws, NOW) == secret and len(secret) >= 40
        settings = consent.get_settings(conn, ws)
    assert settings["smtp"] == {"host": "x"}
    assert consent.topics_of(settings) == [("offers", "Offers"), ("news", "News")]
    assert consent.public_base_url({consent.PUBLIC_BASE_URL: "https://m.example.com/"}) == "https://m.example.com"
    assert consent.topic_for({consent.TOPIC_BY_JOURNEY: {"winback": "offers"}}, "t", "winback") == "offers"
    assert (
        consent.topic_for({consent.TOPIC_BY_JOURNEY: {"winback": "offers"}}, "t", "winback", {"topic": "news"})
        == "news"
    )


def test_choices_are_per_channel(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:
        assert consent.set_subscription(conn, ws, "p1", ALL, False, NOW, source="unsubscribe_link")
        assert consent.set_subscription(conn, ws, "p1", "news", True, NOW, channel="push", source="api")
    with engine.connect() as conn:
        assert can_send(conn, ws, "p1", "email", None, True, "news") == (False, "unsubscribed:*")
        assert can_send(conn, ws, "p1", "push", None, True, "news") == (True, None)
        assert can_send(conn, ws, "p1", "push", None, True, "news", mode=OPT_IN) == (True, None)
        assert can_send(conn, ws, "p1", "push", None, True, "offers", mode=OPT_IN) == (False, "no_consent")
        assert consent.subscriptions_of(conn, ws, "p1", channel="push")["topics"] == {"news": True}
        assert [
            (c["channel"], c["topic"], c["subscribed"], c["source"]) for c in consent.choices_of(conn, ws, "p1")
        ] == [
            ("email", ALL, False, "unsubscribe_link"),
            ("push", "news", True, "api"),
        ]


def test_making_a_choice_again_dates_it_again_and_says_when_that_changes_what_goes(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:
        assert consent.set_subscription(conn, ws, "p1", "news", True, NOW, source="api")
        assert consent.set_subscription(conn, ws, "p1", ALL, False, NOW + 1, source="unsubscribe_link")
        # news again, later than the no to all: it goes again (a change)
        assert consent.set_subscription(conn, ws, "p1", "news", True, NOW + 2, source="double_opt_in")
        assert not consent.set_subscription(conn, ws, "p1", "news", True, NOW + 3, source="double_opt_in")
        assert consent.can_send(conn, ws, "p1", "email", None, True, "news") == (True, None)
        # the no to all again: it covers news again (a change)
        assert consent.set_subscription(conn, ws, "p1", ALL, False, NOW + 4, source="unsubscribe_link")
        assert consent.can_send(conn, ws, "p1", "email", None, True, "news") == (False, "unsubscribed:*")
        # a frequency is not a choice: no date, and never consent
        assert consent.set_frequency(conn, ws, "p2", "fewer", NOW)
        assert not consent.set_frequency(conn, ws, "p2", "fewer", NOW + 1)
        assert consent.can_send(conn, ws, "p2", "email", None, True, None, mode=OPT_IN) == (False, "no_consent")


def test_two_first_uses_at_once_sign_with_one_secret(engine: Any) -> None:
    # Two senders reach the workspace's first signed link together (two dispatchers): the
    # second waits for the first's lock and uses its secret, so no link signed by either is
    # refused later (the last commit used to win, and the other's links answered 404). On
    # SQLite the second waits for the database's write lock instead of the row's.
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:
        consent.update_settings(conn, ws, {"smtp": {"host": "x"}}, NOW)  # a settings row, no secret
    first_made = threading.Event()
    got: dict[str, str] = {}

    def second() -> None:
        first_made.wait(10)
        with engine.begin() as conn:
            got["second"] = consent.tracking_secret(conn, ws, NOW)

    thread = threading.Thread(target=second)
    thread.start()
    with engine.begin() as conn:
        got["first"] = consent.tracking_secret(conn, ws, NOW)
        first_made.set()
        thread.join(0.5)
        assert thread.is_alive()  # waiting on the row the first transaction locked
    thread.join(10)
    assert got["second"] == got["first"]
    with engine.connect() as conn:
        assert consent.existing_tracking_secret(conn, ws) == got["first"]
