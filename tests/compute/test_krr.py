"""Kernel ridge regression: the in-place Cholesky against a plain solve, on a real kernel."""

from __future__ import annotations

import numpy as np
import pytest

from crystaldb.compute import krr
from crystaldb.compute.kernels import average_kernel
from crystaldb.compute.soap import SoapHypers, average_spectra
from tests.compute.conftest import jarvis_cells


@pytest.fixture(scope="module")
def real_kernel() -> tuple[np.ndarray, np.ndarray]:
    """The average kernel of the 50 labelled JARVIS crystals, and their real gaps."""
    cells, gaps = jarvis_cells()
    spectra = average_spectra(cells, SoapHypers(n_max=4, l_max=3))
    return average_kernel(spectra, spectra), gaps


def _reader(kernel: np.ndarray) -> krr.Reader:
    return lambda rows, cols: kernel[np.ix_(rows, cols)]


def test_in_place_factorisation_matches_a_plain_solve(real_kernel) -> None:
    kernel, gaps = real_kernel
    index = np.arange(len(gaps))
    buffer = krr.load_square(_reader(kernel), index)
    diagonal = buffer.diagonal().copy()
    for regularisation in (1e-3, 1e-6, 1e-2):  # refactorised from the same buffer each time
        factor = krr.factorise(buffer, diagonal, regularisation)
        assert np.shares_memory(factor, buffer)  # in place: no second N x N
        expected = np.linalg.solve(kernel + regularisation * np.eye(len(gaps)), gaps)
        np.testing.assert_allclose(krr.solve(factor, gaps), expected, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(np.triu(buffer, 1), np.triu(kernel, 1))  # upper kept


def test_small_regularisation_interpolates_the_training_set(real_kernel) -> None:
    kernel, gaps = real_kernel
    index = np.arange(len(gaps))
    fit = krr.fit(_reader(kernel), index, gaps, 1e-9)
    predicted = krr.predict(_reader(kernel), index, index, fit)
    assert np.abs(predicted - np.maximum(gaps, 0)).max() < 0.05


def test_cross_validation_picks_from_the_grid_and_beats_the_mean(real_kernel) -> None:
    kernel, gaps = real_kernel
    index = np.arange(len(gaps))
    cv = krr.cross_validate(_reader(kernel), index, gaps, folds=5, seed=1)
    assert cv.best in krr.DEFAULT_GRID and len(cv.mae) == len(krr.DEFAULT_GRID)
    baseline = np.mean([np.abs(gaps - gaps.mean()).mean()])
    assert min(cv.mae) < baseline


def test_negative_predictions_are_clipped_and_errors_named(real_kernel) -> None:
    kernel, gaps = real_kernel
    index = np.arange(len(gaps))
    fit = krr.Fit(alpha=-np.ones(len(gaps)), mean=0.0, regularisation=1.0)
    assert (krr.predict(_reader(kernel), index, index, fit) == 0.0).all()
    with pytest.raises(krr.RegressionError, match="at least 10"):
        krr.fold_labels(5, 10, 0)
    buffer = krr.load_square(_reader(-kernel), index)
    with pytest.raises(krr.RegressionError, match="not positive definite"):
        krr.factorise(buffer, buffer.diagonal().copy(), 1e-6)


def test_bootstrap_interval_brackets_the_metric() -> None:
    rng = np.random.default_rng(0)
    actual = rng.uniform(0, 5, 200)
    metrics = krr.regression_metrics(actual + rng.normal(0, 0.3, 200), actual)
    assert metrics["mae_ci95"][0] < metrics["mae"] < metrics["mae_ci95"][1]
    assert metrics["rmse_ci95"][0] < metrics["rmse"] < metrics["rmse_ci95"][1]
