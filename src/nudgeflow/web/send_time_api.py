"""The admin API's view of send-time optimization for one person (bearer admin token):

    GET /api/profiles/{ref}/send-time

`ref` is a profile id, userId or anonymousId of the token's workspace, as in the rest of the
admin API. The answer holds the person's histogram (opens, clicks and app opens by local
hour, as the engine keeps it), the workspace's pattern it is shrunk toward, the resulting
score of each hour, the hour each live send_time step would choose if it were reached now
(and why: arm and basis), and the decisions recorded on the person's open runs.

The workspace's pattern is read now, as the engine reads it when its catalog loads
(store/send_time.py): the engine's copy may be older, until its catalog next reloads.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from nudgeflow.core import send_time, timecalc
from nudgeflow.core.catalog import LIVE, Catalog
from nudgeflow.core.clock import to_ms
from nudgeflow.core.state import ProfileState
from nudgeflow.model.iso_time import iso
from nudgeflow.model.journeys import SendTime
from nudgeflow.store.engine_state import stored_state
from nudgeflow.store.journeys import load_catalog
from nudgeflow.web.admin import Workspace, resolve_profile
from nudgeflow.web.state import State


def send_time_router() -> APIRouter:
    # Included ahead of the admin router: its /profiles/{ref:path} routes would match too.
    router = APIRouter(prefix="/api", tags=["admin"])

    @router.get("/profiles/{ref:path}/send-time", summary="A person's hours and the send time chosen for them")
    def person_send_time(state: State, ref: str, workspace_id: Workspace) -> dict[str, Any]:
        profile_id = resolve_profile(state, workspace_id, ref)
        now = to_ms(state.clock.now())
        with state.engine.connect() as conn:
            person = ProfileState.from_json(profile_id, stored_state(conn, profile_id))
            catalog = load_catalog(conn, workspace_id)
        return describe(person, catalog.send_time_prior, _steps(catalog), now)

    return router


def _steps(catalog: Catalog) -> list[tuple[str, int, str, SendTime]]:
    """(journey, version, step id, its SendTime) of every live step with `send_time`."""
    out: list[tuple[str, int, str, SendTime]] = []
    for jv in sorted(catalog.live.values(), key=lambda jv: jv.journey_id):
        if catalog.status(jv.journey_id) != LIVE:
            continue
        for step_id, step in jv.definition.steps.items():
            spec = getattr(step, "send_time", None)
            if spec is not None:
                out.append((jv.journey_id, jv.version, step_id, spec))
    return out


def describe(
    person: ProfileState, prior: send_time.Prior | None, steps: list[tuple[str, int, str, SendTime]], now_ms: int
) -> dict[str, Any]:
    hours = person.hours if len(person.hours) == send_time.HOURS else [0] * send_time.HOURS
    scores = send_time.scores(hours, prior)
    known = sum(hours) > 0
    top = max(range(send_time.HOURS), key=lambda h: (scores[h], -h))
    chosen = []
    for journey_id, version, step_id, spec in steps:
        choice = send_time.choose(
            spec, hours, prior, person.traits, now_ms, (person.assignment_key, journey_id, step_id)
        )
        chosen.append(
            {
                "journey_id": journey_id,
                "version": version,
                "step": step_id,
                "within": spec.within,
                "fallback": spec.fallback,
                "explore": spec.explore,
                **choice.record(),
                "at": iso(choice.at_ms),
            }
        )
    decisions = []
    for run in person.runs.values():
        if run.timing is not None:
            decisions.append({"run_id": run.id, "journey_id": run.journey_id, "pending": True, **run.timing})
        for step_id, record in run.messages.items():
            if "send_time" in record:
                decisions.append(
                    {"run_id": run.id, "journey_id": run.journey_id, "send_step": step_id, **record["send_time"]}
                )
    return {
        "profile_id": person.profile_id,
        "timezone": timecalc.zone_of(person.traits).key,
        "histogram": hours,
        "events": sum(hours),
        "workspace": prior.as_dict() if prior is not None else None,
        "scores": [round(s, 6) for s in scores],
        "best_hour": top if known or prior is not None else None,
        "basis": "person" if known else ("workspace" if prior is not None else "none"),
        "steps": chosen,
        "decisions": decisions,
        "at": iso(now_ms),
    }
