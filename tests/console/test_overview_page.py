"""The overview page over HTTP: its numbers are the rollups' for the period and equal the
admin API's overview; failed and withheld messages by why, escaped; bad input refused."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from nudgeflow.core.clock import to_ms
from nudgeflow.store import outbox, rollups
from tests.console.ovset_support import inside, metric, row_html, text_of, write_rollups
from tests.store.outbox_rows import outbox_row


def iso_day(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def test_the_overview_shows_the_rollups_of_the_period_as_the_api_does(console_app: Any, signed_in: Any) -> None:
    ws = console_app.workspace_id
    today = rollups.day_of(to_ms(console_app.clock.now()))

    def at(journey: str, day: int, step: str = "", channel: str = "", variant: str = "") -> rollups.Dims:
        return (ws, journey, 1, step, variant, channel, day)

    write_rollups(
        console_app.state,
        [
            (
                at("ov-a", today, "s1", "email"),
                {"sent": 10, "delivered": 9, "attributed_conversions": 2, "attributed_revenue": 30.5},
            ),
            (at("ov-a", today - 10, "s1", "email", "b"), {"sent": 4, "delivered": 4}),
            (
                at("ov-b", today - 3, "p1", "push"),
                {"sent": 6, "delivered": 5, "attributed_conversions": 1, "attributed_revenue": 2.25},
            ),
            (at("ov-a", today), {"entered": 12, "conversions": 3, "revenue": 45.0}),
            (at("ov-b", today - 20), {"entered": 5, "conversions": 1, "revenue": 10.0}),
            (at("ov-a", today - 40, "s1", "email"), {"sent": 100, "delivered": 100}),
        ],
    )
    expected = {  # days -> channel -> (sent, delivered, attributed conversions, attributed revenue)
        7: {"email": (10, 9, 2, 30.5), "push": (6, 5, 1, 2.25)},
        30: {"email": (14, 13, 2, 30.5), "push": (6, 5, 1, 2.25)},
        90: {"email": (114, 113, 2, 30.5), "push": (6, 5, 1, 2.25)},
    }
    goals = {7: (3, 45.0), 30: (4, 55.0), 90: (4, 55.0)}
    client = signed_in("viewer")
    for days, channels in expected.items():
        response = client.get("/", params={"days": days})
        assert response.status_code == 200, response.text[:300]
        page = response.text
        for channel, (sent, delivered, conversions, revenue) in channels.items():
            row = row_html(page, "data-channel", channel)
            assert (metric(row, "sent"), metric(row, "delivered")) == (sent, delivered)
            assert (metric(row, "attributed_conversions"), metric(row, "attributed_revenue")) == (conversions, revenue)
        api = client.get(
            "/api/reports/overview", params={"from": iso_day(today - days + 1), "to": iso_day(today)}
        ).json()["workspace"]
        total = row_html(page, "data-channel", "")
        assert metric(total, "sent") == api["sent"] == sum(c[0] for c in channels.values())
        assert metric(total, "delivered") == api["delivered"]
        assert metric(total, "attributed_conversions") == api["attributed_conversions"]
        goals_html = inside(page, "overview-goals")
        assert metric(goals_html, "conversions") == api["conversions"] == goals[days][0]
        assert metric(goals_html, "revenue") == api["revenue"] == goals[days][1]
        assert page.count('class="nf-chart"') == 6 and "<polyline" in page


def test_failed_and_withheld_messages_are_listed_by_why_and_escaped(console_app: Any, signed_in: Any) -> None:
    ws = console_app.workspace_id
    now = to_ms(console_app.clock.now())
    hostile = "<script>alert(1)</script> 550 refused"
    with console_app.state.engine.begin() as conn:
        outbox.queue(
            conn,
            [
                *(outbox_row(ws, f"ov-f{i}", outbox.FAILED, now - i, error=hostile) for i in range(3)),
                outbox_row(ws, "ov-c1", outbox.DROPPED, now, reason="frequency_cap:ov-daily"),
                outbox_row(ws, "ov-q1", outbox.DEFERRED, now + 3_600_000, reason="quiet_hours"),
                outbox_row(ws, "ov-old", outbox.FAILED, now - 40 * rollups.DAY_MS, error="old failure"),
            ],
        )
    page = signed_in("viewer").get("/", params={"days": 7}).text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; 550 refused" in page
    failed = text_of(inside(page, "not-sent-failed-reasons"))
    assert "550 refused 3" in failed and "old failure" not in page
    dropped = text_of(inside(page, "not-sent-dropped-reasons"))
    assert "frequency_cap:ov-daily capped (frequency cap) 1" in dropped
    deferred = text_of(inside(page, "not-sent-deferred-reasons"))
    assert "quiet_hours quiet hours 1" in deferred
    assert "Up to date" in text_of(inside(page, "engine-lag"))


def test_a_period_that_is_not_offered_is_refused(signed_in: Any) -> None:
    response = signed_in("viewer").get("/", params={"days": 8})
    assert response.status_code == 400 and "days: 8 is not one of 7, 30, 90" in response.text
    assert signed_in("viewer").get("/", params={"days": "many"}).status_code == 422


def test_the_engine_lag_counts_the_events_not_yet_decided(own_console_app: Any) -> None:
    """This console runs no engine: events accepted over HTTP wait in the log, and the overview
    says how many and since when."""
    app = own_console_app
    with app.client(auth=(app.workspace.write_key, "")) as tracker:
        for n in range(3):
            answer = tracker.post("/v1/track", json={"userId": f"lag-{n}", "event": "Product Viewed"})
            assert answer.status_code == 200, answer.text
    app.clock.advance(timedelta(seconds=90))
    viewer = app.sign_in("viewer@example.com")
    lag = text_of(inside(viewer.get("/").text, "engine-lag"))
    viewer.close()
    assert lag.startswith("3 events not yet decided; the oldest was received at 2026-06-01T09:00:00Z"), lag
    assert "(90 s ago)" in lag
