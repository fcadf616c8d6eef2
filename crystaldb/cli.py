"""The `crystaldb` command: thin wrappers that turn settings and arguments into library calls."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

import crystaldb
from crystaldb.ingest.pipeline import (
    IngestSummary,
    ingest_omdb_gap1,
    ingest_paths,
    reject_reasons,
)
from crystaldb.ingest.validate import Limits
from crystaldb.platform.cluster import describe_cluster
from crystaldb.platform.database import Database, connect
from crystaldb.platform.errors import CrystaldbError
from crystaldb.platform.settings import Settings, load_settings
from crystaldb.platform.store import ArtifactStore
from crystaldb.release.create import create_release, find_release, list_releases, member_counts
from crystaldb.release.export import export_release
from crystaldb.release.load import diff_releases, load_release
from crystaldb.schema import migrate
from crystaldb.schema.inventory import count_rows
from crystaldb.schema.runs import recent_runs

app = typer.Typer(
    help="crystaldb: crystal structures and their electronic properties, in PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="The database schema: migrate, inspect, locate.", no_args_is_help=True)
app.add_typer(db_app, name="db")
release_app = typer.Typer(
    help="Versioned, immutable dataset releases: create, export, list, show, diff.",
    no_args_is_help=True,
)
app.add_typer(release_app, name="release")

console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More log output (-v info, -vv debug)."
    ),
) -> None:
    """Configure logging once for every subcommand."""
    level = {0: None, 1: logging.INFO}.get(verbose, logging.DEBUG) or load_settings().log_level
    handler = RichHandler(console=err_console, show_path=False)
    handler.setLevel(level)  # libraries (Dask) set their own logger levels: filter here too
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler])


def _database(settings: Settings) -> Database:
    """Connect, telling the user when the embedded server is being started."""
    if settings.database is None:
        with console.status("Starting the embedded PostgreSQL..."):
            return connect(settings)
    return connect(settings)


@contextmanager
def _step(message: str) -> Iterator[None]:
    """A spinner while a step runs, then a tick with its duration."""
    start = time.perf_counter()
    with console.status(f"{message}..."):
        yield
    console.print(f"[green]✓[/green] {message} ({time.perf_counter() - start:.1f} s)")


# --- crystaldb db ----------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("head", help="Target revision (default: the newest)."),
) -> None:
    """Apply schema migrations (safe to run again: it does nothing when up to date)."""
    db = _database(load_settings())
    before = migrate.status(db)
    after = migrate.upgrade(db, revision)
    if before.current == after.current:
        console.print(f"schema already at {after.current} on {db.safe_url}")
    else:
        console.print(
            f"schema upgraded {before.current or 'empty'} -> {after.current} on {db.safe_url}"
        )


@db_app.command("downgrade")
def db_downgrade(
    revision: str = typer.Argument(..., help="Target revision; 'base' removes every table."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask before dropping data."),
) -> None:
    """Undo schema migrations down to REVISION (drops the data of the tables it removes)."""
    db = _database(load_settings())
    if not yes:
        typer.confirm(f"Downgrade {db.safe_url} to {revision}? Data may be lost", abort=True)
    state = migrate.downgrade(db, revision)
    console.print(f"schema now at {state.current or 'base (empty)'} on {db.safe_url}")


@db_app.command("status")
def db_status(
    check: bool = typer.Option(False, "--check", help="Exit with status 1 if migrations wait."),
) -> None:
    """Show the schema revision of the database against the code's newest."""
    db = _database(load_settings())
    state = migrate.status(db)
    console.print(f"database  {db.safe_url}", soft_wrap=True)
    console.print(f"current   {state.current or 'empty (no migrations applied)'}")
    console.print(f"head      {state.head}")
    if state.up_to_date:
        console.print("[green]up to date[/green]")
    else:
        console.print(f"[yellow]pending   {', '.join(state.pending)}[/yellow]")
        console.print("run `crystaldb db upgrade` to apply them")
        if check:
            raise typer.Exit(1)


