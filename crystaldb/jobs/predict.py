"""Predicting band gaps with any stored model (KRR, SchNet, CGCNN, an ensemble of them).

One path for every model: a model is a list of members (one, or an ensemble's several), each
a `KrrWeights` (SOAP average spectra, one dot product) or an `NNWeights` (a graph network on
quotient graphs). `predict` streams a selection through Dask in bounded batches (cells and
the stored graphs of a batch read in one query each; a worker computes the graphs that are
not stored), on CUDA where a worker has a GPU; when the cluster's workers declare the Dask
resource `GPU`, every task asks for one, so they run only there (if the last such worker
dies, the rest falls back to the others: see jobs.runner). Predictions are clipped at
0 eV and written in bulk with their run; an ensemble writes the members' mean with their
spread (population standard deviation) as the uncertainty. `predict_cell` predicts one cell
that need not be stored (the API's uploads), with the weights kept in memory per model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from crystaldb.core.cell import Cell
from crystaldb.core.graphs import GraphArrays
from crystaldb.core.krr import regression_metrics
from crystaldb.core.krr_model import KrrWeights, predict_cells
from crystaldb.core.lru import Lru
from crystaldb.core.networks import ARCHITECTURES, NNWeights, predict_graphs, worker_device
from crystaldb.core.provenance import software_versions
from crystaldb.jobs.graphs import GraphsMissing, load_graphs
from crystaldb.jobs.krr import load_krr
from crystaldb.jobs.models import ModelError, model_row
from crystaldb.jobs.networks import load_nn
from crystaldb.jobs.predictions import write_predictions
from crystaldb.jobs.runner import bounded_map
from crystaldb.platform.cluster import dask_client, worker_count, worker_threads
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.query.selection import (
    Selection,
    batches,
    load_cells,
    release_labels,
    select_structures,
)
from crystaldb.schema import Model, Release, Run
from crystaldb.schema.runs import track_run

if TYPE_CHECKING:
    from distributed import Client

PREDICT_BATCH = 64
Progress = Callable[[str, int, int], None]
Member = KrrWeights | NNWeights
GraphsByRecipe = dict[str, list[GraphArrays] | None]


def load_member(db: Database, settings: Settings, model_id: int) -> tuple[Model, Member]:
    """Any single model (KRR, SchNet, CGCNN) with its weights, sha256 checked."""
    model = model_row(db, model_id)
    if model.architecture == "krr":
        return load_krr(db, settings, model_id)
    if model.architecture in ARCHITECTURES:
        return load_nn(db, settings, model_id)
    raise ModelError(
        f"--model {model_id} is a {model.architecture} model; a member is one of krr, "
        f"{', '.join(ARCHITECTURES)}"
    )


def load_members(db: Database, settings: Settings, model: Model) -> list[Member]:
    """The weights a model predicts with: its own, or each of an ensemble's members'."""
    if model.architecture == "ensemble":
        ids = [int(m["id"]) for m in model.hyperparameters.get("members", [])]
        return [load_member(db, settings, m)[1] for m in ids]
    return [load_member(db, settings, model.id)[1]]


def member_predictions(
    cells: Sequence[Cell], graphs: GraphsByRecipe, members: Sequence[Member], device: str = "cpu"
) -> np.ndarray:
    """(members, cells) clipped band gaps; graphs not given are computed from the cells."""
    rows = []
    for member in members:
        if isinstance(member, KrrWeights):
            rows.append(predict_cells(cells, member))
        else:
            rows.append(predict_graphs(cells, graphs.get(member.recipe), member, device))
    return np.stack(rows)


def predict_task(
    item: tuple[list[Cell], GraphsByRecipe], members: list[Member]
) -> tuple[np.ndarray, str, str]:
    """Worker: one batch's (members, batch) predictions, the device and the worker's name."""
    from distributed import get_worker

    device = worker_device(worker_threads())
    values = member_predictions(item[0], item[1], members, device)
    return values, device, str(get_worker().name)


def _stored_graphs(db: Database, recipe: str, ids: Sequence[int]) -> list[GraphArrays] | None:
    """A batch's stored graphs in one query, or None (the worker computes them) if any lack."""
    try:
        return load_graphs(db, recipe, ids)
    except GraphsMissing:
        return None


