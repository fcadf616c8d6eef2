"""The average SOAP kernel between two sets of structures, block by block, never dense-wide.

K(A, B) = (p_A . p_B / (|p_A| |p_B|))^zeta with p the average spectra of `soap.py`. The dot
product is a sum over the species triples both structures have: for a tile of rows and
columns, only the triples common to both sides are laid out densely (a few at a time, and
only for the rows that hold them, so memory stays bounded whatever the number of elements)
and multiplied with one BLAS matmul per group, i.e. K = sum over key groups of P_key P_key^T.
"""

from __future__ import annotations

import numpy as np

from crystaldb.core.soap import AverageSpectra

KEYS_PER_GROUP = 16  # triples laid out densely at once: 2048 rows x 16 x 448 x 8 B = 117 MB
DENSE_ABOVE = 0.9  # a group held by this share of rows is multiplied over every row


def key_codes(keys: np.ndarray) -> np.ndarray:
    """One int64 per species triple (atomic numbers < 256), so triples sort and match fast."""
    keys = keys.astype(np.int64)
    return (keys[:, 0] << 16) | (keys[:, 1] << 8) | keys[:, 2]


def _hits(group: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which blocks belong to `group`, and the position of each in it."""
    where = np.searchsorted(group, codes)
    hit = where < len(group)
    hit[hit] = group[where[hit]] == codes[hit]
    return hit, where


def _layout(
    spectra: AverageSpectra,
    hit: np.ndarray,
    where: np.ndarray,
    owner: np.ndarray,
    rows: np.ndarray,
    buffer: np.ndarray,
    group_size: int,
) -> np.ndarray:
    """`rows` x (group triples x width): their blocks of the group, zeros where one lacks.

    Written into `buffer` (reused for every group of a tile: a fresh 100 MB array per group
    costs its page faults again, as much time as the copy itself).
    """
    width = spectra.values.shape[1]
    dense = buffer[: len(rows) * group_size * width].reshape(len(rows), group_size, width)
    dense.fill(0.0)
    full = len(rows) == spectra.num_structures
    position = owner[hit] if full else np.searchsorted(rows, owner[hit])
    dense[position, where[hit]] = spectra.values[hit]
    return dense.reshape(len(rows), group_size * width)


def _owners(spectra: AverageSpectra) -> np.ndarray:
    """The structure (row) of every block."""
    return np.repeat(np.arange(spectra.num_structures), np.diff(spectra.indptr))


def _rows(hit: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """The rows that hold a block of the group; every row when nearly all do (a full product
    with a few zero rows beats gathering and scattering the others)."""
    used = np.unique(owner[hit])
    return np.arange(n) if len(used) >= DENSE_ABOVE * n else used


def linear_kernel(
    a: AverageSpectra, b: AverageSpectra, keys_per_group: int = KEYS_PER_GROUP
) -> np.ndarray:
    """p_A . p_B for every pair, summed over the species triples both sides share.

    Each group of triples multiplies only the rows that hold one of them: with many elements
    most rows lack most triples (1.5% of the dense products are non-zero on OMDB-like
    crystals of 36 elements), and skipping their zero rows makes a tile several times faster
    than one dense product; with few elements nearly every row holds every group and this is
    the plain dense product (a BLAS syrk on diagonal tiles).
    """
    codes_a, codes_b = key_codes(a.keys), key_codes(b.keys)
    owner_a, owner_b = _owners(a), _owners(b)
    common = np.intersect1d(codes_a, codes_b)
    same = a is b
    kernel = np.zeros((a.num_structures, b.num_structures))
    size = min(keys_per_group, len(common)) * a.values.shape[1]
    buffer_a = np.empty(a.num_structures * size)
    buffer_b = buffer_a if same else np.empty(b.num_structures * size)
    for start in range(0, len(common), keys_per_group):
        group = common[start : start + keys_per_group]
        hit_a, where_a = _hits(group, codes_a)
        rows_a = _rows(hit_a, owner_a, a.num_structures)
        left = _layout(a, hit_a, where_a, owner_a, rows_a, buffer_a, len(group))
        if same:
            rows_b, right = rows_a, left
        else:
            hit_b, where_b = _hits(group, codes_b)
            rows_b = _rows(hit_b, owner_b, b.num_structures)
            right = _layout(b, hit_b, where_b, owner_b, rows_b, buffer_b, len(group))
        product = left @ right.T  # left @ left.T goes to BLAS syrk: half the work
        full_a, full_b = len(rows_a) == a.num_structures, len(rows_b) == b.num_structures
        if full_a and full_b:
            kernel += product
        elif full_a:
            kernel[:, rows_b] += product
        elif full_b:
            kernel[rows_a] += product
        else:
            kernel[np.ix_(rows_a, rows_b)] += product
    return kernel


def average_kernel(a: AverageSpectra, b: AverageSpectra, zeta: float = 1.0) -> np.ndarray:
    """The normalised average kernel, raised to zeta (1: the OMDB-GAP1 paper's setting)."""
    kernel = linear_kernel(a, b)
    scale = np.outer(_safe_inverse(a.norms), _safe_inverse(b.norms))
    kernel *= scale
    np.clip(kernel, 0.0, 1.0, out=kernel)  # rounding can step past 1 for identical structures
    return kernel if zeta == 1.0 else kernel**zeta


def _safe_inverse(norms: np.ndarray) -> np.ndarray:
    """1/|p|, and 0 for an empty descriptor (no atoms), so it is orthogonal to everything."""
    inverse = np.zeros_like(norms)
    np.divide(1.0, norms, out=inverse, where=norms > 0)
    return inverse


def squared_distance(k_ab: np.ndarray, k_aa: np.ndarray, k_bb: np.ndarray) -> np.ndarray:
    """Kernel-induced distance D^2 = K(A,A) + K(B,B) - 2 K(A,B), for similarity search."""
    return np.maximum(k_aa[:, None] + k_bb[None, :] - 2.0 * k_ab, 0.0)
