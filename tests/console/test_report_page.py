"""A journey's report page over HTTP: totals, steps, channels and experiment arms equal the
admin API's report of the same days; the winner call, the sample-ratio warning and the
guardrails in words; another workspace's journey is not found."""

from __future__ import annotations

from typing import Any

import pytest

from nudgeflow.core.clock import to_ms
from nudgeflow.store import rollups
from tests.console.ovset_support import JOURNEY, inside, metric, publish, row_html, text_of, write_rollups


@pytest.fixture(scope="module")
def seeded(console_app: Any) -> int:
    """The journey published and its rollups written, once for the module; its day."""
    ws, jid = console_app.workspace_id, str(JOURNEY["id"])
    with console_app.admin() as admin:
        publish(admin, JOURNEY)
    today = rollups.day_of(to_ms(console_app.clock.now()))

    def at(day: int, step: str = "", variant: str = "", channel: str = "") -> rollups.Dims:
        return (ws, jid, 1, step, variant, channel, day)

    write_rollups(
        console_app.state,
        [
            (
                at(today),
                {
                    "entered": 1500,
                    "held_out": 160,
                    "recipients": 1500,
                    "conversions": 90,
                    "revenue": 900.0,
                    "revenue_sq": 9000.0,
                    "conversions_held_out": 6,
                    "revenue_held_out": 60.0,
                    "revenue_sq_held_out": 600.0,
                },
            ),
            (
                at(today, "offer", "a", "email"),
                {"sent": 1000, "delivered": 990, "opens": 300, "clicks": 50, "attributed_conversions": 40},
            ),
            (
                at(today, "offer", "b", "email"),
                {"sent": 500, "delivered": 480, "opens": 100, "clicks": 20, "attributed_conversions": 10},
            ),
            (at(today - 2, "nudge", "", "push"), {"sent": 700, "delivered": 650, "opens": 70, "unsubscribes": 3}),
            (at(today - 10, "nudge", "", "push"), {"sent": 50, "delivered": 50}),
            # The arms: 1,000 runs against 500 on equal weights, a sample ratio no split makes.
            # And b's unsubscribes far above a's: a guardrail breach.
            (
                at(today, "offer", "a"),
                {"arm_runs": 1000, "arm_conversions": 60, "arm_revenue": 600.0, "arm_unsubscribes": 2},
            ),
            (
                at(today, "offer", "b"),
                {"arm_runs": 500, "arm_conversions": 30, "arm_revenue": 300.0, "arm_unsubscribes": 60},
            ),
        ],
    )
    return today


def test_the_report_page_shows_what_the_api_reports(seeded: int, signed_in: Any) -> None:
    client = signed_in("viewer")
    response = client.get(f"/journeys/{JOURNEY['id']}/report")
    assert response.status_code == 200, response.text[:300]
    page = response.text
    api = client.get(f"/api/reports/journeys/{JOURNEY['id']}", params={"by": "step"}).json()
    totals = inside(page, "report-totals")
    for name in ("entered", "held_out", "sent", "delivered", "conversions", "revenue"):
        assert metric(totals, name) == api["totals"][name], name
    assert (api["totals"]["sent"], api["totals"]["entered"]) == (2250, 1500)
    for row in api["rows"]:
        if row["step"]:
            html_row = row_html(page, "data-step-id", row["step"])
            assert metric(html_row, "sent") == row["sent"] and metric(html_row, "delivered") == row["delivered"]
            assert metric(html_row, "attributed_conversions") == row["attributed_conversions"]
    by_channel = client.get(f"/api/reports/journeys/{JOURNEY['id']}", params={"by": "channel"}).json()["rows"]
    for row in by_channel:
        if row["channel"]:
            assert metric(row_html(page, "data-channel", row["channel"]), "sent") == row["sent"]
    assert 'data-testid="report-lift"' in page
    # The experiment: arms as the API counts them, its call and its warning in its words.
    (experiment,) = api["experiments"]
    section = inside(page, "experiment")

    def pct(value: float) -> str:
        return f"{value * 100:.1f} %"

    for arm in experiment["arms"]:
        row = row_html(section, "data-arm", arm["name"])
        assert metric(row, "runs") == arm["runs"]
        # Its rate with its interval, and against the control its always-valid interval.
        rate = arm["primary"]
        assert f"{pct(rate['value'])} [{pct(rate['low'])}, {pct(rate['high'])}]" in text_of(row), arm["name"]
        versus = arm["versus_control"]
        if arm["name"] != experiment["control"]:
            assert versus is not None and versus["low"] < versus["difference"] < versus["high"]
            shown = f"{pct(versus['difference'])} [{pct(versus['low'])}, {pct(versus['high'])}]"
            assert shown in text_of(row), arm["name"]
    assert experiment["sample_ratio"]["mismatch"]
    warning = text_of(inside(section, "srm-warning"))
    assert experiment["sample_ratio"]["reason"] in warning
    call = text_of(inside(section, "winner-call"))
    assert call.lower() == text_of(experiment["winner"]["reason"]).lower() and call.lower().startswith("no winner yet")
    (breach,) = experiment["guardrail_breaches"]
    assert breach["arm"] == "b" and text_of(inside(section, "guardrail-breach")) == f"Guardrail: {breach['reason']}"
    assert page.count("<polyline") >= 2


def test_the_report_over_the_last_days_leaves_older_ones_out(seeded: int, signed_in: Any) -> None:
    client = signed_in("viewer")
    every_day = client.get(f"/journeys/{JOURNEY['id']}/report").text
    last_week = client.get(f"/journeys/{JOURNEY['id']}/report", params={"days": 7}).text
    # Two days ago is within the last 7, ten days ago is not.
    assert metric(row_html(every_day, "data-step-id", "nudge"), "sent") == 750
    assert metric(row_html(last_week, "data-step-id", "nudge"), "sent") == 700
    assert client.get(f"/journeys/{JOURNEY['id']}/report", params={"days": 5}).status_code == 400


def test_a_journey_of_another_workspace_is_not_found(seeded: int, console_app: Any, signed_in: Any) -> None:
    other = console_app.server.workspace("other")
    with console_app.server.admin(other.admin_token) as admin:
        publish(admin, {**JOURNEY, "id": "theirs-only"})
    client = signed_in("admin")
    assert client.get("/journeys/theirs-only/report").status_code == 404
    assert client.get("/journeys/no-such-journey/report").status_code == 404
