"""The global control group in measurement: a run's side and cohort on journey_runs (and the
goal event that converted it, so that one goal event counts once for a person), the
control runs' own counters and the program's per-person counters in report_rollups, and a
program person's revenue so far in message_facts (store/rollups.py says how they are kept).

Rows from before stay as they were: runs not in the group (control 0, no cohort), counters 0.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

COUNTERS = (
    "entered_control",
    "conversions_control",
    "program_people",
    "program_conversions",
    "program_people_control",
    "program_conversions_control",
)
SUMS = (
    "revenue_control",
    "revenue_sq_control",
    "program_revenue",
    "program_revenue_sq",
    "program_revenue_control",
    "program_revenue_sq_control",
)


def upgrade() -> None:
    with op.batch_alter_table("journey_runs") as table:
        table.add_column(sa.Column("control", sa.Integer, nullable=False, server_default="0"))
        table.add_column(sa.Column("control_cohort", sa.String(120)))
        table.add_column(sa.Column("converted_by", sa.String(512)))
    with op.batch_alter_table("report_rollups") as table:
        for name in COUNTERS:
            table.add_column(sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))
        for name in SUMS:
            table.add_column(sa.Column(name, sa.Float, nullable=False, server_default="0"))
    with op.batch_alter_table("message_facts") as table:
        table.add_column(sa.Column("amount", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("message_facts") as table:
        table.drop_column("amount")
    with op.batch_alter_table("report_rollups") as table:
        for name in (*COUNTERS, *SUMS):
            table.drop_column(name)
    with op.batch_alter_table("journey_runs") as table:
        table.drop_column("converted_by")
        table.drop_column("control_cohort")
        table.drop_column("control")
