"""Structures a labelling job computed no label for, with the reason: nothing dropped silently."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Double, ForeignKey, Identity, Index, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crystaldb.schema.base import Base, created_at_column


class LabelFailure(Base):
    """The last failed attempt at one label (property, method, parameters) of one structure.

    One row per structure and setting: a later attempt that fails again replaces the row
    (with its run), one that succeeds deletes it, so the table is what is still missing.
    """

    __tablename__ = "label_failures"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    structure_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("structures.id", ondelete="CASCADE"), index=True
    )
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("runs.id"), index=True)
    property: Mapped[str] = mapped_column(Text)  # e.g. band_gap
    method: Mapped[str] = mapped_column(Text)  # the calculation's functional, e.g. GFN1-xTB
    code: Mapped[str] = mapped_column(Text)  # e.g. tblite
    # The hyperparameters of the attempt, exactly as a successful label's would record them.
    parameters: Mapped[dict[str, Any]] = mapped_column()
    reason: Mapped[str] = mapped_column(Text)  # timeout, not_converged, crashed, open_shell, ...
    message: Mapped[str] = mapped_column(Text)
    seconds: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (
        UniqueConstraint("structure_id", "property", "method", "code", "parameters"),
        Index("ix_label_failures_method_reason", "method", "reason"),
    )
