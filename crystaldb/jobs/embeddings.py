"""Embedding a stored square kernel in 2D, stored with its run, so the web map opens at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from crystaldb.core.embedding import kernel_pca
from crystaldb.jobs.kernels import KernelError
from crystaldb.platform.database import Database
from crystaldb.platform.store import open_array_uri
from crystaldb.schema import KernelEmbedding, KernelMatrix
from crystaldb.schema.runs import track_run

METHODS = ("kpca",)
MAX_ROWS = 20_000  # the whole square is read into memory: 20,000 rows are 3.2 GB


@dataclass(frozen=True)
class EmbeddingSummary:
    """What `crystaldb kernel embed` reports."""

    embedding_id: int
    kernel_id: int
    method: str
    points: int
    run_id: int


def _square_kernel(db: Database, kernel_id: int) -> KernelMatrix:
    """A complete square kernel, or an error saying which --kernel to give instead."""
    with db.session() as session:
        kernel = session.get(KernelMatrix, kernel_id)
        if kernel is None:
            raise KernelError(f"--kernel: no kernel {kernel_id} (see `crystaldb kernel list`)")
        if kernel.status != "complete":
            raise KernelError(
                f"--kernel {kernel_id} is still {kernel.status}: re-run `crystaldb kernel build`"
                " with the same arguments to finish it"
            )
        if kernel.row_ids != kernel.col_ids:
            raise KernelError(
                f"--kernel {kernel_id} is a {kernel.shape[0]} x {kernel.shape[1]} rectangle"
                " (Nyström or prediction columns); a map needs a square kernel: give --kernel"
                " a square one (`crystaldb kernel list`, or `kernel build --release NAME`)"
            )
        if len(kernel.row_ids) > MAX_ROWS:
            raise KernelError(
                f"--kernel {kernel_id} has {len(kernel.row_ids):,} rows, more than the"
                f" {MAX_ROWS:,} a map reads into memory: give --kernel a smaller square one"
            )
        session.expunge(kernel)
        return kernel


def embed_kernel(db: Database, kernel_id: int, method: str = "kpca") -> EmbeddingSummary:
    """Embed the kernel's rows in 2D by `method` and store the points with their run."""
    if method not in METHODS:
        raise KernelError(f"--method: one of {', '.join(METHODS)} (got {method!r})")
    kernel = _square_kernel(db, kernel_id)
    parameters = {"kernel_id": kernel_id, "method": method, "components": 2}
    with track_run(db, "embedding", parameters) as run:
        matrix = np.asarray(open_array_uri(kernel.array_uri, f"kernel {kernel_id}")[:])
        points = kernel_pca(matrix, components=2)
        with db.session() as session:
            row = KernelEmbedding(
                kernel_id=kernel_id,
                method=method,
                parameters=parameters,
                structure_ids=list(kernel.row_ids),
                x=points[:, 0].tolist(),
                y=points[:, 1].tolist(),
                run_id=run.id,
            )
            session.add(row)
            session.flush()
            embedding_id = row.id
        run.results.update(embedding_id=embedding_id, points=len(points))
    return EmbeddingSummary(embedding_id, kernel_id, method, len(points), run.id)


def list_embeddings(db: Database) -> list[KernelEmbedding]:
    """Every stored embedding, newest first (points included)."""
    with db.session() as session:
        found = list(session.scalars(select(KernelEmbedding).order_by(KernelEmbedding.id.desc())))
        session.expunge_all()
    return found
