"""A goal's revenue far beyond any real order (1e200: a finite number, so the goal takes it)
must neither stop the engine nor the report: the rollups keep revenue's square for Welch's
interval, and a square past a float's range used to raise OverflowError in the batch."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.model.journeys import Journey
from nudgeflow.store import journeys as journey_store
from tests.runtime.report_support import PROMO, Delivering
from tests.support import LiveServer

USERS = [f"whale-{n}" for n in range(12)]


def _rows(srv: LiveServer, sql: str, **params: Any) -> list[Any]:
    with srv.state.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def test_an_absurd_revenue_neither_stops_the_engine_nor_the_report(server: tuple[LiveServer, VirtualClock]) -> None:
    srv, clock = server
    ws = srv.workspace()
    runtime = srv.state.runtime
    runtime.run_until_idle()
    runtime.channels.register("email", Delivering())
    with srv.state.engine.begin() as conn:
        journey_store.apply_draft(conn, ws.workspace_id, Journey.model_validate(PROMO), to_ms(clock.now()))
        journey_store.publish(conn, ws.workspace_id, "promo", to_ms(clock.now()))
    with srv.client(auth=(ws.write_key, "")) as client:
        for user in USERS:
            assert client.post("/v1/identify", json={"userId": user, "traits": {"email": f"{user}@x.test"}}).is_success
            assert client.post("/v1/track", json={"userId": user, "event": "Sale Started"}).is_success
        runtime.run_until_idle()
        for n, user in enumerate(USERS):
            # Most revenues square past a float's range (1e308), one negative; two are real
            # (an order and a refund), and still count.
            revenue = {0: -1e200, 1: 25.5, 2: -10.0}.get(n, 1e200 * (n + 1))
            body = {"userId": user, "event": "Order Completed", "properties": {"revenue": revenue}}
            assert client.post("/v1/track", json=body).is_success
    runtime.run_until_idle()

    converted = _rows(srv, "SELECT count(*) FROM journey_runs WHERE converted_at_ms IS NOT NULL")
    assert converted[0][0] == len(USERS)
    with srv.admin(ws.admin_token) as admin:
        for path, params in (
            ("/api/reports/journeys/promo", {"by": "step,variant"}),
            ("/api/reports/journeys/promo", {"format": "csv"}),
            ("/api/reports/overview", {}),
        ):
            answer = admin.get(path, params=params)
            assert answer.status_code == 200, (path, answer.text[:400])
        totals = admin.get("/api/reports/journeys/promo").json()["totals"]
    # Each conversion counts; the absurd revenues are none, the real ones are (docs/measurement.md).
    assert totals["conversions"] + totals["held_out_conversions"] == len(USERS)
    assert totals["revenue"] + totals["held_out_revenue"] == 15.5
