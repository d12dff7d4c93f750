"""Experiment arms: which arm of each experiment step (a split, a send step with variants)
each treated run was assigned and when (run_arms), and per-arm run counters in the report
rollups (the arm's row: the experiment step, the arm as variant, channel '').

Arms assigned before this migration were not recorded: the counters start at zero.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

ARM_COUNTERS = ("arm_runs", "arm_conversions", "arm_opens", "arm_clicks", "arm_unsubscribes", "arm_complaints")
ARM_SUMS = ("arm_revenue", "arm_revenue_sq")


def upgrade() -> None:
    # ALTER TABLE … ADD COLUMN on both databases: the rollups are not copied.
    for name in ARM_COUNTERS:
        op.add_column("report_rollups", sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))
    for name in ARM_SUMS:
        op.add_column("report_rollups", sa.Column(name, sa.Float, nullable=False, server_default="0"))
    op.create_table(
        "run_arms",
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("step", sa.String(100), nullable=False),
        sa.Column("arm", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("journey_id", sa.String(80), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("profile_id", sa.String(40), nullable=False),
        sa.Column("entered_at_ms", sa.BigInteger, nullable=False),
        sa.Column("assigned_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "step", name="pk_run_arms"),
    )
    op.create_index("ix_run_arms_assigned", "run_arms", ["workspace_id", "assigned_at_ms"])
    op.create_index("ix_run_arms_profile", "run_arms", ["profile_id"])


def downgrade() -> None:
    op.drop_index("ix_run_arms_profile", table_name="run_arms")
    op.drop_index("ix_run_arms_assigned", table_name="run_arms")
    op.drop_table("run_arms")
    with op.batch_alter_table("report_rollups") as batch:
        for name in (*ARM_SUMS, *ARM_COUNTERS):
            batch.drop_column(name)
