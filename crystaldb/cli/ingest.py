"""`crystaldb ingest`: load structure files, with a progress bar and a table of refusals."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from crystaldb.cli.common import Tally, console, current_database, default_of, tally_progress
from crystaldb.core.validate import Limits
from crystaldb.formats.labels import read_label_table
from crystaldb.jobs.ingest import IngestSummary, ingest_omdb_gap1, ingest_paths, reject_reasons
from crystaldb.platform.database import Database
from crystaldb.platform.settings import load_settings


def ingest_tally(summary: IngestSummary, seconds: float) -> Tally:
    """Files done, what became of them, and the rate."""
    c = summary.counts
    return Tally(
        done=summary.files,
        todo=None,  # the bar's length comes from on_total, once the inputs are counted
        outcome=(
            f"[green]{c.stored} stored[/green] {c.duplicates} duplicate "
            f"[red]{c.rejected} rejected[/red] {c.already_ingested} already in"
        ),
        rate=f"{summary.files / max(seconds, 1e-9):,.0f} files/s",
    )


def print_ingest_summary(db: Database, summary: IngestSummary) -> None:
    """Totals, then the reasons inputs were refused, most common first."""
    c = summary.counts
    console.print(
        f"batch {summary.batch_id} (run {summary.run_id}): {summary.files} inputs, "
        f"{c.stored} structures stored, {c.duplicates} duplicates linked, "
        f"{c.rejected} rejected, {c.already_ingested} already ingested"
        + (f", {c.labels} labels" if c.labels else "")
    )
    if summary.ignored:
        console.print(f"{summary.ignored} other files in the folders ignored (no structure files)")
    reasons = reject_reasons(db, summary.batch_id)
    if reasons:
        table = Table("reason", "inputs", "example", title="rejected", title_justify="left")
        for reason, count, example in reasons:
            table.add_row(reason, str(count), example)
        console.print(table)


def ingest(
    paths: list[Path] = typer.Argument(
        ..., help="Files, folders (searched recursively) or .zip / .tar.gz archives."
    ),
    fmt: str = typer.Option(
        "auto",
        "--format",
        help="auto: by file suffix (.cif, .xyz, POSCAR, .json); omdb-gap1: a release folder.",
    ),
    source: str | None = typer.Option(
        None, "--source", help="Database the files come from (e.g. cod): ids from their names."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Local Dask worker processes [default: settings]."
    ),
    chunk_size: int = typer.Option(
        default_of(ingest_paths, "chunk_size"),
        "--chunk-size",
        min=1,
        help="Files per task and commit.",
    ),
    max_sites: int = typer.Option(
        default_of(Limits, "max_sites"), "--max-sites", min=1, help="Refuse larger cells."
    ),
    min_distance: float = typer.Option(
        default_of(Limits, "min_distance"),
        "--min-distance",
        min=0.0,
        help="Refuse sites closer than this (angstrom).",
    ),
    symprec: float = typer.Option(
        default_of(Limits, "symprec"), "--symprec", min=1e-5, help="spglib tolerance (angstrom)."
    ),
    labels: Path | None = typer.Option(
        None, "--labels", help="CSV of FILE_NAME,VALUE rows (e.g. JARVIS id_prop.csv)."
    ),
    label_method: str = typer.Option(
        "band_gap:PBE", "--label-method", help="PROPERTY:FUNCTIONAL of the --labels values."
    ),
    label_code: str = typer.Option(
        default_of(read_label_table, "code"), "--label-code", help="Code that computed them."
    ),
    label_unit: str = typer.Option(
        default_of(read_label_table, "unit"), "--label-unit", help="Unit of the --labels values."
    ),
) -> None:
    """Load structures on Dask workers; safe to re-run: it resumes and never doubles."""
    table = read_label_table(labels, label_method, label_unit, label_code) if labels else None
    settings = load_settings()
    db = current_database(settings)
    limits = Limits(max_sites=max_sites, min_distance=min_distance, symprec=symprec)
    with tally_progress("ingest", ingest_tally) as on_progress:
        on_total = on_progress.set_total
        if fmt == "omdb-gap1":
            if len(paths) != 1:
                raise typer.BadParameter("omdb-gap1 takes one release folder", param_hint="PATHS")
            summary = ingest_omdb_gap1(
                db,
                settings,
                paths[0],
                limits=limits,
                workers=workers,
                on_progress=on_progress,
                on_total=on_total,
            )
        elif fmt == "auto":
            summary = ingest_paths(
                db,
                settings,
                paths,
                database=source,
                limits=limits,
                chunk_size=chunk_size,
                workers=workers,
                on_progress=on_progress,
                on_total=on_total,
                label_table=table,
            )
        else:
            raise typer.BadParameter(f"{fmt!r}: expected auto or omdb-gap1", param_hint="--format")
    print_ingest_summary(db, summary)
