"""Segments in the database: definitions and versions, who is in each now, and sizes per day.

A segment row holds the editable draft and the status; applying a changed definition
freezes it in `segment_versions` as the next version and makes that the live one, with the
same rules as journeys (store/journeys.py). Statuses:

    draft    --apply(draft=True)-->  draft     (stored, not live; nothing computes it)
    draft    --publish----------->  live      (version 1)
    live     --publish----------->  live      (version n+1; an unchanged draft makes none)
    any      --archive----------->  archived  (final: not computed; its members are let go)

Every new version queues an *apply* (`segment_applies`, like a journey's backfill): the
engine computes the version for the people already stored, in profile id order, a batch at
a time (runtime/segments.py). When it ends, the row says how many people the segment held
and as of which event of the log (`size`, `as_of_seq`).

Membership is written by the engine with its decisions (`write_changes`, from the core's
SegmentChanged through store/effects_writer.py): a row of `segment_members` per member,
and per UTC day the people who entered and left (`segment_daily_sizes`). Both are changed
by the same statements, so the running sum of entered - exited over the days is always
the number of members rows; nothing is ever recounted.

Every function takes a Connection and leaves committing to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, func, insert, select, update

from nudgeflow.core.segment_index import SegmentVersion
from nudgeflow.errors import StoreError
from nudgeflow.model.journey_checks import ERROR, Problem, segment_refs
from nudgeflow.model.journeys import Journey
from nudgeflow.model.segment_checks import check_segment, circle_among
from nudgeflow.model.segments import Segment, referenced_segments
from nudgeflow.store import drafts, sql
from nudgeflow.store.schema import (
    engine_cursors,
    journey_versions,
    journeys,
    segment_applies,
    segment_daily_sizes,
    segment_members,
    segment_versions,
    segments,
    workspaces,
)

DRAFT, LIVE, ARCHIVED = "draft", "live", "archived"
PENDING, DONE, CANCELLED = "pending", "done", "cancelled"
DAY_MS = 86_400_000
MAX_PAGE = 1000  # members per page
MAX_DAYS = 3660  # daily sizes given at most (ten years)


class SegmentError(StoreError, ValueError):
    """A segment operation that cannot be done; the message says why."""


class SegmentNotFound(SegmentError):
    pass


class SegmentRefused(SegmentError):
    """The segment's status, or what refers to it, does not allow this (archiving a segment
    a live journey uses, changing an archived one)."""


class DraftConflict(SegmentError):
    """The draft is not at the revision the writer read it at (another change came first):
    nothing is stored. `current` is its revision now (None: there is no such segment)."""

    def __init__(self, segment_id: str, expected: int | None, current: int | None) -> None:
        self.segment_id = segment_id
        self.expected = expected  # None: the writer wanted to create it (create_only)
        self.current = current
        if expected is None:
            said = f"segment {segment_id!r} exists already (its draft is at revision {current}): nothing was saved"
        elif current is None:
            said = f"there is no segment {segment_id!r} in this workspace: no draft is at revision {expected}"
        else:
            said = (
                f"the draft of segment {segment_id!r} is at revision {current}, not {expected}: "
                "it was changed since it was read, and nothing was saved"
            )
        super().__init__(said)


class InvalidSegment(SegmentError):
    """The definition has errors; it is not stored, and never goes live."""

    def __init__(self, segment_id: str, problems: list[Problem]) -> None:
        self.segment_id = segment_id
        self.problems = problems
        errors = [p for p in problems if p.severity == ERROR]
        listed = "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"segment {segment_id!r} is not valid: {listed}{more}")


@dataclass(frozen=True, slots=True)
class Applied:
    segment_id: str
    created: bool  # the segment did not exist before
    status: str  # after the operation
    version: int | None  # the live version after it (None for a draft)
    new_version: bool  # this call made a version (and queued its computation)


def definition_json(segment: Segment) -> str:
    return orjson.dumps(segment.model_dump(mode="json", by_alias=True)).decode()


def parse_definition(text: str) -> Segment:
    return Segment.model_validate(orjson.loads(text))


def day_of(ms: int) -> int:
    """The UTC day (days since 1970-01-01) a time falls on: the unit of the daily sizes."""
    return ms // DAY_MS


def _row(conn: Connection, workspace_id: str, segment_id: str, *, lock: bool = False) -> Any:
    stmt = select(segments).where(segments.c.workspace_id == workspace_id, segments.c.id == segment_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()  # two applies at once must not pick the same version
    row = conn.execute(stmt).one_or_none()
    if row is None:
        raise SegmentNotFound(f"no segment {segment_id!r} in this workspace")
    return row


def require_workspace(conn: Connection, workspace_id: str) -> None:
    found = conn.execute(select(workspaces.c.id).where(workspaces.c.id == workspace_id)).scalar_one_or_none()
    if found is None:
        raise SegmentError(f"no workspace {workspace_id!r}")


# --- writing definitions ------------------------------------------------------------------------


def apply(
    conn: Connection,
    workspace_id: str,
    segment: Segment,
    now_ms: int,
    *,
    draft: bool = False,
    expected_revision: int | None = None,
    create_only: bool = False,
) -> Applied:
    """Create or update the segment and (unless `draft`) make the definition live.

    Every change of the draft raises its `draft_revision` by one (a new segment's is 1); with
    `expected_revision` (If-Match) the draft is replaced only if it is still at that revision,
    compared and set in the one UPDATE, as store/journeys.apply_draft does (DraftConflict
    otherwise, and nothing is stored or made live). Without it, the last writer wins.
    `create_only` (If-None-Match: *): only a new segment, DraftConflict when the id is taken.

    The definition is checked again, with its references: every segment it names must be
    live in the workspace (apply several in one transaction, those referred to first), and
    references must not go round in a circle. A definition equal to the live version makes
    no new version. A new version queues its computation over the people already stored
    (`start_apply`), and cancels an unfinished one of an older version.
    """
    live = live_definitions(conn, workspace_id)
    others = {sid: s for sid, s in live.items() if sid != segment.id}
    checked, problems = check_segment(segment.model_dump(mode="json", by_alias=True), known=set(others))
    if checked is None:
        raise InvalidSegment(segment.id, problems)
    _refuse_circle(segment, live)
    text = definition_json(segment)
    existing = conn.execute(
        select(segments).where(segments.c.workspace_id == workspace_id, segments.c.id == segment.id)
    ).one_or_none()
    created = False
    if existing is None:
        require_workspace(conn, workspace_id)
        if expected_revision is not None:
            raise DraftConflict(segment.id, expected_revision, None)
        # Another apply of this new segment may have found no row either: the insert waits
        # for it (PostgreSQL) and, when it committed, does nothing; this definition then
        # follows that one, as an apply after it would.
        created = sql.insert_one(
            conn,
            "segments",
            ("workspace_id", "id", "name", "status", "draft", "live_version", "created_at_ms", "updated_at_ms"),
            (workspace_id, segment.id, segment.name, DRAFT, text, None, now_ms, now_ms),
            conflict="workspace_id, id",
        )
        if not created:
            existing = _row(conn, workspace_id, segment.id)
    if existing is not None and create_only:
        raise DraftConflict(segment.id, None, existing.draft_revision)
    if existing is not None:
        if existing.status == ARCHIVED:
            raise SegmentRefused(
                f"segment {segment.id!r} is archived and cannot be changed (give the new one another id)"
            )
        if expected_revision is not None and existing.draft_revision != expected_revision:
            raise DraftConflict(segment.id, expected_revision, existing.draft_revision)
        if existing.draft != text or existing.name != segment.name:
            _replace_draft(conn, workspace_id, segment, text, existing, now_ms, expected_revision)
    if draft:
        row = _row(conn, workspace_id, segment.id)
        return Applied(segment.id, created, row.status, row.live_version, False)
    version, new = publish(conn, workspace_id, segment.id, now_ms)
    return Applied(segment.id, created, LIVE, version, new)


def _replace_draft(
    conn: Connection,
    workspace_id: str,
    segment: Segment,
    text: str,
    existing: Any,
    now_ms: int,
    expected_revision: int | None,
) -> None:
    """The compare-and-set of apply() (store/drafts.replace_draft)."""
    now = drafts.replace_draft(
        conn,
        segments,
        workspace_id,
        segment.id,
        {"name": segment.name, "draft": text},
        archived=ARCHIVED,
        expected_revision=expected_revision,
        now_ms=now_ms,
    )
    if now is not None:
        if now.status == ARCHIVED:
            raise SegmentRefused(f"segment {segment.id!r} was archived and cannot be changed")
        raise DraftConflict(segment.id, expected_revision or existing.draft_revision, now.draft_revision)


def _refuse_circle(segment: Segment, live: Mapping[str, Segment]) -> None:
    circle = circle_among([segment], live)
    if circle is not None:
        raise InvalidSegment(
            segment.id, [Problem("when", "segments refer to each other in a circle: " + " -> ".join(circle))]
        )


def publish(conn: Connection, workspace_id: str, segment_id: str, now_ms: int) -> tuple[int, bool]:
    """Make the stored draft live: (the live version, whether it is a new one)."""
    row = _row(conn, workspace_id, segment_id, lock=True)
    if row.status == ARCHIVED:
        raise SegmentRefused(f"segment {segment_id!r} is archived and cannot be applied")
    draft = parse_definition(row.draft)
    if row.live_version is not None:
        live_text = conn.execute(
            select(segment_versions.c.definition).where(
                segment_versions.c.workspace_id == workspace_id,
                segment_versions.c.segment_id == segment_id,
                segment_versions.c.version == row.live_version,
            )
        ).scalar_one_or_none()
        if live_text is not None and orjson.loads(live_text) == orjson.loads(row.draft):
            return int(row.live_version), False
    live = live_definitions(conn, workspace_id)
    others = {sid for sid in live if sid != segment_id}
    missing = sorted(referenced_segments(draft.when) - others)
    if missing:
        raise InvalidSegment(
            segment_id,
            [Problem("when", f"no live segment {m!r}: apply it first, or in the same files") for m in missing],
        )
    # Checked again here, not only when the draft was stored: a segment it refers to may have
    # come to refer back to it since, and the engine cannot order live segments in a circle.
    _refuse_circle(draft, live)
    latest = conn.execute(
        select(func.max(segment_versions.c.version)).where(
            segment_versions.c.workspace_id == workspace_id, segment_versions.c.segment_id == segment_id
        )
    ).scalar_one_or_none()
    version = int(latest or 0) + 1
    conn.execute(
        insert(segment_versions).values(
            workspace_id=workspace_id,
            segment_id=segment_id,
            version=version,
            definition=row.draft,
            published_at_ms=now_ms,
        )
    )
    conn.execute(
        update(segments)
        .where(segments.c.workspace_id == workspace_id, segments.c.id == segment_id)
        .values(live_version=version, status=LIVE, updated_at_ms=drafts.touch(segments, now_ms))
    )
    start_apply(conn, workspace_id, segment_id, version, now_ms)
    return version, True


def archive(conn: Connection, workspace_id: str, segment_id: str, now_ms: int) -> bool:
    """Retire the segment for good: the engine stops computing it, its members are let go
    (counted as leaving today), its unfinished computation is cancelled. Refused while a
    live or paused journey or another live segment refers to it. False when it already was."""
    row = _row(conn, workspace_id, segment_id, lock=True)
    if row.status == ARCHIVED:
        return False
    users = [
        f"segment {sid!r}"
        for sid, live in live_definitions(conn, workspace_id).items()
        if segment_id in referenced_segments(live.when)
    ]
    users += [f"journey {jid!r}" for jid in journeys_using(conn, workspace_id, segment_id)]
    if users:
        raise SegmentRefused(
            f"segment {segment_id!r} is used by {', '.join(sorted(users))}: change or archive those first"
        )
    conn.execute(
        update(segments)
        .where(segments.c.workspace_id == workspace_id, segments.c.id == segment_id)
        .values(status=ARCHIVED, updated_at_ms=drafts.touch(segments, now_ms))
    )
    conn.execute(
        update(segment_applies)
        .where(
            segment_applies.c.workspace_id == workspace_id,
            segment_applies.c.segment_id == segment_id,
            segment_applies.c.status == PENDING,
        )
        .values(status=CANCELLED, updated_at_ms=now_ms, finished_at_ms=now_ms)
    )
    left = conn.execute(
        delete(segment_members).where(
            segment_members.c.workspace_id == workspace_id, segment_members.c.segment_id == segment_id
        )
    ).rowcount
    _count(conn, {(workspace_id, segment_id, day_of(now_ms)): (0, int(left or 0))})
    return True


def live_definitions(conn: Connection, workspace_id: str) -> dict[str, Segment]:
    """The live version of each live segment of the workspace, by id."""
    return {sv.segment_id: sv.definition for sv in live_segments(conn, workspace_id)}


def journeys_using(conn: Connection, workspace_id: str, segment_id: str) -> list[str]:
    """The live or paused journeys whose live version names this segment (a segment trigger,
    a `segment` condition, `exit.segment`)."""
    rows = conn.execute(
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
        .where(journeys.c.workspace_id == workspace_id, journeys.c.status.in_(("live", "paused")))
        .order_by(journeys.c.id)
    )
    return [
        jid
        for jid, text in rows
        if any(ref == segment_id for _path, ref in segment_refs(Journey.model_validate(orjson.loads(text))))
    ]


# --- reading definitions --------------------------------------------------------------------------


def live_segments(conn: Connection, workspace_id: str) -> list[SegmentVersion]:
    """The live version of every live segment of the workspace, by id."""
    rows = conn.execute(
        select(segments.c.id, segment_versions.c.version, segment_versions.c.definition)
        .select_from(
            segments.join(
                segment_versions,
                and_(
                    segment_versions.c.workspace_id == segments.c.workspace_id,
                    segment_versions.c.segment_id == segments.c.id,
                    segment_versions.c.version == segments.c.live_version,
                ),
            )
        )
        .where(segments.c.workspace_id == workspace_id, segments.c.status == LIVE)
        .order_by(segments.c.id)
    )
    return [SegmentVersion(sid, int(version), parse_definition(text)) for sid, version, text in rows]


def load_version(conn: Connection, workspace_id: str, segment_id: str, version: int) -> Segment | None:
    text = conn.execute(
        select(segment_versions.c.definition).where(
            segment_versions.c.workspace_id == workspace_id,
            segment_versions.c.segment_id == segment_id,
            segment_versions.c.version == version,
        )
    ).scalar_one_or_none()
    return parse_definition(text) if text is not None else None


def fingerprint(conn: Connection, workspace_id: str) -> tuple[int, int, int]:
    """(count, max, sum of updated_at_ms) over the workspace's segments: moves on every change
    (each raises its segment's updated_at_ms), so the engine reloads its catalog."""
    count, newest, total = conn.execute(
        select(func.count(), func.max(segments.c.updated_at_ms), func.sum(segments.c.updated_at_ms)).where(
            segments.c.workspace_id == workspace_id
        )
    ).one()
    return int(count), int(newest or 0), int(total or 0)


def _summary(row: Any, live_text: str | None, sizes: Mapping[str, int], job: Apply | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "live_version": row.live_version,
        "draft_revision": row.draft_revision,
        "draft_changed": live_text is None or orjson.loads(live_text) != orjson.loads(row.draft),
        "size": sizes.get(row.id, 0) if row.status == LIVE else None,
        "computed": _computed(job),
        "created_at_ms": row.created_at_ms,
        "updated_at_ms": row.updated_at_ms,
    }


def _computed(job: Apply | None) -> dict[str, Any] | None:
    """The latest version's computation over the stored people: how far it went, and (when
    done) the size it found and as of which event of the log."""
    if job is None:
        return None
    return {
        "version": job.version,
        "status": job.status,
        "profiles_done": job.profiles_done,
        "size": job.size,
        "as_of_seq": job.as_of_seq,
        "started_at_ms": job.created_at_ms,
        "finished_at_ms": job.finished_at_ms,
    }


def _live_texts(conn: Connection, workspace_id: str, segment_id: str | None = None) -> dict[str, str]:
    stmt = (
        select(segments.c.id, segment_versions.c.definition)
        .select_from(
            segments.join(
                segment_versions,
                and_(
                    segment_versions.c.workspace_id == segments.c.workspace_id,
                    segment_versions.c.segment_id == segments.c.id,
                    segment_versions.c.version == segments.c.live_version,
                ),
            )
        )
        .where(segments.c.workspace_id == workspace_id)
    )
    if segment_id is not None:
        stmt = stmt.where(segments.c.id == segment_id)
    return {sid: text for sid, text in conn.execute(stmt)}


def sizes(conn: Connection, workspace_id: str, segment_id: str | None = None) -> dict[str, int]:
    """Members per segment now, exact: the daily sizes summed (every write of the members
    rows counts itself there, in its transaction: write_changes, archive), which reads a
    row per segment and day rather than every members row of a segment of millions."""
    d = segment_daily_sizes.c
    stmt = (
        select(d.segment_id, func.sum(d.entered - d.exited))
        .where(d.workspace_id == workspace_id)
        .group_by(d.segment_id)
    )
    if segment_id is not None:
        stmt = stmt.where(d.segment_id == segment_id)
    return {sid: int(n) for sid, n in conn.execute(stmt) if n}


def list_segments(conn: Connection, workspace_id: str) -> list[dict[str, Any]]:
    """Every segment of the workspace, by id: status, live version, size, its computation."""
    live = _live_texts(conn, workspace_id)
    counts = sizes(conn, workspace_id)
    jobs = latest_applies(conn, workspace_id)
    rows = conn.execute(select(segments).where(segments.c.workspace_id == workspace_id).order_by(segments.c.id))
    return [_summary(row, live.get(row.id), counts, jobs.get(row.id)) for row in rows]


def get_segment(
    conn: Connection, workspace_id: str, segment_id: str, today: int | None = None
) -> dict[str, Any] | None:
    """The summary of list_segments, the draft and live definitions, the versions (oldest
    first), and the daily sizes through `today` (a UTC day; None: the last day with a
    change); `as_of_seq` / `as_of_ms`: the event of the log the size is exact as of, and
    when the engine reached it (`as_of`)."""
    row = conn.execute(
        select(segments).where(segments.c.workspace_id == workspace_id, segments.c.id == segment_id)
    ).one_or_none()
    if row is None:
        return None
    live = _live_texts(conn, workspace_id, segment_id)
    jobs = latest_applies(conn, workspace_id, segment_id)
    out = _summary(row, live.get(segment_id), sizes(conn, workspace_id, segment_id), jobs.get(segment_id))
    out["draft"] = orjson.loads(row.draft)
    out["definition"] = orjson.loads(live[segment_id]) if segment_id in live else None
    out["as_of_seq"], out["as_of_ms"] = as_of(conn)
    out["versions"] = [
        {"version": version, "published_at_ms": published}
        for version, published in conn.execute(
            select(segment_versions.c.version, segment_versions.c.published_at_ms)
            .where(segment_versions.c.workspace_id == workspace_id, segment_versions.c.segment_id == segment_id)
            .order_by(segment_versions.c.version)
        )
    ]
    out["daily"] = daily_sizes(conn, workspace_id, segment_id, today)
    return out


def status_of(conn: Connection, workspace_id: str, segment_id: str) -> tuple[str, int | None] | None:
    """(status, live version) of a segment; None when there is no such segment."""
    row = conn.execute(
        select(segments.c.status, segments.c.live_version).where(
            segments.c.workspace_id == workspace_id, segments.c.id == segment_id
        )
    ).one_or_none()
    return None if row is None else (row.status, row.live_version)


def daily_sizes(
    conn: Connection, workspace_id: str, segment_id: str, through: int | None = None
) -> list[dict[str, int]]:
    """Every UTC day from the first change through `through` (None: the last day with a
    change), oldest first: {day (days since the epoch), entered, exited, size at the end of
    the day}. A day without a change carries the size over."""
    found = {
        int(day): (int(entered), int(exited))
        for day, entered, exited in conn.execute(
            select(segment_daily_sizes.c.day, segment_daily_sizes.c.entered, segment_daily_sizes.c.exited).where(
                segment_daily_sizes.c.workspace_id == workspace_id, segment_daily_sizes.c.segment_id == segment_id
            )
        )
    }
    if not found:
        return []
    first, last = min(found), max(found)
    if through is not None:
        last = max(last, through)
    first = max(first, last - MAX_DAYS + 1)  # the newest MAX_DAYS; the size before them is carried in
    size = sum(e - x for day, (e, x) in found.items() if day < first)
    out: list[dict[str, int]] = []
    for day in range(first, last + 1):
        entered, exited = found.get(day, (0, 0))
        size += entered - exited
        out.append({"day": day, "entered": entered, "exited": exited, "size": size})
    return out


def members(
    conn: Connection, workspace_id: str, segment_id: str, after: str = "", limit: int = 100
) -> list[tuple[str, int]]:
    """The next `limit` members after profile id `after`, in id order: (profile id, since_ms)."""
    return _members(conn, workspace_id, segment_id, after, max(1, min(limit, MAX_PAGE)))


def members_page(
    conn: Connection, workspace_id: str, segment_id: str, after: str = "", limit: int = 100
) -> tuple[list[tuple[str, int]], str | None]:
    """members(), and the `after` of the next page: None on the last page, a full one too
    (one more row is read to tell)."""
    limit = max(1, min(limit, MAX_PAGE))
    found = _members(conn, workspace_id, segment_id, after, limit + 1)
    return found[:limit], (found[limit - 1][0] if len(found) > limit else None)


def _members(conn: Connection, workspace_id: str, segment_id: str, after: str, limit: int) -> list[tuple[str, int]]:
    m = segment_members.c
    rows = conn.execute(
        select(m.profile_id, m.since_ms)
        .where(m.workspace_id == workspace_id, m.segment_id == segment_id, m.profile_id > after)
        .order_by(m.profile_id)
        .limit(limit)
    )
    return [(pid, int(since)) for pid, since in rows]


def memberships(conn: Connection, workspace_id: str, profile_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """The segments of the workspace each of these people is in: {profile: {segment: since_ms}}."""
    out: dict[str, dict[str, int]] = {}
    for sid, pid, since in _of_people(conn, workspace_id, profile_ids, archived=False):
        out.setdefault(pid, {})[sid] = int(since)
    return out


# A person's memberships: segment_members has no index by profile (migration 0027: one
# B-tree per change for the engine to write), so each segment of the workspace has its
# primary key probed for these people, the segments being the outer loop (CROSS JOIN fixes
# that order on SQLite; PostgreSQL plans it from its statistics). Every members row has its
# segment's row.
_OF_PEOPLE = (
    "SELECT m.segment_id, m.profile_id, m.since_ms FROM segments s CROSS JOIN segment_members m"
    " WHERE s.workspace_id = ?{archived} AND m.workspace_id = s.workspace_id AND m.segment_id = s.id"
    " AND m.profile_id IN"
)
_OF_PEOPLE_ALL = _OF_PEOPLE.format(archived="")
# An archived segment has no members (archive deletes them), so a read need not probe it.
_OF_PEOPLE_UNARCHIVED = _OF_PEOPLE.format(archived=f" AND s.status <> '{ARCHIVED}'")


def _of_people(conn: Connection, workspace_id: str, profile_ids: Iterable[str], *, archived: bool) -> list[Any]:
    """(segment, profile, since_ms) of these people's memberships in the workspace; in its
    archived segments too when `archived` (an erasure leaves no row behind, should one have
    been written as its segment was archived)."""
    query = _OF_PEOPLE_ALL if archived else _OF_PEOPLE_UNARCHIVED
    return sql.select_in(conn, query, sorted(set(profile_ids)), before=(workspace_id,))


def members_among(conn: Connection, workspace_id: str, segment_id: str, profile_ids: Sequence[str]) -> set[str]:
    """Which of these people are in the segment now (a primary-key probe each)."""
    return {
        pid
        for (pid,) in sql.select_in(
            conn,
            "SELECT profile_id FROM segment_members WHERE workspace_id = ? AND segment_id = ? AND profile_id IN",
            list(profile_ids),
            before=(workspace_id, segment_id),
        )
    }


# --- membership, as the engine decides it -----------------------------------------------------------

Change = tuple[bool, int]  # (a member after it, when: the change's time)


def write_changes(
    conn: Connection,
    changes: Mapping[tuple[str, str, str], Change],
    earlier: Mapping[tuple[str, str, str], Sequence[Change]] | None = None,
) -> tuple[int, int]:
    """Make the members rows say what the engine decided: {(workspace, segment, profile):
    (member, at_ms)}, each the last word on that membership in the transaction. Rows are
    inserted or deleted only where they differ, and only those are counted in the daily
    sizes (on the UTC day of at_ms): the counts follow the table exactly. `earlier`: for a
    membership that changed more than once in the transaction, the changes before the last
    word, oldest first; each that differs from the one before counts on its own day (and a
    row kept through a leaving and an entering gets the later `since`), as they would have
    in transactions of their own. Returns (members rows inserted, deleted)."""
    if not changes:
        return 0, 0
    keys = sorted(changes)
    # The rows of exactly these memberships (an indexed probe each, by the primary key):
    # reading every membership of the people concerned read a few dozen rows per change.
    present = sql.existing_keys(conn, "segment_members", ("workspace_id", "segment_id", "profile_id"), keys)
    inserts: list[tuple[Any, ...]] = []
    deletes: list[tuple[Any, ...]] = []
    counts: dict[tuple[str, str, int], tuple[int, int]] = {}
    for key in keys:
        member, at_ms = changes[key]
        ws, sid, pid = key
        steps = earlier.get(key) if earlier else None
        if steps:
            _replay(key, [*steps, (member, at_ms)], key in present, inserts, deletes, counts)
        elif member and key not in present:
            inserts.append((ws, sid, pid, at_ms))
            entered, exited = counts.get((ws, sid, day_of(at_ms)), (0, 0))
            counts[(ws, sid, day_of(at_ms))] = (entered + 1, exited)
        elif not member and key in present:
            deletes.append((ws, sid, pid))
            entered, exited = counts.get((ws, sid, day_of(at_ms)), (0, 0))
            counts[(ws, sid, day_of(at_ms))] = (entered, exited + 1)
    # Deleted first: a row kept through a leaving and an entering is deleted and inserted again.
    sql.execute_many(
        conn, "DELETE FROM segment_members WHERE workspace_id = ? AND segment_id = ? AND profile_id = ?", deletes
    )
    sql.insert_rows(
        conn, "segment_members", ("workspace_id", "segment_id", "profile_id", "since_ms"), inserts, conflict=_MEMBER_KEY
    )
    _count(conn, counts)
    kept = len({row[:3] for row in inserts} & set(deletes)) if earlier else 0  # rows with a new `since`
    return len(inserts) - kept, len(deletes) - kept


def _replay(
    key: tuple[str, str, str],
    steps: Sequence[Change],
    present: bool,
    inserts: list[tuple[Any, ...]],
    deletes: list[tuple[Any, ...]],
    counts: dict[tuple[str, str, int], tuple[int, int]],
) -> None:
    """One membership's changes in a transaction, oldest first, from whether its row is there:
    each real change counted on its day; the row deleted, inserted, or both (a new `since`)."""
    ws, sid, _pid = key
    member, since = present, None
    for now_member, at_ms in steps:
        if now_member == member:
            continue
        member = now_member
        entered, exited = counts.get((ws, sid, day_of(at_ms)), (0, 0))
        counts[(ws, sid, day_of(at_ms))] = (entered + 1, exited) if member else (entered, exited + 1)
        if member:
            since = at_ms
    if present and (not member or since is not None):
        deletes.append(key)
    if member and since is not None:
        inserts.append((*key, since))


_MEMBER_KEY = "workspace_id, segment_id, profile_id"


def _count(conn: Connection, counts: Mapping[tuple[str, str, int], tuple[int, int]]) -> None:
    rows = [(ws, sid, day, e, x) for (ws, sid, day), (e, x) in sorted(counts.items()) if e or x]
    sql.execute_many(
        conn,
        "INSERT INTO segment_daily_sizes (workspace_id, segment_id, day, entered, exited) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (workspace_id, segment_id, day) DO UPDATE SET"
        " entered = segment_daily_sizes.entered + excluded.entered,"
        " exited = segment_daily_sizes.exited + excluded.exited",
        rows,
    )


def let_go(conn: Connection, workspace_id: str, profile_ids: Iterable[str], now_ms: int | None) -> int:
    """Delete these people's memberships in the workspace (an erasure), counted as leaving on
    now_ms's day (None: on the day each began, as if they had never been counted)."""
    found = _of_people(conn, workspace_id, profile_ids, archived=True)
    changes = {(workspace_id, sid, pid): (False, int(since) if now_ms is None else now_ms) for sid, pid, since in found}
    return write_changes(conn, changes)[1]


def drop_merged(conn: Connection, source: str) -> int:
    """A profile merged into another leaves its segments, counted on the day of the merge.

    The engine keeps the surviving profile's memberships and decides every live segment
    again at its next event, from the merged state (runtime/merges.py): those decisions
    enter it where the merged person belongs, and the members rows follow them."""
    merge = sql.select_in(
        conn, "SELECT workspace_id, merged_at_ms FROM profile_merges WHERE from_profile_id IN", [source]
    )
    workspaces: list[tuple[str, int | None]]
    if merge:
        workspaces = [(str(merge[0][0]), int(merge[0][1]))]
    else:  # no merge recorded (not made by ingest): the profile's own workspace, its rows' days
        owner = sql.select_in(conn, "SELECT workspace_id FROM profiles WHERE id IN", [source])
        workspaces = [(str(owner[0][0]), None)] if owner else []
    changes: dict[tuple[str, str, str], Change] = {}
    for workspace_id, merged_at in workspaces:
        for sid, _pid, since in _of_people(conn, workspace_id, [source], archived=True):
            changes[(workspace_id, sid, source)] = (False, int(since) if merged_at is None else merged_at)
    return write_changes(conn, changes)[1] if changes else 0


def as_of(conn: Connection) -> tuple[int, int]:
    """(seq, at_ms) of the engine cursor: the members rows are written in the transactions
    that move it, so they are exact as of that event of the log (and of every timer fired
    by then); at_ms is when it last moved."""
    row = conn.execute(
        select(engine_cursors.c.position, engine_cursors.c.updated_at_ms).where(engine_cursors.c.name == "events")
    ).first()
    return (0, 0) if row is None else (int(row.position or 0), int(row.updated_at_ms or 0))


def profile_user_ids(conn: Connection, profile_ids: Sequence[str]) -> dict[str, str | None]:
    """Each profile's userId (None for an anonymous one): what the Segment Entered / Exited
    events appended for them carry."""
    return {
        pid: user_id
        for pid, user_id in sql.select_in(conn, "SELECT id, user_id FROM profiles WHERE id IN", list(profile_ids))
    }


# --- applies: computing a version for the people already stored ---------------------------------


@dataclass(frozen=True, slots=True)
class Apply:
    workspace_id: str
    segment_id: str
    version: int
    status: str
    position: str
    profiles_done: int
    size: int | None
    as_of_seq: int | None
    created_at_ms: int
    finished_at_ms: int | None


def _apply(row: Any) -> Apply:
    return Apply(
        row.workspace_id,
        row.segment_id,
        int(row.version),
        row.status,
        row.position,
        int(row.profiles_done),
        None if row.size is None else int(row.size),
        None if row.as_of_seq is None else int(row.as_of_seq),
        int(row.created_at_ms),
        None if row.finished_at_ms is None else int(row.finished_at_ms),
    )


def start_apply(conn: Connection, workspace_id: str, segment_id: str, version: int, now_ms: int) -> None:
    """Queue the computation of this version; an unfinished one of an older version is
    cancelled (the new one looks at everyone again). Starting the same version twice is a no-op."""
    a = segment_applies.c
    conn.execute(
        update(segment_applies)
        .where(a.workspace_id == workspace_id, a.segment_id == segment_id, a.status == PENDING, a.version != version)
        .values(status=CANCELLED, updated_at_ms=now_ms, finished_at_ms=now_ms)
    )
    exists = conn.execute(
        select(a.version).where(a.workspace_id == workspace_id, a.segment_id == segment_id, a.version == version)
    ).first()
    if exists is None:
        conn.execute(
            insert(segment_applies).values(
                workspace_id=workspace_id,
                segment_id=segment_id,
                version=version,
                status=PENDING,
                position="",
                profiles_done=0,
                size=None,
                as_of_seq=None,
                created_at_ms=now_ms,
                updated_at_ms=now_ms,
                finished_at_ms=None,
            )
        )


def pending_applies(conn: Connection) -> list[Apply]:
    """Unfinished computations, oldest first."""
    a = segment_applies.c
    rows = conn.execute(
        select(segment_applies).where(a.status == PENDING).order_by(a.created_at_ms, a.workspace_id, a.segment_id)
    )
    return [_apply(r) for r in rows]


def latest_applies(conn: Connection, workspace_id: str, segment_id: str | None = None) -> dict[str, Apply]:
    """The computation of each segment's newest version (the one the live version queued)."""
    a = segment_applies.c
    stmt = select(segment_applies).where(a.workspace_id == workspace_id)
    if segment_id is not None:
        stmt = stmt.where(a.segment_id == segment_id)
    out: dict[str, Apply] = {}
    for row in conn.execute(stmt.order_by(a.segment_id, a.version)):
        out[row.segment_id] = _apply(row)
    return out


def advance_apply(
    conn: Connection, job: Apply, position: str, profiles_done: int, now_ms: int, *, finished: bool, as_of_seq: int
) -> None:
    """Record a batch's progress in the transaction that wrote what it decided; the last
    batch also records the size (a count of the members rows, in that same transaction)
    and `as_of_seq`, the event of the log the engine had decided through."""
    a = segment_applies.c
    values: dict[str, Any] = {
        "position": position,
        "profiles_done": a.profiles_done + profiles_done,
        "updated_at_ms": now_ms,
    }
    if finished:
        size = sizes(conn, job.workspace_id, job.segment_id).get(job.segment_id, 0)
        values.update(status=DONE, finished_at_ms=now_ms, size=size, as_of_seq=as_of_seq)
    conn.execute(
        update(segment_applies)
        .where(a.workspace_id == job.workspace_id, a.segment_id == job.segment_id, a.version == job.version)
        .values(**values)
    )


def cancel_apply(conn: Connection, job: Apply, now_ms: int) -> None:
    a = segment_applies.c
    conn.execute(
        update(segment_applies)
        .where(a.workspace_id == job.workspace_id, a.segment_id == job.segment_id, a.version == job.version)
        .values(status=CANCELLED, updated_at_ms=now_ms, finished_at_ms=now_ms)
    )
