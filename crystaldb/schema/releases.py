"""Releases: named, versioned, immutable datasets with ordered members and their split.

A release is referred to as NAME or NAME:VERSION (NAME alone: its newest version). Names hold
no ':', versions may, so a reference splits at its first ':' (`beta:x:1` is release beta,
version x:1) and every release that can be created can be named back.
"""

from __future__ import annotations

from dataclasses import dataclass
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

from crystaldb.core.errors import CrystaldbError
from crystaldb.schema.base import Base, created_at_column

REF_SEPARATOR = ":"


class ReleaseError(CrystaldbError):
    """A release that cannot be created, found or exported as asked."""


@dataclass(frozen=True)
class ReleaseRef:
    """A release as users and filters name it: NAME, or NAME:VERSION."""

    name: str
    version: str | None = None  # None: the newest version

    @classmethod
    def parse(cls, text: str) -> ReleaseRef:
        """Split at the first ':', the one rule for every reference (names hold no ':')."""
        name, _, version = text.partition(REF_SEPARATOR)
        return cls(name, version or None)

    def __str__(self) -> str:
        """NAME:VERSION, or NAME alone for the newest version."""
        return self.name if self.version is None else f"{self.name}{REF_SEPARATOR}{self.version}"


def check_new_release(name: str, version: str, name_argument: str = "NAME") -> None:
    """Refuse a name or version that a NAME:VERSION reference could not name back."""
    if not name:
        raise ReleaseError(f"{name_argument}: a release needs a non-empty name")
    if REF_SEPARATOR in name:
        reads_as = ReleaseRef.parse(f"{name}{REF_SEPARATOR}{version}")
        raise ReleaseError(
            f"{name_argument} {name!r}: a release name cannot contain {REF_SEPARATOR!r}, since"
            f" {name}{REF_SEPARATOR}{version} would name release {reads_as.name!r}, version"
            f" {reads_as.version!r}"
        )
    if not version:
        raise ReleaseError("--version: a release needs a non-empty version")


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
