"""run results

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 12:10:00.000000

A run's outputs (counts, the ids it made, metrics) in their own column, beside its inputs
(`parameters`), instead of merged into them: a job's arguments can be read back exactly as
given. Runs recorded before this revision keep their results inside `parameters`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "runs",
        sa.Column(
            "results",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("runs", "results")
