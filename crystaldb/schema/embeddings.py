"""Kernel embeddings: 2D maps of a stored kernel, kept so the web map opens instantly."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, BigInteger, CheckConstraint, Double, ForeignKey, Identity, Text
from sqlalchemy.orm import Mapped, mapped_column

from crystaldb.schema.base import Base, created_at_column


class KernelEmbedding(Base):
    """One point (x, y) per row of a square kernel, with the method and parameters behind it."""

    __tablename__ = "kernel_embeddings"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kernel_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("kernel_matrices.id"), index=True)
    method: Mapped[str] = mapped_column(Text)  # e.g. kpca
    parameters: Mapped[dict[str, Any]] = mapped_column()
    structure_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))  # point order
    x: Mapped[list[float]] = mapped_column(ARRAY(Double))
    y: Mapped[list[float]] = mapped_column(ARRAY(Double))
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("runs.id"), index=True)
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (
        CheckConstraint(
            "cardinality(x) = cardinality(structure_ids)"
            " AND cardinality(y) = cardinality(structure_ids)",
            name="points",
        ),
    )
