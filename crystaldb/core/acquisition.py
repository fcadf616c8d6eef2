"""Retrospective active learning: acquisition by committee spread against random acquisition.

A simulation on structures already labelled, so the question "does labelling where models
disagree buy more than labelling at random?" is answered before any compute is spent. Both
strategies start from the same `start` random members of the pool (the train split); each
round acquires `step` more: "spread" the unlabelled pool members on which a committee of KRR
models, each fitted on a bootstrap resample of the labelled set, disagree most (population
standard deviation of their predictions, ties to the lower kernel index, as `label xtb
--acquire` ranks); "random" as many drawn at random. After every round one KRR on all the
labelled structures is scored on the test split. KRR is `core/krr.py`'s, on the kernel as
given: targets centred on the training mean, predictions clipped at 0 eV, one regularisation
for every fit (chosen once by cross-validation on the whole pool unless given).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from crystaldb.core import krr
from crystaldb.core.errors import CrystaldbError

STRATEGIES = ("random", "spread")
CV_FOLDS = 5  # the regularisation's cross-validation on the pool (small: it runs once)


class AcquisitionError(CrystaldbError):
    """Settings the simulation cannot run with, the option at fault named."""


@dataclass(frozen=True)
class AcquisitionHypers:
    """The simulation's settings; the regularisation is chosen by CV when None."""

    start: int = 20
    step: int = 20
    rounds: int = 10
    committee: int = 8
    regularisation: float | None = None
    seeds: int = 5

    def __post_init__(self) -> None:
        """Refuse what cannot run, naming the option."""
        for option, value, least in (
            ("--start", self.start, 2),
            ("--step", self.step, 1),
            ("--rounds", self.rounds, 1),
            ("--committee", self.committee, 2),
            ("--seeds", self.seeds, 1),
        ):
            if value < least:
                raise AcquisitionError(f"{option} {value}: at least {least}")
        if self.regularisation is not None and not self.regularisation > 0:
            raise AcquisitionError(
                f"--regularisation {self.regularisation:g}: must be a positive number"
            )

    @property
    def sizes(self) -> tuple[int, ...]:
        """Labelled structures at each point of the curve: start, start + step, ..."""
        return tuple(self.start + k * self.step for k in range(self.rounds + 1))

    def check(self, pool: int) -> None:
        """Refuse a curve that needs more structures than the pool holds."""
        if self.start > pool:
            raise AcquisitionError(f"--start {self.start}: more than the {pool} train structures")
        if self.sizes[-1] > pool:
            raise AcquisitionError(
                f"--rounds {self.rounds}: --start {self.start} + {self.rounds} x --step"
                f" {self.step} = {self.sizes[-1]} structures, more than the {pool} train"
                f" structures; at most {(pool - self.start) // self.step} rounds"
            )


@dataclass(frozen=True)
class StrategyCurve:
    """One strategy's test MAE per seed (rows) at every size, and the order it labelled in."""

    strategy: str
    sizes: tuple[int, ...]
    mae: np.ndarray  # seeds x sizes
    order: np.ndarray  # seeds x sizes[-1]: kernel indices, in the order they were labelled

    @property
    def mean(self) -> np.ndarray:
        """Mean test MAE over the seeds."""
        return np.asarray(self.mae.mean(axis=0))

    @property
    def sd(self) -> np.ndarray:
        """Sample standard deviation over the seeds (zero for one seed)."""
        if len(self.mae) < 2:
            return np.zeros(len(self.sizes))
        return np.asarray(self.mae.std(axis=0, ddof=1))

    def points(self) -> list[tuple[int, float, float]]:
        """(labelled structures, mean MAE, sd) per point."""
        return [
            (n, float(m), float(s)) for n, m, s in zip(self.sizes, self.mean, self.sd, strict=True)
        ]


@dataclass(frozen=True)
class AcquisitionCurves:
    """Both strategies' curves and the regularisation every fit used."""

    regularisation: float
    curves: dict[str, StrategyCurve]


def reader(kernel: np.ndarray) -> krr.Reader:
    """core/krr's kernel reader over an in-memory matrix."""
    return lambda rows, cols: kernel[np.ix_(rows, cols)]


def strategy_rng(seed: int, strategy: str) -> np.random.Generator:
    """The stream a strategy draws from for one seed: its own, so each is reproducible alone."""
    return np.random.default_rng([seed, 1 + STRATEGIES.index(strategy)])


def initial_set(pool: np.ndarray, start: int, seed: int) -> np.ndarray:
    """The `start` pool members both strategies begin with, for one seed."""
    return np.random.default_rng(seed).choice(pool, size=start, replace=False)


def choose_regularisation(
    kernel: np.ndarray, y: np.ndarray, pool: np.ndarray, seed: int = 0
) -> float:
    """core/krr's grid and tie rule, by CV_FOLDS-fold cross-validation on the whole pool."""
    folds = min(CV_FOLDS, len(pool))
    return krr.cross_validate(reader(kernel), pool, y[pool], folds=folds, seed=seed).best


