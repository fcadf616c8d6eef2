"""Quotient graphs: the periodic multigraph of a cell, one node per site, pure science.

A quotient graph has one node per site of the cell and one directed edge (i, j, n) for each
neighbour of site i under the recipe's rule: site j in the cell translated by the integer
image offset n = (n1, n2, n3) of lattice vectors, with the edge vector
r_j + n . lattice - r_i and its length in angstrom. Several edges between the same two sites
(different images) and self-loops to a site's own images are kept; the pair (i, i, 0) never
is. Positions are the cell's as stored (frac_coords . lattice, not re-wrapped), and images are
relative to them. Edges come in one canonical order, sorted by (i, j, n1, n2, n3), so the same
cell and recipe always give identical arrays.

Recipes (`--recipe`; the canonical name, with every parameter, is what the database keys):

- ``radius:R`` (``radius:5.0``): every neighbour closer than R angstrom (0 < R <= 20), strictly.
  Symmetric: (i, j, n) and (j, i, -n) are both edges.
- ``knn:K[,RMAX]`` (``knn:12`` = ``knn:12,8.0``): for each site i, its K nearest neighbours
  among those closer than RMAX angstrom (default 8.0, as CGCNN), counted with their images.
  **Tie rule**: let d_K be the K-th smallest neighbour distance of site i; every neighbour
  with d <= d_K + 0.001 angstrom (TIE_TOLERANCE) is kept, so a site can get more than K
  edges (fcc's 12 equal nearest neighbours are all kept under knn:1) but the edge set never
  depends on how sites or images happen to be ordered: it is invariant under site
  permutation, origin shift and change of cell. 0.001 angstrom is far above floating-point
  noise (about 1e-14 angstrom) and about the rounding of CIF coordinates given to 4-5
  decimals, far below any physical difference between shells. A site with fewer than K
  neighbours within RMAX keeps all it has. Not symmetric: j may be among i's nearest
  without the converse.
- ``voronoi[:MIN_SOLID_ANGLE]`` (``voronoi`` = ``voronoi:0.2``): i and the image n of j are
  neighbours when their cells in the Voronoi tessellation of all sites of the infinite crystal
  (plain, unweighted: every element alike) share a facet that subtends at least
  MIN_SOLID_ANGLE steradians as seen from site i (the whole cell subtends 4 pi = 12.57 sr;
  a facet is seen under the same solid angle from both its sites, so the graph is
  symmetric). This is an absolute solid angle, not pymatgen VoronoiNN's angle normalised by
  the largest facet. The tessellation is qhull's (scipy.spatial.Voronoi) over the sites
  and their images within a reach, per site, that is enlarged until the site's cell is closed
  and lies within half its reach, which proves no farther image could cut it. Sites lining
  the pore of a framework have cells reaching across it, so porous COFs cost 0.1-2 s each.

Neighbour lists come from pymatgen's `find_points_in_spheres` (Cython cell lists), chosen by
measurement against vesin and matscipy on real cells (bench/graphs.py, bench/README.md):
all three give identical pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from crystaldb.core.cell import Cell
from crystaldb.core.errors import CrystaldbError

METHODS = ("radius", "knn", "voronoi")
MAX_RADIUS = 20.0  # angstrom; beyond it edge lists explode and no model asks for it
MAX_K = 256
DEFAULT_KNN_RADIUS = 8.0  # CGCNN: 12 nearest neighbours within 8 angstrom
TIE_TOLERANCE = 1e-3  # angstrom: neighbours this close to the K-th distance are tied with it
DEFAULT_MIN_SOLID_ANGLE = 0.2  # steradian
FULL_SOLID_ANGLE = 4 * math.pi
MAX_VORONOI_REACH = 60.0  # angstrom; a cell still open at this reach is refused
NEIGHBOUR_LIBRARY = "pymatgen"
SYNTAX = "radius:R, knn:K[,RMAX] or voronoi[:MIN_SOLID_ANGLE], e.g. radius:5.0, knn:12, voronoi"


class RecipeError(CrystaldbError):
    """A `--recipe` string that names no valid graph recipe."""


class GraphError(ValueError):
    """A cell whose graph cannot be built (a Voronoi cell that never closes, huge images)."""


@dataclass(frozen=True)
class Recipe:
    """How edges are chosen; `name` is canonical (every parameter spelled out)."""

    name: str
    method: str
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def library(self) -> str:
        """The neighbour-list library that computes it (what graph_recipes records)."""
        return NEIGHBOUR_LIBRARY

    @property
    def library_version(self) -> str:
        """Versions of the libraries the edges depend on."""
        version = f"{NEIGHBOUR_LIBRARY} {metadata.version(NEIGHBOUR_LIBRARY)}"
        if self.method == "voronoi":
            version += f"; scipy {metadata.version('scipy')} (qhull)"
        return version

    @property
    def search_radius(self) -> float | None:
        """The largest neighbour distance the rule can use (None: found per cell)."""
        if self.method == "radius":
            return float(self.parameters["cutoff"])
        if self.method == "knn":
            return float(self.parameters["max_radius"])
        return None


def parse_recipe(text: str) -> Recipe:
    """A recipe from its `--recipe` spelling; RecipeError says what is wrong."""
    spelled = text.strip()
    method, _, argument = spelled.partition(":")
    method = method.strip().lower()
    if method not in METHODS:
        raise RecipeError(f"--recipe {text!r}: unknown method {method!r}; expected {SYNTAX}")
    if method == "radius":
        cutoff = _number(text, argument, "the cutoff R (angstrom)", "radius:5.0")
        _check_range(text, "the cutoff R", cutoff, 0.0, MAX_RADIUS, "angstrom")
        return Recipe(f"radius:{cutoff!r}", "radius", {"cutoff": cutoff})
    if method == "knn":
        k_text, comma, radius_text = argument.partition(",")
        if not k_text.strip().isdigit() or int(k_text) < 1:
            raise RecipeError(
                f"--recipe {text!r}: K must be a whole number of neighbours >= 1, e.g. knn:12"
            )
        k = int(k_text)
        if k > MAX_K:
            raise RecipeError(f"--recipe {text!r}: K = {k} is over the limit of {MAX_K}")
        radius = DEFAULT_KNN_RADIUS
        if comma:
            radius = _number(text, radius_text, "RMAX (angstrom)", "knn:12,8.0")
            _check_range(text, "RMAX", radius, 0.0, MAX_RADIUS, "angstrom")
        parameters = {"k": k, "max_radius": radius, "tie_tolerance": TIE_TOLERANCE}
        return Recipe(f"knn:{k},{radius!r}", "knn", parameters)
    minimum = DEFAULT_MIN_SOLID_ANGLE
    if argument.strip():
        minimum = _number(text, argument, "the minimum solid angle (sr)", "voronoi:0.2")
        _check_range(text, "the minimum solid angle", minimum, 0.0, FULL_SOLID_ANGLE, "sr")
    return Recipe(f"voronoi:{minimum!r}", "voronoi", {"min_solid_angle": minimum})


def _number(text: str, value: str, what: str, example: str) -> float:
    try:
        number = float(value)
    except ValueError:
        shown = f"{value!r} is not a number" if value.strip() else "it is missing"
        raise RecipeError(f"--recipe {text!r}: {what}: {shown}, e.g. {example}") from None
    if not math.isfinite(number):
        raise RecipeError(f"--recipe {text!r}: {what} must be finite, not {value.strip()}")
    return number


def _check_range(text: str, what: str, value: float, low: float, high: float, unit: str) -> None:
    if not low < value <= high:
        raise RecipeError(
            f"--recipe {text!r}: {what} must be over {low:g} and at most {high:g} {unit}, "
            f"not {value:g}"
        )


@dataclass(frozen=True, slots=True)
class GraphArrays:
    """One cell's quotient graph, as stored: edge e joins src[e] to dst[e] in cell images[e]."""

    structure_id: int
    num_nodes: int
    src: np.ndarray  # (E,) int32
    dst: np.ndarray  # (E,) int32
    images: np.ndarray  # (E, 3) int16, lattice vectors
    lengths: np.ndarray  # (E,) float32, angstrom

    @property
    def num_edges(self) -> int:
        """Number of directed edges."""
        return len(self.src)

    def vectors(self, cell: Cell) -> np.ndarray:
        """(E, 3) edge vectors r_dst + image . lattice - r_src in angstrom, from the cell."""
        positions = cell.positions
        return positions[self.dst] + self.images @ cell.lattice - positions[self.src]


