"""Prediction on a real Dask cluster whose workers declare a GPU: tasks go only there."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sqlalchemy import select

from crystaldb.core.networks import predict_graphs
from crystaldb.jobs.networks import load_nn, train_nn
from crystaldb.jobs.predict import predict
from crystaldb.query.selection import load_cells, select_structures
from crystaldb.schema import Prediction, Run
from tests.jarvis import LabelledDatabase

TINY = {"features": 16, "filters": 16, "interactions": 1, "gaussians": 16}


@pytest.fixture(scope="module")
def gpu_cluster() -> str:
    """A scheduler with two worker processes, one declaring the Dask resource GPU=1."""
    from distributed import Nanny, Scheduler, SpecCluster

    workers = {
        "gpu-worker": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
        "cpu-worker": {"cls": Nanny, "options": {"nthreads": 1}},
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    with SpecCluster(workers=workers, scheduler=scheduler) as cluster:
        yield cluster.scheduler_address


@pytest.mark.slow
def test_tasks_go_only_to_the_workers_that_declare_a_gpu(
    jarvis: LabelledDatabase, gpu_cluster: str
) -> None:
    trained = train_nn(
        jarvis.db, jarvis.settings, "schnet", jarvis.release, epochs=1, hypers=TINY, workers=1
    )
    settings = jarvis.settings.model_copy(update={"dask_scheduler": gpu_cluster})
    selection = select_structures(jarvis.db, release=jarvis.release)
    run_id, written = predict(jarvis.db, settings, trained.model_id, selection, batch_size=5)
    assert written == len(selection.structure_ids) == 50  # 10 batches of 5, all on one worker
    with jarvis.db.session() as session:
        run = session.get_one(Run, run_id)
        assert run.parameters["gpu_workers"] == 1
        assert run.results["workers"] == ["gpu-worker"]
        # the device the worker used, which is the one its torch offers (same environment)
        used = "cuda" if torch.cuda.is_available() else "cpu"
        assert run.results["devices"] == [used] and run.device == used
        stored = dict(
            session.execute(
                select(Prediction.structure_id, Prediction.value).where(Prediction.run_id == run_id)
            ).all()
        )
    _, weights = load_nn(jarvis.db, jarvis.settings, trained.model_id)
    cells = load_cells(jarvis.db, list(selection.structure_ids))
    expected = predict_graphs(cells, None, weights, used)
    np.testing.assert_allclose([stored[s] for s in selection.structure_ids], expected, atol=1e-6)