def committee_predictions(
    kernel: np.ndarray,
    y: np.ndarray,
    labelled: np.ndarray,
    candidates: np.ndarray,
    regularisation: float,
    committee: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Committee x candidates: KRR fits on bootstrap resamples of the labelled set."""
    read = reader(kernel)
    out = np.empty((committee, len(candidates)))
    for member in range(committee):
        drawn = labelled[rng.integers(0, len(labelled), size=len(labelled))]
        model = krr.fit(read, drawn, y[drawn], regularisation)
        out[member] = krr.predict(read, candidates, drawn, model)
    return out


def largest(spread: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The k candidates of largest spread; ties to the lower kernel index."""
    return candidates[np.lexsort((candidates, -spread))[:k]]


def spread_round(
    kernel: np.ndarray,
    y: np.ndarray,
    labelled: np.ndarray,
    candidates: np.ndarray,
    step: int,
    regularisation: float,
    committee: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The `step` candidates whose committee predictions spread most (population sd)."""
    guesses = committee_predictions(kernel, y, labelled, candidates, regularisation, committee, rng)
    return largest(guesses.std(axis=0), candidates, step)


def labelled_mae(
    kernel: np.ndarray, y: np.ndarray, labelled: np.ndarray, test: np.ndarray, lam: float
) -> float:
    """Test MAE of one KRR on every labelled structure."""
    read = reader(kernel)
    model = krr.fit(read, labelled, y[labelled], lam)
    return float(np.abs(krr.predict(read, test, labelled, model) - y[test]).mean())


Acquire = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (labelled, candidates) -> chosen


def simulate(
    kernel: np.ndarray,
    y: np.ndarray,
    test: np.ndarray,
    start: np.ndarray,
    rounds: int,
    regularisation: float,
    acquire: Acquire,
    pool: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One strategy from one start: test MAE at each size, and the labelling order."""
    labelled = np.array(start)
    mae = [labelled_mae(kernel, y, labelled, test, regularisation)]
    for _ in range(rounds):
        candidates = np.setdiff1d(pool, labelled)  # sorted: ties go to the lower index
        labelled = np.concatenate([labelled, acquire(labelled, candidates)])
        mae.append(labelled_mae(kernel, y, labelled, test, regularisation))
    return np.array(mae), labelled


def _acquirers(
    kernel: np.ndarray, y: np.ndarray, hypers: AcquisitionHypers, lam: float, seed: int
) -> dict[str, Acquire]:
    """Each strategy's round for one seed, on its own random stream."""
    spread_rng, random_rng = strategy_rng(seed, "spread"), strategy_rng(seed, "random")
    return {
        "random": lambda labelled, candidates: random_rng.choice(
            candidates, size=hypers.step, replace=False
        ),
        "spread": lambda labelled, candidates: spread_round(
            kernel, y, labelled, candidates, hypers.step, lam, hypers.committee, spread_rng
        ),
    }


def validate_problem(kernel: np.ndarray, y: np.ndarray, pool: np.ndarray, test: np.ndarray) -> None:
    """Refuse a kernel, labels and splits that do not fit together."""
    n = len(y)
    if kernel.shape != (n, n):
        raise AcquisitionError(f"kernel: {kernel.shape} for {n} labels; a square n x n is needed")
    if len(test) == 0:
        raise AcquisitionError("test split: no labelled structures to score the curves on")
    if np.intersect1d(pool, test).size:
        raise AcquisitionError("pool and test split overlap; they must be disjoint")
    if np.isnan(y[np.concatenate([pool, test])]).any():
        raise AcquisitionError("labels: a pool or test structure has no label (NaN)")


def acquisition_curves(
    kernel: np.ndarray,
    y: np.ndarray,
    pool: np.ndarray,
    test: np.ndarray,
    hypers: AcquisitionHypers,
    on_seed: Callable[[int, int], None] | None = None,
) -> AcquisitionCurves:
    """Test MAE against labelled structures for both strategies, over `hypers.seeds` seeds."""
    pool, test = np.asarray(pool, dtype=np.int64), np.asarray(test, dtype=np.int64)
    validate_problem(kernel, y, pool, test)
    hypers.check(len(pool))
    lam = hypers.regularisation or choose_regularisation(kernel, y, pool)
    mae = {s: np.empty((hypers.seeds, hypers.rounds + 1)) for s in STRATEGIES}
    order = {s: np.empty((hypers.seeds, hypers.sizes[-1]), dtype=np.int64) for s in STRATEGIES}
    for seed in range(hypers.seeds):
        start = initial_set(pool, hypers.start, seed)
        for strategy, acquire in _acquirers(kernel, y, hypers, lam, seed).items():
            mae[strategy][seed], order[strategy][seed] = simulate(
                kernel, y, test, start, hypers.rounds, lam, acquire, pool
            )
        if on_seed:
            on_seed(seed + 1, hypers.seeds)
    curves = {s: StrategyCurve(s, hypers.sizes, mae[s], order[s]) for s in STRATEGIES}
    return AcquisitionCurves(regularisation=lam, curves=curves)
