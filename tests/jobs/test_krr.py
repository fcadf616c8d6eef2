"""Training KRR on a stored kernel of real labelled crystals, then predicting through Dask."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from crystaldb.core import krr
from crystaldb.core.krr_model import predict_cells
from crystaldb.jobs.kernels import KernelError, build_kernel, choose_landmarks
from crystaldb.jobs.krr import _check_memory, load_krr, train_krr
from crystaldb.jobs.models import ModelError
from crystaldb.jobs.predict import predict
from crystaldb.platform.store import ArtifactStore
from crystaldb.query.selection import load_cells, release_labels, select_structures
from crystaldb.schema import KernelMatrix, Model, Prediction, Run
from tests.jarvis import LabelledDatabase
from tests.jobs.test_kernels import SMALL


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


@pytest.mark.slow
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
        assert run.results["written"] == written
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


# --- Nyström ---------------------------------------------------------------------------------


def _landmark_kernel(jarvis: LabelledDatabase, count: int) -> int:
    """A rectangle of the release against `count` landmarks of its train split (seed 0)."""
    chosen = choose_landmarks(jarvis.db, jarvis.release, count, seed=0)
    ids = list(select_structures(jarvis.db, release=jarvis.release).structure_ids)
    summary = build_kernel(
        jarvis.db,
        jarvis.settings,
        ids,
        chosen.ids,
        hypers=SMALL,
        tile=32,
        workers=1,
        landmarks=chosen.record,
    )
    return summary.kernel_id


@pytest.mark.slow
def test_every_training_structure_as_a_landmark_predicts_as_exact_krr(
    jarvis: LabelledDatabase, trained
) -> None:
    square, _ = trained
    rectangle = _landmark_kernel(jarvis, jarvis.n_train)
    exact = train_krr(jarvis.db, jarvis.settings, square, jarvis.release, grid=(1e-3,), folds=5)
    nystrom = train_krr(
        jarvis.db, jarvis.settings, rectangle, jarvis.release, grid=(1e-3,), folds=5
    )
    assert exact.nystrom is None
    assert nystrom.nystrom == {
        "landmarks": jarvis.n_train,
        "seed": 0,
        "release": "jarvis:1.0",
        "jitter": 0.0,
    }
    cells = load_cells(
        jarvis.db, list(select_structures(jarvis.db, release=jarvis.release).structure_ids)
    )
    a = predict_cells(cells, load_krr(jarvis.db, jarvis.settings, exact.model_id)[1])
    b = predict_cells(cells, load_krr(jarvis.db, jarvis.settings, nystrom.model_id)[1])
    np.testing.assert_allclose(b, a, atol=1e-6)
    assert nystrom.metrics["mae"] == pytest.approx(exact.metrics["mae"], abs=1e-6)


@pytest.mark.slow
def test_fewer_landmarks_store_their_count_and_predict_every_member(
    jarvis: LabelledDatabase,
) -> None:
    kernel_id = _landmark_kernel(jarvis, 12)
    summary = train_krr(jarvis.db, jarvis.settings, kernel_id, jarvis.release, folds=5)
    chosen = choose_landmarks(jarvis.db, jarvis.release, 12, seed=0)
    with jarvis.db.session() as session:
        model = session.get_one(Model, summary.model_id)
        kernel = session.get_one(KernelMatrix, kernel_id)
        assert kernel.hyperparameters["landmarks"] == {
            "count": 12,
            "seed": 0,
            "release": "jarvis:1.0",
        }
        assert model.kernel_id == kernel_id
        assert model.hyperparameters["nystrom"]["landmarks"] == 12
        assert model.hyperparameters["nystrom"]["seed"] == 0
        test = model.metrics["test"]
        assert test["n"] == jarvis.n_test and test["mae_ci95"][0] <= test["mae"]
        assert model.metrics["learning_curve"][-1]["train"] == jarvis.n_train
    _, weights = load_krr(jarvis.db, jarvis.settings, summary.model_id)
    assert weights.train_ids.tolist() == chosen.ids and weights.alpha.shape == (12,)
    selection = select_structures(jarvis.db, release=jarvis.release)
    run_id, written = predict(jarvis.db, jarvis.settings, summary.model_id, selection)
    assert written == len(selection.structure_ids)
    with jarvis.db.session() as session:
        stored = dict(
            session.execute(
                select(Prediction.structure_id, Prediction.value).where(Prediction.run_id == run_id)
            ).all()
        )
    assert sorted(stored) == sorted(selection.structure_ids)
    gaps = release_labels(jarvis.db, selection)
    test_ids = selection.structure_ids[jarvis.n_train :]
    mae = np.mean(
        [abs(stored[s] - g) for s, g in zip(test_ids, gaps[jarvis.n_train :], strict=True)]
    )
    assert mae == pytest.approx(summary.metrics["mae"], abs=1e-9)


def test_bad_landmark_requests_are_named(jarvis: LabelledDatabase, trained) -> None:
    with pytest.raises(KernelError, match="--landmarks: at least 1"):
        choose_landmarks(jarvis.db, jarvis.release, 0)
    with pytest.raises(KernelError, match=r"--landmarks 41: release jarvis:1\.0 has only 40"):
        choose_landmarks(jarvis.db, jarvis.release, jarvis.n_train + 1)
    ids = list(select_structures(jarvis.db, release=jarvis.release).structure_ids)
    outside = build_kernel(
        jarvis.db, jarvis.settings, ids, ids[-5:], hypers=SMALL, tile=32, workers=1
    )  # columns from the test split
    with pytest.raises(KernelError, match=r"--kernel \d+: 5 of its 5 columns are not labelled"):
        train_krr(jarvis.db, jarvis.settings, outside.kernel_id, jarvis.release, folds=5)


def test_training_that_would_not_fit_in_memory_is_refused_else_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    advice = krr.exact_advice(60_000)
    assert advice is not None
    with pytest.raises(ModelError, match=r"--kernel 7: exact KRR of 60,000 .* available"):
        _check_memory(7, 1e18, advice)  # an exabyte: more than any machine here has
    with caplog.at_level("WARNING"):
        _check_memory(7, 1.0, advice)
    assert "--landmarks M" in caplog.text and "28.8 GB" in caplog.text
