"""The one schema, for SQLite and PostgreSQL alike.

Times are integer milliseconds since the epoch: the same on both databases, cheap to
index and compare, and free of driver time-zone conversions. JSON documents are text
written by orjson, so both databases store exactly the bytes we produced.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid); PostgreSQL wants BIGINT.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

# Keys are stored as SHA-256 digests: a copy of the database does not leak usable keys.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("workspace_id", String(40), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(10), nullable=False),  # "write" or "admin"
    Column("hint", String(12), nullable=False),  # the first characters, to tell keys apart
    Column("created_at_ms", BigInteger, nullable=False),
    Index("ix_api_keys_workspace", "workspace_id"),
)

profiles = Table(
    "profiles",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("workspace_id", String(40), nullable=False),
    Column("user_id", String(512)),
    Column("traits", Text, nullable=False),
    Column("trait_errors", Text),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Index("ix_profiles_workspace_user", "workspace_id", "user_id"),
)

# One row per id a profile is known by: key "u:<userId>" or "a:<anonymousId>".
identities = Table(
    "identities",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("key", String(520), nullable=False),
    Column("profile_id", String(40), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "key", name="pk_identities"),
    Index("ix_identities_profile", "profile_id"),
)

# Where a merged-away profile went, so an old profile id still finds the person.
profile_merges = Table(
    "profile_merges",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("from_profile_id", String(40), nullable=False),
    Column("into_profile_id", String(40), nullable=False),
    Column("merged_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "from_profile_id", name="pk_profile_merges"),
    Index("ix_profile_merges_into", "into_profile_id"),
)

# The event log. `seq` orders it; (workspace_id, message_id) makes ingest idempotent.
events = Table(
    "events",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("workspace_id", String(40), nullable=False),
    Column("message_id", String(512), nullable=False),
    Column("profile_id", String(40), nullable=False),
    Column("type", String(16), nullable=False),
    Column("event", String(512)),
    Column("user_id", String(512)),
    Column("anonymous_id", String(512)),
    Column("timestamp_ms", BigInteger, nullable=False),
    Column("received_at_ms", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),
    UniqueConstraint("workspace_id", "message_id", name="uq_events_message"),
    Index("ix_events_profile_time", "profile_id", "timestamp_ms"),
)

# Tables holding rows derived from a person, purged on erasure (later issues add theirs).
PROFILE_OWNED = (events, identities)
