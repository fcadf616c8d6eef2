"""The kernel map: a stored embedding shown by chemiscope (served from the installed package),
each point a crystal; the colour is chosen in chemiscope's own menu, and a click shows the
crystal in chemiscope's structure panel and links to its page.

- `/map`: the stored embeddings; `/map?embedding=ID`: the page, which loads
- `/map/ID.json`: the chemiscope dataset (`dataset`, a pure function of the loaded map), with
  structures as placeholders that the page fetches on selection from
- `/map/structures/ID.json`: one cell as chemiscope draws it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from crystaldb.formats.chemiscope import (
    KernelMap,
    chemiscope_dataset,
    chemiscope_structure,
    describe,
    external_structures,
    strict_json,
)
from crystaldb.jobs.embeddings import find_embedding, list_embeddings, load_map
from crystaldb.platform.database import Database
from crystaldb.schema import KernelEmbedding, Structure

NOT_STORED = "no embedding {}: `crystaldb kernel embed --kernel ID` stores one"


def dataset(kmap: KernelMap) -> dict[str, Any]:
    """The map as the page's chemiscope dataset (strict JSON: null where a value is unknown)."""
    name = f"kernel map {kmap.embedding_id}: {kmap.coordinates} of kernel {kmap.kernel_id}"
    built = chemiscope_dataset(kmap, external_structures(kmap), name, describe(kmap))
    return strict_json(built)


def _map_of(db: Database, embedding_id: int) -> KernelMap | None:
    """The stored map with its colour choices, or None."""
    embedding = find_embedding(db, embedding_id)
    return None if embedding is None else load_map(db, embedding)


def _structure(db: Database, structure_id: int) -> dict[str, Any] | None:
    """One stored cell as chemiscope's structure panel reads it, or None."""
    with db.session() as session:
        row = session.get(Structure, structure_id)
        if row is None:
            return None
        return chemiscope_structure(row.lattice, row.frac_coords, row.atomic_numbers)


def _parameters(embedding: KernelEmbedding) -> str:
    """The embedding's parameters in words, for the page."""
    shown = {k: v for k, v in embedding.parameters.items() if k not in ("kernel_id", "method")}
    return ", ".join(f"{k} {v}" for k, v in sorted(shown.items()))


def routes(templates: Jinja2Templates, db: Database) -> list[Route]:
    """The map page, its dataset and its structures."""

    async def page(request: Request) -> Response:
        raw = request.query_params.get("embedding", "").strip()
        if not raw:
            listed = await asyncio.to_thread(list_embeddings, db)
            return templates.TemplateResponse(request, "map.html", {"embeddings": listed})
        if not raw.isdigit():
            problem = f"embedding: an id is a whole number (got {raw!r})"
            return templates.TemplateResponse(
                request, "map.html", {"problem": problem}, status_code=400
            )
        found = await asyncio.to_thread(find_embedding, db, int(raw))
        if found is None:
            missing = {"problem": NOT_STORED.format(raw)}
            return templates.TemplateResponse(request, "map.html", missing, status_code=404)
        shown = {"embedding": found, "parameters": _parameters(found)}
        return templates.TemplateResponse(request, "map.html", shown)

    async def data(request: Request) -> Response:
        embedding_id = request.path_params["embedding_id"]
        kmap = await asyncio.to_thread(_map_of, db, embedding_id)
        if kmap is None:
            return JSONResponse({"error": NOT_STORED.format(embedding_id)}, status_code=404)
        return JSONResponse(await asyncio.to_thread(dataset, kmap))

    async def structure(request: Request) -> Response:
        sid = request.path_params["structure_id"]
        found = await asyncio.to_thread(_structure, db, sid)
        if found is None:
            return JSONResponse({"error": f"no structure {sid}"}, status_code=404)
        return JSONResponse(found)

    return [
        Route("/map", page, methods=["GET"]),
        Route("/map/{embedding_id:int}.json", data, methods=["GET"]),
        Route("/map/structures/{structure_id:int}.json", structure, methods=["GET"]),
    ]
