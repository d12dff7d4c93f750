"""Send policies: the workspace's policies document, versioned; the outbox says why a message
was not sent.

- policy_versions: one row per applied policies.yaml, never changed afterwards; the
  highest version is the one in force. Who applied it and when are kept with it.
- outbox.reason: why a message is not (or not yet) sent, in model/reasons.py's words
  (`frequency_cap:daily`, `quiet_hours`, `unsubscribed:offers`…), apart from `error`, which
  keeps what went wrong trying to deliver. Rows already suppressed move their reason over,
  rewritten in those words ("suppressed: hard_bounce" -> "suppressed:hard_bounce",
  "unsubscribed" -> "unsubscribed:*", "unsubscribed from topic offers" -> "unsubscribed:offers").

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_versions",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "version", name="pk_policy_versions"),
    )
    # A nullable column: a plain ALTER TABLE on both databases (no copy of the outbox).
    op.add_column("outbox", sa.Column("reason", sa.Text))
    op.execute(
        "UPDATE outbox SET reason = CASE"
        " WHEN error LIKE 'suppressed: %' THEN 'suppressed:' || substr(error, 13)"
        " WHEN error = 'unsubscribed' THEN 'unsubscribed:*'"
        " WHEN error LIKE 'unsubscribed from topic %' THEN 'unsubscribed:' || substr(error, 25)"
        " ELSE error END, error = NULL"
        " WHERE status = 'suppressed'"
    )


def downgrade() -> None:
    op.execute("UPDATE outbox SET error = reason WHERE status = 'suppressed'")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("reason")
    op.drop_table("policy_versions")
