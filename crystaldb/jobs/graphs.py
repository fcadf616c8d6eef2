"""Quotient graphs for a selection of structures, built on Dask workers and kept in PostgreSQL.

`build_graphs` is what `crystaldb graphs build` runs: one `runs` row (kind "graphs") for
the whole job; the recipe's `graph_recipes` row is created on first use; the structures of
the selection that have no graph for the recipe yet are read in batches (`load_cells`),
computed on the workers (`quotient_graphs`, pure), and each finished batch is written by the
client in one transaction with a binary COPY. At most two batches per worker are in
flight, so memory stays flat whatever the selection's size. Re-running computes nothing for
structures that have their graph: an interrupted build resumes where it stopped, and two
builds of one recipe at once never write a graph twice (the writes take a per-recipe lock
and skip what the other wrote). A cell the science refuses (a Voronoi cell that never
closes) is counted as failed with its reason and stays without a graph; a batch whose worker
dies is split until the one structure that kills workers is isolated.

`load_graphs` reads stored graphs back in one query, arrays straight into NumPy, for the
models (SchNet, CGCNN).
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from psycopg.types.json import Jsonb
from sqlalchemy import ARRAY, BigInteger, any_, cast, select, text

from crystaldb.core.errors import CrystaldbError
from crystaldb.core.graphs import GraphArrays, Recipe, parse_recipe, quotient_graphs
from crystaldb.jobs.runner import Crashed, noting_lost_workers, run_window, window_for
from crystaldb.platform.arrays import numpy_rows
from crystaldb.platform.cluster import dask_client
from crystaldb.platform.database import Database, copy_connection
from crystaldb.platform.settings import Settings
from crystaldb.query.selection import Selection, batches, load_cells
from crystaldb.schema import GraphRecipe, QuotientGraph
from crystaldb.schema.runs import track_run

if TYPE_CHECKING:
    from distributed import Client, Future

log = logging.getLogger(__name__)

GRAPHS_LOCK = 0x67726170  # advisory lock class for graph writes ("grap"), one key per recipe
DEFAULT_BATCH_SIZE = 64
MAX_ERRORS_KEPT = 20  # failure messages kept in the run record


class GraphsMissing(CrystaldbError):
    """Graphs were asked for that have not been built (or the recipe is unknown)."""


class RecipeConflict(CrystaldbError):
    """The stored recipe of that name was built with other parameters than this code uses."""


@dataclass
class GraphBuildSummary:
    """What a graph build did, for the progress bar, the run record and the final line."""

    run_id: int
    recipe: str
    recipe_id: int = 0
    selected: int = 0  # structures in the selection
    already: int = 0  # had a graph for the recipe before this run
    todo: int = 0  # to compute in this run
    built: int = 0
    failed: int = 0
    edges: int = 0
    errors: list[str] = field(default_factory=list)  # the first MAX_ERRORS_KEPT reasons

    @property
    def done(self) -> int:
        """Structures of this run finished either way."""
        return self.built + self.failed

    def as_dict(self) -> dict[str, Any]:
        """Flat values for the run record."""
        return {
            "recipe_id": self.recipe_id,
            "selected": self.selected,
            "already": self.already,
            "built": self.built,
            "failed": self.failed,
            "edges": self.edges,
            "errors": self.errors,
        }


Progress = Callable[[GraphBuildSummary], None]


def build_graphs(
    db: Database,
    settings: Settings,
    recipe: Recipe | str,
    selection: Selection,
    workers: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Progress | None = None,
) -> GraphBuildSummary:
    """Compute and store the recipe's graph of every selected structure that has none.

    `on_progress` is called once when the work is known (`todo` set) and after each batch.
    """
    if isinstance(recipe, str):
        recipe = parse_recipe(recipe)
    parameters = {
        "recipe": recipe.name,
        "method": recipe.method,
        "recipe_parameters": recipe.parameters,
        "library": recipe.library_version,
        "selection": selection.description,
        "release_id": selection.release_id,
        "batch_size": batch_size,
    }
    with track_run(db, "graphs", parameters) as run:
        summary = GraphBuildSummary(run_id=run.id, recipe=recipe.name)
        try:
            summary.recipe_id = ensure_recipe(db, recipe)
            todo = _without_graph(db, summary.recipe_id, selection.structure_ids)
            summary.selected = len(set(selection.structure_ids))
            summary.todo = len(todo)
            summary.already = summary.selected - summary.todo
            if on_progress is not None:
                on_progress(summary)
            if todo:
                with dask_client(settings, n_workers=workers) as client:
                    _drive(db, client, recipe, todo, batch_size, summary, on_progress)
        finally:
            run.results.update(summary.as_dict())
    return summary


def ensure_recipe(db: Database, recipe: Recipe) -> int:
    """The recipe's id, creating its row on first use; refuses a same-named other recipe."""
    with db.session() as session:
        session.execute(
            text(
                "INSERT INTO graph_recipes (name, method, parameters, library, library_version)"
                " VALUES (:name, :method, :parameters, :library, :version)"
                " ON CONFLICT (name) DO NOTHING"
            ),
            {
                "name": recipe.name,
                "method": recipe.method,
                "parameters": Jsonb(recipe.parameters),
                "library": recipe.library,
                "version": recipe.library_version,
            },
        )
        row = session.execute(
            select(GraphRecipe.id, GraphRecipe.parameters).where(GraphRecipe.name == recipe.name)
        ).one()
    if row.parameters != recipe.parameters:
        raise RecipeConflict(
            f"recipe {recipe.name} is stored with parameters {row.parameters}, but this "
            f"crystaldb computes it with {recipe.parameters}; its graphs would mix two rules"
        )
    return int(row.id)