def quotient_graph(cell: Cell, recipe: Recipe) -> GraphArrays:
    """The periodic multigraph of one cell under a recipe, edges in canonical order."""
    lattice = np.ascontiguousarray(cell.lattice, dtype=np.float64)
    positions = np.ascontiguousarray(cell.positions, dtype=np.float64)
    n = cell.num_sites
    if not (np.isfinite(lattice).all() and np.isfinite(positions).all()):
        raise GraphError("the lattice or the coordinates are not finite")
    if abs(float(np.linalg.det(lattice))) < 1e-6:
        raise GraphError("the lattice vectors are degenerate (cell volume about 0)")
    if recipe.method == "radius":
        i, j, shifts, d = neighbour_pairs(lattice, positions, recipe.parameters["cutoff"])
    elif recipe.method == "knn":
        i, j, shifts, d = _nearest(lattice, positions, **_knn_arguments(recipe))
    elif recipe.method == "voronoi":
        i, j, shifts, d = _voronoi(lattice, positions, recipe.parameters["min_solid_angle"])
    else:
        raise RecipeError(f"recipe {recipe.name}: unknown method {recipe.method!r}")
    return _canonical(cell.structure_id, n, i, j, shifts, d)


def quotient_graphs(cells: Sequence[Cell], recipe: Recipe) -> list[GraphArrays | str]:
    """A batch, for a worker: each cell's graph, or the reason it has none (never raises)."""
    out: list[GraphArrays | str] = []
    for cell in cells:
        try:
            out.append(quotient_graph(cell, recipe))
        except Exception as exc:  # one bad cell must not cost its batch
            out.append(f"structure {cell.structure_id}: {type(exc).__name__}: {exc}")
    return out


