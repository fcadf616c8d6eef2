"""Kernel PCA against scikit-learn's, on a real SOAP kernel of the JARVIS crystals."""

from __future__ import annotations

import numpy as np
import pytest

from crystaldb.core.embedding import EmbeddingError, kernel_pca
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
