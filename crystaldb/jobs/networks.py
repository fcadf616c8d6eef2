"""Training graph networks (SchNet, CGCNN) on a release: the database edge of `training`.

`train_nn` takes the release's labelled training split, holds a validation set out of it
(1,000 structures, or a tenth of a small split, chosen by the seed), reads the cells and
quotient graphs of every member it needs in two bulk queries (graphs that are missing are
built first with `build_graphs`), trains with `training.fit_network` (checkpointed in the
artifact store after every epoch: the same command resumes), scores the test split with
predictions clipped at 0 eV, and stores the weights (sha256 kept) and the model row with
architecture, hyperparameters, release and split, recipe, metrics, library versions and
device. Prediction with the stored model is `inference.py`'s, as for every model.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from crystaldb.core.cell import Cell
from crystaldb.core.graphs import GraphArrays, parse_recipe
from crystaldb.core.krr import regression_metrics
from crystaldb.core.network_hypers import TrainingConfig
from crystaldb.core.networks import ARCHITECTURES, NNWeights, make_hypers, worker_device
from crystaldb.core.training import (
    Checkpoint,
    Dataset,
    EpochLog,
    fit_network,
    mean_absolute_error,
    network_predictions,
)
from crystaldb.jobs.graphs import GraphsMissing, build_graphs, ensure_recipe, load_graphs
from crystaldb.jobs.models import ModelError, check_name_free, model_row, read_weights, store_model
from crystaldb.platform.cluster import worker_threads
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.platform.store import ArtifactStore, Keys
from crystaldb.query.selection import Selection, load_cells, release_labels, select_structures
from crystaldb.schema import Model
from crystaldb.schema.runs import track_run

WEIGHTS_SUFFIX = "pt"


@dataclass(frozen=True)
class NNTrainSummary:
    """What `crystaldb train schnet|cgcnn|mpnn` reports."""

    model_id: int
    name: str
    run_id: int
    architecture: str
    epochs: int
    stopped: str
    resumed_from: int
    device: str
    metrics: dict[str, Any]
    baseline_mae: float
    weights_uri: str


@dataclass(frozen=True)
class _Split:
    """Rows of the release (positions in its member order) for each part of the training."""

    fit: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def _split(release: str, splits: np.ndarray, labels: np.ndarray, config: TrainingConfig) -> _Split:
    """Labelled train rows less a seeded validation set, and the labelled test rows."""
    labelled = ~np.isnan(labels)
    train = np.flatnonzero((splits == "train") & labelled)
    n_validation = config.validation_size(len(train))
    if len(train) - n_validation < 1:
        found = ", ".join(sorted(set(splits.tolist()))) or "none"
        raise ModelError(
            f"--release {release}: {len(train)} labelled training structures (splits: "
            f"{found}), too few to train with {n_validation} held out for validation; create "
            "the release with a train split (e.g. --split ordered:N,M)"
        )
    shuffled = np.random.default_rng(config.seed).permutation(train)
    return _Split(
        fit=np.sort(shuffled[n_validation:]),
        validation=shuffled[:n_validation],
        test=np.flatnonzero((splits == "test") & labelled),
    )


def train_nn(
    db: Database,
    settings: Settings,
    architecture: str,
    release: str,
    epochs: int = 1000,
    seed: int = 0,
    name: str | None = None,
    hypers: dict[str, Any] | None = None,
    batch_size: int = 32,
    validation: int | None = None,
    learning_rate: float = 1e-3,
    patience: int = 5,
    device: str | None = None,
    workers: int | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> NNTrainSummary:
    """Train on the release's train split, validate on part of it, score on its test split."""
    model_hypers = make_hypers(architecture, hypers)
    if epochs < 1:
        raise ModelError(f"--epochs: {epochs}; train at least 1 epoch")
    if batch_size < 1:
        raise ModelError(f"--batch-size: {batch_size}; at least 1")
    config = TrainingConfig(
        epochs=epochs,
        learning_rate=learning_rate,
        patience=patience,
        batch_size=batch_size,
        validation=validation,
        seed=seed,
    )
    selection = select_structures(db, release=release)
    labels = release_labels(db, selection)
    splits = np.array(selection.splits or ())
    rows = _split(release, splits, labels, config)
    if name is not None:
        check_name_free(db, name)
    run_device = device or worker_device(worker_threads())
    record = model_hypers.record()
    fingerprint = _fingerprint(architecture, selection.release_id, record, config)
    parameters = {
        "model": architecture,
        "release": release,
        "hyperparameters": record,
        "training": asdict(config),
        "checkpoint": fingerprint,
    }
    store = ArtifactStore(settings.store_location)
    with track_run(db, "train", parameters, device=run_device) as run:
        ids = np.array(selection.structure_ids, dtype=np.int64)
        fit_set, validation_set, test_set = _datasets(
            db, settings, model_hypers.recipe, ids, labels, rows, workers
        )
        checkpoint = Checkpoint(store, Keys.checkpoint(name or fingerprint), fingerprint)
        fitted = fit_network(
            model_hypers, config, fit_set, validation_set, run_device, checkpoint, on_epoch
        )
        model = fitted.model
        metrics: dict[str, Any] = {
            "train_mae": mean_absolute_error(model, fit_set, run_device),
            "epochs": len(fitted.history),
            "stopped": fitted.stopped,
            "resumed_from_epoch": fitted.resumed_from,
            "history": fitted.history,
        }
        if len(rows.validation):
            metrics["validation_mae"] = mean_absolute_error(model, validation_set, run_device)
        baseline = math.nan
        if len(rows.test):
            guess = network_predictions(model, test_set.cells, test_set.graphs, run_device)
            metrics["test"] = regression_metrics(guess, test_set.targets, seed=seed)
            baseline = float(np.abs(test_set.targets - np.median(fit_set.targets)).mean())
            metrics["baseline_median_mae"] = baseline
        model_name = name or f"{architecture}-{release.replace(':', '-')}-run{run.id}"
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        split_sizes = {s: int((splits == s).sum()) for s in sorted(set(splits.tolist()))}
        split_sizes["validation"] = len(rows.validation)
        model_id, uri = store_model(
            db,
            store,
            model_name,
            WEIGHTS_SUFFIX,
            NNWeights(architecture, record, state).to_bytes(),
            architecture=architecture,
            hyperparameters={
                "model": record,
                "training": asdict(config),
                "target_mean": float(state["target_mean"]),
                "target_std": float(state["target_std"]),
            },
            release_id=selection.release_id,
            split=split_sizes,
            graph_recipe_id=ensure_recipe(db, parse_recipe(model_hypers.recipe)),
            metrics=metrics,
            device=run_device,
            run_id=run.id,
        )
        checkpoint.remove()
        run.results.update(model_id=model_id, epochs=len(fitted.history), stopped=fitted.stopped)
    return NNTrainSummary(
        model_id=model_id,
        name=model_name,
        run_id=run.id,
        architecture=architecture,
        epochs=len(fitted.history),
        stopped=fitted.stopped,
        resumed_from=fitted.resumed_from,
        device=run_device,
        metrics=metrics.get("test", {}),
        baseline_mae=baseline,
        weights_uri=uri,
    )


