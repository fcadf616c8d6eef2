"""The OMDB-GAP1 paper's model comparison on one release, as one job.

Olsthoorn et al. (2019) compare SOAP-KRR with SchNet on one fixed split, and the average of
the two as an ensemble. Here, on any release with a train and a test split: SOAP-KRR and
MBTR-KRR (`kernel build` + `train krr`: the release's square kernels, built or reused, with
the regularisation by cross-validation), SchNet, CGCNN and the edge-update MPNN (`train
schnet|cgcnn|mpnn`), each a stored model; every test structure predicted by each, the
predictions stored as rows of the comparison's run (so errors can be broken down later); test MAE
and RMSE with 95% bootstrap intervals (the same resampling as every model's metrics), the
median baseline, and the SOAP-KRR + SchNet average. Whether a model beats the baseline, or the
average its members, is a paired question: each difference of MAEs gets its own paired
bootstrap interval (`krr.mae_difference`). Learning curves: test MAE on nested
random subsets of the train split (`krr.nested_subsets`, the sizes `train krr` uses), KRR's
from its own fit, the networks' trained anew on each smaller subset with the same settings.
The table and curves are the run's results; the figure is stored beside them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from crystaldb.core.errors import CrystaldbError
from crystaldb.core.krr import mae_difference, nested_subsets, regression_metrics
from crystaldb.core.krr_model import predict_cells
from crystaldb.core.mbtr import MbtrHypers
from crystaldb.core.network_hypers import TrainingConfig
from crystaldb.core.plots import learning_curves_png
from crystaldb.core.soap import SoapHypers
from crystaldb.jobs.kernels import build_kernel
from crystaldb.jobs.krr import load_krr, train_krr
from crystaldb.jobs.predictions import write_predictions
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.platform.store import ArtifactStore
from crystaldb.query.selection import load_cells, release_labels, select_structures
from crystaldb.schema.runs import track_run

KRR_MODELS = ("soap-krr", "mbtr-krr")
NETWORKS = {"schnet": "schnet", "cgcnn": "cgcnn", "mpnn": "mpnn"}  # name: architecture
MODELS = (*KRR_MODELS, *NETWORKS)
ENSEMBLE = ("soap-krr", "schnet")  # the paper's average
CURVE_POINTS = 6  # as `train krr`'s learning curve
Progress = Callable[[str, int, int], None]
Step = Callable[[str, "ModelScore"], None]


class CompareError(CrystaldbError):
    """A release or request the comparison cannot run on, with what to do instead."""


@dataclass(frozen=True)
class ModelScore:
    """One model's row of the table, and its learning curve."""

    name: str
    model_id: int | None  # None for the ensemble (an average, not a stored model)
    metrics: dict[str, Any]  # n, mae, rmse, mae_ci95, rmse_ci95
    seconds: float  # training time (KRR: descriptors, kernel, CV and fit)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (train size, test MAE)
    vs_baseline: dict[str, Any] = field(default_factory=dict)  # mae_difference to the median


@dataclass(frozen=True)
class Comparison:
    """What `crystaldb compare` reports and the run stores."""

    release: str
    run_id: int
    n_train: int
    n_test: int
    baseline: dict[str, Any]  # the training median's metrics
    scores: list[ModelScore]
    plot_uri: str
    ensemble_vs_members: dict[str, dict[str, Any]]  # member: mae_difference(average, member)


@dataclass(frozen=True)
class _Data:
    """The release's labelled train and test structures."""

    train_ids: list[int]
    y_train: np.ndarray
    test_ids: list[int]
    y_test: np.ndarray
    all_ids: list[int]


def _data(db: Database, release: str) -> _Data:
    """Labelled train and test members; refused, with the fix, without both."""
    selection = select_structures(db, release=release)
    labels = release_labels(db, selection)
    splits = np.array(selection.splits or (), dtype=object)
    ids = np.array(selection.structure_ids, dtype=np.int64)
    labelled = ~np.isnan(labels) if len(labels) else np.zeros(0, dtype=bool)
    train = (splits == "train") & labelled if len(splits) else labelled & False
    test = (splits == "test") & labelled if len(splits) else labelled & False
    if train.sum() < 10 or test.sum() < 1:
        raise CompareError(
            f"--release {release}: {int(train.sum())} labelled train and {int(test.sum())}"
            " labelled test structures; the comparison needs at least 10 and 1: create the"
            " release with --label and --split (e.g. ordered:N,M)"
        )
    return _Data(
        train_ids=ids[train].tolist(),
        y_train=labels[train],
        test_ids=ids[test].tolist(),
        y_test=labels[test],
        all_ids=ids.tolist(),
    )


