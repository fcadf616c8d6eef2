"""Quotient graphs: the science on textbook and real cells, then the build on PostgreSQL + Dask.

Textbook cells (fcc Cu, rock salt) have known neighbour shells; real cells from the package
sample (a pyrochlore full of exact ties, an organic crystal full of hydrogens) check that the
edge multiset does not depend on how the cell is written down.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pymatgen.analysis.local_env import VoronoiNN
from pymatgen.core import Lattice, Structure
from sqlalchemy import func, select

from crystaldb.core.cell import Cell
from crystaldb.core.graphs import (
    TIE_TOLERANCE,
    GraphArrays,
    RecipeError,
    neighbour_pairs,
    parse_recipe,
    quotient_graph,
    quotient_graphs,
    voronoi_facets,
)
from crystaldb.core.records import StructureRecord
from crystaldb.formats.payload import process_file
from crystaldb.jobs.graphs import GraphsMissing, build_graphs, load_graphs
from crystaldb.jobs.load import write_chunk
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.query.selection import load_cells, select_structures
from crystaldb.schema import GraphRecipe, QuotientGraph, Run
from tests.conftest import DatabaseFactory, run_cli
from tests.sampledb import open_batch

SAMPLE_COD = Path(__file__).resolve().parents[2] / "crystaldb" / "data" / "sample" / "cod"
PYROCHLORE = "2002248.cif"  # La2Zr2O7, Fd-3m, 88 sites: many exactly tied distances
ORGANIC = "2000642.cif"  # C10H7O, P-1, 36 sites
A_CU = 3.615  # angstrom, fcc copper
A_NACL = 5.64  # angstrom, rock salt

# 8 small-to-medium real structures for the database tests (4 to 88 sites).
DB_FILES = [
    "1009031.cif",
    "1200017.cif",
    "1000054.cif",
    "2019541.cif",
    "1010246.cif",
    "2000583.cif",
    ORGANIC,
    PYROCHLORE,
]


# --- cells --------------------------------------------------------------------------------


def copper() -> Cell:
    """fcc Cu, primitive cell: one site."""
    half = A_CU / 2
    lattice = np.array([[0.0, half, half], [half, 0.0, half], [half, half, 0.0]])
    return Cell(1, lattice, np.zeros((1, 3)), np.array([29]))


def rock_salt(primitive: bool) -> Cell:
    """NaCl: the 2-site primitive cell or the 8-site conventional cube."""
    if primitive:
        half = A_NACL / 2
        lattice = np.array([[0.0, half, half], [half, 0.0, half], [half, half, 0.0]])
        return Cell(2, lattice, np.array([[0, 0, 0], [0.5, 0.5, 0.5]]), np.array([11, 17]))
    fcc = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    frac = np.vstack([fcc, (fcc + np.array([0.5, 0.0, 0.0])) % 1.0])
    return Cell(3, np.eye(3) * A_NACL, frac, np.array([11] * 4 + [17] * 4))


def real_cell(name: str) -> Cell:
    """A structure of the package sample as crystaldb's ingestion stores it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record = next(r for r in process_file(SAMPLE_COD / name) if isinstance(r, StructureRecord))
    return Cell(
        0,
        np.asarray(record.lattice, dtype=np.float64).reshape(3, 3),
        np.asarray(record.frac_coords, dtype=np.float64),
        np.asarray(record.atomic_numbers),
    )


@pytest.fixture(scope="module")
def pyrochlore() -> Cell:
    return real_cell(PYROCHLORE)


@pytest.fixture(scope="module")
def organic() -> Cell:
    return real_cell(ORGANIC)


def rewritten(
    cell: Cell, seed: int, shift: bool = True, change_cell: bool = True
) -> tuple[Cell, np.ndarray, np.ndarray, np.ndarray]:
    """The same crystal written differently: sites permuted, origin shifted, another cell.

    Returns the new cell, `perm` (new site i is old site perm[i]), `t` (the lattice
    translation, in new cell vectors, that wrapped each new site into the cell) and `m`
    (new lattice = m . old lattice). New edge (i, j, n) is old edge
    (perm[i], perm[j], (n + t[j] - t[i]) . m).
    """
    rng = np.random.default_rng(seed)
    m = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 1]]) if change_cell else np.eye(3, dtype=int)
    lattice = m @ cell.lattice
    perm = rng.permutation(cell.num_sites)
    origin = rng.uniform(-3, 3, 3) if shift else np.zeros(3)
    raw = (cell.positions[perm] + origin) @ np.linalg.inv(lattice)
    t = -np.floor(raw).astype(np.int64)
    new = Cell(9, lattice, raw + t, cell.atomic_numbers[perm])
    return new, perm, t, m


