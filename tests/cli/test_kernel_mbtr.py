"""`crystaldb kernel build --descriptor mbtr`, then `train krr` on it, as a user runs them."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from crystaldb.cli import app
from crystaldb.core.mbtr import MbtrHypers
from crystaldb.core.soap import DescriptorError
from crystaldb.schema import DescriptorSet, KernelMatrix
from tests.conftest import run_cli
from tests.jarvis import LabelledDatabase


def _env(jarvis: LabelledDatabase) -> dict[str, str]:
    return {
        "CRYSTALDB_DATABASE_URL": str(jarvis.settings.database_url),
        "CRYSTALDB_DATA_DIR": str(jarvis.settings.data_dir),
    }


@pytest.mark.slow
def test_mbtr_kernel_and_krr_from_the_command_line(jarvis: LabelledDatabase) -> None:
    built = run_cli(
        *("kernel", "build", "--release", jarvis.release, "--descriptor", "mbtr"),
        *("--grid-n", "30", "--k2-sigma", "0.04", "--tile", "16", "--workers", "1"),
        env=_env(jarvis),
    )
    assert built.returncode == 0, built.stderr
    found = re.search(
        r"kernel (\d+): 50 x 50 .*\n(?:.*\n)*  descriptor set (\d+): MBTR", built.stdout
    )
    assert found, built.stdout
    kernel_id, set_id = int(found.group(1)), int(found.group(2))
    with jarvis.db.session() as session:
        assert session.get_one(KernelMatrix, kernel_id).kernel == "mbtr-cosine"
        stored = session.get_one(DescriptorSet, set_id).hyperparameters
        assert stored == MbtrHypers(grid_n=30, k2_sigma=0.04).record()
    trained = run_cli(
        *("train", "krr", "--kernel", str(kernel_id), "--release", jarvis.release),
        *("--folds", "5"),
        env=_env(jarvis),
    )
    assert trained.returncode == 0, trained.stderr
    assert re.search(r"test MAE \d+\.\d+ eV .*?on\s+10\s+structures", trained.stdout, re.S), (
        trained.stdout
    )
    listed = run_cli("kernel", "list", env=_env(jarvis))
    assert listed.returncode == 0 and "MBTR" in listed.stdout, listed.stderr


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (("--descriptor", "mbtr", "--k2-sigma", "0"), "--k2-sigma"),
        (("--descriptor", "mbtr", "--threshold", "2"), "--threshold"),
        (("--descriptor", "mbtr", "--rc", "5"), "--rc"),
        (("--grid-n", "50"), "--grid-n"),
        (("--descriptor", "acsf"), "--descriptor"),
    ],
)
def test_bad_descriptor_options_are_named(arguments: tuple[str, ...], named: str) -> None:
    """Refused before any database or worker is touched (in process: no server needed)."""
    result = CliRunner().invoke(app, ["kernel", "build", "--release", "r", *arguments])
    message = result.output + str(result.exception or "")
    assert result.exit_code != 0 and named in message, message
    # a usage error (exit 2), or the library's own error, which main() prints as one line
    assert isinstance(result.exception, SystemExit | DescriptorError), result.exception
