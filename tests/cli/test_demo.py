"""`crystaldb demo`: from nothing to a served, modelled database in one command."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import pytest

from tests.cli.helpers import free_port, fresh_env, spawn, wait_for_health
from tests.conftest import DatabaseFactory, run_cli


@pytest.mark.embedded
@pytest.mark.slow
def test_demo_on_a_fresh_data_dir_migrates_ingests_and_serves(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CRYSTALDB_")},
        "CRYSTALDB_DATA_DIR": str(tmp_path / "crystaldb"),
    }
    port = free_port()
    demo = spawn(["demo", "--port", str(port)], env, capture=True)
    try:
        assert wait_for_health(port, demo, 300) == {"status": "ok", "database": "ok"}
        report = json.loads(run_cli("status", "--json", env=env).stdout)
        running = run_cli("db", "url", "--libpq", env=env)  # the demo's server, while it runs
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
    assert running.stdout.strip().startswith("postgresql://postgres@/crystaldb?host="), running
    stopped = run_cli("db", "url", env=env)  # now stopped: said, not a URL of nothing
    assert stopped.returncode == 1 and "is not running" in stopped.stderr


@pytest.mark.slow
def test_demo_without_serving_returns(databases: DatabaseFactory, tmp_path: Path) -> None:
    result = run_cli("demo", "--no-serve", env=fresh_env(databases, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Serving" not in result.stdout
    assert "batch 2" in result.stdout
