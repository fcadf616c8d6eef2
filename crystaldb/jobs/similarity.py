"""Kernel-based similarity search: the structures nearest to one, read from a stored kernel.

D^2(A, B) = K(A,A) + K(B,B) - 2 K(A,B), the distance the kernel induces (0 for identical
average environments, at most 2 for a normalised kernel). One row of the square kernel and
its diagonal answer the question; nothing is recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import any_, select

from crystaldb.core.kernels import squared_distance
from crystaldb.jobs.kernels import KernelError
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.platform.store import open_array_uri
from crystaldb.schema import KernelMatrix

MAX_K = 100


@dataclass(frozen=True)
class Neighbour:
    """One similar structure: its id, the kernel value and the induced distance."""

    structure_id: int
    kernel: float
    distance: float  # sqrt(D^2)


def kernel_for(db: Database, structure_id: int, kernel_id: int | None = None) -> KernelMatrix:
    """The given kernel, or the newest complete square kernel whose rows hold the structure."""
    with db.session() as session:
        query = select(KernelMatrix).where(KernelMatrix.status == "complete")
        if kernel_id is not None:
            query = query.where(KernelMatrix.id == kernel_id)
        query = query.where(any_(KernelMatrix.row_ids) == structure_id)
        found = session.scalars(query.order_by(KernelMatrix.id.desc())).first()
        if found is None or found.row_ids != found.col_ids:
            which = f"kernel {kernel_id}" if kernel_id is not None else "no complete square kernel"
            raise KernelError(
                f"{which} holds structure {structure_id}: build one over it with"
                " `crystaldb kernel build`"
            )
        session.expunge(found)
        return found


def similar(
    db: Database, settings: Settings, structure_id: int, k: int = 10, kernel_id: int | None = None
) -> list[Neighbour]:
    """The k structures nearest to `structure_id` (itself excluded), nearest first."""
    if not 1 <= k <= MAX_K:
        raise KernelError(f"k: between 1 and {MAX_K} (got {k})")
    kernel = kernel_for(db, structure_id, kernel_id)
    matrix = open_array_uri(kernel.array_uri, f"kernel {kernel.id}")
    row = kernel.row_ids.index(structure_id)
    values = np.asarray(matrix[row, :], dtype=np.float64)
    tile = int(matrix.chunks[0])
    diagonal = np.concatenate(  # one diagonal chunk at a time, not one read per element
        [
            np.diag(np.asarray(matrix[s : s + tile, s : s + tile]))
            for s in range(0, len(values), tile)
        ]
    )
    d2 = squared_distance(values[None, :], diagonal[row : row + 1], diagonal)[0]
    d2[row] = np.inf
    order = np.argsort(d2, kind="stable")[:k]
    return [
        Neighbour(int(kernel.row_ids[i]), float(values[i]), float(np.sqrt(d2[i])))
        for i in order
        if np.isfinite(d2[i])
    ]
