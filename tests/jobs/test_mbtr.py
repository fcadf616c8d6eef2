"""MBTR kernels built on real Dask workers into Zarr, then KRR on them with the same machinery."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest

from crystaldb.core.kernels import average_kernel
from crystaldb.core.krr_model import predict_cells
from crystaldb.core.mbtr import MbtrHypers, mbtr_spectra
from crystaldb.jobs.kernels import build_kernel
from crystaldb.jobs.krr import load_krr, train_krr
from crystaldb.platform.store import ArtifactStore
from crystaldb.query.selection import load_cells, release_labels, select_structures
from crystaldb.schema import DescriptorSet, KernelMatrix, Model
from tests.jarvis import LabelledDatabase
from tests.jobs.test_kernels import SMALL

MBTR = MbtrHypers(grid_n=30)


def _ids(jarvis: LabelledDatabase) -> list[int]:
    return list(select_structures(jarvis.db, release=jarvis.release).structure_ids)


@pytest.fixture(scope="module")
def mbtr_kernel(jarvis: LabelledDatabase) -> int:
    """The square MBTR kernel over the release, built once on two workers."""
    ids = _ids(jarvis)
    return build_kernel(jarvis.db, jarvis.settings, ids, hypers=MBTR, tile=16, workers=1).kernel_id


def test_mbtr_kernel_matches_the_pure_function(jarvis: LabelledDatabase, mbtr_kernel) -> None:
    ids = _ids(jarvis)
    store = ArtifactStore(jarvis.settings.store_location)
    matrix = store.open_array(f"kernels/{mbtr_kernel}/matrix")[:]
    blocks = mbtr_spectra(load_cells(jarvis.db, ids), MBTR)
    np.testing.assert_allclose(matrix, average_kernel(blocks, blocks), atol=1e-12)
    np.testing.assert_array_equal(matrix, matrix.T)
    with jarvis.db.session() as session:
        kernel = session.get_one(KernelMatrix, mbtr_kernel)
        descriptors = session.get_one(DescriptorSet, kernel.descriptor_set_id)
        assert (kernel.kernel, kernel.status, kernel.shape) == ("mbtr-cosine", "complete", [50, 50])
        assert (descriptors.kind, descriptors.library) == ("mbtr", "dscribe")
        assert descriptors.library_version == metadata.version("dscribe")
        assert descriptors.hyperparameters == MBTR.record()
        assert descriptors.shape == [50, MBTR.block_width]
    again = build_kernel(jarvis.db, jarvis.settings, ids, hypers=MBTR, tile=16, workers=1)
    assert again.kernel_id == mbtr_kernel and again.tiles_computed == 0


@pytest.mark.slow
def test_soap_and_mbtr_never_share_a_descriptor_set(jarvis: LabelledDatabase, mbtr_kernel) -> None:
    ids = _ids(jarvis)[:20]
    soap = build_kernel(jarvis.db, jarvis.settings, ids, hypers=SMALL, tile=16, workers=1)
    mbtr = build_kernel(jarvis.db, jarvis.settings, ids, hypers=MBTR, tile=16, workers=1)
    assert soap.descriptor_set_id != mbtr.descriptor_set_id and soap.kernel_id != mbtr.kernel_id
    with jarvis.db.session() as session:
        square = session.get_one(KernelMatrix, mbtr_kernel)
        assert mbtr.descriptor_set_id == square.descriptor_set_id  # the release's set reused
        assert session.get_one(KernelMatrix, soap.kernel_id).kernel == "average"


def test_krr_on_mbtr_trains_scores_and_predicts(jarvis: LabelledDatabase, mbtr_kernel) -> None:
    """`train krr` unchanged on the MBTR kernel; its primal weights predict as the dual does."""
    summary = train_krr(jarvis.db, jarvis.settings, mbtr_kernel, jarvis.release, folds=5)
    _, weights = load_krr(jarvis.db, jarvis.settings, summary.model_id)
    assert weights.hypers == MBTR
    with jarvis.db.session() as session:
        row = session.get_one(Model, summary.model_id)
        assert row.hyperparameters["kernel"] == "mbtr-cosine"
        assert row.hyperparameters["descriptor"]["dscribe"]["k3"]["geometry"] == {
            "function": "cosine"
        }
    ids = _ids(jarvis)
    matrix = ArtifactStore(jarvis.settings.store_location).open_array(
        f"kernels/{mbtr_kernel}/matrix"
    )
    dual = np.maximum(matrix[:, : jarvis.n_train] @ weights.alpha + weights.mean, 0.0)
    primal = predict_cells(load_cells(jarvis.db, ids), weights)
    np.testing.assert_allclose(primal, dual, atol=1e-9)
    gaps = release_labels(jarvis.db, select_structures(jarvis.db, release=jarvis.release))
    mae = np.abs(primal[jarvis.n_train :] - gaps[jarvis.n_train :]).mean()
    assert mae == pytest.approx(summary.metrics["mae"], abs=1e-9)
    assert summary.learning_curve and np.isfinite(summary.baseline_mae)
