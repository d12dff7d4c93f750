"""The workspace's global control group in the pure core (issue 15 item 7): deterministic
membership, its share, resets, marketing withheld and transactional sent, per-journey
exclusion, holdouts, send policies, on a virtual clock."""

from __future__ import annotations

from typing import Any

from nudgeflow.core import control_group
from nudgeflow.core.catalog import Catalog, JourneyVersion
from nudgeflow.core.control_group import ControlPlan, epoch, member, plan_for
from nudgeflow.core.state import ProfileState
from nudgeflow.core.turn import unit_hash
from nudgeflow.model.journeys import Journey
from nudgeflow.model.policies import EMPTY, Policies
from nudgeflow.model.reasons import GLOBAL_CONTROL, family_of
from tests.core.engine_driver import T0, D, Driver, H, journey, ms

ON_SIGNUP = {"type": "event", "event": "Signed Up"}
GOAL = {"event": "Order Completed", "within": "7d", "revenue": "revenue"}
# A marketing email, a day's wait, a receipt (transactional), then a marketing push.
STEPS: dict[str, Any] = {
    "hello": {"type": "send", "channel": "email", "template": "hello", "next": "wait"},
    "wait": {"type": "wait", "duration": "1d", "next": "receipt"},
    "receipt": {"type": "send", "channel": "email", "template": "receipt", "marketing": False, "next": "tips"},
    "tips": {"type": "send", "channel": "push", "template": "tips"},
}


def welcome(id: str = "welcome", **rest: Any) -> Journey:
    return journey(id, ON_SIGNUP, STEPS, goal=GOAL, **rest)


def policies(**document: Any) -> Policies:
    return Policies.model_validate(document)


def cat(*journeys: Journey, **document: Any) -> Catalog:
    return Catalog([JourneyVersion(j.id, 1, j) for j in journeys], policies=policies(**document))


GROUP = {"share": 0.1}


def person(inside: bool, plan: ControlPlan, at: int = T0, start: int = 0) -> str:
    """The first profile id (p<start>, p<start+1>…) that is, or is not, in the group at `at`."""
    return next(p for p in (f"p{i}" for i in range(start, start + 10_000)) if member(plan, p, at) == inside)


def plan(**group: Any) -> ControlPlan:
    found = plan_for(policies(control_group={**GROUP, **group}))
    assert found is not None
    return found


# --- membership ----------------------------------------------------------------------------------


def test_no_group_or_a_share_of_zero_is_no_plan() -> None:
    assert plan_for(EMPTY) is None
    assert plan_for(policies(control_group={"share": 0})) is None
    assert Catalog([], policies=EMPTY).control_plan is None
    # A control group alone is not a send plan: no ledger, messages are decided at once.
    only = cat(welcome(), control_group=GROUP)
    assert only.control_plan is not None and only.send_plan is None


def test_membership_is_a_pure_function_of_the_person_the_salt_and_the_period() -> None:
    p = plan()
    people = [f"user-{i}" for i in range(20_000)]
    first = [member(p, who, T0) for who in people]
    assert first == [member(p, who, T0) for who in people]  # the same answer every time
    assert first == [member(plan(), who, T0 + 300 * D) for who in people]  # reset: never
    assert first == [unit_hash("global_control", "", "", who) < 0.1 for who in people]
    # 20,000 draws at 10 %: 2,000 expected, standard deviation 42; within 4 of them.
    assert abs(sum(first) - 2_000) < 170, sum(first)
    larger = [member(plan(share=0.3), who, T0) for who in people]
    assert abs(sum(larger) - 6_000) < 260, sum(larger)
    assert all(b for a, b in zip(first, larger, strict=True) if a)  # a larger share holds the smaller group


def test_a_reset_draws_a_new_independent_group_at_each_period_start() -> None:
    quarterly = plan(reset="quarterly")
    q1_end, q2_start = ms("2026-03-31T23:59:59Z"), ms("2026-04-01T00:00:00Z")
    assert (epoch(quarterly, q1_end), epoch(quarterly, q2_start)) == ("2026Q1", "2026Q2")
    assert epoch(plan(reset="yearly"), q2_start) == "2026"
    assert epoch(plan(reset="monthly"), q2_start) == "2026-04"
    assert epoch(plan(), q2_start) == ""
    people = [f"user-{i}" for i in range(20_000)]
    before = {who for who in people if member(quarterly, who, q1_end)}
    after = {who for who in people if member(quarterly, who, q2_start)}
    assert before == {who for who in people if member(quarterly, who, ms("2026-01-01T00:00:00Z"))}
    # Independent draws: about 10 % of the last group is in the new one (200 of 2,000).
    assert abs(len(before) - 2_000) < 170 and abs(len(after) - 2_000) < 170
    assert 100 < len(before & after) < 300, len(before & after)
    # A new salt draws a new group at once, without waiting for a period.
    salted = {who for who in people if member(plan(reset="quarterly", salt="2026-rerun"), who, q1_end)}
    assert 100 < len(before & salted) < 300, len(before & salted)


