"""Per-request DataLoaders: one SQL statement per nested field per page, never one per structure."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Executable, select
from strawberry.dataloader import DataLoader

from crystaldb.platform.database import Database
from crystaldb.schema.labels import Calculation, Label
from crystaldb.schema.releases import Release, ReleaseMember
from crystaldb.schema.structures import ExternalId, Structure

# The per-site arrays: most of a row's bytes, needed only by lattice, sites, cif and extxyz.
CELL_COLUMNS = ("lattice", "frac_coords", "atomic_numbers", "occupancies")
SUMMARY_COLUMNS = tuple(c for c in Structure.__table__.c if c.name not in CELL_COLUMNS)

Rows = list[Any]


async def fetch(db: Database, statement: Executable) -> Rows:
    """Run a select in a worker thread, so the event loop keeps serving other requests."""

    def run() -> Rows:
        with db.session() as session:
            return list(session.execute(statement))

    return await asyncio.to_thread(run)


def _grouped(db: Database, query: Callable[[list[int]], Executable]) -> DataLoader[int, Rows]:
    """A loader mapping structure ids to their rows; the statement's first column is the id."""

    async def load(keys: Sequence[int]) -> list[Rows]:
        groups: dict[int, Rows] = defaultdict(list)
        for row in await fetch(db, query(list(keys))):
            groups[row[0]].append(row)
        return [groups[key] for key in keys]

    return DataLoader(load_fn=load)


def _labels(ids: list[int]) -> Executable:
    """Labels with their calculation."""
    return (
        select(
            Label.structure_id,
            Label.property,
            Label.value,
            Label.unit,
            Calculation.functional,
            Calculation.code,
            Calculation.code_version,
            Calculation.parameters,
            Calculation.reference,
        )
        .join(Calculation, Calculation.id == Label.calculation_id)
        .where(Label.structure_id.in_(ids))
        .order_by(Label.structure_id, Label.property, Label.id)
    )


def _cells(ids: list[int]) -> Executable:
    """Whole rows, arrays included, for the structures whose cell a request asks for."""
    return select(Structure.__table__).where(Structure.id.in_(ids))


def _external_ids(ids: list[int]) -> Executable:
    """Ids in other databases."""
    return (
        select(ExternalId.structure_id, ExternalId.database, ExternalId.external_id)
        .where(ExternalId.structure_id.in_(ids))
        .order_by(ExternalId.structure_id, ExternalId.database, ExternalId.external_id)
    )


def _releases(ids: list[int]) -> Executable:
    """Release memberships with the member's split."""
    return (
        select(ReleaseMember.structure_id, Release.name, Release.version, ReleaseMember.split)
        .join(Release, Release.id == ReleaseMember.release_id)
        .where(ReleaseMember.structure_id.in_(ids))
        .order_by(ReleaseMember.structure_id, Release.name, Release.version)
    )


@dataclass
class Context:
    """What resolvers share within one request: the database and the request's loaders."""

    db: Database
    cells: DataLoader[int, Rows] = field(init=False)
    labels: DataLoader[int, Rows] = field(init=False)
    external_ids: DataLoader[int, Rows] = field(init=False)
    releases: DataLoader[int, Rows] = field(init=False)

    def __post_init__(self) -> None:
        """Fresh loaders per request, so no cache outlives it."""
        self.cells = _grouped(self.db, _cells)
        self.labels = _grouped(self.db, _labels)
        self.external_ids = _grouped(self.db, _external_ids)
        self.releases = _grouped(self.db, _releases)
