"""The explorer's routes: `/` (search), `/structures/{id}` (one structure, its downloads),
`/predict` (the prediction form), `/map` (the kernel map),
`/static/` (the explorer's CSS), `/static/graphiql/` (GraphiQL's vendored JS and CSS) and
`/static/chemiscope/` (chemiscope.min.js from the installed chemiscope package)."""

from __future__ import annotations

import asyncio
import io
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from strawberry import Schema

from crystaldb.api.web import form, kernel_map, predict, queries
from crystaldb.api.web.gql import execute
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.schema.labels import Calculation

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
COD_URL = "https://www.crystallography.net/cod/{}.html"
FORMATS = {"cif": "chemical/x-cif", "extxyz": "chemical/x-xyz", "poscar": "text/plain"}


def graphiql_assets() -> Path:
    """GraphiQL's JS and CSS as the vendoring package installs them (files only, no import)."""
    spec = find_spec("graphene_django_graphiql_static")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("graphene-django-graphiql-static is not installed (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))) / "static" / spec.name


def chemiscope_assets() -> Path:
    """chemiscope.min.js as the chemiscope package installs it: the map and the 3D view, offline."""
    spec = find_spec("chemiscope")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("chemiscope is not installed (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))) / "sphinx" / "static"


def graphiql_page(request: Request) -> HTMLResponse:
    """GraphiQL with its assets from this server: /graphql works on an offline node."""
    return TEMPLATES.TemplateResponse(request, "graphiql.html", {})


def web_routes(db: Database, schema: Schema, settings: Settings | None) -> list[BaseRoute]:
    """The explorer's pages over one database and the served schema."""

    async def search(request: Request) -> Response:
        """The search form and, when it asks something, one page of results."""
        wanted = form.read(request.query_params)
        answer = None
        if not wanted.problems:
            answer = await execute(schema, db, settings, queries.SEARCH, wanted.variables)
            wanted.problems += answer.errors
        data = (answer.data if answer and not answer.errors else None) or {}
        page = data.get("structures")
        functionals = await asyncio.to_thread(_functionals, db)
        context = {
            "form": wanted.values,
            "problems": wanted.problems,
            "page": page,
            "rows": [_row(edge["node"], wanted) for edge in page["edges"]] if page else [],
            "next_url": _next_url(wanted, page),
            "first_url": _page_url(wanted, None),
            "methods": functionals + [form.MODEL_PREFIX + m["name"] for m in data["models"]]
            if data
            else functionals,
        }
        status = 400 if wanted.problems else 200
        return TEMPLATES.TemplateResponse(request, "search.html", context, status_code=status)

    async def structure(request: Request) -> Response:
        """Everything stored about one structure."""
        sid = request.path_params["id"]
        answer = await execute(schema, db, settings, queries.STRUCTURE, {"id": sid})
        found = (answer.data or {}).get("structure")
        if found is None:
            return _missing(request, sid, answer.errors)
        context = {"s": found, "cod_url": COD_URL, "formats": list(FORMATS)}
        return TEMPLATES.TemplateResponse(request, "structure.html", context)

    async def download(request: Request) -> Response:
        """The cell as CIF, extended XYZ or POSCAR, as an attachment."""
        sid, kind = request.path_params["id"], request.path_params["format"]
        if kind not in FORMATS:
            return _missing(request, sid, [f"no download format {kind!r}: use {list(FORMATS)}"])
        variables = {"id": sid, "cif": kind == "cif", "xyz": kind != "cif"}
        answer = await execute(schema, db, settings, queries.DOWNLOAD, variables)
        found = (answer.data or {}).get("structure")
        if found is None:
            return _missing(request, sid, answer.errors)
        text = found["cif"] if kind == "cif" else found["extxyz"]
        if kind == "poscar":
            text = await asyncio.to_thread(_poscar, text)
        suffix = {"cif": "cif", "extxyz": "xyz", "poscar": "vasp"}[kind]
        name = f"crystaldb-{sid}-{found['reducedFormula']}.{suffix}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return PlainTextResponse(text, media_type=FORMATS[kind], headers=headers)

    return [
        Route("/", search, methods=["GET"]),
        Route("/structures/{id}", structure, methods=["GET"]),
        Route("/structures/{id}/download/{format}", download, methods=["GET"]),
        Route("/predict", predict.route(TEMPLATES, schema, db, settings), methods=["GET", "POST"]),
        Route("/map", kernel_map.route(TEMPLATES, db), methods=["GET"]),
        Mount("/static/graphiql", StaticFiles(directory=graphiql_assets()), name="graphiql"),
        Mount("/static/chemiscope", StaticFiles(directory=chemiscope_assets()), name="chemiscope"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]


def _missing(request: Request, sid: str, errors: list[str]) -> Response:
    """The 404 page: no structure with this id (and why, when the id could not be read)."""
    context = {"sid": sid, "errors": errors}
    return TEMPLATES.TemplateResponse(request, "missing.html", context, status_code=404)


def _functionals(db: Database) -> list[str]:
    """The DFT functionals that have calculations, for the band gap method menu."""
    with db.session() as session:
        return sorted(session.scalars(select(Calculation.functional).distinct()))


def _row(node: dict[str, Any], wanted: form.Search) -> dict[str, Any]:
    """One results row: the band gap is the smallest of the chosen method (as the API sorts)."""
    if wanted.model is not None:
        gaps = [
            p["value"] for p in node.get("predictions") or [] if p["model"]["name"] == wanted.model
        ]
    else:
        gaps = [
            label["value"]
            for label in node["labels"]
            if label["property"] == "band_gap"
            and label["calculation"]["functional"] == wanted.functional
        ]
    return {**node, "gap": min(gaps) if gaps else None}


def _next_url(wanted: form.Search, page: dict[str, Any] | None) -> str | None:
    """The next page's address: the same form with `after` set to this page's end cursor."""
    if not page or not page["pageInfo"]["hasNextPage"]:
        return None
    return _page_url(wanted, page["pageInfo"]["endCursor"])


def _page_url(wanted: form.Search, after: str | None) -> str:
    """The form's address with `after` replaced (left out for the first page)."""
    values = {k: v for k, v in wanted.values.items() if v and k != "after"}
    return "/?" + urlencode({**values, **({"after": after} if after else {})})


def _poscar(extxyz: str) -> str:
    """POSCAR text via ase, from the extended XYZ frame the API writes."""
    from ase.io import read, write  # imported on first use: most pages never need it

    atoms = read(io.StringIO(extxyz), format="extxyz")
    out = io.StringIO()
    write(out, atoms, format="vasp", direct=True, sort=True)
    return out.getvalue()
