"""The `crystaldb` command: thin wrappers that turn settings and arguments into library calls."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
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
from crystaldb.core.errors import CrystaldbError
from crystaldb.core.graphs import parse_recipe
from crystaldb.core.soap import SoapHypers
from crystaldb.core.validate import Limits
from crystaldb.formats.labels import read_label_table
from crystaldb.jobs.graphs import GraphBuildSummary, build_graphs
from crystaldb.jobs.ingest import IngestSummary, ingest_omdb_gap1, ingest_paths, reject_reasons
from crystaldb.jobs.kernels import build_kernel, choose_landmarks, list_kernels
from crystaldb.jobs.krr import TrainSummary, train_krr
from crystaldb.jobs.models import list_models
from crystaldb.platform.cluster import describe_cluster
from crystaldb.platform.database import Database, connect
from crystaldb.platform.settings import Settings, load_settings
from crystaldb.platform.store import ArtifactStore
from crystaldb.query.selection import Selection, find_release, select_structures
from crystaldb.release.create import create_release, list_releases, member_counts
from crystaldb.release.export import export_release
from crystaldb.release.load import diff_releases, load_release
from crystaldb.schema import migrate
from crystaldb.schema.inventory import count_rows
from crystaldb.schema.releases import ReleaseRef
from crystaldb.schema.runs import recent_runs
from crystaldb.schema.tokens import create_token, list_tokens, revoke_token

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
    labels: Path | None = typer.Option(
        None, "--labels", help="CSV of FILE_NAME,VALUE rows (e.g. JARVIS id_prop.csv)."
    ),
    label_method: str = typer.Option(
        "band_gap:PBE", "--label-method", help="PROPERTY:FUNCTIONAL of the --labels values."
    ),
    label_code: str = typer.Option("unknown", "--label-code", help="Code that computed them."),
    label_unit: str = typer.Option("eV", "--label-unit", help="Unit of the --labels values."),
) -> None:
    """Load structures on Dask workers; safe to re-run: it resumes and never doubles."""
    table = read_label_table(labels, label_method, label_unit, label_code) if labels else None
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
                label_table=table,
            )
        else:
            raise typer.BadParameter(f"{fmt!r}: expected auto or omdb-gap1", param_hint="--format")
    _print_ingest_summary(db, summary)


# --- crystaldb token -------------------------------------------------------------------------

token_app = typer.Typer(
    help="API tokens for mutations (queries need none): create, list, revoke.",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    name: str = typer.Argument(..., help="A name for people and logs, e.g. alice-laptop."),
) -> None:
    """Create an API token and print it, this once: the database keeps only its sha256."""
    db = _database(load_settings())
    migrate.require_current(db)
    token = create_token(db, name)
    print(token)  # alone on stdout, so TOKEN=$(crystaldb token create NAME) works
    err_console.print(
        f"token {name} created: it is shown only now, so keep it; send it as the header "
        f"`Authorization: Bearer <token>`; `crystaldb token revoke {name}` ends it",
        highlight=False,
        soft_wrap=True,
    )


@token_app.command("list")
def token_list() -> None:
    """Every token: name, created, last used, and whether it was revoked (never the token)."""
    db = _database(load_settings())
    migrate.require_current(db)
    table = Table("name", "created", "last used", "status")
    for token in list_tokens(db):
        table.add_row(
            token.name,
            f"{token.created_at:%Y-%m-%d %H:%M:%S}",
            f"{token.last_used_at:%Y-%m-%d %H:%M:%S}" if token.last_used_at else "never",
            f"[red]revoked {token.revoked_at:%Y-%m-%d %H:%M:%S}[/red]"
            if token.revoked_at
            else "[green]live[/green]",
        )
    console.print(table)


@token_app.command("revoke")
def token_revoke(name: str = typer.Argument(..., help="The token's name.")) -> None:
    """Revoke a token: requests sending it are refused from now on."""
    db = _database(load_settings())
    migrate.require_current(db)
    token, newly = revoke_token(db, name)
    assert token.revoked_at is not None
    when = f"{token.revoked_at:%Y-%m-%d %H:%M:%S}"
    console.print(f"token {name} {'revoked at' if newly else 'was already revoked at'} {when}")


# --- crystaldb kernel / train / predict / models -------------------------------------------

kernel_app = typer.Typer(
    help="SOAP descriptors and kernel matrices (Zarr, tiled on Dask): build, list.",
    no_args_is_help=True,
)
app.add_typer(kernel_app, name="kernel")
train_app = typer.Typer(help="Train models on a release's training split.", no_args_is_help=True)
app.add_typer(train_app, name="train")


@contextmanager
def _stage_progress() -> Iterator[Callable[[str, int, int], None]]:
    """One bar per stage of a job (descriptors, tiles, folds, ...), created as stages start."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    tasks: dict[str, Any] = {}
    with progress:

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield update


