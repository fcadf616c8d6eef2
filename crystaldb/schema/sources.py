"""Where structures came from, and every input that was refused, so nothing is dropped silently."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from crystaldb.schema.base import Base, created_at_column


class IngestBatch(Base):
    """One `crystaldb ingest` invocation over a set of paths."""

    __tablename__ = "ingest_batches"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("runs.id"), index=True)
    source_database: Mapped[str | None] = mapped_column(Text)
    paths: Mapped[dict[str, Any]] = mapped_column(server_default="[]")
    n_files: Mapped[int] = mapped_column(Integer, server_default="0")
    n_stored: Mapped[int] = mapped_column(Integer, server_default="0")
    n_duplicates: Mapped[int] = mapped_column(Integer, server_default="0")
    n_rejected: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Source(Base):
    """One entry of one input file that ended as a stored structure or a link to one."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ingest_batches.id"), index=True)
    structure_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("structures.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    # Index of the data block or frame inside the file (0 for single-structure files).
    entry: Mapped[int] = mapped_column(Integer, server_default="0")
    # True when the structure was already stored and this entry was linked to it.
    duplicate: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (
        UniqueConstraint("sha256", "entry"),
        CheckConstraint("entry >= 0", name="entry"),
    )


class IngestReject(Base):
    """An input that was refused, with the reason and the parser's own message."""

    __tablename__ = "ingest_rejects"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ingest_batches.id"), index=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    entry: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, index=True)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
