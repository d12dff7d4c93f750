"""The one schema, for SQLite and PostgreSQL alike.

Times are integer milliseconds since the epoch: the same on both databases, cheap to
index and compare, and free of driver time-zone conversions. JSON documents are text
written by orjson, so both databases store exactly the bytes we produced.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

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
    # A write key's kind: "public" (browsers, apps) or "server" (a backend's secret, exempt
    # from identity verification); NULL for admin tokens. Migration 0006.
    Column("write_kind", String(10)),
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
    # A backfill walks a workspace's people in id order, a batch at a time (created_at_ms:
    # only those created before the publish, from the index alone; migration 0012).
    Index("ix_profiles_workspace_id", "workspace_id", "id", "created_at_ms"),
)


class EmailTrait(FunctionElement[str]):
    """The lower-cased `email` trait of a profile's traits document: what the console's
    People search finds a person by (store/people_search.py), exactly or by prefix."""

    type = String()
    inherit_cache = True
    name = "email_trait"


class EmailTraitIndexed(EmailTrait):
    """EmailTrait as ix_profiles_email holds it: on PostgreSQL with text_pattern_ops, so a
    prefix (LIKE 'ada%') uses the index whatever the database's collation."""

    inherit_cache = True
    name = "email_trait_indexed"


@compiles(EmailTrait, "sqlite")
def _email_trait_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return "lower(json_extract(traits, '$.email'))"


@compiles(EmailTrait, "postgresql")
def _email_trait_postgresql(element: Any, compiler: Any, **kw: Any) -> str:
    return "lower(traits::json ->> 'email')"


@compiles(EmailTraitIndexed, "postgresql")
def _email_trait_indexed_postgresql(element: Any, compiler: Any, **kw: Any) -> str:
    return "lower(traits::json ->> 'email') text_pattern_ops"


# Migration 0022: the People page finds a person by email among 100,000 without a scan.
Index("ix_profiles_email", profiles.c.workspace_id, EmailTraitIndexed())

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
    # Where the merged-away profile's events ended in its partition when the merge was made:
    # the last offset given there (store/ingest_writer.py; migration 0025, NULL before).
    Column("from_partition", Integer),
    Column("from_offset", BigInteger),
    PrimaryKeyConstraint("workspace_id", "from_profile_id", name="pk_profile_merges"),
    Index("ix_profile_merges_into", "into_profile_id"),
    # Was this profile merged away? Asked for each batch the engine decides (migration 0025).
    Index("ix_profile_merges_from", "from_profile_id"),
)

# The rows of the event log that have a place in a partition (the partial index below).
LOGGED = '"partition" IS NOT NULL'

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
    # The partitioned log (store/partition_log.py, migration 0025): the person's partition and
    # the event's place in it, dense and in commit order. NULL for what no partition decides
    # (the engine's own segment events, and events decided before the migration).
    Column("partition", SmallInteger),
    Column("part_offset", BigInteger),
    UniqueConstraint("workspace_id", "message_id", name="uq_events_message"),
    # A person's events in time order; with the names in it, a backfill tests events in
    # the index and reads only the rows it wants (migration 0012).
    Index("ix_events_profile_time", "profile_id", "timestamp_ms", "seq", "type", "event"),
    # Only the rows some partition decides (migration 0027): the engine's own Segment Entered /
    # Exited have neither, and an entry each for them was a B-tree insert per change for nothing.
    Index(
        "uq_events_partition_offset",
        "partition",
        "part_offset",
        unique=True,
        sqlite_where=text(LOGGED),
        postgresql_where=text(LOGGED),
    ),
    # A seq is never given twice, even after the newest events are erased: the engine's
    # cursor has passed it (SQLite would otherwise reuse the highest rowid; migration 0010).
    sqlite_autoincrement=True,
)

# --- journeys -------------------------------------------------------------------------------

