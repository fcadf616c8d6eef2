"""Kernel ridge regression: the in-place Cholesky against a plain solve, on a real kernel."""

from __future__ import annotations

import numpy as np
import pytest

from crystaldb.core import krr
from crystaldb.core.kernels import average_kernel
from crystaldb.core.soap import SoapHypers, average_spectra
from tests.jarvis import jarvis_cells


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


def test_blockwise_read_of_a_scattered_index(real_kernel, monkeypatch) -> None:
    """Blocks smaller than the index, edges that do not divide it: the same square."""
    kernel, _ = real_kernel
    monkeypatch.setattr(krr, "READ_BLOCK", 7)
    index = np.random.default_rng(1).permutation(len(kernel))[:45]
    reads: list[tuple[int, int]] = []

    def read(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        reads.append((len(rows), len(cols)))
        return kernel[np.ix_(rows, cols)]

    buffer = krr.load_square(read, index)
    np.testing.assert_array_equal(buffer, kernel[np.ix_(index, index)])
    assert buffer.flags.f_contiguous and max(max(r) for r in reads) <= 7 and len(reads) == 49


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


def test_a_paired_interval_separates_what_overlapping_intervals_do_not() -> None:
    rng = np.random.default_rng(1)
    actual = rng.uniform(0, 4, 90)
    shared = rng.normal(0, 0.8, 90)  # most of two models' error is the same structures'
    worse, better = actual + shared, actual + 0.85 * shared
    a, b = krr.regression_metrics(better, actual), krr.regression_metrics(worse, actual)
    assert a["mae_ci95"][1] > b["mae_ci95"][0]  # the separate intervals overlap
    paired = krr.mae_difference(better, worse, actual)
    assert paired["difference"] == pytest.approx(a["mae"] - b["mae"])
    assert paired["ci95"][0] < paired["difference"] < paired["ci95"][1] < 0
    assert krr.mae_difference(worse, worse, actual) == {"difference": 0.0, "ci95": [0.0, 0.0]}


# --- Nyström ---------------------------------------------------------------------------------


def _split(gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The release's split of the 50 crystals: first 40 train, last 10 test."""
    return np.arange(40), np.arange(40, len(gaps))


@pytest.mark.parametrize("regularisation", [1e-8, 1e-4, 1e-3, 1e-1])
def test_every_training_structure_as_a_landmark_is_exact_krr(real_kernel, regularisation) -> None:
    kernel, gaps = real_kernel
    train, _ = _split(gaps)
    everything = np.arange(len(gaps))
    exact = krr.fit(_reader(kernel), train, gaps[train], regularisation)
    nystrom = krr.nystrom_fit(_reader(kernel), train, gaps[train], train, train, regularisation)
    assert nystrom.jitter == 0.0  # a well-posed system needs none
    np.testing.assert_allclose(
        krr.predict(_reader(kernel), everything, train, nystrom),
        krr.predict(_reader(kernel), everything, train, exact),
        atol=1e-6,
    )


def test_nystrom_cross_validation_with_every_landmark_matches_exact(real_kernel) -> None:
    kernel, gaps = real_kernel
    train, _ = _split(gaps)
    exact = krr.cross_validate(_reader(kernel), train, gaps[train], folds=10, seed=2)
    nystrom = krr.cross_validate(
        _reader(kernel), train, gaps[train], folds=10, seed=2, nystrom=(train, train)
    )
    np.testing.assert_allclose(nystrom.mae, exact.mae, atol=1e-6)
    assert nystrom.best == exact.best and not any(nystrom.jitter)


def test_a_fold_is_the_full_sums_minus_its_own_rows(real_kernel) -> None:
    """The CV tip: K_mn K_nm over a fold's training rows = the total minus the fold's part."""
    kernel, gaps = real_kernel
    columns = np.arange(0, 40, 3)
    rows = np.arange(50)
    total = krr.gram_of(_reader(kernel), rows, columns, gaps)
    held = rows % 4 == 1
    total.add(kernel[np.ix_(rows[held], columns)], gaps[held], sign=-1.0)
    inner = kernel[np.ix_(rows[~held], columns)]
    np.testing.assert_allclose(np.triu(total.matrix), np.triu(inner.T @ inner), atol=1e-10)
    np.testing.assert_allclose(total.rhs(1.5), inner.T @ (gaps[~held] - 1.5), atol=1e-10)


def test_fewer_landmarks_fit_predict_and_learn(real_kernel) -> None:
    kernel, gaps = real_kernel
    train, test = _split(gaps)
    landmarks = train[krr.draw_landmarks(len(train), 15, seed=0)]
    cv = krr.cross_validate(
        _reader(kernel), train, gaps[train], folds=5, nystrom=(landmarks, landmarks)
    )
    assert cv.best in krr.DEFAULT_GRID and len(cv.mae) == len(krr.DEFAULT_GRID)
    fit = krr.nystrom_fit(_reader(kernel), train, gaps[train], landmarks, landmarks, cv.best)
    assert fit.alpha.shape == (15,)
    guess = krr.predict(_reader(kernel), test, landmarks, fit)
    assert (guess >= 0).all()
    curve = krr.learning_curve(
        _reader(kernel), train, gaps[train], test, gaps[test], cv.best,
        nystrom=(landmarks, landmarks),
    )  # fmt: skip
    assert [n for n, _ in curve] == sorted({n for n, _ in curve}) and curve[-1][0] == 40
    assert curve[-1][1] == pytest.approx(np.abs(guess - gaps[test]).mean())


def test_a_repeated_landmark_needs_a_jitter_and_records_it(real_kernel) -> None:
    """Two identical columns make K_mn K_nm + lambda K_mm singular: a jitter, recorded."""
    kernel, gaps = real_kernel
    train, test = _split(gaps)
    landmarks = np.array([0, 3, 7, 7, 11, 20])
    fit = krr.nystrom_fit(_reader(kernel), train, gaps[train], landmarks, landmarks, 1e-3)
    assert 0 < fit.jitter <= krr.JITTERS[-1] * np.abs(kernel).max() * len(train)
    single = krr.nystrom_fit(
        _reader(kernel), train, gaps[train], np.unique(landmarks), np.unique(landmarks), 1e-3
    )
    np.testing.assert_allclose(
        krr.predict(_reader(kernel), test, landmarks, fit),
        krr.predict(_reader(kernel), test, np.unique(landmarks), single),
        atol=1e-3,
    )


def test_landmark_draws_are_seeded_and_bad_counts_named() -> None:
    first = krr.draw_landmarks(100, 10, seed=4)
    np.testing.assert_array_equal(first, krr.draw_landmarks(100, 10, seed=4))
    assert len(set(first.tolist())) == 10 and (np.diff(first) > 0).all()
    assert not np.array_equal(first, krr.draw_landmarks(100, 10, seed=5))
    with pytest.raises(krr.RegressionError, match="--landmarks: at least 1"):
        krr.draw_landmarks(100, 0, seed=0)
    with pytest.raises(krr.RegressionError, match=r"--landmarks 101: .* only 100 labelled"):
        krr.draw_landmarks(100, 101, seed=0)


def test_beyond_the_exact_limit_the_advice_is_landmarks_with_the_memory() -> None:
    assert krr.exact_advice(krr.EXACT_LIMIT) is None
    advice = krr.exact_advice(60_000)
    assert advice is not None
    assert "--landmarks" in advice and "28.8 GB" in advice  # 60,000^2 x 8 B
