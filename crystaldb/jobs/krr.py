"""Training and running kernel ridge regression models: the database and Dask edges of `krr`.

`train_krr` reads a release's frozen labels and splits, and its kernel from Zarr; chooses the
regularisation by k-fold cross-validation on the training split; fits; scores the test split;
and stores the model row with its metrics and a weights file (sha256 recorded). A square
kernel trains exact KRR; a rectangle of the release against m landmarks of its train split
(`kernel build --landmarks M`) trains Nyström KRR, whose alpha weighs the landmarks: the
weights file then stores the landmark ids as the training ids, and everything downstream
(primal weights, `predict`) is the same.

For zeta = 1 (the paper's linear average kernel) the dual model collapses to one weight vector
per species triple, w = sum_j alpha_j p_j / |p_j|, since K(x, j) = p_x . p_j / (|p_x| |p_j|).
A prediction is then one dot product with the structure's own average spectrum: exact, cheap,
and independent of the training set's size, so `inference.predict` streams any number of
structures (the 260,000 of a COD screening) through Dask workers in bounded batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crystaldb.core.descriptors import KERNEL_NAMES, hypers_from_record
from crystaldb.core.krr import (
    DEFAULT_GRID,
    CrossValidation,
    Fit,
    Reader,
    cross_validate,
    exact_advice,
    fit,
    gigabytes,
    learning_curve,
    nystrom_fit,
    predict,
    regression_metrics,
)
from crystaldb.core.krr_model import KrrWeights
from crystaldb.core.plots import learning_curve_png
from crystaldb.core.soap import AverageSpectra
from crystaldb.jobs.kernels import KernelError, complete_kernel, read_spectra
from crystaldb.jobs.models import ModelError, model_row, read_weights, store_model
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.platform.store import ArtifactStore, Keys, open_array_uri
from crystaldb.query.selection import Selection, release_labels, select_structures
from crystaldb.schema import DescriptorSet, KernelMatrix, Model
from crystaldb.schema.runs import track_run

log = logging.getLogger(__name__)

WEIGHTS_SUFFIX = "npz"
NYSTROM_WARN_BYTES = 8e9  # a Nyström fit needing more memory than this is warned about
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TrainSummary:
    """What `crystaldb train krr` reports."""

    model_id: int
    name: str
    run_id: int
    regularisation: float
    cv_mae: dict[float, float]
    metrics: dict[str, Any]
    baseline_mae: float
    learning_curve: list[dict[str, float]]
    plot_uri: str | None
    nystrom: dict[str, Any] | None = None  # landmarks, seed, release, jitter of the final fit
    cv_jitter: dict[float, float] = field(default_factory=dict)  # only where CV needed one


# --- training -------------------------------------------------------------------------------


def stored_kernel(db: Database, kernel_id: int) -> tuple[KernelMatrix, dict[str, Any]]:
    """A complete average kernel, and the descriptor hyperparameters behind it."""
    with db.session() as session:
        kernel = complete_kernel(session, kernel_id)
        if kernel.kernel not in KERNEL_NAMES:
            raise KernelError(
                f"--kernel {kernel_id}: training needs a SOAP or MBTR kernel, not {kernel.kernel}"
            )
        descriptor = session.get_one(DescriptorSet, kernel.descriptor_set_id)
        session.expunge(kernel)
        return kernel, dict(descriptor.hyperparameters)


@dataclass(frozen=True)
class Problem:
    """A release's labelled train and test structures as rows of a kernel, and the columns.

    Exact KRR: a square kernel, `columns` the training rows. Nyström: a rectangle whose
    columns are m landmarks from the train split; `landmarks` are their rows (K_mm).
    """

    train: np.ndarray  # kernel rows of the labelled training structures
    y_train: np.ndarray
    test: np.ndarray
    y_test: np.ndarray
    columns: np.ndarray  # kernel columns alpha weighs
    weight_ids: np.ndarray  # structure ids of those columns, stored with alpha
    landmarks: np.ndarray | None  # Nyström: kernel rows of the landmarks; None: exact

    def cross_validate(
        self, read: Reader, grid: Sequence[float], folds: int, seed: int, on_fold: Any
    ) -> CrossValidation:
        """The regularisation by k-fold CV, exact or Nyström."""
        nystrom = None if self.landmarks is None else (self.landmarks, self.columns)
        return cross_validate(
            read, self.train, self.y_train, grid, folds, seed, on_fold, nystrom=nystrom
        )

    def fit(self, read: Reader, regularisation: float) -> Fit:
        """Coefficients on the whole training split."""
        if self.landmarks is None:
            return fit(read, self.train, self.y_train, regularisation)
        return nystrom_fit(
            read, self.train, self.y_train, self.landmarks, self.columns, regularisation
        )

    def learning_curve(self, read: Reader, regularisation: float, seed: int) -> list[Any]:
        """Test MAE on nested training subsets (the same subsets for both methods)."""
        nystrom = None if self.landmarks is None else (self.landmarks, self.columns)
        return learning_curve(
            read, self.train, self.y_train, self.test, self.y_test, regularisation,
            seed=seed, nystrom=nystrom,
        )  # fmt: skip


def krr_problem(
    kernel: KernelMatrix, release: str, selection: Selection, labels: np.ndarray, folds: int
) -> Problem:
    """Rows and columns of the kernel for the release's splits; what is wrong named."""
    splits, ids = np.array(selection.splits), np.array(selection.structure_ids)
    train_mask = (splits == "train") & ~np.isnan(labels)
    test_mask = (splits == "test") & ~np.isnan(labels)
    if train_mask.sum() < folds:
        raise ModelError(
            f"--release {release}: {int(train_mask.sum())} labelled training structures,"
            f" fewer than the {folds} folds; create the release with a split (e.g. ordered:N,M)"
        )
    position = {sid: i for i, sid in enumerate(kernel.row_ids)}
    missing = [int(s) for s in ids if s not in position]
    if missing:
        raise KernelError(
            f"--kernel {kernel.id} lacks {len(missing)} members of release {release}: build one"
            f" with `crystaldb kernel build --release {release}`"
        )
    train = np.array([position[s] for s in ids[train_mask]])
    test = np.array([position[s] for s in ids[test_mask]], dtype=np.int64)
    y_train, y_test = labels[train_mask], labels[test_mask]
    if kernel.row_ids == kernel.col_ids:
        advice = exact_advice(len(train))
        if advice:
            _check_memory(kernel.id, 8.0 * len(train) ** 2, advice)
        return Problem(train, y_train, test, y_test, train, ids[train_mask], None)
    training = set(ids[train_mask].tolist())
    outside = [int(c) for c in kernel.col_ids if c not in training]
    if outside:
        raise KernelError(
            f"--kernel {kernel.id}: {len(outside)} of its {len(kernel.col_ids)} columns are not"
            f" labelled training structures of release {release} (first: structure"
            f" {outside[0]}); Nyström KRR takes its landmarks, the columns, from the train"
            f" split: build one with `crystaldb kernel build --release {release} --landmarks M`"
        )
    m = len(kernel.col_ids)
    needed = 8.0 * (3 * m * m + m * len(train) / folds)
    if needed > NYSTROM_WARN_BYTES:
        advice = (
            f"Nyström KRR with {m:,} landmarks needs about {gigabytes(needed)} of memory"
            " (3 m^2 floats and one fold's rows); fewer --landmarks need less"
        )
        _check_memory(kernel.id, needed, advice)
    landmarks = np.array([position[int(c)] for c in kernel.col_ids])
    weight_ids = np.array(kernel.col_ids, dtype=np.int64)
    return Problem(train, y_train, test, y_test, np.arange(m), weight_ids, landmarks)