def neighbour_pairs(
    lattice: np.ndarray, positions: np.ndarray, cutoff: float, centres: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (i, j, shift, distance) with distance < cutoff, (i, i, 0) excluded.

    `centres` restricts i to those site indices (returned as site indices); the vector of a
    pair is positions[j] + shift . lattice - positions[i].
    """
    from pymatgen.optimization.neighbors import find_points_in_spheres

    centre_index = np.arange(len(positions)) if centres is None else np.asarray(centres)
    pbc = np.ones(3, dtype=np.int64)
    i, j, shifts, d = find_points_in_spheres(
        positions,
        np.ascontiguousarray(positions[centre_index]),
        float(cutoff),
        pbc,
        lattice,
        tol=1e-8,
    )
    i = centre_index[i]
    shifts = np.rint(shifts).astype(np.int64)
    keep = (d < cutoff) & ((i != j) | shifts.any(axis=1))
    return i[keep], j[keep].astype(np.int64), shifts[keep], d[keep]


def _knn_arguments(recipe: Recipe) -> dict[str, Any]:
    p = recipe.parameters
    return {
        "k": int(p["k"]),
        "max_radius": float(p["max_radius"]),
        "tol": float(p["tie_tolerance"]),
    }


def _nearest(
    lattice: np.ndarray, positions: np.ndarray, k: int, max_radius: float, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The k nearest neighbours of every site within max_radius, ties kept (module docstring).

    The search starts at a radius expected to hold about 3k neighbours at the cell's mean
    density; sites whose k-th neighbour (plus the tie tolerance) is not safely inside it are
    searched again at max_radius, so the result is the same as one search at max_radius.
    """
    n = len(positions)
    volume = abs(float(np.linalg.det(lattice)))
    first = (3 * 3 * k * volume / (4 * math.pi * n)) ** (1 / 3)
    if first >= 0.8 * max_radius:
        return _select_nearest(n, *neighbour_pairs(lattice, positions, max_radius), k, tol)
    pairs = neighbour_pairs(lattice, positions, first)
    kept, threshold = _select_nearest_with_threshold(n, *pairs, k, tol)
    unsure = np.flatnonzero(~(threshold < first))  # k-th missing, or its ties may lie beyond
    if unsure.size == 0:
        return kept
    sure = ~np.isin(kept[0], unsure)
    again = _select_nearest(n, *neighbour_pairs(lattice, positions, max_radius, unsure), k, tol)
    return tuple(  # type: ignore[return-value]
        np.concatenate([a[sure], b]) for a, b in zip(kept, again, strict=True)
    )


def _select_nearest(
    n: int, i: np.ndarray, j: np.ndarray, s: np.ndarray, d: np.ndarray, k: int, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return _select_nearest_with_threshold(n, i, j, s, d, k, tol)[0]


def _select_nearest_with_threshold(
    n: int, i: np.ndarray, j: np.ndarray, s: np.ndarray, d: np.ndarray, k: int, tol: float
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """Pairs within d_k + tol of their site, and each site's threshold (inf: fewer than k)."""
    span = math.ceil(float(d.max())) + 1.0 if d.size else 1.0
    order = np.argsort(i * span + d)  # by site, then distance: 10x faster than lexsort
    counts = np.bincount(i, minlength=n)
    starts = np.cumsum(counts) - counts
    threshold = np.full(n, np.inf)
    full = counts >= k
    threshold[full] = d[order][starts[full] + k - 1] + tol
    keep = d <= threshold[i]
    return (i[keep], j[keep], s[keep], d[keep]), threshold


def _voronoi(
    lattice: np.ndarray, positions: np.ndarray, min_solid_angle: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Voronoi neighbours whose shared facet subtends at least min_solid_angle (sr)."""
    i, j, s, d, angles = voronoi_facets(lattice, positions)
    wanted = angles >= min_solid_angle
    return i[wanted], j[wanted], s[wanted], d[wanted]


def voronoi_facets(
    lattice: np.ndarray, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every facet of every site's Voronoi cell: (i, j, shift, distance, solid angle in sr).

    Facets of zero area (degenerate vertices of symmetric cells) come with a solid angle of
    about zero; the recipe's threshold drops them.
    """
    from scipy.spatial import Voronoi

    n = len(positions)
    volume = abs(float(np.linalg.det(lattice)))
    reach = np.full(n, max(4.0, 4.0 * (3 * volume / (4 * math.pi * n)) ** (1 / 3)))
    while True:
        points, site, image = _images_within(lattice, positions, reach)
        tessellation = Voronoi(points)
        needed = _reach_needed(tessellation, n)
        short = needed > reach
        if not short.any():
            break
        if (reach[short] >= MAX_VORONOI_REACH).any():
            raise GraphError(
                f"a Voronoi cell is still open or reaches beyond {MAX_VORONOI_REACH / 2:g} "
                f"angstrom with every image within {MAX_VORONOI_REACH:g} angstrom"
            )
        # More points only shrink a cell, so twice its farthest vertex found with fewer points
        # is always enough; doubling first keeps a pore's first, loose estimate from costing
        # a tessellation of tens of thousands of images.
        reach[short] = np.minimum(
            MAX_VORONOI_REACH, np.minimum(2.0 * reach[short], 1.01 * needed[short])
        )
    ridges = np.asarray(tessellation.ridge_points, dtype=np.int64)
    central = np.flatnonzero((ridges[:, 0] < n) | (ridges[:, 1] < n))
    ridges = ridges[central]
    facet_angles = _facet_solid_angles(tessellation, points, ridges, central)
    p, q = ridges[:, 0], ridges[:, 1]
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    shifts: list[np.ndarray] = []
    angles: list[np.ndarray] = []
    for a, b in ((p, q), (q, p)):  # a facet is an edge from each of its central sites
        mine = a < n
        src.append(a[mine])
        dst.append(site[b[mine]])
        shifts.append(image[b[mine]] - image[a[mine]])
        angles.append(facet_angles[mine])
    i, j = np.concatenate(src), np.concatenate(dst)
    s = np.concatenate(shifts)
    d = np.linalg.norm(positions[j] + s @ lattice - positions[i], axis=1)
    return i, j, s, d, np.concatenate(angles)


def _images_within(
    lattice: np.ndarray, positions: np.ndarray, reach: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cell's sites (first, image 0) and every other image within reach[i] of a site i."""
    n = len(positions)
    base = float(reach.min())
    _, j, shifts, _ = neighbour_pairs(lattice, positions, base)
    farther = np.flatnonzero(reach > base)
    if farther.size:  # the few sites whose cells reach into a pore look farther
        i2, j2, shifts2, d2 = neighbour_pairs(lattice, positions, float(reach.max()), farther)
        wanted = d2 < reach[i2]
        j = np.concatenate([j, j2[wanted]])
        shifts = np.concatenate([shifts, shifts2[wanted]])
    outside = shifts.any(axis=1)
    j, shifts = j[outside], shifts[outside]
    _, first = np.unique(_order_key(np.zeros_like(j), j, shifts, n), return_index=True)
    site = np.concatenate([np.arange(n), j[first]])
    image = np.concatenate([np.zeros((n, 3), dtype=np.int64), shifts[first]])
    points = positions[site] + image @ lattice
    return points, site, image


def _reach_needed(tessellation: Any, n: int) -> np.ndarray:
    """For each central site, twice its cell's farthest vertex (inf if the cell is open)."""
    needed = np.full(n, np.inf)
    for p in range(n):
        region = tessellation.regions[tessellation.point_region[p]]
        if region and -1 not in region:
            offsets = tessellation.vertices[region] - tessellation.points[p]
            needed[p] = 2.0 * float(np.sqrt((offsets**2).sum(axis=1).max()))
    return needed


def _facet_solid_angles(
    tessellation: Any, points: np.ndarray, ridges: np.ndarray, chosen: np.ndarray
) -> np.ndarray:
    """Solid angle (sr) of each facet seen from its first point.

    Each facet is convex and planar: its vertices are ordered by angle about their centroid
    and the facet is cut into triangles (centroid, v_k, v_k+1), whose solid angles (Van
    Oosterom and Strackee's formula) add up.
    """
    vertex_lists = [tessellation.ridge_vertices[r] for r in chosen.tolist()]
    sizes = np.array([len(v) for v in vertex_lists], dtype=np.int64)
    if sizes.size == 0:
        return np.zeros(0)
    facet = np.repeat(np.arange(len(vertex_lists)), sizes)
    corners = tessellation.vertices[np.concatenate(vertex_lists).astype(np.int64)]
    centroid = np.zeros((len(vertex_lists), 3))
    np.add.at(centroid, facet, corners)
    centroid /= sizes[:, None]
    normal = points[ridges[:, 1]] - points[ridges[:, 0]]
    normal /= np.linalg.norm(normal, axis=1)[:, None]
    first = corners[np.cumsum(sizes) - sizes] - centroid
    u = first / np.maximum(np.linalg.norm(first, axis=1), 1e-300)[:, None]
    w = np.cross(normal, u)
    rel = corners - centroid[facet]
    angle = np.arctan2((rel * w[facet]).sum(axis=1), (rel * u[facet]).sum(axis=1))
    order = np.lexsort((angle, facet))
    corners, facet = corners[order], facet[order]
    starts = np.cumsum(sizes) - sizes
    following = np.arange(len(facet)) + 1
    last = np.cumsum(sizes) - 1
    following[last] = starts
    apex = points[ridges[:, 0]]
    a = centroid[facet] - apex[facet]
    b = corners - apex[facet]
    c = corners[following] - apex[facet]
    la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
    numerator = np.abs((a * np.cross(b, c)).sum(axis=1))
    denominator = (
        la * lb * lc
        + (a * b).sum(axis=1) * lc
        + (a * c).sum(axis=1) * lb
        + (b * c).sum(axis=1) * la
    )
    triangles = 2.0 * np.arctan2(numerator, denominator)
    return np.bincount(facet, weights=triangles, minlength=len(vertex_lists))


def _canonical(
    structure_id: int, n: int, i: np.ndarray, j: np.ndarray, shifts: np.ndarray, d: np.ndarray
) -> GraphArrays:
    """Edges sorted by (i, j, n1, n2, n3), in the stored dtypes."""
    shifts = np.asarray(shifts, dtype=np.int64).reshape(-1, 3)
    order = np.argsort(_order_key(i, j, shifts, n))  # keys are unique: no need for stable
    return GraphArrays(
        structure_id=structure_id,
        num_nodes=n,
        src=np.take(i, order).astype(np.int32),
        dst=np.take(j, order).astype(np.int32),
        images=np.take(shifts.astype(np.int16), order, axis=0),
        lengths=np.take(d, order).astype(np.float32),
    )


def _order_key(i: np.ndarray, j: np.ndarray, shifts: np.ndarray, n: int) -> np.ndarray:
    """One int64 per edge that sorts like (i, j, n1, n2, n3): one argsort, not five."""
    span = int(np.abs(shifts).max()) if shifts.size else 0
    base = 2 * span + 1
    if span > np.iinfo(np.int16).max or float(n) * n * base**3 >= 2.0**62:
        raise GraphError(f"image offsets up to {span} cells: the cell is too thin for the recipe")
    key = np.asarray(i, dtype=np.int64) * n + j
    for column in range(3):
        key = key * base + (shifts[:, column] + span)
    return key
