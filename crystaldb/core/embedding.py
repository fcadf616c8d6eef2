"""Two-dimensional maps of a kernel, so the structures it compares can be looked at."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import eigh

from crystaldb.core.errors import CrystaldbError


class EmbeddingError(CrystaldbError):
    """A kernel that cannot be embedded as asked."""


# scikit-learn's TSNE settings that the stored parameters name (the rest are its defaults,
# fixed by the library version stored beside them)
TSNE_DEFAULTS: dict[str, Any] = {"perplexity": 30.0, "init": "random", "metric": "precomputed"}


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


def kernel_distances(K: np.ndarray) -> np.ndarray:
    """The distance a kernel induces between its rows' features:
    d(i, j) = sqrt(K_ii + K_jj - 2 K_ij), symmetric with a zero diagonal (round-off below zero
    clipped), so t-SNE and other metric methods can work on the kernel itself."""
    K = np.asarray(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise EmbeddingError(f"kernel distances need a square kernel (got shape {K.shape})")
    K = (K + K.T) / 2
    diagonal = np.diag(K)
    squared = diagonal[:, None] + diagonal[None, :] - 2 * K
    distances = np.sqrt(np.clip(squared, 0.0, None))
    np.fill_diagonal(distances, 0.0)
    return distances


def check_perplexity(perplexity: float, points: int) -> None:
    """t-SNE's perplexity (its effective number of neighbours) must be below the point count."""
    if not 0 < perplexity < points:
        raise EmbeddingError(
            f"--perplexity {perplexity:g}: t-SNE needs a perplexity above 0 and below the number"
            f" of points ({points}); give --perplexity below {points} (5 to 50 is usual)"
        )


def kernel_tsne(
    K: np.ndarray,
    perplexity: float = TSNE_DEFAULTS["perplexity"],
    seed: int = 0,
    components: int = 2,
) -> np.ndarray:
    """The (N, components) t-SNE map of the kernel-induced distances (scikit-learn's TSNE,
    metric="precomputed", random start from `seed`).

    Run on one OpenMP thread: scikit-learn's Barnes-Hut gradient sums over threads in an
    order that varies, and a stored map must come out the same for the same seed.
    """
    from sklearn.manifold import TSNE  # imported on first use: scikit-learn loads slowly
    from threadpoolctl import threadpool_limits

    distances = kernel_distances(K)
    check_perplexity(perplexity, distances.shape[0])
    if not 1 <= components <= 3:
        raise EmbeddingError(f"components must be 1, 2 or 3 for t-SNE (got {components})")
    model = TSNE(
        n_components=components,
        perplexity=perplexity,
        metric=TSNE_DEFAULTS["metric"],
        init=TSNE_DEFAULTS["init"],
        random_state=seed,
    )
    with threadpool_limits(limits=1, user_api="openmp"):
        return np.asarray(model.fit_transform(distances), dtype=np.float64)
