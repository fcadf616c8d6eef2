"""Cells as plain arrays: the boundary between the database and the compute layer's science.

Every compute job (graphs, descriptors, models) selects structures the same way (a release,
a `--where` filter, or everything) and reads their cells in bulk, arrays straight into NumPy,
so the science functions take `Cell`s and never see a session.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import ARRAY, BigInteger, Select, any_, cast, select
from sqlalchemy.orm import Session

from crystaldb.core.cell import Cell
from crystaldb.core.errors import CrystaldbError
from crystaldb.platform.arrays import numpy_rows
from crystaldb.platform.database import Database
from crystaldb.query.sql import where as where_clause
from crystaldb.schema import Label, Release, ReleaseMember, Structure
from crystaldb.schema.releases import ReleaseError, ReleaseRef


class SelectionError(CrystaldbError):
    """The structures a job was asked to work on cannot be selected (unknown release, ...)."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which structures a job covers, in a stable order, and how the user named them."""

    structure_ids: tuple[int, ...]
    description: str  # e.g. "release omdb:1.0 (12500 members)"
    release_id: int | None = None
    splits: tuple[str, ...] | None = None  # per structure, for a release


def select_structures(
    db: Database,
    release: str | None = None,
    where: str | None = None,
    limit: int | None = None,
) -> Selection:
    """Structures of a release (in release order), or matching a filter, or all (by id)."""
    if release is not None and where is not None:
        raise SelectionError("give --release or --where, not both")
    if release is not None:
        ref = ReleaseRef.parse(release)
        return release_selection(db, find_release(db, ref.name, ref.version, origin="--release"))
    query = select(Structure.id).order_by(Structure.id)
    if where is not None:
        query = query.where(where_clause(where, origin="--where"))
    if limit is not None:
        query = query.limit(limit)
    with db.session() as session:
        ids = tuple(session.scalars(query).all())
    described = f"structures matching {where!r}" if where else "all structures"
    return Selection(structure_ids=ids, description=f"{described} ({len(ids)})")


def release_selection(db: Database, release: Release) -> Selection:
    """A release's members in release order, with their splits."""
    with db.session() as session:
        members = session.execute(
            select(ReleaseMember.structure_id, ReleaseMember.split)
            .where(ReleaseMember.release_id == release.id)
            .order_by(ReleaseMember.position)
        ).all()
    label = f"release {ReleaseRef(release.name, release.version)}"
    return Selection(
        structure_ids=tuple(sid for sid, _ in members),
        description=f"{label} ({len(members)} members)",
        release_id=release.id,
        splits=tuple(split for _, split in members),
    )


def release_labels(db: Database, selection: Selection) -> np.ndarray:
    """The frozen label of every member, in release order (NaN where a member has none)."""
    query = (
        select(ReleaseMember.structure_id, Label.value)
        .outerjoin(Label, Label.id == ReleaseMember.label_id)
        .where(ReleaseMember.release_id == selection.release_id)
        .order_by(ReleaseMember.position)
    )
    with db.session() as session:
        values = {sid: value for sid, value in session.execute(query)}
    return np.array([np.nan if values[s] is None else values[s] for s in selection.structure_ids])


def cells_query(
    ids: Sequence[int],
) -> Select[int, list[list[float]], list[list[float]], list[int]]:
    """The one statement that reads cells, so every job reads them the same (binary) way."""
    return select(
        Structure.id, Structure.lattice, Structure.frac_coords, Structure.atomic_numbers
    ).where(Structure.id == any_(cast(list(ids), ARRAY(BigInteger))))


def load_cells(db: Database, ids: Sequence[int]) -> list[Cell]:
    """Cells for `ids`, in the order given, in one query; unknown ids are an error."""
    with db.session() as session:
        rows = numpy_rows(session, cells_query(ids))
    by_id = {
        int(sid): Cell(
            structure_id=int(sid),
            lattice=np.asarray(lattice, dtype=np.float64).reshape(3, 3),
            frac_coords=np.asarray(frac, dtype=np.float64).reshape(-1, 3),
            atomic_numbers=np.asarray(numbers, dtype=np.int64),
        )
        for sid, lattice, frac, numbers in rows
    }
    missing = [sid for sid in ids if sid not in by_id]
    if missing:
        raise SelectionError(f"no structure with id {', '.join(map(str, missing[:5]))}")
    return [by_id[sid] for sid in ids]


def batches(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    """Consecutive slices of `ids`, so jobs read and ship cells a bounded batch at a time."""
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def find_release(
    db: Database, name: str, version: str | None = None, *, origin: str | None = None
) -> Release:
    """The one release lookup: by name and version (the newest version when none is given).

    `origin` (e.g. `--release`) starts the error message, naming the argument at fault.
    """
    query = select(Release).where(Release.name == name)
    if version is not None:
        query = query.where(Release.version == version)
    with db.session() as session:
        release = session.scalars(
            query.order_by(Release.created_at.desc(), Release.id.desc())
        ).first()
        if release is None:
            prefix = f"{origin}: " if origin else ""
            raise ReleaseError(f"{prefix}{_not_found(session, ReleaseRef(name, version))}")
        session.expunge(release)
    return release


def _not_found(session: Session, ref: ReleaseRef) -> str:
    """No release `ref`: the versions that name has, else the names there are."""
    versions = session.scalars(
        select(Release.version)
        .where(Release.name == ref.name)
        .order_by(Release.created_at, Release.id)
    ).all()
    if versions:
        return f"no release {ref}; release {ref.name} has versions {', '.join(versions)}"
    names = session.scalars(select(Release.name).distinct().order_by(Release.name)).all()
    known = f"known releases: {', '.join(names)}" if names else "no release exists yet"
    return f"no release {ref}; none is named {ref.name} ({known})"
