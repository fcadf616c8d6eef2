"""The GraphQL schema: structures (filtered, sorted, keyset-paginated), models, releases, runs;
its guards: depth and cost limits, a timeout, masked internal errors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

import strawberry
from graphql import DocumentNode, GraphQLError
from sqlalchemy import select
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.utils.str_converters import to_camel_case

from crystaldb.api.documents import CachedDocuments, DocumentCache
from crystaldb.api.errors import MASKED_MESSAGE, ApiError, shorten, should_mask
from crystaldb.api.executor import execution_loop
from crystaldb.api.filters import StructureFilter, compile_filter
from crystaldb.api.limits import (
    MAX_DEPTH,
    Guards,
    Limits,
    chosen_operation,
    nesting_error,
    query_length_error,
    timeout_error,
)
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
    MAX_ID,
    MAX_PAGE,
    StructureSort,
    check_first,
    page_query,
    row_cursor,
    row_id,
)
from crystaldb.api.selections import below
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
from crystaldb.jobs.kernels import KernelError
from crystaldb.jobs.similarity import similar as similar_structures
from crystaldb.query.fields import DEFAULT_FUNCTIONAL
from crystaldb.schema.labels import Calculation, Label
from crystaldb.schema.ml import Model
from crystaldb.schema.releases import Release
from crystaldb.schema.runs import Run
from crystaldb.schema.structures import ExternalId, Structure

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


def _structure_id(text: str, argument: str = "id", what: str = "structure") -> int:
    """A structure (or kernel) id given as an ID, or an error."""
    if not (text.isascii() and text.isdecimal() and len(text) < 20 and 0 < int(text) <= MAX_ID):
        raise ApiError(f"{argument}: {shorten(text)} is not a {what} id (a whole number from 1)")
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
        "bandGapFunctional's labels, or from bandGapModel's predictions when it is given, and "
        "leave out structures without one."
    )
    async def structures(
        self,
        info: Info,
        filter: StructureFilter | None = None,
        sort: StructureSort = StructureSort.ID_ASC,
        first: int = DEFAULT_PAGE,
        after: str | None = None,
        band_gap_functional: str = DEFAULT_FUNCTIONAL,
        band_gap_model: str | None = None,
    ) -> StructureConnection:
        """One page in (sort key, id) order, fetched by keyset, never by offset."""
        compiled = compile_filter(filter)
        query = page_query(
            compiled.where, sort, check_first(first), after, band_gap_functional, band_gap_model
        )
        models = dict(compiled.models)
        if band_gap_model is not None:
            models["bandGapModel"] = band_gap_model
        if models:
            await _check_models(info, models)
        rows, nested = await info.context.fetch_page(query.rows, first, _node_lists(info))
        functionals = dict(compiled.functionals)
        if sort.by_band_gap and band_gap_model is None:
            functionals["bandGapFunctional"] = band_gap_functional
        if functionals and not rows and after is None:
            await _warn_unlabelled(info, functionals)
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
        kernel_id = None if kernel is None else _structure_id(kernel, "kernel", "kernel")
        if not 1 <= k <= MAX_PAGE:
            raise ApiError(f"k must be between 1 and {MAX_PAGE}, got {k}")
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
    selected = below(info._raw_info, "edges", "node")
    return [name for field, name in _NESTED_FIELDS.items() if field in selected]


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


async def _warn_unlabelled(info: Info, functionals: dict[str, str]) -> None:
    """A band gap condition on a functional that labels no structure matches nothing: say so
    in the answer's warnings, with the functionals that do, instead of an unexplained void."""
    statement = (
        select(Calculation.functional)
        .where(Calculation.id.in_(select(Label.calculation_id).where(Label.property == "band_gap")))
        .distinct()
        .order_by(Calculation.functional)
    )
    stored = [r.functional for r in await info.context.fetch(statement)]
    listed = ", ".join(repr(f) for f in stored) or "none"
    for path, functional in functionals.items():
        if functional not in stored:
            info.context.warnings.append(
                f"{path}: no band gap label of functional {functional!r} is stored, so this "
                f"condition matches no structure; functionals with band gaps here: {listed}"
            )


MUTATION_TIMEOUT_S = 120.0  # mutations run models for token holders: seconds, not ms


def _is_mutation(document: DocumentNode | None, operation_name: str | None) -> bool:
    """Whether the operation to run is a mutation (they get MUTATION_TIMEOUT_S)."""
    operation = None if document is None else chosen_operation(document, operation_name)
    return operation is not None and operation.operation.value == "mutation"


