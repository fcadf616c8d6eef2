"""The model commands as a user runs them: labels in, a kernel, a KRR model, predictions out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crystaldb.platform.database import connect
from crystaldb.platform.settings import load_settings
from crystaldb.schema import Label, Prediction
from tests.conftest import DatabaseFactory, run_cli
from tests.realdata import SAMPLE

pytestmark = pytest.mark.slow  # whole CLI sessions in child processes

JARVIS = SAMPLE / "jarvis"


def test_labels_kernel_train_predict(databases: DatabaseFactory, tmp_path: Path) -> None:
    url = databases.create().render_as_string(hide_password=False)
    env = {"CRYSTALDB_DATABASE_URL": url, "CRYSTALDB_DATA_DIR": str(tmp_path)}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    ingest = run_cli(
        "ingest", str(JARVIS), "--workers", "1", "--labels", str(JARVIS / "id_prop.csv"),
        "--label-method", "band_gap:OptB88vdW", "--label-code", "VASP", env=env,
    )  # fmt: skip
    assert ingest.returncode == 0, ingest.stderr
    assert "70 structures stored" in ingest.stdout and "50 labels" in ingest.stdout
    release = run_cli(
        "release", "create", "jv", "--version", "1", "--label", "band_gap:OptB88vdW",
        "--split", "ordered:40,10", env=env,
    )  # fmt: skip
    assert release.returncode == 0, release.stderr
    kernel = run_cli(
        "kernel", "build", "--release", "jv", "--n", "4", "--l", "3", "--tile", "32",
        "--workers", "1", env=env,
    )  # fmt: skip
    assert kernel.returncode == 0, kernel.stderr
    assert re.search(r"kernel 1: 50 x 50 .* 3 of 3 tiles computed", kernel.stdout)
    listed = run_cli("kernel", "list", env=env)
    assert "4.0/4/3/0.5" in listed.stdout and "complete" in listed.stdout
    train = run_cli("train", "krr", "--kernel", "1", "--release", "jv", "--folds", "5", env=env)
    assert train.returncode == 0, train.stderr
    assert "5-fold CV MAE" in train.stdout and "<- chosen" in train.stdout
    assert re.search(r"model 1 \(krr-jv-run\d+\): test MAE \d+\.\d+ eV", train.stdout)
    models = run_cli("models", env=env)
    assert "krr-jv-run" in models.stdout and "jv:1" in models.stdout
    predict = run_cli("predict", "--model", "1", "--where", "nelements >= 1", env=env)
    assert predict.returncode == 0, predict.stderr
    assert "70 predictions by model 1 stored" in predict.stdout
    db = connect(load_settings(database_url=url))
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Label)) == 50
        assert session.scalar(select(func.count()).select_from(Prediction)) == 70
        assert session.scalar(select(func.min(Prediction.value))) >= 0.0
    db.dispose()


def test_model_commands_name_what_is_wrong(databases: DatabaseFactory, tmp_path: Path) -> None:
    url = databases.create().render_as_string(hide_password=False)
    env = {"CRYSTALDB_DATABASE_URL": url, "CRYSTALDB_DATA_DIR": str(tmp_path)}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    cases = [
        (("kernel", "build", "--release", "nope"), "--release: no release nope"),
        (("kernel", "build", "--all", "--rc", "0"), "--rc"),
        (("kernel", "build"), "give one of --release, --where or --all"),
        (("kernel", "build", "--all", "--landmarks", "5"), "--landmarks"),
        (("train", "krr", "--kernel", "7", "--release", "x"), "--kernel: no kernel 7"),
        (("predict", "--model", "3", "--all"), "--model: no model 3"),
        (("ingest", str(JARVIS), "--labels", str(tmp_path / "none.csv")), "--labels"),
    ]
    for args, message in cases:
        result = run_cli(*args, env=env)
        assert result.returncode == 2, (args, result.stdout)
        assert message in result.stderr, (args, result.stderr)
