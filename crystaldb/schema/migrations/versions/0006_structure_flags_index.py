"""structure flags index

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:00:00.000000

A GIN index on structures.flags, for the filters `flags has all/any ...` (@>, &&). On a
COD-sized table (450,000 rows, the sample's flags) PostgreSQL uses it for every such test:
`flags has any deuterated` (2% of rows) went from a 275 ms parallel sequential scan to 13 ms,
`flags has all formula_sum_mismatch` (11%) from 347 to 152 ms; the index took 0.4 s to build
and 768 kB. `excludes` and `has only` still read the table, as for elements.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_structures_flags", "structures", ["flags"], unique=False, postgresql_using="gin"
    )


def downgrade() -> None:
    op.drop_index("ix_structures_flags", table_name="structures", postgresql_using="gin")
