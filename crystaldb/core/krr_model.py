"""A trained KRR model as data: its weights file, and predictions from cells or spectra.

For zeta = 1 (the paper's linear average kernel) the dual model collapses to one weight vector
per species triple, w = sum_j alpha_j p_j / |p_j|, so a prediction is one dot product with the
structure's own average spectrum, independent of the training set's size.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crystaldb.core.cell import Cell
from crystaldb.core.descriptors import Hypers, describe, hypers_from_record
from crystaldb.core.kernels import linear_kernel
from crystaldb.core.soap import AverageSpectra


@dataclass(frozen=True)
class KrrWeights:
    """Everything a KRR model needs to predict, as stored in its weights file."""

    hypers: Hypers  # SOAP's or MBTR's: the descriptor the primal weights are blocks of
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
            keys, values = f["primal_keys"], f["primal_values"]
            return cls(
                hypers=hypers_from_record(record),
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
    return weights.predict(describe(cells, weights.hypers))
