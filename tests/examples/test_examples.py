"""The journeys that ship in examples/journeys, driven through virtual time.

Each test feeds one person's events through the simulator (the production core on a
virtual clock) and asserts the exact messages — step, channel, template, variant — and
the exact instant each is sent, then the paths on which nothing (or less) is sent: what a
marketer expects of each flow (welcome stops at the first order, the cart reminder never
follows an order of that cart, a holdout gets nothing, a streak is counted in the
person's own days…).

The clock starts on Monday 2026-03-02 09:00 UTC. Europe is on winter time then; the US
moves to summer time on Sunday 2026-03-08, which the welcome series crosses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nudgeflow.cli import app
from nudgeflow.core.turn import unit_hash
from nudgeflow.model.iso_time import iso
from nudgeflow.runtime.replay import journey_files, load_journeys
from nudgeflow.runtime.simulation import Simulation

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "journeys"
ALL = {j.id: j for j in load_journeys([EXAMPLES])}

T0 = "2026-03-02T09:00:00.000Z"  # a Monday
T0_MS = 1772442000000
M = 60_000
H = 60 * M
D = 24 * H


def at(offset_ms: int) -> str:
    """T0 + offset, as the ISO string planned messages give."""
    return iso(T0_MS + offset_ms)


def sim(*journey_ids: str) -> Simulation:
    return Simulation([ALL[j] for j in journey_ids], start_ms=T0_MS)


def sent(s: Simulation, user: str) -> list[tuple[str, str, str, str, str | None]]:
    """(when, step, channel, template, variant) of each message to `user`, in send order."""
    return [(iso(m.at_ms), m.step, m.channel, m.template, m.variant) for m in s.messages_for(user)]


def runs(s: Simulation, user: str, journey: str) -> list[dict[str, Any]]:
    return [r for r in s.runs_for(user) if r["journey_id"] == journey]


def one_run(s: Simulation, user: str, journey: str) -> dict[str, Any]:
    found = runs(s, user, journey)
    assert len(found) == 1, found
    return found[0]


def person_where(prefix: str, keep: Callable[[str], bool]) -> str:
    """The first id `prefix-N` that `keep` accepts: holdouts and variants are fixed by a
    hash of the id, so tests pick ids by what the hash gives instead of hard-coding luck."""
    for n in range(10_000):
        candidate = f"{prefix}-{n}"
        if keep(candidate):
            return candidate
    raise AssertionError(f"no id {prefix}-N found")  # pragma: no cover


def known(s: Simulation, user: str, when: str | int, **traits: Any) -> None:
    s.identify(user, {"email": f"{user}@example.com", **traits}, at=when)


# --- every example is valid ---------------------------------------------------------------


def test_every_example_validates_with_the_cli_without_errors_or_warnings() -> None:
    files = [str(p) for p in journey_files([EXAMPLES])]
    assert len(files) == 11
    result = CliRunner().invoke(app, ["journeys", "validate", *files])
    assert result.exit_code == 0, result.output
    assert "11 files, 11 valid journeys: 0 errors, 0 warnings" in result.output
    assert set(ALL) == {
        "welcome",
        "browse-abandonment",
        "cart-abandonment",
        "post-purchase",
        "win-back",
        "push-level-completed",
        "push-saved-item",
        "push-streak-7",
        "push-inactive-3d",
        "push-near-store",
        "plan-downgrade-save",
    }


def test_every_example_validates_against_the_example_templates() -> None:
    """Each send step's template is in examples/templates, with the step's channel."""
    result = CliRunner().invoke(
        app, ["journeys", "validate", str(EXAMPLES), "--templates", str(EXAMPLES.parent / "templates")]
    )
    assert result.exit_code == 0, result.output
    assert "11 files, 11 valid journeys: 0 errors, 0 warnings" in result.output
    assert "templates were not checked" not in result.output
    # And the check bites: without one template, the journeys that send it are refused.
    from nudgeflow.content.compiled_templates import load_template_files
    from nudgeflow.model.journey_checks import Delivery, validate_files

    known = {name: source.channel for name, source in load_template_files(EXAMPLES.parent / "templates")}
    known.pop("welcome-1-hello")
    problems = validate_files([EXAMPLES], Delivery(templates=known, templates_from="examples/templates"))
    assert [(Path(p.file).name, p.path, p.message) for p in problems] == [
        ("welcome.yaml", "steps.welcome.template", "no template 'welcome-1-hello' in examples/templates")
    ]


def test_every_example_is_documented_in_the_examples_readme() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    for journey_id in ALL:
        assert f"{journey_id}.yaml" in readme, journey_id


def test_all_examples_live_together_each_person_gets_only_their_own_flows() -> None:
    s = Simulation(list(ALL.values()), start_ms=T0_MS)
    known(s, "ada", T0, timezone="Europe/Paris")
    s.track("ada", "Signed Up", at=T0)
    s.track("ada", "Order Completed", {"order_id": "o1", "cart_id": "c1", "revenue": 40}, at=at(3 * H))
    s.advance("1d")
    assert [(m.journey, m.step) for m in s.messages_for("ada")] == [
        ("welcome", "welcome"),
        ("post-purchase", "confirmation"),
    ]
    assert one_run(s, "ada", "welcome")["exit_reason"] == "exit_event:Order Completed"


def test_the_sample_events_through_nudgeflow_simulate_plan_these_messages() -> None:
    """examples/events/sample.jsonl, as examples/README.md runs it: one or two people per journey."""
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--journeys",
            str(EXAMPLES),
            "--events",
            str(EXAMPLES.parent / "events" / "sample.jsonl"),
            "--json",
            "--horizon",
            "40d",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    planned = [(m["at"][:16], m["user_id"], m["journey"], m["step"]) for m in lines if "summary" not in m]
    assert planned == [
        ("2026-03-02T09:00", "ada", "welcome", "welcome"),
        ("2026-03-02T13:10", "diane", "cart-abandonment", "reminder-1h"),
        ("2026-03-02T14:00", "ben", "welcome", "welcome"),
        ("2026-03-02T14:10", "ben", "post-purchase", "confirmation"),
        ("2026-03-02T14:20", "chloe", "browse-abandonment", "reminder"),
        ("2026-03-03T08:04", "grace", "push-level-completed", "congrats"),
        ("2026-03-03T12:10", "diane", "cart-abandonment", "objections-24h"),
        ("2026-03-03T16:00", "emma", "cart-abandonment", "reminder-1h"),
        ("2026-03-03T20:00", "emma", "post-purchase", "confirmation"),
        ("2026-03-04T05:00", "hiro", "push-saved-item", "nudge"),
        ("2026-03-04T09:00", "ada", "welcome", "tips"),
        ("2026-03-04T17:30", "ines", "push-near-store", "nearby"),
        ("2026-03-05T11:00", "jonas", "plan-downgrade-save", "ask"),
        ("2026-03-05T12:10", "diane", "cart-abandonment", "offer-72h"),
        ("2026-03-06T11:00", "jonas", "plan-downgrade-save", "offer"),
        ("2026-03-07T07:00", "grace", "push-inactive-3d", "remind"),
        ("2026-03-07T15:00", "ben", "post-purchase", "tips"),
        ("2026-03-07T23:00", "ines", "push-inactive-3d", "remind"),
        ("2026-03-08T23:30", "farid", "push-streak-7", "celebrate"),
        ("2026-03-09T09:00", "ada", "welcome", "first-order"),
        ("2026-03-12T09:00", "farid", "push-inactive-3d", "remind"),
        ("2026-03-13T20:00", "emma", "post-purchase", "review"),
        ("2026-03-14T15:00", "ben", "post-purchase", "review"),
        ("2026-04-01T10:20", "chloe", "win-back", "incentive"),
        ("2026-04-01T11:00", "kemi", "win-back", "incentive"),
        ("2026-04-01T14:10", "ben", "win-back", "incentive"),
        ("2026-04-02T08:00", "grace", "win-back", "incentive"),
        ("2026-04-02T20:00", "emma", "win-back", "incentive"),
        ("2026-04-03T17:30", "ines", "win-back", "incentive"),
        ("2026-04-07T23:30", "farid", "win-back", "incentive"),
        ("2026-04-08T10:20", "chloe", "win-back", "fewer-emails"),
        ("2026-04-08T11:00", "kemi", "win-back", "fewer-emails"),
        ("2026-04-08T14:10", "ben", "win-back", "fewer-emails"),
        ("2026-04-09T08:00", "grace", "win-back", "fewer-emails"),
        ("2026-04-09T20:00", "emma", "win-back", "fewer-emails"),
        ("2026-04-10T17:30", "ines", "win-back", "fewer-emails"),
        ("2026-04-14T23:30", "farid", "win-back", "fewer-emails"),
    ]
    summary = lines[-1]["summary"]["journeys"]
    # dmitri left a cart too, but is in the holdout; emma ordered hers after the first reminder.
    assert (summary["cart-abandonment"]["entered"], summary["cart-abandonment"]["holdout"]) == (3, 1)
    assert summary["cart-abandonment"]["exited"] == {"exit_event:Order Completed": 1}
    assert summary["welcome"]["exited"] == {"exit_event:Order Completed": 1}  # ben ordered at once
    assert all(row["entered"] > 0 for row in summary.values())


# --- welcome ------------------------------------------------------------------------------


def test_welcome_sends_three_emails_the_last_on_a_weekday_morning_in_the_persons_timezone() -> None:
    s = sim("welcome")
    # 09:00 in New York on Monday 2 March (EST, UTC-5).
    known(s, "ada", "2026-03-02T14:00:00Z", timezone="America/New_York")
    s.track("ada", "Signed Up", {"method": "email"}, at="2026-03-02T14:00:00Z")
    s.advance("14d")
    assert sent(s, "ada") == [
        ("2026-03-02T14:00:00.000Z", "welcome", "email", "welcome-1-hello", None),
        ("2026-03-04T14:00:00.000Z", "tips", "email", "welcome-2-how-it-works", None),
        # Saturday 7 March 09:00 + the next weekday 10:00: Monday 9 March, after the US
        # moved to summer time (EDT, UTC-4): 10:00 local is 14:00 UTC.
        ("2026-03-09T14:00:00.000Z", "first-order", "email", "welcome-3-first-order-offer", None),
    ]
    run = one_run(s, "ada", "welcome")
    assert (run["status"], run["exit_reason"], run["converted_at_ms"]) == ("done", "completed", None)


def test_welcome_third_email_on_a_weekday_at_ten_when_the_three_days_end_on_a_weekday() -> None:
    s = sim("welcome")
    known(s, "bo", "2026-03-05T08:00:00Z", timezone="Europe/Paris")  # a Thursday, 09:00 in Paris
    s.track("bo", "Signed Up", at="2026-03-05T08:00:00Z")
    s.advance("14d")
    assert [(when, step) for when, step, *_ in sent(s, "bo")] == [
        ("2026-03-05T08:00:00.000Z", "welcome"),
        ("2026-03-07T08:00:00.000Z", "tips"),  # Saturday: a duration wait knows no weekdays
        ("2026-03-10T09:00:00.000Z", "first-order"),  # Tuesday 09:00 Paris + wait -> 10:00 Paris
    ]


def test_welcome_stops_at_the_first_order_and_counts_the_conversion() -> None:
    s = sim("welcome")
    known(s, "cy", T0)
    s.track("cy", "Signed Up", at=T0)
    s.track("cy", "Order Completed", {"order_id": "o1", "revenue": 58.5}, at=at(2 * D + 5 * H))
    s.advance("14d")
    assert [(when, step) for when, step, *_ in sent(s, "cy")] == [(at(0), "welcome"), (at(2 * D), "tips")]
    run = one_run(s, "cy", "welcome")
    assert (run["status"], run["exit_reason"]) == ("exited", "exit_event:Order Completed")
    assert (run["converted_at_ms"], run["revenue"]) == (T0_MS + 2 * D + 5 * H, 58.5)
    assert s.timers_of("cy") == {}


def test_welcome_is_once_ever() -> None:
    s = sim("welcome")
    known(s, "dee", T0)
    s.track("dee", "Signed Up", at=T0)
    s.advance("30d")
    s.track("dee", "Signed Up", at=at(30 * D))
    s.advance("14d")
    assert len(s.messages_for("dee")) == 3
    assert len(runs(s, "dee", "welcome")) == 1


# --- browse abandonment -------------------------------------------------------------------


def _view(s: Simulation, user: str, product: str, when: int, **fields: Any) -> None:
    s.track(
        user,
        "Product Viewed",
        {"product_id": product, "name": f"Product {product}", "price": 20},
        at=at(when),
        **fields,
    )


def test_browse_abandonment_the_same_product_twice_then_four_hours_without_adding_it() -> None:
    s = sim("browse-abandonment")
    known(s, "eve", T0)
    _view(s, "eve", "p1", 0)
    _view(s, "eve", "p2", 10 * M)
    _view(s, "eve", "p1", 30 * M)  # the second view of p1 starts the 4 hours
    s.advance("2d")
    assert sent(s, "eve") == [(at(4 * H + 30 * M), "reminder", "email", "browse-still-interested", None)]


def test_browse_abandonment_a_later_view_restarts_the_four_hours() -> None:
    s = sim("browse-abandonment")
    known(s, "eve", T0)
    for minutes in (0, 20, 3 * 60):
        _view(s, "eve", "p1", minutes * M)
    s.advance("2d")
    assert [when for when, *_ in sent(s, "eve")] == [at(7 * H)]


@pytest.mark.parametrize(
    "what, events",
    [
        ("one view of each of two products", [("view", "p1", 0), ("view", "p2", 30 * M)]),
        ("the product added within 4 h", [("view", "p1", 0), ("view", "p1", 30 * M), ("add", "p1", 3 * H)]),
        ("two views 8 days apart", [("view", "p1", 0), ("view", "p1", 8 * D)]),
    ],
)
def test_browse_abandonment_sends_nothing(what: str, events: list[tuple[str, str, int]]) -> None:
    s = sim("browse-abandonment")
    known(s, "fay", T0)
    for kind, product, when in events:
        if kind == "view":
            _view(s, "fay", product, when)
        else:
            s.track("fay", "Product Added", {"product_id": product, "cart_id": "c1"}, at=at(when))
    s.advance("10d")
    assert sent(s, "fay") == [], what


def test_browse_abandonment_adding_another_product_does_not_cancel_it() -> None:
    s = sim("browse-abandonment")
    known(s, "gus", T0)
    _view(s, "gus", "p1", 0)
    _view(s, "gus", "p1", 5 * M)
    s.track("gus", "Product Added", {"product_id": "p9", "cart_id": "c1"}, at=at(1 * H))
    s.advance("1d")
    assert [when for when, *_ in sent(s, "gus")] == [at(4 * H + 5 * M)]


def test_browse_abandonment_once_a_week_and_only_for_people_with_an_email() -> None:
    s = sim("browse-abandonment")
    known(s, "hal", T0)
    _view(s, "hal", "p1", 0)
    _view(s, "hal", "p1", 1 * M)
    _view(s, "hal", "p2", 2 * D)
    _view(s, "hal", "p2", 2 * D + 1 * M)  # within the week: no second email
    _view(s, "hal", "p3", 8 * D)
    _view(s, "hal", "p3", 8 * D + 1 * M)  # a week later: another
    s.advance("1d")
    assert [when for when, *_ in sent(s, "hal")] == [at(4 * H + 1 * M), at(8 * D + 4 * H + 1 * M)]

    # An anonymous visitor cannot be emailed: no run at all.
    _view(s, None, "p1", 9 * D, anonymous_id="anon-1")  # type: ignore[arg-type]
    _view(s, None, "p1", 9 * D + 1 * M, anonymous_id="anon-1")  # type: ignore[arg-type]
    s.advance("1d")
    assert s.messages_for("anon-1") == [] and s.runs_for("anon-1") == []


# --- cart abandonment ---------------------------------------------------------------------

CART = "cart-abandonment"


def _in_holdout(person: str) -> bool:
    return unit_hash("holdout", CART, person) < ALL[CART].holdout


def _add(s: Simulation, user: str | None, cart: str, product: str, when: int, **fields: Any) -> None:
    s.track(
        user,
        "Product Added",
        {"cart_id": cart, "product_id": product, "price": 30, "quantity": 1},
        at=at(when),
        **fields,
    )


def _order(s: Simulation, user: str, cart: str, when: int, revenue: float = 60.0) -> None:
    s.track(user, "Order Completed", {"order_id": f"o-{cart}", "cart_id": cart, "revenue": revenue}, at=at(when))


def test_cart_abandonment_one_hour_one_day_three_days_after_the_last_item_added() -> None:
    carol = person_where("carol", lambda p: not _in_holdout(p) and unit_hash("variant", CART, "offer-72h", p) < 0.5)
    s = sim(CART)
    known(s, carol, T0)
    _add(s, carol, "c1", "p1", 0)
    _add(s, carol, "c1", "p2", 10 * M)  # the hour counts from the last item
    s.advance("5d")
    last = 10 * M
    assert sent(s, carol) == [
        (at(last + 1 * H), "reminder-1h", "email", "cart-1h-your-items", None),
        (at(last + 24 * H), "objections-24h", "email", "cart-24h-questions-answered", None),
        (at(last + 72 * H), "offer-72h", "email", "cart-72h-offer-10", "ten-percent"),
    ]
    assert one_run(s, carol, CART)["exit_reason"] == "completed"


def test_cart_abandonment_offer_variants_are_fixed_per_person_and_both_are_used() -> None:
    s = sim(CART)
    people = [f"shopper-{n}" for n in range(60) if not _in_holdout(f"shopper-{n}")]
    for person in people:
        known(s, person, T0)
        _add(s, person, "c1", "p1", 0)
    s.advance("4d")
    offers = {m.profile: (m.variant, m.template) for m in s.messages if m.step == "offer-72h"}
    assert set(offers) == set(people)
    for person, (variant, template) in offers.items():
        expected = "ten-percent" if unit_hash("variant", CART, "offer-72h", person) < 0.5 else "free-shipping"
        assert variant == expected
        assert template == {"ten-percent": "cart-72h-offer-10", "free-shipping": "cart-72h-offer-shipping"}[variant]
    assert {v for v, _ in offers.values()} == {"ten-percent", "free-shipping"}


def test_cart_abandonment_an_order_of_that_cart_within_the_hour_sends_nothing() -> None:
    dan = person_where("dan", lambda p: not _in_holdout(p))
    s = sim(CART)
    known(s, dan, T0)
    _add(s, dan, "c1", "p1", 0)
    _order(s, dan, "c1", 40 * M)
    s.advance("5d")
    assert sent(s, dan) == [] and runs(s, dan, CART) == []


def test_cart_abandonment_exits_at_once_on_the_order_of_that_cart() -> None:
    erin = person_where("erin", lambda p: not _in_holdout(p))
    s = sim(CART)
    known(s, erin, T0)
    _add(s, erin, "c1", "p1", 0)
    s.advance("3h")
    _order(s, erin, "c1", 5 * H, revenue=89.9)
    s.advance("5d")
    assert [step for _, step, *_ in sent(s, erin)] == ["reminder-1h"]
    run = one_run(s, erin, CART)
    assert (run["status"], run["exit_reason"], run["ended_at_ms"]) == (
        "exited",
        "exit_event:Order Completed",
        T0_MS + 5 * H,
    )
    assert (run["converted_at_ms"], run["revenue"]) == (T0_MS + 5 * H, 89.9)
    assert s.timers_of(erin) == {}


def test_cart_abandonment_an_order_of_another_cart_does_not_end_the_run() -> None:
    finn = person_where("finn", lambda p: not _in_holdout(p))
    s = sim(CART)
    known(s, finn, T0)
    _add(s, finn, "c1", "p1", 0)
    _order(s, finn, "c2", 30 * M)  # another cart, ordered within the hour: c1 is still abandoned
    s.advance("2h")
    _order(s, finn, "c3", 3 * H)  # and after the reminder
    s.advance("5d")
    assert [(when, step) for when, step, *_ in sent(s, finn)] == [
        (at(1 * H), "reminder-1h"),
        (at(24 * H), "objections-24h"),
        (at(72 * H), "offer-72h"),
    ]
    run = one_run(s, finn, CART)
    assert run["exit_reason"] == "completed"
    assert run["converted_at_ms"] == T0_MS + 3 * H  # the goal is any order within 7 days


def test_cart_abandonment_holdout_people_enter_and_get_nothing() -> None:
    held = [f"held-{n}" for n in range(200) if _in_holdout(f"held-{n}")][:3]
    assert held
    s = sim(CART)
    for person in held:
        known(s, person, T0)
        _add(s, person, "c1", "p1", 0)
    _order(s, held[0], "c1", 2 * D)
    s.advance("5d")
    assert s.messages == []
    rows = [one_run(s, p, CART) for p in held]
    # Held-out runs walk the steps like treated ones, sending nothing: the one who ordered
    # exits on the order, the others complete after the 72 h step.
    assert [(r["holdout"], r["status"], r["exit_reason"]) for r in rows] == [
        (1, "exited", "exit_event:Order Completed")
    ] + [(1, "done", "completed")] * (len(held) - 1)
    # The holdout converts like anyone: the baseline uplift is measured against.
    assert rows[0]["converted_at_ms"] == T0_MS + 2 * D
    summary = s.summary()["journeys"][CART]
    assert (summary["entered"], summary["holdout"], summary["converted"], summary["messages"]) == (
        len(held),
        len(held),
        1,
        {},
    )


def test_cart_abandonment_a_holdout_person_enters_as_often_as_one_who_gets_the_emails() -> None:
    held = person_where("held", _in_holdout)
    sent_to = person_where("treated", lambda p: not _in_holdout(p))
    s = sim(CART)
    for person in (held, sent_to):
        known(s, person, T0)
        for k in range(6):  # a new cart every 12 hours, never ordered
            _add(s, person, f"c{k}", "p1", k * 12 * H)
    _order(s, held, "c-other", 3 * D)
    _order(s, sent_to, "c-other", 3 * D)
    s.advance("10d")
    assert len(runs(s, sent_to, CART)) == 1  # its run holds the journey for 72 hours
    assert len(runs(s, held, CART)) == len(runs(s, sent_to, CART))
    converted = [r for r in runs(s, held, CART) if r["converted_at_ms"] is not None]
    assert len(converted) == 1  # one order, one conversion


def test_cart_abandonment_only_people_with_an_email_and_an_anonymous_cart_follows_the_sign_up() -> None:
    gil = person_where("gil", lambda p: not _in_holdout(p))
    s = sim(CART)
    _add(s, None, "c1", "p1", 0, anonymous_id="anon-only")  # never known: no run
    _add(s, None, "c2", "p1", 0, anonymous_id="anon-gil")
    # Signs up 20 minutes later on the same device: the identify carries both ids.
    s.identify(gil, {"email": f"{gil}@example.com"}, at=at(20 * M), anonymous_id="anon-gil")
    s.advance("2h")
    assert s.runs_for("anon-only") == []
    assert sent(s, gil) == [(at(1 * H), "reminder-1h", "email", "cart-1h-your-items", None)]


# --- post-purchase ------------------------------------------------------------------------

POST = "post-purchase"


def _delivered(s: Simulation, user: str, order: str, when: int) -> None:
    s.track(user, "Order Delivered", {"order_id": order}, at=at(when))


def test_post_purchase_confirmation_tips_two_days_after_delivery_then_a_review_request() -> None:
    s = sim(POST)
    s.track("hugo", "Order Completed", {"order_id": "o1", "revenue": 120}, at=T0)
    _delivered(s, "hugo", "o1", 3 * D + 2 * H)
    s.advance("20d")
    assert sent(s, "hugo") == [
        (at(0), "confirmation", "email", "order-confirmation-cross-sells", None),
        (at(5 * D + 2 * H), "tips", "email", "order-usage-tips", None),
        (at(12 * D + 2 * H), "review", "email", "order-review-request", None),
    ]
    assert [m.marketing for m in s.messages_for("hugo")] == [False, True, True]  # the confirmation is transactional


def test_post_purchase_review_after_ten_days_when_that_order_is_never_delivered() -> None:
    s = sim(POST)
    s.track("ivy", "Order Completed", {"order_id": "o1", "revenue": 20}, at=T0)
    _delivered(s, "ivy", "o-other", 2 * D)  # another order's delivery does not count
    s.advance("20d")
    assert [(when, step) for when, step, *_ in sent(s, "ivy")] == [(at(0), "confirmation"), (at(10 * D), "review")]


def test_post_purchase_each_order_has_its_own_run_matched_on_its_order_id() -> None:
    s = sim(POST)
    s.track("jo", "Order Completed", {"order_id": "o1", "revenue": 20}, at=T0)
    s.track("jo", "Order Completed", {"order_id": "o2", "revenue": 30}, at=at(1 * D))
    _delivered(s, "jo", "o2", 2 * D)
    s.advance("20d")
    assert [(when, step) for when, step, *_ in sent(s, "jo")] == [
        (at(0), "confirmation"),
        (at(1 * D), "confirmation"),
        (at(4 * D), "tips"),  # o2: delivered on day 2, tips on day 4
        (at(10 * D), "review"),  # o1: never delivered, review after the 10-day timeout
        (at(11 * D), "review"),  # o2: a week after the tips
    ]
    assert len(runs(s, "jo", POST)) == 2


# --- win-back -----------------------------------------------------------------------------

WIN = "win-back"


def test_win_back_after_30_silent_days_then_the_fewer_emails_offer_a_week_later() -> None:
    s = sim(WIN)
    known(s, "kai", T0)
    _view(s, "kai", "p1", 0)
    _view(s, "kai", "p2", 2 * D)  # the 30 days count from the last activity
    s.advance("45d")
    assert sent(s, "kai") == [
        (at(32 * D), "incentive", "email", "winback-we-miss-you-15-off", None),
        (at(39 * D), "fewer-emails", "email", "winback-fewer-emails", None),
    ]


@pytest.mark.parametrize("comeback", ["Application Opened", "Product Viewed"])
def test_win_back_no_fewer_emails_offer_for_someone_who_came_back(comeback: str) -> None:
    s = sim(WIN)
    known(s, "lea", T0)
    s.track("lea", "Application Opened", at=T0)
    s.advance("33d")
    s.track("lea", comeback, {"product_id": "p1"}, at=at(33 * D))
    s.advance("10d")
    assert [(when, step) for when, step, *_ in sent(s, "lea")] == [(at(30 * D), "incentive")]
    assert one_run(s, "lea", WIN)["exit_reason"] == "completed"


def test_win_back_an_order_ends_it_and_converts() -> None:
    s = sim(WIN)
    known(s, "max", T0)
    _view(s, "max", "p1", 0)
    s.advance("31d")
    s.track("max", "Order Completed", {"order_id": "o1", "revenue": 42}, at=at(31 * D))
    s.advance("10d")
    assert [step for _, step, *_ in sent(s, "max")] == ["incentive"]
    run = one_run(s, "max", WIN)
    assert (run["exit_reason"], run["converted_at_ms"], run["revenue"]) == (
        "exit_event:Order Completed",
        T0_MS + 31 * D,
        42.0,
    )


def test_win_back_activity_within_the_30_days_postpones_it_and_other_events_do_not() -> None:
    s = sim(WIN)
    known(s, "ned", T0)
    s.track("ned", "Application Opened", at=T0)
    s.track("ned", "Application Opened", at=at(20 * D))
    s.track("ned", "Newsletter Link Clicked", at=at(40 * D))  # not an activity the journey counts
    s.advance("60d")
    assert [(when, step) for when, step, *_ in sent(s, "ned")] == [
        (at(50 * D), "incentive"),
        (at(57 * D), "fewer-emails"),
    ]


# --- push: level completed ----------------------------------------------------------------


def test_level_completed_push_at_once_for_a_fresh_event_and_once_a_day() -> None:
    s = sim("push-level-completed")
    s.track("olga", "Level Completed", {"level": 3}, at=T0)
    s.track("olga", "Level Completed", {"level": 4}, at=at(2 * H))  # same day: no second push
    s.track("olga", "Level Completed", {"level": 5}, at=at(1 * D + 1 * H))
    assert sent(s, "olga") == [
        (at(0), "congrats", "push", "push-level-up", None),
        (at(1 * D + 1 * H), "congrats", "push", "push-level-up", None),
    ]


def test_level_completed_a_stale_event_from_an_offline_queue_sends_nothing() -> None:
    s = sim("push-level-completed")
    s.advance_to(at(1 * H))
    # Happened 30 minutes ago, arrives now (max_lateness is 10 minutes): too late to congratulate.
    s.track("pia", "Level Completed", {"level": 2}, at=at(30 * M))
    # Happened 5 minutes ago: still fresh.
    s.track("quin", "Level Completed", {"level": 2}, at=at(55 * M))
    assert sent(s, "pia") == []
    # Sent when processed, with the clock at 10:00.
    assert sent(s, "quin") == [(at(1 * H), "congrats", "push", "push-level-up", None)]


def test_level_completed_needs_a_level() -> None:
    s = sim("push-level-completed")
    s.track("rui", "Level Completed", {"level": 0}, at=T0)
    s.track("rui", "Level Completed", {}, at=at(1 * M))
    assert sent(s, "rui") == []


# --- push: saved item ---------------------------------------------------------------------


def test_saved_item_push_two_hours_after_saving_it_unless_an_order_came() -> None:
    s = sim("push-saved-item")
    s.track("sam", "Product Added to Wishlist", {"product_id": "p1"}, at=T0)
    s.track("tia", "Product Added to Wishlist", {"product_id": "p1"}, at=T0)
    s.track("tia", "Order Completed", {"order_id": "o1", "revenue": 10}, at=at(90 * M))
    s.advance("1d")
    assert sent(s, "sam") == [(at(2 * H), "nudge", "push", "push-saved-item-still-here", None)]
    assert sent(s, "tia") == []


def test_saved_item_the_window_follows_the_latest_save_and_a_stale_save_is_ignored() -> None:
    s = sim("push-saved-item")
    s.track("uma", "Product Added to Wishlist", {"product_id": "p1"}, at=T0)
    s.track("uma", "Product Added to Wishlist", {"product_id": "p2"}, at=at(1 * H))
    s.advance("1d")
    assert [when for when, *_ in sent(s, "uma")] == [at(3 * H)]
    # Saved 2 hours ago, arriving only now (max_lateness is 1 hour): no push.
    s.track("vic", "Product Added to Wishlist", {"product_id": "p1"}, at=at(1 * D - 2 * H))
    s.advance("1d")
    assert sent(s, "vic") == []


# --- push: 7-day streak -------------------------------------------------------------------


def test_streak_push_on_the_seventh_local_day_in_a_row() -> None:
    s = sim("push-streak-7")
    s.identify("wen", {"timezone": "Asia/Tokyo"}, at=T0)
    # Every morning at 08:30 in Tokyo (23:30 UTC the day before), plus a second open the
    # same evening, which does not count twice.
    for day in range(7):
        s.track("wen", "Application Opened", at=at(day * D + 14 * H + 30 * M))  # 08:30 JST next day
        s.track("wen", "Application Opened", at=at(day * D + 23 * H))  # 17:00 JST that day
    assert sent(s, "wen") == [(at(6 * D + 14 * H + 30 * M), "celebrate", "push", "push-streak-7-days", None)]
    s.track("wen", "Application Opened", at=at(7 * D + 14 * H))  # the 8th day: no repeat
    assert len(s.messages_for("wen")) == 1


def test_streak_days_are_the_persons_own_days() -> None:
    # Opens at 14:00 UTC and 16:00 UTC on alternate days: seven days in a row in UTC, but
    # in Tokyo (UTC+9) 14:00 is 23:00 and 16:00 is 01:00 the next day, so days repeat and skip.
    times = [day * D + (5 if day % 2 == 0 else 7) * H for day in range(7)]
    outcomes = {}
    for tz in ("UTC", "Asia/Tokyo"):
        s = sim("push-streak-7")
        s.identify("xi", {"timezone": tz}, at=T0)
        for when in times:
            s.track("xi", "Application Opened", at=at(when))
        outcomes[tz] = sent(s, "xi")
    assert outcomes["UTC"] == [(at(times[-1]), "celebrate", "push", "push-streak-7-days", None)]
    assert outcomes["Asia/Tokyo"] == []


def test_a_broken_streak_starts_again() -> None:
    s = sim("push-streak-7")
    s.identify("yan", {"timezone": "Europe/Berlin"}, at=T0)
    days = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13]  # day 6 missed: the streak restarts on day 7
    for day in days:
        s.track("yan", "Application Opened", at=at(day * D))
    assert [when for when, *_ in sent(s, "yan")] == [at(13 * D)]


# --- push: 3 days inactive ----------------------------------------------------------------

IDLE = "push-inactive-3d"


def test_inactive_reminder_at_18_local_after_three_days_without_opening_the_app() -> None:
    s = sim(IDLE)
    s.identify("zoe", {"timezone": "America/Los_Angeles"}, at=T0)
    s.track("zoe", "Application Opened", at=T0)  # 01:00 in Los Angeles (PST)
    s.advance("5d")
    # Silent since Monday 01:00 PST: Thursday 01:00 PST, then 18:00 PST that day.
    assert sent(s, "zoe") == [("2026-03-06T02:00:00.000Z", "remind", "push", "push-come-back", None)]


def test_inactive_reminder_after_18_waits_for_the_next_evening_and_opening_postpones_it() -> None:
    s = sim(IDLE)
    s.identify("abe", {"timezone": "Europe/London"}, at=T0)
    s.track("abe", "Application Opened", at=at(10 * H))  # 19:00 London (GMT)
    s.track("abe", "Application Opened", at=at(1 * D + 10 * H))  # the next day: the 3 days restart
    s.advance("6d")
    # Silent from Tuesday 19:00: Friday 19:00 is past 18:00, so Saturday 18:00.
    assert [when for when, *_ in sent(s, "abe")] == ["2026-03-07T18:00:00.000Z"]


def test_inactive_reminder_opening_the_app_before_the_evening_cancels_it() -> None:
    s = sim(IDLE)
    s.identify("bea", {"timezone": "UTC"}, at=T0)
    s.track("bea", "Application Opened", at=T0)
    s.advance(3 * D + 1 * H)  # the run waits for 18:00
    s.track("bea", "Application Opened", at=at(3 * D + 2 * H))
    s.advance("2d")
    assert sent(s, "bea") == []
    assert one_run(s, "bea", IDLE)["exit_reason"] == "exit_event:Application Opened"


# --- push: near a store -------------------------------------------------------------------

NEAR = "push-near-store"
FLAGSHIP = (40.7411, -73.9897)
BROOKLYN = (40.7033, -73.9881)


def _north_of(place: tuple[float, float], metres: float) -> tuple[float, float]:
    return place[0] + metres / 111_195, place[1]


def _located(s: Simulation, user: str, where: tuple[float, float], when: int, *, in_context: bool = True) -> None:
    lat, lon = where
    if in_context:
        s.track(user, "Application Opened", at=at(when), context={"location": {"latitude": lat, "longitude": lon}})
    else:
        s.track(user, "Location Updated", {"latitude": lat, "longitude": lon}, at=at(when))


def test_near_store_push_inside_the_radius_with_the_place_recorded() -> None:
    s = sim(NEAR)
    _located(s, "cal", _north_of(FLAGSHIP, 150), 0)
    assert sent(s, "cal") == [(at(0), "nearby", "push", "push-store-nearby", None)]
    run = next(iter(s.state_of("cal").runs.values()))  # type: ignore[union-attr]
    assert run.trigger["place"]["name"] == "Flagship Store"
    assert 145 < run.trigger["place"]["distance_m"] < 155

    _located(s, "dom", _north_of(BROOKLYN, 20), 0, in_context=False)  # properties latitude/longitude
    assert [step for _, step, *_ in sent(s, "dom")] == ["nearby"]
    assert next(iter(s.state_of("dom").runs.values())).trigger["place"]["name"] == "Brooklyn Store"  # type: ignore[union-attr]


def test_near_store_nothing_outside_the_radius_or_for_a_stale_location() -> None:
    s = sim(NEAR)
    _located(s, "eli", _north_of(FLAGSHIP, 260), 0)
    _located(s, "eli", (48.8589, 2.3622), 1 * M)  # Paris
    s.advance_to(at(1 * H))
    _located(s, "fox", _north_of(FLAGSHIP, 10), 30 * M)  # reported 30 min late (max_lateness 15m)
    assert sent(s, "eli") == [] and sent(s, "fox") == []


def test_near_store_at_most_once_a_day() -> None:
    s = sim(NEAR)
    away = _north_of(FLAGSHIP, 3000)
    _located(s, "gia", _north_of(FLAGSHIP, 50), 0)  # walks in: a push
    _located(s, "gia", away, 3 * H)
    _located(s, "gia", _north_of(BROOKLYN, 50), 5 * H)  # walks into the other store the same day: none
    _located(s, "gia", away, 23 * H)
    _located(s, "gia", _north_of(FLAGSHIP, 50), 1 * D + 1 * M)  # the next day: a push
    assert [when for when, *_ in sent(s, "gia")] == [at(0), at(1 * D + 1 * M)]


def test_near_store_fires_on_the_way_in_not_on_every_report_inside() -> None:
    s = sim(NEAR)
    for minutes in range(0, 3 * 24 * 60, 90):  # stays in the store's block for three days
        _located(s, "hal", _north_of(FLAGSHIP, 40 + minutes % 50), minutes * M)
    assert [when for when, *_ in sent(s, "hal")] == [at(0)]


# --- plan downgrade save flow -------------------------------------------------------------

SAVE = "plan-downgrade-save"


def test_downgrade_push_at_once_then_the_offer_email_a_day_later() -> None:
    s = sim(SAVE)
    known(s, "hank", T0, plan="pro")
    s.identify("hank", {"plan": "free"}, at=at(5 * D))
    s.advance("5d")
    assert sent(s, "hank") == [
        (at(5 * D), "ask", "push", "push-sorry-to-see-you-go", None),
        (at(6 * D), "offer", "email", "save-offer-2-months-half-price", None),
    ]


def test_downgrade_no_email_for_someone_who_upgraded_again() -> None:
    s = sim(SAVE)
    known(s, "ira", T0, plan="business")
    s.identify("ira", {"plan": "cancelled"}, at=at(1 * D))
    s.identify("ira", {"plan": "business"}, at=at(1 * D + 3 * H))  # changed their mind
    s.advance("5d")
    assert [(when, step) for when, step, *_ in sent(s, "ira")] == [(at(1 * D), "ask")]
    assert one_run(s, "ira", SAVE)["exit_reason"] == "completed"


def test_downgrade_an_upgrade_event_is_the_goal_and_ends_the_run() -> None:
    s = sim(SAVE)
    known(s, "jan", T0, plan="pro")
    s.identify("jan", {"plan": "free"}, at=at(1 * D))
    s.track("jan", "Subscription Upgraded", {"plan": "pro", "revenue": 29}, at=at(1 * D + 2 * H))
    s.advance("5d")
    assert [step for _, step, *_ in sent(s, "jan")] == ["ask"]
    run = one_run(s, "jan", SAVE)
    assert (run["exit_reason"], run["revenue"]) == ("converted", 29.0)


@pytest.mark.parametrize(
    "before, after",
    [(None, "free"), ("free", "cancelled"), ("pro", "business"), ("pro", "pro")],
)
def test_downgrade_other_plan_changes_send_nothing(before: str | None, after: str) -> None:
    s = sim(SAVE)
    traits = {"plan": before} if before is not None else {}
    known(s, "kit", T0, **traits)
    s.identify("kit", {"plan": after}, at=at(1 * D))
    s.advance("3d")
    assert sent(s, "kit") == []


def test_downgrade_once_a_month() -> None:
    s = sim(SAVE)
    known(s, "lou", T0, plan="pro")
    # Down on day 1, up again after 12 hours, down again on day 10 (within the month: no
    # second flow), up on day 20, down on day 40 (a month later: the flow again).
    for when, plan in [(1 * D, "free"), (1 * D + 12 * H, "pro"), (10 * D, "free"), (20 * D, "pro"), (40 * D, "free")]:
        s.identify("lou", {"plan": plan}, at=at(when))
    s.advance("5d")
    assert [(when, step) for when, step, *_ in sent(s, "lou")] == [
        (at(1 * D), "ask"),
        (at(40 * D), "ask"),
        (at(41 * D), "offer"),
    ]


@pytest.mark.parametrize(
    "template, named, unnamed",
    [
        ("push-level-up", "Level up, Ada!", "Level up!"),
        ("push-sorry-to-see-you-go", "Sorry to see you go, Ada", "Sorry to see you go"),
        ("push-come-back", "We saved your spot, Ada", "We saved your spot"),
    ],
)
def test_push_titles_read_well_with_and_without_a_first_name(template: str, named: str, unnamed: str) -> None:
    import yaml

    from nudgeflow.content.templates import render_source

    source = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "examples" / "templates" / f"{template}.yaml").read_text()
    )
    context = {"event": {"properties": {"level": 3}}, "trigger": {"properties": {}}}
    assert render_source(source, {**context, "profile": {"first_name": "Ada"}}).title == named  # type: ignore[union-attr]
    assert render_source(source, {**context, "profile": {}}).title == unnamed  # type: ignore[union-attr]
