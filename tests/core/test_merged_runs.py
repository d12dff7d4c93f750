"""Two profiles of one person merged, each with a run of a journey that allows one at a time:
the earlier-entered run goes on, the other ends (`merged`) with its timer, whatever the order
of the merges; on a virtual clock. The merge is the runtime's own (runtime/merges.merge_state),
its timers moved over as the store moves them."""

from __future__ import annotations

from typing import Any

import pytest

from nudgeflow.core.catalog import Catalog, JourneyVersion
from nudgeflow.core.effects import MessageWithheld
from nudgeflow.core.state import ACTIVE, EXITED
from nudgeflow.model.policies import Policies
from nudgeflow.runtime.merges import merge_state
from tests.core.engine_driver import T0, D, Driver, H, M, journey, ms

ON_SIGNUP = {"type": "event", "event": "Signed Up"}
GOAL = {"event": "Order Completed", "within": "7d", "revenue": "revenue"}


def welcome(**entry: Any):
    steps = {
        "w1": {"type": "wait", "duration": "1d", "next": "day1"},
        "day1": {"type": "send", "channel": "email", "template": "day1", "next": "w2"},
        "w2": {"type": "wait", "duration": "2d", "next": "day3"},
        "day3": {"type": "send", "channel": "email", "template": "day3"},
    }
    return journey("welcome", ON_SIGNUP, steps, entry=entry or {"reentry": "one_active"}, goal=GOAL)


def signed_up(profile: str, at: int, **entry: Any) -> Driver:
    d = Driver(welcome(**entry), profile=profile, now=at, roundtrip=True)
    d.track("Signed Up")
    return d


def fold(into: Driver, other: Driver) -> Driver:
    """What the runtime does when it folds `other` into `into`: the states merged, the timers
    moved; `into` decides from then on."""
    merge_state(into.state, other.state)
    into.timers.update(other.timers)
    into.now = max(into.now, other.now)
    return into


def in_progress(d: Driver) -> list[tuple[str, int]]:
    return sorted((r.id, r.entered_at) for r in d.state.runs.values() if r.status == ACTIVE)


@pytest.mark.parametrize("known_into_anonymous", [False, True])
def test_the_earlier_run_goes_on_and_the_later_one_ends_merged_with_its_timer(known_into_anonymous: bool) -> None:
    anon = signed_up("anon-1", T0)  # the visitor signs up for the newsletter first
    known = signed_up("ada", T0 + H)  # and an hour later creates an account
    [(anon_run, _)] = in_progress(anon)
    [(known_run, _)] = in_progress(known)
    d = fold(anon, known) if known_into_anonymous else fold(known, anon)
    assert d.state.merged

    d.now = T0 + 2 * H
    mark = d.mark()
    d.track("Page Viewed")
    assert not d.state.merged
    assert ("cancel", f"run:{known_run}") in d.effects(mark)
    [ended] = [e.run for _, e in d.log[mark:] if getattr(e, "run", {}).get("id") == known_run]
    assert (ended["status"], ended["exit_reason"], ended["ended_at_ms"]) == (EXITED, "merged", T0 + 2 * H)
    assert in_progress(d) == [(anon_run, T0)]
    assert f"run:{known_run}" not in d.timers and f"run:{anon_run}" in d.timers

    # One welcome series, on the visitor's schedule; the order converts the run that stays.
    d.advance_to(T0 + 2 * D)
    d.track("Order Completed", {"revenue": 40})
    d.advance("7d")
    assert d.sent() == [("day1", "2026-03-03T12:00:00Z"), ("day3", "2026-03-05T12:00:00Z")]
    converted = [r for r in d.runs() if r.get("converted_at_ms") is not None]
    assert [(r["id"], r["revenue"]) for r in converted] == [(anon_run, 40)]
    assert d.state.entries["welcome"]["count"] == 2  # both entered: re-entry rules see that


