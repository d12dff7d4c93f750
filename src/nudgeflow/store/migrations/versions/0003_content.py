"""Templates and their versions, the product and place catalog, suppressions, marketing
subscriptions, workspace settings and the dev inbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "templates",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "name", name="pk_templates"),
    )
    op.create_table(
        "template_versions",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("compiled", sa.Text),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "name", "version", name="pk_template_versions"),
    )
    op.create_table(
        "catalog_products",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("price", sa.Float),
        sa.Column("currency", sa.String(3)),
        sa.Column("image", sa.Text),
        sa.Column("url", sa.Text),
        sa.Column("category", sa.String(200)),
        sa.Column("stock", sa.Integer),
        sa.Column("attributes", sa.Text, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id", name="pk_catalog_products"),
    )
    op.create_index("ix_catalog_products_category", "catalog_products", ["workspace_id", "category"])
    op.create_table(
        "catalog_places",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("latitude", sa.Float, nullable=False),
        sa.Column("longitude", sa.Float, nullable=False),
        sa.Column("address", sa.Text),
        sa.Column("attributes", sa.Text, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id", name="pk_catalog_places"),
    )
    op.create_table(
        "suppressions",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "channel", "address", name="pk_suppressions"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("profile_id", sa.String(40), nullable=False),
        sa.Column("topic", sa.String(100), nullable=False),
        sa.Column("subscribed", sa.Integer, nullable=False),
        sa.Column("frequency", sa.String(20), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "profile_id", "topic", name="pk_subscriptions"),
    )
    op.create_table(
        "workspace_settings",
        sa.Column("workspace_id", sa.String(40), primary_key=True),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "inbox_messages",
        sa.Column("id", SeqType, primary_key=True, autoincrement=True),
        sa.Column("mail_from", sa.Text, nullable=False),
        sa.Column("rcpt_to", sa.Text, nullable=False),
        sa.Column("subject", sa.Text),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("received_at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "inbox_messages",
        "workspace_settings",
        "subscriptions",
        "suppressions",
        "catalog_places",
        "catalog_products",
        "template_versions",
        "templates",
    ):
        op.drop_table(table)
