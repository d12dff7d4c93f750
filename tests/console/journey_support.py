"""What the journey pages' tests share: example journeys saved through the admin API with the
templates they name, and counts planted in the report rollups and the runs as the engine would
leave them (the engine's own tests check that it counts; these check what the pages show)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import insert

from nudgeflow.core.clock import to_ms
from nudgeflow.store.rollups import day_of
from nudgeflow.store.schema import journey_runs, report_rollups
from tests.console.support import ConsoleApp

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "journeys"


def templates_of(doc: dict[str, Any]) -> dict[str, str]:
    """template name -> channel, of every send step of a journey document."""
    found: dict[str, str] = {}
    for step in doc["steps"].values():
        if step.get("type") != "send":
            continue
        names = [step["template"]] if step.get("template") else [v["template"] for v in step.get("variants") or []]
        for name in names:
            found[name] = step["channel"]
    return found


def save_templates(api: httpx.Client, doc: dict[str, Any]) -> None:
    for name, channel in templates_of(doc).items():
        source = (
            {"channel": "email", "subject": "Hi", "body": '<p>Hello {{ profile.first_name | default: "there" }}</p>'}
            if channel == "email"
            else {"channel": channel, "title": "Hi", "body": "Hello"}
        )
        answer = api.put(f"/api/templates/{name}", json=source)
        assert answer.status_code in (200, 201), answer.text


def save_example(app: ConsoleApp, name: str, *, publish: bool = False) -> dict[str, Any]:
    """Saves examples/journeys/<name>.yaml (as written, comments and all) and the templates it
    names; returns its document."""
    text = (EXAMPLES / f"{name}.yaml").read_text()
    doc = yaml.safe_load(text)
    with app.admin() as api:
        save_templates(api, doc)
        answer = api.put(
            f"/api/journeys/{doc['id']}",
            params={"publish": "true"} if publish else {},
            content=text,
            headers={"Content-Type": "application/yaml"},
        )
        assert answer.status_code in (200, 201), answer.text
    return doc


def plant_counts(app: ConsoleApp, journey_id: str, rows: dict[tuple[str, str, str], dict[str, float]]) -> None:
    """Adds report rollup rows of today for version 1: (step, variant, channel) -> counters."""
    today = day_of(to_ms(app.clock.now()))
    with app.state.engine.begin() as conn:
        for (step, variant, channel), values in rows.items():
            conn.execute(
                insert(report_rollups).values(
                    workspace_id=app.workspace_id,
                    journey_id=journey_id,
                    version=1,
                    step=step,
                    variant=variant,
                    channel=channel,
                    day=today,
                    **values,
                )
            )


def plant_runs(app: ConsoleApp, journey_id: str, steps: dict[str, int], workspace_id: str | None = None) -> None:
    """Runs in flight: step -> how many."""
    now = to_ms(app.clock.now())
    with app.state.engine.begin() as conn:
        for step, count in steps.items():
            for _ in range(count):
                conn.execute(
                    insert(journey_runs).values(
                        id=uuid.uuid4().hex,
                        workspace_id=workspace_id or app.workspace_id,
                        journey_id=journey_id,
                        version=1,
                        profile_id=uuid.uuid4().hex[:20],
                        status="active",
                        step=step,
                        holdout=0,
                        entered_at_ms=now,
                        updated_at_ms=now,
                    )
                )
