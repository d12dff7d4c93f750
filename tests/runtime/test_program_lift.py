"""The global control group in the reports, on SQLite and PostgreSQL: the real engine and
effects writer, a known population, and every count of the journey report and the program's
lift equal to the ground truth computed here from who is in the group, who was held out and
who bought what."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import timedelta
from typing import Any

import orjson

from nudgeflow.channels.base import ChannelRegistry
from nudgeflow.core.clock import to_ms
from nudgeflow.core.control_group import cohort, member, plan_for
from nudgeflow.core.effects import RunChanged
from nudgeflow.core.state import Run
from nudgeflow.measure import report
from nudgeflow.measure.statistics import RevenueSums, conversion_lift, revenue_lift
from nudgeflow.model.policies import Policies
from nudgeflow.runtime.embedded import EmbeddedRuntime
from nudgeflow.runtime.processor import EngineCache
from nudgeflow.store import rollups
from nudgeflow.store.effects_writer import EffectsBatch
from nudgeflow.web.reports_api import load_journey_report, load_overview
from tests.runtime.harness import Harness
from tests.runtime.policy_journeys import apply_policies, publish
from tests.runtime.report_support import (
    PROGRAM_PROMO,
    PROGRAM_SALE,
    PROGRAM_UPSELL,
    PROGRAM_VIP,
    program_journey,
)

GROUP = {"control_group": {"share": 0.3, "salt": "program-test"}}
# Three journeys on sign-up and a fourth on another trigger (report_support.py says which
# does what for the program).
PROMO, SALE, UPSELL, VIP = PROGRAM_PROMO, PROGRAM_SALE, PROGRAM_UPSELL, PROGRAM_VIP
# Transactional: sent to the group's members too, its runs still theirs.
RECEIPT = {
    **program_journey("receipt", "Signed Up"),
    "steps": {"hello": {**PROMO["steps"]["hello"], "marketing": False}},
}

USERS = [f"user-{i:02d}" for i in range(60)]
VIPS = [f"vip-{i}" for i in range(6)]


def runtime(h: Harness) -> EmbeddedRuntime:
    return h.runtime(engines=EngineCache(), channels=ChannelRegistry.development())


def _counters(h: Harness, journey_id: str) -> dict[str, Any]:
    with h.db.connect() as conn:
        counters, _ = rollups.read(conn, h.ws, journey_id=journey_id)
    [row] = counters
    return row


def _json(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


def test_journey_lift_leaves_the_group_out_and_the_program_lift_is_the_group_against_everyone_else(
    h: Harness,
) -> None:
    publish(h, PROMO, SALE, UPSELL, VIP, RECEIPT)
    apply_policies(h, GROUP)
    plan = plan_for(Policies.model_validate(GROUP))
    assert plan is not None
    for user in USERS:
        h.track(user, "Signed Up")
    for user in VIPS:
        h.track(user, "Joined VIP")
    rt = runtime(h)
    rt.run_until_idle()

    # Who buys what, an hour later: every third person an order, every fourth an upgrade; the
    # VIPs buy too (their journey excludes the group: not the program's).
    h.clock.advance(timedelta(hours=1))
    orders = {u: 10.0 + i for i, u in enumerate(USERS) if i % 3 == 0}
    upgrades = {u: 100.0 + i for i, u in enumerate(USERS) if i % 4 == 0}
    for user, revenue in orders.items():
        h.track(user, "Order Completed", revenue=revenue)
    for user, amount in upgrades.items():
        h.track(user, "Upgraded", amount=amount)
    for user in VIPS[:3]:
        h.track(user, "Order Completed", revenue=1000.0)
    rt.run_until_idle()

    # The truth: the group from its definition, the journey's holdout from the runs.
    control = {u for u in USERS if member(plan, u, 0)}
    assert 8 <= len(control) <= 30  # about 30 % of 60
    runs = h.q(
        "SELECT i.key, r.journey_id, r.holdout, r.control, r.control_cohort FROM journey_runs r"
        " JOIN identities i ON i.profile_id = r.profile_id AND i.key LIKE 'u:%'"
    )
    assert {(r.key[2:], r.journey_id) for r in runs if r.control} == {
        (u, j) for u in control for j in ("promo", "sale", "upsell", "receipt")
    }
    # A member's receipt goes, and says its run is the group's: dispatch counts it apart.
    receipts = h.q(
        "SELECT i.key, o.status, o.payload FROM outbox o JOIN identities i ON i.profile_id = o.profile_id"
        " AND i.key LIKE 'u:%' WHERE o.journey_id = 'receipt'"
    )
    assert {r.key[2:] for r in receipts if r.status != "dropped"} == set(USERS)
    assert {r.key[2:] for r in receipts if orjson.loads(r.payload)["run"].get("control")} == control
    assert {r.control_cohort for r in runs if r.journey_id != "vip"} == {cohort(plan, 0)}
    assert {r.control_cohort for r in runs if r.journey_id == "vip"} == {None}
    held = {r.key[2:] for r in runs if r.journey_id == "promo" and r.holdout}
    treated = set(USERS) - held - control
    held_out = held - control
    assert treated and held_out and held & control  # every kind of run is there

    # The journey: treated and held out both outside the group; the group's runs apart.
    promo = _counters(h, "promo")
    assert (promo["entered"], promo["held_out"], promo["entered_control"]) == (
        len(treated),
        len(held_out),
        len(control),
    )
    assert promo["conversions"] == len(treated & orders.keys())
    assert promo["conversions_held_out"] == len(held_out & orders.keys())
    assert promo["conversions_control"] == len(control & orders.keys())
    assert promo["revenue_control"] == sum(orders[u] for u in control & orders.keys())
    with h.db.connect() as conn:
        journey = load_journey_report(conn, h.ws, "promo", from_day=None, to_day=None, by=(), include_machine=False)
        overview = load_overview(conn, h.ws, from_day=None, to_day=None, include_machine=False)
    assert journey is not None
    expected = conversion_lift(len(treated & orders.keys()), len(treated), len(held_out & orders.keys()), len(held_out))
    assert journey["lift"]["conversion"] == dataclasses.asdict(expected)
    assert "outside the global control group" in journey["lift"]["basis"]
    totals = journey["totals"]
    assert (totals["control"], totals["control_conversions"]) == (len(control), len(control & orders.keys()))

    # The program: one unit per person, converted by any of their journeys' goals, revenue
    # each goal event once (the order converts promo and sale: counted once), VIPs not in it.
    def person_revenue(user: str) -> float:
        return orders.get(user, 0.0) + upgrades.get(user, 0.0)

    others = set(USERS) - control
    buyers = orders.keys() | upgrades.keys()
    program = overview["lift"]
    assert (program["people"], program["control_people"]) == (len(others), len(control))
    conversion = conversion_lift(len(others & buyers), len(others), len(control & buyers), len(control))
    # In the group's words: statistics' "held out" is the group here.
    assert program["conversion"] == {
        **dataclasses.asdict(conversion),
        "notes": report.program_notes(conversion.notes),
    }
    revenue = revenue_lift(
        RevenueSums(len(others), sum(map(person_revenue, others)), sum(person_revenue(u) ** 2 for u in others)),
        RevenueSums(len(control), sum(map(person_revenue, control)), sum(person_revenue(u) ** 2 for u in control)),
    )
    got = program["revenue_per_person"]
    want = dataclasses.asdict(revenue)
    # Sums of squares added a person at a time round differently in the last digits.
    assert got["per_person_lift"]["value"] == want["per_person_lift"]["value"]
    for name in ("low", "high"):
        assert abs(got["per_person_lift"][name] - want["per_person_lift"][name]) < 1e-9
    assert abs(got["p_value"] - want["p_value"]) < 1e-9
    assert "control group" in program["basis"] and "causal" in program["basis"]

    # The overview's CSV: a line per journey, then the program's.
    lines = list(csv.DictReader(io.StringIO(report.overview_csv(overview))))
    assert [line["row"] for line in lines] == ["journey"] * 5 + ["program"]
    assert int(lines[-1]["entered"]) == len(others) and int(lines[-1]["control"]) == len(control)
    assert float(lines[-1]["lift_absolute"]) == conversion.absolute_lift.value  # type: ignore[union-attr]

    # A day range that leaves out the day everyone entered has nobody in it.
    with h.db.connect() as conn:
        later = rollups.day_of(to_ms(h.clock.now())) + 1
        empty = load_overview(conn, h.ws, from_day=later, to_day=None, include_machine=False)
    assert empty["lift"] is None


def test_runs_of_the_program_decided_twice_and_a_person_in_two_journeys_count_once(h: Harness) -> None:
    """The effects writer's rows, written twice (a batch decided again): nothing moves. One
    person's two runs in one batch are one person; a goal event that converts both adds its
    revenue once; a second goal event adds to the same person's total."""
    at = to_ms(h.clock.now())
    pid = "p-ctl"

    def run(run_id: str, journey_id: str, *, goal: str | None, revenue: float | None, control: bool) -> Run:
        return Run(
            run_id,
            journey_id,
            1,
            at,
            {},
            control=control,
            control_cohort="2026Q4",
            converted_at=None if goal is None else at + 10,  # one moment: the goal's id tells them apart
            converted_by=goal,
            revenue=revenue,
        )

    batches = [
        [run("r1", "promo", goal=None, revenue=None, control=True)],
        [
            run("r1", "promo", goal="order-1", revenue=20.0, control=True),
            run("r2", "sale", goal="order-1", revenue=20.0, control=True),
        ],
        [run("r3", "upsell", goal="upgrade-1", revenue=5.0, control=True)],
    ]
    # Someone else, outside the group, who buys nothing.
    other = [run("r4", "promo", goal=None, revenue=None, control=False)]

    def write(runs: list[Run], profile: str) -> None:
        def job(conn: Any) -> None:
            batch = EffectsBatch()
            batch.add(h.ws, profile, [RunChanged(r.as_row(profile)) for r in runs], at)
            batch.write(conn, at)

        h.in_transaction(job)

    for runs in batches:
        for _ in range(2):
            write(runs, pid)
    write(other, "p-other")
    write(other, "p-other")
    with h.db.connect() as conn:
        program = rollups.read_program(conn, h.ws)
    assert program == {
        "program_people": 1,
        "program_conversions": 0,
        "program_people_control": 1,
        "program_conversions_control": 1,
        "program_revenue": 0.0,
        "program_revenue_sq": 0.0,
        "program_revenue_control": 25.0,
        # The person's total squared, not the sum of each goal event's square (400 + 25).
        "program_revenue_sq_control": 625.0,
    }
    promo = _counters(h, "promo")
    assert (promo["entered"], promo["entered_control"], promo["conversions_control"], promo["conversions"]) == (
        1,
        1,
        1,
        0,
    )
    assert h.scalar("SELECT control FROM journey_runs WHERE id = 'r1'") == 1


