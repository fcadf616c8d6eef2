"""GraphQL output types: structures with their labels, predictions, ids, releases and quotient
graphs; models; releases; runs."""

from __future__ import annotations

import asyncio
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

    @strawberry.field(
        description="Model predictions for this structure, each with its model and run; kept "
        "apart from the DFT labels."
    )
    async def predictions(self, info: Info) -> list[PredictionType]:
        """Batched per page, like labels."""
        return [PredictionType(row=r) for r in await info.context.predictions.load(self.row.id)]

    @strawberry.field(
        description="The periodic graph of this structure under a graph recipe (e.g. "
        "radius:5.0); null if it was not computed for this structure."
    )
    async def quotient_graph(self, info: Info, recipe: str) -> QuotientGraphType | None:
        """Batched per page and recipe; an unknown recipe is an error naming the known ones."""
        row = await info.context.graphs.load((recipe, self.row.id))
        return None if row is None else QuotientGraphType(row=row)

    @strawberry.field(description="The cell as CIF (pymatgen's writer).")
    async def cif(self, info: Info) -> str:
        """CIF text, written in a worker thread: the event loop stays free to serve other
        requests and to end this one at its timeout."""
        return await asyncio.to_thread(render.to_cif, await self._cell(info))

    @strawberry.field(description="The cell as one extended XYZ frame (ase's writer).")
    async def extxyz(self, info: Info) -> str:
        """Extended XYZ text, written in a worker thread like cif."""
        return await asyncio.to_thread(render.to_extxyz, await self._cell(info))


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


@strawberry.type(name="GraphRecipe")
class GraphRecipeType:
    name: str
    method: str
    parameters: dict[str, Any] = strawberry.field(graphql_type=JSON)
    library: str
    library_version: str


@strawberry.type(
    name="QuotientGraph",
    description="Edge e joins site edgeSrc[e] in the cell to site edgeDst[e] in the cell "
    "translated by edgeImages[e] lattice vectors; edgeLengths in angstrom. Sites are numbered "
    "from 0 in the order of Structure.sites.",
)
class QuotientGraphType:
    row: strawberry.Private[Any]

    @strawberry.field
    def recipe(self) -> GraphRecipeType:
        """How the edges were chosen."""
        r = self.row
        return GraphRecipeType(
            name=r.recipe,
            method=r.method,
            parameters=r.parameters,
            library=r.library,
            library_version=r.library_version,
        )

    @strawberry.field
    def num_nodes(self) -> int:
        """Sites in the cell."""
        return int(self.row.num_nodes)

    @strawberry.field
    def num_edges(self) -> int:
        """Edges in the quotient graph."""
        return int(self.row.num_edges)

    @strawberry.field
    def edge_src(self) -> list[int]:
        """Source site of each edge."""
        return list(self.row.edge_src)

    @strawberry.field
    def edge_dst(self) -> list[int]:
        """Target site of each edge."""
        return list(self.row.edge_dst)

    @strawberry.field
    def edge_images(self) -> list[list[int]]:
        """Lattice translation of each edge's target, three integers per edge."""
        flat = list(self.row.edge_images)
        return [flat[i : i + 3] for i in range(0, len(flat), 3)]

    @strawberry.field
    def edge_lengths(self) -> list[float]:
        """Length of each edge in angstrom (stored as 32-bit floats)."""
        return [float(x) for x in self.row.edge_lengths]

    @strawberry.field
    async def run(self, info: Info) -> RunType:
        """The run that computed the graph."""
        return await load_run(info, self.row.run_id)