def _settle(future: Future[float | None], value: float | None) -> None:
    """Give the awaiting server loop its answer, unless it stopped waiting (a timeout)."""
    if not future.done():
        future.set_result(value)


class Warnings(SchemaExtension):
    """What a request should know about its answer (a filter on a functional with no labels,
    say) goes into the response's `extensions.warnings`."""

    def get_results(self) -> dict[str, Any]:
        """The request's warnings, if any."""
        found = getattr(self.execution_context.context, "warnings", None)
        return {"warnings": list(found)} if found else {}


class _Schema(strawberry.Schema):
    """Executes on the execution loop (`executor`), so the server's own loop keeps answering
    other requests, `/health` included, whatever one request costs; logs only unexpected
    errors (with their traceback), a user's mistake is not news.

    With a timeout, a request running longer is answered with an error saying so, at the
    limit, while its work is cancelled with the statements it left running in PostgreSQL;
    mutations (which need a token and run models) may take up to MUTATION_TIMEOUT_S. Each
    query text is parsed and validated once (`documents`, shared with the CachedDocuments
    extension).
    """

    timeout: float | None = None
    documents: DocumentCache
    limits: Limits

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
        """strawberry's execute on the execution loop, awaited here within the timeout."""
        if query is not None and len(query) > self.limits.max_query_characters:
            error = query_length_error(len(query), self.limits.max_query_characters)
            return ExecutionResult(data=None, errors=[error])
        limit_known: Future[float | None] = Future()

        async def run() -> ExecutionResult:
            """On the execution loop: the checks before parsing, then strawberry's execute."""
            limit: float | None = None
            try:
                error = self._unparsable(query)
                if error is None:
                    limit = self._limit(query, operation_name)
            finally:
                _settle(limit_known, limit)  # also when the checks raise: never left waiting
            if error is not None:
                return ExecutionResult(data=None, errors=[error])
            return await strawberry.Schema.execute(
                self,
                query,
                variable_values,
                context_value,
                root_value,
                operation_name,
                allowed_operation_types,
                operation_extensions,
            )

        started = time.monotonic()
        running = execution_loop().submit(run())
        limit = self.timeout
        try:
            if limit is None:
                return await asyncio.wrap_future(running)
            limit = await asyncio.wait_for(asyncio.wrap_future(limit_known), limit) or limit
            left = limit - (time.monotonic() - started)
            return await asyncio.wait_for(asyncio.wrap_future(running), max(left, 0.0))
        except TimeoutError:
            running.cancel()
            assert limit is not None
            return await self._timed_out(limit, query, context_value)

    def _unparsable(self, query: str | None) -> GraphQLError | None:
        """A text not parsed before that nests deeper than the parser can take, or None."""
        if query is None or self.documents.entry(query) is not None:
            return None
        return nesting_error(query, self.limits.max_tokens)

    def _limit(self, query: str | None, operation_name: str | None) -> float | None:
        """The request's time limit: longer for mutations."""
        limit = self.timeout
        if limit is not None and _is_mutation(self.documents.parse(query or ""), operation_name):
            limit = max(limit, MUTATION_TIMEOUT_S)
        return limit

    async def _timed_out(self, limit: float, query: str | None, context: Any) -> ExecutionResult:
        """Cancel what the request left running in PostgreSQL; the answer that says so."""
        cancelled = 0
        if isinstance(context, Context):
            cancelled = await asyncio.to_thread(context.running.cancel)
        logger.warning(
            "request cancelled after %g s (%d statements cancelled): %s",
            limit,
            cancelled,
            " ".join((query or "")[:2000].split())[:500],
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
    """The schema with its guards: bounds on the document, a cost limit, a timeout, internal
    errors masked.

    The served limits come from the settings (`create_app`). `mutation` replaces the served
    Mutation type (tests pass their own; its fields take `permission_classes=[RequiresToken]`).
    """
    limits = Limits(max_cost=max_cost, max_depth=max_depth)
    documents = DocumentCache(max_tokens=limits.max_tokens)
    extensions: list[Any] = [
        lambda: CachedDocuments(documents),
        lambda: Guards(limits),
        Warnings,
        lambda: MaskErrors(should_mask_error=should_mask, error_message=MASKED_MESSAGE),
    ]
    built = _Schema(query=Query, mutation=mutation or Mutation, extensions=extensions)
    built.timeout = timeout
    built.documents = documents
    built.limits = limits
    return built


schema = build_schema()
