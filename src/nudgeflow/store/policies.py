"""A workspace's send policies (policies.yaml) in the database, versioned.

Each apply stores the document as a new row of `policy_versions`, never changed
afterwards; the highest version is the one in force, and the earlier ones stay as the
history of who changed what, when. Applying a document that means exactly what the one in
force means stores nothing (`PutResult.changed` False), so applying the same file from CI
on every deploy does not grow the history.

A version holds the document twice: `definition`, the JSON of the model with every
default spelled out (what the engine runs: a later release that changes a default does
not change the meaning of a version applied before it), and `source`, the text as it was
given (YAML comments included), which `nudgeflow policies show` prints back.

The engine notices a new version through store/journeys.catalog_fingerprint, which
includes the latest version number, and reloads its catalog (with these policies) on its
next batch: no restart.

Every function takes a Connection and leaves committing to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from nudgeflow.errors import StoreError
from nudgeflow.model.policies import EMPTY, Policies
from nudgeflow.store import sql
from nudgeflow.store.schema import policy_versions

COLUMNS = ("workspace_id", "version", "definition", "source", "created_by", "created_at_ms")
MAX_AUTHOR = 200


class PolicyConflict(StoreError, ValueError):
    """Two applies chose the same version number at once: the caller tries again."""


@dataclass(frozen=True, slots=True)
class StoredPolicies:
    version: int
    policies: Policies
    source: str
    created_by: str
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class PutResult:
    version: int  # the version in force after the apply
    changed: bool  # False: the document meant what the version in force means; nothing stored


def definition_json(policies: Policies) -> str:
    """The stored form: every default spelled out; `$schema` (an editor's hint) left out."""
    return orjson.dumps(policies.model_dump(mode="json", by_alias=True, exclude={"schema_"})).decode()


def parse_definition(text: str) -> Policies:
    return Policies.model_validate(orjson.loads(text))


def _stored(row: Any) -> StoredPolicies:
    return StoredPolicies(
        version=int(row.version),
        policies=parse_definition(row.definition),
        source=row.source,
        created_by=row.created_by,
        created_at_ms=int(row.created_at_ms),
    )


def latest_version(conn: Connection, workspace_id: str) -> int:
    """The version in force; 0 when the workspace never applied policies."""
    t = policy_versions.c
    found = conn.execute(select(func.max(t.version)).where(t.workspace_id == workspace_id)).scalar_one_or_none()
    return int(found or 0)


def get(conn: Connection, workspace_id: str, version: int | None = None) -> StoredPolicies | None:
    """The version in force (or the one asked for); None when there is none."""
    t = policy_versions.c
    query = select(policy_versions).where(t.workspace_id == workspace_id)
    query = query.where(t.version == version) if version is not None else query.order_by(t.version.desc()).limit(1)
    row = conn.execute(query).first()
    return _stored(row) if row is not None else None


def load(conn: Connection, workspace_id: str) -> Policies:
    """The policies in force: what the engine applies (no policies at all when none were applied)."""
    found = get(conn, workspace_id)
    return found.policies if found is not None else EMPTY


def put(
    conn: Connection, workspace_id: str, policies: Policies, source: str, created_by: str, now_ms: int
) -> PutResult:
    """Store `policies` as the next version, unless it means what the version in force means.

    `policies` is a validated model (model.policy_checks.check_policies); `source` the text
    it was read from; `created_by` who applied it ("cli (ada)", "api (admin token nfa_ab…)")."""
    definition = definition_json(policies)
    t = policy_versions.c
    current = conn.execute(
        select(t.version, t.definition).where(t.workspace_id == workspace_id).order_by(t.version.desc()).limit(1)
    ).first()
    if current is not None and orjson.loads(current.definition) == orjson.loads(definition):
        return PutResult(int(current.version), changed=False)
    version = (int(current.version) if current is not None else 0) + 1
    try:
        sql.insert_rows(
            conn,
            "policy_versions",
            COLUMNS,
            [(workspace_id, version, definition, source, created_by[:MAX_AUTHOR], now_ms)],
        )
    except IntegrityError as exc:
        raise PolicyConflict(
            f"the workspace's policies were changed at the same time (version {version} was taken); apply again"
        ) from exc
    return PutResult(version, changed=True)


def history(conn: Connection, workspace_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """The versions, newest first: version, created_by, created_at_ms (not the documents)."""
    t = policy_versions.c
    rows = conn.execute(
        select(t.version, t.created_by, t.created_at_ms)
        .where(t.workspace_id == workspace_id)
        .order_by(t.version.desc())
        .limit(limit)
    )
    return [{"version": r.version, "created_by": r.created_by, "created_at_ms": r.created_at_ms} for r in rows]
