"""The GraphQL schema: structures (filtered, sorted, keyset-paginated), models, releases, runs;
its guards: depth and cost limits, a timeout, masked internal errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import strawberry
from graphql import DocumentNode, GraphQLError, OperationDefinitionNode
from sqlalchemy import select
from strawberry.extensions import MaskErrors, QueryDepthLimiter
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.nodes import SelectedField, Selection
from strawberry.utils.str_converters import to_camel_case

from crystaldb.api.documents import CachedDocuments, DocumentCache
from crystaldb.api.errors import MASKED_MESSAGE, ApiError, should_mask
from crystaldb.api.filters import StructureFilter, compile_filter
from crystaldb.api.limits import CostLimiter, timeout_error
from crystaldb.api.loaders import (
    NESTED,
    SUMMARY_COLUMNS,
    Context,
    Rows,
    releases_with_counts,
)
from crystaldb.api.mutations import Mutation
from crystaldb.api.pagination import (
    DEFAULT_PAGE,
    MAX_PAGE,
    StructureSort,
    check_first,
    page_query,
    row_cursor,
    row_id,
)
from crystaldb.api.types import (
    Info,
    ModelType,
    PageInfo,
    ReleaseType,
    RunType,
    StructureEdge,
    StructureType,
    release_type,
    run_type,
    structure_type,
)
from crystaldb.compute.kernel_build import KernelError
from crystaldb.compute.similarity import similar as similar_structures
from crystaldb.schema.filters import DEFAULT_FUNCTIONAL
from crystaldb.schema.ml import Model
from crystaldb.schema.releases import Release
from crystaldb.schema.runs import Run
from crystaldb.schema.structures import ExternalId, Structure

MAX_DEPTH = 10
logger = logging.getLogger(__name__)


@strawberry.type
class StructureConnection:
    edges: list[StructureEdge]
    page_info: PageInfo
    count: strawberry.Private[Any]

    @strawberry.field(description="Structures matching the filter, over all pages.")
    async def total_count(self, info: Info) -> int:
        """Counted only when asked for."""
        rows = await info.context.fetch(self.count)
        return int(rows[0][0])


MAX_ID = 2**63 - 1  # structures.id is a bigint


def _structure_id(text: str) -> int:
    """A structure id given as an ID, or an error."""
    if not (text.isascii() and text.isdecimal() and 0 < int(text) <= MAX_ID):
        raise ApiError(f"id: '{text}' is not a structure id (a whole number from 1)")
    return int(text)


@strawberry.type
class SimilarStructure:
    """A neighbour in kernel space."""

    structure: StructureType
    kernel: float = strawberry.field(description="K(A, B), 1 for identical environments.")
    distance: float = strawberry.field(description="sqrt(K(A,A) + K(B,B) - 2K(A,B)).")


@strawberry.type
class Query:
    @strawberry.field(
        description=f"Structures matching the filter; first is 1..{MAX_PAGE}, default "
        f"{DEFAULT_PAGE}; after is an endCursor. Band gap sorts use the smallest gap from "
        "bandGapFunctional and leave out structures without one."
    )
    async def structures(
        self,
        info: Info,
        filter: StructureFilter | None = None,
        sort: StructureSort = StructureSort.ID_ASC,
        first: int = DEFAULT_PAGE,
        after: str | None = None,
        band_gap_functional: str = DEFAULT_FUNCTIONAL,
    ) -> StructureConnection:
        """One page in (sort key, id) order, fetched by keyset, never by offset."""
        compiled = compile_filter(filter)
        query = page_query(compiled.where, sort, check_first(first), after, band_gap_functional)
        if compiled.models:
            await _check_models(info, compiled.models)
        rows, nested = await info.context.fetch_page(query.rows, first, _node_lists(info))
        edges = [_edge(sort, row, nested) for row in rows[:first]]
        end = edges[-1].cursor if edges else None
        info_ = PageInfo(has_next_page=len(rows) > first, end_cursor=end)
        return StructureConnection(edges=edges, page_info=info_, count=query.count)

    @strawberry.field(
        description="The k structures nearest to one in a stored average-SOAP kernel (the newest"
        " complete square kernel holding it, or `kernel`), by D^2 = K(A,A) + K(B,B) - 2K(A,B)."
    )
    async def similar(
        self, info: Info, id: strawberry.ID, k: int = 10, kernel: strawberry.ID | None = None
    ) -> list[SimilarStructure]:
        """One kernel row read from Zarr in a worker thread, then the structures in one query."""
        structure_id = _structure_id(id)
        kernel_id = None if kernel is None else _structure_id(kernel)
        settings = info.context.settings
        if settings is None:
            raise ApiError("this server has no artifact store configured for kernels")
        try:
            found = await asyncio.to_thread(
                similar_structures, info.context.db, settings, structure_id, k, kernel_id
            )
        except KernelError as exc:
            raise ApiError(str(exc)) from None
        ids = [n.structure_id for n in found]
        rows = await info.context.fetch(select(*SUMMARY_COLUMNS).where(Structure.id.in_(ids)))
        by_id = {r.id: r for r in rows}
        return [
            SimilarStructure(
                structure=structure_type(by_id[n.structure_id]),
                kernel=n.kernel,
                distance=n.distance,
            )
            for n in found
            if n.structure_id in by_id
        ]

    @strawberry.field(description="One structure by id, null if there is none.")
    async def structure(self, info: Info, id: strawberry.ID) -> StructureType | None:
        """By primary key."""
        statement = select(*SUMMARY_COLUMNS).where(Structure.id == _structure_id(id))
        rows = await info.context.fetch(statement)
        return structure_type(rows[0]) if rows else None

    @strawberry.field(description="One structure by its id in another database (cod, mp, ...).")
    async def structure_by_external_id(
        self, info: Info, database: str, id: str
    ) -> StructureType | None:
        """Through external_ids' primary key."""
        statement = (
            select(*SUMMARY_COLUMNS)
            .join(ExternalId, ExternalId.structure_id == Structure.id)
            .where(ExternalId.database == database, ExternalId.external_id == id)
        )
        rows = await info.context.fetch(statement)
        return structure_type(rows[0]) if rows else None

    @strawberry.field(description="Every release, newest first, with its member count.")
    async def releases(self, info: Info) -> list[ReleaseType]:
        """One grouped query."""
        statement = releases_with_counts().order_by(Release.created_at.desc(), Release.id.desc())
        return [release_type(r) for r in await info.context.fetch(statement)]

    @strawberry.field(description=f"Runs, newest first; first is 1..{MAX_PAGE}.")
    async def runs(
        self,
        info: Info,
        kind: str | None = None,
        status: str | None = None,
        first: int = DEFAULT_PAGE,
    ) -> list[RunType]:
        """Jobs and their outcome."""
        statement = select(Run.__table__).order_by(Run.started_at.desc(), Run.id.desc())
        if kind is not None:
            statement = statement.where(Run.kind == kind)
        if status is not None:
            statement = statement.where(Run.status == status)
        rows = await info.context.fetch(statement.limit(check_first(first)))
        return [run_type(run) for run in rows]

    @strawberry.field(
        description=f"Trained models, newest first, with their metrics, hyperparameters, "
        f"release and training run; first is 1..{MAX_PAGE}."
    )
    async def models(
        self,
        info: Info,
        name: str | None = None,
        property: str | None = None,
        first: int = DEFAULT_PAGE,
    ) -> list[ModelType]:
        """One statement; release and run load per request through loaders."""
        statement = select(Model.__table__).order_by(Model.created_at.desc(), Model.id.desc())
        if name is not None:
            statement = statement.where(Model.name == name)
        if property is not None:
            statement = statement.where(Model.property == property)
        rows = await info.context.fetch(statement.limit(check_first(first)))
        return [ModelType(row=row) for row in rows]


