"""The `crystaldb` command as a user runs it: real processes, real databases."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import typer.main
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from crystaldb.cli import app
from crystaldb.schema.migrate import MIGRATIONS
from tests.conftest import DatabaseFactory, run_cli
from tests.realdata import SAMPLE


def _url(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _fresh_env(databases: DatabaseFactory, tmp_path: Path) -> dict[str, str]:
    """Settings for a child process: a new empty database and a private data directory."""
    return {"CRYSTALDB_DATABASE_URL": _url(databases.create()), "CRYSTALDB_DATA_DIR": str(tmp_path)}


def _all_command_paths() -> list[list[str]]:
    """Every subcommand, nested groups included."""
    paths: list[list[str]] = []

    def walk(command: object, prefix: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


@pytest.mark.parametrize("path", _all_command_paths(), ids=" ".join)
def test_every_subcommand_has_help(path: list[str]) -> None:
    result = run_cli(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root@localhost/test", "is not a PostgreSQL URL"),
        ("postgresql://postgres@127.0.0.1:{port}/crystaldb", "Connection refused"),
        ("postgresql://postgres@localhost", "names no database"),
    ],
)
def test_bad_database_url_is_one_clear_line_not_a_traceback(url: str, expected: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_cli("status", env={"CRYSTALDB_DATABASE_URL": url.format(port=port)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "CRYSTALDB_DATABASE_URL" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_db_upgrade_then_status(databases: DatabaseFactory, tmp_path: Path) -> None:
    env = _fresh_env(databases, tmp_path)
    pending = run_cli("db", "status", "--check", env=env)
    assert pending.returncode == 1
    assert "pending" in pending.stdout and "crystaldb db upgrade" in pending.stdout

    upgraded = run_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert f"schema upgraded empty -> {head}" in upgraded.stdout
    again = run_cli("db", "upgrade", env=env)
    assert f"schema already at {head}" in again.stdout

    report = json.loads(run_cli("status", "--json", env=env).stdout)
    assert report["database"]["schema"] == report["database"]["schema_head"] == head
    assert report["database"]["embedded"] is False
    assert report["counts"]["structures"] == 0
    assert report["cluster"] == {
        "kind": "local",
        "workers": 2,
        "threads_per_worker": 1,
        "state": "started on demand",
    }
    assert report["store"]["url"] == str(tmp_path / "store")

    down = run_cli("db", "downgrade", "base", "--yes", env=env)
    assert down.returncode == 0 and "base (empty)" in down.stdout
    assert run_cli("db", "status", "--check", env=env).returncode == 1


def test_status_on_an_unmigrated_database_says_what_to_run(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    env = _fresh_env(databases, tmp_path)
    result = run_cli("status", env=env)
    assert result.returncode == 0, result.stderr
    assert "run `crystaldb db upgrade`" in result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(args: list[str], env: dict[str, str], capture: bool) -> subprocess.Popen[str]:
    """A long-running crystaldb command (demo, serve) as a child process."""
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "crystaldb", *args], env=env, stdout=output, stderr=output, text=True
    )


def _wait_for_health(port: int, process: subprocess.Popen[str], seconds: float) -> dict[str, str]:
    """Poll /health until the server answers (or the process dies, or time runs out)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return dict(httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json())
        except httpx.TransportError:
            assert process.poll() is None, "the server process exited"
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.3)


@pytest.mark.embedded
@pytest.mark.slow
def test_demo_on_a_fresh_data_dir_migrates_ingests_and_serves(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CRYSTALDB_")},
        "CRYSTALDB_DATA_DIR": str(tmp_path / "crystaldb"),
    }
    port = _free_port()
    demo = _spawn(["demo", "--port", str(port)], env, capture=True)
    try:
        assert _wait_for_health(port, demo, 300) == {"status": "ok", "database": "ok"}
        report = json.loads(run_cli("status", "--json", env=env).stdout)
        served = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": "{ structures(filter: {nsites: {gte: 1}}) { totalCount } }"},
            timeout=30,
        ).json()
    finally:
        demo.terminate()  # SIGTERM, as a service manager would stop it
        out, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, err
    # The demo's exit handlers ran: the embedded server it started is stopped, not leaked.
    assert not (tmp_path / "crystaldb" / "pgdata" / "postmaster.pid").exists()
    assert "Connected to the embedded PostgreSQL" in out, err
    assert "embedded PostgreSQL 16" in out
    assert "(up to date)" in out
    assert f"http://127.0.0.1:{port}/graphql" in out
    assert (tmp_path / "crystaldb" / "pgdata" / "PG_VERSION").is_file()
    batches = re.findall(r"batch \d+ \(run \d+\): (\d+) inputs, (\d+) structures stored", out)
    assert len(batches) == 3  # the bundled COD (+ malformed) sample, the COFs, JARVIS
    assert re.search(r"model \d+ \(krr-jarvis-demo-run\d+\): KRR", out)
    assert "50 band gaps predicted and stored" in out
    assert report["database"]["embedded"] is True
    assert report["database"]["up_to_date"] is True
    assert "pgdata" in report["database"]["url"]
    stored = sum(int(n) for _, n in batches)
    assert report["counts"]["structures"] == stored > 0
    assert served == {"data": {"structures": {"totalCount": stored}}}
    url = run_cli("db", "url", env=env)
    assert url.stdout.strip().startswith("postgresql+psycopg://postgres@/crystaldb?host=")


def test_demo_without_serving_returns(databases: DatabaseFactory, tmp_path: Path) -> None:
    result = run_cli("demo", "--no-serve", env=_fresh_env(databases, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Serving" not in result.stdout
    assert "batch 2" in result.stdout


def test_ingest_command_reports_what_became_of_every_input(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    env = _fresh_env(databases, tmp_path)
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
    env = _fresh_env(databases, tmp_path)
    assert run_cli("db", "upgrade", env=env).returncode == 0
    result = run_cli(*args, env=env)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_ingest_refuses_to_run_on_an_unmigrated_database(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    env = _fresh_env(databases, tmp_path)
    result = run_cli("ingest", str(SAMPLE / "cod" / "1000002.cif"), env=env)
    assert result.returncode == 2
    assert "run `crystaldb db upgrade`" in result.stderr


def test_serve_answers_health_and_graphql_over_http(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CRYSTALDB_")},
        **_fresh_env(databases, tmp_path),
    }
    assert run_cli("db", "upgrade", env=env).returncode == 0
    port = _free_port()
    server = _spawn(["serve", "--port", str(port)], env, capture=False)
    try:
        assert _wait_for_health(port, server, 60) == {"status": "ok", "database": "ok"}
        answer = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": "{ structures(filter: {nsites: {gte: 1}}) { totalCount } }"},
            timeout=10,
        ).json()
        assert answer == {"data": {"structures": {"totalCount": 0}}}
    finally:
        server.terminate()
        server.wait(timeout=30)
