"""What the pure core remembers about one person, kept as one JSON document per profile.

The runtime loads these in bulk for a batch of events and writes them back in the same
transaction as the effects; the simulator keeps them in a dict. Everything here is plain
data so that the document round-trips through orjson unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, cast

import orjson

# Run statuses. `active` runs sit on a step (waiting on a timer or an event); `held` runs
# belong to a paused journey; `done` runs finished their steps but may still convert
# within the goal window; `exited` runs are over.
ACTIVE, HELD, DONE, EXITED = "active", "held", "done", "exited"


@dataclass(slots=True)
class Run:
    id: str
    journey_id: str
    version: int
    entered_at: int
    trigger: dict[str, Any]  # {"event": name, "message_id": …, "at": ms, "properties": {…}, "place": …}
    holdout: bool = False
    # In the workspace's global control group (core/control_group.py): decided at entry, kept.
    control: bool = False
    # The group's draw the run was decided in (core/control_group.cohort): the program's lift
    # counts a person once per cohort. None when the run takes no part in the comparison (no
    # group, or a journey with `control_group: exclude`).
    control_cohort: str | None = None
    status: str = ACTIVE
    step: str | None = None
    waiting: dict[str, Any] | None = None  # a wait_for_event step's pending wait
    visits: dict[str, int] = field(default_factory=dict)  # step -> times entered (idempotency)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # send step -> {key, statuses}
    paths: dict[str, str] = field(default_factory=dict)  # split/variant step -> chosen name
    held: str | None = None  # what fell due while the journey was paused: "step", "timeout" or "send_time"
    # A send-time decision (core/send_time.py) waiting for the send it times: {"step", "arm",
    # "hour", "at", "basis"}; the next send step moves it onto its message's record.
    timing: dict[str, Any] | None = None
    goal_until: int | None = None
    converted_at: int | None = None
    converted_by: str | None = None  # the goal event's messageId: a goal event is counted once
    revenue: float | None = None
    ended_at: int | None = None
    exit_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        # Fields still at their default are left out: a state document is read and written
        # on every decision for the person, and its size is what the commit writes (a run
        # waiting in a step carries a dozen nulls and empty maps otherwise).
        out = {name: getattr(self, name) for name in _RUN_REQUIRED}
        for name, default in _RUN_DEFAULTS:
            value = getattr(self, name)
            if value != default:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        return cls(**data)

    def as_row(self, profile_id: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "journey_id": self.journey_id,
            "version": self.version,
            "profile_id": profile_id,
            "status": self.status,
            "step": self.step,
            "holdout": int(self.holdout),
            "control": int(self.control),
            "control_cohort": self.control_cohort,
            "entered_at_ms": self.entered_at,
            "ended_at_ms": self.ended_at,
            "exit_reason": self.exit_reason,
            "converted_at_ms": self.converted_at,
            "converted_by": self.converted_by,
            "revenue": self.revenue,
            # Not a column either: the store records each new arm once (store/rollups.count_arms).
            # A copy: the run goes on choosing after this row is taken.
            "paths": dict(self.paths),
        }


_RUN_REQUIRED = ("id", "journey_id", "version", "entered_at", "trigger")
_RUN_DEFAULTS: tuple[tuple[str, Any], ...] = tuple(
    # A field without a default has a factory (only the required fields have neither).
    (f.name, f.default if f.default is not MISSING else cast("Callable[[], Any]", f.default_factory)())
    for f in fields(Run)
    if f.name not in _RUN_REQUIRED
)


@dataclass(slots=True)
class ProfileState:
    profile_id: str
    traits: dict[str, Any] = field(default_factory=dict)  # as the engine saw them, in event order
    runs: dict[str, Run] = field(default_factory=dict)  # open runs (active, held, done in goal window)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # journey -> {"count", "last_at"}
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # "not followed by" watches
    counters: dict[str, Any] = field(default_factory=dict)  # milestones: counts, sums, streaks
    activity: dict[str, dict[str, Any]] = field(default_factory=dict)  # inactivity: last active, armed
    # event -> [[ts, {props}], …], oldest first; a goal event's entries (Catalog.history_ids)
    # have the event's messageId as a third item: [ts, {props}, message_id].
    history: dict[str, list[list[Any]]] = field(default_factory=dict)
    last_location: dict[str, Any] | None = None
    # The group (Segment `group` call) the person was most recently seen with, by event
    # time: {"id", "at", "traits"}. The runtime refreshes `traits` from the stored group
    # (every member's calls merged) when it loads the state; the core merges this person's
    # own calls on top. Conditions read it as `group.<trait>`.
    group: dict[str, Any] | None = None
    run_seq: int = 0  # makes run ids unique per profile without randomness
    # The person's stable id (userId once known, else the first anonymousId): holdouts,
    # splits and variants hash it rather than the store's internal profile id, so the
    # simulator and production put the same person in the same group.
    identity: str | None = None
    # Live segments the person is in: segment id -> since (ms), and what core/segments.py
    # remembers to decide them: its clock, armed lapse timers, reachability facts.
    membership: dict[str, int] = field(default_factory=dict)
    segment_facts: dict[str, Any] = field(default_factory=dict)
    # Send policies (core/policies.py): the messages sent, [t, channel, journey, transactional,
    # topic] oldest first, for caps and collisions; and the latest "how often" choice of the
    # preference center, {"value": "normal"|"fewer", "at": event ms}.
    sends: list[list[Any]] = field(default_factory=list)
    frequency: dict[str, Any] | None = None
    # Send-time optimization (core/send_time.py): the person's opens, clicks and app opens
    # by local hour, 24 counts (empty until the first one).
    hours: list[int] = field(default_factory=list)
    # Set by a profile merge (runtime/merges.merge_state) that brought together runs in
    # progress of the same journey: the engine's next call for the person settles them
    # (core/merged_runs.py) and clears it. Never set otherwise, so no other call pays for it.
    merged: bool = False

    @property
    def assignment_key(self) -> str:
        return self.identity or self.profile_id

    @property
    def group_traits(self) -> dict[str, Any] | None:
        """The traits of the person's group, with its `id`; None when no group call was seen."""
        if not self.group:
            return None
        return {**(self.group.get("traits") or {}), "id": self.group.get("id")}

    def to_json(self) -> bytes:
        # Empty parts are left out (from_json reads them back as empty), as Run.as_dict does.
        doc: dict[str, Any] = {"traits": self.traits}
        if self.runs:
            doc["runs"] = {rid: run.as_dict() for rid, run in self.runs.items()}
        if self.entries:
            doc["entries"] = self.entries
        # In the place it always had in the document: a document read and written unchanged
        # is the same bytes (the writer skips those), including those written before the
        # shared properties existed.
        if self.pending:
            doc["pending"], shared = _pending_doc(self.pending)
            if shared:
                doc[SHARED_PROPERTIES] = shared
        for name in (
            "counters",
            "activity",
            "history",
            "last_location",
            "group",
            "run_seq",
            "identity",
            "membership",
            "segment_facts",
            "sends",
            "frequency",
            "hours",
            "merged",
        ):
            value = getattr(self, name)
            if value:
                doc[name] = value
        return orjson.dumps(doc)

    @classmethod
    def from_json(cls, profile_id: str, data: str | bytes | None) -> ProfileState:
        if not data:
            return cls(profile_id)
        doc = orjson.loads(data)
        pending = doc.get("pending", {})
        shared = doc.get(SHARED_PROPERTIES)
        if shared:
            for watch in pending.values():
                if "properties" not in watch and watch.get("message_id") in shared:
                    watch["properties"] = shared[watch["message_id"]]
        return cls(
            profile_id=profile_id,
            traits=doc.get("traits", {}),
            runs={rid: Run.from_dict(r) for rid, r in doc.get("runs", {}).items()},
            entries=doc.get("entries", {}),
            pending=pending,
            counters=doc.get("counters", {}),
            activity=doc.get("activity", {}),
            history=doc.get("history", {}),
            last_location=doc.get("last_location"),
            group=doc.get("group"),
            run_seq=doc.get("run_seq", 0),
            identity=doc.get("identity"),
            membership=doc.get("membership", {}),
            segment_facts=doc.get("segment_facts", {}),
            sends=doc.get("sends", []),
            frequency=doc.get("frequency"),
            hours=doc.get("hours", []),
            merged=doc.get("merged", False),
        )