def edge_multiset(graph: GraphArrays) -> list[tuple[int, int, int, int, int, float]]:
    return sorted(
        (int(i), int(j), *map(int, n), float(d))
        for i, j, n, d in zip(graph.src, graph.dst, graph.images, graph.lengths, strict=True)
    )


def relabelled(
    graph: GraphArrays, perm: np.ndarray, t: np.ndarray, m: np.ndarray
) -> list[tuple[int, int, int, int, int, float]]:
    """A rewritten cell's edges in the original cell's labels and offsets."""
    src, dst = graph.src.astype(np.int64), graph.dst.astype(np.int64)
    images = (graph.images.astype(np.int64) + t[dst] - t[src]) @ m
    return sorted(
        (int(perm[i]), int(perm[j]), *map(int, n), float(d))
        for i, j, n, d in zip(src, dst, images, graph.lengths, strict=True)
    )


def assert_same_edges(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    assert [e[:5] for e in a] == [e[:5] for e in b]
    np.testing.assert_allclose([e[5] for e in a], [e[5] for e in b], rtol=0, atol=1e-5)


# --- recipes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "method", "parameters"),
    [
        ("radius:5", "radius:5.0", "radius", {"cutoff": 5.0}),
        (" RADIUS:5.0 ", "radius:5.0", "radius", {"cutoff": 5.0}),
        ("knn:12", "knn:12,8.0", "knn", {"k": 12, "max_radius": 8.0, "tie_tolerance": 0.001}),
        ("knn:24,6", "knn:24,6.0", "knn", {"k": 24, "max_radius": 6.0, "tie_tolerance": 0.001}),
        ("voronoi", "voronoi:0.2", "voronoi", {"min_solid_angle": 0.2}),
        ("voronoi:0.5", "voronoi:0.5", "voronoi", {"min_solid_angle": 0.5}),
    ],
)
def test_recipes_have_one_canonical_name(
    text: str, name: str, method: str, parameters: dict[str, float]
) -> None:
    recipe = parse_recipe(text)
    assert (recipe.name, recipe.method, recipe.parameters) == (name, method, parameters)
    assert parse_recipe(recipe.name) == recipe


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "unknown method ''"),
        ("cutoff:5", "unknown method 'cutoff'"),
        ("radius", "the cutoff R (angstrom): it is missing"),
        ("radius:five", "'five' is not a number"),
        ("radius:0", "must be over 0"),
        ("radius:-1", "must be over 0"),
        ("radius:25", "at most 20 angstrom"),
        ("radius:nan", "must be finite"),
        ("knn", "K must be a whole number"),
        ("knn:0", "K must be a whole number"),
        ("knn:2.5", "K must be a whole number"),
        ("knn:1000", "over the limit of 256"),
        ("knn:12,far", "RMAX (angstrom): 'far' is not a number"),
        ("knn:12,", "RMAX (angstrom): it is missing"),
        ("voronoi:13", "at most 12.5664 sr"),
        ("voronoi:x", "'x' is not a number"),
    ],
)
def test_bad_recipes_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(RecipeError) as caught:
        parse_recipe(text)
    assert str(caught.value).startswith(f"--recipe {text!r}: ")
    assert says in str(caught.value)


# --- textbook cells -----------------------------------------------------------------------


def test_fcc_copper_has_twelve_self_image_edges() -> None:
    nearest = A_CU / math.sqrt(2)
    graph = quotient_graph(copper(), parse_recipe(f"radius:{nearest + 0.01}"))
    assert graph.num_nodes == 1 and graph.num_edges == 12
    assert not graph.src.any() and not graph.dst.any()  # all self-loops to images of site 0
    np.testing.assert_allclose(graph.lengths, nearest, rtol=1e-6)
    expected = {(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, -1, 0), (1, 0, -1), (0, 1, -1)}
    expected |= {(-a, -b, -c) for a, b, c in expected}
    assert {tuple(map(int, n)) for n in graph.images} == expected
    np.testing.assert_allclose(np.linalg.norm(graph.vectors(copper()), axis=1), nearest)
    below = quotient_graph(copper(), parse_recipe(f"radius:{nearest - 0.01}"))
    assert below.num_edges == 0 and below.num_nodes == 1


