"""Separate hosts on one machine: network namespaces for database, scheduler, workers, store.

Each host is a network namespace of its own on a private bridge (10.77.0.0/24, inside a hub
namespace: nothing is added to the machine's own network), with its own HOME and data
directory; each worker also mounts an empty tmpfs over every other host's directory, so it
can read nothing of the client's files. The client (the driver, tests/cluster/driver.py)
runs the whole workflow against PostgreSQL, `dask scheduler` with two `dask worker`s (one
declaring GPU=1) and an S3 server (moto) at `s3://crystaldb/artifacts`; the answers and the
exported files must equal those of a one-host run of the same inputs. Then a worker is killed
part-way through a kernel build and another part-way through a prediction: each job finishes
on the worker left, nothing lost or doubled, and its run names the worker that died; the
prediction, whose last GPU=1 worker died, finishes on a CPU worker and its run says so.
deploy/netns/README.md draws the topology.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cluster import driver
from tests.conftest import DatabaseFactory
from tests.jarvis import JARVIS

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NET = "10.77.0"
HOSTS = {"pg": 2, "sched": 3, "w1": 4, "w2": 5, "s3": 6, "client": 7}
FOLDERS = (*HOSTS, "w3")  # w3: the replacement (CPU) worker started in w1's namespace
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SCHEDULER = f"tcp://{NET}.3:8786"
STORE = "s3://crystaldb/artifacts"
AWS = {
    "AWS_ENDPOINT_URL": f"http://{NET}.6:5000",
    "AWS_ACCESS_KEY_ID": "netns",
    "AWS_SECRET_ACCESS_KEY": "netns",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _run(*args: str) -> None:
    """A set-up command; its own error output if it fails."""
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")


def _netns_unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) to make network namespaces"
    probe = f"cdbprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if not (PG_BIN / "initdb").exists():
        return f"no PostgreSQL server binaries in {PG_BIN} for the database host"
    return None


class Cluster:
    """The namespaces, their processes and folders; `close` removes every one of them."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.base = Path(tempfile.mkdtemp(prefix="crystaldb-netns-"))
        self.base.chmod(0o755)  # the postgres user must reach its folder
        self.namespaces: list[str] = []
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.pgdata = self.base / "pg" / "pgdata"
        for name in FOLDERS:
            for sub in ("home", "data"):
                (self.base / name / sub).mkdir(parents=True)

    def ns(self, host: str) -> str:
        return f"cdb{self.tag}-{host}"

    def build_network(self) -> None:
        """A bridge in a hub namespace; each host's veth on it with its own address."""
        hub = self.ns("hub")
        _run("ip", "netns", "add", hub)
        self.namespaces.append(hub)
        _run("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", hub, "link", "set", "br0", "up")
        for index, (host, octet) in enumerate(HOSTS.items()):
            ns = self.ns(host)
            _run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            end, peer = f"c{self.tag}{index}", f"c{self.tag}{index}h"
            _run("ip", "link", "add", end, "netns", ns, "type", "veth", "peer", peer, "netns", hub)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "addr", "add", f"{NET}.{octet}/24", "dev", end)
            _run("ip", "-n", ns, "link", "set", end, "up")
            _run("ip", "-n", hub, "link", "set", peer, "master", "br0")
            _run("ip", "-n", hub, "link", "set", peer, "up")

    def env(self, host: str, **extra: str) -> dict[str, str]:
        """A host's environment: its own HOME and data dir, nothing of the test's settings."""
        keep = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CRYSTALDB_", "AWS_", "DASK_")) and k != "HOME"
        }
        return {
            **keep,
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
            "HOME": str(self.base / host / "home"),
            "CRYSTALDB_DATA_DIR": str(self.base / host / "data"),
            **extra,
        }

    def start(self, name: str, ns_host: str, command: str, env: dict[str, str]) -> None:
        """A long-running process in a namespace, its output in the host's folder."""
        log = (self.base / name / "log").open("wb")
        self.processes[name] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(ns_host), "sh", "-c", command],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_postgres(self) -> None:
        """A fresh PostgreSQL cluster of its own, trusting the private subnet."""
        folder = self.base / "pg"
        shutil.chown(folder, "postgres", "postgres")
        _run("runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(self.pgdata),
             "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")  # fmt: skip
        with (self.pgdata / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {NET}.0/24 trust\n")
        options = f"-c listen_addresses={NET}.2 -c port=5432 -k {folder} -c fsync=off"
        _run("ip", "netns", "exec", self.ns("pg"), "runuser", "-u", "postgres", "--",
             str(PG_BIN / "pg_ctl"), "-D", str(self.pgdata), "-l", str(folder / "log"), "-w",
             "-o", options, "start")  # fmt: skip

    def start_worker(self, name: str, ns_host: str, octet: int, gpu: bool) -> None:
        """`dask worker` that sees none of the other hosts' folders (a tmpfs over each)."""
        hide = " && ".join(
            f"mount -t tmpfs hidden {self.base / other}" for other in FOLDERS if other != name
        )
        command = (
            f"{hide} && exec dask worker {SCHEDULER} --host {NET}.{octet} --name {name}"
            f" --nthreads 1 --no-nanny --no-dashboard"
            f" --local-directory {self.base / name / 'data'}"
            + (" --resources GPU=1" if gpu else "")
        )
        self.start(name, ns_host, command, self.env(name, CRYSTALDB_STORE_URL=STORE, **AWS))

    def client(self, *args: str) -> subprocess.Popen[bytes]:
        """The driver in the client's namespace."""
        env = self.env(
            "client",
            CRYSTALDB_DATABASE_URL=f"postgresql://postgres@{NET}.2:5432/postgres",
            CRYSTALDB_DASK_SCHEDULER=SCHEDULER,
            CRYSTALDB_STORE_URL=STORE,
            **AWS,
        )
        log = (self.base / "client" / "log").open("ab")
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns("client"), sys.executable, "-m",
             "tests.cluster.driver", *args],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def kill(self, name: str) -> None:
        """SIGKILL a host's process: the host is gone, nothing restarts it."""
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def logs(self) -> str:
        """The tail of every host's log, for a failure's report."""
        parts = []
        for name in FOLDERS:
            log = self.base / name / "log"
            if log.exists():
                parts.append(f"--- {name}\n" + log.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def close(self) -> None:
        """Every process stopped, every namespace deleted, every folder removed."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        if (self.pgdata / "postmaster.pid").exists():
            subprocess.run(
                ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D",
                 str(self.pgdata), "-m", "immediate", "-w", "stop"],
                capture_output=True, check=False,
            )  # fmt: skip
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """The hosts up: database, object store, scheduler, two workers (w2 with GPU=1)."""
    reason = _netns_unavailable()
    if reason:
        pytest.skip(reason)
    made = Cluster()
    try:
        made.build_network()
        made.start_postgres()
        made.start("s3", "s3", f"exec moto_server -H {NET}.6 -p 5000", made.env("s3"))
        made.start(
            "sched",
            "sched",
            f"exec dask scheduler --host {NET}.3 --port 8786 --no-dashboard",
            made.env("sched"),
        )
        made.start_worker("w1", "w1", HOSTS["w1"], gpu=False)
        made.start_worker("w2", "w2", HOSTS["w2"], gpu=True)
        yield made
    finally:
        made.close()


def _finish(cluster: Cluster, process: subprocess.Popen[bytes], result: Path) -> dict[str, Any]:
    """The driver's JSON once it exits, or its log and every host's."""
    try:
        code = process.wait(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError(f"the client timed out\n{cluster.logs()}") from None
    assert code == 0, f"the client failed\n{cluster.logs()}"
    return dict(json.loads(result.read_text()))


def _await(progress: Path, stage: str, least: int, process: subprocess.Popen[bytes]) -> int:
    """Until the driver reports `stage` at `least` done; what it reported."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if progress.exists():
            found = progress.read_text().split()
            if len(found) == 2 and found[0] == stage and int(found[1]) >= least:
                return int(found[1])
        time.sleep(0.02)
    raise AssertionError(f"the client never reported {stage} {least} (last: {_read(progress)})")


def _flat(metrics: dict[str, Any]) -> dict[str, float]:
    """Metrics with their intervals as plain numbers, for pytest.approx."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        for i, number in enumerate(value if isinstance(value, list) else [value]):
            flat[f"{key}{i}"] = float(number)
    return flat


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else "nothing"


def test_the_workflow_across_hosts_equals_one_host_and_survives_lost_workers(
    cluster: Cluster, databases: DatabaseFactory, tmp_path: Path
) -> None:
    inputs = cluster.base / "client" / "inputs"
    shutil.copytree(JARVIS, inputs)  # the client's own folder, which no worker can see
    out, result = cluster.base / "client" / "release", cluster.base / "client" / "result.json"
    found = _finish(cluster, cluster.client("workflow", str(result), str(inputs), str(out)), result)

    settings, db = databases.migrated("crystaldb_onehost", tmp_path / "onehost")
    try:
        local = driver.workflow(db, settings, JARVIS, tmp_path / "release")
    finally:
        db.dispose()

    views = found.pop("workers")
    assert len(views) == 2 and not any(view["sees_inputs"] for view in views.values())
    assert len({view["home"] for view in views.values()}) == 2
    assert found["kernel"]["uri"].startswith(f"{STORE}/kernels/")
    assert not local["kernel"]["uri"].startswith("s3://")
    assert found["predict"]["run"]["results"]["workers"] == ["w2"]  # only the GPU worker
    assert found["predict"]["run"]["results"]["devices"] == ["cpu"]  # it has no CUDA device
    assert found["ingest"] == local["ingest"] and found["ingest"]["stored"] == 70
    assert found["graphs"] == local["graphs"]
    np.testing.assert_allclose(found["kernel"]["matrix"], local["kernel"]["matrix"], atol=1e-12)
    assert found["model"]["lambda"] == local["model"]["lambda"]
    assert _flat(found["model"]["metrics"]) == pytest.approx(_flat(local["model"]["metrics"]))
    assert found["predict"]["rows"] == local["predict"]["rows"] == 50
    assert found["predict"]["values"] == pytest.approx(local["predict"]["values"], abs=1e-9)
    assert found["export"].pop("database") != local["export"].pop("database")  # two servers
    assert found["export"] == local["export"] and "manifest.json" in found["export"]

    # --- a worker killed mid-kernel-build, then another mid-prediction ---
    progress, go = cluster.base / "client" / "progress", cluster.base / "client" / "go"
    second = cluster.base / "client" / "kill.json"
    process = cluster.client("kill", str(second), str(progress), str(go))
    _await(progress, "tiles", 1, process)
    cluster.kill("w1")
    _await(progress, "kernel-done", 0, process)
    cluster.start_worker("w3", "w1", HOSTS["w1"], gpu=False)  # a CPU host where w1 was
    go.write_text("2")  # workers: w2 (GPU=1) and w3
    _await(progress, "predict", 2, process)
    cluster.kill("w2")
    lost = _finish(cluster, process, second)

    kernel = lost["kernel"]
    assert kernel["run"]["status"] == "succeeded"
    assert kernel["tiles_computed"] == kernel["tiles_total"] == 15  # 5 x 5 tiles, upper half
    every = np.asarray(kernel["matrix"])  # all 70 structures, by file name
    rows = [kernel["names"].index(name) for name in local["kernel"]["names"]]
    np.testing.assert_allclose(every[np.ix_(rows, rows)], local["kernel"]["matrix"], atol=1e-12)
    assert not np.isnan(every).any()
    dead = kernel["run"]["results"]["lost_workers"]
    assert [entry["worker"].rsplit(":", 1)[0] for entry in dead] == [f"tcp://{NET}.4"]
    assert dead[0]["tasks"] >= 1

    predicted = lost["predict"]
    assert predicted["written"] == predicted["rows"] == 50  # nothing lost, nothing doubled
    assert predicted["values"] == pytest.approx(local["predict"]["values"], abs=1e-9)
    results = predicted["run"]["results"]
    assert [entry["worker"].rsplit(":", 1)[0] for entry in results["lost_workers"]] == [
        f"tcp://{NET}.5"
    ]
    assert "w3" in results["workers"] and set(results["workers"]) <= {"w2", "w3"}
    # w2 was the last GPU=1 worker: the rest of the prediction fell back to the CPU one
    assert results["fallback"]["resources"] == {"GPU": 1.0}
