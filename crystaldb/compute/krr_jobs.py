"""Training and running kernel ridge regression models: the database and Dask edges of `krr`.

`train_krr` reads a release's frozen labels and splits, and its kernel from Zarr; chooses the
regularisation by k-fold cross-validation on the training split; fits; scores the test split;
and stores the model row with its metrics and a weights file (sha256 recorded).

For zeta = 1 (the paper's linear average kernel) the dual model collapses to one weight vector
per species triple, w = sum_j alpha_j p_j / |p_j|, since K(x, j) = p_x . p_j / (|p_x| |p_j|).
A prediction is then one dot product with the structure's own average spectrum: exact, cheap,
and independent of the training set's size, so `predict` streams any number of structures
(the 260,000 of a COD screening) through Dask workers in bounded batches.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select

from crystaldb.compute.cells import Cell, Selection, batches, load_cells, select_structures
from crystaldb.compute.kernel_build import KERNEL_KIND, KernelError, read_spectra
from crystaldb.compute.kernels import linear_kernel
from crystaldb.compute.krr import (
    DEFAULT_GRID,
    Fit,
    cross_validate,
    fit,
    learning_curve,
    predict,
    regression_metrics,
)
from crystaldb.compute.predictions import write_predictions
from crystaldb.compute.soap import AverageSpectra, SoapHypers, average_spectra
from crystaldb.platform.cluster import bounded_map, dask_client, worker_count
from crystaldb.platform.database import Database
from crystaldb.platform.errors import CrystaldbError
from crystaldb.platform.settings import Settings
from crystaldb.platform.store import ArtifactStore
from crystaldb.schema import DescriptorSet, KernelMatrix, Label, Model, ReleaseMember
from crystaldb.schema.runs import track_run

PREDICT_BATCH = 64
Progress = Callable[[str, int, int], None]


class ModelError(CrystaldbError):
    """A model that cannot be trained or used as asked."""


def learning_curve_png(curve: list[dict[str, float]], baseline: float, name: str) -> bytes:
    """Test MAE against training size on log axes, with the median baseline: a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.5), dpi=100)
    sizes = [p["train"] for p in curve]
    axes.loglog(sizes, [p["test_mae"] for p in curve], "o-", label=name)
    axes.axhline(baseline, color="grey", linestyle="--", label="predict the training median")
    axes.set_xlabel("training structures")
    axes.set_ylabel("test MAE (eV)")
    axes.set_title("Learning curve")
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


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


