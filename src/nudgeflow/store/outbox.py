"""The outbox: messages the engine decided to send, claimed, leased and recorded.

The engine queues a row per message (store/effects_writer.py, keyed by its idempotency
key, so a batch decided twice queues it once). The dispatcher (runtime/dispatcher.py)
claims the due rows, leases those it sends outside any transaction, and records each
outcome; the statuses below are the life of a row.

A message the engine's send policies withheld (core/effects.MessageWithheld) has a row
too, `deferred` (not claimed: its next_attempt_at_ms is when the engine decides it again)
or `dropped`, with the reason in `reason`. A deferred row is the one row a later decision
on the same key replaces: the SendMessage of its release makes it `pending`, a second
deferral or a drop re-records it. Every other row is final for the engine: a batch decided
twice does not touch it.

`reason` says why a message is not (or not yet) sent: suppressed, deferred or dropped,
in model/reasons.py's words. `error` says what went wrong delivering it: a failure, or
the last try of a message waiting for a retry.

A lease is the row's next attempt moved to the lease's end (and `leased_until_ms`), with
`claims` one up: a lease that runs out leaves a row that is pending and due, which the
next claim of any dispatcher takes like any other (on PostgreSQL any number of dispatch
processes claim side by side: docs/roles.md). The outcome of a leased send is recorded
only while the row still carries that claim (`still_leased`: `claims` is the lease's token,
never lowered, so it differs for every claim), so a dispatcher whose lease ran out and was
taken over records nothing: no status, no event, no count. A dispatcher that stops
(SIGTERM) hands back the leases of the sends it will not finish (`hand_back`): due at once,
for any dispatcher.

Three counts, each with its own meaning (and bound, in runtime/dispatcher.py):
- `attempts`: tries, each with an outcome recorded (sent, retried, failed) or a send that
  had begun when it was handed back (it may have been accepted). Set when the outcome is
  recorded, never at the claim: a claim lost to a dispatcher that died is not a try.
- `claims`: leases taken, whatever became of them (the lease token).
- `lost_claims`: leases that ran out with no outcome (counted by the next claim, which sees
  `leased_until_ms` still set, or by an engine reclaiming them: store/engine_lock.py).

This is one side of the seam the distributed runtime (issue 17: PostgreSQL + NATS
JetStream) swaps: a second implementation would hand the claimed messages to senders
through a work queue stream (a lease becomes the stream's ack wait) instead of
`FOR UPDATE SKIP LOCKED` over rows, behind these same functions and statuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from nudgeflow.core import effects
from nudgeflow.model.iso_time import iso
from nudgeflow.store import sql
from nudgeflow.store.schema import outbox

# The statuses of an outbox row.
PENDING, SENT, FAILED = "pending", "sent", "failed"
SUPPRESSED = "suppressed"  # not sent, by consent, suppression or for want of an address (`reason`)
LOGGED = "logged"  # taken by the log channel in place of an unconfigured one; not sent
DEFERRED = effects.DEFERRED  # withheld by a send policy until next_attempt_at_ms (`reason`)
DROPPED = effects.DROPPED  # withheld by a send policy for good (`reason`)
NOT_SENT = (SUPPRESSED, DEFERRED, DROPPED)  # the statuses that carry a reason

OUTBOX_COLUMNS = (
    "workspace_id",
    "idempotency_key",
    "profile_id",
    "run_id",
    "journey_id",
    "journey_version",
    "step",
    "channel",
    "template",
    "variant",
    "marketing",
    "payload",
    "status",
    "attempts",
    "next_attempt_at_ms",
    "created_at_ms",
    "updated_at_ms",
    "sent_at_ms",
    "error",
    "reason",
)
STATUS = OUTBOX_COLUMNS.index("status")
# What a later decision on a deferred row's key replaces: all but its identity. created_at_ms
# too: it is when the engine queued the message to be sent (a push expires relative to it), and
# a deferred message is queued at its release, not when it was first held back.
REPLACED = tuple(c for c in OUTBOX_COLUMNS if c not in ("workspace_id", "idempotency_key"))

CLAIM_COLUMNS = (
    "id, workspace_id, idempotency_key, profile_id, run_id, journey_id, journey_version, step,"
    " channel, template, variant, marketing, payload, attempts, created_at_ms, leased_until_ms, claims, lost_claims"
)


def queue(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert rows of OUTBOX_COLUMNS; a repeat of an idempotency key is queued once, except
    that it replaces a `deferred` row (the message's release, or its second deferral)."""
    sql.insert_rows(
        conn,
        "outbox",
        OUTBOX_COLUMNS,
        rows,
        conflict="workspace_id, idempotency_key",
        update=REPLACED,
        update_where=f"\"outbox\".status = '{DEFERRED}'",
    )


