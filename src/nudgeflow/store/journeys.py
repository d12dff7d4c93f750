"""Journeys in the database: drafts, immutable published versions, and their lifecycle.

A journey row holds the editable draft and the status; each publish copies the draft into
`journey_versions` as the next version, which never changes afterwards (a run stays on
the version it entered with). Statuses and what moves between them:

    draft    --publish-->  live      (version 1)
    live     --publish-->  live      (version n+1; unchanged draft: no new version)
    live     --pause---->  paused    (no new entries; runs are held when they next move)
    paused   --publish-->  paused    (the new version is what resume brings back)
    paused   --resume--->  live      (held runs are woken by a timer each)
    any      --archive-->  archived  (final: nothing enters, nothing can be changed)

Definitions are stored as the JSON of `model_dump(mode="json", by_alias=True)` with every
default spelled out: a later release that changes a default does not change the meaning
of a version published before it.

Every function takes a Connection and leaves committing to the caller, so that applying
several files, or applying and publishing, is one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from nudgeflow.core.catalog import ARCHIVED, DRAFT, LIVE, PAUSED, Catalog, JourneyVersion
from nudgeflow.core.send_time import Prior
from nudgeflow.core.state import HELD
from nudgeflow.errors import StoreError
from nudgeflow.model.journey_checks import ERROR, Problem, check_journey
from nudgeflow.model.journeys import Journey
from nudgeflow.store import backfill as backfills
from nudgeflow.store import drafts, partition_log, sql
from nudgeflow.store import experiment_decisions as decisions
from nudgeflow.store import policies as policy_store
from nudgeflow.store import segments as segment_store
from nudgeflow.store.schema import (
    catalog_places,
    experiment_decisions,
    journey_runs,
    journey_versions,
    journeys,
    policy_versions,
    segments,
    timers,
    workspaces,
)


class JourneyError(StoreError, ValueError):
    """A journey operation that cannot be done; the message says why."""


class JourneyNotFound(JourneyError):
    pass


class InvalidTransition(JourneyError):
    """The journey's status does not allow this (publishing an archived journey…)."""


class DraftConflict(JourneyError):
    """The draft is not at the revision the writer read it at (another change came first):
    nothing is stored. `current` is its revision now (None: there is no such journey)."""

    def __init__(self, journey_id: str, expected: int | None, current: int | None) -> None:
        self.journey_id = journey_id
        self.expected = expected  # None: the writer wanted to create it (create_only)
        self.current = current
        if expected is None:
            said = f"journey {journey_id!r} exists already (its draft is at revision {current}): nothing was saved"
        elif current is None:
            said = f"there is no journey {journey_id!r} in this workspace: no draft is at revision {expected}"
        else:
            said = (
                f"the draft of journey {journey_id!r} is at revision {current}, not {expected}: "
                "it was changed since it was read, and nothing was saved"
            )
        super().__init__(said)


class InvalidDefinition(JourneyError):
    """The definition has errors; it is not stored, and never goes live."""

    def __init__(self, journey_id: str, problems: list[Problem]) -> None:
        self.journey_id = journey_id
        self.problems = problems
        errors = [p for p in problems if p.severity == ERROR]
        listed = "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"journey {journey_id!r} is not valid: {listed}{more}")


@dataclass(frozen=True, slots=True)
class Transition:
    journey_id: str
    status: str  # the status after the operation
    changed: bool  # False when the journey already was in that status
    runs_woken: int = 0  # held runs given a resume timer


def definition_json(journey: Journey) -> str:
    return orjson.dumps(journey.model_dump(mode="json", by_alias=True)).decode()


def parse_definition(text: str) -> Journey:
    return Journey.model_validate(orjson.loads(text))