@db_app.command("url")
def db_url(
    show_password: bool = typer.Option(False, "--show-password", help="Print it unmasked."),
) -> None:
    """Print the database URL in use (starting the embedded server if that is the default)."""
    db = _database(load_settings())
    console.print(db.url.render_as_string(hide_password=not show_password), soft_wrap=True)


@db_app.command("revision")
def db_revision(
    message: str = typer.Option(..., "-m", "--message", help="What the migration does."),
) -> None:
    """For developers: write a new migration from the difference between models and database."""
    db = _database(load_settings())
    migrate.require_current(db)
    path = migrate.new_revision(db, message)
    console.print(f"wrote {path}: review it, give it a working downgrade, and test the round trip")


# --- crystaldb ingest ------------------------------------------------------------------------


@contextmanager
def _ingest_progress() -> Iterator[tuple[Any, Any]]:
    """A bar with files done, what became of them, and the rate."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[outcome]}"),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    start = time.perf_counter()
    with progress:
        task = progress.add_task("ingest", total=None, outcome="", rate="")

        def on_total(total: int | None) -> None:
            progress.update(task, total=total)

        def on_progress(summary: IngestSummary) -> None:
            c = summary.counts
            rate = summary.files / max(time.perf_counter() - start, 1e-9)
            progress.update(
                task,
                completed=summary.files,
                outcome=(
                    f"[green]{c.stored} stored[/green] {c.duplicates} duplicate "
                    f"[red]{c.rejected} rejected[/red] {c.already_ingested} already in"
                ),
                rate=f"{rate:,.0f} files/s",
            )

        yield on_total, on_progress


def _print_ingest_summary(db: Database, summary: IngestSummary) -> None:
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


@app.command("ingest")
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
    chunk_size: int = typer.Option(64, "--chunk-size", min=1, help="Files per task and commit."),
    max_sites: int = typer.Option(500, "--max-sites", min=1, help="Refuse larger cells."),
    min_distance: float = typer.Option(
        0.5, "--min-distance", min=0.0, help="Refuse sites closer than this (angstrom)."
    ),
    symprec: float = typer.Option(0.1, "--symprec", min=1e-5, help="spglib tolerance (angstrom)."),
) -> None:
    """Load structures on Dask workers; safe to re-run: it resumes and never doubles."""
    settings = load_settings()
    db = _database(settings)
    migrate.require_current(db)
    limits = Limits(max_sites=max_sites, min_distance=min_distance, symprec=symprec)
    with _ingest_progress() as (on_total, on_progress):
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
            )
        else:
            raise typer.BadParameter(f"{fmt!r}: expected auto or omdb-gap1", param_hint="--format")
    _print_ingest_summary(db, summary)


# --- crystaldb release -----------------------------------------------------------------------


def _release_ref(text: str, version: str | None = None) -> tuple[str, str | None]:
    """NAME or NAME:VERSION (an explicit --version wins)."""
    name, _, inline = text.partition(":")
    return name, version or inline or None


@release_app.command("create")
def release_create(
    name: str = typer.Argument(..., help="Release name, e.g. omdb-gap1."),
    version: str = typer.Option(..., "--version", help="Version; name+version is never reused."),
    where: str | None = typer.Option(
        None, "--where", help='Filter, e.g. "elements has all C, H and nsites <= 208".'
    ),
    label: str | None = typer.Option(
        None, "--label", help="Freeze this label, PROPERTY:FUNCTIONAL, e.g. band_gap:PBE."
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        help="ordered:N,M | random:F,F,F:SEED | kfold:K:SEED | group-by:FIELD[:F,F,F[:SEED]]",
    ),
    description: str | None = typer.Option(None, "--description", help="Free text."),
) -> None:
    """Freeze the structures a filter selects (and their labels) as an immutable release."""
    db = _database(load_settings())
    migrate.require_current(db)
    release_id = create_release(
        db, name, version, where=where, label=label, split=split, description=description
    )
    counts = member_counts(db, release_id)
    total = sum(counts.values())
    parts = ", ".join(f"{n} {split_name}" for split_name, n in counts.items())
    console.print(f"release {name} {version} (id {release_id}): {total} members ({parts})")


@release_app.command("export")
def release_export(
    name: str = typer.Argument(..., help="NAME or NAME:VERSION (default: the newest version)."),
    fmt: str = typer.Option(
        "omdb-gap1", "--format", help="omdb-gap1 | extxyz | matbench | optimade-jsonl | parquet"
    ),
    out: Path = typer.Option(..., "--out", help="A folder that does not exist or is empty."),
    version: str | None = typer.Option(None, "--version", help="Version to export."),
) -> None:
    """Write a release to a folder, with manifest.json and plots; same release, same bytes."""
    db = _database(load_settings())
    migrate.require_current(db)
    release = find_release(db, *_release_ref(name, version))
    with console.status(f"Exporting {release.name} {release.version} as {fmt}..."):
        data = load_release(db, release)
        files = export_release(data, fmt, out)
    console.print(f"wrote {len(files)} files to {out}:")
    for path in files:
        console.print(f"  {path.name:<28}{path.stat().st_size:>12,} bytes")


@release_app.command("list")
def release_list() -> None:
    """Every release with its version, size and split."""
    db = _database(load_settings())
    migrate.require_current(db)
    table = Table("name", "version", "members", "split", "label", "where", "created")
    for release in list_releases(db):
        counts = member_counts(db, release.id)
        table.add_row(
            release.name,
            release.version,
            str(sum(counts.values())),
            release.split_spec or "-",
            ":".join(release.label_spec.values()) or "-",
            release.query or "-",
            f"{release.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


@release_app.command("diff")
def release_diff(
    a: str = typer.Argument(..., help="NAME:VERSION of the older release."),
    b: str = typer.Argument(..., help="NAME:VERSION of the newer release."),
) -> None:
    """What B added, removed, relabelled and moved between splits, relative to A."""
    db = _database(load_settings())
    migrate.require_current(db)
    old, new = find_release(db, *_release_ref(a)), find_release(db, *_release_ref(b))
    diff = diff_releases(db, old, new)
    console.print(
        f"{old.name} {old.version} -> {new.name} {new.version}: {len(diff.added)} added, "
        f"{len(diff.removed)} removed, {len(diff.relabelled)} relabelled, "
        f"{len(diff.moved)} moved between splits"
    )
    for title, rows in (("added", diff.added), ("removed", diff.removed)):
        if rows:
            console.print(
                f"{title}: structures {', '.join(map(str, rows[:20]))}"
                + (" ..." if len(rows) > 20 else "")
            )
    for sid, before, after in diff.relabelled[:20]:
        console.print(f"relabelled: structure {sid}: {before} -> {after}")
    for sid, before_split, after_split in diff.moved[:20]:
        console.print(f"moved: structure {sid}: {before_split} -> {after_split}")


# --- crystaldb runs --------------------------------------------------------------------------


@app.command("runs")
def runs(
    kind: str | None = typer.Option(None, "--kind", help="Only this kind (ingest, ...)."),
    status_filter: str | None = typer.Option(
        None, "--status", help="Only runs with this status: running, succeeded, failed."
    ),
    limit: int = typer.Option(20, "--limit", min=1, help="How many, newest first."),
) -> None:
    """Recent jobs: what ran, where, for how long, and how it ended."""
    db = _database(load_settings())
    migrate.require_current(db)
    table = Table("id", "kind", "status", "host", "started", "seconds", "error")
    for run in recent_runs(db, kind=kind, status=status_filter, limit=limit):
        seconds = (
            f"{(run.finished_at - run.started_at).total_seconds():.1f}" if run.finished_at else "-"
        )
        colour = {"succeeded": "green", "failed": "red"}.get(run.status, "yellow")
        table.add_row(
            str(run.id),
            run.kind,
            f"[{colour}]{run.status}[/{colour}]",
            f"{run.host}:{run.pid}" if run.pid else run.host,
            f"{run.started_at:%Y-%m-%d %H:%M:%S}",
            seconds,
            (run.error or "").splitlines()[0][:80] if run.error else "",
        )
    console.print(table)


# --- crystaldb serve -------------------------------------------------------------------------


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
) -> None:
    """Serve the GraphQL API (GraphiQL in the browser at /graphql, health at /health)."""
    from crystaldb.api.server import serve as run_server  # the API's imports cost a second

    db = _database(load_settings())
    migrate.require_current(db)
    console.print(f"GraphQL API on http://{host}:{port}/graphql (Ctrl-C stops it)")
    run_server(db, host=host, port=port)


# --- crystaldb status / demo -----------------------------------------------------------------


def collect_status(settings: Settings, db: Database) -> dict[str, Any]:
    """Everything `crystaldb status` shows, as plain data (also its --json output)."""
    state = migrate.status(db)
    report: dict[str, Any] = {
        "version": crystaldb.__version__,
        "database": {
            "url": db.safe_url,
            "embedded": db.embedded,
            "server_version": db.server_version(),
            "schema": state.current,
            "schema_head": state.head,
            "up_to_date": state.up_to_date,
        },
        "cluster": describe_cluster(settings),
        "store": ArtifactStore(settings.store_location).describe(),
    }
    report["counts"] = count_rows(db) if state.up_to_date else None
    return report


def render_status(report: dict[str, Any]) -> Table:
    """A two-column table a person reads at a glance."""
    database, cluster, store = report["database"], report["cluster"], report["store"]
    table = Table(title=f"crystaldb {report['version']}", show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column(overflow="fold")
    kind = "embedded PostgreSQL" if database["embedded"] else "PostgreSQL"
    table.add_row("database", f"{kind} {database['server_version']}\n{database['url']}")
    if database["up_to_date"]:
        schema = f"{database['schema']} [green](up to date)[/green]"
    else:
        schema = (
            f"{database['schema'] or 'empty'} [yellow](code needs {database['schema_head']}: "
            "run `crystaldb db upgrade`)[/yellow]"
        )
    table.add_row("schema", schema)
    if cluster["kind"] == "local":
        table.add_row(
            "cluster",
            f"local: {cluster['workers']} worker processes x {cluster['threads_per_worker']} "
            f"thread ({cluster['state']})",
        )
    else:
        detail = f"{cluster.get('workers', '?')} workers" if "workers" in cluster else ""
        table.add_row("cluster", f"{cluster['address']}: {cluster['state']} {detail}".strip())
    table.add_row("store", f"{store['url']} ({store['entries']} entries)")
    if report["counts"] is not None:
        table.add_row("counts", "\n".join(f"{k:<16}{v:>10,}" for k, v in report["counts"].items()))
    return table


@app.command("status")
def status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show the database, schema, cluster, artifact store and row counts."""
    settings = load_settings()
    report = collect_status(settings, _database(settings))
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        console.print(render_status(report))