def claim_due(conn: Connection, now_ms: int, limit: int) -> Sequence[Any]:
    """The pending rows that are due (CLAIM_COLUMNS), oldest first; locked on PostgreSQL,
    skipping rows another dispatcher holds."""
    m = sql.mark(conn)
    suffix = " FOR UPDATE SKIP LOCKED" if sql.is_postgres(conn) else ""
    return conn.exec_driver_sql(
        f"SELECT {CLAIM_COLUMNS} FROM outbox WHERE status = {m} AND next_attempt_at_ms <= {m}"
        f" ORDER BY next_attempt_at_ms, id LIMIT {m}{suffix}",
        (PENDING, now_ms, limit),
    ).all()


def lease(conn: Connection, leases: Sequence[tuple[int, int, int, int, int, int]]) -> None:
    """(claims, lost_claims, next_attempt_at_ms, leased_until_ms, updated_at_ms, id) per
    leased row: `claims` the lease's token (the row's claims before, plus one)."""
    sql.execute_many(
        conn,
        "UPDATE outbox SET claims = ?, lost_claims = ?, next_attempt_at_ms = ?, leased_until_ms = ?,"
        " updated_at_ms = ? WHERE id = ?",
        leases,
    )


def count_lost(conn: Connection, rows: Sequence[tuple[int, int]]) -> None:
    """(lost_claims, id) per row not leased again: one failed for its lost claims keeps
    their count beside its error (rare: no write on the claim's usual path)."""
    sql.execute_many(conn, "UPDATE outbox SET lost_claims = ? WHERE id = ?", rows)


def still_leased(conn: Connection, leases: Sequence[tuple[int, int]]) -> set[int]:
    """Which of these (id, claim) leases are still ours: the row pending with that claim.

    Locked on PostgreSQL (in id order, as any two callers take them) until the transaction
    ends, so that what is recorded next is the outcome of the lease that holds the row: a
    dispatcher whose lease ran out and was claimed again must record nothing, not even the
    engagement event its late outcome would append."""
    wanted = dict(leases)
    suffix = " ORDER BY id FOR UPDATE" if sql.is_postgres(conn) else ""
    rows = sql.select_in(
        conn, "SELECT id, claims FROM outbox WHERE status = ? AND id IN", list(wanted), (PENDING,), suffix
    )
    return {int(row_id) for row_id, claims in rows if wanted.get(int(row_id)) == int(claims)}


def record(
    conn: Connection,
    sent: Sequence[tuple[Any, ...]],
    retry: Sequence[tuple[Any, ...]],
    failed: Sequence[tuple[Any, ...]],
    *,
    leased: bool,
    suppressed: Sequence[tuple[Any, ...]] = (),
) -> None:
    """Record outcomes: `sent` (status, attempts, sent_at_ms, updated_at_ms, id), `retry`
    (attempts, next_attempt_at_ms, updated_at_ms, error, id), `failed` (status, attempts,
    updated_at_ms, error, id), `suppressed` (attempts, updated_at_ms, reason, id); each
    followed, when `leased`, by (PENDING, the lease's claim)."""
    # A leased row is only updated while the lease is ours: same claim, still pending.
    guard = " AND status = ? AND claims = ?" if leased else ""
    sql.execute_many(
        conn,
        "UPDATE outbox SET status = ?, attempts = ?, sent_at_ms = ?, updated_at_ms = ?, error = NULL "
        f"WHERE id = ?{guard}",
        sent,
    )
    sql.execute_many(
        conn,
        # The lease ends with its outcome: a row claimed again with a lease still set is one
        # whose dispatcher never recorded its send (a redelivery, counted at the claim).
        "UPDATE outbox SET attempts = ?, next_attempt_at_ms = ?, updated_at_ms = ?, error = ?, leased_until_ms = NULL"
        f" WHERE id = ?{guard}",
        retry,
    )
    sql.execute_many(
        conn, f"UPDATE outbox SET status = ?, attempts = ?, updated_at_ms = ?, error = ? WHERE id = ?{guard}", failed
    )
    sql.execute_many(
        conn,
        f"UPDATE outbox SET status = '{SUPPRESSED}', attempts = ?, updated_at_ms = ?, reason = ? WHERE id = ?{guard}",
        suppressed,
    )


