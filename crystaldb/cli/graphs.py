"""`crystaldb graphs`: build the quotient graphs of a recipe, with a progress bar."""

from __future__ import annotations

import typer

from crystaldb.cli.common import Tally, console, current_database, default_of, tally_progress
from crystaldb.core.graphs import DEFAULT_KNN_RADIUS, DEFAULT_MIN_SOLID_ANGLE, parse_recipe
from crystaldb.jobs.graphs import GraphBuildSummary, build_graphs
from crystaldb.platform.settings import load_settings
from crystaldb.query.selection import select_structures

app = typer.Typer(
    help="Quotient graphs: each cell's periodic multigraph, one set per recipe.",
    no_args_is_help=True,
)


def graphs_tally(summary: GraphBuildSummary, seconds: float) -> Tally:
    """Structures done, edges written and failures, and the rate."""
    return Tally(
        done=summary.done,
        todo=summary.todo,
        outcome=f"{summary.edges:,} edges [red]{summary.failed} failed[/red]",
        rate=f"{summary.done / max(seconds, 1e-9):,.0f} structures/s",
    )


@app.command("build")
def graphs_build(
    recipe: str = typer.Option(
        ...,
        "--recipe",
        help=f"radius:R | knn:K[,RMAX] (RMAX {DEFAULT_KNN_RADIUS:g} Å by default; ties with the"
        f" K-th kept) | voronoi[:MIN_SOLID_ANGLE] ({DEFAULT_MIN_SOLID_ANGLE:g} sr by default).",
    ),
    release: str | None = typer.Option(
        None, "--release", help="Only this release's members (NAME or NAME:VERSION)."
    ),
    where: str | None = typer.Option(
        None,
        "--where",
        help=(
            'Only structures matching a filter, e.g. "nsites <= 100"'
            " (the fields: `crystaldb filters`)."
        ),
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Local Dask worker processes [default: settings]."
    ),
    batch_size: int = typer.Option(
        default_of(build_graphs, "batch_size"),
        "--batch-size",
        min=1,
        help="Structures per task and commit.",
    ),
) -> None:
    """Build the recipe's graph of every selected structure (all by default) that has none."""
    parsed = parse_recipe(recipe)
    settings = load_settings()
    db = current_database(settings)
    selection = select_structures(db, release=release, where=where)
    with tally_progress(f"graphs {parsed.name}", graphs_tally) as on_progress:
        summary = build_graphs(
            db,
            settings,
            parsed,
            selection,
            workers=workers,
            batch_size=batch_size,
            on_progress=on_progress,
        )
    console.print(
        f"recipe {summary.recipe} (run {summary.run_id}): {summary.selected} structures "
        f"selected, {summary.built} graphs built ({summary.edges:,} edges), "
        f"{summary.already} already built, {summary.failed} failed",
        soft_wrap=True,
    )
    for message in summary.errors[:10]:
        console.print(f"  [red]failed[/red] {message}", highlight=False)
