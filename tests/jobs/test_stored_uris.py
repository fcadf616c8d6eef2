"""Kernels, descriptors and models are read at the URIs their rows recorded, not under the store.

A kernel and a KRR model are built in one store; the settings then point at another (as when
CRYSTALDB_STORE_URL changes): prediction, `similar`, training on the kernel and rebuilding it
still find every artifact where it was written, and a URI that cannot be reached any more is
an error naming the artifact and the URI.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from crystaldb.core.errors import ArtifactUnavailable
from crystaldb.core.soap import SoapHypers
from crystaldb.jobs.kernels import build_kernel
from crystaldb.jobs.krr import load_krr, train_krr
from crystaldb.jobs.predict import predict
from crystaldb.jobs.similarity import similar
from crystaldb.platform.settings import Settings
from crystaldb.query.selection import select_structures
from crystaldb.schema import KernelMatrix, Model, Prediction
from tests.jarvis import LabelledDatabase

HYPERS = SoapHypers(cutoff=3.5, n_max=3, l_max=2)  # built by no other test: nothing is reused
TILE = 32


@dataclass(frozen=True)
class Moved:
    """A kernel and a model written under `first`, and settings whose store is elsewhere."""

    first: Path
    elsewhere: Settings
    ids: list[int]
    kernel_id: int
    model_id: int


def _at(settings: Settings, store: Path) -> Settings:
    """The same settings with the artifact store at `store`."""
    return settings.model_copy(update={"store_url": str(store)})


@pytest.fixture(scope="module")
def moved(jarvis: LabelledDatabase, tmp_path_factory: pytest.TempPathFactory) -> Moved:
    first = tmp_path_factory.mktemp("store-first")
    at_first = _at(jarvis.settings, first)
    ids = list(select_structures(jarvis.db, release=jarvis.release).structure_ids)
    kernel = build_kernel(jarvis.db, at_first, ids, hypers=HYPERS, tile=TILE, workers=1)
    model = train_krr(jarvis.db, at_first, kernel.kernel_id, jarvis.release, folds=5)
    elsewhere = _at(jarvis.settings, tmp_path_factory.mktemp("store-second"))
    return Moved(first, elsewhere, ids, kernel.kernel_id, model.model_id)


def _uris(jarvis: LabelledDatabase, moved: Moved) -> tuple[str, str]:
    """The kernel's array URI and the model's weights URI, as their rows recorded them."""
    with jarvis.db.session() as session:
        kernel = session.get_one(KernelMatrix, moved.kernel_id)
        model = session.get_one(Model, moved.model_id)
        assert model.weights_uri is not None
        return kernel.array_uri, model.weights_uri


def test_the_rows_record_uris_in_the_first_store(jarvis: LabelledDatabase, moved: Moved) -> None:
    kernel_uri, weights_uri = _uris(jarvis, moved)
    assert kernel_uri == str(moved.first / "kernels" / str(moved.kernel_id) / "matrix")
    assert weights_uri.startswith(str(moved.first / "models")) and Path(weights_uri).is_file()
    assert not (Path(moved.elsewhere.store_location) / "kernels").exists()


def test_prediction_reads_the_weights_at_their_stored_uri(
    jarvis: LabelledDatabase, moved: Moved
) -> None:
    _, weights = load_krr(jarvis.db, moved.elsewhere, moved.model_id)
    _, same = load_krr(jarvis.db, jarvis.settings, moved.model_id)
    np.testing.assert_array_equal(weights.alpha, same.alpha)
    selection = select_structures(jarvis.db, release=jarvis.release)
    run_id, written = predict(jarvis.db, moved.elsewhere, moved.model_id, selection)
    assert written == len(moved.ids)
    with jarvis.db.session() as session:
        stored = session.scalars(select(Prediction.value).where(Prediction.run_id == run_id)).all()
    assert len(stored) == written and all(np.isfinite(stored))


def test_similar_reads_the_kernel_at_its_stored_uri(jarvis: LabelledDatabase, moved: Moved) -> None:
    here = similar(jarvis.db, moved.elsewhere, moved.ids[3], k=4, kernel_id=moved.kernel_id)
    there = similar(jarvis.db, jarvis.settings, moved.ids[3], k=4, kernel_id=moved.kernel_id)
    assert here == there and len(here) == 4 and moved.ids[3] not in [n.structure_id for n in here]


def test_training_on_the_kernel_reads_it_and_writes_the_new_model_elsewhere(
    jarvis: LabelledDatabase, moved: Moved
) -> None:
    again = train_krr(jarvis.db, moved.elsewhere, moved.kernel_id, jarvis.release, folds=5)
    with jarvis.db.session() as session:
        first = session.get_one(Model, moved.model_id)
        second = session.get_one(Model, again.model_id)
        assert second.weights_uri is not None
        assert second.weights_uri.startswith(moved.elsewhere.store_location)
        assert second.metrics["test"]["mae"] == pytest.approx(first.metrics["test"]["mae"])
        assert second.weights_sha256 == first.weights_sha256  # the same fit, read from `first`


def test_building_the_kernel_again_reuses_it_where_it_was_written(
    jarvis: LabelledDatabase, moved: Moved
) -> None:
    again = build_kernel(jarvis.db, moved.elsewhere, moved.ids, hypers=HYPERS, tile=TILE)
    assert (again.kernel_id, again.tiles_computed) == (moved.kernel_id, 0)
    assert again.array_uri == _uris(jarvis, moved)[0]


@pytest.fixture
def store_gone(moved: Moved) -> Iterator[None]:
    """The first store moved away for one test (and back after it)."""
    away = moved.first.with_name(f"{moved.first.name}-moved")
    moved.first.rename(away)
    yield
    away.rename(moved.first)


def test_an_unreachable_stored_uri_names_the_artifact_and_the_uri(
    jarvis: LabelledDatabase, moved: Moved, store_gone: None
) -> None:
    kernel_uri, weights_uri = _uris(jarvis, moved)
    kernel = f"^kernel {moved.kernel_id}: cannot read {re.escape(kernel_uri)} "
    with pytest.raises(ArtifactUnavailable, match=kernel):
        similar(jarvis.db, moved.elsewhere, moved.ids[3], k=4, kernel_id=moved.kernel_id)
    with pytest.raises(ArtifactUnavailable, match=kernel):
        train_krr(jarvis.db, moved.elsewhere, moved.kernel_id, jarvis.release, folds=5)
    with pytest.raises(ArtifactUnavailable, match=rf"^model {moved.model_id} \(.*\) weights: "):
        load_krr(jarvis.db, moved.elsewhere, moved.model_id)
    with pytest.raises(ArtifactUnavailable, match=f"cannot read {re.escape(weights_uri)} "):
        load_krr(jarvis.db, moved.elsewhere, moved.model_id)
    rebuilt = build_kernel(jarvis.db, moved.elsewhere, moved.ids, hypers=HYPERS, tile=TILE)
    assert rebuilt.kernel_id != moved.kernel_id  # built anew in the store configured now
    assert rebuilt.array_uri.startswith(moved.elsewhere.store_location)
