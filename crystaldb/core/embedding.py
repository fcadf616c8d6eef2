"""Two-dimensional maps of a kernel, so the structures it compares can be looked at."""

from __future__ import annotations

import numpy as np
from scipy.linalg import eigh

from crystaldb.core.errors import CrystaldbError


class EmbeddingError(CrystaldbError):
    """A kernel that cannot be embedded as asked."""


def center_kernel(K: np.ndarray) -> np.ndarray:
    """The kernel of the features' deviations from their mean (double centring)."""
    row_mean = K.mean(axis=0)
    return K - row_mean[None, :] - K.mean(axis=1)[:, None] + row_mean.mean()


def kernel_pca(K: np.ndarray, components: int = 2) -> np.ndarray:
    """The (N, components) kernel PCA projection: top eigenvectors times sqrt(eigenvalue).

    Each component's sign is fixed (its largest-magnitude coordinate positive) so maps are
    stable between runs; eigenvalues below zero (round-off) contribute zero.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise EmbeddingError(f"kernel PCA needs a square kernel (got shape {K.shape})")
    n = K.shape[0]
    if not 1 <= components <= n:
        raise EmbeddingError(f"components must be between 1 and {n} (got {components})")
    centred = center_kernel((K + K.T) / 2)
    values, vectors = eigh(centred, subset_by_index=[n - components, n - 1])
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
    flip = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(components)])
    return vectors * flip[None, :] * np.sqrt(values)[None, :]
