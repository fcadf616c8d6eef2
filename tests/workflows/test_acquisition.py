"""`crystaldb label curve` on the JARVIS release: a stored kernel, a run, a figure, a table."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from crystaldb.core.acquisition import AcquisitionHypers
from crystaldb.jobs.kernels import KernelError, build_kernel, list_kernels
from crystaldb.platform.store import ArtifactStore
from crystaldb.query.selection import select_structures
from crystaldb.schema import Run
from crystaldb.workflows import acquisition
from crystaldb.workflows.acquisition import acquisition_curve
from tests.conftest import run_cli
from tests.jarvis import LabelledDatabase
from tests.jobs.test_kernels import SMALL

HYPERS = AcquisitionHypers(start=5, step=5, rounds=3, committee=3, seeds=2)


@pytest.mark.slow
def test_curve_of_a_stored_kernel_is_run_drawn_and_printed(jarvis: LabelledDatabase) -> None:
    ids = select_structures(jarvis.db, release=jarvis.release).structure_ids
    square = build_kernel(jarvis.db, jarvis.settings, ids, hypers=SMALL, tile=16, workers=1)
    done = acquisition_curve(jarvis.db, jarvis.settings, jarvis.release, square.kernel_id, HYPERS)
    assert (done.n_pool, done.n_test) == (jarvis.n_train, jarvis.n_test)
    spread, random = done.curves.curves["spread"], done.curves.curves["random"]
    assert spread.sizes == random.sizes == (5, 10, 15, 20)
    np.testing.assert_array_equal(spread.mae[:, 0], random.mae[:, 0])
    with jarvis.db.session() as session:
        run = session.get_one(Run, done.run_id)
        assert (run.kind, run.status) == ("acquisition-curve", "succeeded")
        assert run.parameters["kernel_id"] == square.kernel_id and run.parameters["seeds"] == 2
        assert run.results["curves"]["spread"] == [list(p) for p in spread.points()]
        assert run.results["plot"] == done.plot_uri
    store = ArtifactStore(jarvis.settings.store_location)
    png = store.get_bytes(f"acquisition/run{done.run_id}-curve.png")
    assert Image.open(io.BytesIO(png)).size == (600, 420)

    env = {
        "CRYSTALDB_DATABASE_URL": str(jarvis.settings.database_url),
        "CRYSTALDB_DATA_DIR": str(jarvis.settings.data_dir),
    }
    args = ("label", "curve", "--release", jarvis.release, "--kernel", str(square.kernel_id))
    small = ("--start", "5", "--step", "5", "--rounds", "3", "--committee", "3", "--seeds", "2")
    shown = run_cli(*args, *small, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "labelled structures" in shown.stdout and "plot: " in shown.stdout
    assert f"{spread.mean[-1]:.3f} ± {spread.sd[-1]:.3f}" in shown.stdout  # same seeds, same MAE
    refused = run_cli(*args, "--rounds", "10", env=env)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "--rounds 10" in refused.stderr and "40 train structures" in refused.stderr


@pytest.mark.slow
def test_the_default_kernel_is_the_square_one_else_refused(
    jarvis: LabelledDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = select_structures(jarvis.db, release=jarvis.release).structure_ids
    square = build_kernel(jarvis.db, jarvis.settings, ids, hypers=SMALL, tile=16, workers=1)
    rect = build_kernel(
        jarvis.db, jarvis.settings, ids[40:], ids[:40], hypers=SMALL, tile=16, workers=1
    )
    monkeypatch.setattr(acquisition, "SoapHypers", lambda: SMALL)  # the default, here SMALL
    chosen = acquisition.default_kernel(jarvis.db, "jarvis", list(ids))
    # the newest square one: `square`, or one another test of the session built since
    assert chosen != rect.kernel_id and chosen >= square.kernel_id
    kernel = {k.id: k for k, _ in list_kernels(jarvis.db)}[chosen]
    assert kernel.row_ids == kernel.col_ids and set(ids) <= set(kernel.row_ids)
    with pytest.raises(KernelError, match="`crystaldb kernel build --release jarvis`"):
        acquisition.default_kernel(jarvis.db, "jarvis", [*ids, -1])
    monkeypatch.undo()
    with pytest.raises(KernelError, match="kernel build --release jarvis"):
        acquisition_curve(jarvis.db, jarvis.settings, jarvis.release, rect.kernel_id, HYPERS)