def survivor(order: list[str]) -> tuple[list[tuple[str, int]], list[str]]:
    people = {
        "anon-1": signed_up("anon-1", T0 + 30 * M),
        "anon-2": signed_up("anon-2", T0 + 10 * M),  # the earliest
        "ada": signed_up("ada", T0 + 50 * M),
    }
    d = people["ada"]
    for name in order:  # each merge is settled by the next call, as in the runtime
        fold(d, people[name])
        d.now += M
        d.track("Page Viewed")
    ended = sorted(r["id"] for r in d.runs() if r["exit_reason"] == "merged")
    return in_progress(d), ended


def test_the_order_of_the_merges_does_not_change_which_run_goes_on() -> None:
    one, ended_one = survivor(["anon-1", "anon-2"])
    other, ended_other = survivor(["anon-2", "anon-1"])
    assert one == other and [at for _, at in one] == [T0 + 10 * M]
    assert len(ended_one) == len(ended_other) == 2 and ended_one == ended_other


def test_reentry_once_keeps_one_and_once_per_period_keeps_runs_a_period_apart() -> None:
    d = fold(signed_up("ada", T0 + H, reentry="once"), signed_up("anon-1", T0, reentry="once"))
    d.track("Page Viewed")
    assert [at for _, at in in_progress(d)] == [T0]

    period = {"reentry": "once_per_period", "period": "12h"}
    far = fold(signed_up("ada", T0 + D, **period), signed_up("anon-1", T0, **period))
    far.track("Page Viewed")
    assert [at for _, at in in_progress(far)] == [T0, T0 + D]  # a period apart: both could have started
    near = fold(signed_up("ada", T0 + H, **period), signed_up("anon-1", T0, **period))
    near.track("Page Viewed")
    assert [at for _, at in in_progress(near)] == [T0]


def test_reentry_always_keeps_both_runs_and_an_unmerged_state_carries_no_mark() -> None:
    d = fold(signed_up("ada", T0 + H, reentry="always"), signed_up("anon-1", T0, reentry="always"))
    d.track("Page Viewed")
    assert len(in_progress(d)) == 2
    lone = signed_up("bob", T0)
    assert not lone.state.merged and b"merged" not in lone.state.to_json()


def test_the_ended_runs_deferred_message_is_dropped_and_its_release_timer_cancelled() -> None:
    quiet = {"channel": "email", "start": "22:00", "end": "08:00", "spread": "0m"}
    steps = {
        "hello": {"type": "send", "channel": "email", "template": "hello", "next": "w"},
        "w": {"type": "wait", "duration": "3d", "next": "tips"},
        "tips": {"type": "send", "channel": "email", "template": "tips"},
    }
    j = journey("welcome", ON_SIGNUP, steps)
    cat = Catalog([JourneyVersion("welcome", 1, j)], policies=Policies.model_validate({"quiet_hours": [quiet]}))
    night = ms("2026-03-02T21:00:00Z")
    anon = Driver(cat=cat, profile="anon-1", now=night)
    anon.track("Signed Up")  # 21:00 UTC: sent at once
    known = Driver(cat=cat, profile="ada", now=night + 2 * H)
    known.track("Signed Up")  # 23:00: deferred to 08:00
    [deferred] = known.withheld()
    assert (deferred.status, deferred.reason) == ("deferred", "quiet_hours")
    release = next(key for key in known.timers if key.startswith("release:"))

    d = fold(known, anon)
    d.now = night + 150 * M
    mark = d.mark()
    d.track("Page Viewed")
    dropped = [e for _, e in d.log[mark:] if isinstance(e, MessageWithheld)]
    assert [(e.key, e.status, e.reason) for e in dropped] == [(deferred.key, "dropped", "run_ended")]
    assert ("cancel", release) in d.effects(mark) and release not in d.timers
    d.advance("4d")
    assert [(e.run_id, e.step) for e in d.sends()] == [(anon.run_id(), "tips")]  # the visitor's series
