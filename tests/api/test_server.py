"""`crystaldb serve --workers N`: N processes on one port, one database, one truth.

The worker that answered a request is found without the API telling: each worker holds the
server side of the TCP connections it accepted, so psutil maps a client's connection (by its
local port) to the process at the other end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy.engine import URL

from crystaldb.api.server import usable_cores
from crystaldb.platform.database import connect
from crystaldb.platform.settings import load_settings
from crystaldb.schema.tokens import create_token
from tests.cli.helpers import free_port
from tests.conftest import run_cli

START_S = 120  # two workers import the API on a 2-core machine that may be busy
STOP_S = 60
UNAUTHENTICATED = "UNAUTHENTICATED"
NO_STRUCTURE = "mutation { predictBandGap { mean } }"  # the token is checked first


@dataclass
class Served:
    """A `crystaldb serve` process (in its own process group) and the port it listens on."""

    process: subprocess.Popen[str]
    port: int
    env: dict[str, str]
    log: Path
    open: list[HTTPConnection] = field(default_factory=list)

    def workers(self) -> set[int]:
        """Pids of the worker processes uvicorn's supervisor runs now."""
        children = psutil.Process(self.process.pid).children()
        return {c.pid for c in children if "spawn_main" in " ".join(_cmdline(c))}

    def owner(self, conn: HTTPConnection) -> int | None:
        """The worker holding the server side of this client connection."""
        assert conn.sock is not None
        client_port = conn.sock.getsockname()[1]
        for pid in self.workers():
            try:
                held = psutil.Process(pid).net_connections("tcp")
            except psutil.NoSuchProcess:
                continue
            if any(c.raddr and c.raddr.port == client_port for c in held):
                return pid
        return None

    def one_per_worker(self, workers: int, seconds: float = START_S) -> dict[int, HTTPConnection]:
        """Open connections (each answered once) until every one of `workers` holds one."""
        by_worker: dict[int, HTTPConnection] = {}
        deadline = time.monotonic() + seconds
        while len(by_worker) < workers:
            assert self.process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, f"only {len(by_worker)} workers answered"
            conn = HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                status, _ = ask(conn, "GET", "/health")
            except OSError:  # not listening yet
                time.sleep(0.3)
                continue
            assert status == 200
            self.open.append(conn)  # held open, so the next connection is a new accept
            owner = self.owner(conn)
            if owner is not None:
                by_worker.setdefault(owner, conn)
        return by_worker

    def close(self) -> None:
        """Close the client connections this helper opened."""
        for conn in self.open:
            conn.close()
        self.open.clear()


def _cmdline(process: psutil.Process) -> list[str]:
    """A process's command line, empty once it has gone."""
    try:
        return list(process.cmdline())
    except psutil.Error:
        return []


