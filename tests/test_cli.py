"""The `crystaldb` command as a user runs it: real processes, real databases."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
import typer.main
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from crystaldb.cli import app
from crystaldb.schema.migrate import MIGRATIONS
from tests.conftest import SHARED_DATA, DatabaseFactory, run_cli


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


@pytest.mark.embedded
@pytest.mark.slow
def test_demo_on_a_fresh_data_dir_gives_a_migrated_embedded_database(tmp_path: Path) -> None:
    env = {"CRYSTALDB_DATA_DIR": str(tmp_path / "crystaldb")}
    demo = run_cli("demo", env=env)
    assert demo.returncode == 0, demo.stderr
    assert "Connected to the embedded PostgreSQL" in demo.stdout
    assert "embedded PostgreSQL 16" in demo.stdout
    assert "(up to date)" in demo.stdout
    assert (tmp_path / "crystaldb" / "pgdata" / "PG_VERSION").is_file()

    batches = re.findall(
        r"batch \d+ \(run \d+\): (\d+) inputs, (\d+) structures stored", demo.stdout
    )
    assert len(batches) == 2  # the bundled COD (+ malformed) sample, then the COFs
    report = json.loads(run_cli("status", "--json", env=env).stdout)
    assert report["database"]["embedded"] is True
    assert report["database"]["up_to_date"] is True
    assert "pgdata" in report["database"]["url"]
    assert report["counts"]["structures"] == sum(int(stored) for _, stored in batches) > 0
    assert report["counts"]["runs"] == 2

    url = run_cli("db", "url", env=env)
    assert url.stdout.strip().startswith("postgresql+psycopg://postgres@/crystaldb?host=")


def test_ingest_command_reports_what_became_of_every_input(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    env = _fresh_env(databases, tmp_path)
    assert run_cli("db", "upgrade", env=env).returncode == 0
    folder = SHARED_DATA / "cif-malformed"
    result = run_cli("ingest", str(folder), "--workers", "1", env=env)
    assert result.returncode == 0, result.stderr
    cifs = len(list(folder.glob("*.cif")))
    assert f"{cifs} inputs" in result.stdout
    assert "other files in the folders ignored" in result.stdout  # descriptions.tsv
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
    result = run_cli("ingest", str(SHARED_DATA / "cod" / "1000002.cif"), env=env)
    assert result.returncode == 2
    assert "run `crystaldb db upgrade`" in result.stderr


def test_serve_answers_health_and_graphql_over_http(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys
    import time

    import httpx

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CRYSTALDB_")},
        **_fresh_env(databases, tmp_path),
    }
    assert run_cli("db", "upgrade", env=env).returncode == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "crystaldb", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, "crystaldb serve exited"
                assert time.monotonic() < deadline, "crystaldb serve did not come up"
                time.sleep(0.3)
        assert health.json() == {"status": "ok", "database": "ok"}
        answer = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": "{ structures(filter: {nsites: {gte: 1}}) { totalCount } }"},
            timeout=10,
        ).json()
        assert answer == {"data": {"structures": {"totalCount": 0}}}
    finally:
        server.terminate()
        server.wait(timeout=30)
