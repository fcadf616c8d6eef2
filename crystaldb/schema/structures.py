"""Crystal structures: the cell, the sites, and the derived columns users query on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from crystaldb.core.records import CRYSTAL_SYSTEMS
from crystaldb.schema.base import Base, created_at_column


class Structure(Base):
    """One unique crystal structure (unique by its content fingerprint)."""

    __tablename__ = "structures"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Lattice vectors as rows, in angstrom: [[ax, ay, az], [bx, by, bz], [cx, cy, cz]].
    lattice: Mapped[list[list[float]]] = mapped_column(ARRAY(Double, dimensions=2))
    # Fractional coordinates, one row per site.
    frac_coords: Mapped[list[list[float]]] = mapped_column(ARRAY(Double, dimensions=2))
    atomic_numbers: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger))
    # NULL when every site is fully occupied.
    occupancies: Mapped[list[float] | None] = mapped_column(ARRAY(Double))
    # NULL when every site has its element's natural isotope mix; else the mass number of
    # each site, 0 for the natural mix (deuterium: atomic number 1, mass number 2).
    mass_numbers: Mapped[list[int] | None] = mapped_column(ARRAY(SmallInteger))

    reduced_formula: Mapped[str] = mapped_column(Text)
    hill_formula: Mapped[str] = mapped_column(Text)
    anonymous_formula: Mapped[str] = mapped_column(Text)
    elements: Mapped[list[str]] = mapped_column(ARRAY(Text))
    nelements: Mapped[int] = mapped_column(SmallInteger)
    nsites: Mapped[int] = mapped_column(Integer)
    spacegroup_number: Mapped[int | None] = mapped_column(SmallInteger)
    spacegroup_symbol: Mapped[str | None] = mapped_column(Text)
    symprec: Mapped[float | None] = mapped_column(Double)
    crystal_system: Mapped[str | None] = mapped_column(Text)
    volume: Mapped[float] = mapped_column(Double)
    density: Mapped[float] = mapped_column(Double)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    # Quality notes from reading and checking, some of FLAGS (crystaldb.core.validate).
    flags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (
        CheckConstraint("nsites > 0 AND nsites = cardinality(atomic_numbers)", name="nsites"),
        CheckConstraint("nelements = cardinality(elements)", name="nelements"),
        CheckConstraint(
            "mass_numbers IS NULL OR cardinality(mass_numbers) = nsites", name="mass_numbers"
        ),
        CheckConstraint("spacegroup_number BETWEEN 1 AND 230", name="spacegroup_number"),
        CheckConstraint(
            "crystal_system IN (" + ", ".join(f"'{c}'" for c in CRYSTAL_SYSTEMS) + ")",
            name="crystal_system",
        ),
        CheckConstraint("volume > 0", name="volume"),
        Index("ix_structures_elements", "elements", postgresql_using="gin"),
        Index("ix_structures_flags", "flags", postgresql_using="gin"),
        Index("ix_structures_reduced_formula", "reduced_formula"),
        Index("ix_structures_anonymous_formula", "anonymous_formula"),
        Index("ix_structures_spacegroup_number", "spacegroup_number"),
        Index("ix_structures_nsites", "nsites"),
        Index("ix_structures_nelements", "nelements"),
        Index("ix_structures_crystal_system", "crystal_system"),
    )


class ExternalId(Base):
    """An identifier of a structure in another database (COD 7033509, an OMDB id, ...)."""

    __tablename__ = "external_ids"

    database: Mapped[str] = mapped_column(Text, primary_key=True)
    external_id: Mapped[str] = mapped_column(Text, primary_key=True)
    structure_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("structures.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = created_at_column()
