"""The graph networks' hyperparameters and optimisation settings, without torch.

The command line reads its defaults from these classes, and model rows record them; keeping
them apart from the torch modules lets `crystaldb --help` start without loading torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from crystaldb.core.errors import CrystaldbError


class HyperparameterError(CrystaldbError):
    """Model hyperparameters outside what the architecture allows."""


def knn_recipe(neighbours: int, max_radius: float) -> str:
    """The canonical name of a k-nearest-neighbour quotient-graph recipe (CGCNN, MPNN)."""
    return f"knn:{neighbours},{float(max_radius)!r}"


def gaussian_count(max_radius: float, step: float) -> int:
    """Gaussian centres every `step` from 0 to `max_radius` inclusive."""
    return math.floor(max_radius / step + 1e-9) + 1


class KnnGraphHypers:
    """What k-nearest-neighbour models (CGCNN, MPNN) derive from their own dataclass fields."""

    neighbours: int
    max_radius: float
    gaussian_step: float

    @property
    def gaussians(self) -> int:
        """Gaussian centres of the distance expansion, 0 to max_radius inclusive."""
        return gaussian_count(self.max_radius, self.gaussian_step)

    @property
    def recipe(self) -> str:
        """The quotient-graph recipe whose edges the model reads."""
        return knn_recipe(self.neighbours, self.max_radius)


@dataclass(frozen=True)
class SchNetHypers:
    """SchNet's hyperparameters; the defaults are the OMDB-GAP1 paper's."""

    cutoff: float = 5.0  # angstrom
    features: int = 64  # F, atom embedding size
    filters: int = 64  # continuous-filter width
    interactions: int = 3  # T, interaction blocks (1..6)
    gaussians: int = 50  # radial basis functions, evenly over 0..cutoff

    def __post_init__(self) -> None:
        if not 1 <= self.interactions <= 6:
            raise HyperparameterError(
                f"interactions: T = {self.interactions}, but SchNet takes 1 to 6 blocks"
            )
        if not 0 < self.cutoff <= 20 or self.features < 1 or self.filters < 1:
            raise HyperparameterError(f"SchNet hyperparameters out of range: {self}")
        if self.gaussians < 2:
            raise HyperparameterError("gaussians: at least 2 radial basis functions")

    @property
    def recipe(self) -> str:
        """The quotient-graph recipe whose edges the model reads."""
        return f"radius:{float(self.cutoff)!r}"

    def record(self) -> dict[str, Any]:
        """Plain values for the model row."""
        return {"architecture": "schnet", **asdict(self), "recipe": self.recipe}


ONE_HOT_ELEMENTS = 92  # Z = 1..92


@dataclass(frozen=True)
class CGCNNHypers(KnnGraphHypers):
    """CGCNN's hyperparameters; the defaults are the paper's."""

    neighbours: int = 12  # k nearest neighbours ...
    max_radius: float = 8.0  # ... within this radius (angstrom)
    gaussian_step: float = 0.2  # angstrom between Gaussian centres, from 0 to max_radius
    gaussian_width: float = 0.2  # angstrom
    element_features: int = ONE_HOT_ELEMENTS  # one-hot of Z (see module docstring)
    features: int = 64  # atom feature size inside the convolutions
    convolutions: int = 3
    hidden: int = 128  # the hidden layer after pooling

    def __post_init__(self) -> None:
        if self.element_features != ONE_HOT_ELEMENTS:
            raise HyperparameterError("element_features: the one-hot covers Z = 1..92 only")
        if not 1 <= self.convolutions <= 8 or self.neighbours < 1 or self.features < 1:
            raise HyperparameterError(f"CGCNN hyperparameters out of range: {self}")
        if not 0 < self.max_radius <= 20 or self.gaussian_step <= 0 or self.gaussian_width <= 0:
            raise HyperparameterError(f"CGCNN distance expansion out of range: {self}")

    def record(self) -> dict[str, Any]:
        """Plain values for the model row."""
        return {
            "architecture": "cgcnn",
            **asdict(self),
            "gaussians": self.gaussians,
            "element_encoding": "one-hot of Z (1..92)",
            "recipe": self.recipe,
        }


@dataclass(frozen=True)
class EdgeMPNNHypers(KnnGraphHypers):
    """The edge-update network's hyperparameters (see the module docstring for their source)."""

    neighbours: int = 24  # k nearest neighbours ...
    max_radius: float = 8.0  # ... within this radius (angstrom)
    features: int = 64  # C, width of node and edge states
    interactions: int = 3  # T, edge-update + message steps (1..6)
    gaussian_step: float = 0.1  # angstrom between Gaussian centres, 0 to max_radius

    def __post_init__(self) -> None:
        if not 1 <= self.interactions <= 6:
            raise HyperparameterError(
                f"interactions: T = {self.interactions}, but the network takes 1 to 6 steps"
            )
        if self.neighbours < 1 or self.features < 1 or not 0 < self.max_radius <= 20:
            raise HyperparameterError(f"edge-update network hyperparameters out of range: {self}")
        if not 0 < self.gaussian_step < self.max_radius:
            raise HyperparameterError(f"gaussian_step: {self.gaussian_step} angstrom is unusable")

    def record(self) -> dict[str, Any]:
        """Plain values for the model row."""
        return {
            "architecture": "mpnn",
            **asdict(self),
            "gaussians": self.gaussians,
            "recipe": self.recipe,
        }


MAX_VALIDATION = 1000  # the paper's validation set
VALIDATION_FRACTION = 0.1  # of a training split too small to spare 1,000


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
