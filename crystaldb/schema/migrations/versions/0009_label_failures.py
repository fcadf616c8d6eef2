"""label failures

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 14:45:00.000000

Structures a labelling job (`crystaldb label xtb`) computed no label for, with the reason
(timeout, SCF not converged, crashed, open shell, ...), one row per structure and setting.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "label_failures",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("structure_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("property", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("parameters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_label_failures_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["structure_id"],
            ["structures.id"],
            name=op.f("fk_label_failures_structure_id_structures"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_failures")),
        sa.UniqueConstraint(
            "structure_id",
            "property",
            "method",
            "code",
            "parameters",
            name=op.f("uq_label_failures_structure_id_property_method_code_parameters"),
        ),
    )
    op.create_index(
        "ix_label_failures_method_reason", "label_failures", ["method", "reason"], unique=False
    )
    op.create_index(op.f("ix_label_failures_run_id"), "label_failures", ["run_id"], unique=False)
    op.create_index(
        op.f("ix_label_failures_structure_id"), "label_failures", ["structure_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_label_failures_structure_id"), table_name="label_failures")
    op.drop_index(op.f("ix_label_failures_run_id"), table_name="label_failures")
    op.drop_index("ix_label_failures_method_reason", table_name="label_failures")
    op.drop_table("label_failures")
