"""Neighbour lists for quotient graphs: vesin, matscipy and pymatgen on the same real cells.

Why: `crystaldb graphs build` spends nearly all its compute in one periodic neighbour list
per structure (radius:5.0 for SchNet; knn:12 for CGCNN searches up to 8 angstrom), so the
library was picked by this measurement, and crystaldb's own cost on top of it is shown.

Cells: the structures of ../shared/data that crystaldb's ingestion accepts (the valid COD
CIFs, the first --cofs CURATED-COFs frameworks, the valid OMDB-style molecular crystals),
read and validated once; positions are Cartesian, every library gets the same arrays.

Methods, each returning every ordered pair (i, j, image shift S, distance d) with
d < cutoff, self-pairs to a site's own images included, the pair (i, i, 0) excluded:
  vesin      vesin.NeighborList(full_list=True, n_threads=1).compute(..., "ijSd")
  matscipy   matscipy.neighbours.neighbour_list("ijSd", ...)
  pymatgen   pymatgen.optimization.neighbors.find_points_in_spheres (the (i, i, 0) row dropped)
All three must give the same pairs (same (i, j, S) set, distances within 1e-9 angstrom);
the script stops if they do not. One thread everywhere (the Dask workers run one each).
Rounds are interleaved and the best of --repeat is kept, so the three see the same load.

Then crystaldb's `quotient_graph` per recipe (library call + selection + canonical sort),
against the bare library call at the same cutoff.

Usage: python bench/graphs.py [--cofs 80] [--repeat 3] [--cutoffs 5.0,8.0]
                             [--recipes "radius:5.0;knn:12;knn:24;voronoi"]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import vesin
from matscipy.neighbours import neighbour_list
from pymatgen.optimization.neighbors import find_points_in_spheres

from crystaldb.core.cell import Cell
from crystaldb.core.graphs import parse_recipe, quotient_graph
from crystaldb.core.records import StructureRecord
from crystaldb.formats.payload import process_file

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SEGFAULTS_SPGLIB = "1001614.cif"
Pairs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
Method = Callable[[np.ndarray, np.ndarray, float], Pairs]


def with_vesin(lattice: np.ndarray, positions: np.ndarray, cutoff: float) -> Pairs:
    """vesin's cell list, one thread."""
    calculator = vesin.NeighborList(cutoff=cutoff, full_list=True, n_threads=1)
    i, j, s, d = calculator.compute(positions, lattice, True, "ijSd")
    return i, j, s, d


def with_matscipy(lattice: np.ndarray, positions: np.ndarray, cutoff: float) -> Pairs:
    """matscipy's C neighbour list (ASE conventions)."""
    i, j, s, d = neighbour_list(
        "ijSd", positions=positions, cell=lattice, pbc=[True] * 3, cutoff=cutoff
    )
    return i, j, s, d


def with_pymatgen(lattice: np.ndarray, positions: np.ndarray, cutoff: float) -> Pairs:
    """pymatgen's Cython find_points_in_spheres; it reports each site as its own neighbour."""
    pbc = np.ones(3, dtype=np.int64)
    i, j, s, d = find_points_in_spheres(positions, positions, cutoff, pbc, lattice, tol=1e-8)
    keep = (i != j) | np.any(s != 0, axis=1)
    return i[keep], j[keep], s[keep], d[keep]


METHODS: dict[str, Method] = {
    "vesin": with_vesin,
    "matscipy": with_matscipy,
    "pymatgen": with_pymatgen,
}


def real_cells(n_cofs: int) -> list[Cell]:
    """Validated real cells: COD, the first n_cofs COFs, the molecular crystals."""
    paths = [p for p in sorted((DATA / "cod").glob("*.cif")) if p.name != SEGFAULTS_SPGLIB]
    paths += sorted((DATA / "cofs" / "cifs").glob("*.cif"))[:n_cofs]
    paths += [DATA / "molecular-crystals" / "molecular_crystals.xyz"]
    cells: list[Cell] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths:
            for record in process_file(path):
                if isinstance(record, StructureRecord):
                    cells.append(
                        Cell(
                            structure_id=len(cells),
                            lattice=np.array(record.lattice, dtype=np.float64).reshape(3, 3),
                            frac_coords=np.array(record.frac_coords, dtype=np.float64),
                            atomic_numbers=np.array(record.atomic_numbers, dtype=np.int64),
                        )
                    )
    return cells


