"""The GraphQL schema: structures (filtered, sorted, keyset-paginated), releases and runs."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from sqlalchemy import func, select
from strawberry.extensions import MaskErrors, QueryDepthLimiter
from strawberry.types import ExecutionContext

from crystaldb.api.errors import MASKED_MESSAGE, ApiError, should_mask
from crystaldb.api.filters import StructureFilter, compile_filter
from crystaldb.api.loaders import SUMMARY_COLUMNS, fetch
from crystaldb.api.pagination import (
    DEFAULT_PAGE,
    MAX_PAGE,
    StructureSort,
    check_first,
    encode_cursor,
    page_query,
    row_key,
)
from crystaldb.api.types import (
    Info,
    PageInfo,
    ReleaseType,
    RunType,
    StructureEdge,
    StructureType,
)
from crystaldb.schema.filters import DEFAULT_FUNCTIONAL
from crystaldb.schema.releases import Release, ReleaseMember
from crystaldb.schema.runs import Run
from crystaldb.schema.structures import ExternalId, Structure

MAX_DEPTH = 10


@strawberry.type
class StructureConnection:
    edges: list[StructureEdge]
    page_info: PageInfo
    count: strawberry.Private[Any]

    @strawberry.field(description="Structures matching the filter, over all pages.")
    async def total_count(self, info: Info) -> int:
        """Counted only when asked for."""
        rows = await fetch(info.context.db, self.count)
        return int(rows[0][0])


MAX_ID = 2**63 - 1  # structures.id is a bigint


def _structure_id(text: str) -> int:
    """A structure id given as an ID, or an error."""
    if not (text.isascii() and text.isdecimal() and 0 < int(text) <= MAX_ID):
        raise ApiError(f"id: '{text}' is not a structure id (a whole number from 1)")
    return int(text)


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
        query = page_query(
            compile_filter(filter), sort, check_first(first), after, band_gap_functional
        )
        rows = await fetch(info.context.db, query.rows)
        page = rows[:first]
        edges = [
            StructureEdge(
                cursor=encode_cursor(sort, row_key(sort, r), r.id), node=StructureType(row=r)
            )
            for r in page
        ]
        end = edges[-1].cursor if edges else None
        info_ = PageInfo(has_next_page=len(rows) > first, end_cursor=end)
        return StructureConnection(edges=edges, page_info=info_, count=query.count)

    @strawberry.field(description="One structure by id, null if there is none.")
    async def structure(self, info: Info, id: strawberry.ID) -> StructureType | None:
        """By primary key."""
        statement = select(*SUMMARY_COLUMNS).where(Structure.id == _structure_id(id))
        rows = await fetch(info.context.db, statement)
        return StructureType(row=rows[0]) if rows else None

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
        rows = await fetch(info.context.db, statement)
        return StructureType(row=rows[0]) if rows else None

    @strawberry.field(description="Every release, newest first, with its member count.")
    async def releases(self, info: Info) -> list[ReleaseType]:
        """One grouped query."""
        members = func.count(ReleaseMember.structure_id).label("members")
        statement = (
            select(Release.__table__, members)
            .outerjoin(ReleaseMember, ReleaseMember.release_id == Release.id)
            .group_by(Release.id)
            .order_by(Release.created_at.desc(), Release.id.desc())
        )
        return [
            ReleaseType(
                name=r.name,
                version=r.version,
                query=r.query,
                split_spec=r.split_spec,
                members=r.members,
                created_at=r.created_at,
            )
            for r in await fetch(info.context.db, statement)
        ]

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
        rows = await fetch(info.context.db, statement.limit(check_first(first)))
        return [_run(run) for run in rows]


def _run(run: Any) -> RunType:
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


class _Schema(strawberry.Schema):
    """Logs only unexpected errors (with their traceback); a user's mistake is not news."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Called before MaskErrors replaces the internal errors, so the log keeps them."""
        super().process_errors([e for e in errors if should_mask(e)], execution_context)


def build_schema(max_depth: int = MAX_DEPTH) -> strawberry.Schema:
    """The schema with its guards: a depth limit, and internal errors masked."""
    return _Schema(
        query=Query,
        extensions=[
            lambda: QueryDepthLimiter(max_depth=max_depth),
            lambda: MaskErrors(should_mask_error=should_mask, error_message=MASKED_MESSAGE),
        ],
    )


schema = build_schema()
