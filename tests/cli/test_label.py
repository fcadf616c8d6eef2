"""`crystaldb label`: xTB gaps from the command line, failures in the summary, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from crystaldb.cli import app
from crystaldb.formats.payload import process_file
from crystaldb.jobs.load import write_chunk
from tests.conftest import DatabaseFactory, run_cli
from tests.realdata import SAMPLE
from tests.sampledb import open_batch


@pytest.fixture(scope="module")
def env(databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated database holding diamond (COD 1200017, 4 sites), written without Dask."""
    folder = tmp_path_factory.mktemp("label")
    _, db = databases.migrated("crystaldb_label_cli", folder / "data")
    (diamond,) = process_file(SAMPLE / "cod" / "1200017.cif")
    write_chunk(db, open_batch(db), [diamond])  # type: ignore[list-item]
    db.dispose()
    return {
        "CRYSTALDB_DATABASE_URL": db.url.render_as_string(hide_password=False),
        "CRYSTALDB_DATA_DIR": str(folder / "data"),
    }


def test_a_bad_argument_is_one_clear_line_and_exit_status_2(env: dict[str, str]) -> None:
    result = run_cli("label", "xtb", "--all", "--method", "GFN3-xTB", env=env)
    assert result.returncode == 2
    assert "--method: expected one of GFN1-xTB, GFN2-xTB, IPEA1-xTB" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["label", "xtb"], "give one of --release, --where or --all"),
        (["label", "xtb", "--all", "--timeout", "0"], "must be a positive number of seconds"),
        (["label", "xtb", "--all", "--limit", "-1"], "must be 0 or more"),
        (["label", "xtb", "--release", "nope"], "--release: no release nope"),
        (["label", "xtb", "--where", "nsites <<< 3"], "--where"),
        (["label", "xtb", "--all", "--acquire", "3"], "give --acquire K and --ensemble ID,ID"),
        (["label", "xtb", "--all", "--acquire", "3", "--ensemble", "1,x"], "model ids separated"),
        (["label", "load", "/no/such/labels.csv"], "/no/such/labels.csv: cannot read it"),
    ],
)
def test_bad_label_arguments_are_named(env: dict[str, str], args: list[str], expected: str) -> None:
    """In process (a child per case costs seconds): usage errors, or the library's own error,
    which `main()` prints as one line with exit status 2 (checked above)."""
    result = CliRunner().invoke(app, args, env=env)
    message = " ".join((result.output + str(result.exception or "")).split())
    assert result.exit_code != 0 and expected in message, message


@pytest.mark.slow
def test_label_export_and_load_from_the_command_line(env: dict[str, str], tmp_path: Path) -> None:
    done = run_cli("label", "xtb", "--all", "--workers", "1", env=env)
    assert done.returncode == 0, done.stderr
    assert "1 structures selected, 1 labelled, 0 failed, 0 already labelled" in done.stdout
    again = run_cli("label", "xtb", "--all", "--workers", "1", env=env)
    assert "0 labelled, 0 failed, 1 already labelled" in again.stdout

    # a time limit the child cannot meet: recorded, and shown with its reason
    hot = ["label", "xtb", "--all", "--temperature", "1000", "--timeout", "0.05"]
    timed_out = run_cli(*hot, "--workers", "1", env=env)
    assert timed_out.returncode == 0, timed_out.stderr
    assert "0 labelled, 1 failed" in timed_out.stdout
    assert "timeout" in timed_out.stdout and "0.05 s limit" in timed_out.stdout
    skipped = run_cli(*hot, "--limit", "0", env=env)
    assert "1 skipped (failed in an earlier run" in " ".join(skipped.stdout.split())

    table = tmp_path / "labels.csv"
    exported = run_cli("label", "export", str(table), env=env)
    assert exported.returncode == 0 and "1 GFN1-xTB band gaps written" in exported.stdout
    assert table.read_text().splitlines()[1].startswith("cod,1200017,C,4,band_gap,")
    loaded = run_cli("label", "load", str(table), env=env)
    assert "1 rows, 0 labels attached, 1 already there" in loaded.stdout