def test_rock_salt_primitive_is_a_multigraph_of_six_images() -> None:
    cell = rock_salt(primitive=True)
    graph = quotient_graph(cell, parse_recipe("radius:2.9"))
    assert graph.num_edges == 12  # 6 Na-Cl bonds from each site, each to another image
    assert set(zip(graph.src.tolist(), graph.dst.tolist(), strict=True)) == {(0, 1), (1, 0)}
    assert len({tuple(n) for n in graph.images[graph.src == 0].tolist()}) == 6
    np.testing.assert_allclose(graph.lengths, A_NACL / 2, rtol=1e-6)
    # Symmetric: (i, j, n) and (j, i, -n).
    forward = {
        (i, j, *n)
        for i, j, n in zip(
            graph.src.tolist(), graph.dst.tolist(), graph.images.tolist(), strict=True
        )
    }
    assert forward == {(j, i, *(-x for x in n)) for i, j, *n in forward}


def test_rock_salt_conventional_cell_shells() -> None:
    cell = rock_salt(primitive=False)
    first = quotient_graph(cell, parse_recipe("radius:2.9"))
    assert np.bincount(first.src).tolist() == [6] * 8
    species = cell.atomic_numbers
    assert (species[first.src] != species[first.dst]).all()  # only Na-Cl
    second = quotient_graph(cell, parse_recipe("radius:4.0"))  # + 12 like ions at a/sqrt(2)
    assert np.bincount(second.src).tolist() == [18] * 8
    like = species[second.src] == species[second.dst]
    np.testing.assert_allclose(second.lengths[like], A_NACL / math.sqrt(2), rtol=1e-6)
    assert like.sum() == 12 * 8


def test_edges_come_sorted_and_match_their_vectors(organic: Cell) -> None:
    graph = quotient_graph(organic, parse_recipe("radius:5.0"))
    keys = np.column_stack([graph.src, graph.dst, graph.images]).tolist()
    assert keys == sorted(keys) and len({tuple(k) for k in keys}) == len(keys)
    assert (graph.src.dtype, graph.images.dtype, graph.lengths.dtype) == (
        np.int32,
        np.int16,
        np.float32,
    )
    np.testing.assert_allclose(
        np.linalg.norm(graph.vectors(organic), axis=1), graph.lengths, rtol=1e-6
    )
    assert graph.lengths.max() < 5.0
    assert graph.num_nodes == organic.num_sites == len(np.unique(graph.src))


# --- invariance ---------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ["radius:5.0", "knn:12", "knn:7,5.0", "voronoi"])
@pytest.mark.parametrize("name", [PYROCHLORE, ORGANIC])
@pytest.mark.parametrize(
    ("shift", "change_cell"), [(False, False), (True, False), (True, True)], ids=str
)
def test_edges_do_not_depend_on_how_the_cell_is_written(
    name: str, recipe: str, shift: bool, change_cell: bool, pyrochlore: Cell, organic: Cell
) -> None:
    """Site permutation, then origin shift, then an equivalent cell: same edge multiset."""
    cell = pyrochlore if name == PYROCHLORE else organic
    parsed = parse_recipe(recipe)
    before = edge_multiset(quotient_graph(cell, parsed))
    new, perm, t, m = rewritten(cell, seed=len(recipe), shift=shift, change_cell=change_cell)
    after = relabelled(quotient_graph(new, parsed), perm, t, m)
    assert_same_edges(before, after)
    assert len(before) > cell.num_sites


# --- k nearest neighbours -----------------------------------------------------------------


def test_knn_keeps_every_neighbour_tied_with_the_kth() -> None:
    """fcc: the 12 nearest are all tied, so knn:1 .. knn:12 give 12 and knn:13 gives 18."""
    for k, edges in ((1, 12), (5, 12), (12, 12), (13, 18), (18, 18), (19, 42)):
        graph = quotient_graph(copper(), parse_recipe(f"knn:{k}"))
        assert graph.num_edges == edges, k
    salt = quotient_graph(rock_salt(primitive=False), parse_recipe("knn:4"))
    assert np.bincount(salt.src).tolist() == [6] * 8


def test_knn_ties_are_within_the_stated_tolerance() -> None:
    """A tetragonal strain splits fcc's 12 into 4 + 8: tied below the tolerance, not above."""

    def strained(c_over_a: float) -> Cell:
        cell = copper()
        return Cell(1, cell.lattice * [1.0, 1.0, c_over_a], cell.frac_coords, cell.atomic_numbers)

    nearest = A_CU / math.sqrt(2)
    tiny = 1 + 0.2 * TIE_TOLERANCE / nearest  # the 8 longer ones within 0.2 tolerance
    large = 1 + 5 * TIE_TOLERANCE / nearest  # beyond it
    assert quotient_graph(strained(tiny), parse_recipe("knn:1")).num_edges == 12
    split = quotient_graph(strained(large), parse_recipe("knn:1"))
    assert split.num_edges == 4
    assert np.allclose(split.vectors(strained(large))[:, 2], 0.0)  # the four in the xy plane
    assert quotient_graph(strained(large), parse_recipe("knn:5")).num_edges == 12


