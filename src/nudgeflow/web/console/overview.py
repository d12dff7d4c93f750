"""The console's overview page (`/`): the workspace's messages sent, delivered, converted and
their revenue over the last 7, 30 or 90 days by channel, as charts and a table; how far
behind the engine is; the sends that failed and why; the messages capped, deferred, dropped
or suppressed, by reason.

Everything is read from counters, never by scanning the messages: the daily sums come from
the report rollups (store/rollups.read_channel_days, the same rows /api/reports/overview sums),
the lag from the engine's cursor, and the not-sent reasons from a bounded read of the outbox
along its status index (store/outbox.not_sent_summary)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection

from nudgeflow.core.clock import to_ms
from nudgeflow.model.iso_time import iso
from nudgeflow.model.reasons import family_of
from nudgeflow.store import engine_state, outbox, rollups
from nudgeflow.web.console.auth import Viewer
from nudgeflow.web.console.charts import LineChart, line_chart
from nudgeflow.web.console.render import page
from nudgeflow.web.state import State

WINDOWS = (7, 30, 90)
DEFAULT_WINDOW = 30
# The family of a policy's reason, as the page names it ("capped": a frequency cap).
FAMILY_WORDS = {"frequency_cap": "capped (frequency cap)"}


def day_label(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def overview_view(conn: Connection, workspace_id: str, *, days: int, now_ms: int) -> dict[str, Any]:
    """What the overview shows over the `days` UTC days ending today (today included)."""
    today = rollups.day_of(now_ms)
    first = today - days + 1
    rows = rollups.read_channel_days(conn, workspace_id, from_day=first, to_day=today)
    channels = sorted({row["channel"] for row in rows if row["channel"]})
    by_channel = {
        channel: {name: 0 for name in rollups.CHANNEL_DAY_VALUES if name not in ("conversions", "revenue")}
        for channel in channels
    }
    day_index = {day: i for i, day in enumerate(range(first, today + 1))}
    daily: dict[str, dict[str, list[float]]] = {
        metric: {channel: [0.0] * days for channel in channels}
        for metric in ("sent", "delivered", "attributed_conversions", "attributed_revenue")
    }
    runs = {"conversions": [0.0] * days, "revenue": [0.0] * days}
    for row in rows:
        i = day_index[row["day"]]
        if row["channel"]:
            for metric, series in daily.items():
                series[row["channel"]][i] += row[metric]
            for name in by_channel[row["channel"]]:
                by_channel[row["channel"]][name] += row[name]
        runs["conversions"][i] += row["conversions"]
        runs["revenue"][i] += row["revenue"]
    labels = [day_label(day) for day in range(first, today + 1)]
    charts: list[LineChart] = [
        line_chart("Messages sent", labels, daily["sent"]),
        line_chart("Messages delivered", labels, daily["delivered"]),
        line_chart("Conversions attributed to a message (last touch)", labels, daily["attributed_conversions"]),
        line_chart("Revenue attributed to a message (last touch)", labels, daily["attributed_revenue"], money=True),
        line_chart("Conversions: journey goals met, by day of entry", labels, {"all channels": runs["conversions"]}),
        line_chart(
            "Revenue: journey goals met, by day of entry", labels, {"all channels": runs["revenue"]}, money=True
        ),
    ]
    not_sent = outbox.not_sent_summary(conn, workspace_id, first * rollups.DAY_MS)
    for status, found in not_sent.items():
        for reason in found["reasons"]:
            if status != outbox.FAILED:
                family = family_of(reason["why"])
                reason["family"] = FAMILY_WORDS.get(family, family.replace("_", " "))
    lag = engine_state.lag_view(conn)
    oldest = lag["oldest_received_at_ms"]
    return {
        "days": days,
        "windows": WINDOWS,
        "from": labels[0],
        "to": labels[-1],
        "channels": [{"channel": channel, **by_channel[channel]} for channel in channels],
        "totals": {
            "sent": sum(c["sent"] for c in by_channel.values()),
            "delivered": sum(c["delivered"] for c in by_channel.values()),
            "conversions": int(sum(runs["conversions"])),
            "revenue": round(sum(runs["revenue"]), 6),
            "attributed_conversions": sum(c["attributed_conversions"] for c in by_channel.values()),
            "attributed_revenue": round(sum(c["attributed_revenue"] for c in by_channel.values()), 6),
        },
        "charts": charts,
        "lag": {
            "events": lag["events"],
            "oldest_received_at": iso(oldest, milliseconds=False),
            "behind_s": None if oldest is None else max(0, (now_ms - oldest) // 1000),
        },
        "not_sent": not_sent,
        "not_sent_scan": outbox.NOT_SENT_SCAN,
    }


def router() -> APIRouter:
    pages = APIRouter()

    @pages.get("/", response_class=HTMLResponse, name="console_overview", include_in_schema=False)
    def overview(
        request: Request,
        state: State,
        user: Viewer,
        days: Annotated[int, Query(description="7, 30 or 90")] = DEFAULT_WINDOW,
    ) -> HTMLResponse:
        if days not in WINDOWS:
            raise HTTPException(400, f"days: {days} is not one of 7, 30, 90")
        with state.engine.connect() as conn:
            view = overview_view(conn, user.workspace_id, days=days, now_ms=to_ms(state.clock.now()))
        return page(request, user, "overview.html", title="Overview", **view)

    return pages