def hand_back(conn: Connection, rows: Sequence[tuple[int, int, int, int]]) -> int:
    """Release leases a dispatcher will not record: (attempts, now_ms, id, the lease's
    claim) per row; each row is due at `now_ms` again, with `attempts` (one up for a send
    that had begun: it may have been accepted). Not a lost claim: its dispatcher said what
    became of it. Only a lease still ours is touched (same claim, still pending). Returns
    the rows released."""
    m = sql.mark(conn)
    released = 0
    for attempts, now_ms, row_id, claim in rows:
        result = conn.exec_driver_sql(
            f"UPDATE outbox SET attempts = {m}, next_attempt_at_ms = {m}, leased_until_ms = NULL,"
            f" updated_at_ms = {m} WHERE id = {m} AND status = {m} AND claims = {m}",
            (attempts, now_ms, now_ms, row_id, PENDING, claim),
        )
        released += int(result.rowcount or 0)
    return released


def next_due(conn: Connection, now_ms: int) -> tuple[int, str] | None:
    """(id, idempotency key) of the pending row the next claim would take first: on
    PostgreSQL, as claim_due, skipping (and then holding) rows another dispatcher holds, so
    that the safety net fails the message that failed here, not one being sent elsewhere."""
    m = sql.mark(conn)
    suffix = " FOR UPDATE SKIP LOCKED" if sql.is_postgres(conn) else ""
    row = conn.exec_driver_sql(
        f"SELECT id, idempotency_key FROM outbox WHERE status = {m} AND next_attempt_at_ms <= {m}"
        f" ORDER BY next_attempt_at_ms, id LIMIT 1{suffix}",
        (PENDING, now_ms),
    ).first()
    return (row[0], row[1]) if row is not None else None


def fail(conn: Connection, row_id: int, error: str, now_ms: int) -> None:
    """Mark one row failed, with the reason (the safety net's last resort)."""
    sql.execute_many(
        conn,
        "UPDATE outbox SET status = ?, error = ?, updated_at_ms = ? WHERE id = ?",
        [(FAILED, error, now_ms, row_id)],
    )


def profile_of(conn: Connection, workspace_id: str, idempotency_key: str) -> str | None:
    """The profile a message was queued for, or None."""
    m = sql.mark(conn)
    row = conn.exec_driver_sql(
        f"SELECT profile_id FROM outbox WHERE workspace_id = {m} AND idempotency_key = {m}",
        (workspace_id, idempotency_key),
    ).first()
    return row[0] if row is not None else None


def message_origin(conn: Connection, workspace_id: str, idempotency_key: str) -> Any:
    """(journey_id, run_id, step, channel, template, variant, sent_at_ms) of a queued message,
    or None. sent_at_ms is None until it is sent."""
    t = outbox.c
    return conn.execute(
        select(t.journey_id, t.run_id, t.step, t.channel, t.template, t.variant, t.sent_at_ms).where(
            t.workspace_id == workspace_id, t.idempotency_key == idempotency_key
        )
    ).first()


# --- a person's messages (the admin API) -------------------------------------------------------


def message_view(row: Any) -> dict[str, Any]:
    """One outbox row as the admin API shows it: its status and, when it was not sent, why."""
    return {
        "id": row.id,
        "key": row.idempotency_key,
        "journey_id": row.journey_id,
        "journey_version": row.journey_version,
        "run_id": row.run_id,
        "step": row.step,
        "channel": row.channel,
        "template": row.template,
        "variant": row.variant,
        "marketing": bool(row.marketing),
        "status": row.status,
        "reason": row.reason,  # suppressed, deferred, dropped: why (model/reasons.py)
        "error": row.error,  # failed (or retried): what went wrong
        "attempts": row.attempts,
        "created_at": iso(row.created_at_ms, milliseconds=False),
        "updated_at": iso(row.updated_at_ms, milliseconds=False),
        "sent_at": iso(row.sent_at_ms, milliseconds=False),
        # A deferred message is decided again then (released, deferred again or dropped).
        "deferred_until": iso(row.next_attempt_at_ms, milliseconds=False) if row.status == DEFERRED else None,
    }


