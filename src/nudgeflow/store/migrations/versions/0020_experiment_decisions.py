"""Experiment decisions: arms paused by a guardrail breach and winners routed to, per workspace,
journey, version and step, with when and why; kept when cleared (the record of them all).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "experiment_decisions",
        sa.Column("id", SeqType, primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("journey_id", sa.String(80), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("step", sa.String(100), nullable=False),
        sa.Column("arm", sa.String(100), nullable=False),
        sa.Column("action", sa.String(10), nullable=False),  # paused | routed
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("decided_at_ms", sa.BigInteger, nullable=False),
        sa.Column("cleared_at_ms", sa.BigInteger),
        sa.Column("cleared_note", sa.Text),
    )
    op.create_index(
        "ix_experiment_decisions_step", "experiment_decisions", ["workspace_id", "journey_id", "version", "step"]
    )


def downgrade() -> None:
    op.drop_index("ix_experiment_decisions_step", table_name="experiment_decisions")
    op.drop_table("experiment_decisions")
