"""A shop's workspace with marketing journeys, for the export and erasure tests
(test_profile_export.py, its fixtures in conftest.py)."""

from __future__ import annotations

import base64
import os
import subprocess
from typing import Any

import httpx
from sqlalchemy import text

from nudgeflow.content.compiled_templates import save_template
from nudgeflow.core.clock import to_ms
from nudgeflow.model.journeys import Journey
from nudgeflow.store import consent
from nudgeflow.store import journeys as journey_store
from tests.support import NUDGEFLOW, LiveServer

JOURNEYS = [
    {
        "id": "sale",
        "name": "Sale",
        "trigger": {"type": "event", "event": "Sale Started"},
        "steps": {"mail": {"type": "send", "channel": "email", "template": "promo"}},
    },
    {
        "id": "news",
        "name": "News",
        "trigger": {"type": "event", "event": "News Published"},
        "steps": {"mail": {"type": "send", "channel": "email", "template": "promo"}},
    },
    {
        "id": "nurture",
        "name": "Nurture",
        "trigger": {"type": "event", "event": "Signed Up"},
        "steps": {
            "wait": {"type": "wait", "duration": "3d", "next": "mail"},
            "mail": {"type": "send", "channel": "email", "template": "promo"},
        },
    },
]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Shop:
    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.ws = live.workspace("privacy")
        self.wid = self.ws.workspace_id
        runtime = live.state.runtime
        runtime.run_until_idle()  # the runtime picks its email channel on its first run: pin it to the log
        runtime.channels.register("email", runtime.channels.get("log"))
        now = self.now()
        with live.state.engine.begin() as conn:
            save_template(conn, self.wid, "promo", {"channel": "email", "subject": "Hi", "body": "<p>Sale</p>"}, now)
            consent.update_settings(conn, self.wid, {consent.TOPICS: ["offers", "product_news"]}, now)
            for definition in JOURNEYS:
                journey_store.apply_draft(conn, self.wid, Journey.model_validate(definition), now)
                journey_store.publish(conn, self.wid, definition["id"], now)

    def now(self) -> int:
        return to_ms(self.live.state.clock.now())

    def write(self) -> httpx.Client:
        return self.live.client(auth=(self.ws.write_key, ""))

    def admin(self) -> httpx.Client:
        return self.live.admin(self.ws.admin_token)

    def send(self, *messages: dict[str, Any]) -> None:
        with self.write() as client:
            answer = client.post("/v1/batch", json={"batch": list(messages)})
        assert answer.status_code == 200, answer.text

    def run(self) -> None:
        self.live.state.runtime.run_until_idle()

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGEFLOW_")}
        env["NUDGEFLOW_DATABASE_URL"] = self.live.state.settings.database_url
        return subprocess.run(
            [NUDGEFLOW, "profiles", *args, "--workspace", self.wid],
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def outbox(self, journey_id: str) -> list[Any]:
        with self.live.state.engine.connect() as conn:
            return list(
                conn.execute(
                    text("SELECT * FROM outbox WHERE workspace_id = :w AND journey_id = :j ORDER BY id"),
                    {"w": self.wid, "j": journey_id},
                )
            )