def ask(
    conn: HTTPConnection, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    """One request on a persistent connection: status and decoded JSON."""
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    payload = None if body is None else json.dumps(body)
    conn.request(method, path, body=payload, headers=headers)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def _env(**settings: str) -> dict[str, str]:
    """The test's environment without any CRYSTALDB_ variable, plus these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYSTALDB_")}
    return env | {f"CRYSTALDB_{k.upper()}": v for k, v in settings.items()}


@contextmanager
def serve(args: list[str], env: dict[str, str], log: Path) -> Iterator[Served]:
    """`crystaldb serve ARGS` on a free port, its output in `log`, always stopped afterwards.

    Its own session (process group), so that a test can press Ctrl-C as a terminal does and
    a failed test can kill the parent and its workers together.
    """
    port = free_port()
    command = [sys.executable, "-m", "crystaldb", "serve", "--port", str(port), *args]
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    served = Served(process, port, env, log)
    try:
        yield served
    finally:
        served.close()
        _stop(process)


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL to the whole group if it has not ended in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_S)


def _code(body: dict[str, Any]) -> str | None:
    """The extensions.code of a response's first error (None: no error or no code)."""
    errors = body.get("errors") or [{}]
    return (errors[0].get("extensions") or {}).get("code")


def _render(url: URL) -> str:
    """The URL as a setting, password included."""
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def two_workers(migrated_url: URL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`crystaldb serve --workers 2` on the migrated test database, for the module."""
    folder = tmp_path_factory.mktemp("serve-workers")
    env = _env(database_url=_render(migrated_url), data_dir=str(folder / "data"))
    with serve(["--workers", "2"], env, folder / "serve.log") as served:
        served.one_per_worker(2)
        yield served


def test_default_is_one_worker_per_usable_core() -> None:
    """The affinity mask (taskset, a container's cpuset), not the machine's core count."""
    assert usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.slow
def test_requests_are_served_by_two_worker_processes(two_workers: Served) -> None:
    """Two connections answered by two different processes, both children of the server."""
    by_worker = two_workers.one_per_worker(2)
    assert set(by_worker) == two_workers.workers()
    assert two_workers.process.pid not in by_worker  # the parent only supervises
    query = {"query": "{ structures(first: 1) { totalCount } }"}
    for conn in by_worker.values():
        status, body = ask(conn, "POST", "/graphql", query)
        assert (status, _code(body)) == (200, None), body
        assert body["data"]["structures"]["totalCount"] >= 0


@pytest.mark.slow
def test_a_token_revoked_through_one_process_is_refused_by_every_worker(
    two_workers: Served, migrated_url: URL
) -> None:
    """Each worker accepts the live token, then `crystaldb token revoke` ends it for all."""
    name = f"workers-{os.getpid()}-{time.monotonic_ns()}"
    db = connect(load_settings(database_url=_render(migrated_url)))
    try:
        token = create_token(db, name)
    finally:
        db.dispose()
    mutation = {"query": NO_STRUCTURE}
    for conn in two_workers.one_per_worker(2).values():
        status, body = ask(conn, "POST", "/graphql", mutation, token=token)
        assert status == 200 and body["data"] is None
        assert _code(body) != UNAUTHENTICATED, body  # past the token check: no structure given
    revoked = run_cli("token", "revoke", name, env=two_workers.env)
    assert revoked.returncode == 0, revoked.stderr
    for pid, conn in two_workers.one_per_worker(2).items():
        status, body = ask(conn, "POST", "/graphql", mutation, token=token)
        assert _code(body) == UNAUTHENTICATED, (pid, body)
        assert f"the API token {name!r} was revoked" in body["errors"][0]["message"]


@pytest.mark.slow
def test_a_worker_that_dies_is_replaced(two_workers: Served) -> None:
    """uvicorn's supervisor (0.30 and later) starts a new worker in place of a killed one."""
    before = two_workers.workers()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + START_S
    while True:
        now = two_workers.workers()
        if len(now) == 2 and victim not in now:
            break
        assert time.monotonic() < deadline, f"no replacement for worker {victim}: {now}"
        time.sleep(0.3)
    two_workers.close()
    assert set(two_workers.one_per_worker(2)) == now


@pytest.mark.slow
def test_one_worker_serves_in_the_process_itself(migrated_url: URL, tmp_path: Path) -> None:
    """`--workers 1` is the in-process server of before: no child answers, SIGTERM ends it."""
    env = _env(database_url=_render(migrated_url), data_dir=str(tmp_path / "data"))
    with serve(["--workers", "1"], env, tmp_path / "serve.log") as served:
        conn = _connected(served)
        sockets = psutil.Process(served.process.pid).net_connections("tcp")
        assert conn.sock is not None
        assert any(c.raddr and c.raddr.port == conn.sock.getsockname()[1] for c in sockets)
        assert served.workers() == set()
        served.process.terminate()
        assert served.process.wait(STOP_S) == 0
    assert "1 process" in served.log.read_text()


def _connected(served: Served) -> HTTPConnection:
    """A connection that has had /health answered, once the server listens."""
    deadline = time.monotonic() + START_S
    while True:
        conn = HTTPConnection("127.0.0.1", served.port, timeout=30)
        try:
            assert ask(conn, "GET", "/health")[0] == 200
        except OSError:
            assert served.process.poll() is None, served.log.read_text()
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.3)
            continue
        served.open.append(conn)
        return conn


def _postgres(pgdata: Path) -> list[psutil.Process]:
    """The embedded server's postmaster (its pid is in postmaster.pid) and its children."""
    postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    return [postmaster, *postmaster.children(recursive=True)]


def _running_after(processes: list[psutil.Process], seconds: float) -> list[str]:
    """Those still running after a grace period for their last exit steps (a zombie has
    exited: only its parent's reaping is left)."""
    _, alive = psutil.wait_procs(processes, timeout=seconds)
    running = []
    for process in alive:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                running.append(f"{process.pid} {' '.join(process.cmdline())}")
        except psutil.NoSuchProcess:
            pass
    return running


@pytest.mark.embedded
@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGTERM", "Ctrl-C"])
def test_stopping_ends_every_worker_and_the_embedded_postgres(tmp_path: Path, stop: str) -> None:
    """SIGTERM to the parent (a service manager) or SIGINT to the group (Ctrl-C): exit 0, and
    no worker and no PostgreSQL process of the data directory is left."""
    env = _env(data_dir=str(tmp_path / "crystaldb"))
    pgdata = tmp_path / "crystaldb" / "pgdata"
    upgraded = run_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    with serve(["--workers", "2"], env, tmp_path / "serve.log") as served:
        served.one_per_worker(2)
        processes = [psutil.Process(pid) for pid in served.workers()] + _postgres(pgdata)
        assert len(processes) > 2
        served.close()
        if stop == "SIGTERM":
            served.process.send_signal(signal.SIGTERM)
        else:
            os.killpg(served.process.pid, signal.SIGINT)
        code = served.process.wait(STOP_S)
    log = served.log.read_text()
    assert code == 0, log
    assert _running_after(processes, seconds=10) == [], log
    assert not (pgdata / "postmaster.pid").exists()
    assert "2 worker processes" in log
