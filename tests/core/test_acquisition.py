"""The active-learning simulation on a real SOAP kernel of the JARVIS sample and its real gaps."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from crystaldb.core import acquisition
from crystaldb.core.acquisition import AcquisitionError, AcquisitionHypers
from crystaldb.core.kernels import average_kernel
from crystaldb.core.soap import SoapHypers, average_spectra
from tests.jarvis import jarvis_cells

HYPERS = AcquisitionHypers(start=6, step=5, rounds=4, committee=4, seeds=2)
LAMBDA = 1e-3


@pytest.fixture(scope="module")
def problem() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The average kernel of the 50 labelled JARVIS crystals, their gaps, 40 pool and 10 test."""
    cells, gaps = jarvis_cells()
    spectra = average_spectra(cells, SoapHypers(n_max=4, l_max=3))
    return average_kernel(spectra, spectra), gaps, np.arange(40), np.arange(40, 50)


@pytest.fixture(scope="module")
def curves(problem) -> acquisition.AcquisitionCurves:
    kernel, gaps, pool, test = problem
    return acquisition.acquisition_curves(kernel, gaps, pool, test, HYPERS)


def test_sizes_and_a_shared_first_point(curves) -> None:
    assert curves.regularisation in acquisition.krr.DEFAULT_GRID  # chosen by CV on the pool
    random, spread = curves.curves["random"], curves.curves["spread"]
    for curve in (random, spread):
        assert curve.sizes == (6, 11, 16, 21, 26)
        assert curve.mae.shape == (2, 5) and np.isfinite(curve.mae).all()
        assert curve.order.shape == (2, 26)
        assert all(len(set(row)) == 26 and set(row) <= set(range(40)) for row in curve.order)
        assert len(curve.points()) == 5 and (curve.sd >= 0).all()
    np.testing.assert_array_equal(random.mae[:, 0], spread.mae[:, 0])
    np.testing.assert_array_equal(random.order[:, :6], spread.order[:, :6])
    assert not np.array_equal(random.order[:, 6:], spread.order[:, 6:])


def test_deterministic_per_seed(problem, curves) -> None:
    kernel, gaps, pool, test = problem
    hypers = replace(HYPERS, seeds=1, regularisation=curves.regularisation)
    again = acquisition.acquisition_curves(kernel, gaps, pool, test, hypers)
    for strategy in acquisition.STRATEGIES:
        np.testing.assert_array_equal(
            again.curves[strategy].order[0], curves.curves[strategy].order[0]
        )
        np.testing.assert_array_equal(again.curves[strategy].mae[0], curves.curves[strategy].mae[0])


def _direct_spread(kernel, gaps, labelled, candidates, lam, committee, rng) -> np.ndarray:
    """Population sd of bootstrap KRR predictions by plain numpy solves, clipped at 0 eV."""
    guesses = []
    for _ in range(committee):
        drawn = labelled[rng.integers(0, len(labelled), size=len(labelled))]
        mean = gaps[drawn].mean()
        square = kernel[np.ix_(drawn, drawn)] + lam * np.eye(len(drawn))
        alpha = np.linalg.solve(square, gaps[drawn] - mean)
        guesses.append(np.maximum(kernel[np.ix_(candidates, drawn)] @ alpha + mean, 0.0))
    return np.std(guesses, axis=0)


def test_spread_acquires_exactly_the_largest_spread(problem, curves) -> None:
    kernel, gaps, pool, _ = problem
    lam = curves.regularisation
    start = acquisition.initial_set(pool, HYPERS.start, seed=1)
    np.testing.assert_array_equal(curves.curves["spread"].order[1, :6], start)
    candidates = np.setdiff1d(pool, start)
    rng = acquisition.strategy_rng(1, "spread")
    spread = _direct_spread(kernel, gaps, start, candidates, lam, HYPERS.committee, rng)
    expected = candidates[np.argsort(-spread, kind="stable")[: HYPERS.step]]
    assert (
        spread[np.isin(candidates, expected)].min()
        >= np.delete(spread, np.flatnonzero(np.isin(candidates, expected))).max() - 1e-9
    )
    np.testing.assert_array_equal(curves.curves["spread"].order[1, 6:11], expected)


def test_ties_go_to_the_lower_index() -> None:
    chosen = acquisition.largest(np.array([0.5, 0.9, 0.5, 0.5]), np.array([3, 7, 1, 9]), 3)
    np.testing.assert_array_equal(chosen, [7, 1, 3])


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"start": 1}, "--start 1"),
        ({"step": 0}, "--step 0"),
        ({"rounds": 0}, "--rounds 0"),
        ({"committee": 1}, "--committee 1"),
        ({"seeds": 0}, "--seeds 0"),
        ({"regularisation": -1.0}, "--regularisation -1"),
    ],
)
def test_bad_hyperparameters_are_named(change: dict, named: str) -> None:
    with pytest.raises(AcquisitionError, match=named):
        AcquisitionHypers(**change)


def test_curves_larger_than_the_pool_are_refused(problem) -> None:
    kernel, gaps, pool, test = problem
    with pytest.raises(AcquisitionError, match="--start 50: more than the 40 train structures"):
        acquisition.acquisition_curves(kernel, gaps, pool, test, AcquisitionHypers(start=50))
    with pytest.raises(AcquisitionError, match=r"--rounds 10: .* at most 1 rounds"):
        acquisition.acquisition_curves(kernel, gaps, pool, test, AcquisitionHypers())
    with pytest.raises(AcquisitionError, match="overlap"):
        acquisition.acquisition_curves(kernel, gaps, pool, pool[:5], HYPERS)
