"""Why a person is in a segment or not: GET /api/segments/{id}/explain?person=REF.

The person's engine state (traits, kept history, reachability facts, memberships) is read
as the engine keeps it, with their group's stored traits as the runtime gives them
(store/groups.py), and core/segments.explain evaluates each condition of the live version
on it now: the same tests the engine decides membership with.

A lapse of theirs already due (a window that closed, its timer not fired yet: the engine
behind, or down) is decided first, in memory, as that timer would decide it
(Engine.on_timer, core/segments.catch_up: each lapse at its own due time, the segments that
refer to it after it), and as a segment's apply does before it decides: so a condition on
another segment reads the membership the engine is about to record, not the one it recorded
before the lapse. Nothing is written: the state, timers and members rows stay the engine's.
The answer also says whether the members table has them in (`member_recorded`: what the
engine last decided, which an overdue lapse changes when its timer fires).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from nudgeflow.core import segments as planner
from nudgeflow.core.catalog import Catalog
from nudgeflow.core.engine import Engine
from nudgeflow.core.inputs import TimerInput
from nudgeflow.core.state import ProfileState
from nudgeflow.model.iso_time import iso
from nudgeflow.store import segments as store
from nudgeflow.store.backfill import read_states
from nudgeflow.store.groups import refresh_group_traits
from nudgeflow.store.journeys import load_catalog
from nudgeflow.store.profiles import id_and_user

# The `seen` entries that are instants (ms), shown as ISO 8601 under these names.
_TIMES = {"since_ms": "counted_since", "latest_at": "latest_at"}


def _seen(seen: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in seen.items():
        if key in _TIMES:
            out[_TIMES[key]] = iso(value, milliseconds=False) if isinstance(value, int) else None
        else:
            out[key] = value
    return out


def check_view(check: planner.ConditionCheck) -> dict[str, Any]:
    """One evaluated condition as JSON: a leaf's own definition, a group's children."""
    out: dict[str, Any] = {"path": check.path, "kind": check.kind, "holds": check.holds}
    if check.children:
        out["children"] = [check_view(c) for c in check.children]
    else:
        dump = getattr(check.rule, "model_dump", None)
        out["condition"] = dump(mode="json", by_alias=True, exclude_defaults=True) if dump else None
        out["seen"] = _seen(check.seen)
    return out


def decide_overdue_lapses(catalog: Catalog, state: ProfileState, now_ms: int) -> None:
    """Decide on `state` (a copy read for this answer) the lapses due by now, as the person's
    lapse timer will when it fires; its effects (a SegmentChanged, a journey a lapse starts or
    ends, the timer armed again) are dropped: the engine makes them itself, once."""
    if catalog.segment_index is None or not planner.lapse_due(state, now_ms):
        return
    timer = TimerInput(planner.LAPSE_TIMER, now_ms, {"kind": planner.SEGMENT_TIMER})
    Engine(catalog).on_timer(state, timer, now_ms)


def explain_person(conn: Connection, workspace_id: str, segment_id: str, profile_id: str, now_ms: int) -> Any:
    """The answer's body, or a (status, detail) pair when the segment is not live."""
    status = store.status_of(conn, workspace_id, segment_id)
    if status is None:
        return 404, f"no segment {segment_id!r} in this workspace"
    catalog = load_catalog(conn, workspace_id)
    doc = read_states(conn, [profile_id]).get(profile_id)
    state = ProfileState.from_json(profile_id, doc)
    refresh_group_traits(conn, {profile_id: state}, {profile_id: workspace_id})
    decide_overdue_lapses(catalog, state, now_ms)
    found = planner.explain(catalog, state, segment_id, now_ms)
    if found is None:
        return 409, f"segment {segment_id!r} is not live: only a live segment has members"
    ids = id_and_user(conn, profile_id)
    stored = store.members_among(conn, workspace_id, segment_id, [profile_id])
    return {
        "segment_id": segment_id,
        "version": found.version,
        "profile_id": profile_id,
        "user_id": ids[1] if ids else None,
        "at": iso(found.at_ms, milliseconds=False),
        "member": found.member,
        "member_recorded": profile_id in stored,
        "decided": doc is not None,
        "check": check_view(found.check),
    }
