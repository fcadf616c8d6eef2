"""Descriptor sets and kernel matrices: metadata in PostgreSQL, the numbers in Zarr arrays."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, BigInteger, CheckConstraint, ForeignKey, Identity, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from crystaldb.schema.base import Base, created_at_column

ARRAY_STATUSES = ("building", "complete")


class DescriptorSet(Base):
    """Per-structure descriptors (e.g. averaged SOAP) for an ordered list of structures."""

    __tablename__ = "descriptor_sets"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(Text)  # e.g. soap
    # Every hyperparameter, spelled as the library takes it (featomic's max_radial, ...).
    hyperparameters: Mapped[dict[str, Any]] = mapped_column()
    library: Mapped[str] = mapped_column(Text)
    library_version: Mapped[str] = mapped_column(Text)
    structure_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))  # row order
    array_uri: Mapped[str] = mapped_column(Text)
    shape: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    chunks: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    dtype: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="building")
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("runs.id"), index=True)
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in ARRAY_STATUSES) + ")", name="status"
        ),
    )


class KernelMatrix(Base):
    """A kernel between two ordered structure lists (square when rows and columns agree)."""

    __tablename__ = "kernel_matrices"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    descriptor_set_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("descriptor_sets.id"), index=True
    )
    kernel: Mapped[str] = mapped_column(Text)  # e.g. average
    hyperparameters: Mapped[dict[str, Any]] = mapped_column()  # zeta, normalisation, ...
    row_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    col_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    array_uri: Mapped[str] = mapped_column(Text)
    shape: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    chunks: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    dtype: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="building")
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("runs.id"), index=True)
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in ARRAY_STATUSES) + ")", name="status"
        ),
        CheckConstraint(
            "shape[1] = cardinality(row_ids) AND shape[2] = cardinality(col_ids)", name="shape"
        ),
    )
