"""Kernel PCA against scikit-learn's, on a real SOAP kernel of the JARVIS crystals."""

from __future__ import annotations

import numpy as np
import pytest

from crystaldb.core.embedding import EmbeddingError, kernel_distances, kernel_pca, kernel_tsne
from crystaldb.core.kernels import average_kernel
from crystaldb.core.soap import SoapHypers, average_spectra
from tests.jarvis import jarvis_cells


@pytest.fixture(scope="module")
def real_kernel() -> np.ndarray:
    """The average kernel of the 50 labelled JARVIS crystals."""
    cells, _ = jarvis_cells()
    spectra = average_spectra(cells, SoapHypers(n_max=4, l_max=3))
    return average_kernel(spectra, spectra)


def test_matches_scikit_learn_up_to_sign(real_kernel: np.ndarray) -> None:
    from sklearn.decomposition import KernelPCA

    ours = kernel_pca(real_kernel, components=3)
    theirs = KernelPCA(n_components=3, kernel="precomputed").fit_transform(real_kernel)
    assert ours.shape == (len(real_kernel), 3)
    signs = np.sign((ours * theirs).sum(axis=0))
    np.testing.assert_allclose(ours, theirs * signs, rtol=1e-6, atol=1e-8)


def test_components_are_ordered_and_stable(real_kernel: np.ndarray) -> None:
    first = kernel_pca(real_kernel)
    variances = first.var(axis=0)
    assert variances[0] >= variances[1] > 0
    order = np.random.default_rng(0).permutation(len(real_kernel))
    permuted = kernel_pca(real_kernel[np.ix_(order, order)])
    np.testing.assert_allclose(permuted, first[order], atol=1e-8)


@pytest.mark.parametrize(("shape", "components"), [((5, 3), 2), ((4, 4), 5), ((4, 4), 0)])
def test_refuses_what_it_cannot_embed(shape: tuple[int, int], components: int) -> None:
    with pytest.raises(EmbeddingError):
        kernel_pca(np.ones(shape), components)


# --- t-SNE on the kernel-induced distance ----------------------------------------------------


def test_kernel_distances_are_a_metric(real_kernel: np.ndarray) -> None:
    d = kernel_distances(real_kernel)
    assert d.shape == real_kernel.shape
    assert np.all(np.diag(d) == 0.0)
    assert np.array_equal(d, d.T)
    assert np.all(d >= 0.0) and np.all(d[~np.eye(len(d), dtype=bool)] > 0)  # distinct crystals
    # d(i, j) is the distance between the rows' features: the triangle inequality holds
    worst = (d[:, None, :] - d[:, :, None] - d[None, :, :]).max()  # d(i,k) - d(i,j) - d(j,k)
    assert worst <= 1e-9
    i, j = 3, 17
    k = real_kernel
    assert d[i, j] == pytest.approx(np.sqrt(k[i, i] + k[j, j] - 2 * k[i, j]))


def test_tsne_is_the_same_for_the_same_seed(real_kernel: np.ndarray) -> None:
    first = kernel_tsne(real_kernel, perplexity=10, seed=7)
    assert first.shape == (len(real_kernel), 2) and np.all(np.isfinite(first))
    assert np.array_equal(first, kernel_tsne(real_kernel, perplexity=10, seed=7))
    assert not np.allclose(first, kernel_tsne(real_kernel, perplexity=10, seed=8))


def test_tsne_keeps_neighbours_of_the_kernel(real_kernel: np.ndarray) -> None:
    """Each crystal's nearest neighbour by kernel distance is among its 5 nearest on the map
    for most crystals: the map is of this kernel, not noise."""
    d = kernel_distances(real_kernel)
    np.fill_diagonal(d, np.inf)
    points = kernel_tsne(real_kernel, perplexity=10, seed=0)
    on_map = np.linalg.norm(points[:, None] - points[None, :], axis=-1)
    np.fill_diagonal(on_map, np.inf)
    nearest = d.argmin(axis=1)
    close = np.argsort(on_map, axis=1)[:, :5]
    kept = np.mean([nearest[i] in close[i] for i in range(len(d))])
    assert kept >= 0.6


@pytest.mark.parametrize("perplexity", [50, 80, 0])
def test_perplexity_must_be_below_the_points(real_kernel: np.ndarray, perplexity: float) -> None:
    with pytest.raises(
        EmbeddingError, match=rf"--perplexity {perplexity}: .*below the number of points \(50\)"
    ):
        kernel_tsne(real_kernel, perplexity=perplexity)
