"""Releases: named, versioned, immutable datasets with ordered members and their split."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from crystaldb.schema.base import Base, created_at_column


class Release(Base):
    """A frozen selection; database triggers refuse any UPDATE or DELETE once it exists."""

    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    query: Mapped[str | None] = mapped_column(Text)  # the filter the members were selected by
    label_spec: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    split_spec: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("runs.id"))
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (UniqueConstraint("name", "version"),)


class ReleaseMember(Base):
    """One structure at one position of a release, with its split and frozen label."""

    __tablename__ = "release_members"

    release_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("releases.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    structure_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("structures.id"))
    split: Mapped[str] = mapped_column(Text)  # train, valid, test, fold-3, ...
    label_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("labels.id"))

    __table_args__ = (
        UniqueConstraint("release_id", "structure_id"),
        CheckConstraint("position >= 0", name="position"),
        Index("ix_release_members_structure_id", "structure_id"),
    )