def _selection(
    db: Database, release: str | None, where: str | None, everything: bool, what: str
) -> Selection:
    """Exactly one of --release, --where, --all."""
    if sum((release is not None, where is not None, everything)) != 1:
        raise typer.BadParameter(f"give one of --release, --where or --all for {what}")
    return select_structures(db, release=release, where=where)


@kernel_app.command("build")
def kernel_build(
    release: str | None = typer.Option(None, "--release", help="NAME[:VERSION]: its members."),
    where: str | None = typer.Option(None, "--where", help="Structures matching a filter."),
    everything: bool = typer.Option(False, "--all", help="Every structure in the database."),
    columns: str | None = typer.Option(
        None,
        "--columns-release",
        help="NAME[:VERSION]: a rectangle against this release's train split (for prediction).",
    ),
    landmarks: int | None = typer.Option(
        None,
        "--landmarks",
        help="M: a Nyström rectangle against M landmarks drawn from the train split of"
        " --columns-release, else of --release (for more than 50,000 training structures).",
    ),
    landmark_seed: int = typer.Option(0, "--landmark-seed", help="Seed of the landmark draw."),
    descriptor: str = typer.Option("soap", "--descriptor", help="Only soap for now."),
    rc: float = typer.Option(4.0, "--rc", help="SOAP cutoff radius (angstrom)."),
    n: int = typer.Option(8, "--n", help="Radial functions n_max (featomic max_radial = n - 1)."),
    l_max: int = typer.Option(6, "--l", help="Highest angular channel l_max."),
    sigma: float = typer.Option(0.5, "--sigma", help="Gaussian width (angstrom)."),
    zeta: float = typer.Option(1.0, "--zeta", help="Kernel exponent (1: the paper's)."),
    tile: int = typer.Option(2048, "--tile", help="Rows and columns per tile and Zarr chunk."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Local Dask workers."),
) -> None:
    """The average SOAP kernel as a tiled Zarr array; re-running resumes an interrupted build."""
    if descriptor != "soap":
        raise typer.BadParameter(
            f"{descriptor!r}: only soap is available", param_hint="--descriptor"
        )
    hypers = SoapHypers(cutoff=rc, n_max=n, l_max=l_max, gaussian_width=sigma)
    settings = load_settings()
    db = _database(settings)
    migrate.require_current(db)
    rows = _selection(db, release, where, everything, "the kernel's rows")
    cols, chosen, against = None, None, ""
    if landmarks is not None:
        source = columns or release
        if source is None:
            raise typer.BadParameter(
                "landmarks are drawn from a release's labelled train split: give --release"
                " (or --columns-release)",
                param_hint="--landmarks",
            )
        chosen = choose_landmarks(db, source, landmarks, landmark_seed)
        cols = chosen.ids
        against = (
            f"\n  columns: {landmarks} landmarks drawn (seed {landmark_seed}) from the train"
            f" split of {chosen.record['release']}"
        )
    elif columns is not None:
        target = select_structures(db, release=columns)
        cols = [
            s
            for s, split in zip(target.structure_ids, target.splits or (), strict=True)
            if split == "train"
        ]
    with _stage_progress() as update:
        summary = build_kernel(
            db,
            settings,
            rows.structure_ids,
            cols,
            hypers=hypers,
            zeta=zeta,
            tile=tile,
            workers=workers,
            on_progress=update,
            description=rows.description,
            landmarks=chosen.record if chosen else None,
        )
    console.print(
        f"kernel {summary.kernel_id}: {summary.shape[0]} x {summary.shape[1]} "
        f"({rows.description}), {summary.tiles_computed} of {summary.tiles_total} tiles computed"
        f" by run {summary.run_id}{against}\n  {summary.array_uri}\n  sha256 {summary.checksum}"
    )


@kernel_app.command("list")
def kernel_list() -> None:
    """Every kernel: shape, hyperparameters, status and where its array is."""
    db = _database(load_settings())
    migrate.require_current(db)
    table = Table("id", "shape", "SOAP rc/n/l/sigma", "zeta", "tile", "status", "array")
    for kernel, hypers in list_kernels(db):
        table.add_row(
            str(kernel.id),
            " x ".join(map(str, kernel.shape)),
            f"{hypers['cutoff']}/{hypers['n_max']}/{hypers['l_max']}/{hypers['gaussian_width']}",
            str(kernel.hyperparameters.get("zeta")),
            str(kernel.chunks[0]),
            kernel.status,
            kernel.array_uri,
        )
    console.print(table)


@train_app.command("krr")
def train_krr_command(
    kernel: int = typer.Option(
        ...,
        "--kernel",
        help="A square kernel over the release (exact KRR), or a rectangle against landmarks"
        " of its train split (`kernel build --landmarks M`: Nyström KRR).",
    ),
    release: str = typer.Option(..., "--release", help="NAME[:VERSION] with a train split."),
    folds: int = typer.Option(10, "--folds", min=2, help="Cross-validation folds."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fold assignment."),
    name: str | None = typer.Option(None, "--name", help="Model name (default: from the run)."),
) -> None:
    """Kernel ridge regression: regularisation by k-fold CV, Cholesky fit, test metrics."""
    settings = load_settings()
    db = _database(settings)
    migrate.require_current(db)
    with _stage_progress() as update:
        summary = train_krr(
            db, settings, kernel, release, folds=folds, seed=seed, name=name, on_progress=update
        )
    _print_krr(summary, folds)


def _print_krr(summary: TrainSummary, folds: int) -> None:
    """The CV table, the method, the test metrics beside the median baseline, the curve."""
    table = Table("regularisation", f"{folds}-fold CV MAE (eV)")
    for value, mae in summary.cv_mae.items():
        mark = " [green]<- chosen[/green]" if value == summary.regularisation else ""
        table.add_row(f"{value:g}", f"{mae:.3f}{mark}")
    console.print(table)
    nystrom = summary.nystrom
    if nystrom:
        seed = "" if nystrom["seed"] is None else f" (seed {nystrom['seed']})"
        added = f", jitter {nystrom['jitter']:.2g} on the diagonal" if nystrom["jitter"] else ""
        console.print(f"Nyström KRR over {nystrom['landmarks']} landmarks{seed}{added}")
    for value, jitter in summary.cv_jitter.items():
        if jitter:
            console.print(f"  CV at {value:g}: jitter up to {jitter:.2g} added to the diagonal")
    _print_test_result(summary.model_id, summary.name, summary.metrics, summary.baseline_mae)
    if summary.metrics:
        curve = ", ".join(f"{p['train']}: {p['test_mae']:.3f}" for p in summary.learning_curve)
        console.print(f"learning curve (training structures: test MAE in eV): {curve}")
        console.print(f"  plot: {summary.plot_uri}")


reproduce_app = typer.Typer(
    help="Published protocols as one command, beside the published numbers: omdb-gap1.",
    no_args_is_help=True,
)
app.add_typer(reproduce_app, name="reproduce")


@reproduce_app.command("omdb-gap1")
def reproduce_omdb_gap1_command(
    folder: Path = typer.Argument(
        ..., help="A folder in the OMDB-GAP1 layout: structures.xyz, bandgaps.csv, CODids.csv."
    ),
    train: int = typer.Option(10_000, "--train", help="The first N structures train."),
    test: int = typer.Option(2_500, "--test", help="The last M structures are the test set."),
    landmarks: int | None = typer.Option(
        None, "--landmarks", help="Nyström KRR over M landmarks of the train split, not exact."
    ),
    landmark_seed: int = typer.Option(0, "--landmark-seed", help="Seed of the landmark draw."),
    folds: int = typer.Option(10, "--folds", min=2, help="Cross-validation folds."),
    release_name: str = typer.Option(
        "omdb-gap1", "--release-name", help="Name of the release (versions 1, 2, ...)."
    ),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Local Dask workers."),
) -> None:
    """The OMDB-GAP1 paper's SOAP-KRR protocol: ingest, release, kernel, KRR, beside the paper."""
    from crystaldb.workflows.reproduce import check_request, reproduce_omdb_gap1

    check_request(folder, train, test, folds, release_name)
    settings = load_settings()
    db = _database(settings)
    migrate.require_current(db)

    def on_step(step: str, result: Any) -> None:
        if step == "ingest":
            _print_ingest_summary(db, result)
        elif step == "release":
            ref, reused = result
            done = "reused (same members, split and gaps)" if reused else "created"
            console.print(f"release {ref} {done}: first {train} train, last {test} test")
        elif step == "kernel":
            console.print(
                f"kernel {result.kernel_id}: average SOAP (r_c 4 A, n 8, l 6), "
                f"{result.shape[0]} x {result.shape[1]}, {result.tiles_computed} of "
                f"{result.tiles_total} tiles computed by run {result.run_id}"
            )
        else:
            _print_krr(result, folds)

    with _stage_progress() as update:
        done = reproduce_omdb_gap1(
            db,
            settings,
            folder,
            train=train,
            test=test,
            landmarks=landmarks,
            landmark_seed=landmark_seed,
            folds=folds,
            release_name=release_name,
            workers=workers,
            on_progress=update,
            on_step=on_step,
        )
    console.print(_beside_the_paper(done.model, train, test))


def _beside_the_paper(model: TrainSummary, train: int, test: int) -> Table:
    """This run's test metrics and median baseline beside the paper's SOAP numbers."""
    from crystaldb.workflows.reproduce import PAPER

    metrics = model.metrics
    method = f"Nyström, {model.nystrom['landmarks']:,} landmarks" if model.nystrom else "exact"
    table = Table("OMDB-GAP1 protocol", "this run", "paper (SOAP)")
    table.add_row(
        "training / test structures", f"{train:,} / {test:,}", f"{PAPER.train:,} / {PAPER.test:,}"
    )
    table.add_row("KRR", method, "exact")
    table.add_row("regularisation (CV)", f"{model.regularisation:g}", "by CV")
    for label, key, paper in (
        ("test MAE (eV)", "mae", PAPER.mae),
        ("test RMSE (eV)", "rmse", PAPER.rmse),
    ):
        low, high = metrics[f"{key}_ci95"]
        table.add_row(label, f"{metrics[key]:.3f} [{low:.3f}, {high:.3f}]", f"{paper:.3f}")
    table.add_row("median baseline (eV)", f"{model.baseline_mae:.3f}", f"{PAPER.baseline_mae:.3f}")
    return table


def _print_test_result(model_id: int, name: str, test: dict[str, Any], baseline_mae: float) -> None:
    """A trained model's test MAE and RMSE with intervals, beside the median baseline."""
    if not test:
        console.print(f"model {model_id} ({name}): no test split to score")
        return
    console.print(
        f"model {model_id} ({name}): test MAE {test['mae']:.3f} eV "
        f"[{test['mae_ci95'][0]:.3f}, {test['mae_ci95'][1]:.3f}], RMSE {test['rmse']:.3f} eV "
        f"on {test['n']} structures; predicting the training median: {baseline_mae:.3f} eV"
    )


def _train_graph_network(
    architecture: str, release: str, epochs: int, seed: int, name: str | None
) -> None:
    """`crystaldb train schnet|cgcnn|mpnn`: one bar over the epochs, with the latest losses."""
    from crystaldb.jobs.networks import EpochLog, train_nn

    settings = load_settings()
    db = _database(settings)
    migrate.require_current(db)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]epochs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[losses]}"),
        console=console,
    )
    with progress:
        task = progress.add_task("epochs", total=epochs, losses="")

        def on_epoch(log: EpochLog) -> None:
            validation = (
                f" validation MAE {log.validation_mae:.3f} eV"
                if log.validation_mae is not None
                else ""
            )
            losses = f"train loss {log.train_loss:.4f}{validation} lr {log.learning_rate:.2g}"
            progress.update(task, completed=log.epoch, losses=losses)

        summary = train_nn(
            db, settings, architecture, release, epochs, seed, name, on_epoch=on_epoch
        )
    resumed = f", resumed after epoch {summary.resumed_from}" if summary.resumed_from else ""
    console.print(
        f"{summary.epochs} epochs on {summary.device} ({summary.stopped}{resumed}); "
        f"weights {summary.weights_uri}"
    )
    _print_test_result(summary.model_id, summary.name, summary.metrics, summary.baseline_mae)