# Several journeys watching the same event ("not followed by": one per journey, each holding
# the event as its trigger) hold the same properties, one object in memory. The document
# writes them once, here, by the event's message id: with many such journeys they were most
# of its bytes, parsed and written again on every event of the person.
SHARED_PROPERTIES = "pending_properties"


def _pending_doc(pending: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The watches as written, and the properties two or more of them share (by message id).

    Only the very same object is shared (as trigger_of gives every watch of one event, and
    from_json gives back): reading the document restores each watch's `properties` to it,
    so the state is the one written, and a document read and written unchanged is the same."""
    first: dict[str, Any] = {}
    count: dict[str, int] = {}
    for watch in pending.values():
        mid = watch.get("message_id")
        if not isinstance(mid, str):
            continue
        props = watch.get("properties")
        known = first.get(mid)
        if known is None:
            if isinstance(props, dict):
                first[mid], count[mid] = props, 1
        elif props is known:
            count[mid] += 1
    shared = {mid: first[mid] for mid, n in count.items() if n > 1}
    if not shared:
        return pending, shared
    out: dict[str, Any] = {}
    for key, watch in pending.items():
        props = shared.get(watch.get("message_id"))  # type: ignore[arg-type]
        if props is not None and watch.get("properties") is props:
            watch = watch.copy()  # the same keys in the same order, less the properties
            del watch["properties"]
        out[key] = watch
    return out, shared
