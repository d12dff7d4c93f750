"""The simulator's report with send policies and segments (runtime/simulation_report.py): the
pressure report on a small input whose numbers are worked out by hand, message statuses, and
segment sizes."""

from __future__ import annotations

from typing import Any

from nudgeflow.model.journeys import Journey
from nudgeflow.model.policies import Policies
from nudgeflow.model.segments import Segment
from nudgeflow.runtime.simulation import Simulation
from nudgeflow.runtime.simulation_report import message_lines, percentile, pressure, segment_report


def journey(id: str, event: str, priority: int = 0) -> Journey:
    return Journey.model_validate(
        {
            "id": id,
            "name": id,
            "priority": priority,
            "trigger": {"type": "event", "event": event},
            "entry": {"reentry": "always"},
            "steps": {"send": {"type": "send", "channel": "email", "template": f"{id}-t"}},
        }
    )


POLICIES = Policies.model_validate(
    {
        "frequency_caps": [{"id": "three-a-week", "channel": "email", "limit": 3, "calendar": "week"}],
        "quiet_hours": [{"channel": "email", "start": "22:00", "end": "08:00"}],
        "collision": {"window": "10m"},
    }
)
TWICE = Segment.model_validate(
    {"id": "pinged-twice", "name": "Pinged twice", "when": {"performed": "Ping", "within": "30d", "count": 2}}
)

# ISO week 10 of 2026 starts on Monday 2 March; week 11 on Monday 9 March (UTC: no time zones).
EVENTS: list[tuple[str, str, str]] = [
    # ada: a Ping a day, Monday to Friday: three emails, then the weekly cap drops two.
    *(("ada", "Ping", f"2026-03-0{day}T09:00:00Z") for day in range(2, 7)),
    # bob: one in week 10; two in week 11, the second at 23:00, deferred by quiet hours to 08:00.
    ("bob", "Ping", "2026-03-02T10:00:00Z"),
    ("bob", "Ping", "2026-03-09T10:00:00Z"),
    ("bob", "Ping", "2026-03-10T23:00:00Z"),
    # carol: two journeys on one event; `hi` wins, `promo` is deferred past the 10 min window.
    ("carol", "Signed Up", "2026-03-03T12:00:00Z"),
]


def simulate(**kwargs: Any) -> Simulation:
    sim = Simulation(
        [journey("ping", "Ping"), journey("hi", "Signed Up", 5), journey("promo", "Signed Up", 1)], **kwargs
    )
    for user, event, at in sorted(EVENTS, key=lambda e: e[2]):
        sim.track(user, event, at=at)
    sim.advance("1d")
    return sim


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile(list(range(1, 11)), 90) == 9
    assert percentile([7], 90) == 7
    assert percentile([], 50) == 0


def test_the_pressure_report_on_a_hand_checked_input() -> None:
    sim = simulate(policies=POLICIES)
    report = pressure(sim)
    # Person-weeks with email: ada w10 = 3, bob w10 = 1, bob w11 = 2, carol w10 = 2 -> 1, 2, 2, 3.
    assert report["per_person_week"]["channels"] == {
        "email": {"people": 3, "person_weeks": 4, "messages": 8, "p50": 2, "p90": 3, "max": 3}
    }
    assert report["cap_hits"] == {"three-a-week": {"deferred": 0, "dropped": 2}}
    assert report["collisions"] == [{"winner": "hi", "loser": "promo", "deferred": 1, "dropped": 0}]
    assert report["quiet_hours"] == {"email": {"deferred": 1, "dropped": 0}}


def test_every_message_wanted_has_a_status_and_deferred_ones_their_first_time() -> None:
    sim = simulate(policies=POLICIES)
    lines = message_lines(sim)
    by_status = [(line["user_id"], line["journey"], line["at"], line["status"], line.get("reason")) for line in lines]
    assert [row for row in by_status if row[3] != "planned"] == [
        ("ada", "ping", "2026-03-05T09:00:00.000Z", "dropped", "frequency_cap:three-a-week"),
        ("ada", "ping", "2026-03-06T09:00:00.000Z", "dropped", "frequency_cap:three-a-week"),
    ]
    assert sum(1 for row in by_status if row[3] == "planned") == 8
    deferred = {(line["user_id"], line["journey"]): line for line in lines if "deferred_from" in line}
    assert deferred[("bob", "ping")]["at"] == "2026-03-11T08:00:00.000Z"
    assert deferred[("bob", "ping")]["deferred_from"] == "2026-03-10T23:00:00.000Z"
    assert deferred[("carol", "promo")]["at"] == "2026-03-03T12:10:00.000Z"
    assert deferred[("carol", "promo")]["deferred_from"] == "2026-03-03T12:00:00.000Z"
    planned = next(line for line in lines if line["status"] == "planned")
    assert list(planned)[:-1] == list(sim.messages[0].as_json())  # the keys of before, then status
    assert [line["at"] for line in lines] == sorted(line["at"] for line in lines)


def test_without_policies_every_message_is_planned_and_nothing_is_held() -> None:
    sim = simulate()
    assert {line["status"] for line in message_lines(sim)} == {"planned"}
    report = pressure(sim)
    assert report["per_person_week"]["channels"]["email"]["messages"] == 10
    assert report["cap_hits"] == {} and report["collisions"] == [] and report["quiet_hours"] == {}


def test_segment_sizes_entries_and_exits() -> None:
    sim = simulate(segments=[TWICE])
    # ada enters on her second Ping (3 March), bob on his (9 March); nobody has left yet.
    assert segment_report(sim) == {"pinged-twice": {"members": 2, "entered": 2, "exited": 0}}
    sim.advance("40d")  # the 30-day windows lapse: both leave
    assert segment_report(sim) == {"pinged-twice": {"members": 0, "entered": 2, "exited": 2}}
