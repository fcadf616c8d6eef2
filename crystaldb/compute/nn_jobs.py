"""Training and running graph networks (SchNet, CGCNN): the database and Dask edges of them.

`nn_jobs` is to `schnet` and `cgcnn` what `krr_jobs` is to `krr`.

`train_nn` follows the OMDB-GAP1 paper: the release's labelled training split, less a
validation set carved from it (1,000 structures, or a tenth of a small training split),
standardised targets, Adam at 1e-3, the rate multiplied by 0.6 when the validation MAE stops
improving, batches of 32, stopping when the rate falls below a tenth of its start (or at the
epoch limit) and keeping the weights of the best validation epoch. Every random choice
(initial weights, validation set, each epoch's shuffle) comes from the seed. The release's
cells and graphs are read once, in bulk (graphs that are missing are built first with
`build_graphs`); a checkpoint goes to the artifact store after every epoch, and running the
same command again after an interruption resumes from it (each epoch's shuffle depends only
on the seed and the epoch, so a resumed run ends where an uninterrupted one would). The
weights file goes to the artifact store with its sha256, then the model row with the test
MAE and RMSE (predictions clipped at 0 eV, as everywhere).

`predict_nn` streams a selection through Dask in batches (stored graphs read a batch at a
time, computed on the worker where none is stored), on CUDA where the worker has it; when
the cluster's workers declare a `GPU` resource, tasks ask for one so they go only there.
`predict_ensemble` runs several models (KRR and graph networks alike) on each batch and
writes their mean with the spread (population standard deviation) as the uncertainty, under
a model row of architecture "ensemble". `predict_structure` predicts one cell that need not
be stored (the API's uploads).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sqlalchemy import select

from crystaldb.compute.cells import Cell, Selection, batches, load_cells, select_structures
from crystaldb.compute.cgcnn import CGCNN, CGCNNHypers
from crystaldb.compute.graph_build import GraphsMissing, build_graphs, ensure_recipe, load_graphs
from crystaldb.compute.graph_tensors import GraphBatch, collate
from crystaldb.compute.graphs import GraphArrays, parse_recipe, quotient_graph
from crystaldb.compute.krr import regression_metrics
from crystaldb.compute.krr_jobs import (
    KrrWeights,
    ModelError,
    _release_labels,
    load_krr,
    predict_cells,
    predict_krr,
)
from crystaldb.compute.predictions import write_predictions
from crystaldb.compute.schnet import SchNet, SchNetHypers
from crystaldb.platform.cluster import dask_client, worker_count
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.platform.store import ArtifactStore
from crystaldb.schema import Model
from crystaldb.schema.runs import track_run

if TYPE_CHECKING:
    from distributed import Client

ARCHITECTURES = ("schnet", "cgcnn")
PREDICT_BATCH = 64
MAX_VALIDATION = 1000  # the paper's validation set
VALIDATION_FRACTION = 0.1  # of a training split too small to spare 1,000
Progress = Callable[[str, int, int], None]
Hypers = SchNetHypers | CGCNNHypers
Network = SchNet | CGCNN


# --- models and their weights ---------------------------------------------------------------


def make_hypers(architecture: str, overrides: dict[str, Any] | None = None) -> Hypers:
    """The architecture's hyperparameters (the papers' defaults, with `overrides`)."""
    kinds: dict[str, type[SchNetHypers] | type[CGCNNHypers]] = {
        "schnet": SchNetHypers,
        "cgcnn": CGCNNHypers,
    }
    if architecture not in kinds:
        raise ModelError(
            f"architecture: unknown {architecture!r}; expected one of {', '.join(ARCHITECTURES)}"
        )
    kind = kinds[architecture]
    known = {f.name for f in fields(kind)}
    values = dict(overrides or {})
    unknown = sorted(set(values) - known - _DERIVED)
    if unknown:
        raise ModelError(
            f"hyperparameters: {', '.join(unknown)} not known to {architecture}; "
            f"it takes {', '.join(sorted(known))}"
        )
    return kind(**{k: v for k, v in values.items() if k in known})


# Values the hyperparameter records carry that are derived, not set.
_DERIVED = {"architecture", "recipe", "gaussians", "element_encoding"}


def make_model(hypers: Hypers) -> Network:
    """A freshly initialised module (seed torch first for reproducible weights)."""
    if isinstance(hypers, SchNetHypers):
        return SchNet(hypers)
    return CGCNN(hypers)


def _architecture(hypers: Hypers) -> str:
    return "schnet" if isinstance(hypers, SchNetHypers) else "cgcnn"


@dataclass(frozen=True)
class NNWeights:
    """A graph network as stored: architecture, hyperparameters and its state dict."""

    architecture: str
    hypers: dict[str, Any]
    state: dict[str, torch.Tensor]

    def to_bytes(self) -> bytes:
        """A torch file (tensors and plain values only: loadable with weights_only)."""
        buffer = io.BytesIO()
        payload = {"architecture": self.architecture, "hypers": self.hypers, "state": self.state}
        torch.save(payload, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> NNWeights:
        """Read a weights file back (never unpickles code)."""
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return cls(payload["architecture"], dict(payload["hypers"]), dict(payload["state"]))

    @property
    def recipe(self) -> str:
        """The graph recipe the model reads."""
        return make_hypers(self.architecture, self.hypers).recipe

    @property
    def key(self) -> str:
        """A fingerprint of the weights, to cache built modules by."""
        digest = hashlib.sha256()
        for name in sorted(self.state):
            digest.update(name.encode())
            digest.update(self.state[name].detach().cpu().numpy().tobytes())
        return digest.hexdigest()

    def module(self, device: str | torch.device = "cpu") -> Network:
        """The module with these weights, in evaluation mode."""
        model = make_model(make_hypers(self.architecture, self.hypers))
        model.load_state_dict(self.state)
        return model.to(device).eval()


_MODULES: dict[tuple[str, str], Network] = {}  # per process: (weights key, device) -> module


def _cached_module(weights: NNWeights, device: str) -> Network:
    key = (weights.key, device)
    if key not in _MODULES:
        if len(_MODULES) > 8:
            _MODULES.clear()
        _MODULES[key] = weights.module(device)
    return _MODULES[key]


def forward_ev(model: Network, batch: GraphBatch) -> torch.Tensor:
    """A module's predictions in eV, not clipped."""
    return model.in_ev(model(batch))


