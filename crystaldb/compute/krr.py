"""Kernel ridge regression with a Cholesky factorisation done in place: one copy of K, not two.

The training kernel lives in one Fortran-ordered buffer. LAPACK's potrf with lower=True reads
and overwrites only the lower triangle and the diagonal, so the strictly upper triangle still
holds K afterwards: the next regularisation strength of a cross-validation grid restores the
lower triangle from it (in bounded strips) and factorises again, without a second N x N copy.
Targets are centred on the training mean (the average kernel has no bias term); predictions of
band gaps are clipped at 0 eV, since negative gaps are unphysical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import lapack

from crystaldb.platform.errors import CrystaldbError

# The grid the regularisation is chosen from by 10-fold cross-validation.
DEFAULT_GRID = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
TIE_EV = 1e-4  # validation MAEs closer than this (eV) are not told apart
STRIP = 512  # rows restored at a time: a strip of 512 x N, never a second N x N

# read(rows, cols) -> K[rows][:, cols], the kernel reader (Zarr in jobs, an array in tests)
Reader = Callable[[np.ndarray, np.ndarray], np.ndarray]


class RegressionError(CrystaldbError):
    """A fit that cannot go on (too few structures, a kernel that is not positive definite)."""


@dataclass(frozen=True)
class CrossValidation:
    """Mean validation MAE of every grid value, and the one chosen."""

    grid: tuple[float, ...]
    mae: tuple[float, ...]
    folds: int
    best: float


@dataclass(frozen=True)
class Fit:
    """Dual coefficients and the centring of a trained model."""

    alpha: np.ndarray
    mean: float
    regularisation: float


def load_square(read: Reader, index: np.ndarray) -> np.ndarray:
    """K[index][:, index] in a Fortran-ordered buffer, filled a strip at a time."""
    n = len(index)
    buffer = np.empty((n, n), order="F")
    for start in range(0, n, STRIP):
        buffer[start : start + STRIP] = read(index[start : start + STRIP], index)
    return buffer


def factorise(buffer: np.ndarray, diagonal: np.ndarray, regularisation: float) -> np.ndarray:
    """Cholesky of K + lambda I in place, from the intact upper triangle; returns the factor."""
    n = len(diagonal)
    for start in range(0, n, STRIP):
        stop = min(n, start + STRIP)
        buffer[stop:, start:stop] = buffer[start:stop, stop:].T
        block = buffer[start:stop, start:stop]
        lower = np.tril_indices(stop - start, -1)
        block[lower] = block.T[lower]
    buffer[np.diag_indices(n)] = diagonal + regularisation
    factor, info = lapack.dpotrf(buffer, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        raise RegressionError(
            f"the kernel plus {regularisation:g} I is not positive definite (LAPACK info {info}):"
            " choose a larger regularisation"
        )
    return np.asarray(factor)


def solve(factor: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(K + lambda I)^-1 y from the lower Cholesky factor."""
    alpha, info = lapack.dpotrs(factor, y, lower=1)
    if info != 0:
        raise RegressionError(f"the Cholesky solve failed (LAPACK info {info})")
    return np.asarray(alpha)


def predict(read: Reader, rows: np.ndarray, train: np.ndarray, fit: Fit) -> np.ndarray:
    """K(rows, train) alpha + mean, clipped at 0, read a strip at a time."""
    out = np.empty(len(rows))
    for start in range(0, len(rows), STRIP):
        block = read(rows[start : start + STRIP], train)
        out[start : start + STRIP] = block @ fit.alpha + fit.mean
    return np.maximum(out, 0.0)


def fold_labels(n: int, folds: int, seed: int) -> np.ndarray:
    """Fold of each training structure: a seeded shuffle cut into `folds` near-equal parts."""
    if n < folds:
        raise RegressionError(f"{folds}-fold cross-validation needs at least {folds} structures")
    labels = np.arange(n) % folds
    np.random.default_rng(seed).shuffle(labels)
    return labels


def cross_validate(
    read: Reader,
    train: np.ndarray,
    y: np.ndarray,
    grid: Sequence[float] = DEFAULT_GRID,
    folds: int = 10,
    seed: int = 0,
    on_fold: Callable[[int, int], None] | None = None,
) -> CrossValidation:
    """Mean validation MAE over the folds for every grid value; ties go to the larger one."""
    labels = fold_labels(len(train), folds, seed)
    errors = np.zeros((folds, len(grid)))
    for fold in range(folds):
        inner, held = np.flatnonzero(labels != fold), np.flatnonzero(labels == fold)
        buffer = load_square(read, train[inner])
        diagonal = buffer.diagonal().copy()
        held_block = read(train[held], train[inner])
        mean = float(y[inner].mean())
        for g, regularisation in enumerate(grid):
            factor = factorise(buffer, diagonal, regularisation)
            alpha = solve(factor, y[inner] - mean)
            guess = np.maximum(held_block @ alpha + mean, 0.0)
            errors[fold, g] = np.abs(guess - y[held]).mean()
        del buffer, held_block
        if on_fold:
            on_fold(fold + 1, folds)
    mae = errors.mean(axis=0)
    # within TIE_EV of the best counts as a tie: take the strongest regularisation, the stabler
    best = max(g for g, m in zip(grid, mae, strict=True) if m <= mae.min() + TIE_EV)
    return CrossValidation(tuple(grid), tuple(float(m) for m in mae), folds, best)


def fit(read: Reader, train: np.ndarray, y: np.ndarray, regularisation: float) -> Fit:
    """Dual coefficients on the whole training set, one in-place factorisation."""
    buffer = load_square(read, train)
    diagonal = buffer.diagonal().copy()
    mean = float(y.mean())
    factor = factorise(buffer, diagonal, regularisation)
    alpha = solve(factor, y - mean)
    return Fit(alpha=alpha, mean=mean, regularisation=regularisation)


def regression_metrics(
    predicted: np.ndarray, actual: np.ndarray, seed: int = 0, resamples: int = 1000
) -> dict[str, Any]:
    """MAE and RMSE with 95% bootstrap intervals (resampling the test structures)."""
    errors = predicted - actual
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(errors), size=(resamples, len(errors)))
    mae_draws = np.abs(errors[draws]).mean(axis=1)
    rmse_draws = np.sqrt((errors[draws] ** 2).mean(axis=1))
    return {
        "n": len(errors),
        "mae": float(np.abs(errors).mean()),
        "rmse": float(np.sqrt((errors**2).mean())),
        "mae_ci95": [float(np.percentile(mae_draws, 2.5)), float(np.percentile(mae_draws, 97.5))],
        "rmse_ci95": [
            float(np.percentile(rmse_draws, 2.5)),
            float(np.percentile(rmse_draws, 97.5)),
        ],
    }


def learning_curve(
    read: Reader,
    train: np.ndarray,
    y: np.ndarray,
    test: np.ndarray,
    y_test: np.ndarray,
    regularisation: float,
    points: int = 6,
    seed: int = 0,
) -> list[tuple[int, float]]:
    """Test MAE against training size: nested random subsets, log-spaced up to all of train."""
    if len(test) == 0 or len(train) < 2:
        return []
    order = np.random.default_rng(seed).permutation(len(train))
    smallest = min(len(train), max(2, len(train) // 32))
    sizes = np.unique(np.geomspace(smallest, len(train), points).astype(int))
    curve = []
    for size in sizes:
        chosen = np.sort(order[:size])
        subset = fit(read, train[chosen], y[chosen], regularisation)
        guess = predict(read, test, train[chosen], subset)
        curve.append((int(size), float(np.abs(guess - y_test).mean())))
    return curve
