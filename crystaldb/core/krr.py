"""Kernel ridge regression with a Cholesky factorisation done in place: one copy of K, not two.

The training kernel lives in one Fortran-ordered buffer. LAPACK's potrf with lower=True reads
and overwrites only the lower triangle and the diagonal, so the strictly upper triangle still
holds K afterwards: the next regularisation strength of a cross-validation grid restores the
lower triangle from it (in bounded strips) and factorises again, without a second N x N copy.
Targets are centred on the training mean (the average kernel has no bias term); predictions of
band gaps are clipped at 0 eV, since negative gaps are unphysical.

Beyond about EXACT_LIMIT training structures the N x N kernel no longer fits in memory
(50,000^2 x 8 B = 20 GB), so the Nyström approximation takes over: the model is a sum over m
landmarks drawn from the training set, alpha = (K_mn K_nm + lambda K_mm)^-1 K_mn (y - mean),
from the n x m rectangle of every training structure against the landmarks. One pass over the
rectangle accumulates G = K_mn K_nm (BLAS syrk, upper triangle, in place), K_mn y and K_mn 1;
a cross-validation fold subtracts its own rows from those sums, so each fold costs one read
of its rows and an m x m Cholesky per grid value. Memory: G, K_mm and one work buffer (3 m^2
floats) plus the rows of one fold. K_mn K_nm squares the condition number of K, so where
floating point leaves G + lambda K_mm numerically indefinite a jitter (1e-12 .. 1e-6 of its
mean diagonal) is added to the diagonal, and recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import blas, lapack

from crystaldb.core.errors import CrystaldbError

# The grid the regularisation is chosen from by 10-fold cross-validation.
DEFAULT_GRID = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
TIE_EV = 1e-4  # validation MAEs closer than this (eV) are not told apart
STRIP = 512  # rows restored at a time: a strip of 512 x N, never a second N x N
READ_BLOCK = 2048  # rows and columns read from the kernel at a time (its default tile)
EXACT_LIMIT = 50_000  # training structures beyond which exact KRR's N x N kernel is too big
JITTERS = tuple(10.0**k for k in range(-12, -5))  # tried in turn, times the mean diagonal

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
    jitter: tuple[float, ...] = ()  # Nyström: the largest jitter any fold needed, per value


@dataclass(frozen=True)
class Fit:
    """Dual coefficients and the centring of a trained model."""

    alpha: np.ndarray
    mean: float
    regularisation: float
    jitter: float = 0.0  # added to the diagonal where floating point needed it (Nyström)


def load_square(read: Reader, index: np.ndarray) -> np.ndarray:
    """K[index][:, index] in a Fortran-ordered buffer, filled a block at a time.

    Blocks of READ_BLOCK x READ_BLOCK (the kernels' default tile, so a block of leading rows
    is one Zarr chunk, decoded once) keep the memory beside the buffer to a chunk or two,
    where strips of rows x all columns would decode a whole row of chunks at a time.
    """
    n = len(index)
    buffer = np.empty((n, n), order="F")
    for row in range(0, n, READ_BLOCK):
        rows = index[row : row + READ_BLOCK]
        for col in range(0, n, READ_BLOCK):
            block = read(rows, index[col : col + READ_BLOCK])
            buffer[row : row + READ_BLOCK, col : col + READ_BLOCK] = block
    return buffer


def factorise(
    buffer: np.ndarray,
    diagonal: np.ndarray,
    regularisation: float,
    regulariser: np.ndarray | None = None,
    jitter: float = 0.0,
) -> np.ndarray:
    """Cholesky of K + lambda R (R = I, or K_mm) in place, from the intact upper triangle."""
    n = len(diagonal)
    for start in range(0, n, STRIP):
        stop = min(n, start + STRIP)
        buffer[stop:, start:stop] = buffer[start:stop, stop:].T
        block = buffer[start:stop, start:stop]
        lower = np.tril_indices(stop - start, -1)
        block[lower] = block.T[lower]
        if regulariser is not None:
            buffer[stop:, start:stop] += regularisation * regulariser[stop:, start:stop]
            block[lower] += regularisation * regulariser[start:stop, start:stop][lower]
    ridge = regularisation if regulariser is None else regularisation * np.diagonal(regulariser)
    buffer[np.diag_indices(n)] = diagonal + ridge + jitter
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
    nystrom: tuple[np.ndarray, np.ndarray] | None = None,
) -> CrossValidation:
    """Mean validation MAE over the folds for every grid value; ties go to the larger one.

    `nystrom` = (landmark rows, their columns): Nyström KRR, each fold's sums being the full
    ones minus the fold's own rows; the largest jitter any fold needed is kept per value.
    """
    labels = fold_labels(len(train), folds, seed)
    if nystrom is None:
        per_fold = _exact_folds(read, train, y, labels, grid)
    else:
        per_fold = _nystrom_folds(read, train, y, labels, grid, nystrom)
    errors = np.zeros((folds, len(grid)))
    jitters = np.zeros(len(grid))
    for fold, (fold_errors, fold_jitters) in enumerate(per_fold):
        errors[fold] = fold_errors
        np.maximum(jitters, fold_jitters, out=jitters)
        if on_fold:
            on_fold(fold + 1, folds)
    mae = errors.mean(axis=0)
    return CrossValidation(
        tuple(grid),
        tuple(float(m) for m in mae),
        folds,
        choose(grid, mae),
        () if nystrom is None else tuple(float(j) for j in jitters),
    )


def _exact_folds(
    read: Reader, train: np.ndarray, y: np.ndarray, labels: np.ndarray, grid: Sequence[float]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each fold's validation MAE per grid value (and no jitter): one in-place K per fold."""
    for fold in range(int(labels.max()) + 1):
        inner, held = np.flatnonzero(labels != fold), np.flatnonzero(labels == fold)
        buffer = load_square(read, train[inner])
        diagonal = buffer.diagonal().copy()
        held_block = read(train[held], train[inner])
        mean = float(y[inner].mean())
        errors = np.empty(len(grid))
        for g, regularisation in enumerate(grid):
            factor = factorise(buffer, diagonal, regularisation)
            alpha = solve(factor, y[inner] - mean)
            guess = np.maximum(held_block @ alpha + mean, 0.0)
            errors[g] = np.abs(guess - y[held]).mean()
        del buffer, held_block
        yield errors, np.zeros(len(grid))