def test_periods_start_in_the_policies_time_zone() -> None:
    document = {"timezone": "America/New_York", "control_group": {"share": 0.1, "reset": "yearly"}}
    new_york = plan_for(policies(**document))
    assert new_york is not None
    # 2027-01-01T03:00Z is still New Year's Eve in New York.
    assert epoch(new_york, ms("2027-01-01T03:00:00Z")) == "2026"
    assert epoch(new_york, ms("2027-01-01T05:00:00Z")) == "2027"
    assert epoch(plan(reset="yearly"), ms("2027-01-01T03:00:00Z")) == "2027"


# --- what a run in the group gets ----------------------------------------------------------------


def test_a_member_gets_no_marketing_but_the_receipt_walks_the_journey_and_converts() -> None:
    p = plan()
    d = Driver(cat=cat(welcome(), control_group=GROUP), profile=person(True, p), roundtrip=True)
    d.track("Signed Up")
    run_id = d.run_id(1)
    (hello,) = d.withheld()
    assert (hello.status, hello.reason, hello.step, hello.key) == (
        "dropped",
        "global_control",
        "hello",
        f"{run_id}:hello:1",
    )
    assert (hello.channel, hello.template, hello.marketing, hello.until_ms) == ("email", "hello", True, None)
    assert hello.context["journey"]["id"] == "welcome"  # as a sent message's, for the outbox row
    assert d.sends() == [] and d.runs()[0]["control"] == 1 and d.runs()[0]["holdout"] == 0
    assert d.state.runs[run_id].messages["hello"] == {
        "key": f"{run_id}:hello:1",
        "statuses": ["dropped"],
        "reason": "global_control",
    }
    d.advance("1d")
    # The transactional receipt is sent; the marketing push after it is withheld too.
    assert [(s.step, s.at_ms) for s in d.sends()] == [("receipt", T0 + D)]
    assert [(w.step, w.channel, w.reason) for w in d.withheld()] == [
        ("hello", "email", "global_control"),
        ("tips", "push", "global_control"),
    ]
    d.track("Order Completed", {"revenue": 40})
    row = d.runs()[0]
    assert (row["status"], row["control"], row["converted_at_ms"], row["revenue"]) == ("done", 1, T0 + D, 40.0)
    assert d.state.runs[run_id].control is True  # kept in the state document (roundtrip)


def test_someone_outside_the_group_gets_everything() -> None:
    d = Driver(cat=cat(welcome(), control_group=GROUP), profile=person(False, plan()))
    d.track("Signed Up")
    d.advance("1d")
    assert [s.step for s in d.sends()] == ["hello", "receipt", "tips"]
    assert d.withheld() == [] and d.runs()[0]["control"] == 0


def test_a_journey_that_excludes_the_group_reaches_its_members() -> None:
    who = person(True, plan())
    d = Driver(cat=cat(welcome(), welcome("orders", control_group="exclude"), control_group=GROUP), profile=who)
    d.track("Signed Up")
    d.advance("1d")
    assert [s.step for s in d.sends("orders")] == ["hello", "receipt", "tips"]
    assert [s.step for s in d.sends("welcome")] == ["receipt"]
    assert {r["journey_id"]: r["control"] for r in d.runs()} == {"welcome": 1, "orders": 0}


def test_the_share_of_runs_in_the_group_over_many_people() -> None:
    catalog = cat(welcome(), control_group={"share": 0.05})
    p = catalog.control_plan
    assert p is not None
    inside = 0
    for i in range(4_000):
        d = Driver(cat=catalog, profile=f"person-{i}")
        d.track("Signed Up")
        (row,) = d.runs()
        assert row["control"] == int(member(p, f"person-{i}", T0))
        # Exactly one of: the email went, or it was withheld for the group.
        assert len(d.sends()) + len(d.withheld()) == 1 and len(d.withheld()) == row["control"]
        inside += row["control"]
    # 4,000 draws at 5 %: 200 expected, standard deviation 13.8; within 4 of them.
    assert abs(inside - 200) < 56, inside


def test_the_group_hashes_the_userid_as_holdouts_do() -> None:
    p = plan()
    user = person(True, p)
    d = Driver(cat=cat(welcome(), control_group=GROUP), profile="prf_internal_id")
    d.track("Signed Up", user_id=user)
    assert d.runs()[0]["control"] == 1  # the store's profile id does not matter: the simulator agrees


# --- composing with holdouts, send policies, resets and changes ----------------------------------


