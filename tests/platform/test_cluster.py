"""The Dask client: a local cluster of real worker processes, or a scheduler by address."""

from __future__ import annotations

import os
import socket
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
