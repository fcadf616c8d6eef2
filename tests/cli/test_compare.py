"""`crystaldb compare` on the JARVIS release: every model trained, scored and drawn, as run."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from sqlalchemy import select

from crystaldb.cli.compare import comparison_table, ensemble_line
from crystaldb.core.krr import regression_metrics
from crystaldb.platform.store import ArtifactStore
from crystaldb.query.selection import release_labels, select_structures
from crystaldb.schema import Model, Prediction, Run
from crystaldb.workflows.compare import MODELS, CompareError, compare_models
from tests.conftest import run_cli
from tests.jarvis import LabelledDatabase
from tests.jobs.test_kernels import SMALL
from tests.jobs.test_mbtr import MBTR


@pytest.mark.slow
def test_compare_trains_every_model_and_stores_the_table(jarvis: LabelledDatabase) -> None:
    done = compare_models(
        jarvis.db, jarvis.settings, jarvis.release,
        epochs=1, folds=5, workers=1, soap=SMALL, mbtr=MBTR,
    )  # fmt: skip
    names = [s.name for s in done.scores]
    assert names == [*MODELS, "soap-krr + schnet (average)"]
    assert (done.n_train, done.n_test) == (jarvis.n_train, jarvis.n_test)
    gaps = release_labels(jarvis.db, select_structures(jarvis.db, release=jarvis.release))
    train, test = gaps[: jarvis.n_train], gaps[jarvis.n_train :]
    expected = regression_metrics(np.full(10, np.median(train)), test)
    assert {k: done.baseline[k] for k in ("n", "mae", "rmse")} == pytest.approx(
        {k: expected[k] for k in ("n", "mae", "rmse")}
    )
    assert done.baseline["mae_ci95"] == pytest.approx(expected["mae_ci95"])
    with jarvis.db.session() as session:
        run = session.get_one(Run, done.run_id)
        assert (run.kind, run.status) == ("compare", "succeeded")
        assert [row["model"] for row in run.results["table"]] == names
        assert run.results["ensemble_vs_members"] == done.ensemble_vs_members
        assert run.results["table"][0]["vs_baseline"] == done.scores[0].vs_baseline
        assert set(run.results["curves"]) == set(MODELS)
        plot = run.results["plot"]
        for score in done.scores:
            m = score.metrics
            assert m["n"] == 10 and m["mae_ci95"][0] <= m["mae"] <= m["mae_ci95"][1]
            assert m["rmse"] >= m["mae"] and score.seconds > 0
            if score.model_id is not None:  # each model is the stored one, with its own MAE
                stored = session.get_one(Model, score.model_id).metrics["test"]["mae"]
                assert stored == pytest.approx(m["mae"], abs=1e-6), score.name
    members_ids = select_structures(jarvis.db, release=jarvis.release).structure_ids
    by_id = dict(zip(members_ids, gaps, strict=True))
    with jarvis.db.session() as session:  # each model's test predictions, stamped with the run
        for score in done.scores[: len(MODELS)]:
            rows = session.execute(
                select(Prediction.structure_id, Prediction.value)
                .where(Prediction.model_id == score.model_id, Prediction.run_id == done.run_id)
                .order_by(Prediction.structure_id)
            ).all()
            stored = dict(rows)
            assert len(rows) == len(stored) == jarvis.n_test, score.name
            errors = [abs(value - by_id[sid]) for sid, value in stored.items()]
            assert np.mean(errors) == pytest.approx(score.metrics["mae"], abs=1e-9), score.name
    for score in done.scores:  # MAE - baseline: the paired difference, inside its interval
        versus = score.vs_baseline
        assert versus["difference"] == pytest.approx(score.metrics["mae"] - expected["mae"])
        assert versus["ci95"][0] <= versus["difference"] <= versus["ci95"][1]
    members = done.ensemble_vs_members
    assert set(members) == {"soap-krr", "schnet"}
    for name, versus in members.items():
        member = next(s for s in done.scores if s.name == name)
        assert versus["difference"] == pytest.approx(
            done.scores[-1].metrics["mae"] - member.metrics["mae"]
        )
    for score in done.scores[: len(MODELS)]:  # the same nested sizes for every model
        assert [n for n, _ in score.curve] == [n for n, _ in done.scores[0].curve]
        assert score.curve[-1] == (jarvis.n_train, pytest.approx(score.metrics["mae"]))
    printed = Console(width=200, record=True, file=io.StringIO())
    printed.print(comparison_table(done))
    printed.print(ensemble_line(done))
    text = printed.export_text()  # the brackets are printed, not taken for rich markup
    assert "MAE - baseline [paired 95% CI]" in text
    assert "average - member, test MAE in eV [paired 95% CI]: soap-krr " in text
    store = ArtifactStore(jarvis.settings.store_location)
    key = f"comparisons/run{done.run_id}-learning-curves.png"
    assert store.uri(key) == done.plot_uri == plot
    assert Image.open(io.BytesIO(store.get_bytes(key))).size == (600, 420)


def test_bad_arguments_are_named(jarvis: LabelledDatabase) -> None:
    with pytest.raises(CompareError, match="--epochs"):
        compare_models(jarvis.db, jarvis.settings, jarvis.release, epochs=0)
    with pytest.raises(CompareError, match="--folds 60"):
        compare_models(jarvis.db, jarvis.settings, jarvis.release, folds=60)


@pytest.mark.slow
def test_compare_from_the_command_line_names_a_bad_release(jarvis: LabelledDatabase) -> None:
    env = {
        "CRYSTALDB_DATABASE_URL": str(jarvis.settings.database_url),
        "CRYSTALDB_DATA_DIR": str(jarvis.settings.data_dir),
    }
    refused = run_cli("compare", "--release", "nope", env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert re.search(r"nope", refused.stderr), refused.stderr