# A journey's editable draft and its lifecycle; `live_version` points into journey_versions.
journeys = Table(
    "journeys",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("id", String(80), nullable=False),
    Column("name", String(200), nullable=False),
    Column("status", String(10), nullable=False),  # draft | live | paused | archived
    Column("draft", Text, nullable=False),  # the definition as JSON
    # Raised by every change of the draft: what If-Match compares (store/journeys.apply_draft).
    Column("draft_revision", Integer, nullable=False, server_default="1"),
    Column("live_version", Integer),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "id", name="pk_journeys"),
)

# Each publish freezes the definition: a run stays on the version it entered with.
journey_versions = Table(
    "journey_versions",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("journey_id", String(80), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", Text, nullable=False),
    Column("published_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "journey_id", "version", name="pk_journey_versions"),
)

# A workspace's send policies (policies.yaml), one row per applied document, never changed
# afterwards: the highest version is in force (store/policies.py). `definition` is the
# JSON with every default spelled out (as journey versions are), `source` the text as given.
policy_versions = Table(
    "policy_versions",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("created_by", String(200), nullable=False),  # "api (admin token nfa_abcd…)", "cli (user)"
    Column("created_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "version", name="pk_policy_versions"),
)

# --- engine state ---------------------------------------------------------------------------

# What the pure core keeps per person (runs, counters, pending triggers), one JSON document,
# loaded and written in bulk per batch.
profile_state = Table(
    "profile_state",
    metadata,
    Column("profile_id", String(40), primary_key=True),
    Column("workspace_id", String(40), nullable=False),
    Column("state", Text, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)

# One row per run, for the admin API and measurement; the engine's truth is profile_state.
journey_runs = Table(
    "journey_runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("workspace_id", String(40), nullable=False),
    Column("journey_id", String(80), nullable=False),
    Column("version", Integer, nullable=False),
    Column("profile_id", String(40), nullable=False),
    Column("status", String(10), nullable=False),  # active | held | done | exited
    Column("step", String(100)),
    Column("holdout", Integer, nullable=False),
    Column("entered_at_ms", BigInteger, nullable=False),
    Column("ended_at_ms", BigInteger),
    Column("exit_reason", String(40)),
    Column("converted_at_ms", BigInteger),
    Column("revenue", Float),
    Column("updated_at_ms", BigInteger, nullable=False),
    # In the workspace's global control group (core/control_group.py), and the group's draw
    # (cohort) the run was decided in: None for a run outside the program's comparison (no
    # group, an excluded journey, or entered before migration 0017).
    Column("control", Integer, nullable=False, server_default="0"),
    Column("control_cohort", String(120)),
    # The goal event's messageId (migration 0017): a goal event that converts runs of several
    # journeys is one conversion of the person (store/rollups.py).
    Column("converted_by", String(512)),
    Index("ix_journey_runs_journey", "workspace_id", "journey_id", "status"),
    Index("ix_journey_runs_profile", "profile_id"),
)

# Timers live here, not in memory: a million people waiting three days cost rows, not RAM.
# (profile_id, key) makes scheduling idempotent: re-arming a timer replaces it.
timers = Table(
    "timers",
    metadata,
    Column("profile_id", String(40), nullable=False),
    Column("key", String(300), nullable=False),
    Column("workspace_id", String(40), nullable=False),
    Column("due_at_ms", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),
    # The person's partition: the worker that owns it fires the timer (migration 0025).
    Column("partition", SmallInteger, nullable=False),
    PrimaryKeyConstraint("profile_id", "key", name="pk_timers"),
    Index("ix_timers_due", "due_at_ms"),
    Index("ix_timers_partition_due", "partition", "due_at_ms"),
)

# Messages to send, written in the same transaction as the state that decided them.
outbox = Table(
    "outbox",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("workspace_id", String(40), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("profile_id", String(40), nullable=False),
    Column("run_id", String(40), nullable=False),
    Column("journey_id", String(80), nullable=False),
    Column("journey_version", Integer, nullable=False),
    Column("step", String(100), nullable=False),
    Column("channel", String(40), nullable=False),
    Column("template", String(200), nullable=False),
    Column("variant", String(100)),
    Column("marketing", Integer, nullable=False),
    Column("payload", Text, nullable=False),  # what rendering needs: trigger event, run facts
    # pending | sent | failed | logged | suppressed | deferred | dropped (store/outbox.py)
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False),  # tries made: sends with an outcome
    Column("next_attempt_at_ms", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("sent_at_ms", BigInteger),
    Column("error", Text),  # what went wrong delivering it (failed, or the last retried try)
    # Why it is not (or not yet) sent: suppressed, deferred or dropped (model/reasons.py).
    # Migration 0013.
    Column("reason", Text),
    # When a remote send was leased: the lease's end. A pending row whose next attempt is
    # still this is in flight (or its sender died); an engine that holds the engine lock
    # reclaims such rows at start (store/engine_lock.py).
    Column("leased_until_ms", BigInteger),
    # How many times a dispatcher leased the row: the lease's token, one up on every claim
    # (store/outbox.py). `attempts` counts tries only (an outcome recorded).
    Column("claims", Integer, nullable=False, server_default="0"),
    # How many of those leases ran out with no outcome: their dispatcher stopped. Bounded by
    # the dispatcher's max_lost_claims (runtime/dispatcher.py). Migration 0030.
    Column("lost_claims", Integer, nullable=False, server_default="0"),
    UniqueConstraint("workspace_id", "idempotency_key", name="uq_outbox_key"),
    Index("ix_outbox_due", "status", "next_attempt_at_ms"),
    Index("ix_outbox_profile", "profile_id"),
)

# The `log` channel's sink: what would have been sent. No unique key on purpose, so a
# duplicate send would show here instead of being hidden by a constraint.
log_channel_messages = Table(
    "log_channel_messages",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("workspace_id", String(40), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("profile_id", String(40), nullable=False),
    Column("channel", String(40), nullable=False),
    Column("template", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("sent_at_ms", BigInteger, nullable=False),
    Index("ix_log_channel_messages_profile", "profile_id"),
)

# How far each engine partition has read the event log.
engine_cursors = Table(
    "engine_cursors",
    metadata,
    Column("name", String(80), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    # Seqs the cursor passed that were not yet visible (a transaction still open, or rolled
    # back): JSON [[first, last, seen_at_ms], ...], read again until they fill or time out
    # (runtime/processor.py).
    Column("gaps", Text),
)

# Who holds the engine lock of a PostgreSQL database (the lock itself is an advisory lock
# on a connection of the engine's; SQLite's is a lock file): what a second engine names
# when it refuses to start (store/engine_lock.py).
engine_lock = Table(
    "engine_lock",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at_ms", BigInteger, nullable=False),
)

# --- partitions and leases (issue 17; store/partition_leases.py, docs/partitions.md) ---------

# Engine workers of the distributed runtime: who they are and when each last said it is
# alive. A worker whose heartbeat is older than the lease TTL counts as dead. Migration 0023.
engine_workers = Table(
    "engine_workers",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("role", String(20), nullable=False),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("heartbeat_at_ms", BigInteger, nullable=False),
    Column("stopped_at_ms", BigInteger),  # set by a graceful stop; NULL while running (or killed)
)

# One row per partition: who holds its lease (NULL: nobody), until when, and the fencing
# epoch, which grows every time the lease changes hands (taken or released). A write guarded
# by a lease checks, in its own transaction and row-locked, that the epoch is still its own.
partition_leases = Table(
    "partition_leases",
    metadata,
    Column("partition", Integer, primary_key=True, autoincrement=False),
    Column("owner", String(80)),
    Column("epoch", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("moved_at_ms", BigInteger, nullable=False),
)

# The last offset given in each partition of the event log (store/partition_log.py): rows
# 0..P-1 (64 made by migration 0025; `nudgeflow db partitions N` chooses another P before the
# first event). Its row lock orders a partition's commits.
partition_heads = Table(
    "partition_heads",
    metadata,
    Column("partition", Integer, primary_key=True, autoincrement=False),
    Column("head", BigInteger, nullable=False),
)

# How far each partition's messages are decided: the event stream's sequence of the last
# one, written in the same transaction as the state it produced.
partition_positions = Table(
    "partition_positions",
    metadata,
    Column("partition", Integer, primary_key=True, autoincrement=False),
    Column("stream_seq", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)

# --- content, catalog, consent (email and push channels) --------------------------------------

# A template's name and which version is current; every save makes a new version.
templates = Table(
    "templates",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("channel", String(20), nullable=False),  # email | push
    Column("current_version", Integer, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "name", name="pk_templates"),
)

# Immutable versions. `compiled` holds the MJML layout compiled to HTML once per version
# (still Liquid inside), so nothing is compiled per recipient.
template_versions = Table(
    "template_versions",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("source", Text, nullable=False),  # JSON: subject, preheader, body, text, push fields…
    Column("compiled", Text),
    Column("created_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "name", "version", name="pk_template_versions"),
)

catalog_products = Table(
    "catalog_products",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("id", String(200), nullable=False),
    Column("name", String(500), nullable=False),
    Column("price", Float),
    Column("currency", String(3)),
    Column("image", Text),
    Column("url", Text),
    Column("category", String(200)),
    Column("stock", Integer),
    Column("attributes", Text, nullable=False),  # JSON of any other columns
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "id", name="pk_catalog_products"),
    Index("ix_catalog_products_category", "workspace_id", "category"),
)

catalog_places = Table(
    "catalog_places",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("id", String(200), nullable=False),
    Column("name", String(500), nullable=False),
    Column("latitude", Float, nullable=False),
    Column("longitude", Float, nullable=False),
    Column("address", Text),
    Column("attributes", Text, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "id", name="pk_catalog_places"),
)

# Addresses nothing may be sent to (hard bounces, complaints, manual), per channel. Kept
# after a profile's erasure on purpose: forgetting a complaint would mail the person again.
suppressions = Table(
    "suppressions",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("address", String(320), nullable=False),
    Column("reason", String(40), nullable=False),  # hard_bounce | complaint | manual
    Column("detail", Text),
    Column("created_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "channel", "address", name="pk_suppressions"),
)

# Bounce and complaint notification items already applied (store/feedback_seen.py): a
# repeat of one (a replayed webhook, a resent DSN) changes nothing.
feedback_seen = Table(
    "feedback_seen",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("digest", String(64), nullable=False),  # SHA-256 of provider, event id, address, kind
    Column("seen_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "digest", name="pk_feedback_seen"),
    Index("ix_feedback_seen_time", "seen_at_ms"),
)

# Marketing consent per person, channel and topic ("*" is every marketing message of the
# channel), the frequency asked for, and where each choice came from (store/consent.py).
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("profile_id", String(40), nullable=False),
    Column("channel", String(20), nullable=False),  # email | push | …: the message's channel
    Column("topic", String(100), nullable=False),
    Column("subscribed", Integer, nullable=False),
    Column("frequency", String(20), nullable=False),  # normal | fewer
    Column("updated_at_ms", BigInteger, nullable=False),  # when the choice was made
    Column("source", String(40)),  # api | identify | preferences | double_opt_in | …; NULL: before 0014
    Column("message_key", String(200)),  # the message whose link recorded it
    PrimaryKeyConstraint("workspace_id", "profile_id", "channel", "topic", name="pk_subscriptions"),
)

# Per-workspace settings as JSON (SMTP, sender, tracking domain, keys). Secrets in it are
# never logged or returned by the API.
workspace_settings = Table(
    "workspace_settings",
    metadata,
    Column("workspace_id", String(40), primary_key=True),
    Column("settings", Text, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)

# What the dev inbox's SMTP sink received (`serve --dev`, the demo).
inbox_messages = Table(
    "inbox_messages",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("mail_from", Text, nullable=False),
    Column("rcpt_to", Text, nullable=False),
    Column("subject", Text),
    Column("raw", Text, nullable=False),
    Column("received_at_ms", BigInteger, nullable=False),
    # email: `raw` is the message as received; push: the decrypted notification and its
    # TTL / Urgency / Topic as JSON (runtime/dev_push_inbox.py), `subject` its title.
    Column("channel", String(10), nullable=False, server_default="email"),
)

# Web Push subscriptions (a browser's PushSubscription: endpoint and its two keys), one row
# per endpoint; a 404/410 from the push service deletes it.
push_subscriptions = Table(
    "push_subscriptions",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("endpoint_hash", String(64), nullable=False),  # sha256 of the endpoint: URLs are long
    Column("profile_id", String(40), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("p256dh", String(200), nullable=False),
    Column("auth", String(100), nullable=False),
    Column("user_agent", Text),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "endpoint_hash", name="pk_push_subscriptions"),
    Index("ix_push_subscriptions_profile", "profile_id"),
)

# Mobile device tokens (FCM registration tokens, APNs device tokens); UNREGISTERED and 410
# delete them (APNs' BadDeviceToken does not: most likely the wrong environment).
device_tokens = Table(
    "device_tokens",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("token", String(512), nullable=False),
    Column("profile_id", String(40), nullable=False),
    Column("provider", String(10), nullable=False),  # fcm | apns
    Column("platform", String(20)),  # ios | android | … as the SDK reported it
    Column("app_id", String(200)),  # the bundle id (APNs topic) or package name, when known
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "token", name="pk_device_tokens"),
    Index("ix_device_tokens_profile", "profile_id"),
)

# The targets that took a push message while another target of the same person failed
# transiently: the message's retry goes only to the rest (channels/push.py). Rows exist
# only between such a partial try and the message's last try, which deletes them.
push_deliveries = Table(
    "push_deliveries",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("message_key", String(200), nullable=False),  # the outbox row's idempotency key
    Column("target_key", String(64), nullable=False),  # PushTarget.key: a hash, not the token
    Column("profile_id", String(40), nullable=False),
    Column("delivered_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "message_key", "target_key", name="pk_push_deliveries"),
    Index("ix_push_deliveries_profile", "profile_id"),
)

# One row per publish that looks at the people already in the database (store/backfill.py):
# the engine walks the workspace's profiles in id order, `position` being the last one
# done, committed with what it decided for them, so a restart resumes where it stopped.
journey_backfills = Table(
    "journey_backfills",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("journey_id", String(80), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(10), nullable=False),  # pending | done | cancelled
    Column("position", String(40), nullable=False),  # the last profile id done ('' before the first)
    Column("profiles_done", BigInteger, nullable=False),
    Column("entered", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("finished_at_ms", BigInteger),
    PrimaryKeyConstraint("workspace_id", "journey_id", "version", name="pk_journey_backfills"),
    Index("ix_journey_backfills_status", "status"),
)

# A group (Segment `group` call: an account, a company) and its traits, merged from every
# call that named it, by event time. Keyed by the groupId: it holds no person, so erasing
# a member leaves it (the person's link to it lives in their engine state).
groups = Table(
    "groups",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("id", String(512), nullable=False),
    Column("traits", Text, nullable=False),
    Column("traits_at_ms", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "id", name="pk_groups"),
)

# --- segments (store/segments.py) ------------------------------------------------------------

# A segment's editable draft and its lifecycle (draft | live | archived), like a journey's;
# `live_version` points into segment_versions.
segments = Table(
    "segments",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("id", String(80), nullable=False),
    Column("name", String(200), nullable=False),
    Column("status", String(10), nullable=False),
    Column("draft", Text, nullable=False),  # the definition as JSON
    # Raised by every change of the draft: what If-Match compares (store/segments.apply).
    Column("draft_revision", Integer, nullable=False, server_default="1"),
    Column("live_version", Integer),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "id", name="pk_segments"),
)

# Each apply of a changed definition freezes it as the next version.
segment_versions = Table(
    "segment_versions",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("segment_id", String(80), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", Text, nullable=False),
    Column("published_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "segment_id", "version", name="pk_segment_versions"),
)

# One row per applied version: the engine computes it for the people already stored, in id
# order, `position` being the last profile id done (as journey_backfills). When it ends,
# `size` and `as_of_seq` say how many people it held and as of which event of the log.
segment_applies = Table(
    "segment_applies",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("segment_id", String(80), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(10), nullable=False),  # pending | done | cancelled
    Column("position", String(40), nullable=False),
    Column("profiles_done", BigInteger, nullable=False),
    Column("size", BigInteger),
    Column("as_of_seq", BigInteger),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("finished_at_ms", BigInteger),
    PrimaryKeyConstraint("workspace_id", "segment_id", "version", name="pk_segment_applies"),
    Index("ix_segment_applies_status", "status"),
)

# Who is in each segment now, written with the engine's decisions (SegmentChanged): members
# are paged by profile id from the primary key. One B-tree per change and no more (migration
# 0027): on SQLite the rows live in the primary key itself (WITHOUT ROWID), and there is no
# index by profile; a person's memberships are found by probing the key per segment of the
# workspace (store/segments.py), which erasures, merges and the person's page do, not the
# engine.
segment_members = Table(
    "segment_members",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("segment_id", String(80), nullable=False),
    Column("profile_id", String(40), nullable=False),
    Column("since_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "segment_id", "profile_id", name="pk_segment_members"),
    sqlite_with_rowid=False,
)

# People who entered and left each segment per UTC day (days since the epoch), counted as the
# members rows are written: the size at the end of a day is the running sum of entered -
# exited, and the sum over all days is the number of members rows.
segment_daily_sizes = Table(
    "segment_daily_sizes",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("segment_id", String(80), nullable=False),
    Column("day", Integer, nullable=False),
    Column("entered", BigInteger, nullable=False),
    Column("exited", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "segment_id", "day", name="pk_segment_daily_sizes"),
)

# --- the ingest rate limit, shared between serving processes (store/ingest_spending.py) -------

ingest_spending = Table(
    "ingest_spending",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("process_id", String(120), nullable=False),
    Column("admitted", BigInteger, nullable=False),  # events let through, a running total
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "process_id", name="pk_ingest_spending"),
)

# --- failed console sign-ins, counted across serving processes (store/sign_in_failures.py) ----

sign_in_failures = Table(
    "sign_in_failures",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("key_digest", String(64), nullable=False),  # SHA-256 of "email:…" or "address:…"
    Column("failed_at_ms", BigInteger, nullable=False),
    Index("ix_sign_in_failures_key", "key_digest", "failed_at_ms"),
    Index("ix_sign_in_failures_time", "failed_at_ms"),
)

# --- measurement (store/rollups.py) -----------------------------------------------------------

_ROLLUP_DIMENSIONS = ("workspace_id", "journey_id", "version", "step", "variant", "channel", "day")


def _rollup_dimensions() -> list[Column[Any]]:
    # step, variant and channel are '' where they do not apply (a run's facts have no step);
    # day is the UTC day (days since the epoch) of the run's entry or the message's send.
    return [
        Column("workspace_id", String(40), nullable=False),
        Column("journey_id", String(80), nullable=False),
        Column("version", Integer, nullable=False),
        Column("step", String(100), nullable=False),
        Column("variant", String(100), nullable=False),
        Column("channel", String(40), nullable=False),
        Column("day", Integer, nullable=False),
    ]


# Counters only, added to in the transactions that record the facts: reports read these, never
# the event log. Migration 0016.
ROLLUP_COUNTERS = (
    "entered",
    "held_out",
    "recipients",  # runs sent their first message (a run's row: step '')
    "step_recipients",  # runs sent this step's message (a message's row)
    "sent",
    "delivered",
    "opens",
    "opens_machine",
    "clicks",
    "clicks_bot",
    "conversions",
    "conversions_held_out",
    "attributed_conversions",
    "unsubscribes",
    "complaints",
    "bounces",
    "push_opt_outs",
    # Migration 0017, the global control group. A journey's runs in the group, apart from its
    # treated and held-out runs; and, in the workspace's rows (of no journey), the program's
    # people: each person once per cohort, in the group (_control) or not.
    "entered_control",
    "conversions_control",
    "program_people",
    "program_conversions",
    "program_people_control",
    "program_conversions_control",
)
ROLLUP_SUMS = (
    "revenue",
    "revenue_sq",
    "revenue_held_out",
    "revenue_sq_held_out",
    "attributed_revenue",
    # Migration 0017 (see above).
    "revenue_control",
    "revenue_sq_control",
    "program_revenue",
    "program_revenue_sq",
    "program_revenue_control",
    "program_revenue_sq_control",
)
# An experiment's arms (store/rollups.py, "arms"): in a row of the experiment step, the arm
# as its variant and channel '' (no message row has an empty channel). Counted per run: the
# runs assigned the arm, and those of them that converted, opened, clicked, unsubscribed,
# complained. Migration 0018.
ARM_COUNTERS = ("arm_runs", "arm_conversions", "arm_opens", "arm_clicks", "arm_unsubscribes", "arm_complaints")
ARM_SUMS = ("arm_revenue", "arm_revenue_sq")
report_rollups = Table(
    "report_rollups",
    metadata,
    *_rollup_dimensions(),
    *[Column(name, BigInteger, nullable=False, server_default="0") for name in ROLLUP_COUNTERS],
    *[Column(name, Float, nullable=False, server_default="0") for name in ROLLUP_SUMS],
    *[Column(name, BigInteger, nullable=False, server_default="0") for name in ARM_COUNTERS],
    *[Column(name, Float, nullable=False, server_default="0") for name in ARM_SUMS],
    PrimaryKeyConstraint(*_ROLLUP_DIMENSIONS, name="pk_report_rollups"),
)

# Latency histograms (model/histogram.py's log-spaced buckets): time to trigger per message,
# time to convert per run.
report_latencies = Table(
    "report_latencies",
    metadata,
    *_rollup_dimensions(),
    Column("metric", String(20), nullable=False),
    Column("bucket", Integer, nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint(*_ROLLUP_DIMENSIONS, "metric", "bucket", name="pk_report_latencies"),
)

# A send step's messages by the send-time arm that timed them (`context.send_time.arm`:
# optimized, explore or fallback; core/send_time.py), and what their recipients did with them:
# the feature's own experiment (migration 0019). Its own table rather than a dimension of
# report_rollups: every other counter and reader stays keyed as it was, and only messages
# timed by `send_time` write here. `timed_by` is the step whose `send_time` decided (the send
# step itself, or a wait before it): its `explore` share is the experiment's weight.
SEND_TIME_DIMENSIONS = ("workspace_id", "journey_id", "version", "step", "timed_by", "arm", "day")
SEND_TIME_COUNTERS = ("sent", "opens", "opens_machine", "clicks", "clicks_bot", "unsubscribes", "complaints")
report_send_time = Table(
    "report_send_time",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("journey_id", String(80), nullable=False),
    Column("version", Integer, nullable=False),
    Column("step", String(100), nullable=False),
    Column("timed_by", String(100), nullable=False),
    Column("arm", String(20), nullable=False),
    Column("day", Integer, nullable=False),
    *[Column(name, BigInteger, nullable=False, server_default="0") for name in SEND_TIME_COUNTERS],
    PrimaryKeyConstraint(*SEND_TIME_DIMENSIONS, name="pk_report_send_time"),
)

# The first time each fact happened to a message (or a run): a second open of the same message
# finds its row and is not counted again. subject is a message key or a run id (a run's
# latest touches, store/rollups.py, are updated rather than claimed).
message_facts = Table(
    "message_facts",
    metadata,
    Column("workspace_id", String(40), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("fact", String(20), nullable=False),
    Column("profile_id", String(40), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("message_key", String(200)),  # a run's touch: the message touched; a program person: their side
    Column("amount", Float),  # a program person: their revenue so far in the cohort (migration 0017)
    PrimaryKeyConstraint("workspace_id", "subject", "fact", name="pk_message_facts"),
    Index("ix_message_facts_profile", "profile_id"),
)

# What the experiment evaluator (runtime/experiments.py) decided about an experiment step: an
# arm paused (a guardrail breach) or the winner routed to, when and why. Append-only: clearing a
# decision (`nudgeflow experiments resume`) stamps cleared_at_ms and keeps the row, so the table
# is also the record of every decision ever made. Migration 0020.
experiment_decisions = Table(
    "experiment_decisions",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("workspace_id", String(40), nullable=False),
    Column("journey_id", String(80), nullable=False),
    Column("version", Integer, nullable=False),
    Column("step", String(100), nullable=False),
    Column("arm", String(100), nullable=False),
    Column("action", String(10), nullable=False),  # paused | routed
    Column("reason", Text, nullable=False),
    Column("decided_at_ms", BigInteger, nullable=False),
    Column("cleared_at_ms", BigInteger),
    Column("cleared_note", Text),
    Index("ix_experiment_decisions_step", "workspace_id", "journey_id", "version", "step"),
)

# The arm of each experiment step (a `split`, or a send step with `variants`) a treated run
# was assigned, when: counted once (store/rollups.py), exported as exposures (store/exports.py).
# Holdout runs and global-control runs have none. kind: split or variant. Migration 0018.
run_arms = Table(
    "run_arms",
    metadata,
    Column("run_id", String(40), nullable=False),
    Column("step", String(100), nullable=False),
    Column("arm", String(100), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("workspace_id", String(40), nullable=False),
    Column("journey_id", String(80), nullable=False),
    Column("version", Integer, nullable=False),
    Column("profile_id", String(40), nullable=False),
    Column("entered_at_ms", BigInteger, nullable=False),
    Column("assigned_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("run_id", "step", name="pk_run_arms"),
    Index("ix_run_arms_assigned", "workspace_id", "assigned_at_ms"),
    Index("ix_run_arms_profile", "profile_id"),
)

# The web console's users (issue 16): an email unique per workspace, a role (viewer, editor or
# admin) and an Argon2id hash of the password; disabled_at_ms set keeps the row (the audit
# log names them) but refuses sign-in. Migration 0021.
console_users = Table(
    "console_users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("workspace_id", String(40), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("role", String(10), nullable=False),  # viewer | editor | admin
    Column("password_hash", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("disabled_at_ms", BigInteger),
    UniqueConstraint("workspace_id", "email", name="uq_console_users_email"),
)

# Console sessions: the id is the SHA-256 of the cookie's random token (a copy of the
# database holds no usable session). A user's session has user_id; one opened with an admin
# token has the token's digest and hint instead, and acts as an admin while the token exists.
# Revoked sessions stay (revoked_at_ms) as the server-side revocation list. Migration 0021.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("workspace_id", String(40), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(40), ForeignKey("console_users.id", ondelete="CASCADE")),
    Column("admin_key_hash", String(64)),
    Column("admin_key_hint", String(8)),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("last_seen_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger),
    Index("ix_console_sessions_user", "user_id"),
)

# Every successful change through the admin API or the console: who (a user's email or
# "admin token nfa_xxxx…"), what (the action), on what (the target), when, and for documents
# the JSON before and after. Read newest first by id (rows are written in time order). Migration 0021.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("workspace_id", String(40), nullable=False),
    Column("actor", String(400), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", Text, nullable=False),
    Column("before", Text),
    Column("after", Text),
    Column("at_ms", BigInteger, nullable=False),
    Index("ix_audit_log_workspace_time", "workspace_id", "at_ms", "id"),
)

# Tables holding rows derived from a person, purged on erasure (later issues add theirs).
PROFILE_OWNED = (
    events,
    identities,
    profile_state,
    journey_runs,
    timers,
    outbox,
    log_channel_messages,
    subscriptions,
    push_subscriptions,
    device_tokens,
    push_deliveries,
    segment_members,
    message_facts,
    run_arms,
)