def profile_messages(
    conn: Connection, workspace_id: str, profile_ids: Sequence[str], *, limit: int = 100, before: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """The messages of a person (their profile ids: the profile and those merged into it),
    newest first; `before` is the cursor (a row id) the previous page returned."""
    t = outbox.c
    query = select(outbox).where(t.workspace_id == workspace_id, t.profile_id.in_(list(profile_ids)))
    if before is not None:
        query = query.where(t.id < before)
    rows = list(conn.execute(query.order_by(t.id.desc()).limit(limit + 1)))
    page = [message_view(r) for r in rows[:limit]]
    return page, (rows[limit - 1].id if len(rows) > limit else None)


# --- reading back what was sent (the demo's report) --------------------------------------------


def sent_messages(conn: Connection, workspace_id: str, channels: Sequence[str]) -> list[Any]:
    """(profile_id, journey_id, step, template, variant, sent_at_ms, channel) of the
    workspace's messages sent on `channels`, in no particular order."""
    t = outbox.c
    return list(
        conn.execute(
            select(t.profile_id, t.journey_id, t.step, t.template, t.variant, t.sent_at_ms, t.channel).where(
                t.workspace_id == workspace_id, t.channel.in_(list(channels)), t.status == SENT
            )
        ).all()
    )


def failed_steps(conn: Connection, workspace_id: str) -> list[Any]:
    """(journey_id, step) of each of the workspace's messages that failed for good."""
    t = outbox.c
    return list(conn.execute(select(t.journey_id, t.step).where(t.workspace_id == workspace_id, t.status == FAILED)))


def origins(conn: Connection, workspace_id: str, channel: str) -> list[Any]:
    """(idempotency_key, journey_id, step, template, profile_id) of every message the
    workspace queued on `channel`, whatever its status: what a received message's key
    (the X-Nudgeflow-Message-Key header, a push's `key`) is matched against."""
    t = outbox.c
    return list(
        conn.execute(
            select(t.idempotency_key, t.journey_id, t.step, t.template, t.profile_id).where(
                t.workspace_id == workspace_id, t.channel == channel
            )
        ).all()
    )


def outcomes(conn: Connection, workspace_id: str) -> list[Any]:
    """(idempotency_key, journey_id, channel, status, reason) of every message the workspace
    queued: where each one ended, and why when it was not sent (the demo's policies report)."""
    t = outbox.c
    return list(
        conn.execute(
            select(t.idempotency_key, t.journey_id, t.channel, t.status, t.reason).where(t.workspace_id == workspace_id)
        ).all()
    )


# --- what was not sent, for the console's overview -----------------------------------------------

# The statuses the overview explains, and the column that says why for each.
EXPLAINED = ((FAILED, "error"), (SUPPRESSED, "reason"), (DEFERRED, "reason"), (DROPPED, "reason"))
# The rows of each status the summary reads at most: a few tens of milliseconds on SQLite.
NOT_SENT_SCAN = 3_000


def not_sent_summary(
    conn: Connection, workspace_id: str, since_ms: int, *, scan: int = NOT_SENT_SCAN, top: int = 20
) -> dict[str, dict[str, Any]]:
    """Per status (failed, suppressed, deferred, dropped): the workspace's messages of that
    status due since `since_ms`, counted by why (a failure's error, the others' reason), the
    `top` most frequent first.

    Bounded, so a console page stays fast over millions of messages: each status reads at most
    `scan` of the workspace's rows, newest first, along ix_outbox_due (status,
    next_attempt_at_ms: when a failed or suppressed message was last due, when a dropped one was
    dropped, when a deferred one is decided again), the workspace tested on each. `complete` is
    false when that bound was reached: the counts are then those of the newest `scan`, a lower
    bound. (On a server of many workspaces the walk also passes the others' rows of that status
    in the period; a workspace's own index would spare that, at a cost on every outbox write.)"""
    m = sql.mark(conn)
    out: dict[str, dict[str, Any]] = {}
    for status, column in EXPLAINED:
        rows = conn.exec_driver_sql(
            f"SELECT {column} FROM outbox WHERE status = {m} AND next_attempt_at_ms >= {m} AND workspace_id = {m}"
            f" ORDER BY next_attempt_at_ms DESC LIMIT {m}",
            (status, since_ms, workspace_id, scan),
        ).all()
        counts: dict[str, int] = {}
        for row in rows:
            why = row[0] or ""
            counts[why] = counts.get(why, 0) + 1
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        out[status] = {
            "total": sum(counts.values()),
            "complete": len(rows) < scan,
            "reasons": [{"why": why, "count": n} for why, n in ranked[:top]],
            "other": sum(n for _, n in ranked[top:]),
        }
    return out
