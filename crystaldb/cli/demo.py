"""`crystaldb demo`: runs the demo workflow, shows each step, then serves the API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import typer

from crystaldb.api.server import describe, usable_cores
from crystaldb.api.server import serve as run_server
from crystaldb.cli.common import (
    StageProgress,
    console,
    default_of,
    soap_label,
    stage_progress,
    step,
    tally_progress,
)
from crystaldb.cli.ingest import ingest_tally, print_ingest_summary
from crystaldb.cli.status import render_status
from crystaldb.core.soap import SoapHypers
from crystaldb.jobs.ingest import IngestSummary
from crystaldb.jobs.kernels import KernelSummary
from crystaldb.jobs.krr import TrainSummary, train_krr
from crystaldb.platform.database import Database, connect
from crystaldb.platform.settings import load_settings
from crystaldb.workflows.demo import IngestCallbacks, run_demo

TICK = "[green]✓[/green]"


class ConsoleReporter:
    """The demo's steps on the console: ticks, bars and one line per result."""

    def __init__(self, db: Database) -> None:
        """Keep the database: an ingest's refusals are read back from it for the summary."""
        self.db = db

    def timed(self, message: str) -> AbstractContextManager[None]:
        """A spinner, then a tick with the step's duration."""
        return step(message)

    @contextmanager
    def ingesting(self, title: str) -> Iterator[IngestCallbacks]:
        """Name the folder, then show the ingest bar."""
        console.print(f"Ingesting the bundled sample: {title}")
        with tally_progress("ingest", ingest_tally) as on_progress:
            yield on_progress.set_total, on_progress

    def staged(self) -> AbstractContextManager[StageProgress]:
        """One bar per stage, as `kernel build` and `predict` show them."""
        return stage_progress()

    def ingested(self, summary: IngestSummary) -> None:
        """The same summary `crystaldb ingest` prints."""
        print_ingest_summary(self.db, summary)

    def kernel_built(self, kernel: KernelSummary) -> None:
        """The kernel's size and where its array is."""
        console.print(
            f"{TICK} kernel {kernel.kernel_id}: average SOAP ({soap_label(SoapHypers())}), "
            f"{kernel.shape[0]} x {kernel.shape[1]}, in {kernel.array_uri}"
        )

    def model_trained(self, model: TrainSummary) -> None:
        """The model's test MAE beside the median baseline's."""
        test, folds = model.metrics, default_of(train_krr, "folds")
        console.print(
            f"{TICK} model {model.model_id} ({model.name}): KRR, regularisation "
            f"{model.regularisation:g} by {folds}-fold CV; test MAE {test['mae']:.2f} eV on "
            f"{test['n']} crystals (predicting the training median: {model.baseline_mae:.2f} eV)"
        )

    def predicted(self, written: int) -> None:
        """How many gaps were stored."""
        console.print(f"{TICK} {written} band gaps predicted and stored with their run")


def demo(
    serve_after: bool = typer.Option(
        True, "--serve/--no-serve", help="End by serving the API on the demo database."
    ),
    port: int = typer.Option(
        default_of(run_server, "port"), "--port", min=1, max=65535, help="Port of the API."
    ),
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
    with step(f"Connected to {where}"):
        db = connect(settings)
    done = run_demo(db, settings, ConsoleReporter(db))
    console.print(render_status(done.status))
    if serve_after:
        count, host = workers or usable_cores(), default_of(run_server, "host")
        console.print(
            f"Serving the demo database: GraphiQL at http://{host}:{port}/graphql, "
            f"{describe(count)} (Ctrl-C stops it; --no-serve skips this)"
        )
        run_server(db, port=port, workers=count)
