"""A simulation's facts as the report rollups' counters (runtime/simulation_rollups.py): a
small scripted population through the real core, every count worked out from the script (the
holdout side from the core's own hash, as the engine assigns it), and what a simulation
cannot know shown as not known, never as 0."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from nudgeflow.core.control_group import member
from nudgeflow.core.turn import unit_hash
from nudgeflow.model.iso_time import iso
from nudgeflow.model.journeys import Journey
from nudgeflow.model.policies import Policies
from nudgeflow.runtime.simulation import Simulation
from nudgeflow.runtime.simulation_rollups import ALWAYS_NOT_KNOWN, build, read, simulated_report
from nudgeflow.store.rollups import DAY_MS, VALUES

H, D = 3_600_000, 86_400_000
T0 = 1_772_442_000_000  # 2026-03-02T09:00:00Z, a Monday
DAY0 = T0 // DAY_MS
PROMO = Journey.model_validate(
    {
        "id": "promo",
        "name": "Promo",
        "trigger": {"type": "event", "event": "Sale Started"},
        "entry": {"reentry": "once"},
        "holdout": 0.3,
        "goal": {"event": "Order Completed", "within": "7d", "revenue": "revenue"},
        "steps": {
            "mail": {
                "type": "send",
                "channel": "email",
                "variants": [
                    {"name": "a", "template": "promo-a", "weight": 1},
                    {"name": "b", "template": "promo-b", "weight": 1},
                ],
                "next": "wait",
            },
            "wait": {"type": "wait", "duration": "1d", "next": "reminder"},
            "reminder": {"type": "send", "channel": "email", "template": "promo-reminder"},
        },
    }
)
# Same trigger and goal, no holdout: one order converts a run of each journey.
SALE = Journey.model_validate(
    {
        "id": "sale",
        "name": "Sale",
        "trigger": {"type": "event", "event": "Sale Started"},
        "goal": {"event": "Order Completed", "within": "7d", "revenue": "revenue"},
        "steps": {"mail": {"type": "send", "channel": "push", "template": "sale"}},
    }
)
USERS = [f"user-{i:02d}" for i in range(20)]
HELD = [u for u in USERS if unit_hash("holdout", "promo", u) < 0.3]
TREATED = [u for u in USERS if u not in HELD]
# Orders a day and a half in: two treated people (60 and 15.5) and one held out (40).
BUYERS = {TREATED[0]: 60.0, TREATED[1]: 15.5, HELD[0]: 40.0}


def track(sim: Simulation, user: str, event: str, at: int, **properties: Any) -> None:
    sim.track(user, event, properties, at=iso(at))


def run(engagement: Sequence[tuple[str, int, str, dict[str, Any]]] = ()) -> Simulation:
    """Everyone gets the sale at T0 + i min; buyers order at T0 + 36 h; `engagement`: (user,
    offset after their mail, event, extra properties) about their promo mail."""
    sim = Simulation([PROMO, SALE])
    for i, user in enumerate(USERS):
        track(sim, user, "Sale Started", T0 + i * 60_000)
    keys = {m.profile: m for m in sim.messages if m.journey == "promo" and m.step == "mail"}
    for user, offset, event, extra in sorted(engagement, key=lambda e: keys[e[0]].at_ms + e[1]):
        message = keys[user]
        track(sim, user, event, message.at_ms + offset, message_key=message.key, **extra)
    for user, revenue in BUYERS.items():
        track(sim, user, "Order Completed", T0 + 36 * H, revenue=revenue)
    sim.advance("3d")
    return sim


def test_runs_and_messages_count_as_the_store_counts_them() -> None:
    assert len(HELD) >= 2 and len(TREATED) >= 2  # the script needs both sides
    found = simulated_report(run(), by=("step",))
    promo = found["journeys"]["promo"]
    totals = promo["totals"]
    assert (totals["entered"], totals["held_out"], totals["recipients"]) == (len(TREATED), len(HELD), len(TREATED))
    assert totals["sent"] == 2 * len(TREATED)  # the mail and the reminder a day later
    assert (totals["conversions"], totals["revenue"]) == (2, 75.5)
    assert (totals["held_out_conversions"], totals["held_out_revenue"]) == (1, 40.0)
    assert totals["conversion_rate"] == 2 / len(TREATED)
    assert totals["time_to_convert"]["count"] == 3  # treated and held out, as the effects writer counts
    assert totals["time_to_trigger"]["count"] == 2 * len(TREATED)
    by_step = {row["step"]: row for row in promo["rows"]}
    assert set(by_step) == {"", "mail", "reminder"}
    assert by_step[""]["sent"] == 0 and by_step[""]["entered"] == len(TREATED)
    for step in ("mail", "reminder"):
        assert by_step[step]["sent"] == by_step[step]["recipients"] == len(TREATED)
    # The lift: treated runs against held-out runs.
    conversion = promo["lift"]["conversion"]
    assert (conversion["treated_people"], conversion["treated_conversions"]) == (len(TREATED), 2)
    assert (conversion["held_out_people"], conversion["held_out_conversions"]) == (len(HELD), 1)
    # The other journey: everyone treated; the order converts their run there too.
    sale = found["journeys"]["sale"]["totals"]
    assert (sale["entered"], sale["held_out"], sale["sent"], sale["conversions"]) == (len(USERS), 0, len(USERS), 3)
    # Per journey each claims it; the workspace counts each goal event once (treated runs only).
    workspace = found["overview"]["workspace"]
    assert workspace["conversions"] == 2 + 3 and workspace["unique_conversions"] == 3
    assert workspace["unique_revenue"] == 115.5
    assert [t["trigger_type"] for t in found["overview"]["trigger_types"]] == ["event"]


def test_variants_and_days_as_dimensions() -> None:
    rollups = build(run())
    counters, _ = read(rollups, journey_id="promo", by=("step", "variant", "day"))
    mails = {(r["step"], r["variant"], r["day"]): r["sent"] for r in counters if r["step"]}
    variants = {v for (step, v, _day) in mails if step == "mail"}
    assert variants <= {"a", "b"} and variants
    assert sum(n for (step, _v, day), n in mails.items() if step == "mail" and day == DAY0) == len(TREATED)
    assert mails[("reminder", "", DAY0 + 1)] == len(TREATED)  # a day after: the next UTC day's row
    with pytest.raises(ValueError, match="cannot break a report down by 'profile'"):
        read(rollups, by=("profile",))


def test_what_a_simulation_cannot_know_is_not_known_not_zero() -> None:
    found = simulated_report(run())["journeys"]["promo"]
    totals = found["totals"]
    for name in ("delivered", "unique_opens", "unique_clicks", "open_rate", "bounces", "unsubscribes", "complaints"):
        assert totals[name] is None, name
        assert name in found["not_known"]
    assert "sent" not in found["not_known"] and "conversions" not in found["not_known"]
    assert all(row["delivered"] is None for row in found["rows"])
    # Counters, too, for every row: None where the store would have a number.
    for row in build(run()).counters.values():
        assert set(row) == set(VALUES)
        assert all(row[name] is None for name in ALWAYS_NOT_KNOWN)


def test_replayed_opens_and_clicks_count_once_per_message_with_machines_apart() -> None:
    a, b, c, d = TREATED[:4]
    engagement = [
        (a, 5 * 60_000, "Email Opened", {}),
        (a, 9 * 60_000, "Email Opened", {}),  # a second open of the same message: nothing more
        (a, 10 * 60_000, "Email Link Clicked", {}),
        (b, 2_000, "Email Opened", {"machine": True, "machine_reason": "apple_mpp"}),
        (c, 3_000, "Email Link Clicked", {"bot": True, "bot_reason": "fast_click"}),
        (d, -60_000, "Email Opened", {}),  # before the message was sent: not one of its opens
    ]
    found = simulated_report(run(engagement), by=("step",))["journeys"]["promo"]
    mail = next(row for row in found["rows"] if row["step"] == "mail")
    assert (mail["unique_opens"], mail["unique_clicks"]) == (1, 1)
    assert (mail["machine_opens"], mail["bot_clicks"]) == (1, 1)
    assert mail["open_rate"] == 1 / len(TREATED)
    reminder = next(row for row in found["rows"] if row["step"] == "reminder")
    assert (reminder["unique_opens"], reminder["unique_clicks"]) == (0, 0)  # known now: none
    assert "unique_opens" not in found["not_known"] and "delivered" in found["not_known"]
    assert found["totals"]["delivered"] is None


def test_the_programs_lift_counts_a_person_once_per_cohort() -> None:
    # Half the people in the global control group: the program compares them with the others,
    # a person at a time, whatever the number of journeys they entered (two here) or of runs
    # one order converted (both).
    policies = Policies.model_validate({"control_group": {"share": 0.5}})
    sim = Simulation([PROMO, SALE], policies=policies)
    plan = sim.catalog.control_plan
    assert plan is not None
    for i, user in enumerate(USERS):
        track(sim, user, "Sale Started", T0 + i * 60_000)
    buyers = {user: 10.0 * (n + 1) for n, user in enumerate(USERS[::2])}
    for user, revenue in buyers.items():
        track(sim, user, "Order Completed", T0 + 36 * H, revenue=revenue)
    sim.advance("1d")
    in_group = {user for user in USERS if member(plan, user, T0)}
    assert 0 < len(in_group) < len(USERS)
    program = build(sim).program
    bought_in, bought_out = ([r for u, r in buyers.items() if (u in in_group) == side] for side in (True, False))
    assert (program["program_people_control"], program["program_people"]) == (
        len(in_group),
        len(USERS) - len(in_group),
    )
    assert (program["program_conversions_control"], program["program_conversions"]) == (len(bought_in), len(bought_out))
    assert program["program_revenue_control"] == sum(bought_in) and program["program_revenue"] == sum(bought_out)
    assert program["program_revenue_sq"] == sum(r * r for r in bought_out)
    lift = simulated_report(sim)["overview"]["lift"]
    assert lift is not None and lift["control_people"] == len(in_group)
    assert lift["conversion"]["held_out_conversions"] == len(bought_in)
    # Without a control group there is no program to compare: no lift, not a made-up one.
    assert simulated_report(run())["overview"]["lift"] is None


def test_a_message_opened_by_a_machine_and_its_person_is_one_open_with_machines_included() -> None:
    """As the store counts them: the machine count holds messages opened by machines alone."""
    a, b = TREATED[:2]
    engagement = [
        (a, 2_000, "Email Opened", {"machine": True, "machine_reason": "apple_mpp"}),
        (a, 5 * 60_000, "Email Opened", {}),  # its person, after the proxy
        (b, 5 * 60_000, "Email Opened", {}),
        (b, 6 * 60_000, "Email Opened", {"machine": True, "machine_reason": "apple_mpp"}),  # after the person
    ]
    for machine in (False, True):
        found = simulated_report(run(engagement), by=("step",), include_machine=machine)["journeys"]["promo"]
        mail = next(row for row in found["rows"] if row["step"] == "mail")
        assert (mail["unique_opens"], mail["machine_opens"]) == (2, 0), machine
