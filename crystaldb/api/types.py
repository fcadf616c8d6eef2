"""GraphQL output types: structures with their labels, predictions, ids, releases and quotient
graphs; models; releases; runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple, TypeAlias, TypeVar

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON

from crystaldb.api import render
from crystaldb.api.budget import charge_edges, charge_sites
from crystaldb.api.loaders import LABEL_NAMES, SUMMARY_NAMES, Context, Rows, reader
from crystaldb.api.selections import below

Info = strawberry.Info[Context, None]
PRIVATE = "null unless the request carries a live API token (`Authorization: Bearer <token>`)"
T = TypeVar("T")
Resolved: TypeAlias = T | Awaitable[T]  # what a resolver that may need to wait for a loader returns


@strawberry.type
class Site:
    species: str
    occupancy: float
    fractional: list[float]
    cartesian: list[float]
    mass_number: int | None = strawberry.field(
        description="The isotope's mass number (2 for deuterium, whose species reads H); null "
        "for the element's natural isotope mix."
    )


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


async def _cell(root: StructureType, info: Info) -> Any:
    """The whole row, site arrays included, batched per page."""
    (row,) = await info.context.cells.load(root.row.id)
    return row


async def _lattice(root: StructureType, info: Info) -> list[list[float]]:
    """The cell."""
    return [list(vector) for vector in (await _cell(root, info)).lattice]


async def _sites(root: StructureType, info: Info) -> list[Site]:
    """Each site's species, occupancy and coordinates; a cell larger than the cost estimate
    assumed is charged to the request's budget first (its size is in the summary row)."""
    fields = len(below(info._raw_info))
    charge_sites(info.context.budget, root.nsites, fields, root.id)
    cell = await _cell(root, info)
    occupancies = cell.occupancies or [1.0] * cell.nsites
    isotopes = cell.mass_numbers or [0] * cell.nsites  # 0: the natural mix, shown as null
    rows = zip(
        render.species(cell),
        occupancies,
        cell.frac_coords,
        render.cartesian(cell),
        isotopes,
        strict=True,
    )
    return [
        Site(species=s, occupancy=o, fractional=list(f), cartesian=c, mass_number=a or None)
        for s, o, f, c, a in rows
    ]


@strawberry.type(
    name="Structure", description="A unique crystal structure with its derived columns and labels."
)
class StructureType:
    """The plain columns are attributes, which strawberry reads without a resolver call (that
    would cost several microseconds a field, on every node of a page); lists come with the
    page (`nested`) or through the request's loaders, the cell only when asked for."""

    row: strawberry.Private[Any]
    id: strawberry.ID
    lattice: list[list[float]] = strawberry.field(
        resolver=_lattice, description="Lattice vectors as rows, in angstrom."
    )
    sites: list[Site] = strawberry.field(resolver=_sites)
    nsites: int  # sites in the stored cell
    elements: list[str]  # distinct element symbols
    reduced_formula: str  # pymatgen's
    hill_formula: str  # of the cell
    anonymous_formula: str  # elements as A, B, ...
    space_group: SpaceGroup | None  # spglib's; null when symmetry could not be found
    crystal_system: str | None  # triclinic ... cubic
    volume: float = strawberry.field(description="Cell volume in cubic angstrom.")
    density: float = strawberry.field(description="Density in g/cm^3.")
    flags: list[str] = strawberry.field(
        description="Quality notes from ingestion, e.g. deuterated or formula_sum_mismatch "
        "(FlagsFilter lists them all); [] when there are none."
    )
    nested: strawberry.Private[Mapping[str, Rows] | None] = None  # prefetched with the page

    def _nested(
        self, loader: DataLoader[int, Rows], name: str, convert: Callable[[Rows], T]
    ) -> T | Awaitable[T]:
        """A nested list from the page's prefetch, at once (no coroutine for graphql-core to
        schedule per node), else from the request's loader, batched per page."""
        if self.nested is not None and name in self.nested:
            return convert(self.nested[name])
        return _converted(loader.load(self.row.id), convert)

    @strawberry.field(graphql_type=list[ExternalIdType])
    def external_ids(self, info: Info) -> Resolved[list[ExternalIdType]]:
        """Ids in other databases."""
        return self._nested(info.context.external_ids, "external_ids", _external_ids)

    @strawberry.field(graphql_type=list[LabelType])
    def labels(self, info: Info) -> Resolved[list[LabelType]]:
        """DFT labels with their calculation."""
        return self._nested(info.context.labels, "labels", _labels)

    @strawberry.field(graphql_type=list[Membership])
    def releases(self, info: Info) -> Resolved[list[Membership]]:
        """Releases this structure belongs to."""
        return self._nested(info.context.releases, "releases", _memberships)

    @strawberry.field(
        graphql_type=list["PredictionType"],
        description="Model predictions for this structure, each with its model and run; kept "
        "apart from the DFT labels.",
    )
    def predictions(self, info: Info) -> Resolved[list[PredictionType]]:
        """Model predictions, like labels."""
        return self._nested(info.context.predictions, "predictions", _predictions)

    @strawberry.field(
        description="The periodic graph of this structure under a graph recipe (e.g. "
        "radius:5.0); null if it was not computed for this structure."
    )
    async def quotient_graph(self, info: Info, recipe: str) -> QuotientGraphType | None:
        """Batched per page and recipe; an unknown recipe is an error naming the known ones."""
        row = await info.context.graphs.load((recipe, self.row.id))
        return None if row is None else QuotientGraphType(row=row)

    @strawberry.field(
        description="The cell as CIF (pymatgen's writer, which writes deuterium and tritium "
        "as H: sites' massNumber and extxyz keep the isotope)."
    )
    async def cif(self, info: Info) -> str:
        """CIF text, written in a worker thread: the event loop stays free to serve other
        requests and to end this one at its timeout."""
        return await asyncio.to_thread(render.to_cif, await _cell(self, info))

    @strawberry.field(
        description="The cell as one extended XYZ frame (ase's writer); a cell with isotopes "
        "(deuterium) adds a masses column."
    )
    async def extxyz(self, info: Info) -> str:
        """Extended XYZ text, written in a worker thread like cif."""
        return await asyncio.to_thread(render.to_extxyz, await _cell(self, info))


