"""Per-request DataLoaders: one SQL statement per nested field per page, never one per structure.

Every statement of a request runs through `fetch` with the request's `Running` registry, so a
request that outlives its timeout can have PostgreSQL cancel the statements it left running.
"""

from __future__ import annotations

import asyncio
import operator
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from sqlalchemy import ColumnElement, Executable, and_, any_, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from strawberry.dataloader import DataLoader

from crystaldb.api.budget import Budget
from crystaldb.api.errors import ApiError
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.schema.graphs import GraphRecipe, QuotientGraph
from crystaldb.schema.labels import Calculation, Label
from crystaldb.schema.ml import Model, Prediction
from crystaldb.schema.releases import Release, ReleaseMember
from crystaldb.schema.runs import Run
from crystaldb.schema.structures import ExternalId, Structure
from crystaldb.schema.tokens import TokenCheck, verify_token

# The per-site arrays: most of a row's bytes, needed only by lattice, sites, cif and extxyz.
CELL_COLUMNS = ("lattice", "frac_coords", "atomic_numbers", "occupancies", "mass_numbers")
SUMMARY_COLUMNS = tuple(c for c in Structure.__table__.c if c.name not in CELL_COLUMNS)
SUMMARY_NAMES = tuple(c.name for c in SUMMARY_COLUMNS)
# What a structure's labels statement selects, in this order (the structure id first).
LABEL_COLUMNS = (
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
LABEL_NAMES = tuple(c.key for c in LABEL_COLUMNS)

Rows = list[Any]
T = TypeVar("T")


def reader(names: Sequence[str], layout: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    """Reads the named columns of rows laid out as `layout` (their first columns), by position:
    a Row's attribute access costs 0.5 us, its item access 0.03, and a page reads thousands."""
    return operator.itemgetter(*(layout.index(name) for name in names))


class Running:
    """The connections a request's statements run on right now, so a timeout can cancel them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: set[Any] = set()

    @contextmanager
    def registered(self, connection: Any) -> Iterator[None]:
        """While the block runs, `cancel` may interrupt the statement on this connection."""
        with self._lock:
            self._connections.add(connection)
        try:
            yield
        finally:
            with self._lock:  # after this, the connection may go back to the pool
                self._connections.discard(connection)

    def cancel(self) -> int:
        """Ask PostgreSQL to cancel every statement still running; how many were asked."""
        with self._lock:
            connections = list(self._connections)
            for connection in connections:
                with suppress(psycopg.Error):  # a connection already gone needs no cancel
                    connection.cancel_safe(timeout=2.0)
        return len(connections)


async def in_session(db: Database, work: Callable[[Session], T], running: Running | None) -> T:
    """Run work on one session in a worker thread, so the event loop keeps serving other
    requests; its statements are registered in `running` (when given) while they run."""

    def run() -> T:
        with db.session() as session:
            if running is None:
                return work(session)
            with running.registered(session.connection().connection.driver_connection):
                return work(session)

    return await asyncio.to_thread(run)


async def fetch(db: Database, statement: Executable, running: Running | None = None) -> Rows:
    """Run one select in a worker thread."""
    return await in_session(db, lambda session: list(session.execute(statement)), running)


def _grouped_by_key(rows: Rows) -> dict[Any, Rows]:
    """Rows by their first column (the structure id of every nested list's statement)."""
    groups: dict[Any, Rows] = defaultdict(list)
    for row in rows:
        groups[row[0]].append(row)
    return groups


def _grouped(
    db: Database, running: Running, query: Callable[[list[int]], Executable]
) -> DataLoader[int, Rows]:
    """A loader mapping ids to their rows (any number); the statement's first column is the id."""

    async def load(keys: Sequence[int]) -> list[Rows]:
        groups = _grouped_by_key(await fetch(db, query(list(keys)), running))
        return [groups.get(key, []) for key in keys]

    return DataLoader(load_fn=load)


def _by_id(
    db: Database, running: Running, query: Callable[[list[int]], Executable]
) -> DataLoader[int, Any]:
    """A loader mapping ids to one row each, or None; the statement's first column is the id."""

    async def load(keys: Sequence[int]) -> list[Any]:
        rows = {row[0]: row for row in await fetch(db, query(list(keys)), running)}
        return [rows.get(key) for key in keys]

    return DataLoader(load_fn=load)


def _among(column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """column = ANY(one array parameter): a single placeholder however many values, so
    SQLAlchemy and psycopg reuse the statement they compiled and parsed (an IN list renders
    one placeholder per value, and the statement of a 100-id page is too long to cache)."""
    return column == any_(literal(list(values), ARRAY(column.type)))


def _labels(ids: list[int]) -> Executable:
    """Labels with their calculation."""
    return (
        select(*LABEL_COLUMNS)
        .join(Calculation, Calculation.id == Label.calculation_id)
        .where(_among(Label.structure_id, ids))
        .order_by(Label.structure_id, Label.property, Label.id)
    )


def _cells(ids: list[int]) -> Executable:
    """Whole rows, arrays included, for the structures whose cell a request asks for."""
    return select(Structure.__table__).where(_among(Structure.id, ids))


def _external_ids(ids: list[int]) -> Executable:
    """Ids in other databases."""
    return (
        select(ExternalId.structure_id, ExternalId.database, ExternalId.external_id)
        .where(_among(ExternalId.structure_id, ids))
        .order_by(ExternalId.structure_id, ExternalId.database, ExternalId.external_id)
    )


def _releases(ids: list[int]) -> Executable:
    """Release memberships with the member's split."""
    return (
        select(ReleaseMember.structure_id, Release.name, Release.version, ReleaseMember.split)
        .join(Release, Release.id == ReleaseMember.release_id)
        .where(_among(ReleaseMember.structure_id, ids))
        .order_by(ReleaseMember.structure_id, Release.name, Release.version)
    )


def _predictions(ids: list[int]) -> Executable:
    """Model predictions; their model and run load through loaders of their own."""
    return (
        select(
            Prediction.structure_id,
            Prediction.id,
            Prediction.model_id,
            Prediction.run_id,
            Prediction.property,
            Prediction.value,
            Prediction.uncertainty,
            Prediction.created_at,
        )
        .where(_among(Prediction.structure_id, ids))
        .order_by(Prediction.structure_id, Prediction.property, Prediction.model_id, Prediction.id)
    )


# A structure's nested lists: its loader's name on Context, and its statement over a page's ids.
NESTED: dict[str, Callable[[list[int]], Executable]] = {
    "labels": _labels,
    "external_ids": _external_ids,
    "releases": _releases,
    "predictions": _predictions,
}


def _models(ids: list[int]) -> Executable:
    """Models by id."""
    return select(Model.__table__).where(_among(Model.id, ids))


def _runs(ids: list[int]) -> Executable:
    """Runs by id."""
    return select(Run.__table__).where(_among(Run.id, ids))


def releases_with_counts() -> Any:
    """Releases with their member count (one grouped statement)."""
    members = func.count(ReleaseMember.structure_id).label("members")
    return (
        select(Release.__table__, members)
        .outerjoin(ReleaseMember, ReleaseMember.release_id == Release.id)
        .group_by(Release.id)
    )


def _releases_by_id(ids: list[int]) -> Executable:
    """Releases by id, with their member count."""
    return releases_with_counts().where(_among(Release.id, ids))


GraphKey = tuple[str, int]  # (recipe name, structure id)


def _graphs(db: Database, running: Running) -> DataLoader[GraphKey, Any]:
    """Quotient graphs by (recipe, structure): one statement per page and recipe set.

    The recipes are the outer side of the join, so a recipe that exists but has no graph for
    a structure gives None there, and a recipe that does not exist is an error naming the
    recipes that do.
    """

    async def load(keys: Sequence[GraphKey]) -> list[Any]:
        names = sorted({name for name, _ in keys})
        ids = sorted({sid for _, sid in keys})
        statement = (
            select(
                GraphRecipe.name.label("recipe"),
                GraphRecipe.method,
                GraphRecipe.parameters,
                GraphRecipe.library,
                GraphRecipe.library_version,
                QuotientGraph.structure_id,
                QuotientGraph.run_id,
                QuotientGraph.num_nodes,
                QuotientGraph.num_edges,
                QuotientGraph.edge_src,
                QuotientGraph.edge_dst,
                QuotientGraph.edge_images,
                QuotientGraph.edge_lengths,
            )
            .select_from(GraphRecipe)
            .outerjoin(
                QuotientGraph,
                and_(
                    QuotientGraph.recipe_id == GraphRecipe.id,
                    _among(QuotientGraph.structure_id, ids),
                ),
            )
            .where(_among(GraphRecipe.name, names))
        )
        rows = await fetch(db, statement, running)
        found = {row.recipe for row in rows}
        graphs = {(r.recipe, r.structure_id): r for r in rows if r.structure_id is not None}
        unknown: ApiError | None = None
        if set(names) - found:
            known = await fetch(db, select(GraphRecipe.name).order_by(GraphRecipe.name), running)
            listed = ", ".join(repr(r.name) for r in known) or "none yet"
            missing = ", ".join(repr(n) for n in names if n not in found)
            unknown = ApiError(f"quotientGraph: no graph recipe named {missing}; known: {listed}")
        return [unknown if name not in found else graphs.get((name, sid)) for name, sid in keys]

    return DataLoader(load_fn=load)


@dataclass
class Context:
    """What resolvers share within one request: the database, the request's loaders, the
    statements running, what is left of its cost budget, warnings for the answer, and the API
    token the client sent (checked only when a field needs one: queries are public)."""

    db: Database
    bearer: str | None = None  # the token of `Authorization: Bearer <token>`
    authorization: str | None = None  # the header as sent, when it is not of that form
    settings: Settings | None = None  # where models' weights are (mutations that predict)
    running: Running = field(default_factory=Running)
    budget: Budget = field(default_factory=Budget)  # set by the cost check (limits.Guards)
    warnings: list[str] = field(default_factory=list)  # answered in extensions.warnings
    cells: DataLoader[int, Rows] = field(init=False)
    labels: DataLoader[int, Rows] = field(init=False)
    external_ids: DataLoader[int, Rows] = field(init=False)
    releases: DataLoader[int, Rows] = field(init=False)
    predictions: DataLoader[int, Rows] = field(init=False)
    models: DataLoader[int, Any] = field(init=False)
    runs: DataLoader[int, Any] = field(init=False)
    releases_by_id: DataLoader[int, Any] = field(init=False)
    graphs: DataLoader[GraphKey, Any] = field(init=False)
    _token: asyncio.Future[TokenCheck] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        """Fresh loaders per request, so no cache outlives it."""
        db, running = self.db, self.running
        self.cells = _grouped(db, running, _cells)
        self.labels = _grouped(db, running, NESTED["labels"])
        self.external_ids = _grouped(db, running, NESTED["external_ids"])
        self.releases = _grouped(db, running, NESTED["releases"])
        self.predictions = _grouped(db, running, NESTED["predictions"])
        self.models = _by_id(db, running, _models)
        self.runs = _by_id(db, running, _runs)
        self.releases_by_id = _by_id(db, running, _releases_by_id)
        self.graphs = _graphs(db, running)

    async def fetch(self, statement: Executable) -> Rows:
        """Run a select for this request (cancelled with it on a timeout)."""
        return await fetch(self.db, statement, self.running)

    async def fetch_page(
        self, statement: Executable, size: int, nested: Iterable[str]
    ) -> tuple[Rows, dict[str, dict[Any, Rows]]]:
        """A page's rows and, in the same session and worker thread, the nested lists (NESTED
        names) of its first `size` rows by structure id: the statements their loaders would
        run, without a second hop, and ready before the nodes resolve."""

        def work(session: Session) -> tuple[Rows, dict[str, dict[Any, Rows]]]:
            rows = list(session.execute(statement))
            ids = [row.id for row in rows[:size]]
            lists = {
                name: _grouped_by_key(list(session.execute(NESTED[name](ids))))
                for name in (nested if ids else ())
            }
            return rows, lists

        return await in_session(self.db, work, self.running)

    async def check_token(self) -> TokenCheck | None:
        """The bearer token checked against the database, once per request; None if none sent."""
        if self.bearer is None:
            return None
        if self._token is None:
            bearer = self.bearer
            self._token = asyncio.ensure_future(asyncio.to_thread(verify_token, self.db, bearer))
        return await self._token

    async def authenticated(self) -> bool:
        """Whether the request carries a live API token (what is not public needs one)."""
        check = await self.check_token()
        return check is not None and check.status == "valid"
