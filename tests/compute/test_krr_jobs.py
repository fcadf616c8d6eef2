"""Training KRR on a stored kernel of real labelled crystals, then predicting through Dask."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from crystaldb.compute import krr
from crystaldb.compute.cells import load_cells, release_labels, select_structures
from crystaldb.compute.inference import predict
from crystaldb.compute.kernel_build import KernelError, build_kernel
from crystaldb.compute.krr_jobs import load_krr, predict_cells, train_krr
from crystaldb.compute.models import ModelError
from crystaldb.platform.store import ArtifactStore
from crystaldb.schema import Model, Prediction, Run
from tests.compute.conftest import LabelledDatabase
from tests.compute.test_kernel_build import SMALL


@pytest.fixture(scope="module")
def trained(jarvis: LabelledDatabase) -> tuple[int, int]:
    """A square kernel over the release and a model trained on it: (kernel id, model id)."""
    ids = list(select_structures(jarvis.db, release=jarvis.release).structure_ids)
    kernel = build_kernel(jarvis.db, jarvis.settings, ids, hypers=SMALL, tile=32, workers=1)
    summary = train_krr(jarvis.db, jarvis.settings, kernel.kernel_id, jarvis.release, folds=5)
    return kernel.kernel_id, summary.model_id


def test_model_row_records_metrics_and_provenance(jarvis: LabelledDatabase, trained) -> None:
    kernel_id, model_id = trained
    with jarvis.db.session() as session:
        model = session.get_one(Model, model_id)
        run = session.get_one(Run, model.run_id)
        assert (model.architecture, model.kernel_id, run.kind, run.status) == (
            "krr",
            kernel_id,
            "train",
            "succeeded",
        )
        assert model.split == {"test": jarvis.n_test, "train": jarvis.n_train}
        assert model.hyperparameters["regularisation"] in krr.DEFAULT_GRID
        assert model.hyperparameters["descriptor"]["featomic"]["basis"]["radial"]["max_radial"] == 3
        test = model.metrics["test"]
        assert (
            test["n"] == jarvis.n_test and test["mae_ci95"][0] <= test["mae"] <= test["mae_ci95"][1]
        )
        assert len(model.metrics["cv_mae"]) == len(krr.DEFAULT_GRID)
        assert len(model.weights_sha256) == 64


def test_primal_prediction_equals_the_kernel_one(jarvis: LabelledDatabase, trained) -> None:
    """w = sum_j alpha_j p_j/|p_j| predicts exactly what K(x, train) alpha does."""
    kernel_id, model_id = trained
    model, weights = load_krr(jarvis.db, jarvis.settings, model_id)
    ids = list(select_structures(jarvis.db, release=jarvis.release).structure_ids)
    matrix = ArtifactStore(jarvis.settings.store_location).open_array(f"kernels/{kernel_id}/matrix")
    dual = np.maximum(matrix[:, : jarvis.n_train] @ weights.alpha + weights.mean, 0.0)
    primal = predict_cells(load_cells(jarvis.db, ids), weights)
    np.testing.assert_allclose(primal, dual, atol=1e-9)
    gaps = release_labels(jarvis.db, select_structures(jarvis.db, release=jarvis.release))
    test_mae = np.abs(primal[jarvis.n_train :] - gaps[jarvis.n_train :]).mean()
    assert test_mae == pytest.approx(model.metrics["test"]["mae"], abs=1e-9)


def test_predict_writes_every_structure_with_its_run(jarvis: LabelledDatabase, trained) -> None:
    _, model_id = trained
    selection = select_structures(jarvis.db, release=jarvis.release)
    run_id, written = predict(jarvis.db, jarvis.settings, model_id, selection, batch_size=16)
    assert written == len(selection.structure_ids)
    _, weights = load_krr(jarvis.db, jarvis.settings, model_id)
    expected = predict_cells(load_cells(jarvis.db, list(selection.structure_ids)), weights)
    with jarvis.db.session() as session:
        rows = session.execute(
            select(Prediction.structure_id, Prediction.value).where(Prediction.run_id == run_id)
        ).all()
        run = session.get_one(Run, run_id)
        assert run.kind == "predict" and run.device == "cpu"
        assert run.parameters["written"] == written
    stored = dict(rows)
    assert [stored[s] for s in selection.structure_ids] == pytest.approx(expected.tolist())


def test_bad_model_and_kernel_references_are_named(jarvis: LabelledDatabase, trained) -> None:
    kernel_id, _ = trained
    with pytest.raises(ModelError, match="--model: no model 999999"):
        load_krr(jarvis.db, jarvis.settings, 999999)
    with pytest.raises(KernelError, match="--kernel: no kernel 999999"):
        train_krr(jarvis.db, jarvis.settings, 999999, jarvis.release)
    with pytest.raises(Exception, match="--release: no release nope"):
        train_krr(jarvis.db, jarvis.settings, kernel_id, "nope")


def test_learning_curve_is_stored_with_its_plot(jarvis: LabelledDatabase, trained) -> None:
    _, model_id = trained
    with jarvis.db.session() as session:
        model = session.get_one(Model, model_id)
        curve, test_mae, name = (
            model.metrics["learning_curve"],
            model.metrics["test"]["mae"],
            model.name,
        )
    sizes = [point["train"] for point in curve]
    assert sizes == sorted(set(sizes)) and sizes[-1] == jarvis.n_train and len(sizes) >= 3
    assert curve[-1]["test_mae"] == pytest.approx(test_mae)  # all of train: the model itself
    png = ArtifactStore(jarvis.settings.store_location).get_bytes(
        f"models/{name}-learning-curve.png"
    )
    assert png.startswith(b"\x89PNG")