def _edge(sort: StructureSort, row: Any, nested: dict[str, dict[Any, Rows]]) -> StructureEdge:
    """A page's row as an edge: its cursor, and its node with the lists fetched for it."""
    lists = {name: by_id.get(row_id(row), []) for name, by_id in nested.items()}
    return StructureEdge(cursor=row_cursor(sort, row), node=structure_type(row, lists))


_NESTED_FIELDS = {to_camel_case(name): name for name in NESTED}  # GraphQL name -> NESTED name


def _node_lists(info: Info) -> list[str]:
    """The nested lists (NESTED names) selected on the page's nodes, fragments included, so
    the page's fetch brings them along (a list under @skip is fetched all the same)."""
    found: dict[str, None] = {}
    for connection in info.selected_fields:
        for edges in _fields(connection.selections, "edges"):
            for node in _fields(edges.selections, "node"):
                for field in _fields(node.selections):
                    if field.name in _NESTED_FIELDS:
                        found[_NESTED_FIELDS[field.name]] = None
    return list(found)


def _fields(selections: Iterable[Selection], name: str | None = None) -> Iterator[SelectedField]:
    """The fields among selections (named `name`, if given), fragments flattened."""
    for selection in selections:
        if not isinstance(selection, SelectedField):
            yield from _fields(selection.selections, name)
        elif name is None or selection.name == name:
            yield selection