def _network_command(architecture: str, summary: str) -> None:
    """`crystaldb train ARCHITECTURE`: the same options for every graph network."""

    def command(
        release: str = typer.Option(..., "--release", help="NAME[:VERSION] with a train split."),
        epochs: int = typer.Option(
            1000, "--epochs", min=1, help="Most epochs (early stop before)."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of weights, validation set and shuffles."),
        name: str | None = typer.Option(None, "--name", help="Model name (default: from the run)."),
    ) -> None:
        _train_graph_network(architecture, release, epochs, seed, name)

    command.__doc__ = summary
    train_app.command(architecture)(command)


for _architecture, _summary in (
    (
        "schnet",
        "SchNet (cutoff 5 A, F = 64, T = 3) on the radius:5.0 graphs; resumes if interrupted.",
    ),
    ("cgcnn", "CGCNN (12 nearest neighbours within 8 A, 3 convolutions) on the knn:12 graphs."),
    ("mpnn", "The edge-update message-passing network (T = 3) on the knn:24,8.0 graphs."),
):
    _network_command(_architecture, _summary)


@app.command("predict")
def predict_command(
    model: int | None = typer.Option(
        None, "--model", help="The model's id (see `crystaldb models`): krr, schnet, cgcnn, mpnn."
    ),
    ensemble: str | None = typer.Option(
        None, "--ensemble", help="ID,ID,...: the mean of these models, their spread stored."
    ),
    release: str | None = typer.Option(None, "--release", help="NAME[:VERSION]: its members."),
    where: str | None = typer.Option(None, "--where", help="Structures matching a filter."),
    everything: bool = typer.Option(False, "--all", help="Every structure in the database."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Local Dask workers."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Structures per task."),
) -> None:
    """Predict band gaps on Dask workers (GPU ones where declared) and store them with their run."""
    from crystaldb.jobs.predict import predict, predict_ensemble

    if (model is None) == (ensemble is None):
        raise typer.BadParameter("give --model ID or --ensemble ID,ID,...", param_hint="--model")
    members: list[int] = []
    if ensemble is not None:
        try:
            members = [int(part) for part in ensemble.split(",") if part.strip()]
        except ValueError:
            raise typer.BadParameter(
                f"{ensemble!r}: model ids separated by commas, e.g. 1,4", param_hint="--ensemble"
            ) from None
    settings = load_settings()
    db = _database(settings)
    migrate.require_current(db)
    selection = _selection(db, release, where, everything, "the structures to predict")
    with _stage_progress() as update:
        if model is not None:
            run_id, written = predict(
                db, settings, model, selection, workers, batch_size, on_progress=update
            )
        else:
            summary = predict_ensemble(
                db, settings, members, selection, workers, batch_size, on_progress=update
            )
            run_id, written, model = summary.run_id, summary.written, summary.model_id
    console.print(f"{written} predictions by model {model} stored by run {run_id}")


@app.command("models")
def models_command() -> None:
    """Every trained model: architecture, release, test metrics."""
    db = _database(load_settings())
    migrate.require_current(db)
    table = Table("id", "name", "architecture", "release", "test MAE (eV)", "RMSE", "created")
    for model, release_label in list_models(db):
        test = model.metrics.get("test", {})
        table.add_row(
            str(model.id),
            model.name,
            model.architecture,
            release_label or "-",
            f"{test['mae']:.3f}" if test else "-",
            f"{test['rmse']:.3f}" if test else "-",
            f"{model.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


# --- crystaldb graphs ------------------------------------------------------------------------

graphs_app = typer.Typer(
    help="Quotient graphs: each cell's periodic multigraph, one set per recipe.",
    no_args_is_help=True,
)
app.add_typer(graphs_app, name="graphs")


@contextmanager
def _graphs_progress(recipe: str) -> Iterator[Callable[[GraphBuildSummary], None]]:
    """A bar with structures done, edges written and failures, and the rate."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]graphs {recipe}"),
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
        task = progress.add_task("graphs", total=None, outcome="", rate="")

        def on_progress(summary: GraphBuildSummary) -> None:
            rate = summary.done / max(time.perf_counter() - start, 1e-9)
            progress.update(
                task,
                total=summary.todo,
                completed=summary.done,
                outcome=f"{summary.edges:,} edges [red]{summary.failed} failed[/red]",
                rate=f"{rate:,.0f} structures/s",
            )

        yield on_progress


@graphs_app.command("build")
def graphs_build(
    recipe: str = typer.Option(
        ...,
        "--recipe",
        help="radius:R | knn:K[,RMAX] (RMAX 8 Å by default; ties with the K-th kept) | "
        "voronoi[:MIN_SOLID_ANGLE] (0.2 sr by default).",
    ),
    release: str | None = typer.Option(
        None, "--release", help="Only this release's members (NAME or NAME:VERSION)."
    ),
    where: str | None = typer.Option(
        None, "--where", help='Only structures matching a filter, e.g. "nsites <= 100".'
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Local Dask worker processes [default: settings]."
    ),
    batch_size: int = typer.Option(
        64, "--batch-size", min=1, help="Structures per task and commit."
    ),
) -> None:
    """Build the recipe's graph of every selected structure (all by default) that has none."""
    parsed = parse_recipe(recipe)
    settings = load_settings()
    db = _database(settings)
    migrate.require_current(db)
    selection = select_structures(db, release=release, where=where)
    with _graphs_progress(parsed.name) as on_progress:
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


# --- crystaldb release -----------------------------------------------------------------------


def _release_ref(text: str, version: str | None = None) -> tuple[str, str | None]:
    """NAME or NAME:VERSION (an explicit --version wins)."""
    ref = ReleaseRef.parse(text)
    return ref.name, version or ref.version


@release_app.command("create")
def release_create(
    name: str = typer.Argument(..., help="Release name, e.g. omdb-gap1 (no ':')."),
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
    release = find_release(db, *_release_ref(name, version), origin="NAME")
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
    old = find_release(db, *_release_ref(a), origin="A")
    new = find_release(db, *_release_ref(b), origin="B")
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
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Worker processes on the port, each with its own connection pool "
        "(default: one per core this process may use; 1: serve in this process).",
    ),
) -> None:
    """Serve the GraphQL API (GraphiQL in the browser at /graphql, health at /health)."""
    from crystaldb.api.server import describe, usable_cores
    from crystaldb.api.server import serve as run_server

    count = workers or usable_cores()
    db = _database(load_settings())
    migrate.require_current(db)
    console.print(
        f"GraphQL API on http://{host}:{port}/graphql, {describe(count)} (Ctrl-C stops it)"
    )
    run_server(db, host=host, port=port, workers=count)


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


DEMO_RELEASE = "jarvis-demo"


def _demo_model(db: Database, settings: Settings) -> None:
    """The bundled JARVIS crystals with their real gaps: a release, a kernel, a KRR model."""
    from crystaldb.jobs.predict import predict

    folder = SAMPLE / "jarvis"
    table = read_label_table(folder / "id_prop.csv", "band_gap:OptB88vdW", code="VASP")
    console.print("Ingesting the bundled sample: jarvis, with its OptB88vdW band gaps")
    with _ingest_progress() as (on_total, on_progress):
        summary = ingest_paths(
            db, settings, [folder], label_table=table, on_progress=on_progress, on_total=on_total
        )
    _print_ingest_summary(db, summary)
    existing = [r for r in list_releases(db) if r.name == DEMO_RELEASE]
    if not existing:
        with _step(f"Release {DEMO_RELEASE} created (first 40 train, last 10 test)"):
            create_release(
                db, DEMO_RELEASE, "1.0", label="band_gap:OptB88vdW", split="ordered:40,10"
            )
    members = select_structures(db, release=DEMO_RELEASE)
    with _stage_progress() as update:
        kernel = build_kernel(
            db, settings, members.structure_ids, on_progress=update, description=DEMO_RELEASE
        )
    console.print(
        f"[green]✓[/green] kernel {kernel.kernel_id}: average SOAP (r_c 4 A, n 8, l 6), "
        f"{kernel.shape[0]} x {kernel.shape[1]}, in {kernel.array_uri}"
    )
    trained = train_krr(db, settings, kernel.kernel_id, DEMO_RELEASE)
    test = trained.metrics
    console.print(
        f"[green]✓[/green] model {trained.model_id} ({trained.name}): KRR, regularisation "
        f"{trained.regularisation:g} by 10-fold CV; test MAE {test['mae']:.2f} eV on "
        f"{test['n']} crystals (predicting the training median: {trained.baseline_mae:.2f} eV)"
    )
    with _stage_progress() as update:
        _, written = predict(db, settings, trained.model_id, members, on_progress=update)
    console.print(f"[green]✓[/green] {written} band gaps predicted and stored with their run")


@app.command("demo")
def demo(
    serve_after: bool = typer.Option(
        True, "--serve/--no-serve", help="End by serving the API on the demo database."
    ),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port of the API."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Worker processes serving the API (default: one per core; 1: this process).",
    ),
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
    _demo_model(db, settings)
    console.print(render_status(collect_status(settings, db)))
    if serve_after:
        from crystaldb.api.server import describe, usable_cores
        from crystaldb.api.server import serve as run_server

        count = workers or usable_cores()
        console.print(
            f"Serving the demo database: GraphiQL at http://127.0.0.1:{port}/graphql, "
            f"{describe(count)} (Ctrl-C stops it; --no-serve skips this)"
        )
        run_server(db, port=port, workers=count)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except CrystaldbError as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
        sys.exit(2)
