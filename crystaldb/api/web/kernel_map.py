"""The kernel map (`/map`): a stored embedding drawn as server-side SVG, so it needs no script,
no CDN and no plotting package; each point links to its structure and is coloured by band gap."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from crystaldb.platform.database import Database
from crystaldb.schema import Calculation, KernelEmbedding, Label, Structure

WIDTH, HEIGHT, MARGIN, RADIUS = 720, 540, 24, 5
UNLABELLED = "#b0b0b0"
# viridis at five stops: perceptually even and readable by colour-blind users
STOPS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


@dataclass(frozen=True)
class Point:
    """One structure on the map: where it is drawn, its colour and its tooltip."""

    sid: int
    cx: float
    cy: float
    colour: str
    title: str


def colour(fraction: float) -> str:
    """The viridis colour at `fraction` (0..1) of the scale, as #rrggbb."""
    t = min(max(fraction, 0.0), 1.0) * (len(STOPS) - 1)
    i = min(int(t), len(STOPS) - 2)
    a, b = STOPS[i], STOPS[i + 1]
    return "#" + "".join(f"{round(p + (q - p) * (t - i)):02x}" for p, q in zip(a, b, strict=True))


def layout(xs: Sequence[float], ys: Sequence[float]) -> list[tuple[float, float]]:
    """Points in the drawing box with one scale for both axes (kernel PCA distances kept),
    centred; y grows upwards as on a plot."""
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if max(x1 - x0, y1 - y0) == 0:
        return [(WIDTH / 2, HEIGHT / 2)] * len(xs)
    factor = min((WIDTH - 2 * MARGIN) / (x1 - x0 or 1), (HEIGHT - 2 * MARGIN) / (y1 - y0 or 1))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return [
        (WIDTH / 2 + (x - cx) * factor, HEIGHT / 2 - (y - cy) * factor)
        for x, y in zip(xs, ys, strict=True)
    ]


def _gaps(db: Database, ids: list[int]) -> tuple[dict[int, dict[str, float]], dict[int, str]]:
    """Band gaps by structure and functional (smallest of each), and reduced formulas."""
    gaps: dict[int, dict[str, float]] = {}
    with db.session() as session:
        rows = session.execute(
            select(Label.structure_id, Calculation.functional, Label.value)
            .join(Calculation, Calculation.id == Label.calculation_id)
            .where(Label.property == "band_gap", Label.structure_id.in_(ids))
        ).all()
        formulas = dict(
            session.execute(
                select(Structure.id, Structure.reduced_formula).where(Structure.id.in_(ids))
            ).all()
        )
    for sid, functional, value in rows:
        mine = gaps.setdefault(sid, {})
        mine[functional] = min(value, mine.get(functional, value))
    return gaps, formulas


def drawing(db: Database, embedding: KernelEmbedding, functional: str | None) -> dict[str, Any]:
    """The points, the legend and the functional choices for one embedding."""
    ids = list(embedding.structure_ids)
    gaps, formulas = _gaps(db, ids)
    counts = Counter(f for by in gaps.values() for f in by)
    functionals = [f for f, _ in counts.most_common()]
    chosen = functional if functional in counts else (functionals[0] if functionals else None)
    values = {sid: by[chosen] for sid, by in gaps.items() if chosen in by}
    lo, hi = (min(values.values()), max(values.values())) if values else (0.0, 0.0)
    points = []
    for sid, (cx, cy) in zip(ids, layout(embedding.x, embedding.y), strict=True):
        gap = values.get(sid)
        shade = UNLABELLED if gap is None else colour((gap - lo) / (hi - lo) if hi > lo else 0.5)
        told = "unlabelled" if gap is None else f"{gap:.3f} eV ({chosen})"
        title = f"structure {sid}: {formulas.get(sid, '?')}, band gap {told}"
        points.append(Point(sid, round(cx, 2), round(cy, 2), shade, title))
    legend = [(f"{i * 25}%", colour(i / 4)) for i in range(5)]
    return {
        "points": points,
        "width": WIDTH,
        "height": HEIGHT,
        "radius": RADIUS,
        "functional": chosen,
        "functionals": functionals,
        "low": lo,
        "high": hi,
        "labelled": len(values),
        "legend": legend,
        "unlabelled": UNLABELLED,
    }


def _load(db: Database, embedding_id: int | None) -> list[KernelEmbedding]:
    """One embedding (or none) when asked by id, else every embedding, newest first."""
    query = select(KernelEmbedding).order_by(KernelEmbedding.id.desc())
    if embedding_id is not None:
        query = query.where(KernelEmbedding.id == embedding_id)
    with db.session() as session:
        found = list(session.scalars(query))
        session.expunge_all()
    return found


def route(templates: Jinja2Templates, db: Database) -> Callable[[Request], Awaitable[Response]]:
    """`/map`: the list of stored embeddings, or `/map?embedding=ID` drawn."""

    async def kernel_map(request: Request) -> Response:
        raw = request.query_params.get("embedding", "").strip()
        if not raw:
            listed = await asyncio.to_thread(_load, db, None)
            return templates.TemplateResponse(request, "map.html", {"embeddings": listed})
        if not raw.isdigit():
            context: dict[str, Any] = {
                "problem": f"embedding: an id is a whole number (got {raw!r})"
            }
            return templates.TemplateResponse(request, "map.html", context, status_code=400)
        found = await asyncio.to_thread(_load, db, int(raw))
        if not found:
            context = {"problem": f"no embedding {raw}: `crystaldb kernel embed --kernel ID`"}
            return templates.TemplateResponse(request, "map.html", context, status_code=404)
        wanted = request.query_params.get("functional") or None
        drawn = await asyncio.to_thread(drawing, db, found[0], wanted)
        shown = {"embedding": found[0], **drawn}
        return templates.TemplateResponse(request, "map.html", shown)

    return kernel_map