def _without_graph(db: Database, recipe_id: int, ids: Sequence[int]) -> list[int]:
    """The ids (first occurrence order, no repeats) that have no graph for the recipe."""
    with db.session() as session:
        built = set(
            session.scalars(
                select(QuotientGraph.structure_id).where(QuotientGraph.recipe_id == recipe_id)
            )
        )
    return [sid for sid in dict.fromkeys(ids) if sid not in built]


def _drive(
    db: Database,
    client: Client,
    recipe: Recipe,
    todo: list[int],
    batch_size: int,
    summary: GraphBuildSummary,
    on_progress: Progress | None,
) -> None:
    """Batches of ids through the runner, bisected when they crash; each written as it lands.

    Batches hold at most `batch_size` structures, fewer when the job is small.
    """
    window = window_for(client)
    # Small jobs get smaller batches, so every worker has work (at least 2 batches each).
    size = min(batch_size, max(1, math.ceil(len(todo) / (2 * window))))

    with noting_lost_workers(client) as track:

        def submit(ids: list[int]) -> Future:
            return track(client.submit(quotient_graphs, load_cells(db, ids), recipe, pure=False))

        for done in run_window(submit, batches(todo, size), window, bisect=True):
            results: list[GraphArrays | str] = done.result
            if isinstance(done.result, Crashed):
                log.warning("structure %d: graph task failed: %s", done.item[0], done.result.error)
                results = [
                    f"structure {done.item[0]}: computing its graph killed the worker or"
                    f" failed ({done.result.describe()})"
                ]
            _record(db, summary, results)
            if on_progress is not None:
                on_progress(summary)


def _record(db: Database, summary: GraphBuildSummary, results: Sequence[GraphArrays | str]) -> None:
    graphs = [r for r in results if isinstance(r, GraphArrays)]
    errors = [r for r in results if isinstance(r, str)]
    written = write_graphs(db, summary.recipe_id, summary.run_id, graphs)
    summary.built += len(written)
    summary.edges += sum(g.num_edges for g in written)
    summary.already += len(graphs) - len(written)  # another build wrote them meanwhile
    summary.failed += len(errors)
    for message in errors:
        log.warning("%s", message)
        if len(summary.errors) < MAX_ERRORS_KEPT:
            summary.errors.append(message)


