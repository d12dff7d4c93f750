"""A workspace with a push message already sent to Ada, and the requests her browser's
service worker makes to report it (test_push_reports.py, its fixture in conftest.py)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from sqlalchemy import insert, select

from nudgeflow.content import links
from nudgeflow.core.clock import to_ms
from nudgeflow.store import consent
from nudgeflow.store.profiles import resolve_profile_id
from nudgeflow.store.schema import events, outbox
from nudgeflow.store.workspaces import NewWorkspace
from tests.support import LiveServer

ORIGIN = {"Origin": "https://shop.example.com"}


class PushReportCtx:
    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.ws: NewWorkspace = live.workspace()
        self.wid = self.ws.workspace_id
        with live.client(auth=(self.ws.write_key, "")) as client:
            assert client.post("/v1/identify", json={"userId": "ada", "anonymousId": "anon-ada"}).status_code == 200
        now = to_ms(live.state.clock.now())
        with live.state.engine.begin() as conn:
            self.secret = consent.tracking_secret(conn, self.wid, now)
            pid = resolve_profile_id(conn, self.wid, "ada")
            assert pid is not None
            self.pid = pid
            # A push message as the engine queues it (already sent: the dispatcher leaves it).
            conn.execute(
                insert(outbox).values(
                    workspace_id=self.wid,
                    idempotency_key="run-1:nudge:1",
                    profile_id=pid,
                    run_id="run-1",
                    journey_id="cart",
                    journey_version=1,
                    step="nudge",
                    channel="push",
                    template="cart_push",
                    variant="B",
                    marketing=1,
                    payload="{}",
                    status="sent",
                    attempts=1,
                    next_attempt_at_ms=now,
                    created_at_ms=now,
                    updated_at_ms=now,
                    sent_at_ms=now,
                )
            )

    def path(self, key: str = "run-1:nudge:1", kind: str = links.PUSH, secret: str | None = None) -> str:
        token = links.sign(secret or self.secret, links.LinkToken(kind, self.wid, key, self.pid))
        return f"/t/n/{token}"

    def report(self, body: Any, path: str | None = None, **headers: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        with self.live.client() as client:
            return client.post(
                path or self.path(), content=content, headers={"content-type": "application/json", **ORIGIN, **headers}
            )

    def events(self, name: str) -> list[dict[str, Any]]:
        with self.live.state.engine.connect() as conn:
            rows = conn.execute(
                select(events.c.payload, events.c.profile_id)
                .where(events.c.workspace_id == self.wid, events.c.event == name)
                .order_by(events.c.seq)
            )
            return [{**orjson.loads(r.payload), "_profile": r.profile_id} for r in rows]
