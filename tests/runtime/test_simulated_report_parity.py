"""`simulate --report` against production: the same events through the live server (the real
core, dispatcher and rollups, on a virtual clock) and through the simulator give the same
report, number for number, except what a simulation cannot know, which it leaves unknown."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from nudgeflow.channels.base import ChannelRegistry
from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.model.iso_time import iso
from nudgeflow.model.journeys import Journey
from nudgeflow.model.policies import Policies
from nudgeflow.runtime.processor import EngineCache
from nudgeflow.runtime.simulation import Simulation
from nudgeflow.runtime.simulation_rollups import simulated_report
from nudgeflow.store import journeys as journey_store
from nudgeflow.web.reports_api import load_overview
from tests.runtime.harness import Harness
from tests.runtime.policy_journeys import apply_policies, publish
from tests.runtime.report_support import (
    PROGRAM_PROMO,
    PROGRAM_SALE,
    PROGRAM_UPSELL,
    PROGRAM_VIP,
    PROMO,
    SALE_B,
    USERS,
    Delivering,
    program_journey,
)
from tests.support import LiveServer

BY = ("step", "variant")

GROUP = {"control_group": {"share": 0.3, "salt": "parity"}}
PROMO_G, SALE_G, UPSELL_G, VIP_G = PROGRAM_PROMO, PROGRAM_SALE, PROGRAM_UPSELL, PROGRAM_VIP
# Transactional: sent to the group's members too, who are still not treated recipients.
RECEIPT_G = {
    **program_journey("receipt", "Order Completed"),
    "steps": {"hello": {"type": "send", "channel": "email", "template": "receipt", "marketing": False}},
}
USERS_G = [f"person-{i:02d}" for i in range(40)]


def _json(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))  # tuples as lists, as a JSON answer has them


def _same(produced: dict[str, Any], simulated: dict[str, Any], unknown: set[str], where: str) -> None:
    for name, value in produced.items():
        if name in unknown:
            assert simulated[name] is None, (where, name)
        else:
            assert simulated[name] == value, (where, name, value, simulated[name])


@pytest.mark.parametrize("rt_url", ["sqlite"], indirect=True)
def test_simulated_report_equals_the_one_production_keeps(server: tuple[LiveServer, VirtualClock]) -> None:
    srv, clock = server
    ws = srv.workspace()
    runtime = srv.state.runtime
    runtime.run_until_idle()
    runtime.channels.register("email", Delivering())
    now = to_ms(clock.now())
    with srv.state.engine.begin() as conn:
        for definition in (PROMO, SALE_B):
            journey_store.apply_draft(conn, ws.workspace_id, Journey.model_validate(definition), now)
            journey_store.publish(conn, ws.workspace_id, definition["id"], now)

    # What happened, with when: production stamps each event with the (virtual) time it came in.
    events: list[dict[str, Any]] = []

    def post(client: Any, path: str, body: dict[str, Any]) -> None:
        assert client.post(path, json=body).is_success
        events.append({**body, "type": path.rsplit("/", 1)[1], "timestamp": iso(to_ms(clock.now()))})

    with srv.client(auth=(ws.write_key, "")) as client:
        for user in USERS:
            post(client, "/v1/identify", {"userId": user, "traits": {"email": f"{user}@x.test"}})
            post(client, "/v1/track", {"userId": user, "event": "Sale Started"})
        runtime.run_until_idle()
        clock.advance(timedelta(hours=2))
        for n, user in enumerate(USERS[::3]):
            body = {"userId": user, "event": "Order Completed", "properties": {"revenue": 10.0 * (n + 1)}}
            post(client, "/v1/track", body)
    runtime.run_until_idle()
    clock.advance(timedelta(hours=22))
    runtime.run_until_idle()  # the reminders, a day after the trigger
    with srv.admin(ws.admin_token) as admin:
        produced = {
            journey: admin.get(f"/api/reports/journeys/{journey}", params={"by": ",".join(BY)}).json()
            for journey in ("promo", "sale-b")
        }
        overview = admin.get("/api/reports/overview").json()

    sim = Simulation([Journey.model_validate(PROMO), Journey.model_validate(SALE_B)])
    sim.replay(events)
    sim.advance_to(to_ms(clock.now()))
    simulated = simulated_report(sim, by=BY)

    for journey, found in produced.items():
        mine = simulated["journeys"][journey]
        unknown = set(mine["not_known"])
        assert {"delivered", "unique_opens", "bounces"} <= unknown and "sent" not in unknown
        assert found["totals"]["sent"] > 0 and found["totals"]["conversions"] > 0
        _same(found["totals"], mine["totals"], unknown, f"{journey} totals")
        keys = [tuple(row[name] for name in BY) for row in found["rows"]]
        assert keys == [tuple(row[name] for name in BY) for row in mine["rows"]]
        for key, theirs, ours in zip(keys, found["rows"], mine["rows"], strict=True):
            _same(theirs, ours, unknown, f"{journey} {key}")
        assert _json(mine["lift"]) == found["lift"]
    workspace = overview["workspace"]
    assert simulated["overview"]["workspace"]["unique_conversions"] == workspace["unique_conversions"]
    assert simulated["overview"]["workspace"]["unique_revenue"] == workspace["unique_revenue"]


@pytest.mark.parametrize("rt_url", ["sqlite"], indirect=True)
def test_simulated_program_lift_equals_the_one_production_keeps(h: Harness) -> None:
    # A global control group across three journeys (one with a holdout, one with a goal of its
    # own) and one that excludes it: the program's comparison and every journey's counters.
    journeys = [PROMO_G, SALE_G, UPSELL_G, VIP_G, RECEIPT_G]
    publish(h, *journeys)
    apply_policies(h, GROUP)
    events: list[dict[str, Any]] = []

    def track(user: str, event: str, **properties: Any) -> None:
        h.track(user, event, **properties)
        at = iso(to_ms(h.clock.now()))
        events.append({"type": "track", "userId": user, "event": event, "properties": properties, "timestamp": at})

    for user in USERS_G:
        track(user, "Signed Up")
    for user in USERS_G[::5]:
        track(user, "Joined VIP")
    rt = h.runtime(engines=EngineCache(), channels=ChannelRegistry.development())
    rt.channels.register("email", Delivering())
    rt.run_until_idle()
    h.clock.advance(timedelta(hours=1))
    for i, user in enumerate(USERS_G):
        if i % 3 == 0:
            track(user, "Order Completed", revenue=10.0 + i)
        if i % 4 == 0:
            track(user, "Upgraded", amount=100.0 + i)
    rt.run_until_idle()
    with h.db.connect() as conn:
        overview = load_overview(conn, h.ws, from_day=None, to_day=None, include_machine=False)

    sim = Simulation([Journey.model_validate(j) for j in journeys], policies=Policies.model_validate(GROUP))
    sim.replay(events)
    simulated = simulated_report(sim)["overview"]
    assert overview["lift"] is not None and overview["lift"]["control_people"] > 0
    receipt = next(row for row in overview["journeys"] if row["journey_id"] == "receipt")
    assert receipt["control"] > 0 and receipt["sent"] > receipt["recipients"]  # the members' receipts
    assert _json(simulated["lift"]) == _json(overview["lift"])
    produced = {row["journey_id"]: row for row in overview["journeys"]}
    for row in simulated["journeys"]:
        theirs = produced[row["journey_id"]]
        names = ("entered", "held_out", "control", "recipients", "sent", "conversions", "control_conversions")
        for name in (*names, "held_out_conversions"):
            assert row[name] == theirs[name], (row["journey_id"], name)
        assert _json(row["lift"]) == _json(theirs["lift"])