async def _check_models(info: Info, models: dict[str, str]) -> None:
    """Every model a filter names exists; otherwise an error naming the input and the models."""
    names = sorted(set(models.values()))
    found = {
        r.name for r in await info.context.fetch(select(Model.name).where(Model.name.in_(names)))
    }
    for path, name in models.items():
        if name not in found:
            known = await info.context.fetch(select(Model.name).order_by(Model.name).limit(20))
            listed = ", ".join(repr(r.name) for r in known) or "none yet"
            raise ApiError(f"{path}: no model named {name!r}; models: {listed}")


MUTATION_TIMEOUT_S = 120.0  # mutations run models for token holders: seconds, not ms


def _is_mutation(document: DocumentNode | None, operation_name: str | None) -> bool:
    """Whether the operation to run is a mutation (they get MUTATION_TIMEOUT_S)."""
    if document is None:
        return False
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [
        o
        for o in operations
        if operation_name is None or (o.name and o.name.value == operation_name)
    ]
    return bool(chosen) and chosen[0].operation.value == "mutation"


class _Schema(strawberry.Schema):
    """Logs only unexpected errors (with their traceback); a user's mistake is not news.

    With a timeout, a request running longer is cancelled, with the statements it left
    running in PostgreSQL, and answered with an error saying so; mutations (which need a
    token and run models) may take up to MUTATION_TIMEOUT_S. Each query text is parsed and
    validated once (`documents`, shared with the CachedDocuments extension).
    """

    timeout: float | None = None
    documents: DocumentCache

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """strawberry's execute, within the timeout."""
        run = super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )
        limit = self.timeout
        if limit is not None and _is_mutation(self.documents.parse(query or ""), operation_name):
            limit = max(limit, MUTATION_TIMEOUT_S)
        if limit is None:
            return await run
        try:
            return await asyncio.wait_for(run, limit)
        except TimeoutError:
            cancelled = context_value.running.cancel() if isinstance(context_value, Context) else 0
            logger.warning(
                "request cancelled after %g s (%d statements cancelled): %s",
                limit,
                cancelled,
                " ".join((query or "").split())[:500],
            )
            return ExecutionResult(data=None, errors=[timeout_error(limit)])

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Called before MaskErrors replaces the internal errors, so the log keeps them."""
        super().process_errors([e for e in errors if should_mask(e)], execution_context)


def build_schema(
    max_depth: int = MAX_DEPTH,
    max_cost: int | None = None,
    timeout: float | None = None,
    mutation: type | None = None,
) -> strawberry.Schema:
    """The schema with its guards: depth and cost limits, a timeout, internal errors masked.

    The served limits come from the settings (`create_app`). `mutation` replaces the served
    Mutation type (tests pass their own; its fields take `permission_classes=[RequiresToken]`).
    """
    documents = DocumentCache()
    extensions: list[Any] = [
        lambda: CachedDocuments(documents),
        lambda: QueryDepthLimiter(max_depth=max_depth),
    ]
    if max_cost is not None:
        extensions.append(lambda: CostLimiter(max_cost=max_cost))
    extensions.append(
        lambda: MaskErrors(should_mask_error=should_mask, error_message=MASKED_MESSAGE)
    )
    built = _Schema(query=Query, mutation=mutation or Mutation, extensions=extensions)
    built.timeout = timeout
    built.documents = documents
    return built


schema = build_schema()