@dataclass(frozen=True)
class KrrWeights:
    """Everything a KRR model needs to predict, as stored in its weights file."""

    hypers: SoapHypers
    mean: float
    regularisation: float
    train_ids: np.ndarray
    alpha: np.ndarray
    primal: AverageSpectra  # w per species triple, as a one-row block set

    def to_bytes(self) -> bytes:
        """An .npz file: arrays plus the hyperparameters as JSON."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            hypers=np.array(json.dumps(self.hypers.record())),
            mean=np.array(self.mean),
            regularisation=np.array(self.regularisation),
            train_ids=self.train_ids,
            alpha=self.alpha,
            primal_keys=self.primal.keys,
            primal_values=self.primal.values,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> KrrWeights:
        """Read a weights file back."""
        with np.load(io.BytesIO(data)) as f:
            record = json.loads(str(f["hypers"]))
            record.pop("featomic", None)
            keys, values = f["primal_keys"], f["primal_values"]
            return cls(
                hypers=SoapHypers(**record),
                mean=float(f["mean"]),
                regularisation=float(f["regularisation"]),
                train_ids=f["train_ids"],
                alpha=f["alpha"],
                primal=AverageSpectra(
                    indptr=np.array([0, len(keys)]), keys=keys, values=values, norms=np.ones(1)
                ),
            )

    def predict(self, spectra: AverageSpectra) -> np.ndarray:
        """Band gaps of structures from their average spectra, clipped at 0 eV."""
        dots = linear_kernel(spectra, self.primal)[:, 0]
        inverse = np.zeros_like(spectra.norms)
        np.divide(1.0, spectra.norms, out=inverse, where=spectra.norms > 0)
        return np.maximum(dots * inverse + self.mean, 0.0)


def predict_cells(cells: Sequence[Cell], weights: KrrWeights) -> np.ndarray:
    """Worker (and API): predictions for cells that need not be in the database."""
    return weights.predict(average_spectra(cells, weights.hypers))


# --- training -------------------------------------------------------------------------------


def _release_labels(db: Database, selection: Selection) -> np.ndarray:
    """The frozen label of every member, in release order (NaN where a member has none)."""
    query = (
        select(ReleaseMember.structure_id, Label.value)
        .outerjoin(Label, Label.id == ReleaseMember.label_id)
        .where(ReleaseMember.release_id == selection.release_id)
        .order_by(ReleaseMember.position)
    )
    with db.session() as session:
        values = {sid: value for sid, value in session.execute(query)}
    return np.array([np.nan if values[s] is None else values[s] for s in selection.structure_ids])


def _kernel(db: Database, kernel_id: int) -> tuple[KernelMatrix, dict[str, Any]]:
    """A complete square average kernel, and the descriptor hyperparameters behind it."""
    with db.session() as session:
        kernel = session.get(KernelMatrix, kernel_id)
        if kernel is None:
            raise KernelError(f"--kernel: no kernel {kernel_id} (see `crystaldb kernel list`)")
        if kernel.status != "complete":
            raise KernelError(
                f"--kernel {kernel_id} is still {kernel.status}: re-run `crystaldb kernel build`"
                " with the same arguments to finish it"
            )
        if kernel.row_ids != kernel.col_ids or kernel.kernel != KERNEL_KIND:
            raise KernelError(f"--kernel {kernel_id}: training needs a square average kernel")
        descriptor = session.get_one(DescriptorSet, kernel.descriptor_set_id)
        session.expunge(kernel)
        return kernel, dict(descriptor.hyperparameters)


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
    """Fit on the release's train split by k-fold CV over `grid`; score on its test split."""
    kernel, record = _kernel(db, kernel_id)
    selection = select_structures(db, release=release)
    assert selection.splits is not None
    labels = _release_labels(db, selection)
    splits = np.array(selection.splits)
    ids = np.array(selection.structure_ids)
    train_mask, test_mask = (splits == "train") & ~np.isnan(labels), splits == "test"
    if train_mask.sum() < folds:
        raise ModelError(
            f"--release {release}: {int(train_mask.sum())} labelled training structures,"
            f" fewer than the {folds} folds; create the release with a split (e.g. ordered:N,M)"
        )
    position = {sid: i for i, sid in enumerate(kernel.row_ids)}
    missing = [int(s) for s in ids if s not in position]
    if missing:
        raise KernelError(
            f"--kernel {kernel_id} lacks {len(missing)} members of release {release}: build one"
            f" with `crystaldb kernel build --release {release}`"
        )
    store = ArtifactStore(settings.store_location)
    matrix = store.open_array(f"kernels/{kernel_id}/matrix")

    def read(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.asarray(matrix.oindex[rows, cols])

    train = np.array([position[s] for s in ids[train_mask]])
    test = np.array([position[s] for s in ids[test_mask & ~np.isnan(labels)]])
    y_train, y_test = labels[train_mask], labels[test_mask & ~np.isnan(labels)]
    parameters = {
        "model": "krr",
        "kernel_id": kernel_id,
        "release": release,
        "grid": list(grid),
        "folds": folds,
        "seed": seed,
    }
    with track_run(db, "train", parameters) as run:
        cv = cross_validate(
            read,
            train,
            y_train,
            grid,
            folds,
            seed,
            on_fold=(lambda d, t: on_progress("folds", d, t)) if on_progress else None,
        )
        model_fit = fit(read, train, y_train, cv.best)
        metrics: dict[str, Any] = {"cv_mae": dict(zip(map(str, cv.grid), cv.mae, strict=True))}
        baseline = float(np.abs(y_test - np.median(y_train)).mean()) if len(test) else np.nan
        if len(test):
            guess = predict(read, test, train, model_fit)
            metrics["test"] = regression_metrics(guess, y_test, seed=seed)
            metrics["baseline_median_mae"] = baseline
            curve = learning_curve(read, train, y_train, test, y_test, cv.best, seed=seed)
            metrics["learning_curve"] = [{"train": n, "test_mae": m} for n, m in curve]
        weights = _weights(db, store, kernel, record, ids[train_mask], model_fit)
        model_name = name or f"krr-{release.replace(':', '-')}-run{run.id}"
        model_id = _store_model(
            db, store, weights, model_name, kernel, selection, record, cv, metrics, run.id
        )
        if metrics.get("learning_curve"):
            plot = learning_curve_png(metrics["learning_curve"], baseline, model_name)
            store.put_bytes(f"models/{model_name}-learning-curve.png", plot)
        run.results.update(model_id=model_id, regularisation=cv.best)
    return TrainSummary(
        model_id=model_id,
        name=model_name,
        run_id=run.id,
        regularisation=cv.best,
        cv_mae=dict(zip(cv.grid, cv.mae, strict=True)),
        metrics=metrics.get("test", {}),
        baseline_mae=baseline,
        learning_curve=metrics.get("learning_curve", []),
        plot_uri=store.uri(f"models/{model_name}-learning-curve.png")
        if metrics.get("learning_curve")
        else None,
    )


def _weights(
    db: Database,
    store: ArtifactStore,
    kernel: KernelMatrix,
    record: dict[str, Any],
    train_ids: np.ndarray,
    model_fit: Fit,
) -> KrrWeights:
    """The dual coefficients and their primal form, summed a batch of structures at a time."""
    with db.session() as session:
        order = session.get_one(DescriptorSet, kernel.descriptor_set_id).structure_ids
    position = {sid: i for i, sid in enumerate(order)}
    rows = np.array([position[int(s)] for s in train_ids])
    total: dict[tuple[int, int, int], np.ndarray] = {}
    key = f"descriptors/{kernel.descriptor_set_id}"
    for start in range(0, len(rows), 1024):
        part = read_spectra(store, key, rows[start : start + 1024])
        scale = model_fit.alpha[start : start + 1024] / part.norms
        owner = np.repeat(np.arange(part.num_structures), np.diff(part.indptr))
        for b, triple in enumerate(map(tuple, part.keys.tolist())):
            contribution = part.values[b] * scale[owner[b]]
            total[triple] = total.get(triple, 0) + contribution
    triples = sorted(total)
    hypers = {k: v for k, v in record.items() if k != "featomic"}
    return KrrWeights(
        hypers=SoapHypers(**hypers),
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
) -> int:
    """Weights to the artifact store (sha256 kept), then the model row, in that order."""
    from crystaldb.platform.provenance import software_versions

    with db.session() as session:
        if session.scalar(select(Model.id).where(Model.name == name)) is not None:
            raise ModelError(f"--name: a model called {name!r} exists already")
    key = f"models/{name}.npz"
    sha = store.put_bytes(key, weights.to_bytes())
    splits = selection.splits or ()
    with db.session() as session:
        model = Model(
            name=name,
            architecture="krr",
            hyperparameters={
                "descriptor": record,
                "kernel": KERNEL_KIND,
                "zeta": kernel.hyperparameters.get("zeta", 1.0),
                "regularisation": cv.best,
                "grid": list(cv.grid),
                "folds": cv.folds,
                "target_mean": weights.mean,
            },
            release_id=selection.release_id,
            split={s: splits.count(s) for s in sorted(set(splits))},
            kernel_id=kernel.id,
            metrics=metrics,
            weights_uri=store.uri(key),
            weights_sha256=sha,
            library_versions=software_versions(),
            device="cpu",
            run_id=run_id,
        )
        session.add(model)
        session.flush()
        return model.id


# --- prediction -----------------------------------------------------------------------------


def load_krr(db: Database, settings: Settings, model_id: int) -> tuple[Model, KrrWeights]:
    """A KRR model row and its weights, checked against the recorded sha256."""
    import hashlib

    with db.session() as session:
        model = session.get(Model, model_id)
        if model is None:
            raise ModelError(f"--model: no model {model_id} (see `crystaldb models`)")
        session.expunge(model)
    if model.architecture != "krr":
        raise ModelError(f"--model {model_id} is a {model.architecture} model, not krr")
    if model.hyperparameters.get("zeta", 1.0) != 1.0:
        raise ModelError(f"--model {model_id}: prediction supports zeta = 1 KRR models")
    store = ArtifactStore(settings.store_location)
    data = store.get_bytes(f"models/{model.name}.npz")
    if hashlib.sha256(data).hexdigest() != model.weights_sha256:
        raise ModelError(f"model {model_id}: weights file {model.weights_uri} fails its sha256")
    return model, KrrWeights.from_bytes(data)


def predict_krr(
    db: Database,
    settings: Settings,
    model_id: int,
    selection: Selection,
    workers: int | None = None,
    batch_size: int = PREDICT_BATCH,
    on_progress: Progress | None = None,
) -> tuple[int, int]:
    """Predict every selected structure on Dask workers; returns (run id, rows written)."""
    model, weights = load_krr(db, settings, model_id)
    ids = list(selection.structure_ids)
    if not ids:
        raise ModelError(f"{selection.description}: nothing to predict")
    parameters = {
        "model_id": model_id,
        "selection": selection.description,
        "batch_size": batch_size,
        "structures": len(ids),
    }
    written = 0
    with track_run(db, "predict", parameters, device="cpu") as run:
        with dask_client(settings, n_workers=workers) as client:
            shared = client.scatter(weights, broadcast=True)
            work = (load_cells(db, batch) for batch in batches(ids, batch_size))
            window = 2 * worker_count(client)
            for index, values in bounded_map(client, predict_cells, work, window, shared):
                batch = ids[index * batch_size : (index + 1) * batch_size]
                written += write_predictions(db, model.id, run.id, batch, values)
                if on_progress:
                    on_progress("predict", written, len(ids))
        run.results.update(written=written)
    return run.id, written


def list_models(db: Database) -> list[tuple[Model, str | None]]:
    """Every model with its release as NAME:VERSION, newest first."""
    from crystaldb.schema import Release

    with db.session() as session:
        rows = session.execute(
            select(Model, Release.name, Release.version)
            .outerjoin(Release, Release.id == Model.release_id)
            .order_by(Model.id.desc())
        ).all()
        session.expunge_all()
    return [(model, f"{name}:{version}" if name else None) for model, name, version in rows]