def _check_memory(kernel_id: int, needed: float, advice: str) -> None:
    """Refuse when training would not fit in the memory available now, else warn."""
    import psutil

    available = psutil.virtual_memory().available
    if needed > available:
        raise ModelError(
            f"--kernel {kernel_id}: {advice}; this machine has {gigabytes(available)} available"
        )
    log.warning("--kernel %d: %s", kernel_id, advice)


def train_krr(
    db: Database,
    settings: Settings,
    kernel_id: int,
    release: str,
    grid: Sequence[float] = DEFAULT_GRID,
    folds: int = 10,
    seed: int = 0,
    name: str | None = None,
    on_progress: Progress | None = None,
) -> TrainSummary:
    """Fit on the release's train split by k-fold CV over `grid`; score on its test split.

    A square kernel trains exact KRR; a rectangle against landmarks of the train split
    (`kernel build --landmarks M`) trains Nyström KRR over those landmarks.
    """
    kernel, record = stored_kernel(db, kernel_id)
    selection = select_structures(db, release=release)
    assert selection.splits is not None
    labels = release_labels(db, selection)
    problem = krr_problem(kernel, release, selection, labels, folds)
    matrix = open_array_uri(kernel.array_uri, f"kernel {kernel_id}")
    store = ArtifactStore(settings.store_location)

    def read(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.asarray(matrix.oindex[rows, cols])

    parameters = {
        "model": "krr",
        "kernel_id": kernel_id,
        "release": release,
        "grid": list(grid),
        "folds": folds,
        "seed": seed,
    }
    y_train, y_test = problem.y_train, problem.y_test
    with track_run(db, "train", parameters) as run:
        on_fold = (lambda d, t: on_progress("folds", d, t)) if on_progress else None
        cv = problem.cross_validate(read, grid, folds, seed, on_fold)
        model_fit = problem.fit(read, cv.best)
        metrics: dict[str, Any] = {"cv_mae": dict(zip(map(str, cv.grid), cv.mae, strict=True))}
        if any(cv.jitter):
            metrics["cv_jitter"] = dict(zip(map(str, cv.grid), cv.jitter, strict=True))
        baseline = float(np.abs(y_test - np.median(y_train)).mean()) if len(y_test) else np.nan
        if len(y_test):
            guess = predict(read, problem.test, problem.columns, model_fit)
            metrics["test"] = regression_metrics(guess, y_test, seed=seed)
            metrics["baseline_median_mae"] = baseline
            curve = problem.learning_curve(read, cv.best, seed)
            metrics["learning_curve"] = [{"train": n, "test_mae": m} for n, m in curve]
        weights = _weights(db, kernel, record, problem.weight_ids, model_fit)
        model_name = name or f"krr-{release.replace(':', '-')}-run{run.id}"
        nystrom = _nystrom_record(kernel, problem, model_fit)
        model_id = _store_model(
            db, store, weights, model_name, kernel, selection, record, cv, metrics, run.id, nystrom
        )
        if metrics.get("learning_curve"):
            plot = learning_curve_png(metrics["learning_curve"], baseline, model_name)
            store.put_bytes(Keys.learning_curve(model_name), plot)
        run.results.update(model_id=model_id, regularisation=cv.best, nystrom=nystrom)
    return TrainSummary(
        model_id=model_id,
        name=model_name,
        run_id=run.id,
        regularisation=cv.best,
        cv_mae=dict(zip(cv.grid, cv.mae, strict=True)),
        metrics=metrics.get("test", {}),
        baseline_mae=baseline,
        learning_curve=metrics.get("learning_curve", []),
        plot_uri=store.uri(Keys.learning_curve(model_name))
        if metrics.get("learning_curve")
        else None,
        nystrom=nystrom,
        cv_jitter=dict(zip(cv.grid, cv.jitter, strict=True)) if any(cv.jitter) else {},
    )


def _nystrom_record(
    kernel: KernelMatrix, problem: Problem, model_fit: Fit
) -> dict[str, Any] | None:
    """What the model row keeps of the Nyström approximation: landmarks, their seed, jitter."""
    if problem.landmarks is None:
        return None
    chosen = kernel.hyperparameters.get("landmarks") or {}
    return {
        "landmarks": len(problem.columns),
        "seed": chosen.get("seed"),
        "release": chosen.get("release"),
        "jitter": model_fit.jitter,
    }


def _weights(
    db: Database,
    kernel: KernelMatrix,
    record: dict[str, Any],
    train_ids: np.ndarray,
    model_fit: Fit,
) -> KrrWeights:
    """The dual coefficients and their primal form, summed a batch of structures at a time."""
    with db.session() as session:
        descriptors = session.get_one(DescriptorSet, kernel.descriptor_set_id)
        order, uri = descriptors.structure_ids, descriptors.array_uri
    position = {sid: i for i, sid in enumerate(order)}
    rows = np.array([position[int(s)] for s in train_ids])
    total: dict[tuple[int, int, int], np.ndarray] = {}
    what = f"kernel {kernel.id} descriptors"
    for start in range(0, len(rows), 1024):
        part = read_spectra(uri, rows[start : start + 1024], what)
        scale = model_fit.alpha[start : start + 1024] / part.norms
        owner = np.repeat(np.arange(part.num_structures), np.diff(part.indptr))
        for b, triple in enumerate(map(tuple, part.keys.tolist())):
            contribution = part.values[b] * scale[owner[b]]
            total[triple] = total.get(triple, 0) + contribution
    triples = sorted(total)
    return KrrWeights(
        hypers=hypers_from_record(record),
        mean=model_fit.mean,
        regularisation=model_fit.regularisation,
        train_ids=train_ids.astype(np.int64),
        alpha=model_fit.alpha,
        primal=AverageSpectra(
            indptr=np.array([0, len(triples)]),
            keys=np.array(triples, dtype=np.int32).reshape(-1, 3),
            values=np.array([total[t] for t in triples]).reshape(len(triples), -1),
            norms=np.ones(1),
        ),
    )


def _store_model(
    db: Database,
    store: ArtifactStore,
    weights: KrrWeights,
    name: str,
    kernel: KernelMatrix,
    selection: Selection,
    record: dict[str, Any],
    cv: Any,
    metrics: dict[str, Any],
    run_id: int,
    nystrom: dict[str, Any] | None = None,
) -> int:
    """Weights and model row through the one `store_model`, with KRR's hyperparameters."""
    splits = selection.splits or ()
    extra = {"nystrom": nystrom} if nystrom else {}
    model_id, _ = store_model(
        db,
        store,
        name,
        WEIGHTS_SUFFIX,
        weights.to_bytes(),
        architecture="krr",
        hyperparameters={
            "descriptor": record,
            "kernel": kernel.kernel,
            "zeta": kernel.hyperparameters.get("zeta", 1.0),
            "regularisation": cv.best,
            "grid": list(cv.grid),
            "folds": cv.folds,
            "target_mean": weights.mean,
            **extra,
        },
        release_id=selection.release_id,
        split={s: splits.count(s) for s in sorted(set(splits))},
        kernel_id=kernel.id,
        metrics=metrics,
        device="cpu",
        run_id=run_id,
    )
    return model_id


# --- prediction -----------------------------------------------------------------------------


def load_krr(db: Database, settings: Settings, model_id: int) -> tuple[Model, KrrWeights]:
    """A KRR model row and its weights, checked against the recorded sha256."""
    model = model_row(db, model_id)
    if model.architecture != "krr":
        raise ModelError(f"--model {model_id} is a {model.architecture} model, not krr")
    if model.hyperparameters.get("zeta", 1.0) != 1.0:
        raise ModelError(f"--model {model_id}: prediction supports zeta = 1 KRR models")
    return model, KrrWeights.from_bytes(read_weights(model))