def predict_graphs(
    cells: Sequence[Cell],
    graphs: Sequence[GraphArrays] | None,
    weights: NNWeights,
    device: str = "cpu",
) -> np.ndarray:
    """Band gaps of cells (clipped at 0 eV); their graphs are computed when not given."""
    if graphs is None:
        recipe = parse_recipe(weights.recipe)
        graphs = [quotient_graph(cell, recipe) for cell in cells]
    model = _cached_module(weights, device)
    with torch.no_grad():
        values = forward_ev(model, collate(cells, graphs).to(device))
    return np.maximum(values.double().cpu().numpy(), 0.0)


def worker_device() -> str:
    """cuda where this process sees a GPU, cpu otherwise.

    On a Dask worker, torch is also held to the worker's own thread count, so two worker
    processes on two cores do not each start a thread per core.
    """
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        threads = None
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return "cuda" if torch.cuda.is_available() else "cpu"


# --- training -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingConfig:
    """The optimisation, as the OMDB-GAP1 paper ran it (epochs is the upper limit)."""

    epochs: int = 1000
    learning_rate: float = 1e-3
    decay: float = 0.6  # ReduceLROnPlateau factor
    patience: int = 5  # epochs without a better validation MAE before a decay
    stop_ratio: float = 0.1  # stop once the rate is below this fraction of the start
    batch_size: int = 32
    validation: int | None = None  # None: min(1000, a tenth of train); 0: none
    seed: int = 0

    def validation_size(self, n_train: int) -> int:
        """How many training structures are held out for validation."""
        if self.validation is not None:
            return self.validation
        return min(MAX_VALIDATION, max(1, round(VALIDATION_FRACTION * n_train)))


@dataclass(frozen=True)
class EpochLog:
    """One finished epoch, for progress bars and the run record."""

    epoch: int
    epochs: int
    train_loss: float  # mean squared error of the standardised targets
    validation_mae: float | None  # eV
    learning_rate: float
    seconds: float