def gpu_workers(client: Client) -> int:
    """Workers that declare the Dask resource GPU."""
    workers = client.scheduler_info().get("workers", {})
    return sum(1 for w in workers.values() if w.get("resources", {}).get("GPU"))


def _recipes(members: Sequence[Member]) -> list[str]:
    return sorted({m.recipe for m in members if isinstance(m, NNWeights)})


def _stream(
    db: Database,
    settings: Settings,
    members: list[Member],
    selection: Selection,
    parameters: dict[str, Any],
    model_for_run: Callable[[int], int],
    workers: int | None,
    batch_size: int,
    on_progress: Progress | None,
) -> tuple[int, int, int]:
    """Every selected structure through the workers, written per batch; (model, run, rows).

    `model_for_run(run_id)` gives the id of the model the rows are written under (an
    ensemble's row is made by the run that first uses it).
    """
    ids = list(selection.structure_ids)
    if not ids:
        raise ModelError(f"{selection.description}: nothing to predict")
    recipes = _recipes(members)
    with dask_client(settings, n_workers=workers) as client:
        gpus = gpu_workers(client)
        parameters = {
            **parameters,
            "selection": selection.description,
            "batch_size": batch_size,
            "structures": len(ids),
            "recipes": recipes,
            "gpu_workers": gpus,
        }
        written = 0
        devices: set[str] = set()
        names: set[str] = set()
        with track_run(db, "predict", parameters, device="cuda" if gpus else "cpu") as run:
            model_id = model_for_run(run.id)
            shared = client.scatter(members, broadcast=True)
            work = (
                (load_cells(db, batch), {r: _stored_graphs(db, r, batch) for r in recipes})
                for batch in batches(ids, batch_size)
            )
            window = 2 * (gpus or worker_count(client))
            resources = {"GPU": 1.0} if gpus else None
            for index, (values, device, worker) in bounded_map(
                client, predict_task, work, window, shared, resources=resources
            ):
                devices.add(device)
                names.add(worker)
                batch = ids[index * batch_size : (index + 1) * batch_size]
                written += write_predictions(
                    db, model_id, run.id, batch, values.mean(axis=0), ensemble_spread(values)
                )
                if on_progress:
                    on_progress("predict", written, len(ids))
            run.results.update(
                model_id=model_id, written=written, devices=sorted(devices), workers=sorted(names)
            )
            _set_run_device(db, run.id, devices)
    return model_id, run.id, written


def ensemble_spread(values: np.ndarray) -> np.ndarray | None:
    """The members' population standard deviation over axis 0: the one uncertainty of an
    ensemble, stored by `predict --ensemble` and answered by the API; None for one member."""
    return values.std(axis=0) if len(values) > 1 else None


def _set_run_device(db: Database, run_id: int, devices: set[str]) -> None:
    """The device the workers actually used (cuda, cpu, or both), on the run row."""
    if devices:
        with db.session() as session:
            session.get_one(Run, run_id).device = "+".join(sorted(devices))


def predict(
    db: Database,
    settings: Settings,
    model_id: int,
    selection: Selection,
    workers: int | None = None,
    batch_size: int = PREDICT_BATCH,
    on_progress: Progress | None = None,
) -> tuple[int, int]:
    """`crystaldb predict --model ID`, any architecture; (run id, rows written)."""
    model = model_row(db, model_id)
    members = load_members(db, settings, model)
    parameters = {"model_id": model.id, "architecture": model.architecture}
    _, run_id, written = _stream(
        db,
        settings,
        members,
        selection,
        parameters,
        lambda _: model.id,
        workers,
        batch_size,
        on_progress,
    )
    return run_id, written


@dataclass(frozen=True)
class EnsembleSummary:
    """What `crystaldb predict --ensemble` reports."""

    model_id: int
    run_id: int
    written: int
    metrics: dict[str, Any]