def test_a_holdout_run_in_the_group_is_a_holdout_first() -> None:
    p = plan()
    both = next(
        who
        for who in (f"p{i}" for i in range(10_000))
        if member(p, who, T0) and unit_hash("holdout", "welcome", who) < 0.5
    )
    d = Driver(cat=cat(welcome(holdout=0.5), control_group=GROUP), profile=both)
    d.track("Signed Up")
    d.advance("1d")
    row = d.runs()[0]
    assert (row["holdout"], row["control"]) == (1, 1)
    assert d.sends() == [] and d.withheld() == []  # nothing at all, not even the receipt, as before


def test_a_withheld_message_takes_no_place_in_caps_or_collision_windows() -> None:
    who = person(True, plan())
    document = {
        "control_group": GROUP,
        "frequency_caps": [{"id": "one-a-day", "channel": "email", "limit": 1, "window": "24h"}],
        "collision": {"window": "1h"},
    }
    catalog = cat(welcome(priority=5), welcome("orders", control_group="exclude"), **document)
    d = Driver(cat=catalog, profile=who)
    d.track("Signed Up")
    # welcome (first by priority) is withheld for the group; orders' email is then neither
    # capped nor in a collision with it.
    assert [(w.journey_id, w.step, w.reason) for w in d.withheld()] == [("welcome", "hello", "global_control")]
    assert [(s.journey_id, s.step) for s in d.sends()] == [("orders", "hello")]
    assert [entry[2] for entry in d.state.sends] == ["orders"]


def test_a_run_keeps_its_side_across_a_reset() -> None:
    p = plan(reset="monthly")
    end_of_march = ms("2026-03-31T12:00:00Z")
    who = next(
        f"p{i}" for i in range(10_000) if member(p, f"p{i}", end_of_march) and not member(p, f"p{i}", end_of_march + D)
    )
    catalog = cat(welcome(), control_group={"share": 0.1, "reset": "monthly"})
    d = Driver(cat=catalog, profile=who, now=end_of_march)
    d.track("Signed Up")
    d.advance("1d")  # April now: the person is not in April's group, but this run is March's
    assert [s.step for s in d.sends()] == ["receipt"]
    assert [w.step for w in d.withheld()] == ["hello", "tips"]
    d.advance("7d")
    d.track("Signed Up")  # a new run in April: treated
    assert [s.step for s in d.sends()] == ["receipt", "hello"]
    assert [r["control"] for r in d.runs()] == [1, 0]


def test_membership_is_decided_by_the_event_time_not_the_batch_time() -> None:
    p = plan(reset="monthly")
    late = ms("2026-04-01T00:05:00Z")  # the batch decides in April an event of March
    who = next(f"p{i}" for i in range(10_000) if member(p, f"p{i}", late - H) and not member(p, f"p{i}", late))
    d = Driver(cat=cat(welcome(), control_group={"share": 0.1, "reset": "monthly"}), profile=who, now=late)
    d.track("Signed Up", ts=late - H)
    assert d.runs()[0]["control"] == 1


def test_runs_entered_before_the_group_was_set_keep_sending() -> None:
    who = person(True, plan())
    d = Driver(welcome(), profile=who)
    d.track("Signed Up")
    d.use(cat(welcome(), control_group=GROUP))  # the policies now have a group
    d.advance("1d")
    assert [s.step for s in d.sends()] == ["hello", "receipt", "tips"]
    d.advance("8d")
    d.track("Signed Up")
    assert [s.step for s in d.sends()][3:] == [] and [w.step for w in d.withheld()] == ["hello"]


def test_the_reason_is_in_the_vocabulary() -> None:
    assert control_group.REASON == GLOBAL_CONTROL == "global_control"
    assert family_of(GLOBAL_CONTROL) == GLOBAL_CONTROL


def test_a_run_written_before_the_field_existed_reads_as_treated() -> None:
    state = ProfileState.from_json(
        "p",
        b'{"traits": {}, "runs": {"r": {"id": "r", "journey_id": "j", "version": 1, "entered_at": 0, "trigger": {}}}}',
    )
    assert state.runs["r"].control is False
    assert b"control" not in state.to_json()  # a default is left out of the document


def test_a_members_withheld_message_keeps_its_send_time_decision_as_a_sent_one_would() -> None:
    spec = {"within": "24h", "fallback": "10:00", "explore": 0.0}
    timed = journey(
        "timed", ON_SIGNUP, {"mail": {"type": "send", "channel": "email", "template": "t", "send_time": spec}}
    )
    d = Driver(cat=cat(timed, control_group=GROUP), profile=person(True, plan()))
    d.track("Signed Up")  # T0 is 12:00 UTC: the fallback hour is tomorrow's 10:00
    d.advance("1d")
    (withheld,) = d.withheld()
    assert withheld.reason == "global_control" and d.sends() == []
    assert withheld.context["send_time"]["hour"] == 10  # the report's split of send-time arms sees it
    assert d.runs()[0]["control"] == 1