def choose(grid: Sequence[float], mae: np.ndarray) -> float:
    """Within TIE_EV of the best MAE counts as a tie: the strongest regularisation, the stabler."""
    return max(g for g, m in zip(grid, mae, strict=True) if m <= mae.min() + TIE_EV)


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


def mae_difference(
    predicted: np.ndarray,
    reference: np.ndarray,
    actual: np.ndarray,
    seed: int = 0,
    resamples: int = 1000,
) -> dict[str, Any]:
    """MAE(predicted) - MAE(reference) with a paired 95% bootstrap interval.

    Two models scored on the same test structures share most of their error: the paired
    interval (both MAEs on the same resample) says whether one beats the other, where the
    overlap of the two separate intervals cannot.
    """
    gain = np.abs(predicted - actual) - np.abs(reference - actual)
    rng = np.random.default_rng(seed)
    draws = gain[rng.integers(0, len(gain), size=(resamples, len(gain)))].mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"difference": float(gain.mean()), "ci95": [float(low), float(high)]}


def nested_subsets(n: int, points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded order of n and log-spaced sizes: subset k is the first sizes[k] of the order."""
    order = np.random.default_rng(seed).permutation(n)
    smallest = min(n, max(2, n // 32))
    return order, np.unique(np.geomspace(smallest, n, points).astype(int))


# --- memory, and the Nyström approximation beyond it ----------------------------------------


def gigabytes(n_bytes: float) -> str:
    """Bytes as a short decimal size for messages: 20.0 GB."""
    return f"{n_bytes / 1e9:.1f} GB"


def exact_advice(n: int) -> str | None:
    """Above EXACT_LIMIT structures: the memory exact KRR needs, and Nyström instead."""
    if n <= EXACT_LIMIT:
        return None
    m = 10_000
    return (
        f"exact KRR of {n:,} training structures holds their {n:,} x {n:,} kernel in memory:"
        f" {gigabytes(8.0 * n * n)}; above {EXACT_LIMIT:,} use the Nyström approximation,"
        f" `crystaldb kernel build --release R --landmarks M` then `crystaldb train krr` on"
        f" that kernel (M = {m:,}: a {gigabytes(8.0 * n * m)} rectangle on disk, about"
        f" {gigabytes(3 * 8.0 * m * m)} of memory to train)"
    )


def draw_landmarks(n: int, m: int, seed: int, source: str = "the train split") -> np.ndarray:
    """m of n training positions drawn without replacement, seeded, in their original order."""
    if m < 1:
        raise RegressionError(f"--landmarks: at least 1 landmark (got {m})")
    if m > n:
        raise RegressionError(
            f"--landmarks {m}: {source} has only {n} labelled training structures to draw from"
        )
    return np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))


@dataclass(frozen=True)
class Gram:
    """Sums over kernel rows: C^T C (upper triangle, Fortran order), C^T y and C^T 1."""

    matrix: np.ndarray
    cy: np.ndarray
    ones: np.ndarray

    @classmethod
    def zeros(cls, m: int) -> Gram:
        """Empty sums for m landmarks."""
        return cls(np.zeros((m, m), order="F"), np.zeros(m), np.zeros(m))

    def add(self, block: np.ndarray, y: np.ndarray, sign: float = 1.0) -> None:
        """Add (sign -1: remove) the contribution of a block of rows, in place (BLAS syrk)."""
        block = np.ascontiguousarray(block, dtype=np.float64)
        blas.dsyrk(sign, block.T, beta=1.0, c=self.matrix, trans=0, lower=0, overwrite_c=1)
        self.cy[:] += sign * (block.T @ y)
        self.ones[:] += sign * block.sum(axis=0)

    def rhs(self, mean: float) -> np.ndarray:
        """K_mn (y - mean): the right-hand side for targets centred on `mean`."""
        return self.cy - mean * self.ones


def gram_of(read: Reader, rows: np.ndarray, columns: np.ndarray, y: np.ndarray) -> Gram:
    """The sums over `rows` of the rectangle, read a strip at a time."""
    gram = Gram.zeros(len(columns))
    for start in range(0, len(rows), STRIP):
        gram.add(read(rows[start : start + STRIP], columns), y[start : start + STRIP])
    return gram


def nystrom_factorise(
    buffer: np.ndarray, diagonal: np.ndarray, regularisation: float, k_mm: np.ndarray
) -> tuple[np.ndarray, float]:
    """Cholesky of G + lambda K_mm in place; a recorded jitter only if rounding needs it.

    Needed means LAPACK finds a non-positive pivot, or the smallest pivot is so small
    ((min/max)^2 under m x machine epsilon) that it holds rounding error rather than data.
    """
    scale = float(np.mean(diagonal)) if len(diagonal) and np.mean(diagonal) > 0 else 1.0
    for relative in (0.0, *JITTERS):
        jitter = relative * scale
        try:
            factor = factorise(buffer, diagonal, regularisation, k_mm, jitter)
        except RegressionError:
            continue
        pivots = np.abs(np.diagonal(factor))
        # LAPACK fails only on a non-positive pivot; one this small is rounding, not signal
        if (pivots.min() / pivots.max()) ** 2 > len(pivots) * np.finfo(float).eps:
            return factor, jitter
    raise RegressionError(
        f"K_mn K_nm + {regularisation:g} K_mm is not positive definite even with a jitter of"
        f" {JITTERS[-1]:g} of its mean diagonal: choose a larger regularisation, or fewer"
        " landmarks (near-duplicate structures among them?)"
    )


def nystrom_solve(
    gram: Gram, k_mm: np.ndarray, mean: float, regularisation: float
) -> tuple[np.ndarray, float]:
    """alpha = (G + lambda K_mm)^-1 (K_mn y - mean K_mn 1); G's upper triangle is kept."""
    diagonal = gram.matrix.diagonal().copy()
    factor, jitter = nystrom_factorise(gram.matrix, diagonal, regularisation, k_mm)
    alpha = solve(factor, gram.rhs(mean))
    gram.matrix[np.diag_indices(len(diagonal))] = diagonal  # the factor overwrote it
    return alpha, jitter


def _nystrom_folds(
    read: Reader,
    train: np.ndarray,
    y: np.ndarray,
    labels: np.ndarray,
    grid: Sequence[float],
    nystrom: tuple[np.ndarray, np.ndarray],
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each fold's validation MAE and jitter per grid value: full sums minus the fold's rows."""
    landmarks, columns = nystrom
    k_mm = read(landmarks, columns)
    total = gram_of(read, train, columns, y)
    part = Gram.zeros(len(columns))
    for fold in range(int(labels.max()) + 1):
        inner, held = np.flatnonzero(labels != fold), np.flatnonzero(labels == fold)
        held_block = read(train[held], columns)
        for mine, whole in zip(
            (part.matrix, part.cy, part.ones), (total.matrix, total.cy, total.ones), strict=True
        ):
            np.copyto(mine, whole)
        part.add(held_block, y[held], sign=-1.0)
        mean = float(y[inner].mean())
        alphas = np.empty((len(columns), len(grid)))
        jitters = np.empty(len(grid))
        for g, regularisation in enumerate(grid):
            alphas[:, g], jitters[g] = nystrom_solve(part, k_mm, mean, regularisation)
        guesses = np.maximum(held_block @ alphas + mean, 0.0)
        del held_block
        yield np.abs(guesses - y[held][:, None]).mean(axis=0), jitters


def nystrom_fit(
    read: Reader,
    train: np.ndarray,
    y: np.ndarray,
    landmarks: np.ndarray,
    columns: np.ndarray,
    regularisation: float,
) -> Fit:
    """Nyström coefficients over the landmarks (the rectangle's columns), one pass over it."""
    gram = gram_of(read, train, columns, y)
    mean = float(y.mean())
    alpha, jitter = nystrom_solve(gram, read(landmarks, columns), mean, regularisation)
    return Fit(alpha=alpha, mean=mean, regularisation=regularisation, jitter=jitter)


def learning_curve(
    read: Reader,
    train: np.ndarray,
    y: np.ndarray,
    test: np.ndarray,
    y_test: np.ndarray,
    regularisation: float,
    points: int = 6,
    seed: int = 0,
    nystrom: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[tuple[int, float]]:
    """Test MAE against training size: nested random subsets, log-spaced up to all of train.

    `nystrom` = (landmark rows, their columns): Nyström fits at those fixed landmarks, the
    subsets' sums grown row by row, so the whole curve is one pass over the rectangle.
    """
    if len(test) == 0 or len(train) < 2:
        return []
    order, sizes = nested_subsets(len(train), points, seed)
    if nystrom is None:
        fits = _exact_subsets(read, train, y, order, sizes, regularisation)
    else:
        fits = _nystrom_subsets(read, train, y, order, sizes, nystrom, regularisation)
    curve = []
    for size, (columns, subset) in zip(sizes, fits, strict=True):
        guess = predict(read, test, columns, subset)
        curve.append((int(size), float(np.abs(guess - y_test).mean())))
    return curve


def _exact_subsets(
    read: Reader,
    train: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    sizes: np.ndarray,
    regularisation: float,
) -> Iterator[tuple[np.ndarray, Fit]]:
    """Exact KRR on each subset: (its kernel columns, its fit)."""
    for size in sizes:
        chosen = np.sort(order[:size])
        yield train[chosen], fit(read, train[chosen], y[chosen], regularisation)


def _nystrom_subsets(
    read: Reader,
    train: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    sizes: np.ndarray,
    nystrom: tuple[np.ndarray, np.ndarray],
    regularisation: float,
) -> Iterator[tuple[np.ndarray, Fit]]:
    """Nyström KRR on each subset at fixed landmarks, adding only each subset's new rows."""
    landmarks, columns = nystrom
    k_mm = read(landmarks, columns)
    gram = Gram.zeros(len(columns))
    done = 0
    for size in sizes:
        new = np.sort(order[done:size])
        for start in range(0, len(new), STRIP):
            rows = new[start : start + STRIP]
            gram.add(read(train[rows], columns), y[rows])
        done = size
        mean = float(y[order[:size]].mean())
        alpha, _ = nystrom_solve(gram, k_mm, mean, regularisation)
        yield columns, Fit(alpha, mean, regularisation)
