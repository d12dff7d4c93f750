"""A location trigger that takes its places from the places catalog (by tag or id): over
HTTP, with the real engine, on both databases. A place imported later counts at once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import text

from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.model.journeys import Journey
from nudgeflow.store import catalog as catalog_store
from nudgeflow.store import journeys as journey_store
from tests.support import LiveServer

NEAR = {
    "id": "near-store",
    "name": "Near a store",
    "trigger": {
        "type": "location",
        "event": "Location Updated",
        "radius_m": 200,
        "catalog_places": {"tags": ["store"]},
    },
    "entry": {"reentry": "always"},
    "steps": {"nearby": {"type": "send", "channel": "log", "template": "store-nearby"}},
}

PLACES = """id,name,latitude,longitude,tags
flagship,Flagship Store,40.7411,-73.9897,"store,flagship"
warehouse,Warehouse,40.7000,-74.0100,depot
"""


def places_sent(srv: LiveServer) -> list[Any]:
    with srv.state.engine.connect() as conn:
        bodies = conn.execute(text("SELECT body FROM log_channel_messages ORDER BY id")).scalars().all()
    return [orjson.loads(b)["context"]["trigger"]["place"]["id"] for b in bodies]


def test_places_come_from_the_catalog_by_tag(server: tuple[LiveServer, VirtualClock]) -> None:
    srv, clock = server
    ws = srv.workspace()
    now = to_ms(clock.now())
    with srv.state.engine.begin() as conn:
        catalog_store.import_text(conn, ws.workspace_id, "places", PLACES, now, filename="places.csv")
        journey_store.apply_draft(conn, ws.workspace_id, Journey.model_validate(NEAR), now)
        journey_store.publish(conn, ws.workspace_id, "near-store", now)
    runtime = srv.state.runtime

    def at(user: str, lat: float, lon: float) -> None:
        with srv.client(auth=(ws.write_key, "")) as client:
            answer = client.post(
                "/v1/track",
                json={"userId": user, "event": "Location Updated", "properties": {"latitude": lat, "longitude": lon}},
            )
            assert answer.status_code == 200, answer.text
        clock.advance(timedelta(seconds=1))
        runtime.run_until_idle()

    at("ada", 40.7412, -73.9896)  # at the flagship (tagged store)
    at("ben", 40.7001, -74.0101)  # at the warehouse (tagged depot only)
    assert places_sent(srv) == ["flagship"]

    # A store opens: imported into the catalog, the running engine uses it without a publish.
    with srv.state.engine.begin() as conn:
        catalog_store.import_text(
            conn,
            ws.workspace_id,
            "places",
            "id,name,latitude,longitude,tags\nbrooklyn,Brooklyn Store,40.7033,-73.9881,store\n",
            to_ms(clock.now()),
            filename="more.csv",
        )
    at("cy", 40.7034, -73.9880)
    assert places_sent(srv) == ["flagship", "brooklyn"]