def compare_models(
    db: Database,
    settings: Settings,
    release: str,
    epochs: int = TrainingConfig().epochs,
    folds: int = 10,
    seed: int = 0,
    workers: int | None = None,
    soap: SoapHypers | None = None,
    mbtr: MbtrHypers | None = None,
    on_progress: Progress | None = None,
    on_step: Step | None = None,
) -> Comparison:
    """Train every model on the release's train split, score each on its test split.

    SOAP and MBTR take their defaults (the paper's SOAP) unless given.
    """
    if epochs < 1:
        raise CompareError(f"--epochs: {epochs}; train the networks at least 1 epoch")
    data = _data(db, release)
    if len(data.train_ids) < folds:
        raise CompareError(f"--folds {folds}: more than the {len(data.train_ids)} train structures")
    step = on_step or (lambda name, score: None)
    parameters = {
        "release": release,
        "models": list(MODELS),
        "ensemble": list(ENSEMBLE),
        "epochs": epochs,
        "folds": folds,
        "curve_points": CURVE_POINTS,
        "seed": seed,
        "soap": (soap or SoapHypers()).record(),
        "mbtr": (mbtr or MbtrHypers()).record(),
    }
    with track_run(db, "compare", parameters) as run:
        scores: list[ModelScore] = []
        predictions: dict[str, np.ndarray] = {}
        test_cells = load_cells(db, data.test_ids)
        median = np.full(len(data.y_test), float(np.median(data.y_train)))

        def scored(score: ModelScore, guess: np.ndarray) -> ModelScore:
            versus = mae_difference(guess, median, data.y_test, seed=seed)
            return replace(score, vs_baseline=versus)

        descriptors: dict[str, SoapHypers | MbtrHypers] = {
            "soap-krr": soap or SoapHypers(),
            "mbtr-krr": mbtr or MbtrHypers(),
        }
        for name, hypers in descriptors.items():
            score, guess = _krr(db, settings, release, name, hypers, data, test_cells, folds,
                                seed, workers, on_progress)  # fmt: skip
            scores.append(scored(score, guess))
            predictions[name] = guess
            step(name, scores[-1])
        for name, architecture in NETWORKS.items():
            score, guess = _network(db, settings, release, name, architecture, data, epochs,
                                    seed, workers, on_progress)  # fmt: skip
            scores.append(scored(score, guess))
            predictions[name] = guess
            step(name, scores[-1])
        average = np.mean([predictions[m] for m in ENSEMBLE], axis=0)
        ensemble = ModelScore(
            name=" + ".join(ENSEMBLE) + " (average)",
            model_id=None,
            metrics=regression_metrics(average, data.y_test, seed=seed),
            seconds=sum(s.seconds for s in scores if s.name in ENSEMBLE),
        )
        scores.append(scored(ensemble, average))
        step(ensemble.name, scores[-1])
        members = {m: mae_difference(average, predictions[m], data.y_test, seed=seed)
                   for m in ENSEMBLE}  # fmt: skip
        baseline = regression_metrics(median, data.y_test, seed=seed)
        store = ArtifactStore(settings.store_location)
        key = f"comparisons/run{run.id}-learning-curves.png"
        curves = {s.name: s.curve for s in scores if s.curve}
        title = f"{release}: {len(data.train_ids)} train, {len(data.y_test)} test"
        store.put_bytes(key, learning_curves_png(curves, baseline["mae"], title))
        plot_uri = store.uri(key)
        for score in scores:  # the ensemble is no stored model: its rows would name none
            if score.model_id is not None:
                write_predictions(
                    db, score.model_id, run.id, data.test_ids, predictions[score.name]
                )
        run.results.update(
            table=[_row(s) for s in scores],
            baseline=baseline,
            curves={name: [list(p) for p in curve] for name, curve in curves.items()},
            plot=plot_uri,
            ensemble_vs_members=members,
        )
    return Comparison(
        release=release,
        run_id=run.id,
        n_train=len(data.train_ids),
        n_test=len(data.test_ids),
        baseline=baseline,
        scores=scores,
        plot_uri=plot_uri,
        ensemble_vs_members=members,
    )


def _row(score: ModelScore) -> dict[str, Any]:
    """One model as the run's results keep it."""
    return {"model": score.name, "model_id": score.model_id, "seconds": score.seconds,
            **score.metrics, "vs_baseline": score.vs_baseline}  # fmt: skip


