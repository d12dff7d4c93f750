"""A person's events dated in year 1 or 9999 (an import of a broken export, a device before
ingest clamped the future) are shown, never a 500: the person page, its timeline, the "why"
answer, search, the overview, and the admin API's profile, events, export and stats."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from nudgeflow.core.clock import to_ms
from nudgeflow.model.events import normalize
from nudgeflow.settings import Settings
from nudgeflow.store.ingest_writer import write_events
from tests.console.support import ConsoleApp

FIRST = datetime(1, 1, 1, tzinfo=UTC)
LAST = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)


def test_events_at_the_calendars_ends_are_shown(
    console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]
) -> None:
    now = console_app.clock.now()
    records = [
        normalize(
            {"type": "track", "event": name, "userId": "far-dates", "messageId": f"far-{name}", "timestamp": at},
            received,
            max_event_bytes=Settings.max_event_bytes,
            own=True,
        )
        for name, at, received in (
            ("Year One", FIRST, FIRST),
            ("Year 9999", LAST, LAST),
            ("Now", now, now),
        )
    ]
    with console_app.state.engine.begin() as conn:
        write_events(conn, console_app.workspace_id, records, to_ms(now))

    viewer = signed_in("viewer")
    for path, params in (
        ("/people/far-dates", {}),
        ("/people/far-dates", {"journey": "cart", "template": "cart-nudge"}),
        ("/people", {"q": "far-dates"}),
        ("/", {}),  # the overview's engine lag reads the oldest event's receipt time
    ):
        page = viewer.get(path, params=params)
        assert page.status_code == 200, (path, params, page.text[-2000:])
    page = viewer.get("/people/far-dates")
    assert "Year One" in page.text and "Year 9999" in page.text
    with console_app.admin() as admin:
        for path in (
            "/api/profiles/far-dates",
            "/api/profiles/far-dates/events",
            "/api/profiles/far-dates/export",
            "/api/stats",
        ):
            answer = admin.get(path)
            assert answer.status_code == 200, (path, answer.text[-2000:])
        events = admin.get("/api/profiles/far-dates/events").json()["events"]
        assert {e["event"] for e in events} >= {"Year One", "Year 9999", "Now"}
