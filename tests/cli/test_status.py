"""`crystaldb status` against real clusters: each worker's size, resources and reach.

The local cluster's worker processes, and a `dask scheduler` with `dask worker` processes
started here as separate programs (one declaring a GPU, one that sees another store folder
than the client: a private mount namespace with an empty tmpfs over the store's folder).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

from tests.cli.helpers import free_port, fresh_env
from tests.conftest import DatabaseFactory, run_cli

pytestmark = pytest.mark.slow

DASK = str(Path(sys.executable).parent / "dask")


def _status(env: dict[str, str], *args: str) -> dict:
    result = run_cli("status", "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _migrated_env(databases: DatabaseFactory, tmp_path: Path) -> dict[str, str]:
    env = fresh_env(databases, tmp_path)
    assert run_cli("db", "upgrade", env=env).returncode == 0
    return env


def test_probe_starts_the_local_cluster_and_checks_every_worker(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    env = {**_migrated_env(databases, tmp_path), "CRYSTALDB_DASK_WORKERS": "2"}
    cluster = _status(env, "--probe")["cluster"]
    assert cluster["kind"] == "local" and cluster["address"].startswith("tcp://127.0.0.1:")
    assert cluster["workers"] == 2 and cluster["gpu_workers"] == 0
    for worker in cluster["worker_details"]:
        assert worker["threads"] == 1 and worker["memory_limit"] > 0
        assert worker["store"] == "ok"
        assert worker["database"].startswith("ok (PostgreSQL ")
    assert not (tmp_path / "store" / "probes").exists(), "the probe keys were left behind"

    table = run_cli("status", "--probe", env=env)
    assert table.returncode == 0, table.stderr
    assert "local cluster tcp://127.0.0.1:" in table.stdout
    assert table.stdout.count("store: ok") == 2


def _can_hide_a_folder() -> str | None:
    """Why a private mount namespace cannot be made here (None when it can)."""
    if shutil.which("unshare") is None:
        return "no unshare program"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "none", "/mnt"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if probe.returncode == 0 else f"unshare --mount failed: {probe.stderr.strip()}"


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A `dask scheduler` program; the test adds its workers to the list, all stopped after."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = (tmp_path / "scheduler.log").open("wb")
    processes = [
        subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ]
    try:
        yield address, processes
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


def _worker(address: str, name: str, *extra: str) -> list[str]:
    return [DASK, "worker", address, "--name", name, "--nthreads", "2", "--no-dashboard", *extra]


def test_status_lists_a_schedulers_workers_their_gpu_and_who_cannot_see_the_store(
    databases: DatabaseFactory, tmp_path: Path, scheduler
) -> None:
    address, processes = scheduler
    env = {**_migrated_env(databases, tmp_path), "CRYSTALDB_DASK_SCHEDULER": address}
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    log = (tmp_path / "workers.log").open("wb")
    quiet = {"stdout": log, "stderr": subprocess.STDOUT}
    processes.append(subprocess.Popen(_worker(address, "gpu", "--resources", "GPU=1"), **quiet))
    processes.append(subprocess.Popen(_worker(address, "cpu", "--memory-limit", "2GiB"), **quiet))
    hidden = _can_hide_a_folder()
    if hidden is None:  # a worker whose view of the store's folder is an empty tmpfs
        hide = f"mount -t tmpfs none {store} && exec {' '.join(_worker(address, 'elsewhere'))}"
        processes.append(
            subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide], **quiet
            )
        )
    expected = 3 if hidden is None else 2
    with Client(address, timeout=30) as client:
        client.wait_for_workers(expected, timeout=60)
    start = time.perf_counter()
    cluster = _status(env)["cluster"]
    elapsed = time.perf_counter() - start

    assert cluster["kind"] == "remote" and cluster["address"] == address
    assert cluster["state"] == "reachable"
    assert cluster["workers"] == expected and cluster["gpu_workers"] == 1
    workers = {w["name"]: w for w in cluster["worker_details"]}
    assert workers["gpu"]["resources"] == {"GPU": 1.0}
    assert workers["cpu"]["resources"] == {}
    assert workers["cpu"]["memory_limit"] == 2 * 2**30
    assert cluster["threads"] == 2 * expected
    for name in ("gpu", "cpu"):
        assert workers[name]["store"] == "ok", workers[name]
        assert workers[name]["database"].startswith("ok (PostgreSQL "), workers[name]
    if hidden is None:
        elsewhere = workers["elsewhere"]
        assert elsewhere["store"].startswith("cannot see the client's probe at ")
        assert "is not the store the client uses" in elsewhere["store"]
        assert elsewhere["database"].startswith("ok (PostgreSQL ")
    assert elapsed < 60
    assert not (store / "probes").exists()

    table = run_cli("status", env={**env, "COLUMNS": "200"})
    assert f"scheduler {address}: {expected} workers" in table.stdout
    assert "1 with a GPU" in table.stdout and "resources GPU=1" in table.stdout
    if hidden is not None:
        pytest.skip(f"the worker with a private store folder was not started: {hidden}")


def test_unreachable_scheduler_is_shown_not_raised(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    env = {
        **_migrated_env(databases, tmp_path),
        "CRYSTALDB_DASK_SCHEDULER": f"tcp://127.0.0.1:{free_port()}",
    }
    cluster = _status(env)["cluster"]
    assert cluster["kind"] == "remote"
    assert cluster["state"].startswith("cannot reach the Dask scheduler at tcp://127.0.0.1:")