class _Summary(NamedTuple):
    """The columns of a structures row that StructureType shows."""

    id: int
    nsites: int
    elements: list[str]
    reduced_formula: str
    hill_formula: str
    anonymous_formula: str
    spacegroup_number: int | None
    spacegroup_symbol: str | None
    symprec: float | None
    crystal_system: str | None
    volume: float
    density: float
    flags: list[str]


_SUMMARY = reader(_Summary._fields, SUMMARY_NAMES)


def structure_type(row: Any, nested: Mapping[str, Rows] | None = None) -> StructureType:
    """A row starting with SUMMARY_COLUMNS (as every structures statement of the API selects)
    as the API shows it, with the nested lists (by NESTED name) fetched with its page, if any."""
    r = _Summary._make(_SUMMARY(row))
    space_group = None
    if r.spacegroup_number is not None:
        space_group = SpaceGroup(
            number=r.spacegroup_number, symbol=r.spacegroup_symbol, symprec=r.symprec
        )
    return StructureType(
        row=row,
        id=strawberry.ID(str(r.id)),
        nsites=int(r.nsites),
        elements=list(r.elements),
        reduced_formula=str(r.reduced_formula),
        hill_formula=str(r.hill_formula),
        anonymous_formula=str(r.anonymous_formula),
        space_group=space_group,
        crystal_system=r.crystal_system,
        volume=float(r.volume),
        density=float(r.density),
        flags=list(r.flags),
        nested=nested,
    )


_LABEL = reader(LABEL_NAMES[1:], LABEL_NAMES)


def _label(row: Any) -> LabelType:
    """One row of LABEL_COLUMNS: a label with its calculation."""
    property_, value, unit, functional, code, code_version, parameters, reference = _LABEL(row)
    calculation = CalculationType(
        functional=functional,
        code=code,
        code_version=code_version,
        parameters=parameters,
        reference=reference,
    )
    return LabelType(property=property_, value=value, unit=unit, calculation=calculation)


def _labels(rows: Rows) -> list[LabelType]:
    """A structure's label rows."""
    return [_label(row) for row in rows]


def _external_ids(rows: Rows) -> list[ExternalIdType]:
    """A structure's external id rows."""
    return [ExternalIdType(database=r.database, id=r.external_id) for r in rows]


def _memberships(rows: Rows) -> list[Membership]:
    """A structure's release membership rows."""
    return [Membership(name=r.name, version=r.version, split=r.split) for r in rows]


def _predictions(rows: Rows) -> list[PredictionType]:
    """A structure's prediction rows (model and run load when asked for)."""
    return [PredictionType(row=r) for r in rows]


