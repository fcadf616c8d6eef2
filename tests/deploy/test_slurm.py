"""deploy/slurm: the example settings load, and give the job script they promise.

No SLURM is available here: the script is checked as text (the cluster path itself, with
sbatch run by a stand-in, is tested in tests/platform/test_cluster.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

SLURM = Path(__file__).resolve().parents[2] / "deploy" / "slurm"


def test_example_config_gives_its_job_script() -> None:
    env = {"CRYSTALDB_CONFIG": str(SLURM / "crystaldb.toml")}
    result = run_cli("deploy", "slurm-script", "--scheduler", "tcp://10.0.0.1:8786", env=env)
    assert result.returncode == 0, result.stderr
    script = result.stdout
    for line in (
        "#SBATCH -p compute",
        "#SBATCH -A chem-group",
        "#SBATCH --cpus-per-task=16",
        "#SBATCH --mem=60G",
        "#SBATCH -t 04:00:00",
        "#SBATCH --exclusive",
        "module load python/3.11",
        "source $HOME/crystaldb/.venv/bin/activate",
    ):
        assert f"\n{line}\n" in script, line
    worker = script.strip().splitlines()[-1]
    assert worker.startswith("python -m distributed.cli.dask_worker tcp://10.0.0.1:8786 ")
    assert "--nworkers 4" in worker and "--nthreads 4" in worker


def test_client_job_uses_the_example_config() -> None:
    text = (SLURM / "client-job.sbatch").read_text()
    assert "#SBATCH" in text and "deploy/slurm/crystaldb.toml" in text
    commands = [line.split()[1] for line in text.splitlines() if line.startswith("crystaldb ")]
    help_ok = [run_cli(command, "--help").returncode for command in sorted(set(commands))]
    assert help_ok == [0] * len(help_ok)
