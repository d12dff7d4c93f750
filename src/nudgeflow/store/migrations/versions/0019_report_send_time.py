"""Send-time arms in the reports: a send step's messages counted by the arm that timed them
(optimized, explore, fallback), with their opens, clicks, unsubscribes and complaints.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

DIMENSIONS = ("workspace_id", "journey_id", "version", "step", "timed_by", "arm", "day")
COUNTERS = ("sent", "opens", "opens_machine", "clicks", "clicks_bot", "unsubscribes", "complaints")


def upgrade() -> None:
    op.create_table(
        "report_send_time",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("journey_id", sa.String(80), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("step", sa.String(100), nullable=False),
        sa.Column("timed_by", sa.String(100), nullable=False),
        sa.Column("arm", sa.String(20), nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
        *[sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in COUNTERS],
        sa.PrimaryKeyConstraint(*DIMENSIONS, name="pk_report_send_time"),
    )


def downgrade() -> None:
    op.drop_table("report_send_time")