def predict_ensemble(
    db: Database,
    settings: Settings,
    model_ids: Sequence[int],
    selection: Selection,
    workers: int | None = None,
    batch_size: int = PREDICT_BATCH,
    name: str | None = None,
    on_progress: Progress | None = None,
) -> EnsembleSummary:
    """Mean of the members' predictions with their spread as the uncertainty, stored."""
    member_ids = list(dict.fromkeys(int(m) for m in model_ids))
    if len(member_ids) < 2:
        raise ModelError(f"--ensemble {','.join(map(str, model_ids))}: name at least two models")
    loaded = [load_member(db, settings, m) for m in member_ids]
    rows, members = [row for row, _ in loaded], [w for _, w in loaded]
    releases = {row.release_id for row in rows}
    release_id = releases.pop() if len(releases) == 1 else None
    metrics = _test_metrics(db, release_id, members) if release_id is not None else {}
    parameters = {"architecture": "ensemble", "ensemble": member_ids}
    model_id, run_id, written = _stream(
        db,
        settings,
        members,
        selection,
        parameters,
        lambda run_id: _ensemble_row(db, rows, name, release_id, metrics, run_id),
        workers,
        batch_size,
        on_progress,
    )
    return EnsembleSummary(model_id, run_id, written, metrics)


def _test_metrics(db: Database, release_id: int, members: list[Member]) -> dict[str, Any]:
    """Test MAE/RMSE of the mean and of each member on the members' common release."""
    with db.session() as session:
        release = session.get_one(Release, release_id)
        text = f"{release.name}:{release.version}"
    selection = select_structures(db, release=text)
    labels = release_labels(db, selection)
    splits = np.array(selection.splits or ())
    rows = np.flatnonzero((splits == "test") & ~np.isnan(labels))
    if not len(rows):
        return {}
    ids = [selection.structure_ids[i] for i in rows]
    graphs = {r: _stored_graphs(db, r, ids) for r in _recipes(members)}
    values = member_predictions(load_cells(db, ids), graphs, members)
    actual = labels[rows]
    return {
        "test": regression_metrics(values.mean(axis=0), actual),
        "members_test_mae": [float(np.abs(v - actual).mean()) for v in values],
    }


def _ensemble_row(
    db: Database,
    rows: list[Model],
    name: str | None,
    release_id: int | None,
    metrics: dict[str, Any],
    run_id: int,
) -> int:
    """The ensemble's model row: reused when one with the same members exists."""
    members = [{"id": r.id, "name": r.name, "architecture": r.architecture} for r in rows]
    label = name or "ensemble-" + "-".join(str(r.id) for r in rows)
    with db.session() as session:
        existing = session.scalars(select(Model).where(Model.name == label)).first()
        if existing is not None:
            if (
                existing.architecture != "ensemble"
                or existing.hyperparameters.get("members") != members
            ):
                raise ModelError(f"--name: a model called {label!r} exists already")
            return existing.id
        model = Model(
            name=label,
            architecture="ensemble",
            hyperparameters={
                "members": members,
                "combine": "mean",
                "uncertainty": "population standard deviation of the members",
            },
            release_id=release_id,
            split={},
            metrics=metrics,
            library_versions=software_versions(),
            device="cpu",
            run_id=run_id,
        )
        session.add(model)
        session.flush()
        return model.id


_PREDICTORS: Lru[tuple[int, str], list[Member]] = Lru(8)  # (model id, sha256) -> weights


def _cached_members(db: Database, settings: Settings, model: Model) -> list[Member]:
    """A model's weights read once per process and model version (the API's uploads)."""
    key = (model.id, model.weights_sha256 or str(model.hyperparameters.get("members")))
    return _PREDICTORS.get_or_put(key, lambda: load_members(db, settings, model))


def predict_cell(db: Database, settings: Settings, model_id: int, cell: Cell) -> float:
    """One cell's band gap (eV, clipped at 0) by any model; nothing is stored."""
    members = _cached_members(db, settings, model_row(db, model_id))
    values = member_predictions([cell], {}, members, worker_device(worker_threads()))
    return float(values.mean(axis=0)[0])
