"""Kernel matrices built on real Dask workers into Zarr, checked against the pure functions."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from crystaldb.core.kernels import average_kernel
from crystaldb.core.soap import SoapHypers, average_spectra
from crystaldb.jobs.kernels import KernelError, build_kernel, choose_landmarks
from crystaldb.platform.store import ArtifactStore
from crystaldb.query.selection import load_cells, select_structures
from crystaldb.schema import KernelMatrix, Run
from tests.jarvis import LabelledDatabase

SMALL = SoapHypers(cutoff=4.0, n_max=4, l_max=3)


def _ids(jarvis: LabelledDatabase) -> list[int]:
    return list(select_structures(jarvis.db, release=jarvis.release).structure_ids)


def test_square_kernel_matches_the_pure_function(jarvis: LabelledDatabase) -> None:
    ids = _ids(jarvis)
    summary = build_kernel(jarvis.db, jarvis.settings, ids, hypers=SMALL, tile=16, workers=2)
    store = ArtifactStore(jarvis.settings.store_location)
    matrix = store.open_array(f"kernels/{summary.kernel_id}/matrix")[:]
    spectra = average_spectra(load_cells(jarvis.db, ids), SMALL)
    np.testing.assert_allclose(matrix, average_kernel(spectra, spectra), atol=1e-12)
    np.testing.assert_array_equal(matrix, matrix.T)  # each off-diagonal tile written twice
    assert summary.tiles_total == summary.tiles_computed == 10  # 4 x 4 tiles, upper half
    with jarvis.db.session() as session:
        row = session.get_one(KernelMatrix, summary.kernel_id)
        assert (row.status, row.shape, row.chunks, row.row_ids) == (
            "complete",
            [50, 50],
            [16, 16],
            ids,
        )
        assert row.checksum == summary.checksum
    again = build_kernel(jarvis.db, jarvis.settings, ids, hypers=SMALL, tile=16, workers=1)
    assert again.kernel_id == summary.kernel_id and again.tiles_computed == 0
    assert again.descriptor_set_id == summary.descriptor_set_id  # descriptors reused
    assert again.checksum == summary.checksum


def test_rectangle_is_the_slice_of_the_square(jarvis: LabelledDatabase) -> None:
    ids = _ids(jarvis)
    train, test = ids[: jarvis.n_train], ids[jarvis.n_train :]
    square = build_kernel(jarvis.db, jarvis.settings, ids, hypers=SMALL, tile=16, workers=1)
    rect = build_kernel(jarvis.db, jarvis.settings, test, train, hypers=SMALL, tile=16, workers=1)
    store = ArtifactStore(jarvis.settings.store_location)
    full = store.open_array(f"kernels/{square.kernel_id}/matrix")[:]
    part = store.open_array(f"kernels/{rect.kernel_id}/matrix")[:]
    assert rect.shape == (10, 40) and rect.tiles_total == 3
    np.testing.assert_allclose(part, full[jarvis.n_train :, : jarvis.n_train], atol=1e-12)


def test_an_interrupted_build_resumes_from_its_tiles(jarvis: LabelledDatabase) -> None:
    ids = _ids(jarvis)[:45]
    seen: list[int] = []

    def interrupt(stage: str, done: int, total: int) -> None:
        if stage == "tiles":
            seen.append(done)
            if len(seen) == 4:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_kernel(jarvis.db, jarvis.settings, ids, hypers=SMALL, tile=16, on_progress=interrupt)
    with jarvis.db.session() as session:
        failed = session.scalars(select(Run).order_by(Run.id.desc())).first()
        assert failed is not None and failed.status == "failed"
        partial = session.execute(
            select(KernelMatrix.id, KernelMatrix.status).order_by(KernelMatrix.id.desc())
        ).first()
        assert partial is not None and partial.status == "building"
    resumed = build_kernel(jarvis.db, jarvis.settings, ids, hypers=SMALL, tile=16, workers=1)
    assert resumed.kernel_id == partial.id
    assert resumed.tiles_total == 6 and resumed.tiles_computed <= 6 - 4
    store = ArtifactStore(jarvis.settings.store_location)
    matrix = store.open_array(f"kernels/{resumed.kernel_id}/matrix")[:]
    spectra = average_spectra(load_cells(jarvis.db, ids), SMALL)
    np.testing.assert_allclose(matrix, average_kernel(spectra, spectra), atol=1e-12)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"zeta": 0.0}, "--zeta"), ({"tile": 4}, "--tile"), ({"rows": []}, "no structures")],
)
def test_bad_arguments_are_named(jarvis: LabelledDatabase, arguments: dict, message: str) -> None:
    rows = arguments.pop("rows", _ids(jarvis))
    with pytest.raises(KernelError, match=message):
        build_kernel(jarvis.db, jarvis.settings, rows, hypers=SMALL, **arguments)


@pytest.mark.slow
def test_a_landmark_rectangle_records_its_draw_and_is_reused(jarvis: LabelledDatabase) -> None:
    ids = _ids(jarvis)
    chosen = choose_landmarks(jarvis.db, jarvis.release, 7, seed=3)
    assert len(set(chosen.ids)) == 7 and set(chosen.ids) <= set(ids[: jarvis.n_train])
    assert chosen.ids == choose_landmarks(jarvis.db, jarvis.release, 7, seed=3).ids
    build = {"hypers": SMALL, "tile": 16, "workers": 1, "landmarks": chosen.record}
    first = build_kernel(jarvis.db, jarvis.settings, ids, chosen.ids, **build)
    again = build_kernel(jarvis.db, jarvis.settings, ids, chosen.ids, **build)
    assert again.kernel_id == first.kernel_id and again.tiles_computed == 0
    assert first.shape == (50, 7)
    with jarvis.db.session() as session:
        row = session.get_one(KernelMatrix, first.kernel_id)
        assert row.hyperparameters["landmarks"] == {
            "count": 7,
            "seed": 3,
            "release": "jarvis:1.0",
        }
        assert row.col_ids == chosen.ids
    store = ArtifactStore(jarvis.settings.store_location)
    part = store.open_array(f"kernels/{first.kernel_id}/matrix")[:]
    spectra = average_spectra(load_cells(jarvis.db, ids), SMALL)
    columns = [ids.index(s) for s in chosen.ids]
    np.testing.assert_allclose(part, average_kernel(spectra, spectra)[:, columns], atol=1e-12)
