"""GraphQL output types: structures with their labels, ids and releases; releases; runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from crystaldb.api import render
from crystaldb.api.loaders import Context

Info = strawberry.Info[Context, None]


@strawberry.type
class Site:
    species: str
    occupancy: float
    fractional: list[float]
    cartesian: list[float]


@strawberry.type
class SpaceGroup:
    number: int
    symbol: str | None
    symprec: float | None


@strawberry.type(name="ExternalId")
class ExternalIdType:
    database: str
    id: str


@strawberry.type(name="Calculation")
class CalculationType:
    functional: str
    code: str
    code_version: str | None
    parameters: dict[str, Any] = strawberry.field(graphql_type=JSON)
    reference: str | None


@strawberry.type(name="Label")
class LabelType:
    property: str
    value: float
    unit: str
    calculation: CalculationType


@strawberry.type(name="ReleaseMembership")
class Membership:
    name: str
    version: str
    split: str


@strawberry.type(
    name="Structure", description="A unique crystal structure with its derived columns and labels."
)
class StructureType:
    row: strawberry.Private[Any]

    @strawberry.field
    def id(self) -> strawberry.ID:
        """The structure id."""
        return strawberry.ID(str(self.row.id))

    async def _cell(self, info: Info) -> Any:
        """The whole row, site arrays included, batched per page."""
        (row,) = await info.context.cells.load(self.row.id)
        return row

    @strawberry.field(description="Lattice vectors as rows, in angstrom.")
    async def lattice(self, info: Info) -> list[list[float]]:
        """The cell."""
        return [list(vector) for vector in (await self._cell(info)).lattice]

    @strawberry.field
    async def sites(self, info: Info) -> list[Site]:
        """Each site's species, occupancy and coordinates."""
        cell = await self._cell(info)
        occupancies = cell.occupancies or [1.0] * cell.nsites
        rows = zip(
            render.species(cell),
            occupancies,
            cell.frac_coords,
            render.cartesian(cell),
            strict=True,
        )
        return [
            Site(species=s, occupancy=o, fractional=list(f), cartesian=c) for s, o, f, c in rows
        ]

    @strawberry.field
    def nsites(self) -> int:
        """Sites in the stored cell."""
        return int(self.row.nsites)

    @strawberry.field
    def elements(self) -> list[str]:
        """Distinct element symbols."""
        return list(self.row.elements)

    @strawberry.field
    def reduced_formula(self) -> str:
        """Reduced formula (pymatgen)."""
        return str(self.row.reduced_formula)

    @strawberry.field
    def hill_formula(self) -> str:
        """Hill formula of the cell."""
        return str(self.row.hill_formula)

    @strawberry.field
    def anonymous_formula(self) -> str:
        """Formula with elements as A, B, ..."""
        return str(self.row.anonymous_formula)

    @strawberry.field
    def space_group(self) -> SpaceGroup | None:
        """spglib's space group, null when symmetry could not be found."""
        if self.row.spacegroup_number is None:
            return None
        return SpaceGroup(
            number=self.row.spacegroup_number,
            symbol=self.row.spacegroup_symbol,
            symprec=self.row.symprec,
        )

    @strawberry.field
    def crystal_system(self) -> str | None:
        """triclinic ... cubic."""
        return self.row.crystal_system

    @strawberry.field(description="Cell volume in cubic angstrom.")
    def volume(self) -> float:
        """Cell volume."""
        return float(self.row.volume)

    @strawberry.field(description="Density in g/cm^3.")
    def density(self) -> float:
        """Density."""
        return float(self.row.density)

    @strawberry.field
    async def external_ids(self, info: Info) -> list[ExternalIdType]:
        """Ids in other databases, batched per page."""
        rows = await info.context.external_ids.load(self.row.id)
        return [ExternalIdType(database=r.database, id=r.external_id) for r in rows]

    @strawberry.field
    async def labels(self, info: Info) -> list[LabelType]:
        """DFT labels with their calculation, batched per page."""
        return [_label(row) for row in await info.context.labels.load(self.row.id)]

    @strawberry.field
    async def releases(self, info: Info) -> list[Membership]:
        """Releases this structure belongs to, batched per page."""
        rows = await info.context.releases.load(self.row.id)
        return [Membership(name=r.name, version=r.version, split=r.split) for r in rows]

    @strawberry.field(description="The cell as CIF (pymatgen's writer).")
    async def cif(self, info: Info) -> str:
        """CIF text."""
        return render.to_cif(await self._cell(info))

    @strawberry.field(description="The cell as one extended XYZ frame (ase's writer).")
    async def extxyz(self, info: Info) -> str:
        """Extended XYZ text."""
        return render.to_extxyz(await self._cell(info))


def _label(row: Any) -> LabelType:
    """One label row with its calculation."""
    calculation = CalculationType(
        functional=row.functional,
        code=row.code,
        code_version=row.code_version,
        parameters=row.parameters,
        reference=row.reference,
    )
    return LabelType(property=row.property, value=row.value, unit=row.unit, calculation=calculation)


@strawberry.type
class StructureEdge:
    cursor: str
    node: StructureType


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(name="Release")
class ReleaseType:
    name: str
    version: str
    query: str | None
    split_spec: str | None
    members: int
    created_at: datetime


@strawberry.type(name="Run")
class RunType:
    id: strawberry.ID
    kind: str
    status: str
    parameters: dict[str, Any] = strawberry.field(graphql_type=JSON)
    software: dict[str, Any] = strawberry.field(graphql_type=JSON)
    host: str
    device: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None
