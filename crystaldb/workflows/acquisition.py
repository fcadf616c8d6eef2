"""`crystaldb label curve`: the active-learning curve of a release, simulated on its labels.

The release's stored square kernel (the one named, or else the newest complete SOAP kernel
with the default settings over all its members) is read into memory for its labelled train
and test structures; `core/acquisition.py` then acquires from the train split by committee
spread and at random, scoring on the test split. The curves are the run's results and the
log-log figure (mean test MAE with a band of one standard deviation over the seeds) is stored
beside them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from crystaldb.core.acquisition import (
    CV_FOLDS,
    AcquisitionCurves,
    AcquisitionError,
    AcquisitionHypers,
    acquisition_curves,
)
from crystaldb.core.krr import load_square
from crystaldb.core.plots import band_curves_png
from crystaldb.core.soap import SoapHypers
from crystaldb.jobs.kernels import KERNEL_KIND, KernelError, list_kernels
from crystaldb.jobs.krr import krr_problem, stored_kernel
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.platform.store import ArtifactStore, open_array_uri
from crystaldb.query.selection import release_labels, select_structures
from crystaldb.schema.runs import track_run

LABELS = {"random": "random acquisition", "spread": "acquisition by committee spread"}


@dataclass(frozen=True)
class AcquisitionCurve:
    """What `crystaldb label curve` reports and the run stores."""

    release: str
    kernel_id: int
    run_id: int
    n_pool: int
    n_test: int
    curves: AcquisitionCurves
    plot_uri: str


def default_kernel(db: Database, release: str, members: list[int]) -> int:
    """The newest complete square SOAP kernel of default settings over every member."""
    wanted, needed = SoapHypers().record(), set(members)
    for kernel, hypers in list_kernels(db):
        if (
            kernel.status == "complete"
            and kernel.kernel == KERNEL_KIND
            and hypers == wanted
            and kernel.hyperparameters.get("zeta", 1.0) == 1.0
            and kernel.row_ids == kernel.col_ids
            and needed <= set(kernel.row_ids)
        ):
            return kernel.id
    raise KernelError(
        f"--release {release}: no complete square SOAP kernel of the default settings covers"
        f" its members; build one with `crystaldb kernel build --release {release}`, or name"
        " a square kernel with --kernel ID"
    )


def _square(db: Database, kernel_id: int, release: str) -> tuple[np.ndarray, np.ndarray, int]:
    """The kernel over the labelled train then test members, their labels, and the pool size."""
    kernel, _ = stored_kernel(db, kernel_id)
    if kernel.row_ids != kernel.col_ids:
        raise KernelError(
            f"--kernel {kernel_id}: a rectangle (Nyström landmarks); the curve needs a square"
            f" kernel: `crystaldb kernel build --release {release}`"
        )
    selection = select_structures(db, release=release)
    problem = krr_problem(kernel, release, selection, release_labels(db, selection), CV_FOLDS)
    matrix = open_array_uri(kernel.array_uri, f"kernel {kernel_id}")
    index = np.concatenate([problem.train, problem.test])
    square = load_square(lambda rows, cols: np.asarray(matrix.oindex[rows, cols]), index)
    return square, np.concatenate([problem.y_train, problem.y_test]), len(problem.train)


def acquisition_curve(
    db: Database,
    settings: Settings,
    release: str,
    kernel_id: int | None,
    hypers: AcquisitionHypers,
    on_seed: Callable[[int, int], None] | None = None,
) -> AcquisitionCurve:
    """Simulate both strategies on the release's labels; keep the curves and their figure."""
    if kernel_id is None:
        members = select_structures(db, release=release).structure_ids
        kernel_id = default_kernel(db, release, list(members))
    square, y, n_pool = _square(db, kernel_id, release)
    if len(y) == n_pool:
        raise AcquisitionError(
            f"--release {release}: no labelled test structures to score the curves on; create"
            " the release with --label and --split (e.g. ordered:N,M)"
        )
    hypers.check(n_pool)
    parameters = {"release": release, "kernel_id": kernel_id, **asdict(hypers)}
    with track_run(db, "acquisition-curve", parameters) as run:
        pool, test = np.arange(n_pool), np.arange(n_pool, len(y))
        curves = acquisition_curves(square, y, pool, test, hypers, on_seed)
        store = ArtifactStore(settings.store_location)
        key = f"acquisition/run{run.id}-curve.png"
        title = f"{release}: {n_pool} train, {len(test)} test, {hypers.seeds} seeds"
        bands = {LABELS[s]: c.points() for s, c in curves.curves.items()}
        store.put_bytes(key, band_curves_png(bands, title))
        plot_uri = store.uri(key)
        run.results.update(
            regularisation=curves.regularisation,
            curves={s: [list(p) for p in c.points()] for s, c in curves.curves.items()},
            plot=plot_uri,
        )
    return AcquisitionCurve(release, kernel_id, run.id, n_pool, len(test), curves, plot_uri)
