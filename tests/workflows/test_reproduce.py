"""`crystaldb reproduce omdb-gap1` end to end on a real folder in the OMDB-GAP1 layout.

The folder is the JARVIS release (50 real crystals with real OptB88vdW gaps) written by the
real omdb-gap1 exporter. The layout needs a COD id per structure and JARVIS crystals have
none, so each member gets a placeholder id (9000000 + its position) for the export only; the
importer stores the gaps as PBE labels, which does not matter for testing the machinery.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from crystaldb.core import krr
from crystaldb.core.kernels import average_kernel
from crystaldb.core.soap import SoapHypers, average_spectra
from crystaldb.query.selection import find_release, load_cells, release_labels, select_structures
from crystaldb.release.export import export_release
from crystaldb.release.load import load_release
from crystaldb.schema import Model, Prediction, Release, Run
from crystaldb.schema.releases import ReleaseError
from crystaldb.workflows.reproduce import ReproduceError, check_counts, check_request, folder_size
from tests.conftest import DatabaseFactory, run_cli
from tests.jarvis import LabelledDatabase


def omdb_folder(jarvis: LabelledDatabase, folder: Path) -> Path:
    """The JARVIS release in the OMDB-GAP1 layout, with placeholder COD ids (see above)."""
    data = load_release(jarvis.db, find_release(jarvis.db, "jarvis"))
    members = tuple(
        replace(m, external_ids={**m.external_ids, "cod": str(9_000_000 + m.position)})
        for m in data.members
    )
    export_release(replace(data, members=members), "omdb-gap1", folder)
    return folder


def test_counts_and_folders_that_cannot_run_are_named(tmp_path: Path) -> None:
    with pytest.raises(ReproduceError, match="holds 50 structures, not --train 10,000"):
        check_counts(50, 10_000, 2_500, 10, tmp_path)
    with pytest.raises(ReproduceError, match="--train 40 --test 10"):
        check_counts(50, 30, 10, 10, tmp_path)
    with pytest.raises(ReproduceError, match="--train 5: at least the 10"):
        check_counts(50, 5, 45, 10, tmp_path)
    with pytest.raises(ReproduceError, match="--test 0"):
        check_counts(50, 50, 0, 10, tmp_path)
    with pytest.raises(ReproduceError, match="not a folder"):
        folder_size(tmp_path / "nope")
    (tmp_path / "structures.xyz").write_text("")
    with pytest.raises(ReproduceError, match=r"no bandgaps\.csv"):
        folder_size(tmp_path)
    with pytest.raises(ReleaseError, match=r"^--release-name 'omdb:gap1': a release name cannot"):
        check_request(tmp_path, 40, 10, 10, "omdb:gap1")  # before the folder is even read


@pytest.mark.slow
def test_reproduce_omdb_gap1_on_a_real_folder(
    jarvis: LabelledDatabase, databases: DatabaseFactory, tmp_path: Path
) -> None:
    folder = omdb_folder(jarvis, tmp_path / "omdb")
    settings, db = databases.migrated("crystaldb_reproduce", tmp_path / "data")
    assert settings.database_url is not None
    env = {
        "CRYSTALDB_DATABASE_URL": settings.database_url,
        "CRYSTALDB_DATA_DIR": str(tmp_path / "data"),
    }

    wrong = run_cli("reproduce", "omdb-gap1", str(folder), env=env)
    assert wrong.returncode == 2
    assert "holds 50 structures, not --train 10,000 + --test 2,500" in wrong.stderr
    assert "--train 40 --test 10" in wrong.stderr

    first = run_cli(
        "reproduce", "omdb-gap1", str(folder), "--train", "40", "--test", "10", "--workers", "1",
        env=env,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "50 structures stored" in first.stdout
    assert "release omdb-gap1:1 created: first 40 train, last 10 test" in first.stdout
    assert "10-fold CV MAE" in first.stdout and "learning curve" in first.stdout
    assert "paper (SOAP)" in first.stdout and "0.430" in first.stdout and "0.797" in first.stdout

    again = run_cli(
        "reproduce", "omdb-gap1", str(folder), "--train", "40", "--test", "10",
        "--landmarks", "20", "--workers", "1", env=env,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "0 structures stored" in again.stdout and "50 already ingested" in again.stdout
    assert "release omdb-gap1:1 reused" in again.stdout
    assert "Nyström KRR over 20 landmarks (seed 0)" in again.stdout

    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Release)) == 1
        release = session.scalars(select(Release)).one()
        created = session.get_one(Run, release.run_id)
        assert release.query is None and created.parameters["given_ids"] == 50  # ids, no filter
        exact, nystrom = session.scalars(select(Model).order_by(Model.id)).all()
        assert "nystrom" not in exact.hyperparameters
        assert nystrom.hyperparameters["nystrom"]["landmarks"] == 20
        assert exact.split == nystrom.split == {"test": 10, "train": 40}
        exact_mae, nystrom_id = exact.metrics["test"]["mae"], nystrom.id
    # the CLI's exact model against the pure functions on the crystals before the export
    selection = select_structures(jarvis.db, release=jarvis.release)
    cells = load_cells(jarvis.db, list(selection.structure_ids))
    gaps = release_labels(jarvis.db, selection)
    spectra = average_spectra(cells, SoapHypers())
    kernel = average_kernel(spectra, spectra)

    def read(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return kernel[np.ix_(rows, cols)]

    train, test = np.arange(40), np.arange(40, 50)
    cv = krr.cross_validate(read, train, gaps[train])
    guess = krr.predict(read, test, train, krr.fit(read, train, gaps[train], cv.best))
    assert exact_mae == pytest.approx(np.abs(guess - gaps[test]).mean(), abs=1e-4)

    predicted = run_cli("predict", "--model", str(nystrom_id), "--release", "omdb-gap1", env=env)
    assert predicted.returncode == 0, predicted.stderr
    assert f"50 predictions by model {nystrom_id} stored" in predicted.stdout
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Prediction)) == 50
    db.dispose()
