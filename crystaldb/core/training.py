"""The training loop of the graph networks, as the OMDB-GAP1 paper ran it, checkpointed.

Adam at 1e-3, the rate multiplied by 0.6 when the validation MAE stops improving, batches of
32, stopping when the rate falls below a tenth of its start (or at the epoch limit), keeping
the weights of the best validation epoch; targets standardised (their mean and spread are
buffers of the module, so a saved state dict predicts in eV on its own). Every random choice
(initial weights, each epoch's shuffle) comes from the seed, and each epoch's shuffle depends
only on the seed and the epoch, so a run resumed from a checkpoint ends where an
uninterrupted one would.

Pure but for the checkpoint, which goes wherever `Checkpoint` points (the artifact store in
jobs, a temporary folder in tests): no database, no Dask.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from crystaldb.core.cell import Cell
from crystaldb.core.graph_tensors import GraphBatch, collate
from crystaldb.core.graphs import GraphArrays
from crystaldb.core.network_hypers import TrainingConfig
from crystaldb.core.networks import Hypers, Network, forward_ev, make_model

EVAL_BATCH = 64  # structures per forward pass when scoring


class Dataset(NamedTuple):
    """Cells, their quotient graphs and their targets (eV), in the same order."""

    cells: list[Cell]
    graphs: list[GraphArrays]
    targets: np.ndarray

    def batch(self, rows: np.ndarray) -> tuple[GraphBatch, np.ndarray]:
        """The rows as one collated batch and their targets."""
        picked = [self.cells[i] for i in rows], [self.graphs[i] for i in rows]
        return collate(*picked), self.targets[rows]


@dataclass(frozen=True)
class EpochLog:
    """One finished epoch, for progress bars and the run record."""

    epoch: int
    epochs: int
    train_loss: float  # mean squared error of the standardised targets
    validation_mae: float | None  # eV
    learning_rate: float
    seconds: float


class BlobStore(Protocol):
    """Where checkpoints go: the artifact store, or anything with its four byte methods."""

    def exists(self, key: str) -> bool: ...
    def get_bytes(self, key: str) -> bytes: ...
    def put_bytes(self, key: str, data: bytes) -> str: ...
    def remove(self, key: str) -> None: ...


@dataclass(frozen=True)
class Checkpoint:
    """Where the loop saves its state after each epoch, and what a resumable state must match.

    `fingerprint` names the model, data and optimisation: a checkpoint with another
    fingerprint is ignored rather than resumed.
    """

    store: BlobStore
    key: str
    fingerprint: str

    def load(self, device: str) -> dict[str, Any] | None:
        """The saved state, if one for the same fingerprint exists."""
        if not self.store.exists(self.key):
            return None
        data = io.BytesIO(self.store.get_bytes(self.key))
        saved: dict[str, Any] = torch.load(data, map_location=device, weights_only=True)
        return saved if saved.get("fingerprint") == self.fingerprint else None

    def save(self, state: dict[str, Any]) -> None:
        """Replace the saved state (one object write)."""
        buffer = io.BytesIO()
        torch.save({"fingerprint": self.fingerprint, **state}, buffer)
        self.store.put_bytes(self.key, buffer.getvalue())

    def remove(self) -> None:
        """Drop it once the model is stored."""
        if self.store.exists(self.key):
            self.store.remove(self.key)


@dataclass
class Fitted:
    """What the loop returns: the best module and how training went."""

    model: Network
    stopped: str
    history: list[dict[str, Any]]
    resumed_from: int


def network_predictions(
    model: Network, cells: Sequence[Cell], graphs: Sequence[GraphArrays], device: str
) -> np.ndarray:
    """Clipped predictions in eV, in batches, in this process."""
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(cells), EVAL_BATCH):
            part = collate(cells[start : start + EVAL_BATCH], graphs[start : start + EVAL_BATCH])
            out.append(forward_ev(model, part.to(device)).double().cpu().numpy())
    return np.maximum(np.concatenate(out), 0.0) if out else np.zeros(0)


def mean_absolute_error(model: Network, data: Dataset, device: str) -> float:
    """MAE (eV) of the clipped predictions."""
    guess = network_predictions(model, data.cells, data.graphs, device)
    return float(np.abs(guess - data.targets).mean())


def _shuffled_batches(n: int, size: int, generator: torch.Generator) -> Iterator[np.ndarray]:
    order = torch.randperm(n, generator=generator).numpy()
    for start in range(0, n, size):
        yield order[start : start + size]


def _snapshot(model: Network) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fit_network(
    hypers: Hypers,
    config: TrainingConfig,
    fit_set: Dataset,
    validation_set: Dataset,
    device: str,
    checkpoint: Checkpoint | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> Fitted:
    """Train from the seed (or resume from the checkpoint); return the best validation model."""
    torch.manual_seed(config.seed)
    model = make_model(hypers).to(device)
    y = fit_set.targets
    mean = float(y.mean())
    std = float(y.std()) if len(y) > 1 and y.std() > 0 else 1.0
    model.target_mean.fill_(mean)
    model.target_std.fill_(std)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser, mode="min", factor=config.decay, patience=config.patience
    )
    best_state, best_mae = _snapshot(model), math.inf
    history: list[dict[str, Any]] = []
    saved = checkpoint.load(device) if checkpoint else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        scheduler.load_state_dict(saved["scheduler"])
        best_state, best_mae = saved["best"], float(saved["best_mae"])
        history = list(saved["history"])
    resumed_from = len(history)
    has_validation = len(validation_set.cells) > 0

    def rate_spent() -> bool:
        return bool(optimiser.param_groups[0]["lr"] < config.learning_rate * config.stop_ratio)

    for epoch in range(resumed_from, config.epochs):
        if rate_spent():
            break
        began = time.perf_counter()
        model.train()
        shuffle = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        total = 0.0
        for rows in _shuffled_batches(len(y), config.batch_size, shuffle):
            batch, target = fit_set.batch(rows)
            scaled = torch.as_tensor((target - mean) / std, dtype=torch.float32, device=device)
            optimiser.zero_grad()
            loss = torch.nn.functional.mse_loss(model(batch.to(device)), scaled)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(rows)
        train_loss = total / max(len(y), 1)
        validation_mae = (
            mean_absolute_error(model, validation_set, device) if has_validation else None
        )
        watched = validation_mae if validation_mae is not None else train_loss
        if watched < best_mae:
            best_state, best_mae = _snapshot(model), watched
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
        if checkpoint is not None:
            checkpoint.save(
                {
                    "model": model.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "best": best_state,
                    "best_mae": best_mae,
                    "history": history,
                }
            )
        if on_epoch is not None:
            on_epoch(log)
    stopped = "learning rate below a tenth of its start" if rate_spent() else "epoch limit"
    if has_validation:
        model.load_state_dict(best_state)
    model.eval()
    return Fitted(model, stopped, history, resumed_from)
