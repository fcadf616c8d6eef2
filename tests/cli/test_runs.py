"""`crystaldb runs [ID]`: the list of recent jobs, and one job with all it recorded."""

from __future__ import annotations

import pytest

from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.schema.runs import track_run
from tests.conftest import run_cli


def _env(settings: Settings) -> dict[str, str]:
    return {
        "CRYSTALDB_DATABASE_URL": str(settings.database_url),
        "CRYSTALDB_DATA_DIR": str(settings.data_dir),
        "COLUMNS": "200",
    }


def test_one_run_shows_its_parameters_results_and_error(db: Database, settings: Settings) -> None:
    with track_run(db, "predict", {"model": 7, "device": "cuda"}) as done:
        done.results.update(fallback={"resources": {"GPU": 1}, "reason": "no GPU worker left"})
    with pytest.raises(ValueError), track_run(db, "ingest", {"paths": ["bad.cif"]}) as failed:
        raise ValueError("bad.cif: no cell")
    env = _env(settings)
    listing = run_cli("runs", "--limit", "50", env=env)
    assert listing.returncode == 0, listing.stderr
    assert f" {done.id} " in listing.stdout and "ValueError: bad.cif: no cell" in listing.stdout
    shown = run_cli("runs", str(done.id), env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"{done.id} (predict)" in shown.stdout and "succeeded" in shown.stdout
    assert '"model": 7' in shown.stdout and '"reason": "no GPU worker left"' in shown.stdout
    assert "software" in shown.stdout and '"crystaldb"' in shown.stdout
    broken = run_cli("runs", str(failed.id), env=env)
    assert broken.returncode == 0 and "failed" in broken.stdout
    assert 'raise ValueError("bad.cif: no cell")' in broken.stdout  # the frames, in full
    missing = run_cli("runs", "999999", env=env)
    assert missing.returncode == 2 and "run 999999: no such run" in missing.stderr
