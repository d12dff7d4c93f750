"""Report rollups: counters per journey, version, step, variant, channel and UTC day, kept
as the facts are recorded; latency histograms beside them; and the first occurrence of each
fact per message (or run), which makes "unique" and "once" exact.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

DIMENSIONS = ("workspace_id", "journey_id", "version", "step", "variant", "channel", "day")
COUNTERS = (
    "entered",
    "held_out",
    "recipients",
    "step_recipients",
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
)
SUMS = ("revenue", "revenue_sq", "revenue_held_out", "revenue_sq_held_out", "attributed_revenue")


def _dimensions() -> list[sa.Column[Any]]:
    return [
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("journey_id", sa.String(80), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("step", sa.String(100), nullable=False),
        sa.Column("variant", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "report_rollups",
        *_dimensions(),
        *[sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in COUNTERS],
        *[sa.Column(name, sa.Float, nullable=False, server_default="0") for name in SUMS],
        sa.PrimaryKeyConstraint(*DIMENSIONS, name="pk_report_rollups"),
    )
    op.create_table(
        "report_latencies",
        *_dimensions(),
        sa.Column("metric", sa.String(20), nullable=False),
        sa.Column("bucket", sa.Integer, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint(*DIMENSIONS, "metric", "bucket", name="pk_report_latencies"),
    )
    op.create_table(
        "message_facts",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("fact", sa.String(20), nullable=False),
        sa.Column("profile_id", sa.String(40), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("message_key", sa.String(200)),
        sa.PrimaryKeyConstraint("workspace_id", "subject", "fact", name="pk_message_facts"),
    )
    op.create_index("ix_message_facts_profile", "message_facts", ["profile_id"])


def downgrade() -> None:
    op.drop_index("ix_message_facts_profile", table_name="message_facts")
    op.drop_table("message_facts")
    op.drop_table("report_latencies")
    op.drop_table("report_rollups")