@strawberry.type(
    name="Model", description="A trained model: what it is, what it learned from, how it does."
)
class ModelType:
    row: strawberry.Private[Any]

    @strawberry.field
    def id(self) -> strawberry.ID:
        """The model id."""
        return strawberry.ID(str(self.row.id))

    @strawberry.field
    def name(self) -> str:
        """Unique name; the bandGap filter's model argument takes it."""
        return str(self.row.name)

    @strawberry.field(description="krr, schnet, cgcnn, ensemble, ...")
    def architecture(self) -> str:
        """The kind of model."""
        return str(self.row.architecture)

    @strawberry.field
    def property(self) -> str:
        """What it predicts (band_gap)."""
        return str(self.row.property)

    @strawberry.field(graphql_type=JSON)
    def hyperparameters(self) -> dict[str, Any]:
        """As the training run recorded them."""
        return dict(self.row.hyperparameters)

    @strawberry.field(graphql_type=JSON, description="Which members trained, validated, tested.")
    def split(self) -> dict[str, Any]:
        """The split of the release it used."""
        return dict(self.row.split)

    @strawberry.field(graphql_type=JSON, description="e.g. test MAE and RMSE in eV.")
    def metrics(self) -> dict[str, Any]:
        """How well it does."""
        return dict(self.row.metrics)

    @strawberry.field
    def weights_uri(self) -> str | None:
        """Where the weights are stored."""
        return self.row.weights_uri

    @strawberry.field
    def weights_sha256(self) -> str | None:
        """Checksum of the weights."""
        return self.row.weights_sha256

    @strawberry.field(graphql_type=JSON)
    def library_versions(self) -> dict[str, Any]:
        """Libraries it was trained with."""
        return dict(self.row.library_versions)

    @strawberry.field
    def device(self) -> str | None:
        """Where it was trained (cpu, cuda:0, ...)."""
        return self.row.device

    @strawberry.field
    def created_at(self) -> datetime:
        """When it was stored."""
        return self.row.created_at

    @strawberry.field(description="The release it was trained on, if any.")
    async def release(self, info: Info) -> ReleaseType | None:
        """Batched per request."""
        if self.row.release_id is None:
            return None
        row = await info.context.releases_by_id.load(self.row.release_id)
        return None if row is None else release_type(row)

    @strawberry.field(description="The training run.")
    async def run(self, info: Info) -> RunType:
        """Batched per request."""
        return await load_run(info, self.row.run_id)


@strawberry.type(name="Prediction")
class PredictionType:
    row: strawberry.Private[Any]

    @strawberry.field
    def property(self) -> str:
        """What was predicted (band_gap)."""
        return str(self.row.property)

    @strawberry.field(description="The predicted value (band gaps in eV).")
    def value(self) -> float:
        """The estimate."""
        return float(self.row.value)

    @strawberry.field
    def uncertainty(self) -> float | None:
        """The model's own uncertainty estimate, if it gives one."""
        return self.row.uncertainty

    @strawberry.field
    def created_at(self) -> datetime:
        """When it was stored."""
        return self.row.created_at

    @strawberry.field
    async def model(self, info: Info) -> ModelType:
        """The model that made it, batched per request."""
        return ModelType(row=await info.context.models.load(self.row.model_id))

    @strawberry.field
    async def run(self, info: Info) -> RunType:
        """The run that wrote it, batched per request."""
        return await load_run(info, self.row.run_id)


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


def release_type(row: Any) -> ReleaseType:
    """A releases row with its member count."""
    return ReleaseType(
        name=row.name,
        version=row.version,
        query=row.query,
        split_spec=row.split_spec,
        members=row.members,
        created_at=row.created_at,
    )


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


def run_type(run: Any) -> RunType:
    """A runs row as the API shows it."""
    return RunType(
        id=strawberry.ID(str(run.id)),
        kind=run.kind,
        status=run.status,
        parameters=run.parameters,
        software=run.software,
        host=run.host,
        device=run.device,
        started_at=run.started_at,
        finished_at=run.finished_at,
        error=run.error,
    )


async def load_run(info: Info, run_id: int) -> RunType:
    """A run by id through the request's loader (runs are never deleted)."""
    return run_type(await info.context.runs.load(run_id))