def test_knn_with_fewer_neighbours_than_k_keeps_all_within_rmax() -> None:
    graph = quotient_graph(copper(), parse_recipe("knn:50,3.0"))
    assert graph.num_edges == 12


def slab_with_a_loner() -> Cell:
    """A dense two-layer slab and one atom 11 angstrom above it: very uneven density."""
    grid = np.array([(x, y) for x in range(5) for y in range(5)]) * 2.0
    layers = [np.column_stack([grid, np.full(25, z)]) for z in (0.0, 2.0)]
    positions = np.vstack([*layers, [[5.0, 5.0, 13.0]]])
    lattice = np.diag([10.0, 10.0, 24.0])
    return Cell(5, lattice, positions @ np.linalg.inv(lattice), np.full(51, 6))


@pytest.mark.parametrize("k", [1, 12, 24])
def test_knn_equals_a_plain_selection_at_the_maximum_radius(
    k: int, pyrochlore: Cell, organic: Cell
) -> None:
    """The two-stage search (small radius, then RMAX where unsure) changes nothing.

    The slab's loner has no neighbour within the first radius, so it takes the second stage.
    """
    cases = [(pyrochlore, 8.0), (organic, 8.0), (rock_salt(primitive=False), 8.0)]
    for cell, rmax in [*cases, (slab_with_a_loner(), 12.0)]:
        recipe = parse_recipe(f"knn:{k},{rmax}")
        i, j, s, d = neighbour_pairs(cell.lattice, cell.positions, rmax)
        expected = []
        for site in range(cell.num_sites):
            mine = np.flatnonzero(i == site)
            kth = np.sort(d[mine])[k - 1] if len(mine) >= k else np.inf
            expected += [(site, j[e], *s[e], d[e]) for e in mine if d[e] <= kth + TIE_TOLERANCE]
        got = edge_multiset(quotient_graph(cell, recipe))
        assert_same_edges(
            sorted((int(a), int(b), *map(int, n), float(x)) for a, b, *n, x in expected), got
        )
        assert len(got) >= k * (cell.num_sites - 1)  # the loner may have fewer than k


# --- Voronoi ------------------------------------------------------------------------------


def test_voronoi_on_textbook_cells() -> None:
    cu = quotient_graph(copper(), parse_recipe("voronoi"))
    assert cu.num_edges == 12  # rhombic dodecahedron: 12 faces of 4 pi / 12 sr each
    np.testing.assert_allclose(cu.lengths, A_CU / math.sqrt(2), rtol=1e-6)
    assert quotient_graph(copper(), parse_recipe("voronoi:1.0")).num_edges == 12
    assert quotient_graph(copper(), parse_recipe("voronoi:1.1")).num_edges == 0
    salt = quotient_graph(rock_salt(primitive=False), parse_recipe("voronoi"))
    assert np.bincount(salt.src).tolist() == [6] * 8  # cubes: 6 faces of 4 pi / 6 sr


def test_voronoi_solid_angles_match_pymatgen_and_close_each_cell(organic: Cell) -> None:
    i, _, _, d, angles = voronoi_facets(organic.lattice, organic.positions)
    np.testing.assert_allclose(np.bincount(i, weights=angles), 4 * math.pi, rtol=1e-9)
    structure = Structure(Lattice(organic.lattice), organic.atomic_numbers, organic.frac_coords)
    polyhedra = VoronoiNN(cutoff=13.0).get_all_voronoi_polyhedra(structure)
    for site, faces in enumerate(polyhedra):
        theirs = sorted(
            (round(2 * f["face_dist"], 5), f["solid_angle"])
            for f in faces.values()
            if f["solid_angle"] > 1e-6
        )
        mine = (i == site) & (angles > 1e-6)
        ours = sorted(zip(np.round(d[mine], 5).tolist(), angles[mine].tolist(), strict=True))
        assert len(ours) == len(theirs)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
    graph = quotient_graph(organic, parse_recipe("voronoi"))
    assert graph.num_edges == int((angles >= 0.2).sum())
    images = map(tuple, graph.images.tolist())
    forward = set(zip(graph.src.tolist(), graph.dst.tolist(), images, strict=True))
    assert forward == {(b, a, tuple(-x for x in n)) for a, b, n in forward}