def _row(conn: Connection, workspace_id: str, journey_id: str, *, lock: bool = False) -> Any:
    stmt = select(journeys).where(journeys.c.workspace_id == workspace_id, journeys.c.id == journey_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()  # two publishes at once must not pick the same version
    row = conn.execute(stmt).one_or_none()
    if row is None:
        raise JourneyNotFound(f"no journey {journey_id!r} in this workspace")
    return row


def require_workspace(conn: Connection, workspace_id: str) -> None:
    found = conn.execute(select(workspaces.c.id).where(workspaces.c.id == workspace_id)).scalar_one_or_none()
    if found is None:
        raise JourneyError(f"no workspace {workspace_id!r}")


def _validated(journey: Journey) -> Journey:
    checked, problems = check_journey(journey.model_dump(mode="json", by_alias=True))
    if checked is None:
        raise InvalidDefinition(journey.id, problems)
    return checked


# --- writing ----------------------------------------------------------------------------------


def apply_draft(
    conn: Connection,
    workspace_id: str,
    journey: Journey,
    now_ms: int,
    *,
    expected_revision: int | None = None,
    create_only: bool = False,
) -> bool:
    """Create the journey (status draft) or replace its draft. True when it was created.

    A live or paused journey keeps running its published version: the draft is edited
    beside it until the next publish. An archived journey cannot be changed. A definition
    with errors is refused (InvalidDefinition), so a stored draft is always publishable.

    Every change of the draft raises its `draft_revision` by one (a new journey's is 1).
    With `expected_revision` (the admin API's If-Match), the draft is replaced only if it is
    still at that revision, compared and set in the one UPDATE, so that of two editors who
    read revision n at once, the second is refused (DraftConflict) on PostgreSQL too, where
    its UPDATE waits for the first's and then finds the revision moved. Without it, the last
    writer wins (`nudgeflow journeys apply`: the files are the source). `create_only`
    (If-None-Match: *): only a new journey, DraftConflict when the id is taken, even by an
    insert that committed while this one waited for it.
    """
    _validated(journey)
    text = definition_json(journey)
    stmt = select(journeys).where(journeys.c.workspace_id == workspace_id, journeys.c.id == journey.id)
    existing = conn.execute(stmt).one_or_none()
    if existing is None:
        require_workspace(conn, workspace_id)
        if expected_revision is not None:
            raise DraftConflict(journey.id, expected_revision, None)
        # Another apply of this new journey may have found no row either: the insert waits
        # for it (PostgreSQL) and, when it committed, does nothing; this draft then replaces
        # that one, as an apply after it would.
        if sql.insert_one(
            conn,
            "journeys",
            ("workspace_id", "id", "name", "status", "draft", "live_version", "created_at_ms", "updated_at_ms"),
            (workspace_id, journey.id, journey.name, DRAFT, text, None, now_ms, now_ms),
            conflict="workspace_id, id",
        ):
            return True
        existing = conn.execute(stmt).one()
    if create_only:
        raise DraftConflict(journey.id, None, existing.draft_revision)
    if existing.status == ARCHIVED:
        raise InvalidTransition(
            f"journey {journey.id!r} is archived and cannot be changed (give the new one another id)"
        )
    if expected_revision is not None and existing.draft_revision != expected_revision:
        raise DraftConflict(journey.id, expected_revision, existing.draft_revision)
    if existing.draft != text or existing.name != journey.name:
        now = drafts.replace_draft(
            conn,
            journeys,
            workspace_id,
            journey.id,
            {"name": journey.name, "draft": text},
            archived=ARCHIVED,
            expected_revision=expected_revision,
            now_ms=now_ms,
        )
        if now is not None:
            if now.status == ARCHIVED:
                raise InvalidTransition(f"journey {journey.id!r} was archived and cannot be changed")
            raise DraftConflict(journey.id, expected_revision or existing.draft_revision, now.draft_revision)
    return False


def publish(conn: Connection, workspace_id: str, journey_id: str, now_ms: int, *, backfill: bool = True) -> int:
    """Freeze the draft as the next version and make it the live one; returns that version.

    The draft is checked again (the checker may have grown stricter since it was saved):
    an invalid definition never goes live. Publishing a draft identical to the live
    version makes no new version and returns the live one. A paused journey stays paused.
    A new version queues a backfill (store/backfill.py) in the same transaction, unless
    `backfill` is false (`--from-now`): the engine then shows it the people already known.
    """
    row = _row(conn, workspace_id, journey_id, lock=True)
    if row.status == ARCHIVED:
        raise InvalidTransition(f"journey {journey_id!r} is archived and cannot be published")
    try:
        draft = parse_definition(row.draft)
    except ValueError as exc:
        raise InvalidDefinition(
            journey_id, [Problem("", f"the stored draft no longer reads as a journey: {exc}")]
        ) from exc
    _validated(draft)
    if row.live_version is not None:
        live_text = conn.execute(
            select(journey_versions.c.definition).where(
                journey_versions.c.workspace_id == workspace_id,
                journey_versions.c.journey_id == journey_id,
                journey_versions.c.version == row.live_version,
            )
        ).scalar_one_or_none()
        if live_text is not None and orjson.loads(live_text) == orjson.loads(row.draft):
            if row.status == DRAFT:  # cannot happen through these functions; repair rather than refuse
                _set_status(conn, row, LIVE, now_ms)
            return int(row.live_version)
    latest = conn.execute(
        select(func.max(journey_versions.c.version)).where(
            journey_versions.c.workspace_id == workspace_id, journey_versions.c.journey_id == journey_id
        )
    ).scalar_one_or_none()
    version = int(latest or 0) + 1
    conn.execute(
        insert(journey_versions).values(
            workspace_id=workspace_id,
            journey_id=journey_id,
            version=version,
            definition=row.draft,
            published_at_ms=now_ms,
        )
    )
    conn.execute(
        update(journeys)
        .where(journeys.c.workspace_id == workspace_id, journeys.c.id == journey_id)
        .values(
            live_version=version,
            status=PAUSED if row.status == PAUSED else LIVE,
            updated_at_ms=drafts.touch(journeys, now_ms),
        )
    )
    if backfill:
        backfills.start(conn, workspace_id, journey_id, version, now_ms)
    return version


def _set_status(conn: Connection, row: Any, status: str, now_ms: int) -> None:
    conn.execute(
        update(journeys)
        .where(journeys.c.workspace_id == row.workspace_id, journeys.c.id == row.id)
        .values(status=status, updated_at_ms=drafts.touch(journeys, now_ms))
    )


def pause(conn: Connection, workspace_id: str, journey_id: str, now_ms: int) -> Transition:
    """Stop new entries; runs are held when they next move (the engine holds them)."""
    row = _row(conn, workspace_id, journey_id, lock=True)
    if row.status == PAUSED:
        return Transition(journey_id, PAUSED, False)
    if row.status == DRAFT:
        raise InvalidTransition(f"journey {journey_id!r} was never published: there is nothing to pause")
    if row.status == ARCHIVED:
        raise InvalidTransition(f"journey {journey_id!r} is archived and cannot be paused")
    _set_status(conn, row, PAUSED, now_ms)
    return Transition(journey_id, PAUSED, True)


def resume(conn: Connection, workspace_id: str, journey_id: str, now_ms: int) -> Transition:
    """Go live again and, in the same transaction, give every held run a timer due now."""
    row = _row(conn, workspace_id, journey_id, lock=True)
    if row.status == LIVE:
        return Transition(journey_id, LIVE, False)
    if row.status == DRAFT:
        raise InvalidTransition(f"journey {journey_id!r} is a draft: publish it instead of resuming it")
    if row.status == ARCHIVED:
        raise InvalidTransition(f"journey {journey_id!r} is archived and cannot be resumed")
    _set_status(conn, row, LIVE, now_ms)
    woken = _wake_held_runs(conn, workspace_id, journey_id, now_ms)
    return Transition(journey_id, LIVE, True, woken)


def archive(conn: Connection, workspace_id: str, journey_id: str, now_ms: int) -> Transition:
    """Retire the journey for good. Held runs get a timer too, so the engine ends them."""
    row = _row(conn, workspace_id, journey_id, lock=True)
    if row.status == ARCHIVED:
        return Transition(journey_id, ARCHIVED, False)
    _set_status(conn, row, ARCHIVED, now_ms)
    woken = _wake_held_runs(conn, workspace_id, journey_id, now_ms) if row.status == PAUSED else 0
    return Transition(journey_id, ARCHIVED, True, woken)


_WAKE_CHUNK = 1000


def _wake_held_runs(conn: Connection, workspace_id: str, journey_id: str, now_ms: int) -> int:
    """One `resume:<run id>` timer per held run, due now; re-arming an existing one replaces it."""
    held = conn.execute(
        select(journey_runs.c.id, journey_runs.c.profile_id).where(
            journey_runs.c.workspace_id == workspace_id,
            journey_runs.c.journey_id == journey_id,
            journey_runs.c.status == HELD,
        )
    ).all()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for start in range(0, len(held), _WAKE_CHUNK):
        rows = [
            {
                "profile_id": profile_id,
                "key": f"resume:{run_id}",
                "workspace_id": workspace_id,
                "due_at_ms": now_ms,
                "payload": orjson.dumps({"kind": "resume", "run_id": run_id}).decode(),
                "partition": partition_log.partition_for(conn, workspace_id, profile_id),
            }
            for run_id, profile_id in held[start : start + _WAKE_CHUNK]
        ]
        stmt = dialect.insert(timers)
        stmt = stmt.on_conflict_do_update(
            index_elements=[timers.c.profile_id, timers.c.key],
            set_={
                "due_at_ms": stmt.excluded.due_at_ms,
                "payload": stmt.excluded.payload,
                "workspace_id": stmt.excluded.workspace_id,
                "partition": stmt.excluded.partition,
            },
        )
        conn.execute(stmt, rows)
    return len(held)


# --- reading ----------------------------------------------------------------------------------


def _live_definitions(conn: Connection, workspace_id: str, journey_id: str | None = None) -> dict[str, str]:
    stmt = (
        select(journeys.c.id, journey_versions.c.definition)
        .select_from(
            journeys.join(
                journey_versions,
                and_(
                    journey_versions.c.workspace_id == journeys.c.workspace_id,
                    journey_versions.c.journey_id == journeys.c.id,
                    journey_versions.c.version == journeys.c.live_version,
                ),
            )
        )
        .where(journeys.c.workspace_id == workspace_id)
    )
    if journey_id is not None:
        stmt = stmt.where(journeys.c.id == journey_id)
    return {jid: text for jid, text in conn.execute(stmt)}


def _summary(row: Any, live_text: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "live_version": row.live_version,
        "draft_revision": row.draft_revision,
        # Compared as data: the same definition written twice is not a change.
        "draft_changed": live_text is None or orjson.loads(live_text) != orjson.loads(row.draft),
        "created_at_ms": row.created_at_ms,
        "updated_at_ms": row.updated_at_ms,
    }


def list_journeys(conn: Connection, workspace_id: str) -> list[dict[str, Any]]:
    """Every journey of the workspace, by id: status, live version, and whether the draft
    differs from it (`draft_changed`; always true for a journey never published)."""
    live = _live_definitions(conn, workspace_id)
    rows = conn.execute(select(journeys).where(journeys.c.workspace_id == workspace_id).order_by(journeys.c.id))
    return [_summary(row, live.get(row.id)) for row in rows]


def get_journey(conn: Connection, workspace_id: str, journey_id: str) -> dict[str, Any] | None:
    """The summary of list_journeys, the draft definition, and the versions (oldest first)."""
    row = conn.execute(
        select(journeys).where(journeys.c.workspace_id == workspace_id, journeys.c.id == journey_id)
    ).one_or_none()
    if row is None:
        return None
    live = _live_definitions(conn, workspace_id, journey_id)
    out = _summary(row, live.get(journey_id))
    out["draft"] = orjson.loads(row.draft)
    out["versions"] = [
        {"version": version, "published_at_ms": published}
        for version, published in conn.execute(
            select(journey_versions.c.version, journey_versions.c.published_at_ms)
            .where(journey_versions.c.workspace_id == workspace_id, journey_versions.c.journey_id == journey_id)
            .order_by(journey_versions.c.version)
        )
    ]
    return out


def run_outcomes(conn: Connection, workspace_id: str) -> list[Any]:
    """(journey_id, status, exit_reason, holdout, converted_at_ms, revenue, control) of every
    run of the workspace, in no particular order (the demo's report counts them per journey)."""
    r = journey_runs.c
    return list(
        conn.execute(
            select(r.journey_id, r.status, r.exit_reason, r.holdout, r.converted_at_ms, r.revenue, r.control).where(
                r.workspace_id == workspace_id
            )
        ).all()
    )


def status_of(conn: Connection, workspace_id: str, journey_id: str) -> tuple[str, int | None] | None:
    """(status, live version) of a journey; None when there is no such journey."""
    row = conn.execute(
        select(journeys.c.status, journeys.c.live_version).where(
            journeys.c.workspace_id == workspace_id, journeys.c.id == journey_id
        )
    ).one_or_none()
    return None if row is None else (row.status, row.live_version)


def live_journeys(conn: Connection) -> list[tuple[str, JourneyVersion]]:
    """(workspace id, live version) of every live journey of every workspace (not the paused):
    what the experiment evaluator looks at."""
    stmt = (
        select(journeys.c.workspace_id, journeys.c.id, journeys.c.live_version, journey_versions.c.definition)
        .select_from(
            journeys.join(
                journey_versions,
                and_(
                    journey_versions.c.workspace_id == journeys.c.workspace_id,
                    journey_versions.c.journey_id == journeys.c.id,
                    journey_versions.c.version == journeys.c.live_version,
                ),
            )
        )
        .where(journeys.c.status == LIVE)
        .order_by(journeys.c.workspace_id, journeys.c.id)
    )
    return [
        (row.workspace_id, JourneyVersion(row.id, row.live_version, parse_definition(row.definition)))
        for row in conn.execute(stmt)
    ]


def load_version(conn: Connection, workspace_id: str, journey_id: str, version: int) -> Journey | None:
    text = conn.execute(
        select(journey_versions.c.definition).where(
            journey_versions.c.workspace_id == workspace_id,
            journey_versions.c.journey_id == journey_id,
            journey_versions.c.version == version,
        )
    ).scalar_one_or_none()
    return parse_definition(text) if text is not None else None


def load_catalog(source: Engine | Connection, workspace_id: str) -> Catalog:
    """The catalog the engine runs: live versions of live and paused journeys, every status,
    the workspace's send policies in force (store/policies.py), the live version of every
    live segment (store/segments.py), the active experiment decisions of the live versions
    (store/experiment_decisions.py) and, when a live journey uses `send_time`, the
    workspace's pattern of attention by local hour (store/send_time.py).

    `source` is an Engine or a Connection. The catalog is read through it now; older
    versions (for runs that entered before the latest publish) are read later, on demand,
    each through a short connection of its own from the same Engine (`conn.engine` for a
    Connection), because the catalog outlives the transaction that built it. Versions
    never change, so that later read cannot disagree with this one.
    """
    engine = source if isinstance(source, Engine) else source.engine
    if isinstance(source, Engine):
        with source.connect() as conn:
            live, statuses = _catalog_rows(conn, workspace_id)
            places = _catalog_places(conn, workspace_id, live)
            policies = policy_store.load(conn, workspace_id)
            live_segments = segment_store.live_segments(conn, workspace_id)
            prior = _send_time_prior(conn, workspace_id, live)
            decided = decisions.active_for(conn, workspace_id, [(jv.journey_id, jv.version) for jv in live])
    else:
        live, statuses = _catalog_rows(source, workspace_id)
        places = _catalog_places(source, workspace_id, live)
        policies = policy_store.load(source, workspace_id)
        live_segments = segment_store.live_segments(source, workspace_id)
        prior = _send_time_prior(source, workspace_id, live)
        decided = decisions.active_for(source, workspace_id, [(jv.journey_id, jv.version) for jv in live])

    def loader(journey_id: str, version: int) -> Journey | None:
        with engine.connect() as conn:
            return load_version(conn, workspace_id, journey_id, version)

    return Catalog(
        live=live,
        statuses=statuses,
        load_version=loader,
        places=places,
        policies=policies,
        segments=live_segments,
        send_time_prior=prior,
        experiment_decisions=decided,
    )


def _send_time_prior(conn: Connection, workspace_id: str, live: list[JourneyVersion]) -> Prior | None:
    """The workspace's pattern by local hour (store/send_time.py), read only when a live
    journey has a step with `send_time`: most workspaces pay nothing for it."""
    if not any(uses_send_time(jv.definition) for jv in live):
        return None
    from nudgeflow.store.send_time import load_prior

    return load_prior(conn, workspace_id)


def uses_send_time(journey: Journey) -> bool:
    return any(getattr(step, "send_time", None) is not None for step in journey.steps.values())


def _catalog_places(conn: Connection, workspace_id: str, live: list[JourneyVersion]) -> list[dict[str, Any]]:
    """The places catalog, as data for the core, when a live journey's location trigger
    takes its places from it (read only then: most workspaces have none)."""
    if not any(getattr(jv.definition.trigger, "catalog_places", None) is not None for jv in live):
        return []
    from nudgeflow.store.catalog import all_items

    return all_items(conn, workspace_id, "places")


def _catalog_rows(conn: Connection, workspace_id: str) -> tuple[list[JourneyVersion], dict[str, str]]:
    statuses: dict[str, str] = {}
    versions: dict[str, int] = {}
    for jid, status, live_version in conn.execute(
        select(journeys.c.id, journeys.c.status, journeys.c.live_version).where(journeys.c.workspace_id == workspace_id)
    ):
        statuses[jid] = status
        if status in (LIVE, PAUSED) and live_version is not None:
            versions[jid] = live_version
    definitions = _live_definitions(conn, workspace_id)
    live = [
        JourneyVersion(jid, version, parse_definition(definitions[jid]))
        for jid, version in sorted(versions.items())
        if jid in definitions
    ]
    return live, statuses


def catalog_fingerprint(conn: Connection, workspace_id: str) -> tuple[int, ...]:
    """(count, max, sum of updated_at_ms) over the workspace's journeys, (count, max of
    updated_at_ms) over its places catalog (location triggers read it), the version of its
    send policies in force, (count, max, sum of updated_at_ms) over its segments, and
    (count, newest id, count cleared) over its experiment decisions: one cheap query.

    Every change to a journey or a segment raises its updated_at_ms by at least 1 ms, so the
    sum moves on every change, even several within one millisecond; every policies apply
    that changes anything is a new version. The engine reloads the catalog only when the
    fingerprint differs from the one it loaded with: a segment applied (or archived) takes
    effect in the running engine as a journey published does, and so does an experiment
    decision recorded or cleared.
    """
    place_count = (
        select(func.count())
        .select_from(catalog_places)
        .where(catalog_places.c.workspace_id == workspace_id)
        .scalar_subquery()
    )
    place_newest = (
        select(func.max(catalog_places.c.updated_at_ms))
        .where(catalog_places.c.workspace_id == workspace_id)
        .scalar_subquery()
    )
    policies_version = (
        select(func.max(policy_versions.c.version))
        .where(policy_versions.c.workspace_id == workspace_id)
        .scalar_subquery()
    )
    in_workspace = segments.c.workspace_id == workspace_id
    segment_count = select(func.count()).select_from(segments).where(in_workspace).scalar_subquery()
    segment_newest = select(func.max(segments.c.updated_at_ms)).where(in_workspace).scalar_subquery()
    segment_total = select(func.sum(segments.c.updated_at_ms)).where(in_workspace).scalar_subquery()
    # Experiment decisions are only added and cleared (store/experiment_decisions.py): the
    # count, newest id and count cleared move on every change.
    decided = experiment_decisions.c
    of_workspace = decided.workspace_id == workspace_id
    decision_count = select(func.count()).select_from(experiment_decisions).where(of_workspace).scalar_subquery()
    decision_newest = select(func.max(decided.id)).where(of_workspace).scalar_subquery()
    decision_cleared = select(func.count(decided.cleared_at_ms)).where(of_workspace).scalar_subquery()
    row = conn.execute(
        select(
            func.count(),
            func.max(journeys.c.updated_at_ms),
            func.sum(journeys.c.updated_at_ms),
            place_count,
            place_newest,
            policies_version,
            segment_count,
            segment_newest,
            segment_total,
            decision_count,
            decision_newest,
            decision_cleared,
        ).where(journeys.c.workspace_id == workspace_id)
    ).one()
    return tuple(int(value or 0) for value in row)


def trigger_types(conn: Connection, workspace_id: str) -> dict[str, str]:
    """Journey id -> its trigger's type (event, inactivity, segment…), from the live version,
    or the draft of a journey never published: what reports group journeys by."""
    live = _live_definitions(conn, workspace_id)
    out: dict[str, str] = {}
    for jid, draft in conn.execute(
        select(journeys.c.id, journeys.c.draft).where(journeys.c.workspace_id == workspace_id)
    ):
        try:
            trigger = orjson.loads(live.get(jid) or draft).get("trigger") or {}
            out[jid] = str(trigger.get("type") or "unknown")
        except (orjson.JSONDecodeError, AttributeError):
            out[jid] = "unknown"
    return out
