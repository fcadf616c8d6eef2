"""DFT calculations and the labels (band gaps, ...) they produced; never mixed with predictions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from crystaldb.schema.base import Base, created_at_column


class Calculation(Base):
    """One first-principles calculation on one structure, with its method."""

    __tablename__ = "calculations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    structure_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("structures.id", ondelete="CASCADE"), index=True
    )
    functional: Mapped[str] = mapped_column(Text)  # e.g. PBE
    code: Mapped[str] = mapped_column(Text)  # e.g. VASP
    code_version: Mapped[str | None] = mapped_column(Text)
    # Cutoff, k-mesh, pseudopotentials, convergence criteria, ... as the source states them.
    parameters: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    magnetic_moment: Mapped[float | None] = mapped_column(Double)  # total, in Bohr magnetons
    # The dataset or publication the calculation comes from (e.g. OMDB-GAP1 v1.1).
    reference: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()

    # Target of the composite foreign key that keeps labels.structure_id consistent.
    __table_args__ = (UniqueConstraint("id", "structure_id"),)


class Label(Base):
    """A computed property value; structure_id is denormalised for fast range queries."""

    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    calculation_id: Mapped[int] = mapped_column(BigInteger)
    structure_id: Mapped[int] = mapped_column(BigInteger, index=True)
    property: Mapped[str] = mapped_column(Text)  # e.g. band_gap
    value: Mapped[float] = mapped_column(Double)
    unit: Mapped[str] = mapped_column(Text)  # e.g. eV
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (
        ForeignKeyConstraint(
            ["calculation_id", "structure_id"],
            ["calculations.id", "calculations.structure_id"],
            ondelete="CASCADE",
        ),
        UniqueConstraint("calculation_id", "property"),
        Index("ix_labels_property_value", "property", "value"),
    )
