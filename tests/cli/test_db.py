"""`crystaldb db` and `crystaldb status` against real databases, good and bad."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from crystaldb.schema.migrate import MIGRATIONS
from tests.cli.helpers import fresh_env
from tests.conftest import DatabaseFactory, run_cli


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
    env = fresh_env(databases, tmp_path)
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
    env = fresh_env(databases, tmp_path)
    result = run_cli("status", env=env)
    assert result.returncode == 0, result.stderr
    assert "run `crystaldb db upgrade`" in result.stdout