def test_a_members_transactional_message_counts_as_sent_but_not_as_a_treated_recipient(h: Harness) -> None:
    at = to_ms(h.clock.now())

    def sent(run_id: str, *, control: bool) -> rollups.Sent:
        return rollups.Sent(
            h.ws,
            f"{run_id}:hello:1",
            "p",
            run_id,
            "receipt",
            1,
            "hello",
            None,
            "email",
            True,
            at,
            at,
            at,
            control=control,
        )

    def job(conn: Any) -> None:
        counted = rollups.Rollup()
        rollups.count_sent(conn, counted, [sent("r-member", control=True), sent("r-other", control=False)])
        counted.write(conn)

    h.in_transaction(job)
    receipt = _counters(h, "receipt")
    assert (receipt["sent"], receipt["step_recipients"], receipt["recipients"]) == (2, 2, 1)


def test_a_merged_away_profiles_place_in_the_program_moves_to_the_profile_it_went_into(h: Harness) -> None:
    """An anonymous visitor enters a journey, then is merged into a known profile that had no
    run in the cohort: the person's later runs and conversion count for one person."""
    from nudgeflow.store import engine_state

    at = to_ms(h.clock.now())

    def write(profile: str, run: Run) -> None:
        def job(conn: Any) -> None:
            batch = EffectsBatch()
            batch.add(h.ws, profile, [RunChanged(run.as_row(profile))], at)
            batch.write(conn, at)

        h.in_transaction(job)

    write("p-anon", Run("r-a", "promo", 1, at, {}, control_cohort="2026Q4"))
    h.in_transaction(lambda conn: engine_state.move_merged(conn, "p-anon", "p-known"))
    write("p-known", Run("r-k", "sale", 1, at + 5, {}, control_cohort="2026Q4"))
    write(
        "p-known",
        Run("r-k", "sale", 1, at + 5, {}, control_cohort="2026Q4", converted_at=at + 9, converted_by="o", revenue=3.0),
    )
    # And one who had a place of their own already: counted twice, as documented.
    write("p-anon2", Run("r-a2", "promo", 1, at, {}, control_cohort="2026Q4"))
    write("p-known2", Run("r-k2", "sale", 1, at, {}, control_cohort="2026Q4"))
    h.in_transaction(lambda conn: engine_state.move_merged(conn, "p-anon2", "p-known2"))
    with h.db.connect() as conn:
        program = rollups.read_program(conn, h.ws)
    assert (program["program_people"], program["program_conversions"], program["program_revenue"]) == (3, 1, 3.0)
    assert h.scalar("SELECT count(*) FROM message_facts WHERE profile_id = 'p-known' AND fact = 'program'") == 1