async def _converted(rows: Awaitable[Rows], convert: Callable[[Rows], T]) -> T:
    """convert, once the loader has the rows."""
    return convert(await rows)


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

    def _charged(self, info: Info, name: str, values: int) -> None:
        """An edge array longer than the estimate assumed is charged to the budget first."""
        what = f"the {name} of structure {self.row.structure_id}'s graph ({values:,} values)"
        charge_edges(info.context.budget, values, what)

    @strawberry.field
    def edge_src(self, info: Info) -> list[int]:
        """Source site of each edge."""
        self._charged(info, "edgeSrc", self.row.num_edges)
        return list(self.row.edge_src)

    @strawberry.field
    def edge_dst(self, info: Info) -> list[int]:
        """Target site of each edge."""
        self._charged(info, "edgeDst", self.row.num_edges)
        return list(self.row.edge_dst)

    @strawberry.field
    def edge_images(self, info: Info) -> list[list[int]]:
        """Lattice translation of each edge's target, three integers per edge."""
        self._charged(info, "edgeImages", 4 * self.row.num_edges)
        flat = list(self.row.edge_images)
        return [flat[i : i + 3] for i in range(0, len(flat), 3)]

    @strawberry.field
    def edge_lengths(self, info: Info) -> list[float]:
        """Length of each edge in angstrom (stored as 32-bit floats)."""
        self._charged(info, "edgeLengths", self.row.num_edges)
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

    @strawberry.field(description=f"Where the weights are stored; {PRIVATE}")
    async def weights_uri(self, info: Info) -> str | None:
        """A path or URL of the server's store: for operators."""
        return self.row.weights_uri if await info.context.authenticated() else None

    @strawberry.field
    def weights_sha256(self) -> str | None:
        """Checksum of the weights."""
        return self.row.weights_sha256

    @strawberry.field(
        description="The libraries it was trained with (their versions: libraryVersions)."
    )
    def libraries(self) -> list[str]:
        """Names are public; exact versions tell an attacker what to try."""
        return sorted(self.row.library_versions)

    @strawberry.field(graphql_type=JSON | None, description=f"Library name to version; {PRIVATE}")
    async def library_versions(self, info: Info) -> dict[str, Any] | None:
        """Exact versions, for operators reproducing a model."""
        if not await info.context.authenticated():
            return None
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


@strawberry.type(
    name="Run",
    description="A job and its outcome. What identifies the server (host, paths in the "
    "parameters, exact library versions, errors, the token of an upload) is shown only to "
    "requests with a live API token.",
)
class RunType:
    row: strawberry.Private[Any]
    id: strawberry.ID
    kind: str
    status: str
    device: str
    started_at: datetime
    finished_at: datetime | None
    software_names: list[str] = strawberry.field(description="The libraries the run used.")

    @strawberry.field(graphql_type=JSON | None, description=f"The job's arguments; {PRIVATE}")
    async def parameters(self, info: Info) -> dict[str, Any] | None:
        """Paths, token names and arguments: for operators."""
        return self.row.parameters if await info.context.authenticated() else None

    @strawberry.field(
        graphql_type=JSON | None, description=f"What the job made: counts, ids, metrics; {PRIVATE}"
    )
    async def results(self, info: Info) -> dict[str, Any] | None:
        """Counts and ids of what it wrote: for operators, as the arguments are."""
        return self.row.results if await info.context.authenticated() else None

    @strawberry.field(graphql_type=JSON | None, description=f"Library name to version; {PRIVATE}")
    async def software(self, info: Info) -> dict[str, Any] | None:
        """Exact versions: for operators."""
        return self.row.software if await info.context.authenticated() else None

    @strawberry.field(description=f"The machine that ran it; {PRIVATE}")
    async def host(self, info: Info) -> str | None:
        """The server's host name: for operators."""
        return str(self.row.host) if await info.context.authenticated() else None

    @strawberry.field(description=f"Why it failed; {PRIVATE}")
    async def error(self, info: Info) -> str | None:
        """Tracebacks name files of the server: for operators."""
        return self.row.error if await info.context.authenticated() else None


def run_type(run: Any) -> RunType:
    """A runs row as the API shows it."""
    return RunType(
        row=run,
        id=strawberry.ID(str(run.id)),
        kind=run.kind,
        status=run.status,
        device=run.device,
        started_at=run.started_at,
        finished_at=run.finished_at,
        software_names=sorted(run.software or {}),
    )


async def load_run(info: Info, run_id: int) -> RunType:
    """A run by id through the request's loader (runs are never deleted)."""
    return run_type(await info.context.runs.load(run_id))