SAMPLE = Path(__file__).parent / "data" / "sample"
# The bundled sample's folders and the database their file names are ids of (None: COD ids
# are recognised from names like 1000002.cif).
SAMPLE_SOURCES = ((("cod", "malformed"), None), (("cofs",), "curated-cofs"))


@app.command("demo")
def demo(
    serve_after: bool = typer.Option(
        True, "--serve/--no-serve", help="End by serving the API on the demo database."
    ),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port of the API."),
) -> None:
    """The main job: start the (embedded) database, migrate it, ingest the sample, serve it."""
    settings = load_settings()
    where = "the embedded PostgreSQL" if settings.database is None else "PostgreSQL"
    with _step(f"Connected to {where}"):
        db = connect(settings)
    with _step("Schema migrated"):
        migrate.upgrade(db)
    for folders, source in SAMPLE_SOURCES:
        paths = [SAMPLE / folder for folder in folders]
        console.print(f"Ingesting the bundled sample: {', '.join(folders)}")
        with _ingest_progress() as (on_total, on_progress):
            summary = ingest_paths(
                db, settings, paths, database=source, on_progress=on_progress, on_total=on_total
            )
        _print_ingest_summary(db, summary)
    console.print(render_status(collect_status(settings, db)))
    if serve_after:
        from crystaldb.api.server import serve as run_server

        console.print(
            f"Serving the demo database: GraphiQL at http://127.0.0.1:{port}/graphql "
            "(Ctrl-C stops it; --no-serve skips this)"
        )
        run_server(db, port=port)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except CrystaldbError as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
        sys.exit(2)
