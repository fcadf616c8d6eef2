"""The OPTIMADE endpoints (info, info/structures, structures, structures/{id}, links, versions)
under /optimade/v1/ and the unversioned /optimade/, over the same database as GraphQL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from optimade.models import (
    EntryInfoResponse,
    InfoResponse,
    LinksResponse,
)
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from crystaldb.api.optimade import provider, queries
from crystaldb.api.optimade.entries import needed, resource, served
from crystaldb.api.optimade.filters import FilterError, NotImplementedFilter, compile_filter
from crystaldb.api.optimade.paging import PagingError, parse_sort
from crystaldb.api.optimade.responses import (
    base_url,
    dump,
    error,
    info_resource,
    json_response,
    meta,
    root_link,
    structures_info,
)
from crystaldb.platform.database import Database

DEFAULT_LIMIT = 20
MAX_LIMIT = 500
_ALWAYS = ("id", "type")  # members every entry keeps, whatever response_fields says


class _Refused(Exception):
    """A request answered with an OPTIMADE error."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _integer(request: Request, name: str, default: int) -> int:
    """A non-negative whole-number query parameter."""
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    if not text.isdecimal():
        raise _Refused(400, f"{name} must be a non-negative whole number, not {text[:40]!r}")
    return int(text)


def _common(request: Request) -> None:
    """Query parameters every endpoint refuses when it cannot honour them."""
    fmt = request.query_params.get("response_format")
    if fmt not in (None, "", "json"):
        raise _Refused(400, f"response_format {fmt[:40]!r} is not served; use json")


def _body(data: Any, meta_model: BaseModel, links: dict[str, Any] | None = None) -> Response:
    """A structures response assembled from entries already in the spec's JSON (see
    entries' docstring): only the envelope's meta goes through its model."""
    body: dict[str, Any] = {"data": data, "meta": dump(meta_model)}
    if links is not None:
        body["links"] = links
    return json_response(body)


def _fields(request: Request) -> set[str] | None:
    """The attributes response_fields asks for, or None for all."""
    text = request.query_params.get("response_fields")
    if not text:
        return None
    return {name.strip() for name in text.split(",") if name.strip()} - set(_ALWAYS)


def _next_link(request: Request, cursor: str, limit: int) -> str:
    """The URL of the next page: every other parameter kept, the offset replaced by a cursor."""
    params = dict(request.query_params)
    params.pop("page_offset", None)
    params["page_cursor"] = cursor
    params["page_limit"] = str(limit)
    return f"{base_url(request)}/structures?{urlencode(params)}"


def _handlers(db: Database) -> dict[str, Callable[[Request], Awaitable[Response]]]:
    """The endpoint functions, closed over the database."""

    def in_session(work: Callable[[Any], Any]) -> Awaitable[Any]:
        def run() -> Any:
            with db.session() as session:
                return work(session)

        return asyncio.to_thread(run)

    async def info(request: Request) -> Response:
        return json_response(InfoResponse(data=info_resource(request), meta=meta(request, 1)))

    async def entry_info(request: Request) -> Response:
        found = await in_session(provider.catalogue)
        body = EntryInfoResponse(data=structures_info(found.definitions()), meta=meta(request, 1))
        return json_response(body)

    async def links(request: Request) -> Response:
        body = LinksResponse(data=[root_link(request)], meta=meta(request, 1, available=1))
        return json_response(body)

    async def versions(request: Request) -> Response:
        return PlainTextResponse("version\n1\n", media_type="text/csv; header=present")

    async def structures(request: Request) -> Response:
        _common(request)
        limit = _integer(request, "page_limit", DEFAULT_LIMIT)
        if limit > MAX_LIMIT:
            raise _Refused(403, f"page_limit {limit} is above the maximum, {MAX_LIMIT}")
        offset = _integer(request, "page_offset", 0)
        cursor = request.query_params.get("page_cursor") or None
        if cursor is not None and offset:
            raise _Refused(400, "give page_cursor or page_offset, not both")
        sort, sort_warnings = parse_sort(request.query_params.get("sort"))
        text = request.query_params.get("filter", "").strip()
        fields = _fields(request)

        def work(session: Any) -> Any:
            known = provider.catalogue(session)
            builders = known.builders()
            names = served(fields, builders)
            compiled = compile_filter(text, lambda c: queries.distinct(session, c), known)
            columns = needed(names, builders)
            found = queries.page(session, compiled.clause, limit, sort, offset, cursor, columns)
            data = [resource(row, names, builders) for row in found.rows]
            return compiled.warnings, found, data, queries.total(session)

        warnings, found, data, available = await in_session(work)
        links = {"next": _next_link(request, found.cursor, limit) if found.cursor else None}
        notes = warnings + sort_warnings
        return _body(data, meta(request, found.returned, found.more, notes, available), links)

    async def structure(request: Request) -> Response:
        _common(request)
        sid = request.path_params["entry_id"]
        fields = _fields(request)

        def work(session: Any) -> dict[str, Any] | None:
            builders = provider.catalogue(session).builders()
            names = served(fields, builders)
            row = queries.one(session, int(sid), needed(names, builders))
            return None if row is None else resource(row, names, builders)

        entry = await in_session(work) if re.fullmatch(r"\d{1,18}", sid) else None
        if entry is None:
            raise _Refused(404, f"no structure has id {sid[:40]!r}")
        return _body(entry, meta(request, 1))

    return {
        "info": info,
        "info/structures": entry_info,
        "links": links,
        "versions": versions,
        "structures": structures,
        "structures/{entry_id}": structure,
    }


def _guarded(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """The handler, with refusals and filter errors answered as OPTIMADE errors."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except _Refused as refused:
            return error(request, refused.status, refused.detail)
        except FilterError as bad:
            return error(request, 400, str(bad))
        except PagingError as bad:
            return error(request, 400, str(bad))
        except NotImplementedFilter as missing:
            return error(request, 501, str(missing))

    return guarded


async def _unsupported_version(request: Request) -> Response:
    """553 for a version other than v1 (/optimade/v2/...), 404 for other paths."""
    version = request.path_params["version"]
    if version != "v1" and re.fullmatch(r"v\d+(\.\d+){0,2}", version):
        return error(request, 553, f"version {version[:20]} is not served; use v1")
    return error(request, 404, f"nothing at {request.url.path[:80]}")


def routes(db: Database) -> list[BaseRoute]:
    """Every OPTIMADE route, versioned and unversioned."""
    found: list[BaseRoute] = []
    for path, handler in _handlers(db).items():
        for prefix in ("/optimade/v1", "/optimade"):
            found.append(Route(f"{prefix}/{path}", _guarded(handler), methods=["GET"]))
    found.append(Route("/optimade/{version}/{rest:path}", _unsupported_version, methods=["GET"]))
    return found