@dataclass(frozen=True)
class NNTrainSummary:
    """What `crystaldb train schnet|cgcnn` reports."""

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


@dataclass
class _Checkpoint:
    fingerprint: str
    epoch: int
    model: dict[str, torch.Tensor]
    optimiser: dict[str, Any]
    scheduler: dict[str, Any]
    best: dict[str, torch.Tensor]
    best_mae: float
    history: list[dict[str, Any]] = field(default_factory=list)


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
    labels = _release_labels(db, selection)
    splits = np.array(selection.splits or ())
    ids = np.array(selection.structure_ids, dtype=np.int64)
    labelled = ~np.isnan(labels)
    train_rows = np.flatnonzero((splits == "train") & labelled)
    test_rows = np.flatnonzero((splits == "test") & labelled)
    n_validation = config.validation_size(len(train_rows))
    if len(train_rows) - n_validation < 1:
        found = ", ".join(sorted(set(splits.tolist()))) or "none"
        raise ModelError(
            f"--release {release}: {len(train_rows)} labelled training structures (splits: "
            f"{found}), too few to train with {n_validation} held out for validation; create "
            "the release with a train split (e.g. --split ordered:N,M)"
        )
    if name is not None:
        _check_name_free(db, name)
    run_device = device or worker_device()
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(train_rows)
    validation_rows, fit_rows = shuffled[:n_validation], np.sort(shuffled[n_validation:])
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
        needed = np.concatenate([fit_rows, validation_rows, test_rows])
        cells, graphs = _release_graphs(db, settings, model_hypers.recipe, ids[needed], workers)
        data = {int(s): (c, g) for s, c, g in zip(ids[needed], cells, graphs, strict=True)}

        def rows_of(rows: np.ndarray) -> tuple[list[Cell], list[GraphArrays], np.ndarray]:
            pairs = [data[int(s)] for s in ids[rows]]
            return [p[0] for p in pairs], [p[1] for p in pairs], labels[rows]

        fit_set, validation_set, test_set = (
            rows_of(fit_rows),
            rows_of(validation_rows),
            rows_of(test_rows),
        )
        key = f"checkpoints/{name or fingerprint}.pt"
        model, stopped, history, resumed_from = _fit(
            store,
            key,
            fingerprint,
            model_hypers,
            config,
            fit_set,
            validation_set,
            run_device,
            on_epoch,
        )
        model.eval()
        metrics: dict[str, Any] = {
            "train_mae": _mae(model, fit_set, run_device),
            "epochs": len(history),
            "stopped": stopped,
            "resumed_from_epoch": resumed_from,
            "history": history,
        }
        if len(validation_rows):
            metrics["validation_mae"] = _mae(model, validation_set, run_device)
        baseline = math.nan
        if len(test_rows):
            guess = _predict_local(model, test_set[0], test_set[1], run_device)
            metrics["test"] = regression_metrics(guess, test_set[2], seed=seed)
            baseline = float(np.abs(test_set[2] - np.median(fit_set[2])).mean())
            metrics["baseline_median_mae"] = baseline
        model_name = name or f"{architecture}-{release.replace(':', '-')}-run{run.id}"
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        weights = NNWeights(architecture, record, state)
        splits_count = {s: int((splits == s).sum()) for s in sorted(set(splits.tolist()))}
        splits_count["validation"] = len(validation_rows)
        model_id, uri = _store_model(
            db,
            store,
            weights,
            model_name,
            selection,
            model_hypers,
            config,
            splits_count,
            metrics,
            run.id,
            run_device,
        )
        if store.exists(key):
            store.fs.rm(store.uri(key))
        run.results.update(model_id=model_id, epochs=len(history), stopped=stopped)
    return NNTrainSummary(
        model_id=model_id,
        name=model_name,
        run_id=run.id,
        architecture=architecture,
        epochs=len(history),
        stopped=stopped,
        resumed_from=resumed_from,
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


def _check_name_free(db: Database, name: str) -> None:
    with db.session() as session:
        if session.scalar(select(Model.id).where(Model.name == name)) is not None:
            raise ModelError(f"--name: a model called {name!r} exists already")


def _release_graphs(
    db: Database, settings: Settings, recipe: str, ids: np.ndarray, workers: int | None
) -> tuple[list[Cell], list[GraphArrays]]:
    """Cells and graphs of `ids` in two bulk queries; missing graphs are built first."""
    order = [int(s) for s in ids]
    try:
        graphs = load_graphs(db, recipe, order)
    except GraphsMissing:
        build = Selection(structure_ids=tuple(order), description=f"{len(order)} to train on")
        build_graphs(db, settings, recipe, build, workers=workers)
        graphs = load_graphs(db, recipe, order)
    return load_cells(db, order), graphs


def _batches_of(n: int, size: int, generator: torch.Generator | None) -> Iterator[np.ndarray]:
    order = torch.randperm(n, generator=generator).numpy() if generator else np.arange(n)
    for start in range(0, n, size):
        yield order[start : start + size]


def _pick(
    dataset: tuple[list[Cell], list[GraphArrays], np.ndarray], rows: np.ndarray
) -> tuple[GraphBatch, np.ndarray]:
    cells, graphs, y = dataset
    return collate([cells[i] for i in rows], [graphs[i] for i in rows]), y[rows]


def _predict_local(
    model: Network, cells: Sequence[Cell], graphs: Sequence[GraphArrays], device: str
) -> np.ndarray:
    """Clipped predictions in eV, in batches, in this process."""
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(cells), PREDICT_BATCH):
            part = collate(
                cells[start : start + PREDICT_BATCH], graphs[start : start + PREDICT_BATCH]
            )
            out.append(forward_ev(model, part.to(device)).double().cpu().numpy())
    return np.maximum(np.concatenate(out), 0.0) if out else np.zeros(0)


