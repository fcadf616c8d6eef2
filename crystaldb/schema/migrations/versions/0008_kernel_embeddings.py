"""kernel embeddings

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 13:20:00.000000

Two-dimensional maps of a stored square kernel (kernel PCA for now), one point per kernel
row, stored with their method, parameters and run so the web explorer's /map opens at once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kernel_embeddings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kernel_id", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("parameters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("structure_ids", sa.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("x", sa.ARRAY(sa.Double()), nullable=False),
        sa.Column("y", sa.ARRAY(sa.Double()), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "cardinality(x) = cardinality(structure_ids)"
            " AND cardinality(y) = cardinality(structure_ids)",
            name=op.f("ck_kernel_embeddings_points"),
        ),
        sa.ForeignKeyConstraint(
            ["kernel_id"],
            ["kernel_matrices.id"],
            name=op.f("fk_kernel_embeddings_kernel_id_kernel_matrices"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_kernel_embeddings_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kernel_embeddings")),
    )
    op.create_index(
        op.f("ix_kernel_embeddings_kernel_id"), "kernel_embeddings", ["kernel_id"], unique=False
    )
    op.create_index(
        op.f("ix_kernel_embeddings_run_id"), "kernel_embeddings", ["run_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_kernel_embeddings_run_id"), table_name="kernel_embeddings")
    op.drop_index(op.f("ix_kernel_embeddings_kernel_id"), table_name="kernel_embeddings")
    op.drop_table("kernel_embeddings")
