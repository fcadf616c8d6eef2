"""The explorer's routes: `/` (search), `/structures/{id}` (one structure, its 3D view's
dataset, its downloads), `/releases/` (releases, their figures and manifest summary),
`/models/{name}` (a model, its learning curve), `/predict` (the prediction form), `/map` (the
kernel map), `/static/` (the explorer's CSS and JS), `/static/graphiql/` (GraphiQL's vendored
JS and CSS) and `/static/chemiscope/` (chemiscope.min.js from the installed chemiscope
package)."""

from __future__ import annotations

import asyncio
import io
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from strawberry import Schema

from crystaldb.api.web import form, kernel_map, predict, queries, releases
from crystaldb.api.web.gql import execute
from crystaldb.api.web.viewer import structure_view
from crystaldb.core.errors import ArtifactUnavailable
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings, load_settings
from crystaldb.platform.store import ArtifactStore
from crystaldb.schema.graphs import GraphRecipe, QuotientGraph
from crystaldb.schema.labels import Calculation

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
COD_URL = "https://www.crystallography.net/cod/{}.html"
FORMATS = {"cif": "chemical/x-cif", "extxyz": "chemical/x-xyz", "poscar": "text/plain"}
COLUMNS = {  # the results table's headers, by `sort` value
    "id": "id",
    "formula": "formula",
    "spacegroup": "space group",
    "nsites": "sites",
    "gap": "band gap (eV)",
}
PNG_HEADERS = {"Cache-Control": "public, max-age=86400"}  # a release's figures never change


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
    menu = _Functionals(db)

    async def search(request: Request) -> Response:
        """The search form and, when it asks something, one page of results."""
        wanted = form.read(request.query_params)
        answer = None
        if not wanted.problems:
            answer = await execute(schema, db, settings, queries.SEARCH, wanted.variables)
            wanted.problems += answer.errors
        data = (answer.data if answer and not answer.errors else None) or {}
        page = data.get("structures")
        functionals = await menu.functionals()
        context = {
            "form": wanted.values,
            "problems": wanted.problems,
            "page": page,
            "rows": [_row(edge["node"], wanted) for edge in page["edges"]] if page else [],
            "next_url": _next_url(wanted, page),
            "first_url": _page_url(wanted, None),
            "headers": _headers(wanted),
            "gap_source": f"model {wanted.model}" if wanted.model else wanted.functional,
            "by_gap": wanted.sort == "gap",
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
        graphs = await asyncio.to_thread(_graphs, db, int(found["id"]))
        context = {"s": found, "cod_url": COD_URL, "formats": list(FORMATS), "graphs": graphs}
        return TEMPLATES.TemplateResponse(request, "structure.html", context)

    async def view(request: Request) -> Response:
        """The 3D view's chemiscope dataset; `graph` names a stored quotient graph for bonds."""
        sid = request.path_params["id"]
        recipe = request.query_params.get("graph", "")
        variables = {"id": sid, "recipe": recipe, "withGraph": bool(recipe)}
        answer = await execute(schema, db, settings, queries.VIEW, variables)
        found = (answer.data or {}).get("structure")
        if found is None or answer.errors:
            why = answer.errors or [f"there is no structure with id {sid}"]
            return JSONResponse({"problems": why}, status_code=404 if found is None else 400)
        graph = found.get("quotientGraph")
        if recipe and graph is None:
            missing = f"structure {sid} has no stored quotient graph {recipe!r}"
            return JSONResponse({"problems": [missing]}, status_code=404)
        return JSONResponse(structure_view(found, graph).as_json())

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

    store = ArtifactStore((settings or load_settings()).store_location)
    drawing: dict[int, asyncio.Lock] = {}  # one drawing of a release's figures at a time

    async def figures(request: Request) -> tuple[str, releases.ReleaseFigures] | Response:
        """The path's release's store folder, figures and summary (drawn in a worker thread
        the first time), or the page saying why not."""
        name, version = request.path_params["name"], request.path_params["version"]
        found = await asyncio.to_thread(releases.find_release, db, name, version)
        if found is None:
            return _no_release(request, name, version)
        try:
            async with drawing.setdefault(found.id, asyncio.Lock()):
                shown = await asyncio.to_thread(releases.release_figures, db, store, found)
        except ArtifactUnavailable as exc:
            return _not_found(request, f"Figures of release {name}:{version}", [str(exc)], 503)
        return releases.folder(found), shown

    async def release_list(request: Request) -> Response:
        """Every release, newest first."""
        answer = await execute(schema, db, settings, queries.RELEASES, {})
        found = (answer.data or {}).get("releases") or []
        context = {"releases": found, "problems": answer.errors}
        return TEMPLATES.TemplateResponse(request, "releases.html", context)

    async def release_page(request: Request) -> Response:
        """One release: its manifest summary and its figures."""
        found = await figures(request)
        if isinstance(found, Response):
            return found
        name, version = request.path_params["name"], request.path_params["version"]
        context = {"name": name, "version": version, "figures": found[1]}
        return TEMPLATES.TemplateResponse(request, "release.html", context)

    async def release_plot(request: Request) -> Response:
        """One figure of a release, from the artifact store."""
        found = await figures(request)
        if isinstance(found, Response):
            return found
        folder, shown = found
        name, version = request.path_params["name"], request.path_params["version"]
        file = request.path_params["file"]
        if file not in shown.plots:
            listed = ", ".join(shown.plots)
            why = f"release {name}:{version} has no figure {file!r}; its figures: {listed}"
            return _not_found(request, f"No figure {file}", [why])
        try:
            data = await asyncio.to_thread(store.get_bytes, f"{folder}/{file}")
        except ArtifactUnavailable as exc:
            return _not_found(
                request, f"Figure {file} of release {name}:{version}", [str(exc)], 503
            )
        return Response(data, media_type="image/png", headers=PNG_HEADERS)

    async def model_page(request: Request) -> Response:
        """One model: what it is, its metrics, its learning curve if its training drew one."""
        name = request.path_params["name"]
        answer = await execute(schema, db, settings, queries.MODEL, {"name": name})
        found = ((answer.data or {}).get("models") or [None])[0]
        if found is None:
            why = [f"there is no model named {name!r}", *answer.errors]
            return _not_found(request, f"No model {name}", why)
        curve = await asyncio.to_thread(releases.learning_curve, db, name)
        context = {"m": found, "curve": curve is not None}
        return TEMPLATES.TemplateResponse(request, "model.html", context)

    async def model_curve(request: Request) -> Response:
        """A model's learning-curve PNG."""
        name = request.path_params["name"]
        curve = await asyncio.to_thread(releases.learning_curve, db, name)
        if curve is None:
            why = [f"model {name!r} has no stored learning curve (only KRR training draws one)"]
            return _not_found(request, f"No learning curve for {name}", why)
        return Response(curve, media_type="image/png")

    return [
        Route("/", search, methods=["GET"]),
        Route("/structures/{id}", structure, methods=["GET"]),
        Route("/structures/{id}/view.json", view, methods=["GET"]),
        Route("/structures/{id}/download/{format}", download, methods=["GET"]),
        Route("/releases", release_list, methods=["GET"]),
        Route("/releases/{name}/{version}", release_page, methods=["GET"]),
        Route("/releases/{name}/{version}/plots/{file}", release_plot, methods=["GET"]),
        Route("/models/{name}", model_page, methods=["GET"]),
        Route("/models/{name}/learning-curve.png", model_curve, methods=["GET"]),
        Route("/predict", predict.route(TEMPLATES, schema, db, settings), methods=["GET", "POST"]),
        *kernel_map.routes(TEMPLATES, db),  # /map, /map/ID.json, /map/structures/ID.json
        Mount("/static/graphiql", StaticFiles(directory=graphiql_assets()), name="graphiql"),
        Mount("/static/chemiscope", StaticFiles(directory=chemiscope_assets()), name="chemiscope"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]


def _missing(request: Request, sid: str, errors: list[str]) -> Response:
    """The 404 page: no structure with this id (and why, when the id could not be read)."""
    why = [f"There is no structure with id {sid} in this database.", *errors]
    return _not_found(request, f"No structure {sid}", why)


def _no_release(request: Request, name: str, version: str) -> Response:
    """The 404 page of a release that does not exist."""
    why = [f"There is no release {name}:{version} in this database."]
    return _not_found(request, f"No release {name}:{version}", why)


def _not_found(request: Request, heading: str, reasons: list[str], status: int = 404) -> Response:
    """The page for what is not there (or not reachable): a heading and the reasons."""
    context = {"heading": heading, "reasons": reasons}
    return TEMPLATES.TemplateResponse(request, "missing.html", context, status_code=status)


def _graphs(db: Database, structure_id: int) -> list[dict[str, Any]]:
    """The stored quotient graphs of a structure (recipe name, edges), for the bonds menu."""
    with db.session() as session:
        rows = session.execute(
            select(GraphRecipe.name, QuotientGraph.num_edges)
            .join(GraphRecipe, GraphRecipe.id == QuotientGraph.recipe_id)
            .where(QuotientGraph.structure_id == structure_id)
            .order_by(GraphRecipe.name)
        )
        return [{"name": name, "edges": edges} for name, edges in rows]


class _Functionals:
    """The DFT functionals that have calculations, for the band gap method menu, read at most
    once a minute: the distinct functionals of a calculation per label scan the whole table
    (100-250 ms at 300,000 structures, as much as the search itself), and a new functional
    only comes with an ingest."""

    TTL_S = 60.0

    def __init__(self, db: Database) -> None:
        self.db = db
        self.read_at = -self.TTL_S
        self.names: list[str] = []

    async def functionals(self) -> list[str]:
        """The menu's functionals, read again when a minute old."""
        if time.monotonic() - self.read_at >= self.TTL_S:
            self.names = await asyncio.to_thread(self._read)
            self.read_at = time.monotonic()
        return self.names

    def _read(self) -> list[str]:
        """One scan of the calculations."""
        with self.db.session() as session:
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


def _page_url(wanted: form.Search, after: str | None, sort: str | None = None) -> str:
    """The form's address with `after` replaced (left out for the first page) and, if given,
    the sort replaced."""
    values = {k: v for k, v in wanted.values.items() if v and k != "after"}
    if sort is not None:
        values["sort"] = sort
    return "/?" + urlencode({**values, **({"after": after} if after else {})})


def _headers(wanted: form.Search) -> list[dict[str, Any]]:
    """The results table's headers: each re-sorts from the first page, toggling the order."""
    return [
        {
            "column": column,
            "title": title,
            "url": _page_url(wanted, None, wanted.sorted_by(column)),
            "order": ("descending" if wanted.descending else "ascending")
            if column == wanted.sort
            else None,
        }
        for column, title in COLUMNS.items()
    ]


def _poscar(extxyz: str) -> str:
    """POSCAR text via ase, from the extended XYZ frame the API writes."""
    from ase.io import read, write  # imported on first use: most pages never need it

    atoms = read(io.StringIO(extxyz), format="extxyz")
    out = io.StringIO()
    write(out, atoms, format="vasp", direct=True, sort=True)
    return out.getvalue()