def _mae(
    model: Network, dataset: tuple[list[Cell], list[GraphArrays], np.ndarray], device: str
) -> float:
    guess = _predict_local(model, dataset[0], dataset[1], device)
    return float(np.abs(guess - dataset[2]).mean())


def _fit(
    store: ArtifactStore,
    key: str,
    fingerprint: str,
    hypers: Hypers,
    config: TrainingConfig,
    fit_set: tuple[list[Cell], list[GraphArrays], np.ndarray],
    validation_set: tuple[list[Cell], list[GraphArrays], np.ndarray],
    device: str,
    on_epoch: Callable[[EpochLog], None] | None,
) -> tuple[Network, str, list[dict[str, Any]], int]:
    """The training loop, checkpointed each epoch: (best model, why it stopped, history)."""
    import time

    torch.manual_seed(config.seed)
    model = make_model(hypers).to(device)
    y = fit_set[2]
    mean, std = float(y.mean()), float(y.std()) if len(y) > 1 and y.std() > 0 else 1.0
    model.target_mean.fill_(mean)
    model.target_std.fill_(std)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser, mode="min", factor=config.decay, patience=config.patience
    )
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_mae = math.inf
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if store.exists(key):
        saved = torch.load(io.BytesIO(store.get_bytes(key)), map_location=device, weights_only=True)
        if saved.get("fingerprint") == fingerprint:
            model.load_state_dict(saved["model"])
            optimiser.load_state_dict(saved["optimiser"])
            scheduler.load_state_dict(saved["scheduler"])
            best_state, best_mae = saved["best"], float(saved["best_mae"])
            history = list(saved["history"])
            start_epoch = int(saved["epoch"])
    resumed_from = start_epoch
    stopped = "epoch limit"
    has_validation = len(validation_set[0]) > 0
    for epoch in range(start_epoch, config.epochs):
        if optimiser.param_groups[0]["lr"] < config.learning_rate * config.stop_ratio:
            stopped = "learning rate below a tenth of its start"
            break
        began = time.perf_counter()
        model.train()
        shuffle = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        total, count = 0.0, 0
        for rows in _batches_of(len(y), config.batch_size, shuffle):
            batch, target = _pick(fit_set, rows)
            scaled = torch.as_tensor((target - mean) / std, dtype=torch.float32, device=device)
            optimiser.zero_grad()
            loss = torch.nn.functional.mse_loss(model(batch.to(device)), scaled)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(rows)
            count += len(rows)
        train_loss = total / max(count, 1)
        model.eval()
        validation_mae = _mae(model, validation_set, device) if has_validation else None
        watched = validation_mae if validation_mae is not None else train_loss
        if watched < best_mae:
            best_mae = watched
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        scheduler.step(watched)
        log = EpochLog(
            epoch=epoch + 1,
            epochs=config.epochs,
            train_loss=train_loss,
            validation_mae=validation_mae,
            learning_rate=float(optimiser.param_groups[0]["lr"]),
            seconds=time.perf_counter() - began,
        )
        history.append(asdict(log))
        checkpoint = {
            "fingerprint": fingerprint,
            "epoch": epoch + 1,
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(),
            "best": best_state,
            "best_mae": best_mae,
            "history": history,
        }
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        store.put_bytes(key, buffer.getvalue())
        if on_epoch is not None:
            on_epoch(log)
    else:
        if optimiser.param_groups[0]["lr"] < config.learning_rate * config.stop_ratio:
            stopped = "learning rate below a tenth of its start"
    if has_validation:
        model.load_state_dict(best_state)
    return model, stopped, history, resumed_from