def test_an_order_that_converts_a_late_triggered_run_too_counts_once_in_the_program(h: Harness) -> None:
    """The order converts the promo run on time, then the sale run whose trigger event came late
    (an app's queue flushed after the order): one goal event, so the program counts it once."""
    publish(h, program_journey("promo", "Signed Up"), program_journey("sale", "Offer Viewed"))
    apply_policies(h, GROUP)
    rt = runtime(h)
    h.track("ada", "Signed Up")
    rt.run_until_idle()
    h.clock.advance(timedelta(minutes=10))
    offer_at = h.clock.now() - timedelta(minutes=5)
    h.send({"type": "track", "userId": "ada", "event": "Order Completed", "properties": {"revenue": 30.0}})
    rt.run_until_idle()
    h.send({"type": "track", "userId": "ada", "event": "Offer Viewed", "timestamp": offer_at.isoformat()})
    rt.run_until_idle()

    with h.db.connect() as conn:
        program = rollups.read_program(conn, h.ws)
    # Ada is on one side of the comparison (in the group or not): the sides' sums are hers.
    conversions = program["program_conversions"] + program["program_conversions_control"]
    revenue = program["program_revenue"] + program["program_revenue_control"]
    assert (conversions, revenue) == (1, 30.0)
    runs = h.q("SELECT journey_id, converted_by, revenue FROM journey_runs ORDER BY journey_id")
    [order] = h.events_named("Order Completed")
    assert [(r.journey_id, r.converted_by, r.revenue) for r in runs] == [
        ("promo", order.message_id, 30.0),
        ("sale", order.message_id, 30.0),  # converted as it entered, by the same order
    ]
