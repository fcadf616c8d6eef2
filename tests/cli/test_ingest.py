"""`crystaldb ingest`: what became of every input, and clear refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.cli.helpers import fresh_env
from tests.conftest import DatabaseFactory, run_cli
from tests.realdata import SAMPLE


def test_ingest_command_reports_what_became_of_every_input(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    env = fresh_env(databases, tmp_path)
    assert run_cli("db", "upgrade", env=env).returncode == 0
    folder = tmp_path / "malformed"  # the sample's malformed CIFs, with a note beside them
    shutil.copytree(SAMPLE / "malformed", folder)
    (folder / "descriptions.tsv").write_text("empty-file.cif\t1\n")
    result = run_cli("ingest", str(folder), "--workers", "1", env=env)
    assert result.returncode == 0, result.stderr
    cifs = len(list(folder.glob("*.cif")))
    assert f"{cifs} inputs" in result.stdout
    assert "1 other files in the folders ignored" in result.stdout  # descriptions.tsv
    assert "parse_error" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ingest", "/no/such/folder"], "ingest: /no/such/folder: no such file or folder"),
        (["ingest", "--format", "mol2", "."], "expected auto or omdb-gap1"),
    ],
)
def test_ingest_command_bad_arguments_are_one_clear_line(
    databases: DatabaseFactory, tmp_path: Path, args: list[str], expected: str
) -> None:
    env = fresh_env(databases, tmp_path)
    assert run_cli("db", "upgrade", env=env).returncode == 0
    result = run_cli(*args, env=env)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_ingest_refuses_to_run_on_an_unmigrated_database(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    env = fresh_env(databases, tmp_path)
    result = run_cli("ingest", str(SAMPLE / "cod" / "1000002.cif"), env=env)
    assert result.returncode == 2
    assert "run `crystaldb db upgrade`" in result.stderr
