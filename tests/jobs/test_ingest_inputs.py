"""Which files an ingest reads: folders given by any path, hidden names only skipped below them.

`crystaldb ingest ../data/cifs` and folders under `~/.local/share/...` used to ingest nothing
and report success, because every path with any part starting with a dot was skipped.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from crystaldb.jobs.ingest import empty_folder_warning, expand, ingest_paths
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.schema import Run, Structure
from tests.conftest import DatabaseFactory, run_cli
from tests.realdata import SAMPLE

COD = SAMPLE / "cod"
CIFS = ["1000002.cif", "2000583.cif", "2103766.cif"]  # small, all stored


def _cifs(folder: Path, names: list[str] = CIFS) -> Path:
    """Real COD files copied into a folder (made with its parents)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(COD / name, folder / name)
    return folder


def _hidden_inside(folder: Path) -> None:
    """Real CIFs under hidden names inside the folder: a dot file, a dot folder, one deeper."""
    shutil.copy(COD / "2005206.cif", folder / ".draft.cif")
    _cifs(folder / ".git" / "objects", ["2009397.cif"])
    _cifs(folder / "more" / ".cache", ["1100978.cif"])


def test_a_relative_path_through_dot_dot_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cifs(tmp_path / "data" / "cifs")
    (tmp_path / "work" / "project").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work" / "project")

    inputs = expand(["../../data/cifs"])

    assert [p.name for p in inputs.files] == CIFS
    assert all(p.is_absolute() and ".." not in p.parts for p in inputs.files)
    assert inputs.empty_folders == {}


def test_a_folder_below_a_dot_directory_is_read(tmp_path: Path) -> None:
    folder = _cifs(tmp_path / ".local" / "share" / "crystaldb" / "cifs")
    inputs = expand([folder])
    assert [p.name for p in inputs.files] == CIFS


def test_home_relative_dot_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    _cifs(tmp_path / ".local" / "share" / "cifs")
    assert [p.name for p in expand(["~/.local/share/cifs"]).files] == CIFS


def test_hidden_files_and_folders_inside_stay_skipped(tmp_path: Path) -> None:
    folder = _cifs(tmp_path / ".config" / "cifs")
    _hidden_inside(folder)
    (folder / "README.md").write_text("the CIFs of a paper\n")

    inputs = expand([folder])

    assert [p.name for p in inputs.files] == CIFS
    assert inputs.ignored == 1  # the README; hidden files are neither inputs nor ignored


def test_a_hidden_file_named_explicitly_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _cifs(tmp_path / ".cache")
    hidden = folder / ".draft.cif"
    shutil.copy(COD / "2005206.cif", hidden)
    monkeypatch.chdir(folder)
    assert expand([".draft.cif"]).files == [hidden]
    assert expand([hidden]).files == [hidden]


def test_a_folder_without_structure_files_is_reported_with_its_file_count(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "README.md").write_text("no structures here\n")
    shutil.copy(COD / "1000002.cif", notes / ".hidden.cif")
    full = _cifs(tmp_path / "cifs")

    inputs = expand([empty, notes, full])

    assert [p.name for p in inputs.files] == CIFS
    assert inputs.empty_folders == {str(empty): 0, str(notes): 2}
    message = empty_folder_warning(str(notes), 2)
    assert message.startswith(f"ingest: {notes}: no structure file in this folder")
    assert "it holds 2 files" in message and message.endswith("nothing ingested from it")


@pytest.fixture
def fresh(databases: DatabaseFactory, tmp_path: Path) -> tuple[Settings, Database]:
    return databases.migrated("crystaldb_inputs", tmp_path / "store")


def _stored(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Structure)) or 0)


@pytest.mark.slow
def test_ingest_through_dot_dot_and_a_dot_directory_stores_the_files(
    fresh: tuple[Settings, Database], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, db = fresh
    _cifs(tmp_path / ".local" / "share" / "data" / "cifs")
    _hidden_inside(tmp_path / ".local" / "share" / "data" / "cifs")
    (tmp_path / ".local" / "share" / "work").mkdir()
    monkeypatch.chdir(tmp_path / ".local" / "share" / "work")

    summary = ingest_paths(db, settings, ["../data/cifs"], workers=1)

    assert summary.files == len(CIFS)
    assert summary.counts.stored == _stored(db) == len(CIFS)
    assert summary.empty_folders == {}


@pytest.mark.slow
def test_an_empty_folder_is_a_logged_warning_and_recorded_on_the_run(
    fresh: tuple[Settings, Database], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings, db = fresh
    folder = tmp_path / "typo"
    folder.mkdir()
    (folder / "index.html").write_text("<html></html>\n")

    with caplog.at_level(logging.WARNING, logger="crystaldb.jobs.ingest"):
        summary = ingest_paths(db, settings, [folder], workers=1)

    assert summary.files == 0 and summary.empty_folders == {str(folder): 1}
    assert empty_folder_warning(str(folder), 1) in caplog.messages
    with db.session() as session:
        parameters = session.scalar(select(Run.parameters).where(Run.id == summary.run_id))
    assert parameters is not None and parameters["empty_folders"] == {str(folder): 1}


def _url(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.mark.slow
def test_the_cli_reads_dot_dot_paths_and_warns_of_an_empty_folder(
    databases: DatabaseFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"CRYSTALDB_DATABASE_URL": _url(databases.create()), "CRYSTALDB_DATA_DIR": str(tmp_path)}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    _cifs(tmp_path / "data" / "cifs")
    (tmp_path / "data" / "empty").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")

    result = run_cli("ingest", "../data/cifs", "../data/empty", "--workers", "1", env=env)

    assert result.returncode == 0, result.stderr
    assert f"{len(CIFS)} inputs, {len(CIFS)} structures stored" in result.stdout
    warning = " ".join(result.stderr.split())  # rich wraps long log lines
    assert "ingest: ../data/empty: no structure file in this folder (it holds no files)" in warning
