"""Training SchNet and CGCNN on real labelled crystals, then predicting through Dask."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from crystaldb.core.network_hypers import HyperparameterError
from crystaldb.core.networks import predict_graphs
from crystaldb.core.training import EpochLog
from crystaldb.jobs.models import ModelError
from crystaldb.jobs.networks import NNTrainSummary, load_nn, train_nn
from crystaldb.jobs.predict import predict, predict_cell, predict_ensemble
from crystaldb.platform.store import ArtifactStore
from crystaldb.query.selection import load_cells, release_labels, select_structures
from crystaldb.release.create import create_release
from crystaldb.schema import GraphRecipe, Model, Prediction, Run
from tests.conftest import run_cli
from tests.jarvis import LabelledDatabase, jarvis_cells

TINY = {
    "schnet": {"features": 16, "filters": 16, "interactions": 2, "gaussians": 16},
    "cgcnn": {"features": 16, "hidden": 32, "convolutions": 2},
    "mpnn": {"features": 16, "interactions": 2, "gaussian_step": 0.4},
}


@pytest.fixture(scope="module")
def schnet(jarvis: LabelledDatabase) -> NNTrainSummary:
    """A tiny SchNet trained 3 epochs on the release (its radius:5.0 graphs built on the way)."""
    return train_nn(
        jarvis.db,
        jarvis.settings,
        "schnet",
        jarvis.release,
        epochs=3,
        hypers=TINY["schnet"],
        batch_size=8,
        workers=1,
    )


@pytest.fixture(scope="module")
def cgcnn(jarvis: LabelledDatabase) -> NNTrainSummary:
    """A tiny CGCNN, 4 epochs straight through (the resume test's reference)."""
    return train_nn(
        jarvis.db,
        jarvis.settings,
        "cgcnn",
        jarvis.release,
        epochs=4,
        hypers=TINY["cgcnn"],
        batch_size=8,
        name="cgcnn-straight",
        workers=1,
    )


@pytest.fixture(scope="module")
def mpnn(jarvis: LabelledDatabase) -> NNTrainSummary:
    """A tiny edge-update network, 2 epochs (its knn:24,8.0 graphs built on the way)."""
    return train_nn(
        jarvis.db,
        jarvis.settings,
        "mpnn",
        jarvis.release,
        epochs=2,
        hypers=TINY["mpnn"],
        batch_size=8,
        workers=1,
    )


def test_model_row_records_provenance(jarvis: LabelledDatabase, schnet: NNTrainSummary) -> None:
    with jarvis.db.session() as session:
        model = session.get_one(Model, schnet.model_id)
        run = session.get_one(Run, model.run_id)
        recipe = session.get_one(GraphRecipe, model.graph_recipe_id)
        assert (model.architecture, recipe.name, run.kind, run.status) == (
            "schnet",
            "radius:5.0",
            "train",
            "succeeded",
        )
        assert model.hyperparameters["model"]["interactions"] == 2
        assert model.hyperparameters["training"]["learning_rate"] == 1e-3
        assert model.hyperparameters["training"]["decay"] == 0.6
        assert model.split == {"test": jarvis.n_test, "train": jarvis.n_train, "validation": 4}
        assert model.metrics["test"]["n"] == jarvis.n_test and model.metrics["epochs"] == 3
        assert len(model.metrics["history"]) == 3 and "validation_mae" in model.metrics
        assert "torch" in model.library_versions and model.device == "cpu"
        assert len(model.weights_sha256) == 64
    store = ArtifactStore(jarvis.settings.store_location)
    assert not store.exists(f"checkpoints/{schnet.name}.pt")  # removed once the model is in


@pytest.mark.parametrize("architecture", ["schnet", "mpnn"])
def test_reloaded_weights_predict_what_training_scored(
    jarvis: LabelledDatabase, architecture: str, request: pytest.FixtureRequest
) -> None:
    trained: NNTrainSummary = request.getfixturevalue(architecture)
    model, weights = load_nn(jarvis.db, jarvis.settings, trained.model_id)
    selection = select_structures(jarvis.db, release=jarvis.release)
    ids = list(selection.structure_ids)
    gaps = release_labels(jarvis.db, selection)
    test_ids = ids[jarvis.n_train :]
    values = predict_graphs(load_cells(jarvis.db, test_ids), None, weights)
    mae = np.abs(values - gaps[jarvis.n_train :]).mean()
    assert mae == pytest.approx(model.metrics["test"]["mae"], abs=1e-6)
    again = predict_graphs(
        load_cells(jarvis.db, test_ids),
        None,
        load_nn(jarvis.db, jarvis.settings, trained.model_id)[1],
    )
    np.testing.assert_array_equal(values, again)
    assert model.architecture == architecture
    single = predict_cell(
        jarvis.db, jarvis.settings, trained.model_id, load_cells(jarvis.db, test_ids[:1])[0]
    )
    assert single == pytest.approx(values[0], abs=1e-6) and single >= 0


def test_training_resumes_from_its_checkpoint(
    jarvis: LabelledDatabase, cgcnn: NNTrainSummary
) -> None:
    class Interrupted(Exception):
        pass

    def stop_after_two(log: EpochLog) -> None:
        if log.epoch == 2:
            raise Interrupted

    arguments = dict(epochs=4, hypers=TINY["cgcnn"], batch_size=8, name="cgcnn-resumed", workers=1)
    with pytest.raises(Interrupted):
        train_nn(
            jarvis.db,
            jarvis.settings,
            "cgcnn",
            jarvis.release,
            on_epoch=stop_after_two,
            **arguments,
        )  # type: ignore[arg-type]
    store = ArtifactStore(jarvis.settings.store_location)
    assert store.exists("checkpoints/cgcnn-resumed.pt")
    resumed = train_nn(jarvis.db, jarvis.settings, "cgcnn", jarvis.release, **arguments)  # type: ignore[arg-type]
    assert (resumed.resumed_from, resumed.epochs) == (2, 4)
    _, straight = load_nn(jarvis.db, jarvis.settings, cgcnn.model_id)
    _, again = load_nn(jarvis.db, jarvis.settings, resumed.model_id)
    for key, value in straight.state.items():
        np.testing.assert_allclose(again.state[key].numpy(), value.numpy(), atol=1e-6, err_msg=key)
    assert resumed.metrics["mae"] == pytest.approx(cgcnn.metrics["mae"], abs=1e-6)


def test_predict_writes_rows_with_run_device_and_batch_size(
    jarvis: LabelledDatabase, schnet: NNTrainSummary
) -> None:
    selection = select_structures(jarvis.db, release=jarvis.release)
    run_id, written = predict(jarvis.db, jarvis.settings, schnet.model_id, selection, 1, 16)
    assert written == len(selection.structure_ids)
    _, weights = load_nn(jarvis.db, jarvis.settings, schnet.model_id)
    expected = predict_graphs(load_cells(jarvis.db, list(selection.structure_ids)), None, weights)
    with jarvis.db.session() as session:
        run = session.get_one(Run, run_id)
        assert (run.kind, run.status, run.device) == ("predict", "succeeded", "cpu")
        assert run.parameters["batch_size"] == 16 and run.results["devices"] == ["cpu"]
        rows = dict(
            session.execute(
                select(Prediction.structure_id, Prediction.value).where(Prediction.run_id == run_id)
            ).all()
        )
    got = np.array([rows[s] for s in selection.structure_ids])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert (got >= 0).all()


def test_ensemble_writes_mean_and_spread(
    jarvis: LabelledDatabase, schnet: NNTrainSummary, cgcnn: NNTrainSummary
) -> None:
    selection = select_structures(jarvis.db, release=jarvis.release)
    ids = list(selection.structure_ids)
    summary = predict_ensemble(
        jarvis.db, jarvis.settings, [schnet.model_id, cgcnn.model_id], selection, workers=1
    )
    assert summary.written == len(ids) and summary.metrics["test"]["n"] == jarvis.n_test
    cells = load_cells(jarvis.db, ids)
    members = np.stack(
        [
            predict_graphs(cells, None, load_nn(jarvis.db, jarvis.settings, m)[1])
            for m in (schnet.model_id, cgcnn.model_id)
        ]
    )
    with jarvis.db.session() as session:
        model = session.get_one(Model, summary.model_id)
        assert model.architecture == "ensemble"
        assert [m["id"] for m in model.hyperparameters["members"]] == [
            schnet.model_id,
            cgcnn.model_id,
        ]
        rows = {
            sid: (value, sigma)
            for sid, value, sigma in session.execute(
                select(Prediction.structure_id, Prediction.value, Prediction.uncertainty).where(
                    Prediction.run_id == summary.run_id
                )
            )
        }
    np.testing.assert_allclose([rows[s][0] for s in ids], members.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose([rows[s][1] for s in ids], members.std(axis=0), atol=1e-6)
    single = predict_cell(jarvis.db, jarvis.settings, summary.model_id, cells[0])
    assert single == pytest.approx(members[:, 0].mean(), abs=1e-6)


@pytest.mark.slow
def test_overfits_eight_real_crystals(jarvis: LabelledDatabase) -> None:
    cells, _ = jarvis_cells()
    small = sum(c.num_sites <= 6 for c in cells)
    create_release(
        jarvis.db,
        "jarvis-small",
        "1.0",
        where="nsites <= 6",
        label="band_gap:OptB88vdW",
        split=f"ordered:8,{small - 8}",
    )
    summary = train_nn(
        jarvis.db,
        jarvis.settings,
        "schnet",
        "jarvis-small",
        epochs=300,
        hypers={"features": 32, "filters": 32, "interactions": 2, "gaussians": 25},
        batch_size=8,
        validation=0,
        learning_rate=3e-3,
        patience=30,
        workers=1,
    )
    with jarvis.db.session() as session:
        metrics = session.get_one(Model, summary.model_id).metrics
    small_gaps = [g for c, g in zip(*jarvis_cells(), strict=True) if c.num_sites <= 6][:8]
    assert np.std(small_gaps) > 0.3  # a real spread of gaps to fit, not a constant
    assert metrics["train_mae"] < 0.05, metrics["train_mae"]


def test_bad_arguments_name_the_argument(jarvis: LabelledDatabase) -> None:
    with pytest.raises(HyperparameterError, match="architecture: unknown 'megnet'"):
        train_nn(jarvis.db, jarvis.settings, "megnet", jarvis.release)
    create_release(jarvis.db, "jarvis-unsplit", "1.0", label="band_gap:OptB88vdW")
    with pytest.raises(ModelError, match="--release jarvis-unsplit: 0 labelled training"):
        train_nn(jarvis.db, jarvis.settings, "schnet", "jarvis-unsplit")
    with pytest.raises(ModelError, match="--epochs"):
        train_nn(jarvis.db, jarvis.settings, "schnet", jarvis.release, epochs=0)
    with pytest.raises(ModelError, match="--model: no model 999999"):
        predict_cell(jarvis.db, jarvis.settings, 999999, jarvis_cells()[0][0])


@pytest.mark.slow
def test_cli_trains_cgcnn_and_predicts_an_ensemble(
    jarvis: LabelledDatabase, schnet: NNTrainSummary
) -> None:
    env = {
        "CRYSTALDB_DATABASE_URL": jarvis.settings.database_url or "",
        "CRYSTALDB_DATA_DIR": str(jarvis.settings.data_dir),
    }
    trained = run_cli(
        "train", "cgcnn", "--release", "jarvis", "--epochs", "2", "--name", "cli-cgcnn", env=env
    )
    assert trained.returncode == 0, trained.stderr
    assert "2 epochs on cpu" in trained.stdout and "test MAE" in trained.stdout
    with jarvis.db.session() as session:
        cli_id = session.scalar(select(Model.id).where(Model.name == "cli-cgcnn"))
    predicted = run_cli(
        "predict", "--ensemble", f"{schnet.model_id},{cli_id}", "--release", "jarvis",
        "--workers", "1", env=env,
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    assert "50 predictions by model" in predicted.stdout
    refused = run_cli("predict", "--release", "jarvis", env=env)
    assert refused.returncode != 0 and "--ensemble" in refused.stdout + refused.stderr
