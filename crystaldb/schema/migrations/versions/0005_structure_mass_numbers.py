"""structure mass numbers

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00.000000

The isotope of each site (NULL when every site has its natural isotope mix). Rows stored
before this revision get NULL: a deuterated crystal ingested earlier still reads as
hydrogen, with the natural-mix density, until its file is ingested into a fresh database.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "structures", sa.Column("mass_numbers", sa.ARRAY(sa.SmallInteger()), nullable=True)
    )
    op.create_check_constraint(
        op.f("ck_structures_mass_numbers"),
        "structures",
        "mass_numbers IS NULL OR cardinality(mass_numbers) = nsites",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_structures_mass_numbers"), "structures", type_="check")
    op.drop_column("structures", "mass_numbers")