def _store_model(
    db: Database,
    store: ArtifactStore,
    weights: NNWeights,
    name: str,
    selection: Selection,
    hypers: Hypers,
    config: TrainingConfig,
    split: dict[str, int],
    metrics: dict[str, Any],
    run_id: int,
    device: str,
) -> tuple[int, str]:
    """Weights to the artifact store (sha256 kept), then the model row, in that order."""
    from crystaldb.platform.provenance import software_versions

    _check_name_free(db, name)
    key = f"models/{name}.pt"
    sha = store.put_bytes(key, weights.to_bytes())
    recipe_id = ensure_recipe(db, parse_recipe(hypers.recipe))
    with db.session() as session:
        model = Model(
            name=name,
            architecture=weights.architecture,
            hyperparameters={
                "model": weights.hypers,
                "training": asdict(config),
                "target_mean": float(weights.state["target_mean"]),
                "target_std": float(weights.state["target_std"]),
            },
            release_id=selection.release_id,
            split=split,
            graph_recipe_id=recipe_id,
            metrics=metrics,
            weights_uri=store.uri(key),
            weights_sha256=sha,
            library_versions=software_versions(),
            device=device,
            run_id=run_id,
        )
        session.add(model)
        session.flush()
        return model.id, store.uri(key)


# --- prediction -----------------------------------------------------------------------------


def _model_row(db: Database, model_id: int) -> Model:
    with db.session() as session:
        model = session.get(Model, model_id)
        if model is None:
            raise ModelError(f"--model: no model {model_id} (see `crystaldb models`)")
        session.expunge(model)
    return model


def load_nn(db: Database, settings: Settings, model_id: int) -> tuple[Model, NNWeights]:
    """A SchNet or CGCNN model row and its weights, checked against the recorded sha256."""
    model = _model_row(db, model_id)
    if model.architecture not in ARCHITECTURES:
        raise ModelError(
            f"--model {model_id} is a {model.architecture} model, not one of "
            f"{', '.join(ARCHITECTURES)}"
        )
    data = ArtifactStore(settings.store_location).get_bytes(f"models/{model.name}.pt")
    if hashlib.sha256(data).hexdigest() != model.weights_sha256:
        raise ModelError(f"model {model_id}: weights file {model.weights_uri} fails its sha256")
    return model, NNWeights.from_bytes(data)


Member = KrrWeights | NNWeights


def load_member(db: Database, settings: Settings, model_id: int) -> tuple[Model, Member]:
    """Any single model (KRR, SchNet, CGCNN) with its weights."""
    model = _model_row(db, model_id)
    if model.architecture == "krr":
        return load_krr(db, settings, model_id)
    if model.architecture in ARCHITECTURES:
        return load_nn(db, settings, model_id)
    raise ModelError(
        f"--model {model_id} is a {model.architecture} model; an ensemble combines krr, "
        f"{', '.join(ARCHITECTURES)} models"
    )


def predict_batch(
    item: tuple[list[Cell], list[GraphArrays] | None], weights: NNWeights
) -> tuple[np.ndarray, str]:
    """Worker: one batch's clipped band gaps, and the device that computed them."""
    device = worker_device()
    return predict_graphs(item[0], item[1], weights, device), device