def write_graphs(
    db: Database, recipe_id: int, run_id: int, graphs: Sequence[GraphArrays]
) -> list[GraphArrays]:
    """Store graphs in one transaction (binary COPY); those already stored are skipped."""
    if not graphs:
        return []
    with db.session() as session:
        session.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:lock AS integer), CAST(:recipe AS integer))"),
            {"lock": GRAPHS_LOCK, "recipe": recipe_id % 2**31},
        )
        stored = set(
            session.scalars(
                select(QuotientGraph.structure_id).where(
                    QuotientGraph.recipe_id == recipe_id,
                    QuotientGraph.structure_id.in_([g.structure_id for g in graphs]),
                )
            )
        )
        fresh = [g for g in graphs if g.structure_id not in stored]
        if fresh:
            buffer = bytearray(_COPY_SIGNATURE)
            for graph in fresh:
                buffer += _copy_row(graph, recipe_id, run_id)
            buffer += _COPY_TRAILER
            with (
                copy_connection(session)
                .cursor()
                .copy(
                    "COPY quotient_graphs (structure_id, recipe_id, run_id, num_nodes, num_edges,"
                    " edge_src, edge_dst, edge_images, edge_lengths) FROM STDIN (FORMAT BINARY)"
                ) as copy
            ):
                copy.write(bytes(buffer))
    return fresh


# PostgreSQL's binary COPY format, written straight from the NumPy arrays: the reverse of
# platform.arrays' loaders, and 10-20x faster than handing psycopg Python lists of numbers.
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_INT4, _INT2, _FLOAT4 = 23, 21, 700  # element type OIDs (pg_type)
_ROW_HEAD = struct.Struct(">h iq iq iq ii ii")  # 9 fields: three bigints, two integers


def _copy_row(graph: GraphArrays, recipe_id: int, run_id: int) -> bytes:
    head = _ROW_HEAD.pack(
        9, 8, graph.structure_id, 8, recipe_id, 8, run_id, 4, graph.num_nodes, 4, graph.num_edges
    )
    return b"".join(
        (
            head,
            _array_field(graph.src, ">i4", _INT4),
            _array_field(graph.dst, ">i4", _INT4),
            _array_field(graph.images.reshape(-1), ">i2", _INT2),
            _array_field(graph.lengths, ">f4", _FLOAT4),
        )
    )


def _array_field(values: np.ndarray, element: str, oid: int) -> bytes:
    """One one-dimensional array field: its length, then the array in binary form."""
    if len(values) == 0:
        body = struct.pack(">iiI", 0, 0, oid)
    else:
        records = np.empty(len(values), dtype=[("length", ">i4"), ("value", element)])
        records["length"] = np.dtype(element).itemsize
        records["value"] = values
        body = struct.pack(">iiIii", 1, 0, oid, len(values), 1) + records.tobytes()
    return struct.pack(">i", len(body)) + body


def load_graphs(db: Database, recipe: Recipe | str, ids: Sequence[int]) -> list[GraphArrays]:
    """Stored graphs of `ids` under a recipe, in the order given, in one query.

    The recipe may be spelled as on the command line (knn:12 is knn:12,8.0). A structure
    without its graph is an error that says which command builds it.
    """
    if isinstance(recipe, str):
        recipe = parse_recipe(recipe)
    query = (
        select(
            QuotientGraph.structure_id,
            QuotientGraph.num_nodes,
            QuotientGraph.edge_src,
            QuotientGraph.edge_dst,
            QuotientGraph.edge_images,
            QuotientGraph.edge_lengths,
        )
        .join(GraphRecipe, GraphRecipe.id == QuotientGraph.recipe_id)
        .where(
            GraphRecipe.name == recipe.name,
            # = ANY(array): numpy_rows compiles the statement itself, expanding IN cannot be
            QuotientGraph.structure_id == any_(cast(list(ids), ARRAY(BigInteger))),
        )
    )
    with db.session() as session:
        rows = numpy_rows(session, query)
    by_id = {
        int(sid): GraphArrays(
            structure_id=int(sid),
            num_nodes=int(num_nodes),
            src=np.asarray(src, dtype=np.int32),
            dst=np.asarray(dst, dtype=np.int32),
            images=np.asarray(images, dtype=np.int16).reshape(-1, 3),
            lengths=np.asarray(lengths, dtype=np.float32),
        )
        for sid, num_nodes, src, dst, images, lengths in rows
    }
    missing = [sid for sid in dict.fromkeys(ids) if sid not in by_id]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise GraphsMissing(
            f"no {recipe.name} graph for {len(missing)} of {len(set(ids))} structures "
            f"(ids {shown}): run `crystaldb graphs build --recipe {recipe.name}` first"
        )
    return [by_id[sid] for sid in ids]