def test_a_batch_reports_a_bad_cell_instead_of_raising() -> None:
    bad = Cell(7, np.full((3, 3), np.nan), np.zeros((1, 3)), np.array([1]))
    results = quotient_graphs([copper(), bad], parse_recipe("radius:3.0"))
    assert isinstance(results[0], GraphArrays) and results[0].num_edges == 12
    assert isinstance(results[1], str) and results[1].startswith("structure 7: ")


# --- PostgreSQL + Dask --------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(
    databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, Database]]:
    """A fresh database holding 8 real structures of the package sample."""
    settings, db = databases.migrated("crystaldb_graphs", tmp_path_factory.mktemp("graphs"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = [
            r
            for name in DB_FILES
            for r in process_file(SAMPLE_COD / name)
            if isinstance(r, StructureRecord)
        ]
    write_chunk(db, open_batch(db), records)
    yield settings, db
    db.dispose()


def _graph_rows(db: Database, recipe: str) -> int:
    with db.session() as session:
        query = (
            select(func.count())
            .select_from(QuotientGraph)
            .join(GraphRecipe, GraphRecipe.id == QuotientGraph.recipe_id)
            .where(GraphRecipe.name == recipe)
        )
        return int(session.scalar(query) or 0)


@pytest.mark.slow
def test_build_graphs_stores_the_pure_functions_arrays_once(
    loaded: tuple[Settings, Database],
) -> None:
    settings, db = loaded
    everything = select_structures(db)
    assert len(everything.structure_ids) == len(DB_FILES)
    seen: list[int] = []
    summary = build_graphs(
        db,
        settings,
        "knn:12",
        everything,
        workers=1,
        on_progress=lambda s: seen.append(s.done),
    )
    assert (summary.selected, summary.todo, summary.built) == (8, 8, 8)
    assert (summary.already, summary.failed, summary.errors) == (0, 0, [])
    assert seen == [0, 2, 4, 6, 8]  # a small job: 2 batches per in-flight slot, 2 slots
    assert _graph_rows(db, "knn:12,8.0") == 8
    ids = list(everything.structure_ids)
    stored = load_graphs(db, "knn:12", ids[::-1])  # any order, the command-line spelling
    assert [g.structure_id for g in stored] == ids[::-1]
    recipe = parse_recipe("knn:12")
    for graph, cell in zip(stored, load_cells(db, ids[::-1]), strict=True):
        fresh = quotient_graph(cell, recipe)
        assert graph.num_nodes == fresh.num_nodes == cell.num_sites
        for name in ("src", "dst", "images", "lengths"):
            np.testing.assert_array_equal(getattr(graph, name), getattr(fresh, name))
            assert getattr(graph, name).dtype == getattr(fresh, name).dtype
    assert summary.edges == sum(g.num_edges for g in stored)

    again = build_graphs(db, settings, "knn:12,8", everything, workers=1)
    assert (again.built, again.already, again.todo, again.edges) == (0, 8, 0, 0)
    assert _graph_rows(db, "knn:12,8.0") == 8
    with db.session() as session:
        runs = session.execute(
            select(Run.id, Run.status, Run.results).where(Run.kind == "graphs")
        ).all()
        recipes = session.execute(select(GraphRecipe.name, GraphRecipe.library)).all()
        run_ids = set(session.scalars(select(QuotientGraph.run_id)))
    assert [status for _, status, _ in runs] == ["succeeded", "succeeded"]
    assert run_ids == {summary.run_id}
    assert runs[0].results["built"] == 8 and runs[1].results["built"] == 0
    assert recipes == [("knn:12,8.0", "pymatgen")]

    with pytest.raises(GraphsMissing, match=r"crystaldb graphs build --recipe radius:5.0"):
        load_graphs(db, "radius:5.0", ids[:2])


@pytest.mark.slow
def test_graphs_build_command(loaded: tuple[Settings, Database]) -> None:
    settings, db = loaded
    assert settings.database_url is not None
    env = {
        "CRYSTALDB_DATABASE_URL": settings.database_url,
        "CRYSTALDB_DATA_DIR": str(settings.data_dir),
    }
    small = "nsites <= 20"
    first = run_cli(
        "graphs", "build", "--recipe", "radius:5", "--where", small, "--workers", "1", env=env
    )
    assert first.returncode == 0, first.stderr
    last = first.stdout.strip().splitlines()[-1]
    assert last.startswith("recipe radius:5.0 (run "), first.stdout
    assert "6 structures selected, 6 graphs built (" in last and "0 already built, 0 failed" in last
    assert _graph_rows(db, "radius:5.0") == 6
    bad = run_cli("graphs", "build", "--recipe", "radius:abc", env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: --recipe 'radius:abc': the cutoff R (angstrom): 'abc' is not a number, e.g. "
        "radius:5.0"
    ]