def ensemble_batch(
    item: tuple[list[Cell], dict[str, list[GraphArrays] | None]], members: list[Member]
) -> tuple[np.ndarray, str]:
    """Worker: every member's clipped predictions for one batch, (members, batch), and device."""
    cells, graphs = item
    device = worker_device()
    rows = []
    for member in members:
        if isinstance(member, KrrWeights):
            rows.append(predict_cells(cells, member))
        else:
            rows.append(predict_graphs(cells, graphs.get(member.recipe), member, device))
    return np.stack(rows), device


def _stored_graphs(db: Database, recipe: str, ids: Sequence[int]) -> list[GraphArrays] | None:
    """A batch's stored graphs in one query, or None (the worker computes them) if any lack."""
    try:
        return load_graphs(db, recipe, ids)
    except GraphsMissing:
        return None


def _gpu_workers(client: Client) -> int:
    workers = client.scheduler_info().get("workers", {})
    return sum(1 for w in workers.values() if w.get("resources", {}).get("GPU"))


def _bounded(
    client: Client,
    func: Callable[..., Any],
    items: Iterable[Any],
    window: int,
    shared: Any,
    resources: dict[str, float] | None,
) -> Iterator[tuple[int, Any]]:
    """`cluster.bounded_map`, with the tasks' resource requirements (GPU=1 on GPU clusters)."""
    from distributed import as_completed

    source = enumerate(items)
    pending: dict[Any, int] = {}
    queue = as_completed()

    def feed() -> None:
        while len(pending) < window:
            nxt = next(source, None)
            if nxt is None:
                return
            future = client.submit(func, nxt[1], shared, pure=False, resources=resources)
            pending[future] = nxt[0]
            queue.add(future)

    feed()
    for future in queue:
        index = pending.pop(future)
        yield index, future.result()
        feed()


def predict_nn(
    db: Database,
    settings: Settings,
    model_id: int,
    selection: Selection,
    workers: int | None = None,
    batch_size: int = PREDICT_BATCH,
    on_progress: Progress | None = None,
) -> tuple[int, int]:
    """Predict every selected structure on Dask workers; returns (run id, rows written)."""
    model, weights = load_nn(db, settings, model_id)
    ids = list(selection.structure_ids)
    if not ids:
        raise ModelError(f"{selection.description}: nothing to predict")
    recipe = weights.recipe
    with dask_client(settings, n_workers=workers) as client:
        gpus = _gpu_workers(client)
        parameters = {
            "model_id": model_id,
            "architecture": model.architecture,
            "selection": selection.description,
            "batch_size": batch_size,
            "structures": len(ids),
            "recipe": recipe,
            "gpu_workers": gpus,
        }
        written = 0
        devices: set[str] = set()
        with track_run(db, "predict", parameters, device="cuda" if gpus else "cpu") as run:
            shared = client.scatter(weights, broadcast=True)
            work = (
                (load_cells(db, batch), _stored_graphs(db, recipe, batch))
                for batch in batches(ids, batch_size)
            )
            window = 2 * (gpus or worker_count(client))
            resources = {"GPU": 1.0} if gpus else None
            for index, (values, device) in _bounded(
                client, predict_batch, work, window, shared, resources
            ):
                devices.add(device)
                batch = ids[index * batch_size : (index + 1) * batch_size]
                written += write_predictions(db, model.id, run.id, batch, values)
                if on_progress:
                    on_progress("predict", written, len(ids))
            run.results.update(written=written, devices=sorted(devices))
            _set_run_device(db, run.id, devices)
    return run.id, written


