"""The Dask client: a local cluster of real worker processes, or a scheduler by address."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest
from distributed import LocalCluster

from crystaldb.core.errors import ClusterUnavailable
from crystaldb.platform import cluster
from crystaldb.platform.cluster import dask_client, describe_cluster
from crystaldb.platform.settings import load_settings

pytestmark = pytest.mark.slow


def test_local_cluster_runs_tasks_in_separate_worker_processes(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, dask_workers=2)
    with dask_client(settings) as client:
        pids = set(client.run(os.getpid).values())
        assert len(client.scheduler_info()["workers"]) == 2
    assert len(pids) == 2
    assert os.getpid() not in pids


def test_scheduler_address_connects_to_a_running_cluster(tmp_path: Path) -> None:
    with LocalCluster(n_workers=1, processes=True, dashboard_address=None) as running:
        settings = load_settings(data_dir=tmp_path, dask_scheduler=running.scheduler_address)
        with dask_client(settings) as client:
            assert client.submit(sum, [1, 2, 3]).result() == 6
        described = describe_cluster(settings)
    assert described["kind"] == "remote"
    assert described["workers"] == 1


def test_unreachable_scheduler_names_the_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT_S", 1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = load_settings(data_dir=tmp_path, dask_scheduler=f"tcp://127.0.0.1:{port}")
    with pytest.raises(ClusterUnavailable, match=f"127.0.0.1:{port}"), dask_client(settings):
        pass


# --- SLURM through dask-jobqueue. No SLURM here: the job script is checked as text, and ---
# --- run by sbatch/scancel stand-ins that start it on this machine instead of a node.   ---

SLURM_ENV = {
    "slurm_queue": "short",
    "slurm_account": "chem",
    "slurm_cores": 8,
    "slurm_processes": 2,
    "slurm_memory": "32GB",
    "slurm_walltime": "02:00:00",
    "slurm_job_extra_directives": '["--gres=gpu:1", "--constraint=a100"]',
    "slurm_job_script_prologue": "source /opt/crystaldb/.venv/bin/activate",
    "slurm_worker_resources": "GPU=1",
    "slurm_python": "/opt/crystaldb/.venv/bin/python",
}


def test_slurm_job_script_carries_the_settings_and_the_scheduler_address(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, dask_cluster="slurm", **SLURM_ENV)
    script = cluster.slurm_job_script(settings, "tcp://10.1.2.3:8786")
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    directives = [line for line in lines if line.startswith("#SBATCH")]
    for expected in (
        "#SBATCH -J crystaldb-worker",
        "#SBATCH -p short",
        "#SBATCH -A chem",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=30G",  # 32 GB in GiB, rounded up: SLURM's G is GiB
        "#SBATCH -t 02:00:00",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --constraint=a100",
    ):
        assert expected in directives, (expected, directives)
    body = [line for line in lines if line and not line.startswith("#")]
    assert body[0] == "source /opt/crystaldb/.venv/bin/activate"
    worker = body[-1].split()
    assert worker[:4] == [
        "/opt/crystaldb/.venv/bin/python",
        "-m",
        "distributed.cli.dask_worker",
        "tcp://10.1.2.3:8786",
    ]
    options = dict(zip(worker[4::2], worker[5::2], strict=False))
    assert options["--nworkers"] == "2" and options["--nthreads"] == "4"
    assert options["--name"] == "crystaldb-worker-$SLURM_JOB_ID"
    assert " --resources GPU=1" in body[-1]


def test_slurm_setting_conflicts_are_named() -> None:
    from crystaldb.core.errors import ConfigError

    with pytest.raises(ConfigError, match="CRYSTALDB_DASK_CLUSTER: address needs"):
        load_settings(dask_cluster="address")
    with pytest.raises(ConfigError, match="CRYSTALDB_DASK_CLUSTER: slurm starts its own"):
        load_settings(dask_cluster="slurm", dask_scheduler="tcp://10.0.0.1:8786")
    with pytest.raises(ConfigError, match="CRYSTALDB_SLURM_WORKER_RESOURCES"):
        load_settings(slurm_worker_resources="GPU")


SBATCH = """#!/bin/sh
# Stand-in for SLURM's sbatch: run the job script here, in a session of its own. Like sbatch,
# take a copy before returning: dask-jobqueue deletes its script file as soon as we return.
cp "$1" "$1.job"
setsid sh "$1.job" > "$1.log" 2>&1 < /dev/null &
echo "Submitted batch job $!"
"""
SCANCEL = """#!/bin/sh
# Stand-in for SLURM's scancel: end the job's whole session.
for job in "$@"; do kill -TERM -- "-$job" 2>/dev/null; done
exit 0
"""


def test_slurm_cluster_submits_worker_jobs_that_join_and_run_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", SBATCH), ("scancel", SCANCEL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    settings = load_settings(
        data_dir=tmp_path,
        dask_cluster="slurm",
        slurm_cores=2,
        slurm_processes=1,
        slurm_memory="2GB",
        slurm_jobs=2,
        slurm_worker_resources="GPU=1",
        slurm_start_timeout=120,
    )
    with dask_client(settings) as client:
        client.wait_for_workers(2, timeout=120)
        info = client.scheduler_info(n_workers=-1)["workers"].values()
        assert sorted(w["nthreads"] for w in info) == [2, 2]
        assert all(w["resources"] == {"GPU": 1.0} for w in info)
        pids = set(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids
        assert client.submit(sum, [1, 2, 3], resources={"GPU": 1}).result() == 6
    # closing the cluster cancelled the jobs: no worker process is left
    import psutil

    deadline = time.monotonic() + 30
    while any(psutil.pid_exists(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(psutil.pid_exists(p) for p in pids)


def test_deploy_slurm_script_prints_the_script_the_cluster_would_submit(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    env = {
        "CRYSTALDB_DATA_DIR": str(tmp_path),
        "CRYSTALDB_DASK_CLUSTER": "slurm",
        "CRYSTALDB_SLURM_QUEUE": "gpu",
        "CRYSTALDB_SLURM_JOB_EXTRA_DIRECTIVES": "--gres=gpu:1",
    }
    given = run_cli("deploy", "slurm-script", "--scheduler", "tcp://10.0.0.5:8786", env=env)
    assert given.returncode == 0, given.stderr
    assert "#SBATCH -p gpu\n" in given.stdout and "#SBATCH --gres=gpu:1\n" in given.stdout
    assert "-m distributed.cli.dask_worker tcp://10.0.0.5:8786 " in given.stdout
    started = run_cli("deploy", "slurm-script", env=env)
    assert started.returncode == 0, started.stderr
    assert re.search(r"-m distributed\.cli\.dask_worker tcp://[\d.]+:\d+ ", started.stdout)
    bad = run_cli("deploy", "slurm-script", "--scheduler", "http://x", env=env)
    assert bad.returncode == 2 and "--scheduler: 'http://x' is not a Dask" in bad.stderr
