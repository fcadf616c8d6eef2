"""Graph networks (SchNet, CGCNN, edge-update MPNN) as stored objects: hypers, weights, output.

The one registry of the architectures: `make_hypers` and `make_model` build them by name,
`NNWeights` is the weights file (architecture, hyperparameters, state dict) and
`predict_graphs` turns cells and their quotient graphs into clipped band gaps on a device.
Pure: no database, no Dask; training (`training.py`), the jobs (`nn_jobs.py`,
`inference.py`) and the API all go through here.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from crystaldb.core.cell import Cell
from crystaldb.core.cgcnn import CGCNN
from crystaldb.core.graph_tensors import GraphBatch, collate
from crystaldb.core.graphs import GraphArrays, parse_recipe, quotient_graph
from crystaldb.core.lru import Lru
from crystaldb.core.mpnn import EdgeMPNN
from crystaldb.core.network_hypers import (
    CGCNNHypers,
    EdgeMPNNHypers,
    HyperparameterError,
    SchNetHypers,
)
from crystaldb.core.schnet import SchNet

Hypers = SchNetHypers | CGCNNHypers | EdgeMPNNHypers
Network = SchNet | CGCNN | EdgeMPNN
KINDS: dict[str, type[Hypers]] = {
    "schnet": SchNetHypers,
    "cgcnn": CGCNNHypers,
    "mpnn": EdgeMPNNHypers,
}
ARCHITECTURES = tuple(KINDS)
# Values the hyperparameter records carry that are derived, not set.
_DERIVED = {"architecture", "recipe", "gaussians", "element_encoding"}


def make_hypers(architecture: str, overrides: dict[str, Any] | None = None) -> Hypers:
    """The architecture's hyperparameters (the papers' defaults, with `overrides`)."""
    if architecture not in KINDS:
        raise HyperparameterError(
            f"architecture: unknown {architecture!r}; expected one of {', '.join(ARCHITECTURES)}"
        )
    kind = KINDS[architecture]
    known = {f.name for f in fields(kind)}
    values = dict(overrides or {})
    unknown = sorted(set(values) - known - _DERIVED)
    if unknown:
        raise HyperparameterError(
            f"hyperparameters: {', '.join(unknown)} not known to {architecture}; "
            f"it takes {', '.join(sorted(known))}"
        )
    return kind(**{k: v for k, v in values.items() if k in known})


def make_model(hypers: Hypers) -> Network:
    """A freshly initialised module (seed torch first for reproducible weights)."""
    if isinstance(hypers, SchNetHypers):
        return SchNet(hypers)
    if isinstance(hypers, EdgeMPNNHypers):
        return EdgeMPNN(hypers)
    return CGCNN(hypers)


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


_MODULES: Lru[tuple[str, str], Network] = Lru(8)  # per process: (weights key, device) -> module


def _cached_module(weights: NNWeights, device: str) -> Network:
    """Build a module once per process and device: workers predict many batches with it."""
    return _MODULES.get_or_put((weights.key, device), lambda: weights.module(device))


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


def worker_device(threads: int | None = None) -> str:
    """cuda where this process sees a GPU, cpu otherwise.

    `threads` (a Dask worker's own thread count, from the job layer) holds torch to it, so
    two worker processes on two cores do not each start a thread per core.
    """
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return "cuda" if torch.cuda.is_available() else "cpu"