def _set_run_device(db: Database, run_id: int, devices: set[str]) -> None:
    """The device the workers actually used (cuda, cpu, or both), on the run row."""
    from crystaldb.schema import Run

    if devices:
        with db.session() as session:
            session.get_one(Run, run_id).device = "+".join(sorted(devices))


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
    members_ids = list(dict.fromkeys(int(m) for m in model_ids))
    if len(members_ids) < 2:
        raise ModelError(f"--ensemble {','.join(map(str, model_ids))}: name at least two models")
    loaded = [load_member(db, settings, m) for m in members_ids]
    rows, members = [row for row, _ in loaded], [w for _, w in loaded]
    ids = list(selection.structure_ids)
    if not ids:
        raise ModelError(f"{selection.description}: nothing to predict")
    recipes = sorted({m.recipe for m in members if isinstance(m, NNWeights)})
    releases = {row.release_id for row in rows}
    release_id = releases.pop() if len(releases) == 1 else None
    metrics = _ensemble_metrics(db, release_id, members) if release_id is not None else {}
    with dask_client(settings, n_workers=workers) as client:
        gpus = _gpu_workers(client)
        parameters = {
            "ensemble": members_ids,
            "selection": selection.description,
            "batch_size": batch_size,
            "structures": len(ids),
            "gpu_workers": gpus,
        }
        written = 0
        devices: set[str] = set()
        with track_run(db, "predict", parameters, device="cuda" if gpus else "cpu") as run:
            model_id = _ensemble_row(db, rows, name, release_id, metrics, run.id)
            shared = client.scatter(members, broadcast=True)
            work = (
                (load_cells(db, batch), {r: _stored_graphs(db, r, batch) for r in recipes})
                for batch in batches(ids, batch_size)
            )
            window = 2 * (gpus or worker_count(client))
            resources = {"GPU": 1.0} if gpus else None
            for index, (values, device) in _bounded(
                client, ensemble_batch, work, window, shared, resources
            ):
                devices.add(device)
                batch = ids[index * batch_size : (index + 1) * batch_size]
                written += write_predictions(
                    db, model_id, run.id, batch, values.mean(axis=0), values.std(axis=0)
                )
                if on_progress:
                    on_progress("predict", written, len(ids))
            run.results.update(model_id=model_id, written=written, devices=sorted(devices))
            _set_run_device(db, run.id, devices)
    return EnsembleSummary(model_id, run.id, written, metrics)


def _ensemble_metrics(db: Database, release_id: int, members: list[Member]) -> dict[str, Any]:
    """Test MAE/RMSE of the mean and of each member on the members' common release."""
    from crystaldb.schema import Release

    with db.session() as session:
        release = session.get_one(Release, release_id)
        text = f"{release.name}:{release.version}"
    selection = select_structures(db, release=text)
    labels = _release_labels(db, selection)
    splits = np.array(selection.splits or ())
    rows = np.flatnonzero((splits == "test") & ~np.isnan(labels))
    if not len(rows):
        return {}
    ids = [selection.structure_ids[i] for i in rows]
    cells = load_cells(db, ids)
    graphs = {
        m.recipe: _stored_graphs(db, m.recipe, ids) for m in members if isinstance(m, NNWeights)
    }
    values, _ = ensemble_batch((cells, graphs), members)
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
    from crystaldb.platform.provenance import software_versions

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


def predict(
    db: Database,
    settings: Settings,
    model_id: int,
    selection: Selection,
    workers: int | None = None,
    batch_size: int = PREDICT_BATCH,
    on_progress: Progress | None = None,
) -> tuple[int, int]:
    """`crystaldb predict --model ID`: dispatch on the model's architecture; (run id, rows)."""
    model = _model_row(db, model_id)
    if model.architecture == "krr":
        return predict_krr(db, settings, model_id, selection, workers, batch_size, on_progress)
    if model.architecture in ARCHITECTURES:
        return predict_nn(db, settings, model_id, selection, workers, batch_size, on_progress)
    if model.architecture == "ensemble":
        members = [int(m["id"]) for m in model.hyperparameters.get("members", [])]
        summary = predict_ensemble(
            db, settings, members, selection, workers, batch_size, model.name, on_progress
        )
        return summary.run_id, summary.written
    raise ModelError(f"--model {model_id}: cannot predict with a {model.architecture} model")


def predict_structure(db: Database, settings: Settings, model_id: int, cell: Cell) -> float:
    """One cell's band gap (eV, clipped at 0) by any model; nothing is stored (API uploads)."""
    model = _model_row(db, model_id)
    if model.architecture == "ensemble":
        members = [int(m["id"]) for m in model.hyperparameters.get("members", [])]
        weights = [load_member(db, settings, m)[1] for m in members]
    else:
        weights = [load_member(db, settings, model_id)[1]]
    values, _ = ensemble_batch(([cell], {}), weights)
    return float(values.mean(axis=0)[0])
