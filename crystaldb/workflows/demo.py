"""`crystaldb demo` as a workflow: migrate, ingest the bundled sample, model it, predict, status.

The workflow decides what runs and in which order; a front end (the CLI) passes a reporter
that shows each step as it runs and what it produced, so no console code lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from crystaldb.formats.labels import LabelTable, read_label_table
from crystaldb.jobs.ingest import IngestSummary, ingest_paths
from crystaldb.jobs.kernels import KernelSummary, build_kernel
from crystaldb.jobs.krr import TrainSummary, train_krr
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.query.selection import select_structures
from crystaldb.release.create import create_release, list_releases
from crystaldb.schema import migrate
from crystaldb.workflows.status import collect_status

SAMPLE = Path(__file__).parents[1] / "data" / "sample"
# The bundled sample's folders and the database their file names are ids of (None: COD ids
# are recognised from names like 1000002.cif).
SAMPLE_SOURCES = ((("cod", "malformed"), None), (("cofs",), "curated-cofs"))
JARVIS = SAMPLE / "jarvis"  # 70 crystals, 50 of them with their OptB88vdW gaps (id_prop.csv)
DEMO_LABEL = "band_gap:OptB88vdW"
DEMO_RELEASE = "jarvis-demo"
DEMO_TRAIN, DEMO_TEST = 40, 10  # the labelled crystals in file order: first train, last test

IngestCallbacks = tuple[Callable[[int | None], None], Callable[[IngestSummary], None]]
StageProgress = Callable[[str, int, int], None]


class DemoReporter(Protocol):
    """How a front end shows the demo: it owns every line and bar, the workflow the order."""

    def timed(self, message: str) -> AbstractContextManager[None]:
        """A short step, reported with its duration once done."""

    def ingesting(self, title: str) -> AbstractContextManager[IngestCallbacks]:
        """One bundled folder being ingested; the callbacks carry its total and progress."""

    def staged(self) -> AbstractContextManager[StageProgress]:
        """A job that runs in stages: the kernel, the predictions."""

    def ingested(self, summary: IngestSummary) -> None:
        """What became of one folder's files."""

    def kernel_built(self, kernel: KernelSummary) -> None:
        """The demo's kernel is complete."""

    def model_trained(self, model: TrainSummary) -> None:
        """The KRR model is fitted and scored."""

    def predicted(self, written: int) -> None:
        """Predictions are stored."""


@dataclass(frozen=True)
class DemoModel:
    """The modelling half of the demo: its kernel, its model, how many gaps it predicted."""

    kernel: KernelSummary
    model: TrainSummary
    predicted: int


@dataclass(frozen=True)
class Demo:
    """What the demo did: each ingest, the model, and the status at the end."""

    ingests: list[IngestSummary]
    model: DemoModel
    status: dict[str, Any]


def run_demo(db: Database, settings: Settings, reporter: DemoReporter) -> Demo:
    """Migrate, ingest every bundled folder, build the JARVIS model, then take stock."""
    with reporter.timed("Schema migrated"):
        migrate.upgrade(db)
    ingests = []
    for folders, source in SAMPLE_SOURCES:
        paths = [SAMPLE / folder for folder in folders]
        ingests.append(ingest_sample(db, settings, reporter, paths, ", ".join(folders), source))
    functional = DEMO_LABEL.partition(":")[2]
    table = read_label_table(JARVIS / "id_prop.csv", DEMO_LABEL, code="VASP")
    title = f"{JARVIS.name}, with its {functional} band gaps"
    ingests.append(ingest_sample(db, settings, reporter, [JARVIS], title, labels=table))
    model = demo_model(db, settings, reporter)
    return Demo(ingests, model, collect_status(settings, db))


def ingest_sample(
    db: Database,
    settings: Settings,
    reporter: DemoReporter,
    paths: list[Path],
    title: str,
    source: str | None = None,
    labels: LabelTable | None = None,
) -> IngestSummary:
    """Ingest bundled folders under the reporter's bar; re-running the demo stores nothing twice."""
    with reporter.ingesting(title) as (on_total, on_progress):
        summary = ingest_paths(
            db,
            settings,
            paths,
            database=source,
            label_table=labels,
            on_progress=on_progress,
            on_total=on_total,
        )
    reporter.ingested(summary)
    return summary


def demo_model(db: Database, settings: Settings, reporter: DemoReporter) -> DemoModel:
    """The JARVIS crystals with their real gaps: a release, a kernel, a KRR model, predictions."""
    from crystaldb.jobs.predict import predict  # torch: only once the demo gets this far

    if not any(r.name == DEMO_RELEASE for r in list_releases(db)):
        split = f"first {DEMO_TRAIN} train, last {DEMO_TEST} test"
        with reporter.timed(f"Release {DEMO_RELEASE} created ({split})"):
            create_release(
                db,
                DEMO_RELEASE,
                "1.0",
                label=DEMO_LABEL,
                split=f"ordered:{DEMO_TRAIN},{DEMO_TEST}",
            )
    members = select_structures(db, release=DEMO_RELEASE)
    with reporter.staged() as update:
        kernel = build_kernel(
            db, settings, members.structure_ids, on_progress=update, description=DEMO_RELEASE
        )
    reporter.kernel_built(kernel)
    trained = train_krr(db, settings, kernel.kernel_id, DEMO_RELEASE)
    reporter.model_trained(trained)
    with reporter.staged() as update:
        _, written = predict(db, settings, trained.model_id, members, on_progress=update)
    reporter.predicted(written)
    return DemoModel(kernel, trained, written)