def _krr(
    db: Database,
    settings: Settings,
    release: str,
    name: str,
    hypers: SoapHypers | MbtrHypers,
    data: _Data,
    test_cells: list[Any],
    folds: int,
    seed: int,
    workers: int | None,
    on_progress: Progress | None,
) -> tuple[ModelScore, np.ndarray]:
    """The release's square kernel (built or reused), KRR by CV, its test predictions."""
    began = time.perf_counter()
    kernel = build_kernel(
        db,
        settings,
        data.all_ids,
        hypers=hypers,
        workers=workers,
        on_progress=_prefixed(on_progress, name),
        description=f"release {release} ({len(data.all_ids)} members)",
    )
    summary = train_krr(
        db,
        settings,
        kernel.kernel_id,
        release,
        folds=folds,
        seed=seed,
        on_progress=_prefixed(on_progress, name),
    )
    seconds = time.perf_counter() - began
    _, weights = load_krr(db, settings, summary.model_id)
    guess = predict_cells(test_cells, weights)
    # train krr's curve: nested_subsets(n, CURVE_POINTS, seed), the sizes the networks use
    curve = [(int(p["train"]), float(p["test_mae"])) for p in summary.learning_curve]
    metrics = regression_metrics(guess, data.y_test, seed=seed)
    return ModelScore(name, summary.model_id, metrics, seconds, curve), guess


def _network(
    db: Database,
    settings: Settings,
    release: str,
    name: str,
    architecture: str,
    data: _Data,
    epochs: int,
    seed: int,
    workers: int | None,
    on_progress: Progress | None,
) -> tuple[ModelScore, np.ndarray]:
    """`train ARCHITECTURE` on the release, its test predictions, and smaller subsets' MAE."""
    from crystaldb.core.networks import make_hypers, predict_graphs
    from crystaldb.jobs.networks import load_nn, release_graphs, train_nn

    def on_epoch(log: Any) -> None:
        if on_progress:
            on_progress(f"{name} epochs", log.epoch, log.epochs)

    began = time.perf_counter()
    summary = train_nn(db, settings, architecture, release, epochs=epochs, seed=seed,
                       workers=workers, on_epoch=on_epoch)  # fmt: skip
    seconds = time.perf_counter() - began
    _, weights = load_nn(db, settings, summary.model_id)
    hypers = make_hypers(architecture)
    cells, graphs = release_graphs(db, settings, hypers.recipe, data.train_ids + data.test_ids)
    n = len(data.train_ids)
    test_cells, test_graphs = cells[n:], graphs[n:]
    guess = predict_graphs(test_cells, test_graphs, weights, "cpu")
    metrics = regression_metrics(guess, data.y_test, seed=seed)
    order, sizes = nested_subsets(n, CURVE_POINTS, seed)
    config = replace(TrainingConfig(), epochs=epochs, seed=seed)
    curve = []
    for size in sizes[:-1]:  # the whole split is the model above
        mae = _subset_mae(hypers, config, cells, graphs, data, np.sort(order[:size]))
        if mae is not None:
            curve.append((int(size), mae))
        if on_progress:
            on_progress(f"{name} curve", len(curve), len(sizes) - 1)
    curve.append((n, float(metrics["mae"])))
    return ModelScore(name, summary.model_id, metrics, seconds, curve), guess


def _subset_mae(
    hypers: Any,
    config: TrainingConfig,
    cells: list[Any],
    graphs: list[Any],
    data: _Data,
    rows: np.ndarray,
) -> float | None:
    """Test MAE of the network trained on train rows `rows` alone (None: too few to split)."""
    from crystaldb.core.training import Dataset, fit_network, network_predictions

    n_validation = config.validation_size(len(rows))
    if len(rows) - n_validation < 1:
        return None
    shuffled = np.random.default_rng(config.seed).permutation(rows)
    fit_rows, validation_rows = np.sort(shuffled[n_validation:]), shuffled[:n_validation]

    def part(chosen: np.ndarray) -> Dataset:
        return Dataset([cells[i] for i in chosen], [graphs[i] for i in chosen],
                       data.y_train[chosen])  # fmt: skip

    fitted = fit_network(hypers, config, part(fit_rows), part(validation_rows), "cpu")
    n = len(data.train_ids)
    guess = network_predictions(fitted.model, cells[n:], graphs[n:], "cpu")
    return float(np.abs(guess - data.y_test).mean())


def _prefixed(on_progress: Progress | None, name: str) -> Progress | None:
    """Progress stages named after the model they belong to."""
    if on_progress is None:
        return None
    report = on_progress
    return lambda stage, done, total: report(f"{name} {stage}", done, total)
