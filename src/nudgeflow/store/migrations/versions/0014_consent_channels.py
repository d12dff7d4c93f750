"""Consent per channel: subscriptions gain `channel`, and where each choice came from.

- `channel` joins the key (workspace_id, profile_id, channel, topic). Every row recorded
  before was made by an email (the unsubscribe link, the preference center), so each
  becomes an email row and means for email what it meant before.
- Push keeps what it did: before, a refusal held for every channel, so each refusal is
  copied to a push row (source `migration`). Nobody starts receiving marketing push they
  did not receive before; the preference center shows it and the person can change it.
  Consents (`subscribed` = 1) are not copied: none was given for push.
- An all-marketing refusal ("*", 0) held over every topic before. From now on a topic
  consented to after it is an exception to it (store/consent.decide), so each old one is
  dated as late as the person's latest choice: whatever they ticked before still yields.
- `source` (api, cli, identify, preferences, unsubscribe_link, double_opt_in, migration;
  NULL for rows recorded before) and `message_key` (the message whose link recorded it).
  A row without a source never counts as consent in an opt_in workspace.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_COLUMNS = "workspace_id, profile_id, channel, topic, subscribed, frequency, updated_at_ms, source, message_key"


def upgrade() -> None:
    op.execute(
        "UPDATE subscriptions SET updated_at_ms = ("
        " SELECT MAX(later.updated_at_ms) FROM subscriptions later"
        " WHERE later.workspace_id = subscriptions.workspace_id AND later.profile_id = subscriptions.profile_id"
        ") WHERE topic = '*' AND subscribed = 0"
    )
    with op.batch_alter_table("subscriptions", recreate="always") as batch:
        batch.add_column(sa.Column("channel", sa.String(20), nullable=False, server_default="email"))
        batch.add_column(sa.Column("source", sa.String(40)))
        batch.add_column(sa.Column("message_key", sa.String(200)))
        batch.drop_constraint("pk_subscriptions", type_="primary")
        batch.create_primary_key("pk_subscriptions", ["workspace_id", "profile_id", "channel", "topic"])
    op.execute(
        f"INSERT INTO subscriptions ({_COLUMNS}) SELECT workspace_id, profile_id, 'push', topic, subscribed,"
        " 'normal', updated_at_ms, 'migration', NULL FROM subscriptions WHERE channel = 'email' AND subscribed = 0"
    )
    with op.batch_alter_table("subscriptions") as batch:
        batch.alter_column("channel", existing_type=sa.String(20), existing_nullable=False, server_default=None)


def downgrade() -> None:
    op.execute("DELETE FROM subscriptions WHERE channel <> 'email'")
    with op.batch_alter_table("subscriptions", recreate="always") as batch:
        batch.drop_constraint("pk_subscriptions", type_="primary")
        batch.drop_column("message_key")
        batch.drop_column("source")
        batch.drop_column("channel")
        batch.create_primary_key("pk_subscriptions", ["workspace_id", "profile_id", "topic"])