def canonical(pairs: Pairs) -> Pairs:
    """Pairs sorted by (i, j, S) with plain dtypes, for comparing libraries."""
    i, j, s, d = (np.asarray(a) for a in pairs)
    order = np.lexsort((s[:, 2], s[:, 1], s[:, 0], j, i))
    return i[order].astype(np.int64), j[order].astype(np.int64), s[order].astype(np.int64), d[order]


def check_same(cells: list[Cell], cutoff: float) -> int:
    """Every library gives the same pairs on every cell; the number of pairs."""
    total = 0
    for cell in cells:
        lattice, positions = np.ascontiguousarray(cell.lattice), cell.positions
        results = {
            name: canonical(method(lattice, positions, cutoff)) for name, method in METHODS.items()
        }
        first = results["vesin"]
        vectors = positions[first[1]] + first[2] @ lattice - positions[first[0]]
        assert np.allclose(np.linalg.norm(vectors, axis=1), first[3], atol=1e-9)
        for name, other in results.items():
            same = len(other[0]) == len(first[0]) and all(
                np.array_equal(a, b) for a, b in zip(first[:3], other[:3], strict=True)
            )
            if not same or not np.allclose(first[3], other[3], rtol=0, atol=1e-9):
                raise SystemExit(f"{name} disagrees with vesin on cell {cell.structure_id}")
        total += len(first[0])
    return total


def time_calls(call: Callable[[Cell], object], cells: list[Cell]) -> float:
    """Seconds for one pass over the cells."""
    start = time.perf_counter()
    for cell in cells:
        call(cell)
    return time.perf_counter() - start


def library_call(method: Method, cutoff: float) -> Callable[[Cell], object]:
    return lambda cell: method(np.ascontiguousarray(cell.lattice), cell.positions, cutoff)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cofs", type=int, default=80)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cutoffs", default="5.0,8.0")
    parser.add_argument(
        "--recipes",
        default="radius:5.0;knn:12;knn:24;voronoi",
        help="';'-separated; empty: the libraries only",
    )
    args = parser.parse_args()
    cutoffs = [float(c) for c in args.cutoffs.split(",")]
    recipes = [r for r in args.recipes.split(";") if r]

    cells = real_cells(args.cofs)
    sites = np.array([c.num_sites for c in cells])
    print(
        f"{datetime.date.today()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        + ", ".join(f"{p} {metadata.version(p)}" for p in ("vesin", "matscipy", "pymatgen"))
    )
    print(
        f"{len(cells)} real cells, {sites.sum():,} sites (mean {sites.mean():.0f}, "
        f"max {sites.max()})"
    )

    print("\n| cutoff | library | cells/s | edges/s | x pymatgen |")
    print("|---:|---|---:|---:|---:|")
    for cutoff in cutoffs:
        edges = check_same(cells, cutoff)
        best = {name: np.inf for name in METHODS}
        for _ in range(args.repeat):
            for name, method in METHODS.items():
                best[name] = min(best[name], time_calls(library_call(method, cutoff), cells))
        for name, seconds in best.items():
            print(
                f"| {cutoff:g} Å | {name} | {len(cells) / seconds:,.0f} | "
                f"{edges / seconds / 1e6:.2f} M | {best['pymatgen'] / seconds:.2f} |"
            )

    if not recipes:
        return
    print("\n| recipe | edges | cells/s | bare call at the same cutoff | x bare |")
    print("|---|---:|---:|---:|---:|")
    for text in recipes:
        recipe = parse_recipe(text)
        graphs = [quotient_graph(cell, recipe) for cell in cells]
        edges = sum(g.num_edges for g in graphs)
        cutoff = recipe.search_radius
        bare_call = library_call(METHODS[recipe.library], cutoff) if cutoff else None
        ours, bare = np.inf, np.inf
        for _ in range(args.repeat):
            ours = min(ours, time_calls(lambda cell, r=recipe: quotient_graph(cell, r), cells))
            if bare_call is not None:
                bare = min(bare, time_calls(bare_call, cells))
        bare_text = f"{len(cells) / bare:,.0f} ({recipe.library}, {cutoff:g} Å)" if cutoff else "-"
        ratio = f"{ours / bare:.2f}" if cutoff else "-"
        print(f"| {recipe.name} | {edges:,} | {len(cells) / ours:,.0f} | {bare_text} | {ratio} |")


if __name__ == "__main__":
    main()
