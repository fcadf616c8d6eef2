"""`crystaldb reproduce`: a published protocol in one command, printed beside the paper."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from crystaldb.cli.common import console, current_database, default_of, soap_label, stage_progress
from crystaldb.cli.ingest import print_ingest_summary
from crystaldb.cli.train import print_krr
from crystaldb.core.soap import SoapHypers
from crystaldb.jobs.krr import TrainSummary
from crystaldb.platform.database import Database
from crystaldb.platform.settings import load_settings
from crystaldb.workflows.reproduce import PAPER, Step, check_request, reproduce_omdb_gap1

app = typer.Typer(
    help="Published protocols as one command, beside the published numbers: omdb-gap1.",
    no_args_is_help=True,
)


def _default(name: str) -> Any:
    """The protocol's own default for one of its options."""
    return default_of(reproduce_omdb_gap1, name)


@app.command("omdb-gap1")
def reproduce_omdb_gap1_command(
    folder: Path = typer.Argument(
        ..., help="A folder in the OMDB-GAP1 layout: structures.xyz, bandgaps.csv, CODids.csv."
    ),
    train: int = typer.Option(_default("train"), "--train", help="The first N structures train."),
    test: int = typer.Option(
        _default("test"), "--test", help="The last M structures are the test set."
    ),
    landmarks: int | None = typer.Option(
        None, "--landmarks", help="Nyström KRR over M landmarks of the train split, not exact."
    ),
    landmark_seed: int = typer.Option(
        _default("landmark_seed"), "--landmark-seed", help="Seed of the landmark draw."
    ),
    folds: int = typer.Option(_default("folds"), "--folds", min=2, help="Cross-validation folds."),
    release_name: str = typer.Option(
        _default("release_name"),
        "--release-name",
        help="Name of the release (versions 1, 2, ...).",
    ),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Local Dask workers."),
) -> None:
    """The OMDB-GAP1 paper's SOAP-KRR protocol: ingest, release, kernel, KRR, beside the paper."""
    check_request(folder, train, test, folds, release_name)
    settings = load_settings()
    db = current_database(settings)
    with stage_progress() as update:
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
            on_step=step_printer(db, train, test, folds),
        )
    console.print(beside_the_paper(done.model, train, test))


def step_printer(db: Database, train: int, test: int, folds: int) -> Step:
    """What to print as each step of the protocol ends."""

    def on_step(step: str, result: Any) -> None:
        """Print one finished step the way its own command would."""
        if step == "ingest":
            print_ingest_summary(db, result)
        elif step == "release":
            ref, reused = result
            done = "reused (same members, split and gaps)" if reused else "created"
            console.print(f"release {ref} {done}: first {train} train, last {test} test")
        elif step == "kernel":
            console.print(
                f"kernel {result.kernel_id}: average SOAP ({soap_label(SoapHypers())}), "
                f"{result.shape[0]} x {result.shape[1]}, {result.tiles_computed} of "
                f"{result.tiles_total} tiles computed by run {result.run_id}"
            )
        else:
            print_krr(result, folds)

    return on_step


def beside_the_paper(model: TrainSummary, train: int, test: int) -> Table:
    """This run's test metrics and median baseline beside the paper's SOAP numbers."""
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
