"""Embedding a stored kernel of the JARVIS crystals: stored with its run; rectangles refused."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn

from crystaldb.core.embedding import EmbeddingError, kernel_pca, kernel_tsne
from crystaldb.core.soap import SoapHypers
from crystaldb.jobs.embeddings import embed_kernel, find_embedding, list_embeddings, load_map
from crystaldb.jobs.kernels import KernelError, build_kernel
from crystaldb.platform.store import open_array_uri
from crystaldb.query.selection import select_structures
from crystaldb.schema import KernelEmbedding, KernelMatrix, Run
from tests.jarvis import LabelledDatabase

# Its own hyperparameters: the session's jarvis database is shared, and tests/jobs/
# test_kernels.py counts the tiles it computes for its SMALL kernel itself.
EMBED = SoapHypers(cutoff=3.5, n_max=3, l_max=2)


def test_embedding_is_stored_with_its_run(jarvis: LabelledDatabase) -> None:
    ids = list(select_structures(jarvis.db, release=jarvis.release).structure_ids)
    kernel = build_kernel(jarvis.db, jarvis.settings, ids, hypers=EMBED, tile=16, workers=1)
    summary = embed_kernel(jarvis.db, kernel.kernel_id)
    with jarvis.db.session() as session:
        row = session.get_one(KernelEmbedding, summary.embedding_id)
        run = session.get_one(Run, row.run_id)
        matrix = session.get_one(KernelMatrix, kernel.kernel_id)
        assert (row.kernel_id, row.method, run.kind, run.status) == (
            kernel.kernel_id, "kpca", "embedding", "succeeded",
        )  # fmt: skip
        assert row.structure_ids == matrix.row_ids == ids
        assert run.parameters == row.parameters == {
            "kernel_id": kernel.kernel_id, "method": "kpca", "components": 2,
        }  # fmt: skip
        assert run.results == {"embedding_id": row.id, "points": len(ids)}
        expected = kernel_pca(np.asarray(open_array_uri(matrix.array_uri, "kernel")[:]))
        np.testing.assert_allclose(np.column_stack([row.x, row.y]), expected)
    assert summary.embedding_id in [e.id for e in list_embeddings(jarvis.db)]


def test_rectangles_and_unknown_kernels_are_refused(jarvis: LabelledDatabase) -> None:
    ids = list(select_structures(jarvis.db, release=jarvis.release).structure_ids)
    rect = build_kernel(
        jarvis.db, jarvis.settings, ids[40:], ids[:40], hypers=EMBED, tile=16, workers=1
    )
    with pytest.raises(KernelError, match=r"rectangle.*--kernel"):
        embed_kernel(jarvis.db, rect.kernel_id)
    with pytest.raises(KernelError, match="--kernel: no kernel"):
        embed_kernel(jarvis.db, 10**9)
    with pytest.raises(KernelError, match="--method"):
        embed_kernel(jarvis.db, rect.kernel_id, method="umap")


@pytest.mark.slow
def test_tsne_runs_on_a_dask_worker_and_is_stored_with_its_parameters(
    jarvis: LabelledDatabase,
) -> None:
    ids = list(select_structures(jarvis.db, release=jarvis.release).structure_ids)
    kernel = build_kernel(jarvis.db, jarvis.settings, ids, hypers=EMBED, tile=16, workers=1)
    with pytest.raises(EmbeddingError, match=r"--perplexity 50: .*below the number of points"):
        embed_kernel(jarvis.db, kernel.kernel_id, "tsne", jarvis.settings, perplexity=50)
    summary = embed_kernel(
        jarvis.db, kernel.kernel_id, "tsne", jarvis.settings, perplexity=8, seed=3, workers=1
    )
    with jarvis.db.session() as session:
        row = session.get_one(KernelEmbedding, summary.embedding_id)
        run = session.get_one(Run, row.run_id)
        matrix = np.asarray(
            open_array_uri(session.get_one(KernelMatrix, kernel.kernel_id).array_uri, "kernel")[:]
        )
        assert (row.method, run.kind, run.status, row.structure_ids) == (
            "tsne",
            "embedding",
            "succeeded",
            ids,
        )
        assert row.parameters == {
            **run.parameters,
            "library": f"scikit-learn {sklearn.__version__}",
        }
        assert (run.parameters["perplexity"], run.parameters["seed"]) == (8, 3)
        assert (run.parameters["init"], run.parameters["metric"]) == ("random", "precomputed")
        assert run.results["embedding_id"] == row.id
        drawn = np.column_stack([row.x, row.y])
    # the worker's map is the pure function's, bit for bit: same kernel, seed and perplexity
    expected = kernel_tsne(matrix, perplexity=8, seed=3)
    assert np.array_equal(drawn, expected)
    stored = find_embedding(jarvis.db, summary.embedding_id)
    assert stored is not None
    kmap = load_map(jarvis.db, stored)
    assert kmap.coordinates == "t-SNE" and kmap.structure_ids == tuple(ids)
    assert kmap.colour() == next(iter(kmap.columns)) == "band gap: OptB88vdW"  # every one labelled
    assert all(np.isfinite(kmap.columns["band gap: OptB88vdW"].values))
