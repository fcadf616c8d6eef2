"""The ASGI application: the web explorer's pages (`crystaldb.api.web`), GraphQL (with an
offline GraphiQL) at /graphql, OPTIMADE under /optimade/
(`crystaldb.api.optimade`) and a health check at /health, behind the HTTP rules of `http`
(bounded bodies, uploads with a token) and, when origins are configured, CORS. There is no
websocket route: the schema has no subscriptions, and a websocket would carry queries past the
HTTP rules."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cross_web import HTTPException  # what strawberry's views raise for a 4xx answer
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.websockets import WebSocket
from strawberry import Schema
from strawberry.asgi import GraphQL

from crystaldb.api.auth import parse_authorization
from crystaldb.api.http import BoundedRequests
from crystaldb.api.loaders import Context
from crystaldb.api.optimade import routes as optimade_routes
from crystaldb.api.schema import build_schema
from crystaldb.api.web import graphiql_page, web_routes
from crystaldb.platform.database import Database, ping
from crystaldb.platform.settings import Settings, load_settings


class _GraphQL(GraphQL[Context, None]):
    """strawberry's ASGI view, with a fresh Context (and DataLoaders) per request."""

    def __init__(self, db: Database, schema: Schema, settings: Settings | None) -> None:
        # Multipart requests carry `predictBandGap(file: Upload)`. strawberry leaves them off
        # by default against cross-site form posts; here every mutation needs an
        # `Authorization: Bearer` header, which a cross-site form cannot send.
        super().__init__(schema, graphql_ide="graphiql", multipart_uploads_enabled=True)
        self.db = db
        self.settings = settings

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        """GraphiQL with its JS and CSS from this server, not a CDN: works offline."""
        return graphiql_page(request)

    async def get_context(self, request: Request | WebSocket, response: object) -> Context:
        """New loaders for every request, and the request's `Authorization: Bearer` token."""
        bearer, other = parse_authorization(request.headers.get("authorization"))
        return Context(self.db, bearer=bearer, authorization=other, settings=self.settings)

    def decode_json(self, data: str | bytes) -> object:
        """The body's JSON; nesting deeper than Python's parser goes is a 400, not a 500."""
        try:
            return json.loads(data)
        except RecursionError:
            raise HTTPException(
                400, "the request body nests JSON too deeply to read: no request needs that"
            ) from None


def _health(db: Database) -> Route:
    """GET /health: 200 when the database answers, 503 (no details) when it does not."""

    async def health(request: Request) -> Response:
        try:
            await asyncio.to_thread(ping, db)
        except Exception:  # any failure means unhealthy; the details stay in the server
            return JSONResponse({"status": "error", "database": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    return Route("/health", health, methods=["GET"])


@asynccontextmanager
async def _frozen_heap(app: Starlette) -> AsyncIterator[None]:
    """Moves what is alive at startup (pymatgen, ase, SQLAlchemy, the schema: half a million
    objects) out of the garbage collector's sight, for the whole process: a full collection
    then scans only what requests made, instead of taking 200-300 ms every 40th request."""
    gc.collect()
    gc.freeze()
    yield


def create_app(
    db: Database, settings: Settings | None = None, schema: Schema | None = None
) -> Starlette:
    """The whole API for one database, ready for any ASGI server.

    The cost limit, timeout, body limits and CORS origins come from `settings`
    (CRYSTALDB_API_MAX_COST, _TIMEOUT, _MAX_BODY, _MAX_UPLOAD, _CORS_ORIGINS; loaded when not
    given); `schema` replaces the served one (tests).
    """
    settings = settings or load_settings()
    if schema is None:
        schema = build_schema(max_cost=settings.api_max_cost, timeout=settings.api_timeout)
    graphql = _GraphQL(db, schema, settings)
    routes: list[BaseRoute] = [_health(db), Route("/graphql", graphql, methods=["GET", "POST"])]
    routes += optimade_routes(db)
    routes += web_routes(db, schema, settings)
    middleware = [
        Middleware(
            BoundedRequests,
            db=db,
            max_body=settings.api_max_body,
            max_upload=settings.api_max_upload,
        )
    ]
    if settings.api_cors_origins:
        middleware.insert(0, _cors(settings.api_cors_origins))
    return Starlette(routes=routes, middleware=middleware, lifespan=_frozen_heap)


def _cors(origins: list[str]) -> Middleware:
    """Browsers on these origins may call the API: GET and POST, with a token header."""
    return Middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