def _fingerprint(
    architecture: str, release_id: int | None, record: dict[str, Any], config: TrainingConfig
) -> str:
    """What a checkpoint must match to be resumed: the same model, data and optimisation."""
    text = json.dumps([architecture, release_id, record, asdict(config)], sort_keys=True)
    return f"{architecture}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _datasets(
    db: Database,
    settings: Settings,
    recipe: str,
    ids: np.ndarray,
    labels: np.ndarray,
    rows: _Split,
    workers: int | None,
) -> tuple[Dataset, Dataset, Dataset]:
    """Fit, validation and test sets, their cells and graphs read in bulk once."""
    needed = np.concatenate([rows.fit, rows.validation, rows.test])
    cells, graphs = release_graphs(db, settings, recipe, [int(s) for s in ids[needed]], workers)
    by_id = {c.structure_id: (c, g) for c, g in zip(cells, graphs, strict=True)}

    def part(chosen: np.ndarray) -> Dataset:
        pairs = [by_id[int(s)] for s in ids[chosen]]
        return Dataset([p[0] for p in pairs], [p[1] for p in pairs], labels[chosen])

    return part(rows.fit), part(rows.validation), part(rows.test)


def release_graphs(
    db: Database, settings: Settings, recipe: str, ids: list[int], workers: int | None = None
) -> tuple[list[Cell], list[GraphArrays]]:
    """Cells and graphs of `ids` in two bulk queries; missing graphs are built first."""
    try:
        graphs = load_graphs(db, recipe, ids)
    except GraphsMissing:
        build = Selection(structure_ids=tuple(ids), description=f"{len(ids)} to train on")
        build_graphs(db, settings, recipe, build, workers=workers)
        graphs = load_graphs(db, recipe, ids)
    return load_cells(db, ids), graphs


def load_nn(db: Database, settings: Settings, model_id: int) -> tuple[Model, NNWeights]:
    """A SchNet or CGCNN model row and its weights, checked against the recorded sha256."""
    model = model_row(db, model_id)
    if model.architecture not in ARCHITECTURES:
        raise ModelError(
            f"--model {model_id} is a {model.architecture} model, not one of "
            f"{', '.join(ARCHITECTURES)}"
        )
    return model, NNWeights.from_bytes(read_weights(model))
